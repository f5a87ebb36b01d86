//! #12 item 1, through the real binary: an issue's branch holds its dependencies' work. The
//! demo's ORB-6 is a diamond (blocked by ORB-2 and ORB-3, both after ORB-1): its branch starts
//! from ORB-2's tip and loop merges ORB-3's into it before dev; ORB-4 (after ORB-2, ORB-3 and
//! ORB-5) gets a merge of three. Two dependencies that write the same file differently end the
//! diamond Blocked, naming the file, with nothing half-merged left in its worktree.

use crate::support::*;

fn run(repo: &TestRepo, scenario: &str, run_id: &str) -> std::process::Output {
    repo.write_committed("s.json", scenario);
    repo.loop_cmd()
        .args(["run", "--milestone", "M1-core", "--agent", "sim", "--sim-scenario", "s.json", "--json", "-q"])
        .env("LOOP_RUN_ID", run_id)
        .output()
        .expect("loop runs")
}

fn issue<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap_or_else(|| panic!("{id}: {status}"))
}

/// The machine events of one kind in the run's journal, as `replay --json` shows them.
fn events(repo: &TestRepo, run_id: &str, kind: &str) -> Vec<serde_json::Value> {
    let out = repo.loop_cmd().args(["replay", run_id, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    json(&out)["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["body"]["event"]["event"] == kind)
        .map(|t| t["body"].clone())
        .collect()
}

#[test]
fn the_diamond_branch_holds_both_dependencies_work() {
    let repo = demo_repo();
    let out = run(&repo, DEMO_SCENARIO, "diamond");
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "ORB-4 ends Capped: {:?}", text(&out));
    let status = json(&out);
    assert_eq!(issue(&status, "ORB-6")["state"], "Done", "{status}");
    let tip = |b: &str| repo.git(&["rev-parse", &format!("loop/M1-core/{b}")]);
    // Both dependencies' files (and ORB-1's, under both) are on the diamond's branch.
    for f in ["ORB-1.md", "ORB-2.md", "ORB-2.fixes", "ORB-3.md", "ORB-6.md"] {
        repo.git(&["cat-file", "-e", &format!("loop/M1-core/ORB-6:loop-sim/{f}")]);
    }
    // One merge commit, made by loop before dev: its parents are ORB-2's tip and ORB-3's.
    let merges = repo.git(&["rev-list", "--merges", "--format=%P%n%s", "main..loop/M1-core/ORB-6"]);
    let lines: Vec<&str> = merges.lines().collect();
    assert_eq!(lines.len(), 3, "one merge commit: {merges}");
    assert_eq!(lines[1], format!("{} {}", tip("ORB-2"), tip("ORB-3")));
    assert!(lines[2].contains("ORB-6") && lines[2].contains("ORB-3"), "{merges}");
    // Journaled: the intent with the tip to merge, then the merge's result.
    let intent = events(&repo, "diamond", "worktree_intent");
    let intent = intent.iter().find(|e| e["issue"] == "ORB-6").unwrap();
    assert_eq!(intent["event"]["base"], tip("ORB-2").as_str(), "{intent}");
    assert_eq!(intent["event"]["merge"], serde_json::json!([tip("ORB-3")]), "{intent}");
    let merged = events(&repo, "diamond", "bases_merged");
    let merged: Vec<&serde_json::Value> = merged.iter().filter(|e| e["issue"] == "ORB-6").collect();
    assert_eq!(merged.len(), 1, "{merged:?}");
    let commit = merged[0]["event"]["commit"].as_str().unwrap();
    assert_eq!(lines[0], format!("commit {commit}"));
    // ORB-4: based on ORB-2, with ORB-3 and ORB-5 merged in as one commit of three parents.
    for f in ["ORB-2.md", "ORB-3.md", "ORB-5.md", "ORB-4.md"] {
        repo.git(&["cat-file", "-e", &format!("loop/M1-core/ORB-4:loop-sim/{f}")]);
    }
    let p = repo.git(&["rev-list", "--merges", "--format=%P", "main..loop/M1-core/ORB-4"]);
    assert!(p.ends_with(&format!("{} {} {}", tip("ORB-2"), tip("ORB-3"), tip("ORB-5"))), "{p}");
}

#[test]
fn a_merge_conflict_ends_blocked_naming_the_files_with_nothing_half_merged() {
    let repo = demo_repo();
    // ORB-2 and ORB-3 both write shared.txt, differently.
    let scenario = r#"{
        "ORB-2": {"dev": "shell:printf 'two\n' > shared.txt"},
        "ORB-3": {"dev": "shell:printf 'three\n' > shared.txt"}
    }"#;
    let out = run(&repo, scenario, "conflict");
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let status = json(&out);
    for id in ["ORB-1", "ORB-2", "ORB-3", "ORB-5"] {
        assert_eq!(issue(&status, id)["state"], "Done", "{id}: {status}");
    }
    let orb6 = issue(&status, "ORB-6");
    assert_eq!(orb6["state"], "Blocked", "{status}");
    let reason = orb6["reason"].as_str().unwrap();
    assert!(reason.contains("shared.txt") && reason.contains("ORB-3"), "{reason}");
    // The worktree is kept, at ORB-2's tip, clean, with no merge in progress.
    let wt = repo.join(".loop/worktrees/M1-core/ORB-6");
    let in_wt = |args: &[&str]| repo.env().git_output(&wt, args);
    assert_eq!(String::from_utf8_lossy(&in_wt(&["status", "--porcelain"]).stdout), "");
    assert!(!in_wt(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]).status.success());
    let head = String::from_utf8_lossy(&in_wt(&["rev-parse", "HEAD"]).stdout).trim().to_string();
    assert_eq!(head, repo.git(&["rev-parse", "loop/M1-core/ORB-2"]));
    let conflict = events(&repo, "conflict", "merge_conflict");
    let c = conflict.iter().find(|e| e["issue"] == "ORB-6").unwrap();
    assert_eq!(c["event"]["files"], serde_json::json!(["shared.txt"]), "{c}");
    // ORB-4 merges ORB-3 into ORB-2's work as well: the same conflict.
    assert_eq!(issue(&status, "ORB-4")["state"], "Blocked", "{status}");
}

