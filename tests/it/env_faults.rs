//! loop's own troubles are not the issue's failure (issue #10 part 3): a full disk under git or
//! under the review doc stops the run as interrupted (exit 1, the cause named), leaves no issue in
//! a terminal state, and after the space is freed `loop resume` ends exactly as an undisturbed run.
//!
//! The disks are small tmpfs mounts, so these tests need root (CI runs as root); without it they
//! fail loudly rather than pass without having tried anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// A tmpfs mounted for the test's lifetime; unmounted on drop, even when the test fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("the mount command runs");
        assert!(
            out.status.success(),
            "these tests need to mount a small tmpfs (root, as in CI) to fill a disk for real; \
             `mount -t tmpfs` at {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir: dir.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !ok {
            // Something (a git child) still holds it: detach now, the kernel frees it later.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The demo's sample repo at `repo` (ORB-1 ← ORB-2, ORB-3 ← ORB-5 ← ORB-4; ORB-2, ORB-3 ← ORB-6), and a scenario
/// file beside it: the demo's script plus a dev phase for ORB-1 that runs `fill` once (the
/// marker keeps a resumed attempt from filling the disk again).
fn setup(repo: &TestRepo, scenario_dir: &Path, fill: &str) -> PathBuf {
    std::fs::create_dir_all(repo.path()).unwrap();
    devloop::cli::demo::write_sample_repo(repo.path()).unwrap();
    // These disks are meant to be small: pre-flight's free-space minimum is turned off, as a
    // team on a small disk would (the faults under test come during the run).
    repo.write_committed("loop.toml", "[run]\nmin_free_disk_mb = 0\n");
    let marker = scenario_dir.join("filled-once");
    let mut scenario: serde_json::Value = serde_json::from_str(DEMO_SCENARIO).unwrap();
    let shell = format!("test -e '{}' || {{ touch '{}'; {fill}; }}", marker.display(), marker.display());
    scenario["ORB-1"] = serde_json::json!({ "dev": format!("shell:{shell}") });
    let file = scenario_dir.join("scenario.json");
    std::fs::write(&file, scenario.to_string()).unwrap();
    file
}

fn run(repo: &TestRepo, state: &Path, scenario: &Path) -> Output {
    run_jobs(repo, state, scenario, "1")
}

fn run_jobs(repo: &TestRepo, state: &Path, scenario: &Path, jobs: &str) -> Output {
    loop_cmd(repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "-q", "--json", "--jobs", jobs, "--sim-scenario"])
        .arg(scenario)
        .arg("--state-dir")
        .arg(state)
        .env("LOOP_RUN_ID", "r")
        .output()
        .unwrap()
}

fn resume(repo: &TestRepo, state: &Path) -> Output {
    loop_cmd(repo).args(["resume", "r", "-q", "--json", "--state-dir"]).arg(state).output().unwrap()
}

fn status(repo: &TestRepo, state: &Path) -> serde_json::Value {
    let out = loop_cmd(repo).args(["status", "r", "--json", "--state-dir"]).arg(state).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    json(&out)
}

/// State-changing transitions per issue, from `replay --json` (which must verify).
fn transitions(repo: &TestRepo, state: &Path) -> Vec<(String, String, String)> {
    let out = loop_cmd(repo).args(["replay", "r", "--json", "--state-dir"]).arg(state).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "replay failed: {:?}", text(&out));
    let v = json(&out);
    timeline_transitions(&v)
}

/// How a run ended: states, state-changing transitions, branch trees.
struct End {
    states: Vec<(String, String, u64)>,
    transitions: Vec<(String, String, String)>,
    trees: Vec<String>,
}

