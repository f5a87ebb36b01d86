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
    assert_eq!(complete("loop re"), ["replay", "report", "restate", "resume", "retry"]);
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

const ESC: u8 = 0x1b;

fn has_sgr(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == [ESC, b'['])
}

/// Runs `cmd` with its stdout on a fresh pseudo-terminal (stderr stays a pipe) and returns what
/// the terminal got and the process's stderr.
fn on_a_terminal(mut cmd: std::process::Command) -> (Vec<u8>, Vec<u8>) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the given ints; no name, termios or size.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut reader = std::fs::File::from(master);
    // Read while the child writes: a pty's buffer is small.
    let got = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Once the child and our copy of the slave are closed, reading ends with EIO.
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf
    });
    let out = cmd.stdout(std::process::Stdio::from(slave)).stderr(std::process::Stdio::piped()).output().unwrap();
    drop(cmd);
    (got.join().unwrap(), out.stderr)
}

/// `--color always` paints, `--color never` and a pipe do not, `NO_COLOR` turns auto off but
/// not `--color always`, and `LOOP_COLOR` is the flag's variable. Byte-level: any ESC is colour.
#[test]
fn colour_follows_the_flag_the_stream_and_no_color() {
    let repo = demo_repo();
    let plan = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = loop_cmd(&repo);
        c.args(args).envs(env.iter().copied());
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(exit::OK), "{args:?}: {}", text(&out).1);
        out.stdout
    };
    let always = plan(&["plan", "--color", "always"], &[]);
    assert!(has_sgr(&always), "{:?}", String::from_utf8_lossy(&always));
    assert!(always.starts_with(b"\x1b[1mMilestone M1-core"), "{:?}", String::from_utf8_lossy(&always));
    // The global flag goes before the subcommand too.
    assert_eq!(plan(&["--color=always", "plan"], &[]), always);
    let plain = plan(&["plan"], &[]);
    assert!(!plain.contains(&ESC), "piped output has colour");
    assert!(!plan(&["plan", "--color", "never"], &[]).contains(&ESC));
    assert!(!plan(&["plan"], &[("NO_COLOR", "1")]).contains(&ESC));
    assert_eq!(plan(&["plan", "--color", "always"], &[("NO_COLOR", "1")]), always, "--color always beats NO_COLOR");
    assert_eq!(plan(&["plan"], &[("LOOP_COLOR", "always")]), always);
    // Colour only adds escape sequences: without them the text is the plain text.
    let stripped =
        String::from_utf8(always).unwrap().replace("\x1b[1m", "").replace("\x1b[2m", "").replace("\x1b[0m", "");
    assert_eq!(stripped.as_bytes(), plain.as_slice());

    // auto on a terminal: colour, unless NO_COLOR (non-empty) or TERM=dumb; stderr is judged apart.
    let mut c = loop_cmd(&repo);
    c.args(["run", "--milestone", "M1-core", "--agent", "sim"]);
    let (_, progress) = on_a_terminal(c);
    let progress = String::from_utf8_lossy(&progress);
    assert!(
        progress.contains(" → Done") && !progress.contains('\x1b'),
        "stdout's terminal coloured stderr: {progress}"
    );
    let mut c = loop_cmd(&repo);
    c.arg("plan");
    let (tty, _) = on_a_terminal(c);
    assert!(has_sgr(&tty), "{:?}", String::from_utf8_lossy(&tty));
    for (k, v) in [("NO_COLOR", "1"), ("TERM", "dumb")] {
        let mut c = loop_cmd(&repo);
        c.arg("plan").env(k, v);
        let (tty, _) = on_a_terminal(c);
        assert!(!tty.is_empty() && !tty.contains(&ESC), "{k}={v}: {:?}", String::from_utf8_lossy(&tty));
    }
    let mut c = loop_cmd(&repo);
    c.arg("plan").env("NO_COLOR", "");
    assert!(has_sgr(&on_a_terminal(c).0), "an empty NO_COLOR counts as unset");
}

/// A run's progress (stderr) and its end, `runs` and `replay` are coloured with `--color always`;
/// JSON never is, whatever the flag.
#[test]
fn runs_replay_and_progress_are_coloured_and_json_never_is() {
    let repo = demo_repo();
    let out = loop_cmd(&repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "--json"])
        .args(["--color", "always"])
        .env("LOOP_RUN_ID", "colour")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", text(&out).1);
    assert!(!out.stdout.contains(&ESC), "JSON with colour");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    let progress = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(progress.contains("\x1b[2m → \x1b[0m\x1b[32mDone\x1b[0m"), "{progress}");
    assert!(progress.contains("\x1b[33mCapped\x1b[0m"), "{progress}");

    let shown = |args: &[&str]| {
        let out = loop_cmd(&repo).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(exit::OK), "{args:?}: {}", text(&out).1);
        out.stdout
    };
    let runs = String::from_utf8(shown(&["runs", "--color", "always"])).unwrap();
    assert!(runs.starts_with("\x1b[1mRUN "), "{runs}");
    assert!(runs.contains("\x1b[32mfinished  \x1b[0m") && runs.contains("\x1b[33m1 Capped\x1b[0m"), "{runs}");
    let replay = String::from_utf8(shown(&["replay", "colour", "--color", "always"])).unwrap();
    assert!(replay.contains("\x1b[32mreplay ok\x1b[0m: ") && replay.contains("\x1b[32m5 Done\x1b[0m"), "{replay}");
    let status = String::from_utf8(shown(&["status", "colour", "--color", "always"])).unwrap();
    assert!(status.contains("\x1b[1mISSUE "), "{status}");
    // Padded before it is painted, so the columns line up as in the plain table.
    assert!(status.contains("\x1b[32mDone      \x1b[0m") && status.contains("\x1b[33mCapped    \x1b[0m"), "{status}");
    assert!(status.contains("\x1b[33mstill required:\x1b[0m"), "{status}");
    let plain = String::from_utf8(shown(&["status", "colour"])).unwrap();
    assert_eq!(strip_ansi(&status), plain);
    for args in [
        &["runs", "--json", "--color", "always"][..],
        &["replay", "colour", "--json", "--color", "always"],
        &["status", "--json", "--color", "always"],
        &["plan", "--json", "--color", "always"],
    ] {
        let out = shown(args);
        assert!(!out.contains(&ESC), "{args:?} has colour");
        serde_json::from_slice::<serde_json::Value>(&out).unwrap();
    }
    for args in [&["runs"][..], &["replay", "colour"], &["runs", "--color", "never"]] {
        assert!(!shown(args).contains(&ESC), "{args:?} has colour on a pipe");
    }
}

