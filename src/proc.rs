//! Running child processes (git, agents, gt) so that nothing can hang `loop`.
//!
//! Invariants:
//! - Argument vectors only; no shell string is ever built.
//! - stdin is always null (codex waits for EOF on an open stdin; gt prompts on a TTY).
//! - Each child leads its own process group, so a timeout or Ctrl-C signals the whole group:
//!   SIGTERM, a grace period, then SIGKILL (nextest's cancel sequence).
//! - Every child has a deadline.
//! - Children die with loop, even when loop is SIGKILLed (Linux): every cancellable child gets
//!   `PR_SET_PDEATHSIG` before exec. An agent phase (`Cmd::supervised`) runs under
//!   `loop __supervise`, a re-exec of this binary that is a child subreaper: whatever the agent
//!   spawns, double-forked or `setsid`, stays below it, and when the agent ends, or loop
//!   stops it, or loop dies (its own PDEATHSIG is SIGTERM), the supervisor stops every
//!   descendant (SIGTERM, grace, SIGKILL) and reaps them before it exits.
//!   Short git bookkeeping (`not_cancellable`) has no PDEATHSIG on purpose: a git killed halfway
//!   leaves `index.lock` or a half-added worktree, and it ends on its own within moments.
//! - SIGINT, SIGTERM and SIGHUP all cancel; [`cancel_signal`] says which came first, so the
//!   exit code can say it (130/143/129).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// The first stopping signal that arrived (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Marks the whole process as cancelled as Ctrl-C does; running children are stopped.
pub fn cancel() {
    let _ = SIGNAL.compare_exchange(0, libc::SIGINT, Ordering::SeqCst, Ordering::SeqCst);
}

/// Whether this process is cancelled, or the work on this thread is ([`with_cancel`]).
pub fn is_cancelled() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0 || SCOPED.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_requested))
}

