//! End-to-end tests of the core loop with the real binary on temporary git repos.

use std::process::Command;

use crate::support::*;

fn run_demo_scenario(repo: &TestRepo, run_id: &str) -> std::process::Output {
    loop_cmd(repo)
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "scenario.json", "--json", "-q"])
        .env("LOOP_RUN_ID", run_id)
        .output()
        .expect("loop runs")
}

fn expected_final() -> Vec<(String, String, u64)> {
    [
        ("ORB-1", "Done", 0),
        ("ORB-2", "Done", 1),
        ("ORB-3", "Done", 0),
        ("ORB-5", "Done", 0),
        ("ORB-4", "Capped", 2),
        ("ORB-6", "Done", 0),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
    .collect()
}

/// The state-changing transitions per issue, from `replay --json`: what must be identical
/// between an interrupted-and-resumed run and an uninterrupted one.
fn transitions(repo: &TestRepo, run: &str) -> Vec<(String, String, String)> {
    let out = loop_cmd(repo).args(["replay", run, "--json"]).output().expect("replay");
    assert_eq!(out.status.code(), Some(exit::OK), "replay failed: {:?}", text(&out));
    let v = json(&out);
    assert_eq!(v["verified"], true);
    timeline_transitions(&v)
}

#[test]
fn full_run_reaches_expected_states_and_commits() {
    let repo = demo_repo();
    let out = run_demo_scenario(&repo, "full");
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "one issue is Capped: {:?}", text(&out));
    let status = json(&out);
    assert_eq!(status["run_id"], "full");
    assert_eq!(states(&status), expected_final());
    // Worktrees of Done/Capped issues are removed, branches stay with the agent's commits.
    assert!(!repo.join(".loop/worktrees/M1-core/ORB-1").exists());
    let log = git(&repo, &["log", "--format=%s", "loop/M1-core/ORB-2"]);
    assert!(log.contains("ORB-2: fix cycle 1"), "{log}");
    assert!(log.contains("ORB-2: dev"), "{log}");
    // ORB-2 builds on ORB-1's branch (its only dependency).
    let base = git(&repo, &["merge-base", "--is-ancestor", "loop/M1-core/ORB-1", "loop/M1-core/ORB-2"]);
    assert_eq!(base, "");
    // The main checkout is untouched, .loop is ignored.
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    // status agrees with run --json.
    let st = loop_cmd(&repo).args(["status", "--json"]).output().unwrap();
    assert_eq!(states(&json(&st)), expected_final());
}

#[test]
fn crash_after_every_append_then_resume_matches_uninterrupted_run() {
    let clean_repo = demo_repo();
    assert_eq!(run_demo_scenario(&clean_repo, "clean").status.code(), Some(exit::NOT_ALL_DONE));
    let reference = transitions(&clean_repo, "clean");
    let replay = loop_cmd(&clean_repo).args(["replay", "clean", "--json"]).output().unwrap();
    let total = json(&replay)["records"].as_u64().unwrap();
    assert!(total > 40, "the demo scenario journals {total} records");

    for n in 1..total {
        let repo = demo_repo();
        let crashed = loop_cmd(&repo)
            .args(["run", "--milestone", "M1-core", "--sim-scenario", "scenario.json", "-q"])
            .env("LOOP_RUN_ID", "r")
            .env("LOOP_FAULT_AFTER_APPEND", n.to_string())
            .output()
            .unwrap();
        assert_eq!(crashed.status.code(), None, "n={n}: the fault must abort the process: {:?}", text(&crashed));
        let resumed = loop_cmd(&repo).args(["resume", "r", "--json", "-q"]).output().unwrap();
        assert_eq!(resumed.status.code(), Some(exit::NOT_ALL_DONE), "n={n}: {:?}", text(&resumed));
        assert_eq!(states(&json(&resumed)), expected_final(), "n={n}");
        assert_eq!(transitions(&repo, "r"), reference, "n={n}: transitions differ from the uninterrupted run");
        assert_eq!(git(&repo, &["status", "--porcelain"]), "", "n={n}");
        let wts = git(&repo, &["worktree", "list", "--porcelain"]);
        assert_eq!(wts.matches("worktree ").count(), 1, "n={n}: leftover worktrees: {wts}");
    }
}

