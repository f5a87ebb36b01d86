//! Guardrails end to end: the real loop binary on temporary repos, real git, real gt.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::{exit, TestEnvironment, TestRepo};

struct Repo {
    /// The repository, in a `TestEnvironment` whose HOME is the test's own.
    dir: TestRepo,
}

/// The demo's sample repo (ORB-1 ← ORB-2, ORB-3 ← ORB-5 ← ORB-4; ORB-2, ORB-3 ← ORB-6).
fn repo() -> Repo {
    let env = TestEnvironment::new();
    let dir = env.dir_at(env.root().join("repo"));
    std::fs::create_dir_all(&dir).unwrap();
    devloop::cli::demo::write_sample_repo(&dir).unwrap();
    Repo { dir }
}

/// `loop`, run from the environment's root (no repository: `--repo` says which).
fn loop_at(r: &Repo) -> Command {
    r.dir.env().loop_cmd(r.dir.env().root())
}

fn run_loop(r: &Repo, args: &[&str], scenario: Option<&str>, extra_env: &[(&str, &str)]) -> Output {
    let mut c = loop_at(r);
    c.arg("run").arg("--repo").arg(&r.dir).args(["--milestone", "M1-core", "-q", "--agent", "sim"]).args(args);
    if let Some(s) = scenario {
        let f = r.dir.parent().unwrap().join("scenario.json");
        std::fs::write(&f, s).unwrap();
        c.arg("--sim-scenario").arg(f);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn loop_cmd(r: &Repo, args: &[&str]) -> Output {
    let mut c = loop_at(r);
    c.args(args).arg("--repo").arg(&r.dir);
    c.output().unwrap()
}

fn status_json(r: &Repo) -> serde_json::Value {
    let out = loop_cmd(r, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn replay_json(r: &Repo) -> serde_json::Value {
    let runs = std::fs::read_dir(r.dir.join(".loop/runs")).unwrap().next().unwrap().unwrap();
    let id = runs.file_name().to_string_lossy().to_string();
    let out = loop_cmd(r, &["replay", &id, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn issue<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap()
}

fn events(r: &Repo, kind: &str) -> Vec<serde_json::Value> {
    replay_json(r)["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["body"]["event"]["event"] == kind)
        .map(|t| t["body"].clone())
        .collect()
}

fn git(dir: &TestRepo, args: &[&str]) -> String {
    let out = dir.env().git_output(dir, args);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn each_forbidden_action_fails_the_phase_and_is_listed() {
    for (action, needle) in
        [("ref", "refs/heads/rogue created"), ("worktree", "-rogue added"), ("main-write", "ROGUE.txt")]
    {
        let r = repo();
        let scenario = format!(r#"{{"ORB-1": {{"dev": "rogue:{action}"}}}}"#);
        let out = run_loop(&r, &[], Some(&scenario), &[]);
        assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{action}: {}", String::from_utf8_lossy(&out.stderr));
        let st = status_json(&r);
        let orb1 = issue(&st, "ORB-1");
        assert_eq!(orb1["state"], "Failed", "{action}");
        let reason = orb1["reason"].as_str().unwrap();
        assert!(reason.contains("outside its worktree") && reason.contains(needle), "{action}: {reason}");
        let v = events(&r, "guard_violation");
        assert_eq!(v.len(), 1, "{action}");
        // Nothing was reverted: the rogue change is still there.
        match action {
            "ref" => assert!(!git(&r.dir, &["rev-parse", "--verify", "-q", "refs/heads/rogue"]).is_empty()),
            "main-write" => assert!(r.dir.join("ROGUE.txt").exists()),
            _ => assert!(git(&r.dir, &["worktree", "list"]).contains("-rogue")),
        }
        // Each phase was checked before it ran, and the dependants never started.
        assert!(!events(&r, "guard_checked").is_empty());
        assert_eq!(issue(&st, "ORB-2")["state"], "Blocked");
    }
}

/// A dirty checkout is refused before the run starts (pre-flight: no run, branch or worktree),
/// unless allowed; allowed, each phase's check records that it was.
#[test]
fn a_dirty_main_checkout_stops_the_run_before_it_starts_unless_allowed() {
    let r = repo();
    std::fs::write(r.dir.join("scratch.txt"), "mine").unwrap();
    let out = run_loop(&r, &[], None, &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("loop: error: main checkout is not clean (?? scratch.txt)"), "{err}");
    assert!(!r.dir.join(".loop").exists(), "pre-flight wrote state");
    assert!(!git(&r.dir, &["branch", "--list", "loop/*"]).contains("loop/"));

    let r = repo();
    std::fs::write(r.dir.join("scratch.txt"), "mine").unwrap();
    let out = run_loop(&r, &["--allow-dirty"], None, &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", String::from_utf8_lossy(&out.stderr));
    let checked = events(&r, "guard_checked");
    let details = checked[0]["event"]["details"].to_string();
    assert!(details.contains("allowed by allow_dirty"), "{details}");
}

/// The shims, in a login shell with loop's HOME: refused commands never reach the real git;
/// allowed ones do; every decision lands in the journal.
#[test]
fn shims_refuse_before_the_real_binary_and_decisions_are_journaled() {
    let r = repo();
    let fake = r.dir.parent().unwrap().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let calls = r.dir.parent().unwrap().join("git-calls.log");
    let real_git =
        String::from_utf8(r.dir.env().command("sh").args(["-c", "command -v git"]).output().unwrap().stdout).unwrap();
    let script =
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec {} \"$@\"\n", calls.display(), real_git.trim());
    let fake_git = fake.join("git");
    std::fs::write(&fake_git, script).unwrap();
    r.dir.env().command("chmod").arg("+x").arg(&fake_git).status().unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let scenario = r#"{"ORB-1": {"dev": "shell:git worktree add ../sneaky; git branch -D main; git status --short >/dev/null; command -v git > shim-path.txt"}}"#;
    let out = run_loop(&r, &[], Some(scenario), &[("PATH", &path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(!log.lines().any(|l| l.starts_with("worktree add")), "refused git reached the real binary:\n{log}");
    assert!(!log.lines().any(|l| l.starts_with("branch -D")), "{log}");
    assert!(log.lines().any(|l| l == "status --short"), "allowed git did not reach the real binary:\n{log}\n{stderr}");
    let decided = events(&r, "command_decided");
    let shown: Vec<String> = decided
        .iter()
        .map(|d| {
            format!("{} {} {}", d["event"]["argv"][0].as_str().unwrap_or(""), d["event"]["allowed"], d["event"]["rule"])
        })
        .collect();
    assert!(shown.iter().any(|s| s.starts_with("worktree false") && s.contains("git-worktree")), "{shown:?}");
    assert!(shown.iter().any(|s| s.starts_with("branch false") && s.contains("git-branch-delete")), "{shown:?}");
    assert!(shown.iter().any(|s| s.starts_with("status true")), "{shown:?}");
    let st = status_json(&r);
    assert_eq!(issue(&st, "ORB-1")["state"], "Done", "{stderr}");
    // status and replay summarise the decisions from the journal alone.
    let g = &issue(&st, "ORB-1")["guard"];
    assert_eq!(g["commands_refused"], 2, "{g}");
    assert_eq!(g["commands_allowed"], 1, "{g}");
    assert!(g["refused"][0].as_str().unwrap().starts_with("git worktree add ../sneaky [git-worktree (shim)]"), "{g}");
    let text = String::from_utf8(loop_cmd(&r, &["status"]).stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("ORB-1 ")).unwrap();
    assert!(line.contains("refused `git worktree add ../sneaky [git-worktree (shim)]`, `git branch -D main"), "{text}");
    assert!(text.contains("guard: ") && text.contains(" 2 refused, 0 violation(s)"), "{text}");
    let id = std::fs::read_dir(r.dir.join(".loop/runs")).unwrap().next().unwrap().unwrap().file_name();
    let replay = String::from_utf8(loop_cmd(&r, &["replay", id.to_str().unwrap()]).stdout).unwrap();
    assert!(replay.contains("REFUSED `git worktree add ../sneaky` [git-worktree (shim)]"), "{replay}");
    assert!(replay.lines().last().unwrap().contains(" 2 refused, 0 violation(s)"), "{replay}");
}

#[test]
fn the_claude_hook_blocks_with_exit_2() {
    let env = TestEnvironment::new();
    let mut c = env.loop_cmd(env.root());
    c.args(["hook", "claude"]).env_remove("LOOP_GUARD_CTX").stdin(std::process::Stdio::piped());
    let run = |c: &mut Command, input: &str| {
        use std::io::Write;
        let mut child = c.stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&mut c, r#"{"tool_name":"Bash","tool_input":{"command":"cd x && gt sync"}}"#);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gt-sync-restack"));
    let out = run(&mut c, r#"{"tool_name":"Bash","tool_input":{"command":"gt sync --no-restack && git status"}}"#);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&mut c, r#"{"tool_name":"Edit","tool_input":{"file_path":"x"}}"#);
    assert_eq!(out.status.code(), Some(exit::OK));
    // Without loop's worktree in the environment, claude's cwd is the boundary.
    let out = run(&mut c, r#"{"tool_name":"Write","tool_input":{"file_path":"/etc/x","content":""}}"#);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claude-edit-outside-worktree"));
    let out = run(c.env("LOOP_GUARD_PHASE", "review"), r#"{"tool_name":"Edit","tool_input":{"file_path":"x"}}"#);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claude-review-read-only"));
}

#[test]
fn cleanup_keeps_uncommitted_work_and_never_touches_foreign_worktrees() {
    let r = repo();
    // ORB-1 fails, so its worktree is kept for inspection; ORB-2/3 never start.
    let out = run_loop(&r, &[], Some(r#"{"ORB-1": {"dev": "failed"}}"#), &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE));
    let st = status_json(&r);
    let wt = PathBuf::from(issue(&st, "ORB-1")["worktree"]["path"].as_str().unwrap());
    assert_eq!(issue(&st, "ORB-1")["worktree"]["exists"], true);
    std::fs::write(wt.join("precious.txt"), "uncommitted work").unwrap();

    let out = loop_cmd(&r, &["clean"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kept") && text.contains("uncommitted"), "{text}");
    assert!(wt.join("precious.txt").exists());

    // Replace loop's worktree by one the user made at the same path on another branch.
    std::fs::remove_file(wt.join("precious.txt")).unwrap();
    git(&r.dir, &["worktree", "remove", &wt.display().to_string()]);
    git(&r.dir, &["worktree", "add", "-b", "users-own", &wt.display().to_string(), "main"]);
    let out = loop_cmd(&r, &["clean"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not touched"), "{text}");
    assert!(wt.exists());
    assert!(git(&r.dir, &["worktree", "list"]).contains("users-own"));

    // Back on loop's branch and clean: now it goes, the branch stays.
    git(&r.dir, &["worktree", "remove", &wt.display().to_string()]);
    let branch = issue(&st, "ORB-1")["worktree"]["branch"].as_str().unwrap().to_string();
    git(&r.dir, &["worktree", "add", &wt.display().to_string(), &branch]);
    let out = loop_cmd(&r, &["clean", "--dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("would remove"));
    assert!(wt.exists());
    // #14: the same as one JSON object for scripts.
    let out = loop_cmd(&r, &["clean", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["removed"].as_u64(), v["dry_run"].as_bool()), (Some(1), Some(true)), "{v}");
    let action = &v["actions"][0];
    assert_eq!((action["action"].as_str(), action["issue"].as_str()), (Some("would_remove"), Some("ORB-1")), "{v}");
    assert_eq!(action["path"].as_str(), wt.to_str());
    assert!(wt.exists());
    let out = loop_cmd(&r, &["clean"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!wt.exists());
    assert!(!git(&r.dir, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")]).is_empty());
    let st = status_json(&r);
    assert_eq!(issue(&st, "ORB-1")["worktree"]["removed"], true);
}

fn gt_bin() -> Option<String> {
    match std::env::var("LOOP_TEST_GT_BIN") {
        Ok(b) => Some(b),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true but LOOP_TEST_GT_BIN is not set"),
        Err(_) => {
            eprintln!("skipping: LOOP_TEST_GT_BIN not set (scripts/test.sh sets it)");
            None
        }
    }
}

#[test]
fn graphite_dependency_chain_becomes_a_stack() {
    let Some(gt) = gt_bin() else { return };
    let r = repo();
    // A gt that logs each call (cwd and argv) before running the real one.
    let calls = r.dir.parent().unwrap().join("gt-calls.log");
    let wrapper = r.dir.parent().unwrap().join("gt-logged");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nprintf '%s|%s\\n' \"$PWD\" \"$*\" >> '{}'\nexec '{gt}' \"$@\"\n", calls.display()),
    )
    .unwrap();
    r.dir.env().command("chmod").arg("+x").arg(&wrapper).status().unwrap();
    let out = run_loop(&r, &["--stack", "graphite"], Some("{}"), &[("LOOP_GT_BIN", wrapper.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", String::from_utf8_lossy(&out.stderr));
    // Every dev commit went through `gt modify` in the issue's own worktree, and is on its branch.
    let log = std::fs::read_to_string(&calls).unwrap();
    let finished: Vec<serde_json::Value> = replay_json(&r)["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["body"]["event"]["event"] == "work_finished")
        .cloned()
        .collect();
    assert_eq!(finished.len(), 6, "{finished:?}");
    for f in &finished {
        let id = f["body"]["issue"].as_str().unwrap();
        let commit = f["body"]["evidence"]["commit"].as_str().unwrap_or_else(|| panic!("{id}: no commit: {f}"));
        assert!(f["body"]["evidence"]["note"].as_str().unwrap().contains("gt modify"), "{f}");
        let wt = format!("/.loop/worktrees/M1-core/{id}|modify --commit --all --no-verify --message {id}: dev");
        assert!(log.lines().any(|l| l.contains(&wt)), "{id}: no gt modify in its worktree:\n{log}");
        assert_eq!(git(&r.dir, &["log", "-1", "--format=%s", commit]), format!("{id}: dev"));
        assert!(r
            .dir
            .env()
            .command("git")
            .arg("-C")
            .arg(&r.dir)
            .args(["merge-base", "--is-ancestor", commit, &format!("loop/M1-core/{id}")])
            .status()
            .unwrap()
            .success());
    }
    assert!(!log.contains("restack") && !log.contains("sync"), "{log}");
    let tracked = events(&r, "stack_tracked");
    assert_eq!(tracked.len(), 6, "{tracked:?}");
    let mut c = r.dir.env().command(&gt);
    let state = c.args(["state", "--no-interactive"]).current_dir(&r.dir).output().unwrap();
    let text = String::from_utf8_lossy(&state.stdout);
    let json: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    let parent = |b: &str| json[b]["parents"][0]["ref"].as_str().unwrap_or("").to_string();
    assert_eq!(parent("loop/M1-core/ORB-1"), "main");
    assert_eq!(parent("loop/M1-core/ORB-2"), "loop/M1-core/ORB-1");
    assert_eq!(parent("loop/M1-core/ORB-3"), "loop/M1-core/ORB-1");
    assert_eq!(parent("loop/M1-core/ORB-5"), "main");
    // Several dependencies: the first (plan order) is the parent, loop's merge brings the rest.
    assert_eq!(parent("loop/M1-core/ORB-4"), "loop/M1-core/ORB-2");
    assert_eq!(parent("loop/M1-core/ORB-6"), "loop/M1-core/ORB-2");
}

#[test]
fn draft_submission_failure_is_reported_not_hung() {
    let Some(gt) = gt_bin() else { return };
    let r = repo();
    let start = std::time::Instant::now();
    let out = run_loop(
        &r,
        &["--stack", "graphite", "--submit", "draft"],
        Some("{}"),
        &[("LOOP_GT_BIN", &gt), ("LOOP_GT_TIMEOUT_SECS", "5")],
    );
    assert!(start.elapsed().as_secs() < 240, "took {:?}", start.elapsed());
    let submitted = events(&r, "stack_submitted");
    assert!(!submitted.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(submitted.iter().all(|s| s["event"]["ok"] == false), "{submitted:?}");
}

/// `[guard]` in loop.toml changes the policy: a `deny` pattern refuses an otherwise read-only
/// git command (journaled with rule `config-deny`), `allow_dirty` lets phases start on a dirty
/// checkout (recorded), and an invalid pattern is an error naming loop.toml's line.
#[test]
fn loop_toml_guard_table_sets_the_policy() {
    let r = repo();
    std::fs::write(r.dir.join("loop.toml"), "[guard]\nallow_dirty = true\ndeny = [\"git log\"]\n").unwrap();
    git(&r.dir, &["add", "loop.toml"]);
    let mut c = r.dir.env().command("git");
    assert!(c.arg("-C").arg(&r.dir).args(["commit", "-qm", "loop.toml"]).status().unwrap().success());
    std::fs::write(r.dir.join("scratch.txt"), "mine").unwrap();
    let dry = run_loop(&r, &["--dry-run", "--stack", "graphite"], None, &[]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("guard: checks on, shims on, allow_dirty on; sandbox dev/fix none, review none; allow none; deny `git log`; stack graphite"),
        "{text}"
    );
    let scenario =
        r#"{"ORB-1": {"dev": "shell:git log -1 > log.txt; echo rc=$? > rc.txt; git status --short > /dev/null"}}"#;
    let out = run_loop(&r, &[], Some(scenario), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::OK), "{stderr}");
    let decided: Vec<String> = events(&r, "command_decided")
        .iter()
        .map(|d| {
            format!("{} {} {}", d["event"]["argv"][0].as_str().unwrap_or(""), d["event"]["allowed"], d["event"]["rule"])
        })
        .collect();
    assert!(decided.iter().any(|s| s.starts_with("log false") && s.contains("config-deny")), "{decided:?}");
    assert!(decided.iter().any(|s| s.starts_with("status true")), "{decided:?}");
    let dev = issue(&status_json(&r), "ORB-1")["worktree"]["branch"].as_str().unwrap().to_string();
    assert_eq!(
        git(&r.dir, &["show", &format!("{dev}:rc.txt")]),
        "rc=1",
        "the refused git log must fail in the agent's shell"
    );
    assert_eq!(git(&r.dir, &["show", &format!("{dev}:log.txt")]), "", "the refused git log must not run");
    let checked = events(&r, "guard_checked");
    assert!(checked[0]["event"]["details"].to_string().contains("allowed by allow_dirty"), "{checked:?}");

    let r = repo();
    std::fs::write(r.dir.join("loop.toml"), "[guard]\n\ndeny = [\"stash drop\"]\n").unwrap();
    let out = run_loop(&r, &[], None, &[]);
    assert_eq!(out.status.code(), Some(exit::BAD_INPUT));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loop.toml:3: [guard] deny pattern \"stash drop\" must start with `git` or `gt`"),
        "{stderr}"
    );
}

/// The journal is the only licence: a branch or a worktree path that matches an issue's name but
/// that this run did not create is never reused or removed; the issue fails, naming it.
#[test]
fn a_matching_branch_or_path_loop_did_not_create_is_never_touched() {
    let r = repo();
    git(&r.dir, &["branch", "loop/M1-core/ORB-1"]);
    let before = git(&r.dir, &["rev-parse", "loop/M1-core/ORB-1"]);
    let out = run_loop(&r, &[], None, &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE));
    let st = status_json(&r);
    let reason = issue(&st, "ORB-1")["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("branch loop/M1-core/ORB-1 already exists and no run of this milestone journaled it as loop's"),
        "{reason}"
    );
    assert_eq!(git(&r.dir, &["rev-parse", "loop/M1-core/ORB-1"]), before);
    assert!(!r.dir.join(".loop/worktrees/M1-core/ORB-1").exists());

    let r = repo();
    let path = r.dir.join(".loop/worktrees/M1-core/ORB-1");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("mine.txt"), "not loop's").unwrap();
    let out = run_loop(&r, &[], None, &[]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE));
    let st = status_json(&r);
    let reason = issue(&st, "ORB-1")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("already exists and was not created by loop"), "{reason}");
    assert_eq!(std::fs::read_to_string(path.join("mine.txt")).unwrap(), "not loop's");
    // `loop clean` leaves it alone too.
    let out = loop_cmd(&r, &["clean"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(path.join("mine.txt")).unwrap(), "not loop's");
}
