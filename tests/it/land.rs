//! `loop land` through the real binary: a finished run's Done branches merged in plan order into
//! loop's own `loop/<milestone>/land`, checked there; main untouched; a conflicting branch left
//! out by name; the branch taken back only while it is where loop left it; Graphite stacks
//! submitted as drafts instead under `--stack graphite --submit draft`.

use crate::support::*;

fn issue(id: &str) -> (String, String) {
    (format!("docs/projects/p/issues/{id}.md"), format!("---\nid: {id}\nmilestone: M\n---\n# {id}\n"))
}

fn repo(files: &[(String, String)]) -> TestRepo {
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    repo_with(&refs)
}

fn run(repo: &TestRepo, run_id: &str, milestone: &str, scenario: &str, extra: &[&str]) -> std::process::Output {
    let file = repo.env().root().join(format!("{run_id}-scenario.json"));
    std::fs::write(&file, scenario).unwrap();
    loop_cmd(repo)
        .args(["run", "-m", milestone, "--agent", "sim", "--json", "-q", "--sim-scenario"])
        .arg(&file)
        .args(extra)
        .env("LOOP_RUN_ID", run_id)
        .output()
        .unwrap()
}

fn land(repo: &TestRepo, args: &[&str]) -> std::process::Output {
    loop_cmd(repo).arg("land").args(args).output().unwrap()
}

