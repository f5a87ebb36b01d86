//! End to end with the REAL Claude Code CLI (`LOOP_TEST_CLAUDE_BIN`) against a scripted mock of
//! the Anthropic Messages API on 127.0.0.1: a milestone through dev → review → fix → review with
//! another issue capped, tokens and cost journaled per phase, the hook refusing a forbidden git
//! command and out-of-worktree and review writes, and a crash mid-phase resumed in the same
//! claude session.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::anthropic::*;
use crate::support::codex::{events, review_reply, show, work_reply};
use crate::support::exit;

fn issue_state(status: &Value, id: &str) -> Value {
    status["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap()
}

/// The working directory claude told the model (its system prompt names it).
fn workdir(body: &Value) -> String {
    let system = body["system"].to_string() + &body["messages"].to_string();
    let at = system.find("Primary working directory: ").expect("claude names its working directory") + 27;
    system[at..].split(['\\', '"', ' ']).next().unwrap().to_string()
}

#[test]
fn milestone_with_real_claude_reaches_done_and_capped_with_tokens_and_cost() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|_, body| {
        let (issue, phase, after) = (issue_of(body), phase_of(body), after_tool(body));
        let review_no = if texts(body, "user").join("").contains("review number 2") { 2 } else { 1 };
        match (issue.as_str(), phase, after) {
            ("ORB-1", "dev", false) => bash("printf 'hello\\n' > hello.txt && cat hello.txt"),
            ("ORB-1", "dev", true) => structured(&work_reply("pass", "loop/M1/ORB-1", "cat hello.txt")),
            ("ORB-1", "review", _) if review_no == 1 => {
                structured(&review_reply("changes_required", &["add fixed.txt"]))
            }
            ("ORB-1", "fix", false) => write(&format!("{}/fixed.txt", workdir(body)), "fixed by claude\n"),
            ("ORB-1", "fix", true) => structured(&work_reply("pass", "loop/M1/ORB-1", "cat fixed.txt")),
            ("ORB-1", "review", _) => structured(&review_reply("pass", &[])),
            // ORB-2's reviews never pass: capped after its one fix cycle.
            ("ORB-2", "dev" | "fix", false) => bash("date >> two.txt"),
            ("ORB-2", "dev" | "fix", true) => structured(&work_reply("pass", "loop/M1/ORB-2", "true")),
            ("ORB-2", "review", _) => structured(&review_reply("changes_required", &["never good enough"])),
            other => Reply::Status(400, "invalid_request_error", format!("mock: unexpected request {other:?}")),
        }
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[]), ("ORB-2", "Try forever", &[])]);
    let t = Instant::now();
    let out = r.run(&["run", "--json", "--max-fix-cycles", "1"], &[("LOOP_RUN_ID", "cl")]);
    eprintln!(
        "TIMING claude e2e (2 issues, 8 claude phases, {} model requests): {:.2}s",
        mock.count(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));

    let status = r.repo.status();
    let one = issue_state(&status, "ORB-1");
    assert_eq!((one["state"].as_str(), one["fix_cycles"].as_u64()), (Some("Done"), Some(1)), "{status}");
    assert_eq!(issue_state(&status, "ORB-2")["state"], "Capped", "{status}");
    assert!(one["tokens"].as_u64().unwrap() > 0, "{status}");

    let repo = &r.repo;
    assert_eq!(repo.git(&repo.path, &["show", "loop/M1/ORB-1:hello.txt"]), "hello");
    assert_eq!(repo.git(&repo.path, &["show", "loop/M1/ORB-1:fixed.txt"]), "fixed by claude");
    let log = repo.git(&repo.path, &["log", "--format=%s", "loop/M1/ORB-1"]);
    assert_eq!(
        log.lines().take(4).collect::<Vec<_>>(),
        ["ORB-1: review 2 (pass)", "ORB-1: fix cycle 1", "ORB-1: review 1 (changes_required)", "ORB-1: dev"]
    );
    // The fix got the review's required actions.
    let fix = mock.all().into_iter().find(|b| phase_of(b) == "fix" && issue_of(b) == "ORB-1").unwrap();
    assert!(texts(&fix, "user").join("").contains("- add fixed.txt"));

    // Journal: one session per phase, tokens and claude's own cost on every finished phase.
    let records = repo.records("cl");
    assert_eq!(events(&records, "session_started").len(), 8, "one claude session per phase");
    let finished: Vec<Value> =
        events(&records, "work_finished").into_iter().chain(events(&records, "review_finished")).collect();
    assert_eq!(finished.len(), 8);
    for f in &finished {
        let ev = &f["body"]["evidence"];
        // 150 prompt tokens per model request (100 + 50 cache reads), 20 output.
        assert!(ev["tokens"]["input"].as_u64().unwrap() >= 150, "{ev}");
        assert!(ev["tokens"]["cached_input"].as_u64().unwrap() >= 50, "{ev}");
        assert!(ev["tokens"]["output"].as_u64().unwrap() >= 20, "{ev}");
        assert!(ev["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "cost journaled: {ev}");
    }
    // Raw streams kept; a review ran without the edit tools.
    let logs = repo.path.join(".loop/logs/cl/ORB-1");
    let dev_log = std::fs::read_to_string(logs.join("dev-attempt1.jsonl")).unwrap();
    assert!(dev_log.starts_with("{\"type\":\"system\",\"subtype\":\"init\""), "{dev_log}");
    let review_log = std::fs::read_to_string(logs.join("review1-attempt1.jsonl")).unwrap();
    let init: Value = serde_json::from_str(review_log.lines().next().unwrap()).unwrap();
    let tools: Vec<&str> = init["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"Bash") && !tools.contains(&"Write") && !tools.contains(&"Edit"), "{tools:?}");
    // Claude's state lives in the run's own dir, not in HOME.
    assert!(repo.path.join(".loop/logs/cl/claude-config").is_dir());
    assert!(!repo.env.home().join(".claude").exists() && !repo.env.home().join(".claude.json").exists());
}

#[test]
fn hook_refuses_forbidden_git_and_writes_outside_the_worktree_and_in_review() {
    let Some(claude) = claude_bin() else { return };
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("escaped.txt").display().to_string();
    let target = outside_file.clone();
    let mock = Mock::start(move |_, body| {
        let results = tool_results(body);
        match (phase_of(body), results.len()) {
            ("dev", 0) => bash("git push --force origin HEAD"),
            ("dev", 1) => write(&target, "escaped"),
            ("dev", 2) => write(&format!("{}/inside.txt", workdir(body)), "inside"),
            ("dev", _) => structured(&work_reply("pass", "loop/M1/ORB-1", "true")),
            ("review", 0) => write(&format!("{}/review-wrote.txt", workdir(body)), "no"),
            ("review", _) => structured(&review_reply("pass", &[])),
            other => Reply::Status(400, "invalid_request_error", format!("mock: unexpected request {other:?}")),
        }
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "hook")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(!std::path::Path::new(&outside_file).exists(), "the write outside the worktree was refused");
    let repo = &r.repo;
    assert_eq!(repo.git(&repo.path, &["show", "loop/M1/ORB-1:inside.txt"]), "inside");
    let wt_files = repo.git(&repo.path, &["ls-tree", "-r", "--name-only", "loop/M1/ORB-1"]);
    assert!(!wt_files.contains("review-wrote.txt"), "{wt_files}");

    // The model was told why, in the hook's words.
    let reqs = mock.all();
    let dev_results = tool_results(reqs.iter().rfind(|b| phase_of(b) == "dev").unwrap()).join("\n");
    assert!(dev_results.contains("loop guard: refused `git push --force origin HEAD`"), "{dev_results}");
    assert!(dev_results.contains("claude-edit-outside-worktree"), "{dev_results}");

    let records = repo.records("hook");
    let decided: Vec<(String, String, bool, String)> = events(&records, "command_decided")
        .iter()
        .map(|x| {
            let f = &x["body"]["event"];
            let argv: Vec<&str> = f["argv"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            (
                f["tool"].as_str().unwrap().to_string(),
                argv.join(" "),
                f["allowed"].as_bool().unwrap(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let find = |tool: &str, what: &str| decided.iter().find(|d| d.0 == tool && d.1.contains(what)).cloned();
    let push = find("git", "push --force").unwrap_or_else(|| panic!("{decided:#?}"));
    assert!(!push.2 && push.3.ends_with("(claude-hook)"), "{push:?}");
    let escaped = find("Write", "escaped.txt").unwrap_or_else(|| panic!("{decided:#?}"));
    assert_eq!((escaped.2, escaped.3.as_str()), (false, "claude-edit-outside-worktree (claude-hook)"));
    let inside = find("Write", "inside.txt").unwrap_or_else(|| panic!("{decided:#?}"));
    assert_eq!((inside.2, inside.3.as_str()), (true, "claude-edit-in-worktree (claude-hook)"));
    // The review could not write: the tool is not even offered to it.
    let review = reqs.iter().find(|b| phase_of(b) == "review" && !tool_results(b).is_empty()).unwrap();
    let said = tool_results(review).join("\n");
    assert!(said.contains("No such tool available: Write"), "{said}");
}

#[test]
fn killed_mid_phase_resume_continues_the_same_claude_session() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|_, body| {
        let user = texts(body, "user").join("\n");
        match (phase_of(body), after_tool(body)) {
            ("dev", _) if user.contains("loop was interrupted") => {
                structured(&work_reply("pass", "loop/M1/ORB-1", "cat step.txt"))
            }
            ("dev", false) => bash("echo step1 > step.txt && echo ran-step1"),
            ("dev", true) => Reply::Hang,
            _ => structured(&review_reply("pass", &[])),
        }
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let mut child = r.loop_cmd(&["run", "--json"]).env("LOOP_RUN_ID", "crash").spawn().expect("start loop");
    let until = Instant::now() + Duration::from_secs(60);
    while mock.hung.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the phase never reached the hanging request");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: loop gets no chance to journal anything more.
    let ok = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let _ = child.wait();
    assert!(r.wait_no_claude(Duration::from_secs(20)), "orphaned claude: {:?}", r.claude_processes());
    let before = r.repo.records("crash");
    let sessions = events(&before, "session_started");
    assert_eq!(sessions.len(), 1, "{before:#?}");
    let session = sessions[0]["body"]["event"]["session"].as_str().unwrap().to_string();

    let out = r.run(&["resume", "crash", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let resumed = mock
        .all()
        .into_iter()
        .find(|b| texts(b, "user").join("").contains("loop was interrupted"))
        .expect("a request continuing the session");
    // The model saw the earlier conversation: the dev prompt and its Bash call's result.
    assert!(tool_results(&resumed).join("").contains("ran-step1"), "{resumed}");
    assert!(texts(&resumed, "user").iter().any(|t| t.contains("# dev-auto-parallel")), "{resumed}");
    let after = r.repo.records("crash");
    let dev: Vec<Value> =
        events(&after, "session_started").into_iter().filter(|s| s["body"]["event"]["phase"] == "dev").collect();
    assert_eq!(dev.len(), 2, "{after:#?}");
    assert_eq!(dev[1]["body"]["event"]["session"], session.as_str(), "resume continued the same session");
    let note = events(&after, "work_finished")[0]["body"]["evidence"]["note"].as_str().unwrap().to_string();
    assert!(note.contains(&format!("continued claude session {session}")), "{note}");
    assert_eq!(issue_state(&r.repo.status(), "ORB-1")["state"], "Done");
    assert_eq!(r.repo.git(&r.repo.path, &["show", "loop/M1/ORB-1:step.txt"]), "step1");
}

#[test]
fn a_reply_without_structured_output_is_asked_again_in_the_same_session() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|_, body| {
        let user = texts(body, "user").join("\n");
        match phase_of(body) {
            "dev" if user.contains("could not use your final message") => {
                structured(&work_reply("pass", "loop/M1/ORB-1", "true"))
            }
            "dev" => text("Sure! I did it, all done."),
            _ => structured(&review_reply("pass", &[])),
        }
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "retry")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    // The retry continued the session: the model sees its own unusable answer.
    let retry = mock.all().into_iter().find(|b| texts(b, "user").join("").contains("could not use")).unwrap();
    assert!(retry["messages"].to_string().contains("Sure! I did it"), "{retry}");
    let records = r.repo.records("retry");
    let dev = &events(&records, "work_finished")[0];
    let note = dev["body"]["evidence"]["note"].as_str().unwrap();
    assert!(note.contains("asked again via `claude --resume"), "{note}");
    assert!(r.repo.path.join(".loop/logs/retry/ORB-1/dev-attempt1-retry1.jsonl").exists());
    let s = events(&records, "session_started");
    assert_eq!(s[0]["body"]["event"]["session"], s[1]["body"]["event"]["session"], "one session, resumed");
}

#[test]
fn an_api_error_fails_the_phase_in_claudes_words() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|_, _| Reply::Status(400, "invalid_request_error", "mock says the prompt is bad".into()));
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["run", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    let s = issue_state(&r.repo.status(), "ORB-1");
    assert_eq!(s["state"], "Failed");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("mock says the prompt is bad"), "{reason}");
}

#[test]
fn dry_run_shows_claudes_argv_and_changes_nothing() {
    let mock = Mock::start(|_, _| Reply::Hang);
    let r = claude_repo(&mock, "/nonexistent/claude".into(), &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["run", "--dry-run", "--model", "claude-mock-1"], &[]);
    // A missing claude would stop the run: the dry run says so first and exits as pre-flight does.
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!r.repo.path.join(".loop").exists(), "dry run created the state dir");
    assert!(
        text.starts_with("warning: claude is not installed") && text.contains("@anthropic-ai/claude-code@"),
        "{text}"
    );
    // One line per phase: the prompt and the inline JSON schema are named, not spelled out.
    assert!(text.contains("\ndev       /nonexistent/claude -p <prompt: "), "{text}");
    assert!(text.contains(" lines, dev-auto-parallel> --output-format stream-json --verbose --json-schema <json schema: dev> --settings "), "{text}");
    let settings = r.repo.path.join(".loop/logs");
    assert!(text.contains("--permission-mode acceptEdits --allowedTools Bash --model claude-mock-1"), "{text}");
    assert!(text.contains("--disallowedTools Edit Write NotebookEdit --model claude-mock-1"), "{text}");
    assert!(text.contains(&format!("--settings {}/", settings.display())), "{text}");
    assert_eq!(mock.count(), 0);
    // A real run stops at pre-flight, saying how to install claude.
    let out = r.run(&["run"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("claude is not installed") && err.contains("npm install -g @anthropic-ai/claude-code"),
        "{err}"
    );
}

/// The `agent_retried` facts of a run.
fn retries_of(r: &ClaudeRepo, run: &str) -> Vec<Value> {
    events(&r.repo.records(run), "agent_retried").into_iter().map(|e| e["body"]["event"].clone()).collect()
}

/// #13: an API blip (429) that claude gives up on is retried by loop, journaled before the wait,
/// and the issue still ends Done.
#[test]
fn a_429_is_retried_by_loop_journaled_and_the_issue_ends_done() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|n, body| match (n, phase_of(body)) {
        (0, _) => Reply::Status(429, "rate_limit_error", "mock: slow down".into()),
        (_, "dev") => structured(&work_reply("pass", "loop/M1/ORB-1", "true")),
        _ => structured(&review_reply("pass", &[])),
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "blip")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let retried = retries_of(&r, "blip");
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0]["phase"], "dev");
    let error = retried[0]["error"].as_str().unwrap();
    assert!(error.contains("429") || error.to_lowercase().contains("rate"), "{error}");
}

/// #13: a claude that prints nothing for the stall timeout is killed long before the phase
/// timeout, journaled as stalled, and the retry finishes the phase.
#[test]
fn a_stalled_claude_is_killed_at_the_stall_timeout_and_retried() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|n, body| match (n, phase_of(body)) {
        (0, _) => Reply::Hang,
        (_, "dev") => structured(&work_reply("pass", "loop/M1/ORB-1", "true")),
        _ => structured(&review_reply("pass", &[])),
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let t = Instant::now();
    let out = r.run(&["run", "--json", "--stall-timeout", "4"], &[("LOOP_RUN_ID", "stall")]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(mock.hung.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the mock never hung");
    // The phase timeout is 120 s (claude_repo's loop.toml).
    assert!(secs < 100.0, "a stalled phase waited {secs:.1}s");
    let retried = retries_of(&r, "stall");
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert!(retried[0]["error"].as_str().unwrap().contains("stalled: no event for 4s"), "{}", retried[0]);
    assert!(r.wait_no_claude(Duration::from_secs(10)), "claude outlived its phase");
}

/// #13: claude's own reported cost counts against the issue's cost budget: Capped, with the reason.
#[test]
fn claudes_reported_cost_caps_an_issue_over_its_budget() {
    let Some(claude) = claude_bin() else { return };
    let mock = Mock::start(|_, body| match phase_of(body) {
        "dev" | "fix" => structured(&work_reply("pass", "loop/M1/ORB-1", "true")),
        _ => structured(&review_reply("changes_required", &["more"])),
    });
    let r = claude_repo(&mock, claude, &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["run", "--json", "--max-cost-per-issue", "0.0000001"], &[("LOOP_RUN_ID", "cost")]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    let s = issue_state(&r.repo.status(), "ORB-1");
    assert_eq!(s["state"], "Capped", "{s}");
    assert!(s["reason"].as_str().unwrap().starts_with("cost budget exceeded"), "{s}");
    // Capped right after dev, the only phase that ran.
    let phases = events(&r.repo.records("cost"), "phase_started");
    assert_eq!(phases.len(), 1, "{phases:?}");
}

/// #13: a mixed run — dev on the real codex, review on the real claude, each against its own
/// loopback mock — journals each phase's backend, and the review's cost is claude's own.
#[test]
fn dev_on_codex_and_review_on_claude_in_one_run() {
    let Some(claude) = claude_bin() else { return };
    let Some(codex) = crate::support::codex::codex_bin() else { return };
    let codex_mock = crate::support::codex::Mock::start(|_, _| {
        crate::support::codex::message(&work_reply("pass", "loop/M1/ORB-1", "true"))
    });
    let claude_mock = Mock::start(|_, body| match phase_of(body) {
        "review" => structured(&review_reply("pass", &[])),
        other => Reply::Status(400, "invalid_request_error", format!("mock: claude got a {other} phase")),
    });
    let mut repo = crate::support::codex::repo("M1", &[("ORB-1", "Say hello", &[])]);
    repo.use_mock(&codex_mock, codex);
    let r = ClaudeRepo { repo, claude, base_url: claude_mock.url() };
    let out =
        r.run(&["run", "--json", "--agent", "codex", "--agent-for", "review=claude"], &[("LOOP_RUN_ID", "mixed")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(codex_mock.count() >= 1 && claude_mock.count() >= 1, "both backends ran");
    let records = r.repo.records("mixed");
    let chosen: Vec<(String, String)> = events(&records, "phase_agent")
        .iter()
        .map(|e| {
            let f = &e["body"]["event"];
            (f["phase"].as_str().unwrap().to_string(), f["kind"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(chosen, [("dev".to_string(), "codex".to_string()), ("review".into(), "claude".into())], "{chosen:?}");
    let review = &events(&records, "review_finished")[0]["body"]["evidence"];
    assert!(review["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "claude's cost: {review}");
}
