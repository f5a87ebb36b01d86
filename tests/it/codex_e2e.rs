//! End to end with the REAL codex binary (`LOOP_TEST_CODEX_BIN`) against a scripted mock of the
//! model API on 127.0.0.1: the whole loop (dev → review → fix → review), model errors, unusable
//! replies, a hung server, and a crash right after `thread.started` resumed in the same thread.

use std::time::{Duration, Instant};

use crate::support::codex::*;
use crate::support::exit;
use serde_json::Value;

const M: &str = "M1";

fn issue_of(body: &Value) -> String {
    let t = texts(body, "user").join("\n");
    for id in ["ORB-1", "ORB-2"] {
        if t.contains(&format!("**{id}**")) {
            return id.to_string();
        }
    }
    String::new()
}

fn issue_state(status: &Value, id: &str) -> Value {
    status["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap()
}

#[test]
fn full_milestone_dev_review_fix_with_real_codex() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, body| {
        let (issue, phase, after_tool) = (issue_of(body), phase_of(body), last_item_type(body).ends_with("_output"));
        let review_no = if texts(body, "user").join("").contains("review number 2") { 2 } else { 1 };
        match (issue.as_str(), phase, after_tool) {
            // dev runs a real shell command in the worktree
            ("ORB-1", "dev", false) => shell("call_dev", "printf 'hello\\n' > hello.txt && cat hello.txt"),
            ("ORB-1", "dev", true) => message(&work_reply("pass", "loop/M1/ORB-1", "cat hello.txt")),
            ("ORB-1", "review", _) if review_no == 1 => message(&review_reply("changes_required", &["add fixed.txt"])),
            // fix applies a patch
            ("ORB-1", "fix", false) => {
                patch("call_fix", "*** Begin Patch\n*** Add File: fixed.txt\n+fixed by the fix agent\n*** End Patch\n")
            }
            ("ORB-1", "fix", true) => message(&work_reply("pass", "loop/M1/ORB-1", "cat fixed.txt")),
            ("ORB-2", "dev", false) => shell("call_dev2", "ls fixed.txt && printf 'two\\n' > two.txt"),
            ("ORB-2", "dev", true) => message(&work_reply("pass", "loop/M1/ORB-2", "ls")),
            (_, "review", _) => message(&review_reply("pass", &[])),
            other => Reply::Status(400, format!("mock: unexpected request {other:?}")),
        }
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[]), ("ORB-2", "Build on hello", &["ORB-1"])]);
    r.use_mock(&mock, codex);
    let t = Instant::now();
    let out = r.run(&["run", "--milestone", M, "--json"], &[("LOOP_RUN_ID", "e2e")]);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("TIMING e2e milestone (2 issues, 6 codex phases, {} model requests): {secs:.2}s", mock.count());
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));

    let status = r.status();
    let one = issue_state(&status, "ORB-1");
    assert_eq!(one["state"], "Done", "{status}");
    assert_eq!(one["fix_cycles"], 1);
    assert_eq!(issue_state(&status, "ORB-2")["state"], "Done");
    assert!(
        one["tokens"].as_u64().unwrap() > 0 && status["tokens"].as_u64().unwrap() > one["tokens"].as_u64().unwrap()
    );

    // Commits: loop's own, naming issue and phase; files are the agent's real work.
    let log = r.git(&r.path, &["log", "--format=%s", "loop/M1/ORB-1"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "ORB-1: review 2 (pass)",
            "ORB-1: fix cycle 1",
            "ORB-1: review 1 (changes_required)",
            "ORB-1: dev",
            "loop.toml",
            "init"
        ]
    );
    assert_eq!(r.git(&r.path, &["show", "loop/M1/ORB-1:hello.txt"]), "hello");
    assert_eq!(r.git(&r.path, &["show", "loop/M1/ORB-1:fixed.txt"]), "fixed by the fix agent");
    let log2 = r.git(&r.path, &["log", "--format=%s", "loop/M1/ORB-2"]);
    assert_eq!(
        log2.lines().take(3).collect::<Vec<_>>(),
        ["ORB-2: review 1 (pass)", "ORB-2: dev", "ORB-1: review 2 (pass)"]
    );

    // The review doc, written by loop in the issue's branch.
    let doc = r.git(&r.path, &["show", "loop/M1/ORB-1:docs/projects/orbit/reviews/M1/ORB-1.md"]);
    assert!(doc.contains("## ORB-1 — review 1: changes_required"), "{doc}");
    assert!(doc.contains("- **[high] needs: add fixed.txt** — found in review\n  - Evidence: `hello.txt:1`"), "{doc}");
    assert!(doc.contains("## ORB-1 — review 2: pass"), "{doc}");

    // The fix agent got the review's required actions; the review ran read-only, dev/fix could write.
    let reqs: Vec<Value> = (0..mock.count()).map(|i| mock.request(i)).collect();
    let fix = reqs.iter().find(|b| phase_of(b) == "fix").unwrap();
    assert!(texts(fix, "user").join("").contains("- add fixed.txt"));

    // Journal: sessions, commits, review-doc evidence, tokens; raw streams kept.
    let records = r.records("e2e");
    let sessions = events(&records, "session_started");
    assert_eq!(sessions.len(), 6, "one codex thread per phase");
    let reviews = events(&records, "review_finished");
    assert!(reviews
        .iter()
        .all(|r| r["body"]["evidence"]["note"].as_str().unwrap().contains("review_entry_written=true")));
    assert!(reviews.iter().all(|r| r["body"]["evidence"]["commit"].is_string()));
    for r in events(&records, "work_finished").iter().chain(&reviews) {
        let b = &r["body"];
        eprintln!(
            "TIMING mocked phase {} {}: {} ms",
            b["issue"],
            b["event"]["phase"].as_str().unwrap_or("review"),
            b["evidence"]["duration_ms"]
        );
    }
    let works = events(&records, "work_finished");
    assert!(works
        .iter()
        .all(|w| w["body"]["evidence"]["commit"].is_string()
            && w["body"]["evidence"]["tokens"]["input"].as_u64() > Some(0)));
    let logs = r.path.join(".loop/logs/e2e/ORB-1");
    let dev_log = std::fs::read_to_string(logs.join("dev-attempt1.jsonl")).unwrap();
    assert!(dev_log.starts_with("{\"type\":\"thread.started\""), "{dev_log}");
    assert!(dev_log.contains("command_execution"));
    assert!(logs.join("fix1-attempt1.jsonl").exists() && logs.join("review2-attempt1.jsonl").exists());
    // `loop logs` finds them by the names the journal uses.
    let shown = r.run(&["logs", "e2e", "ORB-1", "dev"], &[]);
    assert_eq!(shown.status.code(), Some(exit::OK), "{}", show(&shown));
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&dev_log), "the dev attempt's stream and stderr");
    let listed: Value = serde_json::from_slice(&r.run(&["logs", "e2e", "ORB-1", "--json"], &[]).stdout).unwrap();
    let phases: Vec<&str> = listed["logs"].as_array().unwrap().iter().map(|l| l["phase"].as_str().unwrap()).collect();
    for p in ["dev", "review1", "fix1", "review2"] {
        assert!(phases.contains(&p), "{p}: {listed}");
    }
}

