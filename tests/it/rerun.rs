//! Retry and re-run through the real binary (the simulated agent): `loop retry` reopens issues
//! of a finished run, and `loop run` of a milestone that earlier runs worked on carries their
//! Done issues over and goes on on loop's own branches (`--fresh` starts over on new ones).

use std::process::Output;

use crate::support::*;

/// A milestone `RT`: a chain A → B → C and an independent D.
fn docs() -> Vec<(&'static str, &'static str)> {
    vec![
        ("docs/projects/rt/issues/A.md", "---\nid: A\ntitle: first\nmilestone: RT\nblocked_by: []\n---\n"),
        ("docs/projects/rt/issues/B.md", "---\nid: B\ntitle: second\nmilestone: RT\nblocked_by: [A]\n---\n"),
        ("docs/projects/rt/issues/C.md", "---\nid: C\ntitle: third\nmilestone: RT\nblocked_by: [B]\n---\n"),
        ("docs/projects/rt/issues/D.md", "---\nid: D\ntitle: apart\nmilestone: RT\nblocked_by: []\n---\n"),
    ]
}

fn rt_repo(scenarios: &[(&str, &str)]) -> TestRepo {
    repo_of(&docs(), scenarios)
}

fn repo_of(docs: &[(&str, &str)], scenarios: &[(&str, &str)]) -> TestRepo {
    let repo = repo_with(docs);
    for (name, text) in scenarios {
        write_committed(&repo, name, text);
    }
    repo
}

/// `loop run -m RT` as run `id` with the scenario file and extra flags.
fn run(repo: &TestRepo, id: &str, scenario: &str, extra: &[&str]) -> Output {
    loop_cmd(repo)
        .args(["run", "-m", "RT", "--sim-scenario", scenario, "--json", "-q"])
        .args(extra)
        .env("LOOP_RUN_ID", id)
        .output()
        .expect("loop runs")
}

fn retry(repo: &TestRepo, args: &[&str]) -> Output {
    loop_cmd(repo).arg("retry").args(args).args(["--json", "-q"]).output().expect("loop retry runs")
}

fn by_id(v: &serde_json::Value, id: &str) -> serde_json::Value {
    v["issues"].as_array().expect("issues").iter().find(|i| i["id"] == id).expect("issue").clone()
}

fn sorted(mut v: Vec<(String, String, u64)>) -> Vec<(String, String, u64)> {
    v.sort();
    v
}

fn expect_states(v: &serde_json::Value, want: &[(&str, &str, u64)]) {
    let want: Vec<(String, String, u64)> = want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), *c)).collect();
    assert_eq!(sorted(states(v)), sorted(want), "{v}");
}

/// The run's records, verified by `loop replay --json`.
fn timeline(repo: &TestRepo, run: &str) -> Vec<serde_json::Value> {
    let out = loop_cmd(repo).args(["replay", run, "--json"]).output().expect("replay");
    assert_eq!(out.status.code(), Some(exit::OK), "replay failed: {:?}", text(&out));
    let v = json(&out);
    assert_eq!(v["verified"], true);
    v["timeline"].as_array().expect("timeline").clone()
}

/// How many agent phases of `issue` the run started (each `phase_started` is one agent call).
fn phases(timeline: &[serde_json::Value], issue: &str, phase: Option<&str>) -> usize {
    timeline
        .iter()
        .filter(|r| r["body"]["issue"] == issue && r["body"]["event"]["event"] == "phase_started")
        .filter(|r| phase.is_none_or(|p| r["body"]["event"]["phase"] == p))
        .count()
}

fn records(repo: &TestRepo, run: &str) -> u64 {
    let out = loop_cmd(repo).args(["status", run, "--json"]).output().expect("status");
    json(&out)["records"].as_u64().expect("records")
}

