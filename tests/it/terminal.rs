//! Terminal conventions: shell completions and manual pages, generated from the same clap
//! definition the binary parses with.

use crate::support::*;

/// bash, given the script, completes `loop re` to the subcommands that start so, and a flag of
/// `loop run`: the script describes the real command line.
#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let env = TestEnvironment::new();
    let out = env.loop_cmd(env.root()).args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    let script = env.root().join("loop.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let probe = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             _loop loop \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
        );
        let out = env.command("bash").args(["--norc", "-c", &probe]).output().unwrap();
        assert!(out.status.success(), "bash: {}", text(&out).1);
        let mut got: Vec<String> = text(&out).0.lines().map(String::from).collect();
        got.sort();
        got
    };
    assert_eq!(complete("loop re"), ["replay", "resume", "retry"]);
    assert!(complete("loop run --max-").contains(&"--max-fix-cycles".to_string()));
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands() {
    let env = TestEnvironment::new();
    for shell in ["zsh", "fish"] {
        let out = env.loop_cmd(env.root()).args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(exit::OK));
        let (script, _) = text(&out);
        for sub in ["resume", "replay", "land"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let out = env.loop_cmd(env.root()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
}

/// `loop man` prints loop(1); `--out DIR` writes a page per visible subcommand and never
/// writes through a symlink planted in DIR.
#[test]
fn man_pages_are_written_per_subcommand_and_never_through_a_symlink() {
    let env = TestEnvironment::new();
    let out = env.loop_cmd(env.root()).arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK));
    let (page, _) = text(&out);
    assert!(page.contains(".TH loop 1"), "{page}");
    assert!(page.contains("resume"));

    let dir = env.root().join("man1");
    std::fs::create_dir(&dir).unwrap();
    let victim = env.root().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("loop-run.1")).unwrap();
    let out = env.loop_cmd(env.root()).args(["man", "--out"]).arg(&dir).output().unwrap();
    assert_ne!(out.status.code(), Some(exit::OK), "wrote through a symlink");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

    std::fs::remove_file(dir.join("loop-run.1")).unwrap();
    let out = env.loop_cmd(env.root()).args(["man", "--out"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    let run = std::fs::read_to_string(dir.join("loop-run.1")).unwrap();
    assert!(run.contains(".TH loop-run 1") && run.contains("max\\-fix\\-cycles"), "{run}");
    assert!(!dir.join("loop-__shim.1").exists() && !dir.join("loop-hook.1").exists(), "hidden commands got pages");
}
