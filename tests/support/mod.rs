//! Shared helpers for integration tests: temporary repos with issue docs, and running the real
//! `loop` binary with a fixed clock.

#![allow(dead_code)]

pub mod codex;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NOW: &str = "2026-01-01T00:00:00Z";

pub const DEMO_DOCS: &[(&str, &str)] = devloop::cli::demo::DOCS;
pub const DEMO_SCENARIO: &str = devloop::cli::demo::SCENARIO;

pub fn loop_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loop")
}

/// A command for the real binary with a deterministic environment.
pub fn loop_cmd(repo: &Path) -> Command {
    let mut c = Command::new(loop_bin());
    c.current_dir(repo)
        .env("LOOP_NOW", NOW)
        .env_remove("LOOP_FAULT_AFTER_APPEND")
        .env_remove("LOOP_RUN_ID")
        .env_remove("LOOP_STATE_DIR")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .stdin(std::process::Stdio::null());
    c
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00+0000")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00+0000")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A temporary git repo holding `files`, committed on main.
pub fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new().prefix("loop-test-").tempdir().expect("tempdir");
    let root = std::fs::canonicalize(t.path()).expect("canonical");
    git(&root, &["init", "-q", "-b", "main"]);
    for (rel, text) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    std::fs::write(root.join("README.md"), "test repo\n").expect("write");
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "docs"]);
    (t, root)
}

pub fn demo_repo() -> (tempfile::TempDir, PathBuf) {
    let (t, root) = repo_with(DEMO_DOCS);
    std::fs::write(root.join("scenario.json"), DEMO_SCENARIO).expect("write scenario");
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "scenario"]);
    (t, root)
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub fn json(o: &Output) -> serde_json::Value {
    let (out, err) = text(o);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"))
}

/// `[(id, state, fix_cycles)]` from a status object.
pub fn states(status: &serde_json::Value) -> Vec<(String, String, u64)> {
    status["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_string(),
                i["state"].as_str().expect("state").to_string(),
                i["fix_cycles"].as_u64().expect("fix_cycles"),
            )
        })
        .collect()
}

/// Rewrites record `seq` of a run's journal as a careful hand edit would: the file's framing
/// (frame checks, head) is rebuilt around the edited record, so only the hash chain can tell.
pub fn tamper_record(state: &Path, run: &str, seq: u64, f: impl FnOnce(&mut Vec<u8>)) {
    use devloop::journal::log::{scan_file, LogStore};
    use devloop::journal::Store;
    let path = state.join("runs").join(run).join("journal.log");
    let mut records = scan_file(&path, Some(run)).expect("scan").records;
    f(&mut records[seq as usize].1);
    let fresh = state.join("tampered");
    let _ = std::fs::remove_dir_all(&fresh);
    {
        let mut store = LogStore::create_in(&fresh, run).expect("create");
        store.append(&records).expect("append");
    }
    std::fs::rename(fresh.join("journal.log"), &path).expect("replace");
    std::fs::remove_dir_all(&fresh).expect("tidy");
}

/// Writes a file into the repo and commits it, so the guard's clean-checkout check holds.
pub fn write_committed(repo: &Path, name: &str, text: &str) {
    std::fs::write(repo.join(name), text).expect("write");
    git(repo, &["add", name]);
    git(repo, &["commit", "-q", "-m", name]);
}

/// The docs of a generated 14-issue milestone `GEN` whose dependencies form a DAG with chains,
/// diamonds and independent roots (tests/it/parallel.rs and tests/it/signals.rs add their scenarios).
pub fn generated_dag_docs() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..14 {
        let deps: Vec<String> = match i {
            0..=3 => vec![],
            4 => vec!["G-0".into()],
            5 => vec!["G-0".into(), "G-1".into()],
            6 => vec!["G-2".into()],
            7 => vec!["G-4".into(), "G-5".into()],
            8 => vec!["G-3".into()],
            9 => vec!["G-6".into()],
            10 => vec!["G-8".into(), "G-9".into()],
            11 => vec!["G-7".into()],
            12 => vec!["G-11".into(), "G-10".into()],
            _ => vec!["G-1".into()],
        };
        files.push((
            format!("docs/projects/gen/issues/G-{i}.md"),
            format!("---\nid: G-{i}\ntitle: generated {i}\nmilestone: GEN\nblocked_by: [{}]\n---\n", deps.join(", ")),
        ));
    }
    files
}

/// The state-changing transitions per issue, in order, from a verified `replay --json` object:
/// what must be identical between an interrupted-and-resumed run and an uninterrupted one.
pub fn timeline_transitions(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|r| r["from"] != r["to"] && r["to"].is_string())
        .map(|r| {
            let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
            (s(&r["body"]["issue"]), s(&r["from"]), s(&r["to"]))
        })
        .collect()
}