#[test]
fn model_http_500_fails_the_issue_with_the_message() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, _| Reply::Status(500, "model overloaded".into()));
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let out = r.run(&["run", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    let s = issue_state(&r.status(), "ORB-1");
    assert_eq!(s["state"], "Failed");
    let reason = s["reason"].as_str().unwrap();
    // codex words a 5xx its own way; loop passes its message through.
    assert!(
        reason.contains("the dev agent exited with exit code 1: We’re currently experiencing high demand"),
        "{reason}"
    );
}

#[test]
fn unusable_replies_get_one_resume_retry_then_fail() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|n, _| match n {
        0 => message("Sure! I did it, all done."),
        _ => message(r#"{"status": "maybe"}"#),
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let t = Instant::now();
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "retry")]);
    eprintln!("TIMING one mocked phase with a schema retry (2 codex runs): {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    assert_eq!(mock.count(), 2, "exactly one retry");
    // The retry continued the same thread (it sees the bad reply) and was told what was wrong.
    let retry = mock.request(1);
    let input = input_text(&retry);
    assert!(input.contains("Sure! I did it") && input.contains("is not JSON"), "{input}");
    let s = issue_state(&r.status(), "ORB-1");
    assert_eq!(s["state"], "Failed");
    assert!(s["reason"].as_str().unwrap().contains("breaks dev.schema.json"), "{s}");
    let failed = &events(&r.records("retry"), "phase_failed")[0];
    let note = failed["body"]["evidence"]["note"].as_str().unwrap();
    assert!(
        note.contains("asked again via `codex exec resume") && note.contains("still unusable after 1 retry"),
        "{note}"
    );
    assert!(r.path.join(".loop/logs/retry/ORB-1/dev-attempt1-retry1.jsonl").exists());
}

