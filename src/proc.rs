//! Running child processes (git, agents, gt) so that nothing can hang `loop`.
//!
//! Invariants:
//! - Argument vectors only; no shell string is ever built.
//! - stdin is always null (codex waits for EOF on an open stdin; gt prompts on a TTY).
//! - Each child leads its own process group, so a timeout or Ctrl-C signals the whole group:
//!   SIGTERM, a grace period, then SIGKILL (nextest's cancel sequence).
//! - Every child has a deadline.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Marks the whole process as cancelled (Ctrl-C); running children are stopped.
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

pub fn is_cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// How long a signalled group gets to exit before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub env_remove: Vec<OsString>,
    pub timeout: Duration,
    /// Whether Ctrl-C stops this child. Agents: yes. Short git bookkeeping: no — it finishes
    /// (bounded by its timeout) so an interruption never turns into a half-done git step or a
    /// spurious failure.
    pub cancellable: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            timeout: Duration::from_secs(120),
            cancellable: true,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env.push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(k.as_ref().to_os_string());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    /// Let this child finish even after Ctrl-C (its timeout still applies).
    pub fn not_cancellable(mut self) -> Cmd {
        self.cancellable = false;
        self
    }

    /// The argv as text, for messages and dry runs.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| {
                let s = a.to_string_lossy();
                if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"\\$`*?;&|<>(){}".contains(c)) {
                    format!("'{}'", s.replace('\'', "'\\''"))
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a child ended.
#[derive(Clone, Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// One line that says how the child ended.
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("timed out after {:.1}s; its process group was killed", self.duration.as_secs_f64())
        } else if self.cancelled {
            "interrupted; its process group was stopped".to_string()
        } else if let Some(sig) = self.signal {
            format!("killed by signal {sig}")
        } else {
            format!("exit code {}", self.code.unwrap_or(-1))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("`{program}` was not found{hint}")]
    NotFound { program: String, hint: String },
    #[error("could not start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
}

/// Runs a command to completion, collecting its output.
pub fn run(cmd: &Cmd) -> Result<Output, ProcError> {
    run_streaming(cmd, &mut |_| {})
}

/// The text `run_streaming` hands on for one raw stdout line (up to and including its `\n`, or
/// the unterminated last line): invalid UTF-8 replaced, trailing `\n`/`\r` removed.
pub fn line_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).trim_end_matches(['\n', '\r']).to_string()
}

/// Runs a command, handing each stdout line to `on_line` as it arrives (without its newline).
/// The last line is delivered even when it has no newline.
pub fn run_streaming(cmd: &Cmd, on_line: &mut dyn FnMut(&str)) -> Result<Output, ProcError> {
    let program = cmd.program.to_string_lossy().into_owned();
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    for k in &cmd.env_remove {
        command.env_remove(k);
    }
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ProcError::NotFound { program: program.clone(), hint: String::new() }
        } else {
            ProcError::Spawn { program: program.clone(), source }
        }
    })?;
    let pgid = child.id() as i32;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let out_thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut stdout);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });

    // A timeout too large to add to the clock means "no practical limit", never a panic.
    let deadline = start.checked_add(cmd.timeout).unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600));
    let mut collected = Vec::new();
    let mut timed_out = false;
    let mut cancelled = false;
    let tick = Duration::from_millis(20);
    let mut handle_line = |line: Vec<u8>, collected: &mut Vec<u8>| {
        on_line(&line_text(&line));
        collected.extend_from_slice(&line);
    };
    // Phase 1: stdout open.
    let cancel_requested = || cmd.cancellable && is_cancelled();
    loop {
        if cancel_requested() {
            cancelled = true;
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(tick.min(deadline - now)) {
            Ok(line) => handle_line(line, &mut collected),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Phase 2: stdout closed (or we gave up): wait for the exit.
    let status = loop {
        if timed_out || cancelled {
            break stop_group(pgid, &mut child);
        }
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        if cancel_requested() {
            cancelled = true;
            continue;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            continue;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // A grandchild that left the group could keep the pipes open; never wait on it for long.
    join_within(out_thread, Duration::from_secs(1));
    while let Ok(line) = rx.try_recv() {
        handle_line(line, &mut collected);
    }
    let stderr_bytes = join_within(err_thread, Duration::from_secs(1)).unwrap_or_default();
    Ok(Output {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stdout: collected,
        stderr: stderr_bytes,
        timed_out,
        cancelled,
        duration: start.elapsed(),
    })
}

/// SIGTERM to the group, a grace period, then SIGKILL; reaps the child.
fn stop_group(pgid: i32, child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    // SAFETY: killpg with a pgid we created; errors (group already gone) are harmless.
    unsafe {
        libc::killpg(pgid, libc::SIGTERM);
    }
    let until = Instant::now() + GRACE;
    while Instant::now() < until {
        if let Ok(Some(st)) = child.try_wait() {
            // The leader is gone; make sure stragglers in its group are too.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
    child.wait().ok()
}

fn join_within<T: Send + 'static>(handle: std::thread::JoinHandle<T>, limit: Duration) -> Option<T> {
    let until = Instant::now() + limit;
    while !handle.is_finished() {
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_output_and_exit_code() {
        let out = run(&Cmd::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"])).unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_text(), "hi\n");
        assert_eq!(out.stderr_text(), "err\n");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-survived");
        // The grandchild would write the marker after 2s if it outlived the kill.
        let script = format!("(sleep 2; touch '{}') & sleep 30", marker.display());
        let out = run(&Cmd::new("sh").args(["-c", &script]).timeout(Duration::from_millis(300))).unwrap();
        assert!(out.timed_out);
        assert!(out.duration < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "a grandchild outlived the group kill");
    }

    #[test]
    fn stdin_is_closed() {
        let out = run(&Cmd::new("cat").timeout(Duration::from_secs(5))).unwrap();
        assert!(out.success());
    }

    #[test]
    fn streams_last_line_without_newline() {
        let mut lines = Vec::new();
        let out = run_streaming(&Cmd::new("printf").arg("a\nb"), &mut |l| lines.push(l.to_string())).unwrap();
        assert!(out.success());
        assert_eq!(lines, ["a", "b"]);
    }

    #[test]
    fn missing_program_is_not_found() {
        assert!(matches!(run(&Cmd::new("/nonexistent/loop-test")), Err(ProcError::NotFound { .. })));
    }
}
