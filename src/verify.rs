//! loop's own verification: the user's check commands, run by loop in a worktree, so "Done" never
//! rests on an agent's word that the tests pass.
//!
//! This is the one place loop runs a shell. Verification commands are command lines the user
//! wrote (`verify:` in an issue's front matter, `[verify] commands`/`setup` in `loop.toml`), as a
//! CI system runs them: each one is `sh -c LINE` in the worktree. No data from docs, agents or
//! git is ever spliced into a command line.
//!
//! Invariants:
//! - Every command runs with stdin closed, in its own process group, under a timeout: at the
//!   deadline the group gets SIGTERM, a grace period, then SIGKILL ([`crate::proc`]); it runs
//!   under loop's supervisor when there is one, so nothing it spawns outlives it.
//! - The whole output (stdout and stderr interleaved, as written) is kept in a log below the run's
//!   logs dir (written without following symlinks, [`crate::safefs`]); the journal gets its blake3
//!   hash, the last lines (at most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes), the exit code or
//!   why there is none, and the duration ([`CheckRun`]).
//! - A command that fails, cannot start (`sh` reports 126/127) or times out is a failed check:
//!   the failure. Only loop's own trouble (the log cannot be written, the worktree is gone
//!   on a full disk) is a [`VerifyError`], which the engine treats as its environment's failure.
//! - The environment is the one loop runs with (no guard shims: these are the user's commands,
//!   not the agent's), plus `LOOP_VERIFY=1`.
//!
//! The engine ([`crate::engine`]) decides when to run what (setup once per lockfile hash, the
//! baseline once per base tree) and journals each [`CheckRun`]; `loop land` reuses
//! [`run_checks`] on its land branch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::blame::Blame;
use crate::proc::{self, Cmd, ProcError};
use crate::safefs::{self, SafeFsError};
pub use crate::vocab::{CheckKind, CheckRun};

/// Seconds one verification command may take when `[verify] timeout` does not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Lockfiles whose content decides whether `setup` must run again (`[verify] lockfiles`
/// replaces the list). Missing files are skipped.
pub const DEFAULT_LOCKFILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "requirements.txt",
    "go.sum",
    "Gemfile.lock",
    "composer.lock",
];

/// The tail journaled for each command: at most this many lines…
pub const TAIL_LINES: usize = 40;
/// …and at most this many bytes.
pub const TAIL_BYTES: usize = 4096;

/// loop's own trouble while verifying (not the issue's): the run stops and resume verifies again.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("writing the verification log {path}: {source}")]
    Log { path: String, source: SafeFsError },
    #[error("starting `sh` for the verification command `{command}`: {source}")]
    Start { command: String, source: std::io::Error },
    #[error("verification interrupted")]
    Interrupted,
}

impl VerifyError {
    pub fn blame(&self) -> Blame {
        match self {
            VerifyError::Log { source, .. } => source.blame(),
            VerifyError::Start { source, .. } => Blame::of_io(source),
            VerifyError::Interrupted => Blame::Environment,
        }
    }
}

/// Where one verification keeps its logs: `root/dir/<label>-<kind>-<n>.log`.
#[derive(Clone, Debug)]
pub struct Logs {
    /// The logs root loop trusts (`<state>/logs`); nothing below it is followed if a symlink.
    pub root: PathBuf,
    /// The directory below `root` (`<run>/<issue>`).
    pub dir: PathBuf,
    /// What this verification is (`dev`, `fix-2`, `base-1a2b3c4d`), the start of each file name.
    pub label: String,
}

impl Logs {
    fn rel(&self, kind: CheckKind, n: usize) -> PathBuf {
        self.dir.join(format!("{}-{}-{}.log", self.label, kind.as_str(), n + 1))
    }
}