#[test]
fn schema_breaking_review_retried_successfully_continues() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, body| match phase_of(body) {
        "dev" => message(&work_reply("pass", "loop/M1/ORB-1", "true")),
        _ if input_text(body).contains("could not use your final message") => message(&review_reply("pass", &[])),
        _ => message(r#"{"status": "pass"}"#),
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let out = r.run(&["run", "--json", "--no-review-doc"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert_eq!(mock.count(), 3);
    // --no-review-doc: no review commit; dev changed nothing, so no dev commit either.
    assert_eq!(r.git(&r.path, &["log", "--format=%s", "loop/M1/ORB-1"]), "loop.toml\ninit");
}

#[test]
fn hung_model_server_phase_timeout_kills_codex() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, _| Reply::Hang);
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    let t = Instant::now();
    let out = r.run(&["run", "--json", "--phase-timeout", "3"], &[]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    assert!(secs < 15.0, "took {secs}s");
    let s = issue_state(&r.status(), "ORB-1");
    assert_eq!(s["state"], "Failed");
    assert!(s["reason"].as_str().unwrap().contains("timed out after 3s"), "{s}");
    assert!(r.wait_no_codex(Duration::from_secs(5)), "codex survived the timeout: {:?}", r.codex_processes());
}

/// The crash comes right after the `thread.started` of the schema retry (the thread already holds
/// a whole turn), so resume must continue that thread and the model must see that turn.
#[test]
fn crash_after_thread_started_resumes_the_same_thread() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, body| {
        let user = texts(body, "user").join("\n");
        match phase_of(body) {
            "dev" if user.contains("loop was interrupted") => message(&work_reply("pass", "loop/M1/ORB-1", "true")),
            "dev" => message("first answer, not JSON"),
            _ => message(&review_reply("pass", &[])),
        }
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    // Appends: run_started, worktree_intent, worktree_created, phase_started, guard_checked,
    // process_group, session_started (the first turn), process_group (the retry's codex),
    // session_started (the retry's resume of the same thread) -> abort.
    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "crash"), ("LOOP_FAULT_AFTER_APPEND", "9")]);
    assert_ne!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(r.wait_no_codex(Duration::from_secs(20)), "orphaned codex: {:?}", r.codex_processes());
    let before = r.records("crash");
    let sessions = events(&before, "session_started");
    assert_eq!(sessions.len(), 2, "{before:#?}");
    let thread = sessions[1]["body"]["event"]["session"].as_str().unwrap().to_string();
    assert_eq!(issue_state(&r.status(), "ORB-1")["state"], "Dev");

    let out = r.run(&["resume", "crash", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let resumed = (0..mock.count())
        .map(|i| mock.request(i))
        .find(|b| texts(b, "user").join("").contains("loop was interrupted"))
        .expect("a request continuing the thread");
    // The model saw the earlier conversation: the original dev prompt and its own first answer.
    let input = input_text(&resumed);
    assert!(input.contains("first answer, not JSON"), "{input}");
    assert!(texts(&resumed, "user").iter().any(|t| t.starts_with("# dev-auto-parallel")), "{input}");
    let after = r.records("crash");
    let dev_sessions: Vec<Value> =
        events(&after, "session_started").into_iter().filter(|s| s["body"]["event"]["phase"] == "dev").collect();
    assert_eq!(dev_sessions.len(), 3);
    assert_eq!(dev_sessions[2]["body"]["event"]["session"], thread.as_str(), "resume continued the same thread");
    let dev = &events(&after, "work_finished")[0];
    let note = dev["body"]["evidence"]["note"].as_str().unwrap();
    assert!(note.contains(&format!("continued codex thread {thread}")), "{note}");
    assert_eq!(issue_state(&r.status(), "ORB-1")["state"], "Done");
}

/// The crash comes right after the first `thread.started` (codex dies with loop's pipe before its
/// first request): resume reopens that same thread and the phase completes there.
#[test]
fn crash_right_after_first_thread_started_continues_that_thread() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, body| match phase_of(body) {
        "dev" => message(&work_reply("pass", "loop/M1/ORB-1", "true")),
        _ => message(&review_reply("pass", &[])),
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    // The 7th append is the first session_started (after run_started, worktree_intent,
    // worktree_created, phase_started, guard_checked, process_group).
    let out = r.run(&["run"], &[("LOOP_RUN_ID", "crash5"), ("LOOP_FAULT_AFTER_APPEND", "7")]);
    assert_ne!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(r.wait_no_codex(Duration::from_secs(20)), "orphaned codex: {:?}", r.codex_processes());
    let before = events(&r.records("crash5"), "session_started");
    assert_eq!(before.len(), 1);
    let thread = before[0]["body"]["event"]["session"].as_str().unwrap().to_string();

    let out = r.run(&["resume", "crash5"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let after = r.records("crash5");
    let dev: Vec<Value> =
        events(&after, "session_started").into_iter().filter(|s| s["body"]["event"]["phase"] == "dev").collect();
    let note = events(&after, "work_finished")[0]["body"]["evidence"]["note"].as_str().unwrap().to_string();
    // codex now dies with loop (its supervisor kills it at once), and it may not have stored a
    // thread that had not sent its first request yet. Either resume continued that thread, or
    // codex could not reopen it and the phase started afresh; both are said in the evidence.
    if note.contains(&format!("continued codex thread {thread}")) {
        assert_eq!(dev.len(), 2);
        assert_eq!(dev[1]["body"]["event"]["session"], thread.as_str());
        let resumed = (0..mock.count())
            .map(|i| mock.request(i))
            .find(|b| texts(b, "user").join("").contains("loop was interrupted"))
            .expect("a request continuing the thread");
        assert!(texts(&resumed, "user").iter().any(|t| t.contains("# dev-auto-parallel")));
    } else {
        assert!(note.contains(&format!("could not continue codex thread {thread}")), "{note}");
        assert!(note.contains("started the phase afresh"), "{note}");
        assert_ne!(dev.last().unwrap()["body"]["event"]["session"], thread.as_str());
    }
    assert_eq!(issue_state(&r.status(), "ORB-1")["state"], "Done");
}

#[test]
fn dry_run_changes_nothing_and_shows_argv_and_prompts() {
    let mut r = repo(M, &[("ORB-1", "Say hello", &[]), ("ORB-2", "Build on hello", &["ORB-1"])]);
    r.codex = Some("/nonexistent/codex".into());
    let snapshot = |r: &Repo| {
        (
            r.git(&r.path, &["status", "--porcelain", "--ignored"]),
            r.git(&r.path, &["worktree", "list"]),
            r.git(&r.path, &["for-each-ref"]),
            std::fs::read_to_string(r.path.join(".git/info/exclude")).unwrap_or_default(),
            std::fs::read_to_string(r.path.join(".git/config")).unwrap(),
        )
    };
    let before = snapshot(&r);
    let out = r.run(&["run", "--milestone", M, "--dry-run", "--verbose", "--model", "gpt-5.5"], &[]);
    // A missing codex would stop the run: first line, and pre-flight's exit after the summary.
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(snapshot(&r), before);
    assert!(!r.path.join(".loop").exists(), "dry run created the state dir");
    assert!(
        text.starts_with("warning: codex is not installed") && text.contains("npm install -g @openai/codex"),
        "{text}"
    );
    assert!(text.contains("branch    loop/M1/ORB-2"), "{text}");
    let wt = r.path.join(".loop/worktrees/M1/ORB-1");
    assert!(text.contains(&format!(
        "/nonexistent/codex exec --json -C {} -s workspace-write -m gpt-5.5 -c sandbox_workspace_write.exclude_slash_tmp=true",
        wt.display()
    )), "{text}");
    assert!(text.contains("-s read-only -m gpt-5.5 --output-schema"), "{text}");
    assert!(text.contains("You are the **fix** agent for issue **ORB-2**"), "{text}");
    assert!(text.contains("review doc docs/projects/orbit/reviews/M1/ORB-2.md"));
    // Without --verbose the same summary names the prompts instead of printing them.
    let out = r.run(&["run", "--milestone", M, "--dry-run", "--model", "gpt-5.5"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let compact = String::from_utf8_lossy(&out.stdout);
    assert!(!compact.contains("You are the **fix** agent"), "{compact}");
    assert!(compact.contains(" -- <prompt: ") && compact.contains(" lines, dev-auto-fix-review>\n"), "{compact}");
    assert_eq!(snapshot(&r), before);
}

#[test]
fn missing_codex_says_how_to_install() {
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.codex = Some("/nonexistent/codex".into());
    let out = r.run(&["run"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("codex is not installed") && err.contains("npm install -g @openai/codex@0.169.0"), "{err}");
    assert!(!r.path.join(".loop/runs").exists());
}

#[test]
fn issue_filter_requires_dependencies() {
    let r = repo(M, &[("ORB-1", "Say hello", &[]), ("ORB-2", "Build on hello", &["ORB-1"])]);
    let out = r.run(&["run", "--agent", "sim", "--issue", "ORB-2"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("depends on ORB-1"));
    let out = r.run(&["run", "--agent", "sim", "--issue", "ORB-1", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["issues"].as_array().unwrap().len(), 1);
    // ORB-1 is Done in an earlier run now, so ORB-2 alone may run.
    let out = r.run(&["run", "--agent", "sim", "--issue", "ORB-2"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
}

#[test]
fn prompts_list_show_install() {
    let r = repo(M, &[("ORB-1", "Say hello", &[])]);
    let out = r.run(&["prompts", "list"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dev-auto-parallel") && text.contains("dev-auto-fix-review") && text.contains("built-in"),
        "{text}"
    );
    // A team template in the loop.toml prompts dir overrides the built-in one.
    std::fs::create_dir_all(r.path.join("team")).unwrap();
    std::fs::write(r.path.join("team/dev-auto-parallel.md"), "team dev prompt for {{issue_id}}\n").unwrap();
    std::fs::write(r.path.join("loop.toml"), "[prompts]\ndir = \"team\"\n").unwrap();
    let out = r.run(&["prompts", "show", "dev-auto-parallel"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "team dev prompt for {{issue_id}}\n");
    let home = r.path.parent().unwrap().join("home");
    let (cx, cl) = (home.join("codex"), home.join("claude"));
    let out =
        r.run(&["prompts", "install", "--codex-home", cx.to_str().unwrap(), "--claude-dir", cl.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(cx.join("prompts/dev-auto-review-linear.md").exists() && cl.join("dev-auto-fix-review.md").exists());
    // #14: the installed commands take the issue as their argument; no `{{…}}` is left in them.
    let dev = std::fs::read_to_string(cl.join("dev-auto-parallel.md")).unwrap();
    assert!(dev.starts_with("---\ndescription:") && dev.contains("team dev prompt for $1"), "{dev}");
    let fix = std::fs::read_to_string(cx.join("prompts/dev-auto-fix-review.md")).unwrap();
    assert!(!fix.contains("{{") && fix.contains("$1"), "{fix}");
    // Installing again changes nothing; an edited copy is never overwritten silently.
    let out =
        r.run(&["prompts", "install", "--codex-home", cx.to_str().unwrap(), "--claude-dir", cl.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().all(|l| l.starts_with("unchanged ")), "{}", show(&out));
    std::fs::write(cl.join("dev-auto-fix-review.md"), "my own fix prompt\n").unwrap();
    let before = std::fs::read(cx.join("prompts/dev-auto-parallel.md")).unwrap();
    let out =
        r.run(&["prompts", "install", "--codex-home", cx.to_str().unwrap(), "--claude-dir", cl.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&cl.join("dev-auto-fix-review.md").display().to_string()) && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(cl.join("dev-auto-fix-review.md")).unwrap(), "my own fix prompt\n");
    assert_eq!(std::fs::read(cx.join("prompts/dev-auto-parallel.md")).unwrap(), before);
    let out = r.run(
        &["prompts", "install", "--force", "--codex-home", cx.to_str().unwrap(), "--claude-dir", cl.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(cl.join("dev-auto-fix-review.md")).unwrap(), fix);
    let out = r.run(&["prompts", "list", "--json"], &[]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "dev-auto-parallel");
    assert_eq!(list[0]["phase"], "dev");
    assert!(list[0]["source"].as_str().unwrap().ends_with("team/dev-auto-parallel.md"), "{list}");
    assert_eq!(list[1]["source"], "built-in");
    // A bad loop.toml names the file and line.
    std::fs::write(r.path.join("loop.toml"), "[codex]\nmodle = \"x\"\n").unwrap();
    let out = r.run(&["run", "--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loop.toml:2: unknown field `modle`"), "{}", show(&out));
}

#[test]
fn token_budget_caps_the_issue() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, _| message(&work_reply("pass", "loop/M1/ORB-1", "true")));
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    // The mock reports 100 input + 20 output tokens per response.
    let out = r.run(&["run", "--json", "--max-tokens-per-issue", "50"], &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    let status = r.status();
    let s = issue_state(&status, "ORB-1");
    assert_eq!(s["state"], "Capped");
    assert_eq!(s["reason"], "token budget exceeded: 120 used, limit 50");
    assert_eq!(s["tokens"], 120);
    assert_eq!(status["tokens"], 120);
    let text = String::from_utf8_lossy(&r.run(&["status"], &[]).stdout).to_string();
    assert!(text.contains("120 tokens") && text.contains("tokens: 120 in total"), "{text}");
}

/// #12 with the real codex: loop runs the checks itself after dev and after the fix; a failing
/// check is a fix cycle carrying the failing command and its output, and the review only ever
/// sees a verified commit.
#[test]
fn verification_with_real_codex_fails_closed_then_passes_after_the_fix() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, body| {
        let (phase, after_tool) = (phase_of(body), last_item_type(body).ends_with("_output"));
        match (phase, after_tool) {
            ("dev", false) => shell("call_dev", "printf 'bad\\n' > status.txt"),
            ("dev", true) => message(&work_reply("pass", "loop/M1/ORB-1", "cat status.txt")),
            ("fix", false) => shell("call_fix", "printf 'ok\\n' > status.txt"),
            ("fix", true) => message(&work_reply("pass", "loop/M1/ORB-1", "cat status.txt")),
            ("review", _) => message(&review_reply("pass", &[])),
            other => Reply::Status(400, format!("mock: unexpected request {other:?}")),
        }
    });
    let mut r = repo(M, &[("ORB-1", "Make the status ok", &[])]);
    r.use_mock(&mock, codex);
    let toml = std::fs::read_to_string(r.path.join("loop.toml")).unwrap();
    std::fs::write(r.path.join("loop.toml"), format!("{toml}\n[verify]\ncommands = [\"grep -q ok status.txt\"]\n"))
        .unwrap();
    // The check passes on the base (so a failure after dev is the issue's, not pre-existing).
    std::fs::write(r.path.join("status.txt"), "ok\n").unwrap();
    r.git(&r.path, &["add", "status.txt"]);
    r.git(&r.path, &["commit", "-q", "-am", "verify"]);
    let out = r.run(&["run", "--milestone", M, "--json"], &[("LOOP_RUN_ID", "v")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let one = issue_state(&r.status(), "ORB-1");
    assert_eq!((one["state"].as_str(), one["fix_cycles"].as_u64()), (Some("Done"), Some(1)), "{one}");

    let records = r.records("v");
    // dev → verify (fails) → fix → verify (passes) → review: no review before a passing check.
    let steps: Vec<String> = records
        .iter()
        .filter_map(|rec| {
            let e = rec["body"]["event"]["event"].as_str()?;
            match e {
                "work_finished" => Some(rec["body"]["event"]["phase"].as_str()?.to_string()),
                "verify_finished" => {
                    let failed = rec["body"]["event"]["failures"].as_array().is_some_and(|f| !f.is_empty());
                    Some(if failed { "checks failed" } else { "checks passed" }.to_string())
                }
                "review_finished" => Some("review".to_string()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(steps, ["dev", "checks failed", "fix", "checks passed", "review"], "{records:?}");
    // The fix agent was told which check failed and how.
    let reqs: Vec<Value> = (0..mock.count()).map(|i| mock.request(i)).collect();
    let fix = reqs.iter().find(|b| phase_of(b) == "fix").unwrap();
    assert!(texts(fix, "user").join("").contains("grep -q ok status.txt"), "the fix prompt names the failing check");
    assert_eq!(reqs.iter().filter(|b| phase_of(b) == "review").count(), 1, "one review, after the passing check");
    assert_eq!(r.git(&r.path, &["show", "loop/M1/ORB-1:status.txt"]), "ok");
}
