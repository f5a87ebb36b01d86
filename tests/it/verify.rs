//! loop's own verification through the real binary and the simulated agent: a failing check
//! sends the issue to a fix and the review runs only after a passing one; a hanging check fails
//! closed; a failure already on the base is pre-existing; setup runs once per lockfile hash.

use crate::support::*;

/// An issue doc of milestone M with these verification commands (YAML flow list).
fn issue(id: &str, verify: &str) -> (String, String) {
    (format!("docs/projects/p/issues/{id}.md"), format!("---\nid: {id}\nmilestone: M\nverify: {verify}\n---\n# {id}\n"))
}

fn repo(files: &[(String, String)]) -> TestRepo {
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    repo_with(&refs)
}

/// `loop run -m M --agent sim` with this scenario (written outside the repo), `--json`.
fn run(repo: &TestRepo, run_id: &str, scenario: &str, extra: &[&str]) -> std::process::Output {
    let file = repo.env().root().join(format!("{run_id}-scenario.json"));
    std::fs::write(&file, scenario).unwrap();
    loop_cmd(repo)
        .args(["run", "-m", "M", "--agent", "sim", "--json", "-q", "--sim-scenario"])
        .arg(&file)
        .args(extra)
        .env("LOOP_RUN_ID", run_id)
        .output()
        .unwrap()
}