#[test]
fn retry_of_a_capped_issue_with_one_more_fix_cycle_reaches_done_and_reopens_its_dependents() {
    let scenario = r#"{"A": {"reviews": ["changes_required", "changes_required", "pass"]}}"#;
    let repo = rt_repo(&[("s.json", scenario)]);
    let first = run(&repo, "r1", "s.json", &["--max-fix-cycles", "1"]);
    assert_eq!(first.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&first));
    let v = json(&first);
    expect_states(&v, &[("A", "Capped", 1), ("B", "Blocked", 0), ("C", "Blocked", 0), ("D", "Done", 0)]);
    assert!(by_id(&v, "A")["worktree"]["removed"].as_bool().unwrap(), "{v}");
    let dev_tip = git(&repo, &["rev-parse", "loop/RT/A"]);

    let out = retry(&repo, &["r1", "A", "--fix-cycles", "1"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    expect_states(&v, &[("A", "Done", 2), ("B", "Done", 0), ("C", "Done", 0), ("D", "Done", 0)]);
    let reopened: Vec<(String, u64)> = v["reopened"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["issue"].as_str().unwrap().to_string(), r["extra_fix_cycles"].as_u64().unwrap()))
        .collect();
    assert_eq!(reopened, [("A".to_string(), 1), ("B".to_string(), 0), ("C".to_string(), 0)]);
    assert_eq!(v["finished"], true);

    // The same branch goes on: the retry's fix builds on the first run's work.
    git(&repo, &["merge-base", "--is-ancestor", &dev_tip, "loop/RT/A"]);
    let log = git(&repo, &["log", "--format=%s", "loop/RT/A"]);
    assert!(log.contains("A: fix cycle 2"), "{log}");
    // B builds on A's finished work.
    git(&repo, &["merge-base", "--is-ancestor", "loop/RT/A", "loop/RT/B"]);

    // Dev is not run again; one more fix and one more review are.
    let t = timeline(&repo, "r1");
    assert_eq!(
        (phases(&t, "A", Some("dev")), phases(&t, "A", Some("fix")), phases(&t, "A", Some("review"))),
        (1, 2, 3)
    );
    assert_eq!(phases(&t, "D", None), 2, "D is not touched by the retry");
    assert_eq!(t.iter().filter(|r| r["body"]["kind"] == "run_finished").count(), 2, "finished again");
    let st = json(&loop_cmd(&repo).args(["status", "r1", "--json"]).output().unwrap());
    assert_eq!(st["finished"], true);
}

