//! The test environment itself: what a child of a test can see. Nothing of the developer's or
//! CI's environment may reach `loop` (the real HOME holds `~/.gitconfig` and
//! `~/.config/graphite/aliases`, which would change what the guard allows), and the clock moves
//! one step per `loop` command.

use std::collections::BTreeMap;
use std::process::Output;

use crate::support::*;

/// `NAME=value` lines (as `env` prints them) as a map; values with newlines are cut short,
/// which is fine for names.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The parent's variables a child must not see: every one outside the allowed list.
fn parent_only() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| !ALLOWED_VARIABLES.contains(&k.as_str())).collect()
}

#[test]
fn only_allowed_variables_reach_a_child() {
    let env = TestEnvironment::new();
    let out = env.command("env").output().expect("env runs");
    assert!(out.status.success());
    let seen = parse_env(&String::from_utf8_lossy(&out.stdout));
    let extra: Vec<&String> = seen.keys().filter(|k| !ALLOWED_VARIABLES.contains(&k.as_str())).collect();
    assert!(extra.is_empty(), "variables outside the allowed list reached the child: {extra:?}");
    // cargo runs this test with CARGO_* set (and a shell gives it many more): some parent
    // variable is always outside the list, so the check above had something to keep out.
    assert!(!parent_only().is_empty(), "the parent has nothing the child must not see");
    assert_eq!(seen.get("HOME").map(String::as_str), Some(env.home().to_str().unwrap()));
    assert_eq!(seen.get("GIT_CONFIG_GLOBAL").map(String::as_str), Some(env.gitconfig().to_str().unwrap()));
    assert_eq!(seen.get("GIT_CONFIG_NOSYSTEM").map(String::as_str), Some("1"));
    for xdg in ["XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "TMPDIR"] {
        assert!(seen[xdg].starts_with(env.root().to_str().unwrap()), "{xdg}={} is outside the test's dir", seen[xdg]);
    }
}

/// The same through the real binary: a fake codex that `loop run` starts writes down its whole
/// environment. Whatever loop adds for its agent, no variable of the test process reaches it,
/// and git inside it is pointed at the environment's config, not the developer's.
#[test]
fn nothing_of_the_parent_reaches_loop_or_its_agent() {
    let repo = repo_with(&[("docs/projects/p/issues/a.md", "---\nid: A\nmilestone: M\n---\n")]);
    let dump = repo.env().root().join("agent-env.txt");
    let fake = repo.env().root().join("fake-codex");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$1\" = login ] && exit 0\nenv > '{}'\n\
             printf '%s\\n' '{{\"type\":\"thread.started\",\"thread_id\":\"t1\"}}'\n\
             printf '%s\\n' '{{\"type\":\"turn.failed\",\"error\":{{\"message\":\"done\"}}}}'\nexit 1\n",
            dump.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out: Output = loop_cmd(&repo)
        .args(["run", "-q", "--codex-bin", fake.to_str().unwrap()])
        .env("LOOP_RUN_ID", "r")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let seen = parse_env(&std::fs::read_to_string(&dump).expect("the fake codex ran"));
    let parent = parent_only();
    let leaked: Vec<&(String, String)> =
        parent.iter().filter(|(k, v)| !v.is_empty() && seen.get(k) == Some(v)).collect();
    assert!(leaked.is_empty(), "reached the agent from the test process: {leaked:?}");
    if let Ok(home) = std::env::var("HOME") {
        assert!(seen.values().all(|v| !v.split(':').any(|p| p == home)), "the real HOME ({home}) reached the agent");
    }
    let gitconfig = repo.env().gitconfig();
    assert_eq!(
        seen.get("GIT_CONFIG_GLOBAL").map(String::as_str),
        gitconfig.to_str(),
        "git in the agent reads the environment's config"
    );
}

#[test]
fn the_clock_steps_once_per_loop_command() {
    let repo = demo_repo();
    let now = |c: &std::process::Command| {
        c.get_envs().find(|(k, _)| *k == "LOOP_NOW").and_then(|(_, v)| v).map(|v| v.to_string_lossy().into_owned())
    };
    let first = loop_cmd(&repo);
    repo.git(&["status", "--short"]);
    let second = loop_cmd(&repo);
    assert_eq!(now(&first).as_deref(), Some(NOW));
    assert_eq!(now(&second).as_deref(), Some("2026-01-01T00:00:01Z"), "git commands do not move the clock");
    // Each environment has a clock of its own.
    assert_eq!(now(&loop_cmd(&demo_repo())).as_deref(), Some(NOW));
}
