//! Shared helpers for integration tests. Every command a test runs (the real `loop` binary, git,
//! gt, a fake agent) is built by one [`TestEnvironment`], in the manner of jj's
//! `cli/tests/common/TestEnvironment`; a [`TestRepo`] is a directory of one environment, like
//! jj's `TestWorkDir`.
//!
//! Invariants of every command the environment builds:
//! - the environment is cleared first, then only [`ALLOWED_VARIABLES`] are set, so nothing of the
//!   developer's or CI's environment (the real HOME with its `~/.config/graphite/aliases` and
//!   `~/.gitconfig`, `LOOP_*` overrides, `CODEX_HOME`) reaches a child; a test adds what it needs
//!   explicitly, and `environment::only_allowed_variables_reach_a_child` checks the rest;
//! - HOME, the XDG dirs, TMPDIR and the global git config live inside the test's own temp dir;
//! - `loop` commands get a clock stepped per command (`LOOP_NOW`), so output is deterministic
//!   yet no two commands of one environment share an instant.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

pub mod anthropic;
pub mod codex;
pub mod http;
pub mod restate;

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Exit codes by name (`exit::NOT_ALL_DONE`, ...), as the numbers a process reports: taken from
/// the crate's own [`devloop::cli::ExitCode`], so a test never spells a bare number.
pub mod exit {
    use devloop::cli::ExitCode;

    pub const OK: i32 = ExitCode::Ok as i32;
    pub const ERROR: i32 = ExitCode::Error as i32;
    pub const BAD_INPUT: i32 = ExitCode::BadInput as i32;
    pub const NOT_ALL_DONE: i32 = ExitCode::NotAllDone as i32;
    pub const CORRUPT: i32 = ExitCode::Corrupt as i32;
    pub const DIVERGED: i32 = ExitCode::Diverged as i32;
    pub const LOCKED: i32 = ExitCode::Locked as i32;
    pub const INTERRUPTED: i32 = ExitCode::Interrupted as i32;
    pub const TERMINATED: i32 = ExitCode::Terminated as i32;
    pub const HANGUP: i32 = ExitCode::Hangup as i32;
}

/// The clock of an environment's first `loop` command; each further one is
/// [`CLOCK_STEP_SECS`] later.
pub const NOW: &str = "2026-01-01T00:00:00Z";
pub const CLOCK_STEP_SECS: i64 = 1;

pub const DEMO_DOCS: &[(&str, &str)] = devloop::cli::demo::DOCS;
pub const DEMO_SCENARIO: &str = devloop::cli::demo::SCENARIO;

/// Taken from the parent by name, because the tools need them: PATH resolves git, node (for gt)
/// and codex; the test CLI paths say which codex, claude, gt and Restate server the tests use.
const PASSED_THROUGH: &[&str] =
    &["PATH", "LOOP_TEST_CODEX_BIN", "LOOP_TEST_GT_BIN", "LOOP_TEST_CLAUDE_BIN", "LOOP_TEST_RESTATE_SERVER"];

/// Every variable a child of the environment can see unless the test sets more itself.
pub const ALLOWED_VARIABLES: &[&str] = &[
    "PATH",
    "LOOP_TEST_CODEX_BIN",
    "LOOP_TEST_GT_BIN",
    "LOOP_TEST_CLAUDE_BIN",
    "LOOP_TEST_RESTATE_SERVER",
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "TMPDIR",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CONFIG_GLOBAL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_DATE",
    "GRAPHITE_DISABLE_TELEMETRY",
    "GRAPHITE_DISABLE_UPGRADE_PROMPT",
    "LOOP_NOW",
    "LOOP_RUN_ID",
];

pub fn loop_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loop")
}

/// One test's world: a temp dir holding its HOME, XDG dirs, TMPDIR, global git config and
/// repositories, and the builder of every command the test runs.
pub struct TestEnvironment {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    run_id: Option<String>,
    commands: AtomicI64,
}

impl TestEnvironment {
    pub fn new() -> Arc<TestEnvironment> {
        Self::build(None)
    }

    /// An environment whose every `loop` command gets `LOOP_RUN_ID=id`.
    pub fn with_run_id(id: &str) -> Arc<TestEnvironment> {
        Self::build(Some(id.to_string()))
    }

