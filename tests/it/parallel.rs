//! Parallel runs (`--jobs N`): same outcomes as sequential, crash-safe, lockable, interruptible.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// A generated milestone of 14 issues in a DAG, with a scenario that exercises fix cycles, the
/// cap, failures and blocked dependents.
fn generated() -> TestRepo {
    let mut files = generated_dag_docs();
    files.push((
        "scenario.json".into(),
        r#"{"G-1": {"reviews": ["changes_required", "pass"]},
            "G-2": {"reviews": ["changes_required", "changes_required", "changes_required"]},
            "G-3": {"dev": "failed"},
            "G-6": {"reviews": ["blocked"]},
            "G-13": {"reviews": ["changes_required", "changes_required", "pass"]}}"#
            .into(),
    ));
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    repo_with(&refs)
}

fn run(repo: &TestRepo, id: &str, jobs: &str, extra: &[(&str, &str)]) -> std::process::Output {
    let mut c = loop_cmd(repo);
    c.args(["run", "-m", "GEN", "--sim-scenario", "scenario.json", "--json", "-q", "--jobs", jobs]);
    c.env("LOOP_RUN_ID", id);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn final_states(out: &std::process::Output) -> Vec<(String, String, u64)> {
    let mut s = states(&json(out));
    s.sort();
    s
}

#[test]
fn jobs_4_reaches_the_same_states_as_jobs_1() {
    let seq = generated();
    let par = generated();
    let one = run(&seq, "seq", "1", &[]);
    let four = run(&par, "par", "4", &[]);
    assert_eq!(one.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&one));
    assert_eq!(four.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&four));
    let s1 = final_states(&one);
    assert_eq!(s1, final_states(&four));
    // Sanity: the scenario really produced a mix.
    let count = |st: &str| s1.iter().filter(|(_, s, _)| s == st).count();
    assert!(count("Done") >= 6 && count("Capped") == 1 && count("Failed") == 1 && count("Blocked") >= 3, "{s1:?}");
    for (repo, id) in [(&seq, "seq"), (&par, "par")] {
        let r = loop_cmd(repo).args(["replay", id, "-q"]).output().unwrap();
        assert_eq!(r.status.code(), Some(exit::OK), "{:?}", text(&r));
    }
    // The parallel run really overlapped issues: some phase started while another was running.
    let r = json(&loop_cmd(&par).args(["replay", "par", "--json"]).output().unwrap());
    let mut open = std::collections::HashSet::new();
    let mut overlapped = false;
    for rec in r["timeline"].as_array().unwrap() {
        let issue = rec["body"]["issue"].as_str().unwrap_or("").to_string();
        match (rec["from"].as_str(), rec["to"].as_str()) {
            (Some("WorktreeReady"), Some("Dev")) => {
                overlapped |= !open.is_empty();
                open.insert(issue);
            }
            (_, Some("Done" | "Capped" | "Failed" | "Blocked")) => {
                open.remove(&issue);
            }
            _ => {}
        }
    }
    assert!(overlapped, "--jobs 4 never ran two issues at once");
}

#[test]
fn crash_during_a_parallel_run_resumes_to_the_same_states() {
    let reference = generated();
    let want = final_states(&run(&reference, "ref", "4", &[]));
    let r = json(&loop_cmd(&reference).args(["replay", "ref", "--json"]).output().unwrap());
    let total = r["records"].as_u64().unwrap();
    // A sample of crash points across the whole run (every append would take minutes).
    let points: Vec<u64> = (1..total).filter(|n| n % 9 == 1 || *n == total - 1).collect();
    assert!(points.len() >= 8);
    for n in points {
        let repo = generated();
        let crashed = run(&repo, "c", "4", &[("LOOP_FAULT_AFTER_APPEND", &n.to_string())]);
        assert_eq!(crashed.status.code(), None, "n={n}: {:?}", text(&crashed));
        let resumed = loop_cmd(&repo).args(["resume", "c", "--json", "-q", "--jobs", "4"]).output().unwrap();
        assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "n={n}: {:?}", text(&resumed));
        assert_eq!(final_states(&resumed), want, "n={n}");
        let rp = loop_cmd(&repo).args(["replay", "c", "-q"]).output().unwrap();
        assert_eq!(rp.status.code(), Some(exit::OK), "n={n}: {:?}", text(&rp));
        // Only the Failed/Blocked-by-review issues keep worktrees.
        let wts = git(&repo, &["worktree", "list", "--porcelain"]);
        assert!(wts.matches("worktree ").count() <= 3, "n={n}: {wts}");
    }
}

