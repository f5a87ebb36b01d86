//! Issue #10 part 5 through the real binary: one milestone lock per repository (every state dir
//! sees it, `clean` takes it), text from docs and agents escaped before it reaches a terminal,
//! and a reader that goes away ends a command quietly without costing a journal record.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const TWO: &[(&str, &str)] = &[
    ("docs/projects/p/issues/a.md", "---\nid: A\nmilestone: M\n---\n"),
    ("docs/projects/p/issues/b.md", "---\nid: B\nmilestone: M\n---\n"),
];

/// Polls `status RUN` in `state` until one of its issues is in Dev (20 s at most).
fn wait_for_dev(repo: &TestRepo, state: &Path, run: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = loop_cmd(repo).args(["status", run, "--json", "--state-dir"]).arg(state).output().unwrap();
        if st.status.success() && json(&st)["issues"].as_array().unwrap().iter().any(|i| i["state"] == "Dev") {
            return;
        }
        assert!(Instant::now() < deadline, "run {run} never started a phase");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_state(repo: &TestRepo, state: &Path, run_id: &str, args: &[&str]) -> Command {
    let mut c = loop_cmd(repo);
    c.args(args).arg("--state-dir").arg(state).env("LOOP_RUN_ID", run_id);
    c
}

#[test]
fn the_milestone_lock_is_seen_from_every_state_dir_and_clean_takes_it() {
    let repo = repo_with(TWO);
    write_committed(&repo, "fail.json", r#"{"A": {"dev": "failed"}}"#);
    write_committed(&repo, "hang.json", r#"{"B": {"dev": "hang"}}"#);
    let (x, y, z) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // A finished run in state dir X that left A's worktree behind (Failed keeps it, clean).
    let done =
        with_state(&repo, x.path(), "done", &["run", "-m", "M", "--issue", "A", "--sim-scenario", "fail.json", "-q"])
            .output()
            .unwrap();
    assert_eq!(done.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&done));
    let kept = x.path().join("worktrees/M/A");
    assert!(kept.is_dir());

    // A live run of the same milestone in state dir Y.
    let mut live = with_state(
        &repo,
        y.path(),
        "live",
        &["run", "-m", "M", "--issue", "B", "--sim-scenario", "hang.json", "--phase-timeout", "60", "-q"],
    )
    .spawn()
    .unwrap();
    wait_for_dev(&repo, y.path(), "live");

    // A run from a third state dir is refused, naming the live run and where its state is.
    let second = with_state(&repo, z.path(), "second", &["run", "-m", "M", "--issue", "B", "--agent", "sim", "-q"])
        .output()
        .unwrap();
    let (_, err) = text(&second);
    assert_eq!(second.status.code(), Some(exit::LOCKED), "{err}");
    assert!(err.contains("milestone M is already being run by run live (pid"), "{err}");
    assert!(err.contains(&format!("with state dir {}", y.path().display())), "{err}");
    assert!(!z.path().join("runs/second").exists(), "a refused run left a journal");

    // `clean` takes the lock before it looks: refused for that run, skipped in a sweep.
    let clean = with_state(&repo, x.path(), "-", &["clean", "done"]).output().unwrap();
    let (_, err) = text(&clean);
    assert_eq!(clean.status.code(), Some(exit::LOCKED), "{err}");
    assert!(err.contains("already being run by run live"), "{err}");
    let sweep = with_state(&repo, x.path(), "-", &["clean"]).output().unwrap();
    let (out, err) = text(&sweep);
    assert_eq!(sweep.status.code(), Some(exit::OK), "{err}");
    assert!(out.contains("run done: milestone M is already being run by run live") && out.contains("skipped"), "{out}");
    assert!(kept.is_dir(), "clean touched a worktree while the milestone was running");

    let _ = Command::new("kill").args(["-INT", &live.id().to_string()]).status();
    assert_eq!(live.wait().unwrap().code(), Some(exit::INTERRUPTED));
    // The lock dies with its holder: the same clean now removes the worktree.
    let clean = with_state(&repo, x.path(), "-", &["clean", "done"]).output().unwrap();
    let (out, err) = text(&clean);
    assert_eq!(clean.status.code(), Some(exit::OK), "{err}");
    assert!(out.contains("removed") && !kept.exists(), "{out}");
}

/// A title and an agent's failure message that retitle and clear a terminal.
#[test]
fn text_from_docs_and_agents_reaches_a_terminal_escaped_and_json_keeps_it_exact() {
    const EVIL: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    const SHOWN: &str = "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J";
    let raw = |s: &str| s.contains('\u{1b}') || s.contains('\u{7}');
    let repo = repo_with(&[(
        "docs/projects/p/issues/a.md",
        "---\nid: A\nmilestone: M\ntitle: \"x \\e]0;pwned\\a\\e[2J\"\n---\n",
    )]);

    let (out, _) = text(&loop_cmd(&repo).arg("plan").output().unwrap());
    assert!(!raw(&out) && out.contains(&format!("A: x {SHOWN}")), "{out:?}");
    let plan = json(&loop_cmd(&repo).args(["plan", "--json"]).output().unwrap());
    assert_eq!(plan["issues"][0]["title"], format!("x {EVIL}"));

    // A codex whose turn fails with the same sequences (outside the repo: the checkout stays clean).
    let fake = repo.env().root().join("fake-codex");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = login ] && exit 0\nprintf '%s\\n' '{\"type\":\"thread.started\",\"thread_id\":\"t1\"}'\n\
         printf '%s\\n' '{\"type\":\"turn.failed\",\"error\":{\"message\":\"boom \\u001b]0;pwned\\u0007\\u001b[2J\"}}'\nexit 1\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let fake_s = fake.to_str().unwrap();

    let (out, _) = text(&loop_cmd(&repo).args(["run", "--dry-run", "--codex-bin", fake_s]).output().unwrap());
    assert!(!raw(&out) && out.contains(SHOWN), "dry run: {out:?}");

    let run = loop_cmd(&repo)
        .args(["run", "--codex-bin", fake_s])
        .env("LOOP_RUN_ID", "r")
        .env("LOOP_PLAIN_PROGRESS", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&fake);
    let (out, err) = text(&run);
    assert_eq!(run.status.code(), Some(exit::NOT_ALL_DONE), "{err}");
    assert!(!raw(&out) && !raw(&err) && err.contains(&format!("boom {SHOWN}")), "progress and status: {err:?}");

    let (out, _) = text(&loop_cmd(&repo).args(["status", "r"]).output().unwrap());
    assert!(!raw(&out) && out.contains(&format!("boom {SHOWN}")), "status: {out:?}");
    let (out, _) = text(&loop_cmd(&repo).args(["replay", "r"]).output().unwrap());
    assert!(!raw(&out) && out.contains(&format!("boom {SHOWN}")), "replay: {out:?}");

    let status = json(&loop_cmd(&repo).args(["status", "r", "--json"]).output().unwrap());
    assert!(status["issues"][0]["reason"].as_str().unwrap().contains(&format!("boom {EVIL}")), "{status}");
    let replay = json(&loop_cmd(&repo).args(["replay", "r", "--json"]).output().unwrap());
    let failed =
        replay["timeline"].as_array().unwrap().iter().find(|r| r["body"]["event"]["event"] == "phase_failed").unwrap();
    assert!(failed["body"]["event"]["reason"].as_str().unwrap().contains(&format!("boom {EVIL}")), "{failed}");
}

/// Runs `cmd` with stdout (and with `both`, stderr too) on a pipe whose reader has already gone.
fn closed_pipe(mut cmd: Command, both: bool) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    if both {
        let (r2, w2) = std::io::pipe().unwrap();
        drop(r2);
        cmd.stderr(w2);
    } else {
        cmd.stderr(Stdio::piped());
    }
    let mut child = cmd.stdout(writer).spawn().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    (child.wait().unwrap(), err)
}