#[test]
fn retry_of_a_blocked_dependency_reopens_what_it_blocked() {
    let repo = rt_repo(&[("s.json", r#"{"A": {"reviews": ["blocked", "pass"]}}"#)]);
    let first = run(&repo, "r1", "s.json", &[]);
    assert_eq!(first.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&first));
    let v = json(&first);
    expect_states(&v, &[("A", "Blocked", 0), ("B", "Blocked", 0), ("C", "Blocked", 0), ("D", "Done", 0)]);
    assert!(by_id(&v, "C")["reason"].as_str().unwrap().contains("dependency B"), "{v}");
    // A blocked by its review keeps its worktree, which the retry uses again.
    assert!(repo.join(".loop/worktrees/RT/A").exists());

    let out = retry(&repo, &["r1", "A"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    expect_states(&v, &[("A", "Done", 1), ("B", "Done", 0), ("C", "Done", 0), ("D", "Done", 0)]);
    assert!(!repo.join(".loop/worktrees/RT/A").exists(), "removed once Done");
    let t = timeline(&repo, "r1");
    assert_eq!(phases(&t, "B", Some("dev")), 1);
    assert_eq!(phases(&t, "C", Some("dev")), 1);
}

#[test]
fn retry_refuses_unknown_running_and_done_issues_writing_nothing() {
    let repo = rt_repo(&[("s.json", r#"{"A": {"dev": "failed"}}"#)]);
    let first = run(&repo, "r1", "s.json", &[]);
    assert_eq!(first.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&first));
    let before = records(&repo, "r1");

    let out = retry(&repo, &["r1", "D"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{:?}", text(&out));
    let (_, err) = text(&out);
    assert!(err.contains("issue D of run r1 is Done"), "{err}");

    let out = retry(&repo, &["r1", "A", "ZZ-9"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let (_, err) = text(&out);
    assert!(err.contains("retry ZZ-9: not an issue of run r1 (its issues: A, B, C, D)"), "{err}");

    let out = retry(&repo, &["nope", "A"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let out = loop_cmd(&repo).args(["retry", "r1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "an issue is required");

    assert_eq!(records(&repo, "r1"), before, "a refused retry writes nothing");
    // A Failed dev goes back to dev (on its kept worktree) and fails the same way again.
    let out = retry(&repo, &["r1", "A"]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let t = timeline(&repo, "r1");
    assert_eq!(phases(&t, "A", Some("dev")), 2);
    assert!(records(&repo, "r1") > before);

    // An issue a crash left in the middle is for `loop resume`, not retry.
    let repo = rt_repo(&[("ok.json", "{}")]);
    let out = loop_cmd(&repo)
        .args(["run", "-m", "RT", "--sim-scenario", "ok.json", "-q"])
        .env("LOOP_RUN_ID", "cut")
        .env("LOOP_FAULT_AFTER_APPEND", "4")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(exit::OK));
    let before = records(&repo, "cut");
    let out = retry(&repo, &["cut", "A"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{:?}", text(&out));
    let (_, err) = text(&out);
    assert!(err.contains("issue A of run cut is Dev; only Failed, Capped or Blocked issues can be retried"), "{err}");
    assert!(err.contains("`loop resume` continues it"), "{err}");
    assert_eq!(records(&repo, "cut"), before);
}

#[test]
fn a_second_run_carries_over_what_is_done_and_runs_the_rest_on_loops_branches() {
    let repo = rt_repo(&[("crash.json", r#"{"A": {"dev": "crash"}}"#), ("ok.json", "{}")]);
    let first = run(&repo, "r1", "crash.json", &[]);
    assert_eq!(first.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&first));
    expect_states(&json(&first), &[("A", "Failed", 0), ("B", "Blocked", 0), ("C", "Blocked", 0), ("D", "Done", 0)]);
    let d_tip = git(&repo, &["rev-parse", "loop/RT/D"]);
    assert!(repo.join(".loop/worktrees/RT/A").exists(), "A's worktree is kept after its failure");

    let second = run(&repo, "r2", "ok.json", &[]);
    assert_eq!(second.status.code(), Some(exit::OK), "{:?}", text(&second));
    let v = json(&second);
    expect_states(&v, &[("A", "Done", 0), ("B", "Done", 0), ("C", "Done", 0), ("D", "Done", 0)]);
    assert_eq!(by_id(&v, "D")["carried_over"]["run"], "r1", "{v}");
    assert_eq!(by_id(&v, "D")["carried_over"]["tip"], d_tip.as_str());
    assert!(by_id(&v, "A")["carried_over"].is_null());
    assert_eq!(git(&repo, &["rev-parse", "loop/RT/D"]), d_tip, "a carried-over branch is not touched");

    // Only the rest ran: no agent call for D in the second run.
    let t = timeline(&repo, "r2");
    assert_eq!(phases(&t, "D", None), 0);
    assert_eq!(phases(&t, "A", Some("dev")), 1);
    let carried: Vec<&serde_json::Value> = t.iter().filter(|r| r["body"]["event"]["event"] == "carried_over").collect();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0]["body"]["issue"], "D");
    // A went on on loop's own branch from the first run (the worktree it kept, adopted).
    let a = by_id(&v, "A");
    assert_eq!(a["worktree"]["branch"], "loop/RT/A");

    let st = loop_cmd(&repo).args(["status", "r2"]).output().unwrap();
    let (_, err) = text(&st);
    let (out, _) = text(&st);
    let shown = format!("{out}{err}");
    assert!(shown.contains("carried over from r1"), "{shown}");

    // A third run has nothing left to do: all four are carried over, no agent runs.
    let third = run(&repo, "r3", "ok.json", &[]);
    assert_eq!(third.status.code(), Some(exit::OK), "{:?}", text(&third));
    let t = timeline(&repo, "r3");
    assert_eq!(["A", "B", "C", "D"].iter().map(|i| phases(&t, i, None)).sum::<usize>(), 0);
    let v = json(&third);
    assert_eq!(by_id(&v, "D")["carried_over"]["run"], "r1", "the run that did the work");
    assert_eq!(by_id(&v, "A")["carried_over"]["run"], "r2");
}

#[test]
fn a_done_issue_whose_branch_moved_runs_again_and_so_do_its_dependents() {
    let repo = rt_repo(&[("ok.json", "{}")]);
    assert_eq!(run(&repo, "r1", "ok.json", &[]).status.code(), Some(exit::OK));
    // Someone moved loop's branch of B after the run.
    let a_tip = git(&repo, &["rev-parse", "loop/RT/A"]);
    git(&repo, &["branch", "-f", "loop/RT/B", &a_tip]);

    let out = run(&repo, "r2", "ok.json", &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let (_, err) = text(&out);
    assert!(err.contains("B: Done in run r1, but branch loop/RT/B moved"), "{err}");
    assert!(err.contains("C: Done in run r1, but B run again"), "{err}");
    let t = timeline(&repo, "r2");
    assert_eq!((phases(&t, "A", None), phases(&t, "D", None)), (0, 0));
    assert_eq!((phases(&t, "B", Some("dev")), phases(&t, "C", Some("dev"))), (1, 1));
}

#[test]
fn fresh_starts_over_on_new_branches_and_leaves_the_old_ones_alone() {
    let repo = rt_repo(&[("crash.json", r#"{"A": {"dev": "crash"}}"#), ("ok.json", "{}")]);
    assert_eq!(run(&repo, "r1", "crash.json", &[]).status.code(), Some(exit::NOT_ALL_DONE));
    let before = git(&repo, &["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/loop/RT"]);

    let out = run(&repo, "r2", "ok.json", &["--fresh"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    expect_states(&v, &[("A", "Done", 0), ("B", "Done", 0), ("C", "Done", 0), ("D", "Done", 0)]);
    for id in ["A", "B", "C", "D"] {
        assert_eq!(by_id(&v, id)["worktree"]["branch"], format!("loop/RT-r2/{id}"), "{v}");
        assert!(by_id(&v, id)["carried_over"].is_null());
    }
    let t = timeline(&repo, "r2");
    assert_eq!(phases(&t, "D", Some("dev")), 1, "--fresh runs the Done ones again");
    let after = git(&repo, &["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/loop/RT"]);
    assert_eq!(before, after, "the first run's branches are untouched");

    // The next run goes on with the fresh names: everything is carried over from r2.
    let out = run(&repo, "r3", "ok.json", &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    assert_eq!(by_id(&v, "A")["carried_over"]["branch"], "loop/RT-r2/A", "{v}");
}

/// The state-changing transitions of a run, from a verified replay.
fn transitions(repo: &TestRepo, run: &str) -> Vec<(String, String, String)> {
    let out = loop_cmd(repo).args(["replay", run, "--json"]).output().expect("replay");
    assert_eq!(out.status.code(), Some(exit::OK), "replay failed: {:?}", text(&out));
    timeline_transitions(&json(&out))
}

/// A retry (and a re-run) killed right after any of its records is durable, then resumed,
/// ends exactly as the uninterrupted one: same transitions, no worktree left behind.
#[test]
fn crash_after_every_append_of_a_retry_or_a_rerun_then_resume_matches_the_uninterrupted_one() {
    // A and B only: every append of the retry is a crash point, each a run of its own.
    let scenario = r#"{"A": {"reviews": ["changes_required", "pass"]}}"#;
    let capped = || {
        let repo = repo_of(&docs()[..2], &[("s.json", scenario)]);
        let first = run(&repo, "r1", "s.json", &["--max-fix-cycles", "0"]);
        assert_eq!(first.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&first));
        repo
    };
    let clean = capped();
    let before = records(&clean, "r1");
    assert_eq!(retry(&clean, &["r1", "A"]).status.code(), Some(exit::OK));
    let reference = transitions(&clean, "r1");
    let appended = records(&clean, "r1") - before;
    assert!(appended > 12, "the retry journals {appended} records");
    for n in 1..appended {
        let repo = capped();
        let crashed = loop_cmd(&repo)
            .args(["retry", "r1", "A", "-q"])
            .env("LOOP_FAULT_AFTER_APPEND", n.to_string())
            .output()
            .unwrap();
        assert_eq!(crashed.status.code(), None, "n={n}: the fault must abort the process: {:?}", text(&crashed));
        let resumed = loop_cmd(&repo).args(["resume", "r1", "--json", "-q"]).output().unwrap();
        assert_eq!(resumed.status.code(), Some(exit::OK), "n={n}: {:?}", text(&resumed));
        assert_eq!(transitions(&repo, "r1"), reference, "n={n}: transitions differ from the uninterrupted retry");
        let wts = git(&repo, &["worktree", "list", "--porcelain"]);
        assert_eq!(wts.matches("worktree ").count(), 1, "n={n}: leftover worktrees: {wts}");
    }

    // A re-run cut right after `run_started` (or its first `carried_over`) carries over at resume.
    let rerun = |fault: Option<u64>| {
        let repo = rt_repo(&[("crash.json", r#"{"C": {"dev": "crash"}}"#), ("ok.json", "{}")]);
        assert_eq!(run(&repo, "r1", "crash.json", &[]).status.code(), Some(exit::NOT_ALL_DONE));
        let mut cmd = loop_cmd(&repo);
        cmd.args(["run", "-m", "RT", "--sim-scenario", "ok.json", "-q"]).env("LOOP_RUN_ID", "r2");
        if let Some(n) = fault {
            cmd.env("LOOP_FAULT_AFTER_APPEND", n.to_string());
            assert_eq!(cmd.output().unwrap().status.code(), None, "n={n}");
            let resumed = loop_cmd(&repo).args(["resume", "r2", "-q"]).output().unwrap();
            assert_eq!(resumed.status.code(), Some(exit::OK), "n={n}: {:?}", text(&resumed));
        } else {
            assert_eq!(cmd.output().unwrap().status.code(), Some(exit::OK));
        }
        let t = timeline(&repo, "r2");
        let carried: Vec<String> = t
            .iter()
            .filter(|r| r["body"]["event"]["event"] == "carried_over")
            .map(|r| r["body"]["issue"].as_str().unwrap().to_string())
            .collect();
        (transitions(&repo, "r2"), carried)
    };
    let (reference, carried) = rerun(None);
    assert_eq!(carried, ["A", "B", "D"]);
    for n in 1..=3 {
        assert_eq!(rerun(Some(n)), (reference.clone(), carried.clone()), "n={n}");
    }
}