    fn build(run_id: Option<String>) -> Arc<TestEnvironment> {
        let tmp = tempfile::Builder::new().prefix("loop-test-").tempdir().expect("tempdir");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let home = root.join("home");
        for d in ["home/.config", "home/.local/share", "home/.cache", "tmp"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Test\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n\
             [commit]\n\tgpgsign = false\n[tag]\n\tgpgsign = false\n",
        )
        .expect("write gitconfig");
        Arc::new(TestEnvironment { _tmp: tmp, root, home, run_id, commands: AtomicI64::new(0) })
    }

    /// The (canonical) temp dir everything of this test lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn gitconfig(&self) -> PathBuf {
        self.home.join(".gitconfig")
    }

    /// `program` with a cleared environment and only the variables a test needs.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear();
        for name in PASSED_THROUGH {
            if let Some(v) = std::env::var_os(name) {
                c.env(name, v);
            }
        }
        c.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("TMPDIR", self.root.join("tmp"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", self.gitconfig())
            .env("GRAPHITE_DISABLE_TELEMETRY", "1")
            .env("GRAPHITE_DISABLE_UPGRADE_PROMPT", "1")
            .stdin(Stdio::null());
        c
    }

    /// The instant the next `loop` command sees: [`NOW`] plus one step per command built so far.
    fn tick(&self) -> String {
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let base = chrono::DateTime::parse_from_rfc3339(NOW).expect("NOW parses").to_utc();
        (base + chrono::Duration::seconds(n * CLOCK_STEP_SECS)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// The real `loop` binary, run in `dir`, with the next step of the clock.
    pub fn loop_cmd(&self, dir: &Path) -> Command {
        let mut c = self.command(loop_bin());
        c.current_dir(dir).env("LOOP_NOW", self.tick());
        if let Some(id) = &self.run_id {
            c.env("LOOP_RUN_ID", id);
        }
        c
    }

    /// `git -C dir ARGS` with fixed dates; panics unless it succeeds, returns trimmed stdout.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_output(dir, args);
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `git -C dir ARGS` with fixed dates, whatever its exit.
    pub fn git_output(&self, dir: &Path, args: &[&str]) -> Output {
        self.command("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00+0000")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00+0000")
            .output()
            .expect("git runs")
    }

    /// `path` (anywhere, e.g. on a small tmpfs a test mounted) as a directory of this environment.
    pub fn dir_at(self: &Arc<Self>, path: impl Into<PathBuf>) -> TestRepo {
        TestRepo { env: self.clone(), path: path.into() }
    }

    /// A directory `<root>/<name>` holding `files` (no git), for commands that need none.
    pub fn dir_named(self: &Arc<Self>, name: &str, files: &[(&str, &[u8])]) -> TestRepo {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).expect("mkdir");
        for (rel, bytes) in files {
            let p = path.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, bytes).expect("write");
        }
        TestRepo { env: self.clone(), path }
    }

    /// A git repo `<root>/<name>` holding `files` and a README, committed on main.
    pub fn repo_named(self: &Arc<Self>, name: &str, files: &[(&str, &str)]) -> TestRepo {
        let bytes: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
        let repo = self.dir_named(name, &bytes);
        std::fs::write(repo.join("README.md"), "test repo\n").expect("write");
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "docs"]);
        repo
    }

    /// `text` with this environment's paths replaced by stable placeholders, for snapshots.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.home.display().to_string(), "[HOME]").replace(&self.root.display().to_string(), "[ROOT]")
    }
}

/// A directory of a [`TestEnvironment`] (usually a git repo): what most tests work on. It keeps
/// its environment (and so the temp dir) alive, and derefs to its path.
#[derive(Clone)]
pub struct TestRepo {
    env: Arc<TestEnvironment>,
    path: PathBuf,
}

impl TestRepo {
    pub fn env(&self) -> &Arc<TestEnvironment> {
        &self.env
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The real `loop` binary, run in this repo, with the next step of the clock.
    pub fn loop_cmd(&self) -> Command {
        self.env.loop_cmd(&self.path)
    }

    /// `git -C <this repo> ARGS`; panics unless it succeeds, returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        self.env.git(&self.path, args)
    }

    /// Writes a file into the repo and commits it, so the guard's clean-checkout check holds.
    pub fn write_committed(&self, name: &str, text: &str) {
        std::fs::write(self.path.join(name), text).expect("write");
        self.git(&["add", name]);
        self.git(&["commit", "-q", "-m", name]);
    }
}

