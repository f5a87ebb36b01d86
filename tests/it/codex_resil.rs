//! The real codex against the mock when things go wrong on the way to the model (issue #13,
//! "no stalls, no give-up on a blip"): a stalled stream is killed at the stall timeout, a 429
//! is retried with each attempt journaled, a 401 fails at once in codex's words, and a codex
//! that is not logged in stops the run in pre-flight before anything is written.

use std::time::{Duration, Instant};

use crate::support::codex::*;
use crate::support::exit;
use serde_json::Value;

const M: &str = "M1";

fn issue_state(status: &Value, id: &str) -> Value {
    status["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap()
}

/// The `agent_retried` facts of a run.
fn retries(r: &Repo, run: &str) -> Vec<Value> {
    events(&r.records(run), "agent_retried").into_iter().map(|e| e["body"]["event"].clone()).collect()
}

#[test]
fn a_stalled_stream_is_killed_at_the_stall_timeout_and_journaled() {
    let Some(codex) = codex_bin() else { return };
    // The model never answers: codex prints thread.started and turn.started, then nothing (its
    // own idle timeout is 10 s in the mock provider; the phase timeout is 120 s).
    let mock = Mock::start(|_, _| Reply::Hang);
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let t = Instant::now();
    let out = r.run(&["run", "--json", "--stall-timeout", "1.5", "--agent-retries", "1"], &[("LOOP_RUN_ID", "stall")]);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("TIMING two stalled codex attempts at a 1.5 s stall timeout: {secs:.2}s");
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    // Two attempts of 1.5 s plus the process group's grace each; codex's own idle timeout alone would
    // take 20 s, the phase timeout 240 s.
    assert!(secs < 16.0, "took {secs}s");
    let s = issue_state(&r.status(), "ORB-1");
    assert_eq!(s["state"], "Failed", "{s}");
    assert_eq!(s["reason"], "the dev agent stalled: no event for 1.5s; its process group was killed", "{s}");
    let retried = retries(&r, "stall");
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0]["retry"], 1);
    assert!(retried[0]["error"].as_str().unwrap().contains("stalled"), "{}", retried[0]);
    assert!(r.wait_no_codex(Duration::from_secs(5)), "codex survived the stall: {:?}", r.codex_processes());
}

#[test]
fn a_429_is_retried_in_the_same_thread_and_the_issue_ends_done() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|n, body| match (n, phase_of(body)) {
        (0, _) => Reply::Status(429, "slow down".into()),
        (_, "dev") => message(&work_reply("pass", "loop/M1/ORB-1", "true")),
        _ => message(&review_reply("pass", &[])),
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let out = r.run(&["run", "--json", "--no-review-doc"], &[("LOOP_RUN_ID", "blip")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert_eq!(issue_state(&r.status(), "ORB-1")["state"], "Done");
    assert_eq!(mock.count(), 3, "the 429, dev again, review");
    let retried = retries(&r, "blip");
    assert_eq!(retried.len(), 1, "{retried:?}");
    let e = &retried[0];
    assert_eq!((e["phase"].as_str(), e["retry"].as_u64(), e["delay_ms"].as_u64()), (Some("dev"), Some(1), Some(50)));
    // codex's own words, and the thread the retry continued.
    assert!(e["error"].as_str().unwrap().contains("429 Too Many Requests"), "{e}");
    let thread = e["session"].as_str().expect("the failed attempt's thread");
    let started: Vec<Value> = events(&r.records("blip"), "session_started");
    assert_eq!(started[0]["body"]["event"]["session"], thread, "{started:?}");
    // The retry is journaled before the attempt it announces.
    let records = r.records("blip");
    let at = |kind: &str| records.iter().position(|x| x["body"]["event"]["event"] == kind).unwrap();
    assert!(at("agent_retried") < at("work_finished"));
    let replay = r.run(&["replay", "blip"], &[]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(text.contains(&format!("dev retry 1 in 0.05s, continuing session {thread}: ")), "{text}");
}

#[test]
fn a_401_fails_at_once_in_codexs_words() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, _| Reply::Status(401, "Incorrect API key provided".into()));
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "auth")]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    assert_eq!(mock.count(), 1, "a permanent error is not retried");
    let s = issue_state(&r.status(), "ORB-1");
    assert_eq!(s["state"], "Failed");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("the dev agent exited with exit code 1: unexpected status 401 Unauthorized: Incorrect API key"),
        "{reason}"
    );
    assert!(retries(&r, "auth").is_empty());
}

#[test]
fn a_500_is_retried_up_to_the_limit_then_fails_with_codexs_words() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, _| Reply::Status(500, "model overloaded".into()));
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let out = r.run(&["run", "--json", "--agent-retries", "2"], &[("LOOP_RUN_ID", "five")]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    assert_eq!(mock.count(), 3, "the first attempt and two retries");
    let delays: Vec<u64> = retries(&r, "five").iter().map(|e| e["delay_ms"].as_u64().unwrap()).collect();
    assert_eq!(delays, [50, 100], "base × 2ⁿ");
    // Every attempt's stream is kept (the retries continue the thread: `exec resume`).
    let logs = r.path.join(".loop/logs/five/ORB-1");
    for name in ["dev-attempt1.jsonl", "dev-attempt1-resume.jsonl", "dev-attempt1-resume-2.jsonl"] {
        assert!(logs.join(name).exists(), "{name}: {:?}", std::fs::read_dir(&logs).unwrap().collect::<Vec<_>>());
    }
    let reason = issue_state(&r.status(), "ORB-1")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("We’re currently experiencing high demand"), "{reason}");
}

#[test]
fn codex_not_logged_in_stops_the_run_in_preflight_and_writes_nothing() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, _| Reply::Status(400, "never asked".into()));
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex.clone());
    // Log out of this test's CODEX_HOME (where the run's codex would look).
    let mut c = r.env.command(&codex);
    let o = c.args(["logout"]).env("CODEX_HOME", &r.codex_home).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = r.run(&["run", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("codex is not logged in") && stderr.contains("run `codex login`"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(!r.path.join(".loop").exists(), "pre-flight wrote state");
    assert_eq!(mock.count(), 0);
}