/// The same scenario with nothing disturbed (the marker exists, so nothing fills any disk).
fn undisturbed(env: &std::sync::Arc<TestEnvironment>) -> End {
    let base = env.root();
    let (repo, state, sdir) = (env.dir_at(base.join("ref-repo")), base.join("ref-state"), base.join("ref-scenario"));
    std::fs::create_dir_all(&sdir).unwrap();
    let scenario = setup(&repo, &sdir, "true");
    std::fs::write(sdir.join("filled-once"), "").unwrap();
    let out = run(&repo, &state, &scenario);
    assert_eq!(
        out.status.code(),
        Some(exit::NOT_ALL_DONE),
        "the reference run ends with ORB-4 Capped: {:?}",
        text(&out)
    );
    End { states: states(&json(&out)), transitions: transitions(&repo, &state), trees: trees(&repo) }
}

/// Each issue branch's tree: what the run left in git.
fn trees(repo: &TestRepo) -> Vec<String> {
    ["ORB-1", "ORB-2", "ORB-3", "ORB-4", "ORB-5", "ORB-6"]
        .iter()
        .map(|i| git(repo, &["rev-parse", &format!("loop/M1-core/{i}^{{tree}}")]))
        .collect()
}

/// Exit 1 naming the cause, and no issue in a terminal state: ORB-1 (first in plan order) is
/// still in `phase`, the rest never started.
fn assert_stopped_not_failed(out: &Output, repo: &TestRepo, state: &Path, cause: &[&str], phase: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(exit::ERROR), "a full disk must stop the run with exit 1: {stdout}\n{stderr}");
    for c in cause {
        assert!(stderr.contains(c), "the message must name the cause ({c}): {stderr}");
    }
    assert!(stderr.contains("loop resume r"), "the message says how to continue: {stderr}");
    let st = status(repo, state);
    for (id, s, _) in states(&st) {
        let want = if id == "ORB-1" { phase } else { "Pending" };
        assert_eq!(s, want, "{id} must not end in a terminal state because the disk was full: {st}");
    }
}

#[test]
fn a_full_disk_under_git_add_stops_the_run_and_resume_ends_as_undisturbed() {
    let env = TestEnvironment::new();
    let base = env.root().to_path_buf();
    let End { states: ref_states, transitions: ref_transitions, trees: ref_trees } = undisturbed(&env);

    // The repository (and so git's object store) on a small disk; loop's state elsewhere.
    let disk = Tmpfs::mount(&base.join("disk"), "4m");
    let repo = env.dir_at(disk.dir.join("repo"));
    let state = base.join("state");
    let fill = disk.dir.join("fill");
    let scenario = setup(&repo, &base, &format!("head -c 16M /dev/zero > '{}'", fill.display()));

    let out = run(&repo, &state, &scenario);
    assert_stopped_not_failed(&out, &repo, &state, &["ORB-1", "git add -A", "No space left on device"], "Dev");

    std::fs::remove_file(&fill).unwrap();
    let resumed = resume(&repo, &state);
    assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&resumed));
    assert_eq!(states(&json(&resumed)), ref_states);
    assert_eq!(transitions(&repo, &state), ref_transitions, "the same transitions as the undisturbed run");
    assert_eq!(trees(&repo), ref_trees, "the same branch contents as the undisturbed run");
    drop(disk);
}

#[test]
fn a_full_disk_under_the_review_doc_stops_the_run_and_resume_ends_as_undisturbed() {
    let env = TestEnvironment::new();
    let base = env.root().to_path_buf();
    let End { states: ref_states, transitions: ref_transitions, .. } = undisturbed(&env);

    // The worktrees on a small disk; the repository and the journal elsewhere. ORB-1's dev
    // shell writes its work file first, then fills the disk: the simulated agent rewrites that
    // file in place (it fits), loop commits it, and the review doc is the first new file.
    let repo = env.dir_at(base.join("repo"));
    let state = base.join("state");
    let disk = Tmpfs::mount(&state.join("worktrees"), "4m");
    let fill = disk.dir.join("fill");
    let fill_cmd = format!(
        "mkdir -p loop-sim && head -c 512 /dev/zero > loop-sim/ORB-1.md && head -c 16M /dev/zero > '{}'",
        fill.display()
    );
    let scenario = setup(&repo, &base, &fill_cmd);

    let out = run(&repo, &state, &scenario);
    assert_stopped_not_failed(&out, &repo, &state, &["ORB-1", "review doc", "No space left on device"], "Review");

    std::fs::remove_file(&fill).unwrap();
    let resumed = resume(&repo, &state);
    assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&resumed));
    assert_eq!(states(&json(&resumed)), ref_states);
    assert_eq!(transitions(&repo, &state), ref_transitions, "the same transitions as the undisturbed run");
    drop(disk);
}

