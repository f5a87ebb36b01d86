//! The text of `plan`, `status` and `replay` on the demo repo, as snapshots (insta): a fixed
//! clock stepped per command, a fixed run id, and the test's paths redacted to `[ROOT]` and
//! `[HOME]`, so any change to what a user reads shows up in review as a diff of these files.
//! Accept an intended change with `INSTA_UPDATE=always cargo test --release --test it snapshots`
//! (or `cargo insta review`).

use crate::support::*;

/// `loop ARGS` on `repo`: stdout with the environment's paths redacted; the exit must be `code`.
fn shown(repo: &TestRepo, args: &[&str], code: i32) -> String {
    let out = loop_cmd(repo).args(args).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    repo.env().redact(&stdout)
}

/// The demo run with its scenario (ORB-4 ends Capped, so `loop run` exits NOT_ALL_DONE).
fn demo_run() -> TestRepo {
    let repo = demo_repo();
    let out = loop_cmd(&repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "snap")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    repo
}

#[test]
fn plan_text() {
    let repo = demo_repo();
    insta::assert_snapshot!("plan", shown(&repo, &["plan"], exit::OK));
}

#[test]
fn status_text() {
    let repo = demo_run();
    insta::assert_snapshot!("status", shown(&repo, &["status", "snap"], exit::OK));
}

#[test]
fn replay_text() {
    let repo = demo_run();
    insta::assert_snapshot!("replay", shown(&repo, &["replay", "snap"], exit::OK));
}

/// `loop run --dry-run` with a codex that is not installed: the compact summary (the warning
/// first, one line per phase) and the verbose one (every prompt).
fn dry_run(verbose: bool) -> String {
    let repo = demo_repo();
    let mut args = vec!["run", "--milestone", "M1-core", "--dry-run", "--codex-bin", "/nonexistent/codex"];
    if verbose {
        args.push("--verbose");
    }
    let out = loop_cmd(&repo).args(&args).env("LOOP_RUN_ID", "snap").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{args:?}: {stderr}");
    repo.env().redact(&stdout)
}

#[test]
fn dry_run_text() {
    insta::assert_snapshot!("dry_run", dry_run(false));
}

#[test]
fn dry_run_verbose_text() {
    insta::assert_snapshot!("dry_run_verbose", dry_run(true));
}