/// Polls `status RUN` until at least `n` issues are in Dev (20 s at most).
fn wait_for_dev(repo: &TestRepo, run: &str, n: usize, never: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = loop_cmd(repo).args(["status", run, "--json"]).output().unwrap();
        if st.status.success()
            && json(&st)["issues"].as_array().unwrap().iter().filter(|i| i["state"] == "Dev").count() >= n
        {
            return;
        }
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_run_of_an_active_milestone_is_refused_naming_the_run() {
    let repo = generated();
    write_committed(&repo, "hang.json", r#"{"G-0": {"dev": "hang"}}"#);
    let mut first = loop_cmd(&repo)
        .args(["run", "-m", "GEN", "--sim-scenario", "hang.json", "--phase-timeout", "60", "-q", "--jobs", "2"])
        .env("LOOP_RUN_ID", "first")
        .spawn()
        .unwrap();
    wait_for_dev(&repo, "first", 1, "the first run never started a phase");
    let second = loop_cmd(&repo)
        .args(["run", "-m", "GEN", "--agent", "sim", "-q"])
        .env("LOOP_RUN_ID", "second")
        .output()
        .unwrap();
    let (_, err) = text(&second);
    assert_eq!(second.status.code(), Some(exit::LOCKED), "{err}");
    assert!(err.contains("milestone GEN is already being run by run first (pid"), "{err}");
    let _ = Command::new("kill").args(["-INT", &first.id().to_string()]).status();
    assert_eq!(first.wait().unwrap().code(), Some(exit::INTERRUPTED));
}

#[test]
fn ctrl_c_stops_every_running_phase_and_resume_continues_them_all() {
    let repo = generated();
    write_committed(&repo, "hang.json", r#"{"G-0": {"dev": "hang"}, "G-1": {"dev": "hang"}, "G-2": {"dev": "hang"}}"#);
    let mut child = loop_cmd(&repo)
        .args(["run", "-m", "GEN", "--sim-scenario", "hang.json", "--phase-timeout", "8", "-q", "--jobs", "3"])
        .env("LOOP_RUN_ID", "int")
        .spawn()
        .unwrap();
    wait_for_dev(&repo, "int", 3, "three phases never ran at once");
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert_eq!(child.wait().unwrap().code(), Some(exit::INTERRUPTED));
    let r = json(&loop_cmd(&repo).args(["replay", "int", "--json"]).output().unwrap());
    let interrupted: Vec<String> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["body"]["event"]["event"] == "interrupted")
        .map(|x| x["body"]["issue"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = interrupted.clone();
    sorted.sort();
    assert_eq!(sorted, ["G-0", "G-1", "G-2"], "each running issue's interruption is journaled");
    let ps = Command::new("pgrep").args(["-f", "sleep 3600"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ps.stdout).trim().is_empty(), "an agent process group survived Ctrl-C");

    // Resume continues all three (their recorded scenario hangs again, so each now times out).
    let out = loop_cmd(&repo).args(["resume", "int", "--json", "-q", "--jobs", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let v = json(&out);
    for id in ["G-0", "G-1", "G-2"] {
        let i = v["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap();
        assert_eq!(i["state"], "Failed", "{i}");
        assert!(i["reason"].as_str().unwrap().contains("timed out"), "{i}");
    }
    let tl = text(&loop_cmd(&repo).args(["replay", "int"]).output().unwrap()).0;
    assert!(tl.matches("dev (attempt 2)").count() == 3, "{tl}");
}