#[test]
fn a_full_disk_under_the_journal_is_an_io_error_and_resume_ends_as_undisturbed() {
    let env = TestEnvironment::new();
    let base = env.root().to_path_buf();
    let ref_states = undisturbed(&env).states;

    // The journals on a small disk, filled while three issues run: the next append (alone or in
    // a group) cannot be written.
    let repo = env.dir_at(base.join("repo"));
    let state = base.join("state");
    let disk = Tmpfs::mount(&state.join("runs"), "1m");
    let fill = disk.dir.join("fill");
    let scenario = setup(&repo, &base, &format!("head -c 4M /dev/zero > '{}'", fill.display()));

    let out = run_jobs(&repo, &state, &scenario, "3");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::ERROR), "an append that fails is an I/O error: {stdout}\n{stderr}");
    assert!(
        stderr.contains("appending to the journal failed") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(!stderr.contains("corrupt"), "a failed append is never reported as corruption: {stderr}");

    std::fs::remove_file(&fill).unwrap();
    let resumed = loop_cmd(&repo)
        .args(["resume", "r", "-q", "--json", "--jobs", "3", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&resumed));
    assert_eq!(states(&json(&resumed)), ref_states);
    let replay = loop_cmd(&repo).args(["replay", "r", "-q", "--state-dir"]).arg(&state).output().unwrap();
    assert_eq!(replay.status.code(), Some(exit::OK), "{:?}", text(&replay));
    drop(disk);
}

#[test]
fn everything_on_one_full_disk_reports_the_first_cause_and_resume_ends_as_undisturbed() {
    let env = TestEnvironment::new();
    let base = env.root().to_path_buf();
    let End { states: ref_states, trees: ref_trees, .. } = undisturbed(&env);

    // The usual layout: repository, worktrees and journal (<repo>/.loop) on one disk. ORB-1's
    // work file is written before the disk fills (as in the review-doc test), so git's object
    // store is the first to fail; the journal may or may not still take the interruption.
    let disk = Tmpfs::mount(&base.join("disk"), "4m");
    let repo = env.dir_at(disk.dir.join("repo"));
    let state = repo.join(".loop");
    let fill = disk.dir.join("fill");
    let fill_cmd = format!(
        "mkdir -p loop-sim && head -c 512 /dev/zero > loop-sim/ORB-1.md && head -c 16M /dev/zero > '{}'",
        fill.display()
    );
    let scenario = setup(&repo, &base, &fill_cmd);

    let out = run(&repo, &state, &scenario);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::ERROR), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ORB-1") && stderr.contains("git add -A") && stderr.contains("No space left on device"),
        "the first cause is reported, whether or not the journal could record it: {stderr}"
    );
    assert!(!stderr.contains("corrupt"), "{stderr}");

    std::fs::remove_file(&fill).unwrap();
    let resumed = resume(&repo, &state);
    assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&resumed));
    assert_eq!(states(&json(&resumed)), ref_states);
    assert_eq!(trees(&repo), ref_trees, "the same branch contents as the undisturbed run");
    let replay = loop_cmd(&repo).args(["replay", "r", "-q", "--state-dir"]).arg(&state).output().unwrap();
    assert_eq!(replay.status.code(), Some(exit::OK), "{:?}", text(&replay));
    drop(disk);
}