/// A dry run with a missing agent CLI says so on its first line, shows the whole summary, and
/// exits as a real run's pre-flight would (2); it writes nothing, compact or verbose, and a
/// healthy one (the simulated agent) exits 0.
#[test]
fn dry_run_warns_first_exits_non_zero_and_writes_nothing() {
    let repo = demo_repo();
    let before = crate::preflight::everything(&repo);
    for verbose in [false, true] {
        let mut c = loop_cmd(&repo);
        c.args(["run", "--dry-run", "--codex-bin", "/nonexistent/codex"]);
        if verbose {
            c.arg("--verbose");
        }
        let out = c.output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stdout}\n{stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(
            lines[0].starts_with("warning: codex is not installed (/nonexistent/codex does not exist)"),
            "{stdout}"
        );
        assert_eq!(lines[1], "`loop run` would not start: 1 problem(s) above");
        // The summary is all there after the warning: every issue with its base, branch, worktree and phases.
        for id in ["ORB-1", "ORB-2", "ORB-3", "ORB-4", "ORB-5", "ORB-6"] {
            assert!(stdout.contains(&format!("\nbranch    loop/M1-core/{id}\n")), "{id}: {stdout}");
        }
        assert_eq!(stdout.lines().filter(|l| l.starts_with("dev       /nonexistent/codex exec ")).count(), 6);
        assert_eq!(stdout.contains("You are the"), verbose, "prompts only with --verbose");
        assert!(stderr.contains("1 problem(s) would stop `loop run`"), "{stderr}");
        assert_eq!(crate::preflight::everything(&repo), before, "a dry run changed the repo");
    }
    let out = loop_cmd(&repo).args(["run", "--dry-run", "--agent", "sim"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", text(&out).1);
    assert!(text(&out).0.contains("\npre-flight: ok\n"), "{}", text(&out).0);
    assert_eq!(crate::preflight::everything(&repo), before, "a dry run changed the repo");
    // --verbose belongs to --dry-run.
    let out = loop_cmd(&repo).args(["run", "--agent", "sim", "--verbose"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert_eq!(crate::preflight::everything(&repo), before);
    // --json: the same facts by field, never coloured; the prompts only with --verbose.
    for verbose in [false, true] {
        let mut c = loop_cmd(&repo);
        c.args(["run", "--dry-run", "--json", "--color", "always", "--codex-bin", "/nonexistent/codex"]);
        if verbose {
            c.arg("--verbose");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", text(&out).1);
        let v = json(&out);
        assert_eq!((v["dry_run"].as_bool(), v["would_start"].as_bool()), (Some(true), Some(false)), "{v}");
        assert!(v["warnings"][0].as_str().unwrap().starts_with("codex is not installed"), "{v}");
        assert_eq!(v["waves"], serde_json::json!([["ORB-1", "ORB-5"], ["ORB-2", "ORB-3"], ["ORB-4", "ORB-6"]]));
        let orb6 = v["issues"].as_array().unwrap().iter().find(|i| i["id"] == "ORB-6").unwrap();
        assert_eq!(orb6["base"], "merge of loop/M1-core/ORB-2 + loop/M1-core/ORB-3", "{orb6}");
        assert_eq!(orb6["branch"], "loop/M1-core/ORB-6");
        let phases = orb6["phases"].as_array().unwrap();
        assert_eq!(
            phases.iter().map(|p| p["label"].as_str().unwrap()).collect::<Vec<_>>(),
            ["dev", "review 1", "fix 1"]
        );
        assert_eq!(phases[0]["prompt_source"], "dev-auto-parallel");
        assert!(phases[0]["prompt_lines"].as_u64().unwrap() > 5, "{orb6}");
        assert_eq!(phases[2]["prompt"].is_string(), verbose, "{orb6}");
        assert_eq!(crate::preflight::everything(&repo), before, "a dry run changed the repo");
    }
    // Colour: the warning in red with --color always, none on a pipe.
    let out = loop_cmd(&repo)
        .args(["run", "--dry-run", "--codex-bin", "/nonexistent/codex", "--color", "always"])
        .output()
        .unwrap();
    assert!(out.stdout.starts_with(b"\x1b[31mwarning:\x1b[0m codex is not installed"), "{}", text(&out).0);
}

/// The text without its SGR sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        rest = after.find('m').map(|m| &after[m + 1..]).unwrap_or("");
    }
    out.push_str(rest);
    out
}