/// Runs one command line with `sh -c` in `dir` and keeps its output in the log.
pub fn run_one(
    dir: &Path,
    line: &str,
    kind: CheckKind,
    logs: &Logs,
    n: usize,
    timeout: Duration,
) -> Result<CheckRun, VerifyError> {
    let rel = logs.rel(kind, n);
    let log_path = logs.root.join(&rel);
    let log_err = |source| VerifyError::Log { path: log_path.display().to_string(), source };
    // Opened before the command runs: a log that cannot be written stops loop, not the issue.
    // The root is the one path trusted as given (loop's own state dir), so it may be made plainly.
    std::fs::create_dir_all(&logs.root)
        .map_err(|source| log_err(SafeFsError::Io { path: logs.root.display().to_string(), source }))?;
    let mut log = safefs::open_log(&logs.root, &rel, safefs::Log::Truncate).map_err(log_err)?;
    // `sh -c LINE`: the user's own command line, the one shell loop runs (see the module doc).
    let cmd = Cmd::new("sh")
        .arg("-c")
        .arg(line)
        .cwd(dir)
        .env("LOOP_VERIFY", "1")
        .timeout(timeout)
        .merge_stderr()
        .supervised();
    let (exit_code, failure, output, duration) = match proc::run(&cmd) {
        Ok(out) if out.cancelled => return Err(VerifyError::Interrupted),
        Ok(out) => {
            let failure =
                if out.timed_out || out.signal.is_some() || out.code.is_none() { Some(out.describe()) } else { None };
            (out.code.filter(|_| !out.timed_out), failure, out.stdout, out.duration)
        }
        Err(ProcError::Spawn { source, .. }) if Blame::of_io(&source).is_environment() => {
            return Err(VerifyError::Start { command: line.to_string(), source });
        }
        Err(e) => (None, Some(format!("could not start: {e}")), Vec::new(), Duration::ZERO),
    };
    let io = |source| log_err(SafeFsError::Io { path: log_path.display().to_string(), source });
    log.write_all(&output).map_err(io)?;
    log.sync_data().map_err(io)?;
    Ok(CheckRun {
        kind,
        command: line.to_string(),
        exit_code,
        failure,
        duration_ms: duration.as_millis() as u64,
        tail: tail(&output),
        output_hash: blake3::hash(&output).to_hex().to_string(),
        log: log_path.display().to_string(),
        pre_existing: false,
    })
}

/// Runs each check in `dir`, in order, every one even after a failure (the fix agent should see
/// them all). The public seam for callers that verify a branch outside an issue (`loop land`).
pub fn run_checks(
    dir: &Path,
    commands: &[String],
    kind: CheckKind,
    logs: &Logs,
    timeout: Duration,
) -> Result<Vec<CheckRun>, VerifyError> {
    commands.iter().enumerate().map(|(n, line)| run_one(dir, line, kind, logs, n, timeout)).collect()
}

/// Runs the setup commands in order, stopping at the first that fails (later installs usually
/// depend on earlier ones). The runs so far, the failed one last.
pub fn run_setup(
    dir: &Path,
    commands: &[String],
    logs: &Logs,
    timeout: Duration,
) -> Result<Vec<CheckRun>, VerifyError> {
    let mut runs = Vec::new();
    for (n, line) in commands.iter().enumerate() {
        let run = run_one(dir, line, CheckKind::Setup, logs, n, timeout)?;
        let passed = run.passed();
        runs.push(run);
        if !passed {
            break;
        }
    }
    Ok(runs)
}

