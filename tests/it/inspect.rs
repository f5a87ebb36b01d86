//! Looking at a run from outside it: `loop watch` (live and finished), and that these readers
//! leave the state dir exactly as they found it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Every file and directory under `dir` with its bytes (symlinks by target): what "read-only"
/// must leave unchanged.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.push((rel, std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()));
            } else if t.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                stack.push(p);
            } else if t.is_file() {
                out.push((rel, std::fs::read(&p).unwrap()));
            } else {
                out.push((format!("{rel} (special)"), Vec::new()));
            }
        }
    }
    out.sort();
    out
}

/// The progress lines of a run's or a watch's stderr, without their elapsed-time prefix (the
/// two processes started at different moments).
fn progress_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix('[').and_then(|l| l.split_once("s] ")).map(|(_, rest)| rest.to_string()))
        .collect()
}

/// Waits until `status RUN --json` shows `issue` in `stage`.
fn wait_for_stage(repo: &TestRepo, run: &str, issue: &str, stage: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = loop_cmd(repo).args(["status", run, "--json"]).output().unwrap();
        if st.status.success()
            && json(&st)["issues"].as_array().unwrap().iter().any(|i| i["id"] == issue && i["state"] == stage)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{issue} never reached {stage}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A demo run whose ORB-1 dev waits for `gate` to exist.
fn gated_run(repo: &TestRepo, run: &str, gate: &Path) -> Child {
    let dev = format!("shell:while [ ! -e '{}' ]; do sleep 0.05; done", gate.display());
    let scenario = serde_json::json!({"ORB-1": {"dev": dev}, "ORB-4": {"reviews": ["changes_required", "changes_required", "changes_required"]}});
    write_committed(repo, "gate.json", &scenario.to_string());
    loop_cmd(repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "gate.json", "--phase-timeout", "120"])
        .env("LOOP_RUN_ID", run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn watch(repo: &TestRepo, args: &[&str]) -> Command {
    let mut c = loop_cmd(repo);
    c.arg("watch").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// `watch` attached to a live run shows the same progress lines `run` printed, records made
/// before it attached included, ends when the run ends with the run's summary and exit code;
/// a watcher stopped by Ctrl-C leaves the run going.
#[test]
fn watch_follows_a_live_run_to_its_end_with_the_same_lines_as_run() {
    let repo = demo_repo();
    let scratch = tempfile::tempdir().unwrap();
    let gate = scratch.path().join("gate");
    let run = gated_run(&repo, "live", &gate);
    wait_for_stage(&repo, "live", "ORB-1", "Dev");

    let follower = watch(&repo, &["live"]).spawn().unwrap();
    let quitter = watch(&repo, &[]).spawn().unwrap();
    // Both are still following (the run is gated): neither ended on its own.
    std::thread::sleep(Duration::from_millis(600));
    let _ = Command::new("kill").args(["-INT", &quitter.id().to_string()]).status();
    let quit = quitter.wait_with_output().unwrap();
    assert_eq!(quit.status.code(), None, "SIGINT ends watch as it ends `cat`: {:?}", text(&quit));
    wait_for_stage(&repo, "live", "ORB-1", "Dev");

    std::fs::write(&gate, "").unwrap();
    let ran = run.wait_with_output().unwrap();
    let watched = follower.wait_with_output().unwrap();
    let (run_out, run_err) = text(&ran);
    let (out, err) = text(&watched);
    assert_eq!(ran.status.code(), Some(exit::NOT_ALL_DONE), "{run_out}{run_err}");
    assert_eq!(watched.status.code(), ran.status.code(), "watch exits as the run did: {out}{err}");

    let seen = progress_lines(&err);
    assert_eq!(seen, progress_lines(&run_err), "watch shows exactly what run showed");
    assert!(seen.iter().any(|l| l.contains("ORB-1") && l.contains("phase_started dev  WorktreeReady → Dev")), "{err}");
    assert!(seen.iter().any(|l| l.contains("ORB-4") && l.contains("→ Capped")), "{err}");
    assert!(seen.last().unwrap().ends_with("run finished"), "{err}");
    assert!(out.starts_with("run live  milestone M1-core  finished  (started "), "{out}");
    assert!(out.contains("summary: 5 Done, 1 Capped"), "{out}");
    // The summary is the one `status` prints for the finished run.
    let status = text(&loop_cmd(&repo).args(["status", "live"]).output().unwrap()).0;
    assert_eq!(out, status);
}

/// On a finished run `watch` prints the summary at once (the timeline with `--timeline`),
/// exits as the run did, and changes no byte of the state dir.
#[test]
fn watch_on_a_finished_run_prints_its_summary_and_changes_nothing() {
    let repo = demo_repo();
    let ran = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json"])
        .env("LOOP_RUN_ID", "done")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&ran));
    let state = repo.join(".loop");
    let before = tree(&state);

    let started = Instant::now();
    let out = watch(&repo, &[]).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "a finished run is not followed");
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("summary: 5 Done, 1 Capped"), "{stdout}");
    assert!(progress_lines(&stderr).is_empty(), "no timeline unless asked: {stderr}");

    let full = watch(&repo, &["done", "--timeline"]).output().unwrap();
    assert_eq!(full.status.code(), Some(exit::NOT_ALL_DONE));
    let lines = progress_lines(&text(&full).1);
    assert_eq!(lines, progress_lines(&text(&ran).1), "the timeline is what run showed");

    assert!(tree(&state) == before, "watch changed the state dir");
}