thread_local! {
    /// The token of the work this thread does for someone else (a worker's job): it stops this
    /// thread's cancellable children without stopping the process's other work.
    static SCOPED: std::cell::RefCell<Option<Cancel>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `cancel` stopping the cancellable children this thread starts (as a signal
/// would), besides the process's own token.
pub fn with_cancel<T>(cancel: &Cancel, f: impl FnOnce() -> T) -> T {
    let before = SCOPED.with(|c| c.replace(Some(cancel.clone())));
    let out = f();
    SCOPED.with(|c| *c.borrow_mut() = before);
    out
}

/// The signal that cancelled this process (SIGINT, SIGTERM or SIGHUP), if any.
pub fn cancel_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// A request to stop, passed to whoever must heed it (the engine checks it between steps).
///
/// [`Cancel::process`] is the process's own token: the signal handler sets it, and every
/// cancellable child process ([`run`]) is stopped by it. [`Cancel::new`] makes an independent
/// token (in-process engine tests), which stops the engine but no child process.
#[derive(Clone, Debug)]
pub struct Cancel(Option<std::sync::Arc<AtomicI32>>);

impl Cancel {
    /// The token the signal handler sets.
    pub fn process() -> Cancel {
        Cancel(None)
    }

    /// A token of its own, set only through [`Cancel::request`].
    pub fn new() -> Cancel {
        Cancel(Some(std::sync::Arc::new(AtomicI32::new(0))))
    }

    fn flag(&self) -> &AtomicI32 {
        match &self.0 {
            None => &SIGNAL,
            Some(own) => own,
        }
    }

    /// Asks to stop as `signal` would (the first request wins).
    pub fn request(&self, signal: i32) {
        let _ = self.flag().compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.flag().load(Ordering::SeqCst) != 0
    }

    /// The signal the stop was asked for with (SIGINT, SIGTERM or SIGHUP), if any.
    pub fn signal(&self) -> Option<i32> {
        match self.flag().load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

impl Default for Cancel {
    fn default() -> Cancel {
        Cancel::new()
    }
}

/// The signals that stop a run the way Ctrl-C does.
pub const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only async-signal-safe calls here: an atomic, write(2) and _exit(2).
    if let Err(first) = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst) {
        // A second signal: the journal is consistent after every append, so exit at once.
        unsafe { libc::_exit(128 + first) }
    }
    let msg = b"loop: interrupted; stopping running phases (signal again to exit at once)\n";
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

/// SIGINT, SIGTERM and SIGHUP cancel the run (journaled as interrupted, children stopped); a
/// second one exits at once. A raw handler rather than the `ctrlc` crate, which knows only
/// SIGINT (and SIGTERM behind a feature) and cannot say which signal came.
pub fn install_signal_handlers() {
    for sig in STOP_SIGNALS {
        set_handler(sig, on_stop_signal);
    }
}

fn set_handler(sig: i32, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is valid; the handler only touches atomics and raw syscalls.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as usize;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

/// The binary that runs supervised children (`<exe> __supervise -- PROGRAM ARGS…`). Set by
/// `loop`'s main; a library user (unit tests) without it runs agents as plain children.
static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// The hidden argument that turns `loop` into a phase supervisor.
pub const SUPERVISE_ARG: &str = "__supervise";

pub fn set_supervisor_exe(exe: PathBuf) {
    let _ = SUPERVISOR.set(exe);
}

/// A supervised child that was started: its process group (the supervisor leads it) and the
/// group leader's start time (`/proc/<pid>/stat` field 22), which tells a reused pid apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    pub pgid: i32,
    pub start_time: u64,
}

type SpawnHook = Box<dyn FnMut(Spawned)>;

thread_local! {
    static SPAWN_HOOK: std::cell::RefCell<Option<SpawnHook>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `hook` told (synchronously, on this thread) about every supervised child `f`
/// starts, right after it started: the engine journals the group so `resume` can find it.
pub fn observe_spawns<R>(hook: impl FnMut(Spawned) + 'static, f: impl FnOnce() -> R) -> R {
    let previous = SPAWN_HOOK.with(|h| h.borrow_mut().replace(Box::new(hook)));
    let result = f();
    SPAWN_HOOK.with(|h| *h.borrow_mut() = previous);
    result
}

fn report_spawn(pid: i32) {
    let Some(start_time) = start_time(pid) else { return };
    SPAWN_HOOK.with(|h| {
        if let Some(hook) = h.borrow_mut().as_mut() {
            hook(Spawned { pgid: pid, start_time });
        }
    });
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
    /// Run under `loop __supervise` (agent phases): nothing the child spawns outlives it.
    pub supervised: bool,
    /// stderr goes into the same pipe as stdout, so [`Output::stdout`] holds both interleaved
    /// as the child wrote them (verification logs); [`Output::stderr`] stays empty.
    pub merge_stderr: bool,
    /// Stop the child (as a timeout does) when it writes no stdout line for this long: an agent
    /// waiting on a dead network prints nothing while its overall deadline is still far off.
    pub stall: Option<Duration>,
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
            supervised: false,
            merge_stderr: false,
            stall: None,
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

    /// An agent phase: runs under the supervisor, so its whole process tree ends with it
    /// (see the module doc).
    pub fn supervised(mut self) -> Cmd {
        self.supervised = true;
        self
    }

    /// Stop the child when no stdout line comes for `t` (see [`Cmd::stall`]).
    pub fn stall_timeout(mut self, t: Duration) -> Cmd {
        self.stall = Some(t);
        self
    }

    /// Interleave stderr with stdout in one pipe (see [`Cmd::merge_stderr`]).
    pub fn merge_stderr(mut self) -> Cmd {
        self.merge_stderr = true;
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
    /// No stdout line came for [`Cmd::stall`]; the group was stopped as on a timeout.
    pub stalled: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled && !self.stalled
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
        } else if self.stalled {
            format!("stalled (no output line) after {:.1}s; its process group was killed", self.duration.as_secs_f64())
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
    let supervisor = if cmd.supervised { SUPERVISOR.get() } else { None };
    let mut command = match supervisor {
        Some(exe) => {
            // The supervisor cannot report "not found" as a spawn error, so look first, in
            // the PATH the child will get.
            let path_env = cmd.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
            let path = path_env.or_else(|| std::env::var_os("PATH"));
            let resolved = resolve_program(&cmd.program, path.as_deref(), cmd.cwd.as_deref())
                .ok_or_else(|| ProcError::NotFound { program: program.clone(), hint: String::new() })?;
            let mut c = Command::new(exe);
            c.arg(SUPERVISE_ARG).arg("--").arg(resolved);
            c
        }
        None => Command::new(&cmd.program),
    };
    command.args(&cmd.args).stdin(Stdio::null()).process_group(0);
    // One pipe for both streams keeps their order; the parent's write ends go with `command`.
    let merged = if cmd.merge_stderr {
        let spawn_err = |source| ProcError::Spawn { program: program.clone(), source };
        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        command.stdout(writer.try_clone().map_err(spawn_err)?).stderr(writer);
        Some(reader)
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    };
    if cmd.cancellable {
        // The supervisor gets SIGTERM so it can stop the agent's whole tree; a plain child
        // simply dies with loop.
        let sig = if supervisor.is_some() { libc::SIGTERM } else { libc::SIGKILL };
        set_parent_death_signal(&mut command, sig);
    }
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
    if supervisor.is_some() {
        report_spawn(pgid);
    }
    // The parent's copies of a merged pipe's write end must close, or the reader never ends.
    drop(command);
    let (mut stdout, stderr): (Box<dyn Read + Send>, Option<std::process::ChildStderr>) = match merged {
        Some(reader) => (Box::new(reader), None),
        None => (
            Box::new(child.stdout.take().expect("stdout is piped")),
            Some(child.stderr.take().expect("stderr is piped")),
        ),
    };

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
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
    // stderr comes back through a channel rather than a join: the receiver wakes the moment it
    // is sent, where polling a thread's end cost up to a tick per child.
    let (err_tx, err_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_end(&mut buf);
        }
        let _ = err_tx.send(buf);
    });
    let exit = ExitWatch::new(pgid);

    // A timeout too large to add to the clock means "no practical limit", never a panic.
    let deadline = start.checked_add(cmd.timeout).unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600));
    let mut collected = Vec::new();
    let mut timed_out = false;
    let mut cancelled = false;
    let mut stalled = false;
    let mut last_line = start;
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
        if cmd.stall.is_some_and(|s| now.duration_since(last_line) >= s) {
            stalled = true;
            break;
        }
        match rx.recv_timeout(tick.min(deadline - now)) {
            Ok(line) => {
                last_line = Instant::now();
                handle_line(line, &mut collected)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Phase 2: stdout closed (or we gave up): wait for the exit.
    let status = loop {
        if timed_out || cancelled || stalled {
            break stop_group(pgid, &mut child, supervisor.is_some());
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
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            continue;
        }
        exit.wait(tick.min(deadline - now));
    };
    // A grandchild that left the group could keep the pipes open; never wait on it for long.
    let until = Instant::now() + Duration::from_secs(1);
    while let Ok(line) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        handle_line(line, &mut collected);
    }
    let stderr_bytes = err_rx.recv_timeout(until.saturating_duration_since(Instant::now())).unwrap_or_default();
    Ok(Output {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stdout: collected,
        stderr: stderr_bytes,
        timed_out,
        cancelled,
        duration: start.elapsed(),
        stalled,
    })
}

/// SIGTERM to the group, a grace period, then SIGKILL; reaps the child. A supervisor runs its
/// own grace period for the agent's tree, so it gets longer before the group is killed.
fn stop_group(pgid: i32, child: &mut std::process::Child, supervised: bool) -> Option<std::process::ExitStatus> {
    // SAFETY: killpg with a pgid we created; errors (group already gone) are harmless.
    unsafe {
        libc::killpg(pgid, libc::SIGTERM);
    }
    let until = Instant::now() + if supervised { GRACE + Duration::from_secs(3) } else { GRACE };
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

/// Makes the child get `sig` when the thread that spawned it ends (loop dies or is killed). A
/// child whose parent already died between fork and prctl exits at once.
fn set_parent_death_signal(command: &mut Command, sig: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid before fork; in the child only async-signal-safe prctl/getppid/_exit.
        let parent = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (command, sig);
}

/// Where `execvp` would find `program`: as given when it has a slash, else the first
/// executable file of that name in `path`.
fn resolve_program(program: &OsStr, path: Option<&OsStr>, cwd: Option<&Path>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.as_bytes().contains(&b'/') {
        // Relative to the directory the child starts in, as exec sees it.
        let p = cwd.map(|d| d.join(program)).unwrap_or_else(|| PathBuf::from(program));
        return runnable(&p).then_some(p);
    }
    std::env::split_paths(path?)
        .map(|dir| if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir }.join(program))
        .find(|p| runnable(p))
}

/// One line of `/proc/<pid>/stat`, the fields loop needs.
#[derive(Clone, Copy, Debug)]
struct Stat {
    pid: i32,
    state: u8,
    ppid: i32,
    pgrp: i32,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(Stat {
        pid,
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
pub fn start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

fn all_stats() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(read_stat).collect()
}

/// Living (not zombie) processes below `root`, and, with `pgid`, those in that group.
fn tree_of(root: i32, pgid: Option<i32>) -> Vec<Stat> {
    let stats = all_stats();
    let mut found: Vec<Stat> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for s in stats.iter().filter(|s| s.ppid == parent) {
            if !found.iter().any(|f| f.pid == s.pid) {
                found.push(*s);
                frontier.push(s.pid);
            }
        }
    }
    if let Some(g) = pgid {
        for s in stats.iter().filter(|s| s.pgrp == g && s.pid != root) {
            if !found.iter().any(|f| f.pid == s.pid) {
                found.push(*s);
            }
        }
    }
    found.retain(|s| s.state != b'Z' && s.pid != root);
    found
}

/// What [`kill_leftover_group`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Nothing of the group lives.
    Gone,
    /// The pid lives but started at another time: someone else's process, left alone.
    Reused,
    /// The group was alive and this many processes of it were killed.
    Killed(usize),
}

/// Kills what a dead loop left of a supervised phase: the recorded group leader (only if its
/// start time is the recorded one, so a reused pid is never hit), everything below it, and
/// every process still in its group. The leader may be dead with members alive (loop and the
/// supervisor were SIGKILLed together): Linux does not hand out a pid while a group of that id
/// has members, so members that started after the recorded leader are the group's own. The
/// processes are stopped first (SIGSTOP), rescanning until no new one appears, so none can fork
/// away between the scan and the kill.
pub fn kill_leftover_group(pgid: i32, recorded_start: u64) -> Leftover {
    let leader_alive = match read_stat(pgid) {
        Some(s) if s.state != b'Z' && s.start_time != recorded_start => return Leftover::Reused,
        Some(s) => s.state != b'Z',
        None => false,
    };
    let me = unsafe { libc::getpid() };
    let members = || -> Vec<Stat> {
        let mut m = tree_of(pgid, Some(pgid));
        m.retain(|s| s.pid != me && s.start_time >= recorded_start);
        m
    };
    if leader_alive {
        unsafe { libc::kill(pgid, libc::SIGSTOP) };
    }
    let mut frozen: Vec<Stat> = Vec::new();
    for _ in 0..100 {
        let fresh: Vec<Stat> = members()
            .into_iter()
            .filter(|s| !frozen.iter().any(|f| f.pid == s.pid && f.start_time == s.start_time))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for s in fresh {
            unsafe { libc::kill(s.pid, libc::SIGSTOP) };
            frozen.push(s);
        }
    }
    if !leader_alive && frozen.is_empty() {
        return Leftover::Gone;
    }
    if leader_alive {
        unsafe { libc::kill(pgid, libc::SIGKILL) };
    }
    // A stopped process cannot exit on its own, so its pid still names it; recheck anyway.
    for s in &frozen {
        if start_time(s.pid) == Some(s.start_time) {
            unsafe { libc::kill(s.pid, libc::SIGKILL) };
        }
    }
    Leftover::Killed(frozen.len() + usize::from(leader_alive))
}

/// `loop __supervise -- PROGRAM ARGS…`: runs PROGRAM (stdin, stdout, stderr and the process
/// group inherited) as a child subreaper and exits as it did, after every process below it has
/// ended. SIGTERM, SIGINT, SIGHUP (loop stopping the phase, or loop's death through
/// PDEATHSIG) stop the whole tree: SIGTERM to all, [`GRACE`], SIGKILL to what is left. When
/// PROGRAM ends on its own, what it left behind is stopped the same way.
pub fn supervise(args: &[OsString]) -> i32 {
    let args = match args.first() {
        Some(a) if a == "--" => &args[1..],
        _ => args,
    };
    let Some((program, rest)) = args.split_first() else {
        eprintln!("loop {SUPERVISE_ARG}: no program given");
        return 2;
    };
    static SUP_SIGNAL: AtomicI32 = AtomicI32::new(0);
    extern "C" fn on_sup_signal(sig: libc::c_int) {
        SUP_SIGNAL.store(sig, Ordering::SeqCst);
    }
    for sig in STOP_SIGNALS {
        set_handler(sig, on_sup_signal);
    }
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut command = Command::new(program);
    command.args(rest);
    // If the supervisor is SIGKILLed, the agent dies too; its own children are stopped by
    // this supervisor otherwise.
    set_parent_death_signal(&mut command, libc::SIGKILL);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loop {SUPERVISE_ARG}: could not start `{}`: {e}", program.to_string_lossy());
            return 127;
        }
    };
    let agent = child.id() as i32;
    // The child is reaped with waitpid below, together with the orphans that reparent here.
    std::mem::forget(child);
    let me = unsafe { libc::getpid() };
    let mut agent_status: Option<i32> = None;
    let mut stopping: Option<Instant> = None;
    let mut killed = false;
    loop {
        let mut no_children = false;
        loop {
            let mut status = 0;
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == agent {
                agent_status = Some(status);
            } else if pid == 0 {
                break;
            } else if pid < 0 {
                no_children = std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
                break;
            }
        }
        if no_children {
            break;
        }
        let asked = SUP_SIGNAL.load(Ordering::SeqCst) != 0;
        if stopping.is_none() && (asked || agent_status.is_some()) {
            stopping = Some(Instant::now());
            for s in tree_of(me, None) {
                unsafe { libc::kill(s.pid, libc::SIGTERM) };
            }
        }
        if let Some(since) = stopping {
            if since.elapsed() >= GRACE || killed {
                // Repeated: a process forked before the last scan is found by the next one.
                for s in tree_of(me, None) {
                    unsafe { libc::kill(s.pid, libc::SIGKILL) };
                }
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = agent_status.unwrap_or(0);
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // Ends the same way, so loop sees the agent's signal, not the supervisor's exit code.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(me, sig);
        }
        return 128 + sig;
    }
    libc::WEXITSTATUS(status)
}

/// Wakes a waiter when a child exits, without reaping it (the caller reaps with `try_wait`, so
/// the pid cannot be reused while it is watched). On Linux a pidfd turns readable at the exit,
/// so a short git call is seen ending at once; a fixed sleep between checks cost up to its whole
/// length per child, several per issue. Elsewhere, or on a kernel without pidfds, it sleeps a
/// millisecond.
struct ExitWatch {
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl ExitWatch {
    fn new(pid: i32) -> ExitWatch {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; the
            // descriptor is owned here alone.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            let fd = (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
            ExitWatch { fd }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pid;
            ExitWatch {}
        }
    }

    /// Returns when the child has exited or `limit` has passed, whichever is first.
    fn wait(&self, limit: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            use std::os::fd::AsRawFd;
            let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // Rounded up: a zero timeout would spin.
            let ms = limit.as_micros().div_ceil(1000).clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd; an interrupted or failed poll only means checking again.
            unsafe { libc::poll(&mut p, 1, ms) };
            return;
        }
        std::thread::sleep(limit.min(Duration::from_millis(1)));
    }
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
    fn a_silent_child_is_stopped_at_the_stall_timeout_not_the_deadline() {
        let cmd = Cmd::new("sh")
            .args(["-c", "echo one; sleep 0.1; echo two; sleep 30"])
            .timeout(Duration::from_secs(60))
            .stall_timeout(Duration::from_millis(400));
        let mut lines = Vec::new();
        let out = run_streaming(&cmd, &mut |l| lines.push(l.to_string())).unwrap();
        assert!(out.stalled && !out.timed_out && !out.success(), "{out:?}");
        assert_eq!(lines, ["one", "two"]);
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
        assert!(out.describe().starts_with("stalled"), "{}", out.describe());
        // Lines that keep coming keep it alive past the stall timeout.
        let chatty = Cmd::new("sh")
            .args(["-c", "for i in 1 2 3 4 5 6; do echo $i; sleep 0.15; done"])
            .stall_timeout(Duration::from_millis(400));
        let out = run(&chatty).unwrap();
        assert!(out.success() && !out.stalled, "{out:?}");
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
    fn a_leftover_group_is_killed_only_if_its_leader_started_when_recorded() {
        let mut child = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid).unwrap();
        // The same pid with another start time is another process: never touched.
        assert_eq!(kill_leftover_group(pid, start + 1), Leftover::Reused);
        assert!(child.try_wait().unwrap().is_none(), "a reused pid was hit");
        assert_eq!(kill_leftover_group(pid, start), Leftover::Killed(1));
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(kill_leftover_group(pid, start), Leftover::Gone);
    }

    #[test]
    fn resolves_programs_like_exec() {
        let path = std::env::var_os("PATH");
        assert!(resolve_program(OsStr::new("sh"), path.as_deref(), None).is_some());
        assert!(resolve_program(OsStr::new("no-such-program-loop"), path.as_deref(), None).is_none());
        assert_eq!(resolve_program(OsStr::new("/bin/sh"), None, None), Some(PathBuf::from("/bin/sh")));
    }

    #[test]
    fn missing_program_is_not_found() {
        assert!(matches!(run(&Cmd::new("/nonexistent/loop-test")), Err(ProcError::NotFound { .. })));
    }
}