#[test]
fn replay_detects_a_flipped_byte_in_the_store_and_in_an_export() {
    let repo = demo_repo();
    run_demo_scenario(&repo, "flip");
    let export = repo.join("flip.loopj");
    let out = loop_cmd(&repo).args(["export", "flip", "--out"]).arg(&export).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let ok = loop_cmd(&repo).args(["replay", "--file"]).arg(&export).output().unwrap();
    assert_eq!(ok.status.code(), Some(exit::OK), "{:?}", text(&ok));
    // #14: `--out -` writes the same bytes to stdout; `--json` says what went where; no run id
    // means the newest run.
    let piped = loop_cmd(&repo).args(["export", "--out", "-"]).output().unwrap();
    assert_eq!(piped.status.code(), Some(exit::OK), "{:?}", text(&piped));
    assert_eq!(piped.stdout, std::fs::read(&export).unwrap());
    let again = repo.join("again.loopj");
    let said = loop_cmd(&repo).args(["export", "flip", "--json", "--out"]).arg(&again).output().unwrap();
    let v = json(&said);
    assert_eq!((v["run_id"].as_str(), v["out"].as_str()), (Some("flip"), again.to_str()), "{v}");
    assert!(v["records"].as_u64().unwrap() > 10, "{v}");

    // Every single-byte flip of the export is caught, by framing or by hash.
    let bytes = std::fs::read(&export).unwrap();
    for i in (0..bytes.len()).step_by(97) {
        let mut b = bytes.clone();
        b[i] ^= 0x20;
        let p = repo.join("bad.loopj");
        std::fs::write(&p, &b).unwrap();
        let out = loop_cmd(&repo).args(["replay", "-q", "--file"]).arg(&p).output().unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(exit::CORRUPT), "flip at byte {i} went unnoticed: {err}");
        assert!(err.contains("record") || err.contains("header"), "flip at {i}: message names no record: {err}");
    }

    // Edit one stored record, framing rebuilt around it: replay names its sequence number.
    tamper_record(&repo.join(".loop"), "flip", 7, |v| {
        let mid = v.len() / 2;
        v[mid] ^= 0x01;
    });
    let out = loop_cmd(&repo).args(["replay", "flip"]).output().unwrap();
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(exit::CORRUPT), "{err}");
    assert!(err.contains("corrupt at record 7"), "{err}");
    // The timeline up to the damage is still shown.
    assert!(stdout.contains("#6 "), "{stdout}");
    let st = loop_cmd(&repo).args(["status", "flip"]).output().unwrap();
    assert_eq!(st.status.code(), Some(exit::CORRUPT), "status refuses a corrupt journal: {:?}", text(&st));
}

#[test]
fn golden_journal_replays() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/journals/demo-golden.loopj");
    let out = Command::new(loop_bin()).args(["replay", "--json", "--file", golden]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    assert_eq!(v["verified"], true);
    assert_eq!(v["run_id"], "golden-demo");
    // Recorded before the demo gained ORB-6 (the diamond): the journal is kept as it was, to
    // prove older journals still replay.
    let mut before_orb6 = expected_final();
    before_orb6.retain(|(id, _, _)| id != "ORB-6");
    assert_eq!(states(&v["status"]), before_orb6);
}

#[test]
fn second_process_on_a_running_run_is_refused_and_ctrl_c_is_resumable() {
    let repo = demo_repo();
    write_committed(&repo, "hang.json", r#"{"ORB-1": {"dev": "hang"}}"#);
    let mut child = loop_cmd(&repo)
        .args(["run", "--milestone", "M1-core", "--sim-scenario", "hang.json", "--phase-timeout", "60", "-q"])
        .env("LOOP_RUN_ID", "busy")
        .spawn()
        .unwrap();
    // Wait until the dev phase of ORB-1 is running.
    let mut running = false;
    for _ in 0..200 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let st = loop_cmd(&repo).args(["status", "busy", "--json"]).output().unwrap();
        if st.status.success() && json(&st)["issues"][0]["state"] == "Dev" {
            running = true;
            break;
        }
    }
    assert!(running, "the run never reached Dev");
    let st = json(&loop_cmd(&repo).args(["status", "busy", "--json"]).output().unwrap());
    assert_eq!(st["live"], true);
    let second = loop_cmd(&repo).args(["resume", "busy"]).output().unwrap();
    let (_, err) = text(&second);
    assert_eq!(second.status.code(), Some(exit::LOCKED), "{err}");
    assert!(err.contains("run busy is locked") && err.contains("pid"), "{err}");

    // Ctrl-C: the hanging phase is stopped, the interruption journaled, exit 130.
    unsafe_kill(child.id(), 2);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(exit::INTERRUPTED));
    let st = json(&loop_cmd(&repo).args(["status", "busy", "--json"]).output().unwrap());
    assert_eq!(st["interrupted"], true);
    assert_eq!(st["issues"][0]["state"], "Dev");
    // No sleeping child survived.
    let ps = Command::new("pgrep").args(["-f", "sleep 3600"]).output().unwrap();
    assert!(String::from_utf8_lossy(&ps.stdout).trim().is_empty(), "the agent's process group survived Ctrl-C");
}