/// The run's records from `replay --json` (which must verify).
fn records(repo: &TestRepo, run_id: &str) -> Vec<serde_json::Value> {
    let out = loop_cmd(repo).args(["replay", run_id, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let v = json(&out);
    assert_eq!(v["verified"], true);
    v["timeline"].as_array().unwrap().iter().map(|r| r["body"].clone()).collect()
}

fn event_name(body: &serde_json::Value) -> String {
    body["event"]["event"].as_str().unwrap_or("").to_string()
}

/// The `check_ran` facts' bodies, in order.
fn checks(records: &[serde_json::Value]) -> Vec<serde_json::Value> {
    records.iter().filter(|b| event_name(b) == "check_ran").map(|b| b["event"].clone()).collect()
}

#[test]
fn a_failing_check_goes_to_fix_and_review_runs_only_after_it_passes() {
    let repo = repo(&[issue("A", "[\"grep -qx ok status.txt\"]"), ("status.txt".into(), "ok\n".into())]);
    let scenario = r#"{"A": {"dev": "shell:echo broken > status.txt", "fix": "shell:echo ok > status.txt"}}"#;
    let out = run(&repo, "v1", scenario, &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    assert_eq!(states(&json(&out)), vec![("A".to_string(), "Done".to_string(), 1)]);

    let recs = records(&repo, "v1");
    // The order of what happened: no review before a passing verification.
    let steps: Vec<String> = recs
        .iter()
        .filter_map(|b| match event_name(b).as_str() {
            "verify_finished" => {
                let n = b["event"]["failures"].as_array().unwrap().len();
                Some(if n == 0 { "verified".to_string() } else { "verify failed".to_string() })
            }
            "phase_started" => Some(b["event"]["phase"].as_str().unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(steps, ["dev", "verify failed", "fix", "verified", "review"]);

    // Baseline on the base commit (passes), then the failing and the passing check.
    let runs = checks(&recs);
    let kinds: Vec<(&str, Option<i64>)> =
        runs.iter().map(|c| (c["kind"].as_str().unwrap(), c["exit_code"].as_i64())).collect();
    assert_eq!(kinds, [("baseline", Some(0)), ("check", Some(1)), ("check", Some(0))]);
    for c in &runs {
        let log = std::fs::read(c["log"].as_str().unwrap()).expect("the whole output is kept");
        assert_eq!(c["output_hash"].as_str().unwrap(), blake3::hash(&log).to_hex().as_str());
        assert!(c["log"].as_str().unwrap().contains("/.loop/logs/v1/A/"), "{c}");
    }
    assert!(recs.iter().any(|b| event_name(b) == "baseline_checked"));
    // The fix agent was given the failing command as its required action.
    let fixes = git(&repo, &["show", "loop/M/A:loop-sim/A.fixes"]);
    assert!(
        fixes.contains("- addressed: verification command `grep -qx ok status.txt` failed (exit code 1)"),
        "{fixes}"
    );

    // status and replay say what was verified.
    let st = loop_cmd(&repo).args(["status", "v1"]).output().unwrap();
    assert!(text(&st).0.contains("verified: 1 passed"), "{:?}", text(&st));
    let rp = loop_cmd(&repo).args(["replay", "v1"]).output().unwrap();
    let timeline = text(&rp).0;
    assert!(timeline.contains("check_ran check `grep -qx ok status.txt` failed (exit code 1)"), "{timeline}");
    assert!(timeline.contains("verify_finished"), "{timeline}");
}

#[test]
fn a_check_that_hangs_fails_closed_and_caps_the_issue() {
    let mut files = vec![issue("A", "[\"if [ -e hang ]; then sleep 60; fi\"]")];
    files.push(("loop.toml".into(), "[verify]\ntimeout = 1\n".into()));
    let repo = repo(&files);
    let started = std::time::Instant::now();
    let out = run(&repo, "v2", r#"{"A": {"dev": "shell:touch hang"}}"#, &["--max-fix-cycles", "1"]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(40), "the timeout held");
    let status = json(&out);
    assert_eq!(states(&status), vec![("A".to_string(), "Capped".to_string(), 1)]);
    let reason = status["issues"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("check"), "{reason}");
    let recs = records(&repo, "v2");
    let runs = checks(&recs);
    let timed_out: Vec<&serde_json::Value> = runs.iter().filter(|c| c["kind"] == "check").collect();
    assert_eq!(timed_out.len(), 2, "after dev and after the fix: {runs:?}");
    for c in timed_out {
        assert!(c["exit_code"].is_null());
        assert!(c["failure"].as_str().unwrap().contains("timed out"), "{c}");
    }
    assert!(!recs.iter().any(|b| event_name(b) == "phase_started" && b["event"]["phase"] == "review"));
}

#[test]
fn a_failure_already_on_the_base_is_pre_existing_and_does_not_fail_the_issue() {
    let repo = repo(&[issue("A", "[\"grep -qx ok status.txt\", \"true\"]"), ("status.txt".into(), "broken\n".into())]);
    let out = run(&repo, "v3", "{}", &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    assert_eq!(states(&json(&out)), vec![("A".to_string(), "Done".to_string(), 0)]);
    let recs = records(&repo, "v3");
    let base = recs.iter().find(|b| event_name(b) == "baseline_checked").expect("baseline");
    assert_eq!(base["event"]["failing"], serde_json::json!(["grep -qx ok status.txt"]));
    let issue_checks: Vec<serde_json::Value> = checks(&recs).into_iter().filter(|c| c["kind"] == "check").collect();
    assert_eq!(issue_checks[0]["pre_existing"], true);
    assert_eq!(issue_checks[1]["pre_existing"], false);
    let st = loop_cmd(&repo).args(["status", "v3"]).output().unwrap();
    assert!(text(&st).0.contains("1 pre-existing failure"), "{:?}", text(&st));
    // The baseline's worktree is gone, and git forgot it.
    assert!(!git(&repo, &["worktree", "list"]).contains("/.loop/verify/"));
}

/// Issues A and B (independent) with one check, a setup that appends to a log outside the
/// repo, and a lockfile; the log's path.
fn setup_repo() -> (TestRepo, std::path::PathBuf) {
    let repo = TestEnvironment::new().repo_named("repo", &[]);
    let log = repo.env().root().join("setup.log");
    let toml = format!("[verify]\ncommands = [\"true\"]\nsetup = [\"echo ran >> '{}'\"]\n", log.display());
    for (name, text) in
        [issue("A", "[]"), issue("B", "[]"), ("loop.toml".into(), toml), ("Cargo.lock".into(), "x".into())]
    {
        let path = repo.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "docs"]);
    (repo, log)
}

#[test]
fn setup_runs_once_and_is_skipped_for_the_same_lockfiles() {
    let (repo, log) = setup_repo();
    let out = run(&repo, "v4", "{}", &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let recs = records(&repo, "v4");
    let setups: Vec<(String, bool)> = recs
        .iter()
        .filter(|b| event_name(b) == "setup_checked")
        .map(|b| (b["issue"].as_str().unwrap().to_string(), b["event"]["ran"].as_bool().unwrap()))
        .collect();
    assert_eq!(setups, [("A".to_string(), true), ("B".to_string(), false)]);
    // One baseline (both issues start from the same commit; set up once there) and A's setup.
    assert_eq!(recs.iter().filter(|b| event_name(b) == "baseline_checked").count(), 1);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "ran\nran\n");

    // --skip-setup: never, not even on the base.
    let (repo, log) = setup_repo();
    let out = run(&repo, "v5", "{}", &["--skip-setup"]);
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    assert!(!log.exists());
}