#[test]
fn land_merges_every_done_branch_in_plan_order_and_verifies_the_result() {
    let repo = demo_repo();
    repo.write_committed("loop.toml", "[verify]\ncommands = [\"test -f README.md\"]\n");
    let out = run(&repo, "r1", "M1-core", DEMO_SCENARIO, &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "ORB-4 ends Capped: {:?}", text(&out));
    let main_before = repo.git(&["rev-parse", "main"]);

    let out = land(&repo, &["r1", "--json"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    assert_eq!((v["clean"].as_bool(), v["branch"].as_str()), (Some(true), Some("loop/M1-core/land")), "{v}");
    assert_eq!(v["onto"], "main");
    let merged: Vec<&str> = v["merged"].as_array().unwrap().iter().map(|m| m["issue"].as_str().unwrap()).collect();
    assert_eq!(merged, ["ORB-1", "ORB-2", "ORB-3", "ORB-5", "ORB-6"], "the Done ones, in plan order: {v}");
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{v}");
    assert_eq!((checks[0]["command"].as_str(), checks[0]["exit_code"].as_i64()), (Some("test -f README.md"), Some(0)));
    // Every Done issue's work is on the land branch; the Capped one's is not; main did not move.
    for id in ["ORB-1", "ORB-2", "ORB-3", "ORB-5", "ORB-6"] {
        repo.git(&["merge-base", "--is-ancestor", &format!("loop/M1-core/{id}"), "loop/M1-core/land"]);
    }
    let capped_in =
        repo.env().git_output(&repo, &["merge-base", "--is-ancestor", "loop/M1-core/ORB-4", "loop/M1-core/land"]);
    assert_eq!(capped_in.status.code(), Some(1), "the Capped issue is not landed");
    assert_eq!(repo.git(&["rev-parse", "main"]), main_before);
    assert_eq!(repo.git(&["status", "--porcelain"]), "", "the main checkout is untouched");
    assert!(!repo.join(".loop/worktrees/M1-core/_land").exists(), "the land worktree is removed");
    // Journaled, and the journal still replays.
    let replay = loop_cmd(&repo).args(["replay", "r1"]).output().unwrap();
    let (stdout, _) = text(&replay);
    assert_eq!(replay.status.code(), Some(exit::OK), "{stdout}");
    assert!(stdout.contains("landed 5 of 5 Done branch(es) on loop/M1-core/land"), "{stdout}");

    // Landing again takes loop's own branch back and ends at the same place (fixed clock aside,
    // the same merges of the same tips).
    let again = land(&repo, &["r1"]);
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(exit::OK), "{stdout}{stderr}");
    assert!(stdout.contains("5 of 5 Done branch(es) merged; checks passed"), "{stdout}");

    // A land branch someone moved is not loop's to overwrite.
    repo.git(&["branch", "-f", "loop/M1-core/land", "main"]);
    let taken = land(&repo, &["r1"]);
    let (_, stderr) = text(&taken);
    assert_eq!(taken.status.code(), Some(exit::BAD_INPUT), "{stderr}");
    assert!(stderr.contains("loop/M1-core/land exists and is not where loop left it"), "{stderr}");
    assert_eq!(repo.git(&["rev-parse", "loop/M1-core/land"]), main_before, "left where the user put it");
}

#[test]
fn a_conflicting_branch_is_left_out_by_name_and_the_rest_lands() {
    let repo = repo(&[issue("A"), issue("B"), issue("C")]);
    let scenario = r#"{
        "A": {"dev": "shell:printf 'a\n' > shared.txt"},
        "B": {"dev": "shell:printf 'b\n' > shared.txt"},
        "C": {"dev": "shell:printf 'c\n' > c.txt"}
    }"#;
    let out = run(&repo, "r1", "M", scenario, &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let out = land(&repo, &["r1", "--json"]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let v = json(&out);
    assert_eq!(v["clean"], false);
    let outcome =
        |id: &str| v["merged"].as_array().unwrap().iter().find(|m| m["issue"] == id).unwrap()["outcome"].clone();
    assert!(outcome("A").get("merged").is_some(), "{v}");
    assert_eq!(outcome("B")["conflict"]["files"], serde_json::json!(["shared.txt"]), "{v}");
    assert!(outcome("C").get("merged").is_some(), "{v}");
    assert_eq!(repo.git(&["show", "loop/M/land:shared.txt"]), "a");
    assert_eq!(repo.git(&["show", "loop/M/land:c.txt"]), "c");
    let text_out = land(&repo, &["r1"]);
    let (stdout, _) = text(&text_out);
    assert!(stdout.contains("CONFLICT in shared.txt (left out)"), "{stdout}");
    assert!(stdout.contains("2 of 3 Done branch(es) merged"), "{stdout}");
}

#[test]
fn land_refuses_what_it_cannot_do_and_writes_nothing() {
    let repo = repo(&[issue("A")]);
    let out = run(&repo, "r1", "M", r#"{"A": {"dev": "failed"}}"#, &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let journal_before = std::fs::read_dir(repo.join(".loop")).unwrap().count();
    let out = land(&repo, &["r1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{stderr}");
    assert!(stderr.contains("run r1 has no Done issue"), "{stderr}");
    let out = land(&repo, &["nope"]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{:?}", text(&out));
    assert_eq!(std::fs::read_dir(repo.join(".loop")).unwrap().count(), journal_before);
    let branches = repo.git(&["branch", "--list", "loop/M/land"]);
    assert_eq!(branches, "");
}

#[test]
fn under_graphite_draft_submission_land_submits_each_done_stack_instead() {
    let Ok(gt) = std::env::var("LOOP_TEST_GT_BIN") else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true but LOOP_TEST_GT_BIN is not set");
        eprintln!("skipping: LOOP_TEST_GT_BIN not set (scripts/test.sh sets it)");
        return;
    };
    let repo = demo_repo();
    let calls = repo.env().root().join("gt-calls.log");
    let wrapper = repo.env().root().join("gt-logged");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nprintf '%s|%s\\n' \"$PWD\" \"$*\" >> '{}'\nexec '{gt}' \"$@\"\n", calls.display()),
    )
    .unwrap();
    repo.env().command("chmod").arg("+x").arg(&wrapper).status().unwrap();
    let file = repo.env().root().join("s.json");
    std::fs::write(&file, "{}").unwrap();
    let out = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--agent", "sim", "-q", "--stack", "graphite", "--submit", "draft"])
        .arg("--sim-scenario")
        .arg(&file)
        .env("LOOP_RUN_ID", "g1")
        .env("LOOP_GT_BIN", &wrapper)
        .env("LOOP_GT_TIMEOUT_SECS", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    std::fs::write(&calls, "").unwrap();
    let out = loop_cmd(&repo)
        .args(["land", "g1", "--json"])
        .env("LOOP_GT_BIN", &wrapper)
        .env("LOOP_GT_TIMEOUT_SECS", "5")
        .output()
        .unwrap();
    // Offline, gt cannot submit: reported per stack, not hung, exit 3.
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let v = json(&out);
    let tops: Vec<&str> = v["submitted"].as_array().unwrap().iter().map(|s| s["branch"].as_str().unwrap()).collect();
    // The stacks' tops: the Done branches no other Done branch builds on.
    assert_eq!(tops, ["loop/M1-core/ORB-4", "loop/M1-core/ORB-6"], "{v}");
    let log = std::fs::read_to_string(&calls).unwrap();
    let submits: Vec<&str> = log.lines().filter(|l| l.contains("submit")).collect();
    assert_eq!(submits.len(), 2, "{log}");
    for s in submits {
        assert!(s.contains("/.loop/worktrees/M1-core/_land|submit --stack --draft"), "{s}");
    }
    assert_eq!(repo.git(&["branch", "--list", "loop/M1-core/land"]), "", "no land branch under Graphite");
}