fn unsafe_kill(pid: u32, sig: i32) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success());
}

#[test]
fn resume_reruns_an_interrupted_phase_and_finishes() {
    let repo = demo_repo();
    // Crash mid-run at a phase start: the phase is run again on resume with attempt 2.
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "again")
        .env("LOOP_FAULT_AFTER_APPEND", "4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None);
    let resumed = loop_cmd(&repo).args(["resume", "again", "--json", "-q"]).output().unwrap();
    assert_eq!(states(&json(&resumed)), expected_final());
    let replay = loop_cmd(&repo).args(["replay", "again"]).output().unwrap();
    let (tl, _) = text(&replay);
    assert!(tl.contains("run resumed"), "{tl}");
    assert!(tl.contains("dev (attempt 2)"), "{tl}");
    // A finished run resumes to the same answer without appending anything.
    let before = json(&loop_cmd(&repo).args(["status", "again", "--json"]).output().unwrap())["records"].clone();
    let again = loop_cmd(&repo).args(["resume", "again", "--json", "-q"]).output().unwrap();
    assert_eq!(again.status.code(), Some(exit::NOT_ALL_DONE));
    let after = json(&loop_cmd(&repo).args(["status", "again", "--json"]).output().unwrap())["records"].clone();
    assert_eq!(before, after);
}

#[test]
fn agent_failures_end_in_failed_with_reasons_and_dependents_blocked() {
    let repo = demo_repo();
    let scenario = r#"{"ORB-1": {"reviews": ["garbage"]}, "ORB-5": {"dev": "crash"}, "ORB-3": {"dev": "hang"}}"#;
    write_committed(&repo, "bad.json", scenario);
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "bad.json", "--phase-timeout", "1", "--json", "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let v = json(&out);
    let by_id = |id: &str| v["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(by_id("ORB-1")["state"], "Failed");
    assert!(by_id("ORB-1")["reason"].as_str().unwrap().contains("not JSON"), "{v}");
    assert_eq!(by_id("ORB-5")["state"], "Failed");
    assert!(by_id("ORB-5")["reason"].as_str().unwrap().contains("exit code 3"), "{v}");
    // ORB-1 failed, so ORB-2 and ORB-3 never start.
    assert_eq!(by_id("ORB-2")["state"], "Blocked");
    assert!(by_id("ORB-2")["reason"].as_str().unwrap().contains("ORB-1"), "{v}");
    assert_eq!(by_id("ORB-4")["state"], "Blocked");
    // The failed issue's worktree is kept for inspection.
    assert!(repo.join(".loop/worktrees/M1-core/ORB-1").exists());
}

#[test]
fn phase_timeout_kills_a_hanging_agent() {
    let repo = demo_repo();
    write_committed(&repo, "hang.json", r#"{"ORB-5": {"dev": "hang"}}"#);
    let start = std::time::Instant::now();
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "hang.json", "--phase-timeout", "1", "--json", "-q"])
        .output()
        .unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let v = json(&out);
    let orb5 = v["issues"].as_array().unwrap().iter().find(|i| i["id"] == "ORB-5").unwrap().clone();
    assert_eq!(orb5["state"], "Failed");
    assert!(orb5["reason"].as_str().unwrap().contains("timed out"), "{orb5}");
}

fn bad_repo(files: &[(&str, &str)]) -> TestRepo {
    repo_with(files)
}