#[test]
fn plan_and_dry_run_show_each_issue_base() {
    let repo = demo_repo();
    let head = format!("main@{}", repo.git(&["rev-parse", "--short=7", "HEAD"]));
    let out = repo.loop_cmd().args(["plan", "--json"]).output().unwrap();
    let v = json(&out);
    let base = |id: &str| {
        v["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap()["base"].as_str().unwrap().to_string()
    };
    assert_eq!(base("ORB-1"), head);
    assert_eq!(base("ORB-2"), "loop/M1-core/ORB-1");
    assert_eq!(base("ORB-6"), "merge of loop/M1-core/ORB-2 + loop/M1-core/ORB-3");
    assert_eq!(base("ORB-4"), "merge of loop/M1-core/ORB-2 + loop/M1-core/ORB-3 + loop/M1-core/ORB-5");
    let out = repo.loop_cmd().args(["run", "--milestone", "M1-core", "--agent", "sim", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let shown = text(&out).0;
    let section = |id: &str| shown.split("\n== ").find(|s| s.starts_with(id)).unwrap().to_string();
    assert!(section("ORB-1").contains(&format!("\nbase      {head}\n")), "{shown}");
    assert!(section("ORB-6").contains("\nbase      merge of loop/M1-core/ORB-2 + loop/M1-core/ORB-3\n"), "{shown}");
    // Nothing was written: no state dir, no branch.
    assert!(!repo.join(".loop").exists());
    assert_eq!(repo.git(&["branch", "--list", "loop/*"]), "");
}