/// A run interrupted by a signal: watch says so and exits with the run's code.
#[test]
fn watch_on_an_interrupted_run_exits_as_the_run_did() {
    let repo = demo_repo();
    let scratch = tempfile::tempdir().unwrap();
    let run = gated_run(&repo, "int", &scratch.path().join("never"));
    wait_for_stage(&repo, "int", "ORB-1", "Dev");
    let follower = watch(&repo, &["int"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").args(["-TERM", &run.id().to_string()]).status();
    let ran = run.wait_with_output().unwrap();
    assert_eq!(ran.status.code(), Some(exit::TERMINATED));
    let watched = follower.wait_with_output().unwrap();
    let (out, err) = text(&watched);
    assert_eq!(watched.status.code(), Some(exit::TERMINATED), "{out}{err}");
    assert!(out.contains("interrupted — continue with `loop resume`"), "{out}");
    assert!(err.contains("run int interrupted; continue with `loop resume int`"), "{err}");
}

/// The demo run, finished (ORB-4 Capped), under run id `d`.
fn demo_done() -> TestRepo {
    let repo = demo_repo();
    let ran = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "d")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&ran));
    repo
}

/// The base the journal recorded for an issue's branch (after any merge of its dependencies).
fn journaled_base(repo: &TestRepo, run: &str, issue: &str) -> String {
    let r = json(&loop_cmd(repo).args(["replay", run, "--json"]).output().unwrap());
    let mut base = None;
    for x in r["timeline"].as_array().unwrap().iter().filter(|x| x["body"]["issue"] == issue) {
        match x["body"]["event"]["event"].as_str() {
            Some("worktree_created") => base = x["body"]["event"]["base"].as_str().map(String::from),
            Some("bases_merged") => base = x["body"]["event"]["commit"].as_str().map(String::from),
            _ => {}
        }
    }
    base.unwrap()
}