#[test]
fn a_closed_pipe_ends_read_only_commands_quietly() {
    let repo = demo_repo();
    let out = loop_cmd(&repo)
        .args(["run", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "r")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    for args in [
        &["replay", "r", "--json"][..],
        &["replay", "r"],
        &["status", "r"],
        &["status", "--json"],
        &["runs"],
        &["plan"],
    ] {
        let mut c = loop_cmd(&repo);
        c.args(args);
        let (status, err) = closed_pipe(c, false);
        assert!(err.is_empty(), "{args:?}: {err}");
        // Like `cat`: SIGPIPE's default, not a panic (exit 101).
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{args:?}: {status:?}");
    }
}

fn finished_and_verified(repo: &TestRepo, run: &str) -> serde_json::Value {
    let r: Output = loop_cmd(repo).args(["replay", run, "--json"]).output().unwrap();
    let v = json(&r);
    assert_eq!(r.status.code(), Some(exit::OK), "{v}");
    assert_eq!(v["status"]["finished"], true, "{v}");
    v["status"].clone()
}

/// The run does not die between a decision and its record when its reader goes away: it runs to
/// its end, journals it, and exits with the run's own code.
#[test]
fn a_closed_pipe_costs_a_run_nothing() {
    let reference = demo_repo();
    let out = loop_cmd(&reference)
        .args(["run", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "r")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE));
    let want = states(&finished_and_verified(&reference, "r"));
    for args in [&["--json"][..], &["--json-events"], &[]] {
        let repo = demo_repo();
        let mut c = loop_cmd(&repo);
        c.args(["run", "--sim-scenario", "scenario.json"])
            .args(args)
            .env("LOOP_RUN_ID", "r")
            .env("LOOP_PLAIN_PROGRESS", "1");
        let (status, _) = closed_pipe(c, true);
        assert_eq!(status.code(), Some(exit::NOT_ALL_DONE), "{args:?}: {status:?}");
        assert_eq!(states(&finished_and_verified(&repo, "r")), want, "{args:?}");
    }
}