fn expect_bad(files: &[(&str, &str)], needle: &str) {
    let repo = bad_repo(files);
    for cmd in [&["plan"][..], &["run", "-q", "--agent", "sim"][..]] {
        let out = loop_cmd(&repo).args(cmd).output().unwrap();
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{cmd:?}: {err}");
        assert!(err.contains(needle), "{cmd:?}: expected {needle:?} in: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert!(!repo.join(".loop/runs").exists(), "bad input must not start a run");
}

const I: &str = "docs/projects/p/issues";

#[test]
fn bad_docs_exit_2_naming_file_and_line() {
    expect_bad(&[(&format!("{I}/a.md"), "no front matter\n")], &format!("{I}/a.md:1: no front matter"));
    expect_bad(&[(&format!("{I}/a.md"), "---\nid: [unclosed\n---\n")], &format!("{I}/a.md:"));
    expect_bad(&[(&format!("{I}/a.md"), "---\ntitle: x\nmilestone: M\n---\n")], "missing required field 'id'");
    expect_bad(
        &[
            (&format!("{I}/a.md"), "---\nid: A\nmilestone: M\n---\n"),
            (&format!("{I}/b.md"), "---\nid: A\nmilestone: M\n---\n"),
        ],
        &format!("{I}/b.md:2: duplicate issue id 'A'"),
    );
    expect_bad(
        &[(&format!("{I}/a.md"), "---\nid: A\nmilestone: M\nblocked_by: [ZZ-9]\n---\n")],
        &format!("{I}/a.md:4: blocked_by names unknown issue 'ZZ-9'"),
    );
    expect_bad(
        &[
            (&format!("{I}/a.md"), "---\nid: A\nmilestone: M\nblocked_by: [C]\n---\n"),
            (&format!("{I}/b.md"), "---\nid: B\nmilestone: M\nblocked_by: [A]\n---\n"),
            (&format!("{I}/c.md"), "---\nid: C\nmilestone: M\nblocked_by: [B]\n---\n"),
        ],
        "dependency cycle: A → C → B → A",
    );
    expect_bad(
        &[(&format!("{I}/a.md"), "---\nid: A\nmilestone: M\nblocked_by: [A]\n---\n")],
        "dependency cycle: A → A",
    );
}

#[test]
fn unknown_milestone_and_unknown_run_are_bad_input() {
    let repo = demo_repo();
    let out = loop_cmd(&repo).args(["plan", "-m", "M9"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&out).1.contains("unknown milestone 'M9' (known: M1-core)"), "{:?}", text(&out));
    let out = loop_cmd(&repo).args(["resume", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&out).1.contains("no run matches 'nope'"));
    std::fs::write(repo.join("s.json"), r#"{"ORB-77": {"dev": "pass"}}"#).unwrap();
    let out = loop_cmd(&repo).args(["run", "--sim-scenario", "s.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&out).1.contains("s.json: names issue ORB-77"), "{:?}", text(&out));
}

#[test]
fn plan_prints_order_waves_and_graphs() {
    let repo = demo_repo();
    let out = loop_cmd(&repo).args(["plan", "--json"]).output().unwrap();
    let v = json(&out);
    assert_eq!(v["order"], serde_json::json!(["ORB-1", "ORB-2", "ORB-3", "ORB-5", "ORB-4", "ORB-6"]));
    assert_eq!(v["waves"], serde_json::json!([["ORB-1", "ORB-5"], ["ORB-2", "ORB-3"], ["ORB-4", "ORB-6"]]));
    let dot = text(&loop_cmd(&repo).args(["plan", "--format", "dot"]).output().unwrap()).0;
    assert!(dot.starts_with("digraph") && dot.contains("ORB-5"), "{dot}");
    let mm = text(&loop_cmd(&repo).args(["plan", "--format", "mermaid"]).output().unwrap()).0;
    assert!(mm.starts_with("flowchart") && mm.contains("-->"), "{mm}");
}

#[test]
fn runs_lists_ids_by_shortest_unique_prefix() {
    let repo = demo_repo();
    assert_eq!(run_demo_scenario(&repo, "20260101-000000-aaaa11").status.code(), Some(exit::NOT_ALL_DONE));
    // A second run of the same milestone carries the first one's Done issues over and runs
    // the Capped one again on loop's own branch.
    let second = run_demo_scenario(&repo, "20260101-000000-aabb22");
    assert_eq!(second.status.code(), Some(exit::NOT_ALL_DONE));
    let v = json(&second);
    assert_eq!(v["issues"][0]["carried_over"]["run"], "20260101-000000-aaaa11", "{v}");
    let out = loop_cmd(&repo).args(["runs", "--json"]).output().unwrap();
    let v = json(&out);
    assert_eq!(v[0]["prefix"], "20260101-000000-aaa");
    assert_eq!(v[1]["prefix"], "20260101-000000-aab");
    assert_eq!(v[0]["state"], "finished");
    let st = loop_cmd(&repo).args(["status", "20260101-000000-aab", "--json"]).output().unwrap();
    assert_eq!(json(&st)["run_id"], "20260101-000000-aabb22");
    let amb = loop_cmd(&repo).args(["status", "2026"]).output().unwrap();
    assert_eq!(amb.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&amb).1.contains("matches several runs"));
}

/// #14: "newest run" is the one that started last, not the greatest id: two runs in one
/// second sort by their random suffix. `status` and a bare `replay` take it; `runs` lists by
/// start time under a header, with start time and duration.
#[test]
fn the_newest_run_is_the_one_that_started_last() {
    let repo = demo_repo();
    // The later run gets the smaller id, as a random suffix can.
    assert_eq!(run_demo_scenario(&repo, "20260101-000000-bbbb22").status.code(), Some(exit::NOT_ALL_DONE));
    assert_eq!(run_demo_scenario(&repo, "20260101-000000-aaaa11").status.code(), Some(exit::NOT_ALL_DONE));
    let st = loop_cmd(&repo).args(["status", "--json"]).output().unwrap();
    assert_eq!(json(&st)["run_id"], "20260101-000000-aaaa11");
    let rp = loop_cmd(&repo).args(["replay", "--json"]).output().unwrap();
    assert_eq!(rp.status.code(), Some(exit::OK), "{}", text(&rp).1);
    assert_eq!(json(&rp)["run_id"], "20260101-000000-aaaa11");

    let v = json(&loop_cmd(&repo).args(["runs", "--json"]).output().unwrap());
    let ids: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["20260101-000000-bbbb22", "20260101-000000-aaaa11"]);
    let (first, second) = (&v[0], &v[1]);
    assert!(first["started_at"].as_str().unwrap() < second["started_at"].as_str().unwrap(), "{v}");
    // The test clock steps once per loop command and a run's records share its instant.
    assert_eq!(first["duration_secs"], 0.0, "{v}");
    let (out, _) = text(&loop_cmd(&repo).arg("runs").output().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("RUN") && lines[0].contains("STARTED") && lines[0].contains("DURATION"), "{out}");
    assert!(lines[1].starts_with("20260101-000000-bbbb22") && lines[1].contains("finished"), "{out}");
    assert!(lines[2].starts_with("20260101-000000-aaaa11"), "{out}");
}

/// A lone run is listed by its whole id, not the meaningless prefix `2026`.
#[test]
fn a_lone_run_is_listed_by_its_whole_id() {
    let repo = demo_repo();
    run_demo_scenario(&repo, "20260101-000000-cccc33");
    let (out, _) = text(&loop_cmd(&repo).arg("runs").output().unwrap());
    assert!(out.lines().nth(1).unwrap().starts_with("20260101-000000-cccc33 "), "{out}");
    let v = json(&loop_cmd(&repo).args(["runs", "--json"]).output().unwrap());
    assert_eq!(v[0]["prefix"], "2026");
}

/// #12: each issue's reviews go to a file of its own, so merging every Done branch of the
/// milestone into one branch, in plan order or the reverse, never conflicts in loop's files
/// (with one `REVIEW-<milestone>.md` every merge after the first conflicted).
#[test]
fn merging_every_done_branch_in_any_order_has_no_conflict_in_review_docs() {
    let repo = demo_repo();
    let scenario = repo.env().root().join("all-done.json");
    std::fs::write(&scenario, r#"{"ORB-2": {"reviews": ["changes_required", "pass"]}}"#).unwrap();
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario"])
        .arg(&scenario)
        .args(["--json", "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let done: Vec<String> = states(&json(&out)).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(done, ["ORB-1", "ORB-2", "ORB-3", "ORB-5", "ORB-4", "ORB-6"]);
    let mut reversed = done.clone();
    reversed.reverse();
    for (n, order) in [done.clone(), reversed].iter().enumerate() {
        let wt = repo.env().root().join(format!("land-{n}"));
        let wt_s = wt.to_str().unwrap();
        git(&repo, &["worktree", "add", "-q", "-b", &format!("land-{n}"), wt_s, "main"]);
        for id in order {
            let merged = repo.env().git_output(&wt, &["merge", "--no-edit", "-q", &format!("loop/M1-core/{id}")]);
            let (out, err) = text(&merged);
            let conflicts = repo.env().git_output(&wt, &["diff", "--name-only", "--diff-filter=U"]);
            assert!(merged.status.success(), "merging {id} (order {order:?}): {out}{err}\n{}", text(&conflicts).0);
        }
        for id in &done {
            let doc = std::fs::read_to_string(wt.join(format!("docs/projects/orbit/reviews/M1-core/{id}.md"))).unwrap();
            assert!(doc.starts_with(&format!("# Reviews: M1-core / {id}\n")), "{doc}");
            assert!(doc.contains(&format!("## {id} — review ")), "{doc}");
        }
    }
}