/// The hash of the lockfiles present in `dir` (names and contents, in the order given): two
/// worktrees with the same hash need the same installs. Symlinked or unreadable lockfiles count
/// as absent (loop reads nothing through a symlink).
pub fn lockfiles_hash(dir: &Path, names: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    for name in names {
        if let Ok(Some(bytes)) = safefs::read(dir, Path::new(name)) {
            h.update(name.as_bytes());
            h.update(&[0]);
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    h.finalize().to_hex().to_string()
}

/// The last [`TAIL_LINES`] lines of `output`, at most [`TAIL_BYTES`] bytes (cut at a line start
/// where possible), as text.
pub fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let trimmed = text.trim_end_matches(['\n', '\r']);
    let mut start = trimmed.len();
    for _ in 0..TAIL_LINES {
        match trimmed[..start].rfind('\n') {
            Some(i) => start = i,
            None => {
                start = 0;
                break;
            }
        }
    }
    let mut from = if start == 0 { 0 } else { start + 1 };
    if trimmed.len() - from > TAIL_BYTES {
        from = trimmed.len() - TAIL_BYTES;
        while !trimmed.is_char_boundary(from) {
            from += 1;
        }
        if let Some(i) = trimmed[from..].find('\n') {
            if i + 1 < trimmed.len() - from {
                from += i + 1;
            }
        }
    }
    trimmed[from..].to_string()
}

/// The failure line a check contributes to `verify_finished` and to the fix agent's required
/// actions: the command, how it failed, and the output's tail.
pub fn failure_text(run: &CheckRun) -> String {
    let what = if run.kind == CheckKind::Setup { "setup command" } else { "verification command" };
    let mut s = format!("{what} `{}` {}", run.command, run.status());
    if !run.tail.is_empty() {
        s.push_str(&format!("; output tail:\n{}", run.tail));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(root: &Path) -> Logs {
        Logs { root: root.to_path_buf(), dir: PathBuf::from("R/I"), label: "dev".into() }
    }

    #[test]
    fn a_passing_and_a_failing_command() {
        let t = tempfile::tempdir().unwrap();
        let l = logs(t.path());
        let cmds = vec!["echo out; echo err >&2; true".to_string(), "echo nope; exit 3".to_string()];
        let runs = run_checks(t.path(), &cmds, CheckKind::Check, &l, Duration::from_secs(10)).unwrap();
        assert!(runs[0].passed());
        assert_eq!(runs[0].tail, "out\nerr");
        let log = std::fs::read(&runs[0].log).unwrap();
        assert_eq!(log, b"out\nerr\n");
        assert_eq!(runs[0].output_hash, blake3::hash(b"out\nerr\n").to_hex().to_string());
        assert!(!runs[1].passed());
        assert_eq!(runs[1].exit_code, Some(3));
        assert_eq!(runs[1].status(), "failed (exit code 3)");
        assert!(failure_text(&runs[1]).contains("nope"));
    }

    #[test]
    fn a_command_that_hangs_times_out_and_fails() {
        let t = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let run = run_one(
            t.path(),
            "echo before; sleep 30",
            CheckKind::Check,
            &logs(t.path()),
            0,
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!run.passed());
        assert_eq!(run.exit_code, None);
        assert!(run.failure.as_deref().unwrap().contains("timed out"), "{run:?}");
        assert_eq!(run.tail, "before");
    }

    #[test]
    fn a_command_that_does_not_exist_fails() {
        let t = tempfile::tempdir().unwrap();
        let run =
            run_one(t.path(), "no-such-command-xyz", CheckKind::Check, &logs(t.path()), 0, Duration::from_secs(10))
                .unwrap();
        assert_eq!(run.exit_code, Some(127));
        assert!(!run.passed());
    }

    #[test]
    fn setup_stops_at_the_first_failure() {
        let t = tempfile::tempdir().unwrap();
        let cmds = vec!["false".to_string(), "true".to_string()];
        let runs = run_setup(t.path(), &cmds, &logs(t.path()), Duration::from_secs(10)).unwrap();
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn tails_are_short() {
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(many.as_bytes());
        assert_eq!(t.lines().count(), TAIL_LINES);
        assert!(t.ends_with("line 99"));
        let long = "x".repeat(10_000);
        assert_eq!(tail(long.as_bytes()).len(), TAIL_BYTES);
        assert_eq!(tail(b""), "");
    }

    #[test]
    fn lockfile_hash_follows_content() {
        let t = tempfile::tempdir().unwrap();
        let names = vec!["Cargo.lock".to_string()];
        let empty = lockfiles_hash(t.path(), &names);
        std::fs::write(t.path().join("Cargo.lock"), "a").unwrap();
        let a = lockfiles_hash(t.path(), &names);
        std::fs::write(t.path().join("Cargo.lock"), "b").unwrap();
        assert_ne!(a, empty);
        assert_ne!(a, lockfiles_hash(t.path(), &names));
    }

    #[test]
    fn a_symlinked_log_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("R")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), t.path().join("R/I")).unwrap();
        let err = run_one(t.path(), "true", CheckKind::Check, &logs(t.path()), 0, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, VerifyError::Log { .. }), "{err}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}
