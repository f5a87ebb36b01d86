//! A run killed mid-way, then its worktree damaged the way a power cut or a killed process tree
//! leaves it (issue #16: empty `.git` file, admin dir gone, `locked` = initializing, a stale
//! `index.lock`, a half-done removal): `loop resume` must repair what is loop's own, journal the
//! repair, and end exactly as an uninterrupted run: same states, same transitions, same branch
//! contents, no worktree left behind.

use std::path::{Path, PathBuf};

use crate::support::*;

const RUN: &str = "r";

fn run(repo: &TestRepo, fault_after: Option<u64>) -> std::process::Output {
    let mut c = loop_cmd(repo);
    c.args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "--json", "-q"])
        .env("LOOP_RUN_ID", RUN);
    if let Some(n) = fault_after {
        c.env("LOOP_FAULT_AFTER_APPEND", n.to_string());
    }
    c.output().expect("loop runs")
}

fn replay(repo: &TestRepo) -> serde_json::Value {
    let out = loop_cmd(repo).args(["replay", RUN, "--json"]).output().expect("replay");
    assert_eq!(out.status.code(), Some(exit::OK), "replay failed: {:?}", text(&out));
    let v = json(&out);
    assert_eq!(v["verified"], true);
    v
}

/// The state-changing transitions, in order.
fn transitions(v: &serde_json::Value) -> Vec<(String, String, String)> {
    timeline_transitions(v)
}

/// `(branch, commit count, tree)` of every branch loop made.
fn branch_contents(repo: &TestRepo) -> Vec<(String, String, String)> {
    let branches = git(repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/loop/"]);
    branches
        .lines()
        .map(|b| {
            let count = git(repo, &["rev-list", "--count", b]);
            let tree = git(repo, &["rev-parse", &format!("{b}^{{tree}}")]);
            (b.to_string(), count, tree)
        })
        .collect()
}

/// The number of records up to and including the first `event` of `issue`: the
/// `LOOP_FAULT_AFTER_APPEND` value that aborts right after it is durable.
fn records_through(v: &serde_json::Value, issue: &str, event: &str) -> u64 {
    let r = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .find(|r| r["body"]["issue"] == issue && r["body"]["event"]["event"] == event)
        .unwrap_or_else(|| panic!("no {event} for {issue} in the reference run"));
    r["seq"].as_u64().expect("seq") + 1
}

struct Reference {
    timeline: serde_json::Value,
    transitions: Vec<(String, String, String)>,
    branches: Vec<(String, String, String)>,
}

fn reference() -> Reference {
    let repo = demo_repo();
    let out = run(&repo, None);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let timeline = replay(&repo);
    Reference { transitions: transitions(&timeline), branches: branch_contents(&repo), timeline }
}

fn worktree(repo: &Path, issue: &str) -> PathBuf {
    repo.join(".loop/worktrees/M1-core").join(issue)
}

/// The worktree's admin dir, as its `.git` file names it.
fn admin_of(wt: &Path) -> PathBuf {
    let dotgit = std::fs::read_to_string(wt.join(".git")).expect("a .git file");
    PathBuf::from(dotgit.trim().strip_prefix("gitdir:").expect("gitdir:").trim())
}

/// Aborts the run after `n` records, damages it, resumes, and checks the end against the
/// uninterrupted run; returns the repairs journaled for `issue`.
fn crash_damage_resume(reference: &Reference, n: u64, issue: &str, damage: impl FnOnce(&TestRepo)) -> Vec<String> {
    let repo = demo_repo();
    let crashed = run(&repo, Some(n));
    assert_eq!(crashed.status.code(), None, "n={n}: the fault must abort the process: {:?}", text(&crashed));
    damage(&repo);
    let resumed = loop_cmd(&repo).args(["resume", RUN, "--json", "-q"]).output().unwrap();
    assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "n={n}: {:?}", text(&resumed));
    let v = replay(&repo);
    assert_eq!(transitions(&v), reference.transitions, "n={n}: transitions differ from the uninterrupted run");
    assert_eq!(branch_contents(&repo), reference.branches, "n={n}: branch contents differ");
    assert_eq!(git(&repo, &["status", "--porcelain"]), "", "n={n}");
    let wts = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(wts.matches("worktree ").count(), 1, "n={n}: leftover worktrees: {wts}");
    assert!(!repo.join(".loop/worktrees/M1-core").join(issue).exists(), "n={n}: {issue}'s worktree is still there");
    let repairs: Vec<String> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["body"]["kind"] == "worktree_repaired" && r["body"]["issue"] == issue)
        .flat_map(|r| r["body"]["repairs"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()))
        .collect();
    assert!(!repairs.is_empty(), "n={n}: no worktree_repaired record for {issue}");
    repairs
}