impl Deref for TestRepo {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TestRepo {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<OsStr> for TestRepo {
    fn as_ref(&self) -> &OsStr {
        self.path.as_os_str()
    }
}

/// A fresh environment and a repo `<root>/repo` in it holding `files`, committed on main.
pub fn repo_with(files: &[(&str, &str)]) -> TestRepo {
    TestEnvironment::new().repo_named("repo", files)
}

/// A fresh environment and the demo repo in it: the demo's docs and `scenario.json`, committed.
pub fn demo_repo() -> TestRepo {
    let repo = repo_with(DEMO_DOCS);
    std::fs::write(repo.join("scenario.json"), DEMO_SCENARIO).expect("write scenario");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "scenario"]);
    repo
}

/// `repo.loop_cmd()`, as a function (the form most tests were written in).
pub fn loop_cmd(repo: &TestRepo) -> Command {
    repo.loop_cmd()
}

/// `repo.git(args)`, as a function.
pub fn git(repo: &TestRepo, args: &[&str]) -> String {
    repo.git(args)
}

/// `repo.write_committed(name, text)`, as a function.
pub fn write_committed(repo: &TestRepo, name: &str, text: &str) {
    repo.write_committed(name, text)
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub fn json(o: &Output) -> serde_json::Value {
    let (out, err) = text(o);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {err}"))
}

/// `[(id, state, fix_cycles)]` from a status object.
pub fn states(status: &serde_json::Value) -> Vec<(String, String, u64)> {
    status["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_string(),
                i["state"].as_str().expect("state").to_string(),
                i["fix_cycles"].as_u64().expect("fix_cycles"),
            )
        })
        .collect()
}

/// Rewrites record `seq` of a run's journal as a careful hand edit would: the file's framing
/// (frame checks, head) is rebuilt around the edited record, so only the hash chain can tell.
pub fn tamper_record(state: &Path, run: &str, seq: u64, f: impl FnOnce(&mut Vec<u8>)) {
    use devloop::journal::log::{scan_file, LogStore};
    use devloop::journal::Store;
    let path = state.join("runs").join(run).join("journal.log");
    let mut records = scan_file(&path, Some(run)).expect("scan").records;
    f(&mut records[seq as usize].1);
    let fresh = state.join("tampered");
    let _ = std::fs::remove_dir_all(&fresh);
    {
        let mut store = LogStore::create_in(&fresh, run).expect("create");
        store.append(&records).expect("append");
    }
    std::fs::rename(fresh.join("journal.log"), &path).expect("replace");
    std::fs::remove_dir_all(&fresh).expect("tidy");
}

/// The docs of a generated 14-issue milestone `GEN` whose dependencies form a DAG with chains,
/// diamonds and independent roots (tests/it/parallel.rs and tests/it/signals.rs add their scenarios).
pub fn generated_dag_docs() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..14 {
        let deps: Vec<String> = match i {
            0..=3 => vec![],
            4 => vec!["G-0".into()],
            5 => vec!["G-0".into(), "G-1".into()],
            6 => vec!["G-2".into()],
            7 => vec!["G-4".into(), "G-5".into()],
            8 => vec!["G-3".into()],
            9 => vec!["G-6".into()],
            10 => vec!["G-8".into(), "G-9".into()],
            11 => vec!["G-7".into()],
            12 => vec!["G-11".into(), "G-10".into()],
            _ => vec!["G-1".into()],
        };
        files.push((
            format!("docs/projects/gen/issues/G-{i}.md"),
            format!("---\nid: G-{i}\ntitle: generated {i}\nmilestone: GEN\nblocked_by: [{}]\n---\n", deps.join(", ")),
        ));
    }
    files
}

/// The state-changing transitions per issue, in order, from a verified `replay --json` object:
/// what must be identical between an interrupted-and-resumed run and an uninterrupted one.
pub fn timeline_transitions(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|r| r["from"] != r["to"] && r["to"].is_string())
        .map(|r| {
            let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
            (s(&r["body"]["issue"]), s(&r["from"]), s(&r["to"]))
        })
        .collect()
}

/// Processes other than loop whose environment has the entry `needle` (`KEY=value`): an agent
/// CLI and the tools it started, found by the per-test value loop gave them.
pub fn processes_with_env(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            let has = env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
            let is_loop = std::fs::read_link(e.path().join("exe"))
                .map(|p| p.file_name().is_some_and(|n| n == "loop"))
                .unwrap_or(false);
            if has && !is_loop {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Waits up to `limit` for [`processes_with_env`] to find none; false if some outlived it.
pub fn wait_no_processes_with_env(needle: &str, limit: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if processes_with_env(needle).is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