/// `diff` is git's `base branch` diff of the journaled base and branch; for an issue whose base
/// is a merge of its dependencies it shows only the issue's own work; `--stat` summarises; and
/// neither the state dir nor the git index changes.
#[test]
fn diff_shows_the_issue_s_own_changes_from_its_journaled_base() {
    let repo = demo_done();
    let state = tree(&repo.join(".loop"));
    let index = std::fs::read(repo.join(".git/index")).unwrap();

    let out = loop_cmd(&repo).args(["diff", "d", "ORB-2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{:?}", text(&out));
    let base = journaled_base(&repo, "d", "ORB-2");
    let git = repo.env().git_output(&repo, &["diff", "--color=never", &base, "loop/M1-core/ORB-2", "--"]);
    assert_eq!(out.stdout, git.stdout, "diff is git's diff of base and branch");
    let (patch, _) = text(&out);
    assert!(patch.contains("+# ORB-2") && !patch.contains("\x1b["), "no colour into a pipe: {patch}");

    // ORB-6 starts from a merge of ORB-2 and ORB-3: their files are in its base, not its diff.
    let stat = text(&loop_cmd(&repo).args(["diff", "d", "ORB-6", "--stat"]).output().unwrap()).0;
    assert!(stat.contains("loop-sim/ORB-6.md"), "{stat}");
    assert!(!stat.contains("ORB-3.md") && !stat.contains("ORB-2.md"), "{stat}");
    insta::assert_snapshot!("diff_stat", stat);

    assert!(tree(&repo.join(".loop")) == state, "diff changed the state dir");
    assert_eq!(std::fs::read(repo.join(".git/index")).unwrap(), index, "diff touched the index");
}

#[test]
fn diff_names_what_is_unknown_or_has_no_branch() {
    let repo = demo_done();
    let out = loop_cmd(&repo).args(["diff", "d", "ORB-9"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let err = text(&out).1;
    assert!(err.contains("issue ORB-9 is not part of run d") && err.contains("ORB-1, ORB-2"), "{err}");
    let out = loop_cmd(&repo).args(["diff", "zz", "ORB-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(text(&out).1.contains("no run matches 'zz'"), "{:?}", text(&out));

    // ORB-1's dev fails, so ORB-2 never starts: no branch to diff.
    write_committed(&repo, "fail.json", r#"{"ORB-1": {"dev": "failed"}}"#);
    let ran = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--fresh", "--sim-scenario", "fail.json", "-q"])
        .env("LOOP_RUN_ID", "f")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&ran));
    let out = loop_cmd(&repo).args(["diff", "f", "ORB-2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let err = text(&out).1;
    assert!(err.contains("issue ORB-2 has no branch yet in run f (it is Blocked)"), "{err}");
}

/// `logs` lists an issue's raw logs (text and JSON), prints a phase's newest (or every one with
/// `--all`), and names the valid phases when asked for one it does not have; nothing changes on
/// disk.
#[test]
fn logs_lists_and_prints_an_issue_s_raw_logs() {
    let repo = demo_repo();
    // A check with output, run for every issue after dev and after each fix.
    write_committed(&repo, "loop.toml", "[verify]\ncommands = [\"echo verified-by-loop; ls loop-sim\"]\n");
    let ran = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "d")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&ran));
    let state = tree(&repo.join(".loop"));

    // ORB-2 had one fix: verification after dev and after fix 1.
    let listing = text(&loop_cmd(&repo).args(["logs", "d", "ORB-2"]).output().unwrap()).0;
    insta::assert_snapshot!("logs_list", repo.env().redact(&listing));

    let v = json(&loop_cmd(&repo).args(["logs", "d", "ORB-2", "--json"]).output().unwrap());
    assert_eq!((v["run_id"].as_str(), v["issue"].as_str()), (Some("d"), Some("ORB-2")));
    let logs = v["logs"].as_array().unwrap();
    let phases: Vec<&str> = logs.iter().map(|l| l["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["baseline", "verify-dev", "verify-fix1"], "{v}");
    let after_fix = &logs[2];
    assert_eq!((after_fix["what"].as_str(), after_fix["attempt"].as_str()), (Some("check"), Some("1")));
    let path = after_fix["path"].as_str().unwrap();
    let content = std::fs::read(path).unwrap();
    assert!(
        String::from_utf8_lossy(&content).ends_with("verified-by-loop\nORB-1.md\nORB-2.fixes\nORB-2.md\n"),
        "{path}"
    );
    assert_eq!(after_fix["bytes"].as_u64(), Some(content.len() as u64));
    // The log the journal recorded for the last verification is this file.
    let st = json(&loop_cmd(&repo).args(["status", "d", "--json"]).output().unwrap());
    let orb2 = st["issues"].as_array().unwrap().iter().find(|i| i["id"] == "ORB-2").unwrap().clone();
    assert_eq!(orb2["verification"][0]["log"], path);

    // `verify` is the newest verification; `verify-dev` the one after dev; `--all` every one.
    let shown = loop_cmd(&repo).args(["logs", "d", "ORB-2", "verify"]).output().unwrap();
    assert_eq!(shown.status.code(), Some(exit::OK));
    assert_eq!(shown.stdout, content, "the phase's log, as written");
    let dev = text(&loop_cmd(&repo).args(["logs", "d", "ORB-2", "verify-dev"]).output().unwrap()).0;
    assert_eq!(dev, "verified-by-loop\nORB-1.md\nORB-2.md\n");
    let all = text(&loop_cmd(&repo).args(["logs", "d", "ORB-2", "verify", "--all"]).output().unwrap()).0;
    assert_eq!(all.matches("==> ").count(), 2, "{all}");
    assert!(all.find("dev-check-1.log").unwrap() < all.find("fix-1-check-1.log").unwrap(), "{all}");

    let out = loop_cmd(&repo).args(["logs", "d", "ORB-2", "review"]).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let err = text(&out).1;
    assert!(
        err.contains("no review log for issue ORB-2 in run d: valid phases here: baseline, verify-dev, verify-fix1"),
        "{err}"
    );

    assert!(tree(&repo.join(".loop")) == state, "logs changed the state dir");
}

/// `status` shows each issue's branch and time, what the reviewer still required of a Capped
/// issue, and `--json` has the run's, each issue's and each phase's times.
#[test]
fn status_shows_branches_times_and_what_a_capped_issue_still_needs() {
    // On the real clock (the environment fixes it per command), so phases take time.
    let repo = demo_repo();
    let ran = loop_cmd(&repo)
        .args(["run", "-m", "M1-core", "--sim-scenario", "scenario.json", "-q"])
        .env("LOOP_RUN_ID", "d")
        .env_remove("LOOP_NOW")
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(exit::NOT_ALL_DONE), "{:?}", text(&ran));
    let (out, _) = text(&loop_cmd(&repo).args(["status", "d"]).output().unwrap());
    let orb4: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("ORB-4")).take(2).collect();
    assert!(orb4[0].contains("Capped") && orb4[0].contains("loop/M1-core/ORB-4"), "{out}");
    assert_eq!(orb4[1].trim_start(), "still required: address finding of review 3", "{out}");
    assert!(out.lines().next().unwrap().contains("(started 20"), "{out}");

    let v = json(&loop_cmd(&repo).args(["status", "d", "--json"]).output().unwrap());
    assert!(v["started_at"].is_string() && v["duration_ms"].is_u64(), "{v}");
    let issues = v["issues"].as_array().unwrap();
    for i in issues {
        assert_eq!(i["branch"], format!("loop/M1-core/{}", i["id"].as_str().unwrap()));
        let at = |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        let (start, end) = (at(&i["started_at"]), at(&i["ended_at"]));
        assert!(start <= end, "{i}");
        let phases = i["phases"].as_array().unwrap();
        assert!(!phases.is_empty(), "{i}");
        for p in phases {
            let (ps, pe) = (at(&p["started_at"]), at(&p["ended_at"]));
            assert!(start <= ps && ps <= pe && pe <= end, "{p} within {i}");
            assert_eq!(p["duration_ms"].as_i64(), Some((pe - ps).num_milliseconds()), "{p}");
        }
        assert!(phases.iter().any(|p| p["duration_ms"].as_u64() > Some(0)), "some phase takes time: {i}");
        assert_eq!(i["duration_ms"].as_i64(), Some((end - start).num_milliseconds()), "{i}");
        let required = i["required_actions"].as_array().unwrap();
        if i["id"] == "ORB-4" {
            assert_eq!(required, &[serde_json::json!("address finding of review 3")]);
            let labels: Vec<&str> = phases.iter().map(|p| p["label"].as_str().unwrap()).collect();
            assert_eq!(labels.iter().filter(|l| l.starts_with("review")).count(), 3, "{labels:?}");
            assert_eq!(labels.iter().filter(|l| l.starts_with("fix")).count(), 2, "{labels:?}");
        } else {
            assert!(required.is_empty(), "{i}");
        }
    }
}