#[test]
fn damaged_worktrees_are_repaired_at_resume_and_the_run_ends_as_uninterrupted() {
    let reference = reference();
    let t = &reference.timeline;

    // A power cut after `git worktree add`: the `.git` file is empty.
    let n = records_through(t, "ORB-2", "work_finished");
    let repairs = crash_damage_resume(&reference, n, "ORB-2", |repo| {
        std::fs::write(worktree(repo, "ORB-2").join(".git"), "").unwrap();
    });
    assert!(repairs.iter().any(|r| r.contains(".git file is empty") && r.contains("rebuilt")), "{repairs:?}");

    // The admin dir under .git/worktrees/ is gone.
    let n = records_through(t, "ORB-2", "worktree_created");
    let repairs = crash_damage_resume(&reference, n, "ORB-2", |repo| {
        std::fs::remove_dir_all(admin_of(&worktree(repo, "ORB-2"))).unwrap();
    });
    assert!(repairs.iter().any(|r| r.contains("admin dir") && r.contains("missing")), "{repairs:?}");

    // Still locked "initializing" with a half-done checkout, though the add was journaled.
    let n = records_through(t, "ORB-3", "worktree_created");
    let repairs = crash_damage_resume(&reference, n, "ORB-3", |repo| {
        let wt = worktree(repo, "ORB-3");
        std::fs::write(admin_of(&wt).join("locked"), "initializing\n").unwrap();
        std::fs::remove_file(wt.join("README.md")).unwrap();
    });
    assert!(repairs.iter().any(|r| r.contains("initializing")), "{repairs:?}");

    // A stale index.lock left by loop's killed git child: the dev phase's commit needs the index.
    let n = records_through(t, "ORB-1", "phase_started");
    let repairs = crash_damage_resume(&reference, n, "ORB-1", |repo| {
        std::fs::write(admin_of(&worktree(repo, "ORB-1")).join("index.lock"), "").unwrap();
    });
    assert!(repairs.iter().any(|r| r.contains("index.lock") && r.contains("no live process")), "{repairs:?}");
}

#[test]
fn a_half_added_worktree_is_added_again_at_resume() {
    let reference = reference();
    // Killed inside `git worktree add` after the intent was journaled: the branch exists, the
    // admin dir is locked "initializing", the checkout is half done.
    let n = records_through(&reference.timeline, "ORB-3", "worktree_intent");
    let repairs = crash_damage_resume(&reference, n, "ORB-3", |repo| {
        let wt = worktree(repo, "ORB-3");
        let base = git(repo, &["rev-parse", "loop/M1-core/ORB-1"]);
        git(repo, &["worktree", "add", "-q", "-b", "loop/M1-core/ORB-3", &wt.to_string_lossy(), &base]);
        std::fs::write(admin_of(&wt).join("locked"), "initializing\n").unwrap();
        std::fs::remove_file(wt.join("README.md")).unwrap();
    });
    assert!(repairs.iter().any(|r| r.contains("initializing") && r.contains("worktree add")), "{repairs:?}");
}

#[test]
fn a_half_removed_worktree_has_its_removal_finished_at_resume() {
    let reference = reference();
    let n = records_through(&reference.timeline, "ORB-1", "review_finished");

    // Killed inside `git worktree remove`: some tracked files already deleted, `.git` still there.
    let repairs = crash_damage_resume(&reference, n, "ORB-1", |repo| {
        let wt = worktree(repo, "ORB-1");
        std::fs::remove_file(wt.join("README.md")).unwrap();
        std::fs::remove_dir_all(wt.join("docs")).unwrap();
    });
    assert!(repairs.iter().any(|r| r.contains("interrupted removal")), "{repairs:?}");

    // … or its `.git` file already deleted too.
    let repairs = crash_damage_resume(&reference, n, "ORB-1", |repo| {
        let wt = worktree(repo, "ORB-1");
        std::fs::remove_file(wt.join(".git")).unwrap();
        std::fs::remove_file(wt.join("README.md")).unwrap();
    });
    assert!(
        repairs.iter().any(|r| r.contains(".git file is missing") && r.contains("finished its removal")),
        "{repairs:?}"
    );
}

#[test]
fn a_stale_lock_held_by_a_live_process_is_left_alone() {
    // The lock check itself: a lock file some process has open is not stale.
    let repo = demo_repo();
    let crashed = run(&repo, Some(4));
    assert_eq!(crashed.status.code(), None, "{:?}", text(&crashed));
    let wt = worktree(&repo, "ORB-1");
    let lock = admin_of(&wt).join("index.lock");
    std::fs::write(&lock, "").unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    let resumed = loop_cmd(&repo).args(["resume", RUN, "--json", "-q"]).output().unwrap();
    drop(held);
    // git cannot take the lock, so the phase fails (as git says), and nothing removed the lock.
    assert!(lock.exists(), "a lock a live process holds was removed");
    let v = replay(&repo);
    assert!(
        !v["timeline"].as_array().unwrap().iter().any(|r| r["body"]["kind"] == "worktree_repaired"),
        "{:?}",
        text(&resumed)
    );
}
