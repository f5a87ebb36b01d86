//! Interception: `git` and `gt` shims (the loop binary itself, dispatched by argv[0] or by the
//! hidden `loop __shim TOOL ARGS…`), and the Claude Code PreToolUse hook. Both classify with
//! [`policy::classify`], record each decision, pass allowed commands to the real binary and
//! refuse the rest with a message the agent can read. The hook also judges Claude Code's file
//! tools (Edit, Write, NotebookEdit): refused in a review phase and outside the issue's worktree
//! (symlinks of the existing part of the path resolved), recorded like every other decision.
//!
//! How a decision reaches the journal: the shim runs inside the agent's sandbox, where every
//! file outside the worktree is read-only and `connect(2)` is refused (measured with codex
//! 0.169.0: EROFS and EPERM; codex also closes inherited fds). Opening an existing FIFO for
//! writing is still allowed, so loop holds a FIFO per issue open during each phase and a
//! [`Relay`] thread copies its lines into the decisions file, which is folded into the journal
//! after the phase. Without a reader (no phase running, or outside any sandbox) the shim
//! appends to the decisions file itself. The agent can write to that FIFO too, so it could add
//! forged lines, but it cannot remove a line once relayed: the journal is an audit of what the
//! shims saw, and the sandbox and the after-phase checks are what stop damage.
//!
//! Why a loop-owned HOME: agent shells run `bash -lc`, and Debian's /etc/profile resets PATH,
//! so a shim dir put on PATH by the parent is gone; ~/.bash_profile is read after
//! /etc/profile, so a profile in a HOME loop controls is what keeps the shims first.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::policy::{self, Decision, PolicyContext, Tool};
use super::{io, GuardConfig, GuardError};
use crate::machine::Phase;
use crate::vocab::Fact;

/// Everything a shim process needs, written next to the shim home as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimContext {
    pub issue: String,
    pub real_git: PathBuf,
    pub real_gt: Option<PathBuf>,
    pub bin_dir: PathBuf,
    pub decisions: PathBuf,
    /// The FIFO loop reads during a phase (see the module docs).
    #[serde(default)]
    pub fifo: Option<PathBuf>,
    pub policy: PolicyContext,
    pub config: GuardConfig,
}

/// One line of the decisions file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DecisionLine {
    /// `git`, `gt`, or a Claude Code file tool (`Edit`, `Write`, `NotebookEdit`).
    pub tool: String,
    pub argv: Vec<String>,
    pub allowed: bool,
    pub rule: String,
    /// `shim` or `claude-hook`.
    pub via: String,
}

/// What an agent driver applies to the agent's environment for the shims to be in effect.
#[derive(Clone, Debug, PartialEq)]
pub struct ShimEnv {
    pub home: PathBuf,
    pub bin_dir: PathBuf,
    /// Set these in the agent's environment (HOME, LOOP_GUARD_CTX, GIT_CONFIG_GLOBAL, CODEX_HOME, PATH).
    pub env: Vec<(String, String)>,
}

pub const CTX_ENV: &str = "LOOP_GUARD_CTX";
/// Who ran the shim: the agent's login shell (its profile sets `agent-shell`) or some other
/// process of the agent that inherited loop's environment (`agent-process`: with codex, its
/// own harness git calls such as `rev-parse`, which run outside the sandbox).
pub const VIA_ENV: &str = "LOOP_GUARD_VIA";

/// A decision line longer than this is shortened: the kernel writes at most PIPE_BUF (4096)
/// bytes to a FIFO atomically, and concurrent shims must not interleave.
const MAX_LINE: usize = 3500;

/// Finds a program on PATH, skipping `skip` (the shim dir itself).
pub fn which(name: &str, skip: Option<&Path>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).filter(|d| skip.is_none_or(|s| d != s)).map(|d| d.join(name)).find(|p| p.is_file())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes the shim dir, the loop-owned HOME and the context for one issue's phase.
///
/// `user_home` keeps the user's git identity (GIT_CONFIG_GLOBAL) and codex login (CODEX_HOME).
/// Every phase of an issue prepares the same shim files: an unchanged one is left as it is
/// (each durable write is two fsyncs, which a busy disk makes the guard's largest cost per phase).
fn write_if_changed(root: &Path, rel: &Path, bytes: &[u8]) -> Result<(), GuardError> {
    if crate::safefs::read(root, rel)?.as_deref() != Some(bytes) {
        crate::safefs::write(root, rel, bytes)?;
    }
    Ok(())
}

pub fn prepare(dir: &Path, ctx: ShimContext, loop_exe: &Path, user_home: Option<&Path>) -> Result<ShimEnv, GuardError> {
    let bin = ctx.bin_dir.clone();
    let home = dir.join("home");
    // The caller opened `dir` below the run's log dir without symlinks; nothing below it is
    // followed either (crate::safefs).
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for d in [&bin, &home] {
        crate::safefs::open_dir(dir, d.strip_prefix(dir).unwrap_or(d), true)?;
    }
    for name in ["git", "gt"] {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(loop_exe, &link).map_err(io(&link))?;
    }
    let ctx_file = dir.join("context.json");
    let text = serde_json::to_string_pretty(&ctx).expect("shim context encodes");
    write_if_changed(dir, Path::new("context.json"), text.as_bytes())?;
    let profile = format!(
        "# Written by loop: keeps loop's git/gt shims first on PATH in login shells.\n\
         export PATH={}:\"$PATH\"\nexport {CTX_ENV}={}\nexport {VIA_ENV}=agent-shell\n",
        shell_quote(&bin.display().to_string()),
        shell_quote(&ctx_file.display().to_string()),
    );
    for f in [".bash_profile", ".profile", ".bashrc"] {
        write_if_changed(&home, Path::new(f), profile.as_bytes())?;
    }
    let mut env = vec![
        ("HOME".to_string(), home.display().to_string()),
        (CTX_ENV.to_string(), ctx_file.display().to_string()),
        (VIA_ENV.to_string(), "agent-process".to_string()),
        ("PATH".to_string(), format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())),
    ];
    if let Some(h) = user_home {
        let gitconfig = std::env::var("GIT_CONFIG_GLOBAL").map(PathBuf::from).unwrap_or_else(|_| h.join(".gitconfig"));
        env.push(("GIT_CONFIG_GLOBAL".into(), gitconfig.display().to_string()));
        let codex = std::env::var("CODEX_HOME").map(PathBuf::from).unwrap_or_else(|_| h.join(".codex"));
        env.push(("CODEX_HOME".into(), codex.display().to_string()));
    }
    Ok(ShimEnv { home, bin_dir: bin, env })
}

fn load_context() -> Result<ShimContext, String> {
    let path = std::env::var_os(CTX_ENV).ok_or_else(|| format!("{CTX_ENV} is not set"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", Path::new(&path).display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", Path::new(&path).display()))
}

/// The shim's `via` label: `shim` from the agent's login shell, `shim:agent-process` otherwise.
fn shim_via() -> String {
    match std::env::var(VIA_ENV).as_deref() {
        Ok("agent-shell") => "shim".into(),
        _ => "shim:agent-process".into(),
    }
}

/// One decision as a line of at most [`MAX_LINE`] bytes (long arguments are cut, marked `…`).
fn decision_line(line: &DecisionLine) -> String {
    let text = serde_json::to_string(line).expect("decision encodes");
    if text.len() <= MAX_LINE {
        return format!("{text}\n");
    }
    // Keep the first arguments, each cut shorter until the line fits (escapes can make a
    // byte of argument six bytes of JSON).
    let mut limit = 160;
    loop {
        let mut short = line.clone();
        let keep = short.argv.len().min(16);
        let more = short.argv.len() - keep;
        short.argv.truncate(keep);
        for a in &mut short.argv {
            if a.len() > limit {
                let cut = (0..=limit).rev().find(|&i| a.is_char_boundary(i)).unwrap_or(0);
                *a = format!("{}…", &a[..cut]);
            }
        }
        if more > 0 {
            short.argv.push(format!("… ({more} more arguments)"));
        }
        let text = serde_json::to_string(&short).expect("decision encodes");
        if text.len() <= MAX_LINE || limit == 0 {
            return format!("{text}\n");
        }
        limit /= 2;
    }
}

/// Writes one line into the FIFO if loop is reading it; false when nobody reads (ENXIO) or
/// the FIFO cannot be opened.
fn send_to_fifo(fifo: &Path, line: &[u8]) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: without a reader, open fails at once (ENXIO) instead of waiting for one.
    let Ok(mut f) = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo) else {
        return false;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match f.write(line) {
            // Writes up to PIPE_BUF are all or nothing.
            Ok(n) if n == line.len() => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return false,
        }
    }
}

fn record(ctx: &ShimContext, tool: &str, argv: &[String], d: &Decision, via: &str) {
    let line = DecisionLine {
        tool: tool.into(),
        argv: argv.to_vec(),
        allowed: d.allowed,
        rule: d.rule.clone(),
        via: via.into(),
    };
    let text = decision_line(&line);
    if ctx.fifo.as_deref().is_some_and(|f| send_to_fifo(f, text.as_bytes())) {
        return;
    }
    if let Some(parent) = ctx.decisions.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ctx.decisions)
        // One write per line keeps concurrent shims' lines whole (O_APPEND).
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = appended {
        eprintln!("loop guard: could not record this decision ({}: {e})", ctx.decisions.display());
    }
}

/// Copies decision lines from an issue's FIFO into its decisions file while a phase runs.
///
/// loop opens the FIFO read-write: that never blocks, and the FIFO never reports end of file
/// between two shims, so one thread can read it for the whole phase.
///
/// `finish` wakes the thread at once (a pipe it polls beside the FIFO): a phase's end must not
/// wait out a poll's timeout, which every guarded phase would pay.
pub struct Relay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Written by `finish` to wake the thread's poll.
    wake: std::io::PipeWriter,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Makes (or reuses) the FIFO and starts relaying into `file`.
    pub fn start(fifo: &Path, file: &Path) -> Result<Relay, GuardError> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        match std::fs::symlink_metadata(fifo) {
            Ok(m) if m.file_type().is_fifo() => {}
            Ok(_) => std::fs::remove_file(fifo).map_err(io(fifo))?,
            Err(_) => {}
        }
        if !fifo.exists() {
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).map_err(|_| GuardError::Io {
                path: fifo.display().to_string(),
                source: std::io::ErrorKind::InvalidInput.into(),
            })?;
            // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(io(fifo)(std::io::Error::last_os_error()));
            }
        }
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .map_err(io(fifo))?;
        let (parent, name) = (file.parent().unwrap_or(Path::new(".")), file.file_name().unwrap_or_default());
        let mut out = crate::safefs::open_log(parent, Path::new(name), crate::safefs::Log::Append)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let (woken, wake) = std::io::pipe().map_err(io(fifo))?;
        let file_shown = file.display().to_string();
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                // Stop only after a read finds the FIFO empty, so nothing written before
                // `finish` is lost.
                let stopping = flag.load(std::sync::atomic::Ordering::Acquire);
                let mut drained = false;
                while !drained {
                    match reader.read(&mut buf) {
                        Ok(0) => drained = true,
                        Ok(n) => {
                            if let Err(e) = out.write_all(&buf[..n]) {
                                // Said, not swallowed: these decisions will be missing from the journal.
                                crate::eoutln!("loop: guard: could not write shim decisions to {}: {e}", file_shown);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => drained = true,
                    }
                }
                if stopping {
                    return;
                }
                let mut pfds = [
                    libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                    libc::pollfd { fd: woken.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                ];
                // No timeout is needed (a write or `finish` wakes it); one second bounds the wait
                // should a wake-up ever be missed. An interrupted poll just loops.
                // SAFETY: two valid pollfds, for the duration of the call.
                unsafe { libc::poll(pfds.as_mut_ptr(), 2, 1000) };
            }
        });
        Ok(Relay { stop, wake, thread: Some(thread) })
    }

    /// Drains what the shims wrote and stops.
    pub fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            // A failed write only leaves the poll's one-second bound.
            let _ = self.wake.write_all(b"x");
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn policy_for_cwd(ctx: &ShimContext) -> PolicyContext {
    let mut p = ctx.policy.clone();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let out = crate::proc::run(
        &crate::proc::Cmd::new(&ctx.real_git)
            .args(["symbolic-ref", "-q", "--short", "HEAD"])
            .cwd(&cwd)
            .timeout(Duration::from_secs(20)),
    );
    p.current_branch = out.ok().filter(|o| o.success()).map(|o| o.stdout_text().trim().to_string());
    p
}

/// Why a shim or the hook did not let a command through. Each message is the guard's own words
/// (`loop guard: …`), written verbatim to stderr where the agent reads it; the CLI maps each kind
/// to its exit code (`crate::cli::ExitCode`), so a shim exits like the tool it stands in for.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("loop guard: refused `{command}`: the shim has no context ({reason})")]
    NoContext { command: String, reason: String },
    #[error(
        "loop guard: refused `{command}` (rule {rule}): {message}. This command is not allowed in a loop phase; \
         do the work another way or report it in your final message."
    )]
    Refused { command: String, rule: String, message: String },
    #[error("loop guard: the real {tool} was not found")]
    RealNotFound { tool: &'static str },
    #[error("loop guard: could not run {}: {source}", path.display())]
    Exec { path: PathBuf, source: std::io::Error },
    #[error("loop guard: could not read the hook input")]
    HookInput,
    #[error("loop guard: hook input is not JSON: {0}")]
    HookNotJson(serde_json::Error),
    /// Every refused invocation of one hook call, one line each.
    #[error("{}", .0.join("\n"))]
    HookRefused(Vec<String>),
}

/// The shim: classify, record, then exec the real binary or refuse. Returns only on failure.
pub fn run_shim(tool: Tool, args: &[String]) -> Result<std::convert::Infallible, ShimError> {
    let command = || format!("{} {}", tool.as_str(), args.join(" "));
    let ctx = load_context().map_err(|reason| ShimError::NoContext { command: command(), reason })?;
    let policy = policy_for_cwd(&ctx);
    let d = policy::classify(tool, args, &policy, &ctx.config);
    record(&ctx, tool.as_str(), args, &d, &shim_via());
    if !d.allowed {
        return Err(ShimError::Refused { command: command(), rule: d.rule, message: d.message });
    }
    let real = match tool {
        Tool::Git => Some(ctx.real_git.clone()),
        Tool::Gt => ctx.real_gt.clone(),
    };
    let real = real.ok_or(ShimError::RealNotFound { tool: tool.as_str() })?;
    // gt calls git itself: without the shim dir on PATH those inner calls reach real git
    // instead of being classified as if the agent made them.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cleaned = std::env::join_paths(std::env::split_paths(&path).filter(|d| *d != ctx.bin_dir)).unwrap_or_default();
    let source = std::process::Command::new(&real).args(args).env("PATH", cleaned).exec();
    Err(ShimError::Exec { path: real, source })
}

/// Splits a shell command line into simple commands' words (quotes respected; separators
/// `; & | && || ( ) $( \``, and newlines). Good enough to find git/gt invocations; anything it
/// cannot see is still caught by the after-phase checks.
pub fn split_commands(line: &str) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, cmds: &mut Vec<Vec<String>>| {
        if *in_word {
            cmds.last_mut().expect("one command").push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c2 in chars.by_ref() {
                    if c2 == '\'' {
                        break;
                    }
                    word.push(c2);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c2) = chars.next() {
                    match c2 {
                        '"' => break,
                        '\\' => {
                            if let Some(c3) = chars.next() {
                                word.push(c3);
                            }
                        }
                        _ => word.push(c2),
                    }
                }
            }
            '\\' => {
                if let Some(c2) = chars.next() {
                    in_word = true;
                    word.push(c2);
                }
            }
            ';' | '&' | '|' | '(' | ')' | '`' | '\n' | '{' | '}' => {
                end_word(&mut word, &mut in_word, &mut cmds);
                cmds.push(Vec::new());
            }
            '$' if chars.peek() == Some(&'(') => {
                end_word(&mut word, &mut in_word, &mut cmds);
                cmds.push(Vec::new());
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut cmds),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut cmds);
    cmds.retain(|c| !c.is_empty());
    cmds
}

/// Every git/gt invocation in a shell command line, nested `bash -c '…'` strings included.
pub fn invocations(line: &str, depth: u32) -> Vec<(Tool, Vec<String>)> {
    let mut out = Vec::new();
    for words in split_commands(line) {
        for w in &words {
            if depth < 4 && w.contains(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|') {
                out.extend(invocations(w, depth + 1));
            }
        }
        if let Some(k) = words.iter().position(|w| {
            let base = w.rsplit('/').next().unwrap_or(w);
            Tool::from_name(base).is_some()
        }) {
            let base = words[k].rsplit('/').next().unwrap_or(&words[k]).to_string();
            out.push((Tool::from_name(&base).expect("checked"), words[k + 1..].to_vec()));
        }
    }
    out
}

/// `loop hook claude`: the PreToolUse hook. `Ok` allows; every error blocks (the CLI exits 2,
/// which Claude Code reads as "block", and the message on stderr goes to Claude).
pub fn hook_claude(input: &mut dyn Read) -> Result<(), ShimError> {
    let mut text = String::new();
    if input.read_to_string(&mut text).is_err() {
        return Err(ShimError::HookInput);
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(ShimError::HookNotJson)?;
    let tool_name = v.get("tool_name").and_then(|t| t.as_str()).unwrap_or("");
    if FILE_TOOLS.contains(&tool_name) {
        return hook_file_tool(tool_name, &v);
    }
    if tool_name != "Bash" {
        return Ok(());
    }
    let command = v.pointer("/tool_input/command").and_then(|c| c.as_str()).unwrap_or("");
    let ctx = load_context();
    let (policy, config) = match &ctx {
        Ok(c) => {
            let mut p = c.policy.clone();
            if let Some(cwd) = v.get("cwd").and_then(|c| c.as_str()) {
                let out = crate::workspace::git(
                    Path::new(cwd),
                    &["symbolic-ref", "-q", "--short", "HEAD"],
                    Duration::from_secs(20),
                );
                p.current_branch = out.ok().filter(|o| o.success()).map(|o| o.stdout_text().trim().to_string());
            } else {
                p.current_branch = policy_for_cwd(c).current_branch;
            }
            (p, c.config.clone())
        }
        Err(_) => (PolicyContext::default(), GuardConfig::default()),
    };
    let mut refused = Vec::new();
    for (tool, argv) in invocations(command, 0) {
        let d = policy::classify(tool, &argv, &policy, &config);
        if let Ok(c) = &ctx {
            record(c, tool.as_str(), &argv, &d, "claude-hook");
        }
        if !d.allowed {
            refused.push(format!(
                "loop guard: refused `{} {}` (rule {}): {}",
                tool.as_str(),
                argv.join(" "),
                d.rule,
                d.message
            ));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ShimError::HookRefused(refused))
    }
}

/// Claude Code's tools that write files, and the input field naming the file.
const FILE_TOOLS: [&str; 3] = ["Edit", "Write", "NotebookEdit"];

/// `path` with every existing ancestor's symlinks resolved and `.`/`..` applied in order, so the
/// result is where a write would land. Relative paths are taken against `cwd`. A dangling
/// symlink is an error: where it would write cannot be told.
pub fn resolve_write_path(path: &Path, cwd: &Path) -> Result<PathBuf, String> {
    use std::path::Component;
    let full = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let mut out = PathBuf::from("/");
    for c in full.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                // Once a component does not exist, nothing below it can be a symlink yet.
                if std::fs::symlink_metadata(&out).is_ok() {
                    out = std::fs::canonicalize(&out)
                        .map_err(|e| format!("{} cannot be resolved ({e})", out.display()))?;
                }
            }
        }
    }
    Ok(out)
}

/// A file tool's decision: `(rule, allowed, message)`.
pub fn decide_file_tool(phase: Option<&str>, worktree: Option<&Path>, target: &Path, cwd: &Path) -> Decision {
    let refuse = |rule: &str, message: String| Decision { allowed: false, rule: rule.into(), message };
    if phase == Some("review") {
        return refuse(
            "claude-review-read-only",
            "a review phase changes no file: report what must change in required_actions".into(),
        );
    }
    let Some(wt) = worktree else {
        return refuse("claude-edit-no-worktree", "loop did not say which worktree this phase owns".into());
    };
    let wt = match std::fs::canonicalize(wt) {
        Ok(w) => w,
        Err(e) => return refuse("claude-edit-no-worktree", format!("the worktree {} is gone ({e})", wt.display())),
    };
    let resolved = match resolve_write_path(target, cwd) {
        Ok(p) => p,
        Err(e) => return refuse("claude-edit-unresolvable", e),
    };
    match resolved.strip_prefix(&wt) {
        Ok(rest) if rest.components().next().is_some_and(|c| c.as_os_str() == ".git") => {
            refuse("claude-edit-git-dir", format!("{} is git's own file; use git commands instead", resolved.display()))
        }
        Ok(_) => Decision { allowed: true, rule: "claude-edit-in-worktree".into(), message: String::new() },
        Err(_) => refuse(
            "claude-edit-outside-worktree",
            format!(
                "{} is outside this issue's worktree {}; change files only inside it",
                resolved.display(),
                wt.display()
            ),
        ),
    }
}

/// The hook for Edit, Write and NotebookEdit: the phase and worktree come from the environment
/// loop gave claude (which claude passes on to its hooks; the model cannot change it).
fn hook_file_tool(tool: &str, v: &serde_json::Value) -> Result<(), ShimError> {
    let target = ["/tool_input/file_path", "/tool_input/notebook_path"]
        .iter()
        .find_map(|p| v.pointer(p).and_then(|x| x.as_str()))
        .unwrap_or("");
    let cwd = v
        .get("cwd")
        .and_then(|c| c.as_str())
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    let phase = std::env::var(crate::vocab::CLAUDE_PHASE_ENV).ok();
    // Not started by loop's driver (a hook the user installed by hand): claude's own working
    // directory is the boundary.
    let worktree = std::env::var_os(crate::vocab::CLAUDE_WORKTREE_ENV).map(PathBuf::from).or_else(|| Some(cwd.clone()));
    let d = if target.is_empty() {
        Decision { allowed: false, rule: "claude-edit-no-path".into(), message: "the call names no file".into() }
    } else {
        decide_file_tool(phase.as_deref(), worktree.as_deref(), Path::new(target), &cwd)
    };
    if let Ok(c) = load_context() {
        record(&c, tool, &[target.to_string()], &d, "claude-hook");
    }
    if d.allowed {
        Ok(())
    } else {
        Err(ShimError::HookRefused(vec![format!(
            "loop guard: refused {tool} of {target} (rule {}): {}",
            d.rule, d.message
        )]))
    }
}

/// The `-c` options codex 0.169.0's harness puts before every git it runs for its own context.
const HARNESS_OPTIONS: [&str; 3] = ["safe.bareRepository=explicit", "core.hooksPath=/dev/null", "core.fsmonitor=false"];

/// Whether a git call is codex's own harness reading the repository for its context, not the
/// agent's decision. Patterns seen from codex 0.169.0 (the codex process itself, not the agent's
/// shell, calling git through the shim on PATH), several times per turn:
///
/// ```text
/// git -c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false rev-parse --git-dir
/// git -c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false rev-parse HEAD
/// git -c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false rev-parse --abbrev-ref HEAD
/// git -c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false remote get-url origin
/// git -c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false remote -v
/// git -c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false status --porcelain --ignore-submodules=dirty
/// git -c safe.bareRepository=explicit config --null --get core.fsmonitor
/// ```
///
/// So: started by the agent process (`via` is not the agent's shell), led by
/// `-c safe.bareRepository=explicit` with only the harness's `-c` options, and a read-only
/// subcommand of that list. An agent's shell typing the same words is still the agent's.
pub fn is_harness_git(tool: Tool, argv: &[String], via: &str) -> bool {
    if tool != Tool::Git || !via.starts_with("shim:") {
        return false;
    }
    let mut rest = argv;
    let mut led = false;
    while let [flag, value, tail @ ..] = rest {
        if flag != "-c" {
            break;
        }
        if !HARNESS_OPTIONS.contains(&value.as_str()) {
            return false;
        }
        led |= value == HARNESS_OPTIONS[0];
        rest = tail;
    }
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    led && match words.as_slice() {
        ["rev-parse", args @ ..] => args.iter().all(|a| matches!(*a, "--git-dir" | "--abbrev-ref" | "HEAD")),
        ["remote", "get-url", _] | ["remote", "-v"] => true,
        ["status", "--porcelain", more @ ..] => more.iter().all(|a| a.starts_with("--ignore-submodules")),
        ["config", "--null", "--get", _] => true,
        _ => false,
    }
}

/// Reads and retires an issue's decisions file, as events to journal: the agent's decisions one
/// by one, and codex's harness git calls ([`is_harness_git`]) as one count at the end.
pub fn take_decisions(file: &Path, phase: Phase) -> Vec<Fact> {
    let Ok(text) = std::fs::read_to_string(file) else { return Vec::new() };
    let mut n = 0;
    let mut done = file.with_extension(format!("jsonl.folded-{n}"));
    while done.exists() {
        n += 1;
        done = file.with_extension(format!("jsonl.folded-{n}"));
    }
    let _ = std::fs::rename(file, &done);
    let (mut count, mut sample) = (0u32, Vec::new());
    let mut facts: Vec<Fact> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| match serde_json::from_str::<DecisionLine>(l) {
            Ok(d) if d.allowed && Tool::from_name(&d.tool).is_some_and(|t| is_harness_git(t, &d.argv, &d.via)) => {
                count += 1;
                let shown = format!("git {}", d.argv.join(" "));
                if sample.len() < 3 && !sample.contains(&shown) {
                    sample.push(shown);
                }
                false
            }
            _ => true,
        })
        .map(|l| match serde_json::from_str::<DecisionLine>(l) {
            Ok(d) => Fact::CommandDecided {
                phase,
                tool: d.tool,
                argv: d.argv,
                allowed: d.allowed,
                rule: format!("{} ({})", d.rule, d.via),
            },
            Err(e) => Fact::CommandDecided {
                phase,
                tool: "?".into(),
                argv: vec![l.to_string()],
                allowed: false,
                rule: format!("unreadable decision line: {e}"),
            },
        })
        .collect();
    if count > 0 {
        facts.push(Fact::HarnessCommands { phase, count, sample });
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(argv: &[&str]) -> DecisionLine {
        DecisionLine {
            tool: "git".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            allowed: false,
            rule: "r".into(),
            via: "shim".into(),
        }
    }

    #[test]
    fn relay_keeps_every_line_of_concurrent_shims_whole() {
        let d = tempfile::tempdir().unwrap();
        let (fifo, file) = (d.path().join("d.fifo"), d.path().join("d.jsonl"));
        assert!(!send_to_fifo(&fifo, b"x\n"), "no FIFO yet");
        let relay = Relay::start(&fifo, &file).unwrap();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    for i in 0..400 {
                        // ~700 bytes a line: 3,200 lines overflow the pipe buffer many times.
                        let l = decision_line(&line(&[&format!("w{w}"), &format!("{i}"), &"x".repeat(680)]));
                        assert!(send_to_fifo(&fifo, l.as_bytes()));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        relay.finish();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<DecisionLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 8 * 400);
        for w in 0..8 {
            let got: Vec<usize> =
                lines.iter().filter(|l| l.argv[0] == format!("w{w}")).map(|l| l.argv[1].parse().unwrap()).collect();
            assert_eq!(got, (0..400).collect::<Vec<_>>(), "writer {w}'s lines out of order or lost");
        }
        // Nobody reads after finish: the shim falls back to the file.
        assert!(!send_to_fifo(&fifo, b"x\n"));
        // A second phase reuses the FIFO.
        let relay = Relay::start(&fifo, &file).unwrap();
        assert!(send_to_fifo(&fifo, decision_line(&line(&["again"])).as_bytes()));
        drop(relay);
        assert!(std::fs::read_to_string(&file).unwrap().lines().last().unwrap().contains("again"));
    }

    #[test]
    fn long_decisions_are_cut_below_the_atomic_write_size() {
        let long = "é".repeat(5000);
        let many: Vec<String> = (0..100).map(|i| format!("{i}{}", "\u{1}".repeat(100))).collect();
        for argv in [vec![long.as_str(), "b"], many.iter().map(String::as_str).collect()] {
            let text = decision_line(&line(&argv));
            assert!(text.len() <= MAX_LINE + 1 && text.ends_with('\n'), "{}", text.len());
            let back: DecisionLine = serde_json::from_str(text.trim_end()).unwrap();
            assert!(back.argv.len() <= 17);
        }
        assert!(decision_line(&line(&["x".repeat(4000).as_str()])).contains("…"));
        assert_eq!(
            decision_line(&line(&["status"])),
            format!("{}\n", serde_json::to_string(&line(&["status"])).unwrap())
        );
    }

    #[test]
    fn file_tools_stay_inside_the_worktree_and_out_of_reviews() {
        let d = tempfile::tempdir().unwrap();
        let wt = d.path().join("wt");
        std::fs::create_dir_all(wt.join("src")).unwrap();
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), wt.join("escape")).unwrap();
        std::os::unix::fs::symlink(d.path().join("nowhere/x"), wt.join("dangling")).unwrap();
        let rule = |phase: &str, target: &str| {
            decide_file_tool(Some(phase), Some(&wt), Path::new(target), &wt.join("src")).rule
        };
        assert_eq!(rule("dev", "main.rs"), "claude-edit-in-worktree");
        assert_eq!(rule("fix", &wt.join("new/dir/f.rs").display().to_string()), "claude-edit-in-worktree");
        assert_eq!(rule("review", "main.rs"), "claude-review-read-only");
        assert_eq!(rule("dev", "../../outside/f"), "claude-edit-outside-worktree");
        assert_eq!(rule("dev", "../escape/f"), "claude-edit-outside-worktree", "a symlink out is followed");
        assert_eq!(rule("dev", "/etc/passwd"), "claude-edit-outside-worktree");
        assert_eq!(rule("dev", "../dangling"), "claude-edit-unresolvable");
        assert_eq!(rule("dev", "../.git/config"), "claude-edit-git-dir");
        assert_eq!(rule("dev", "new/../../../outside"), "claude-edit-outside-worktree");
        assert!(!decide_file_tool(Some("dev"), None, Path::new("/x"), &wt).allowed);
    }

    #[test]
    fn codex_harness_git_is_told_apart_from_the_agent() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let lead = "-c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false";
        for tail in [
            "rev-parse --git-dir",
            "rev-parse HEAD",
            "rev-parse --abbrev-ref HEAD",
            "remote get-url origin",
            "remote -v",
            "status --porcelain --ignore-submodules=dirty",
        ] {
            assert!(is_harness_git(Tool::Git, &v(&format!("{lead} {tail}")), "shim:agent-process"), "{tail}");
        }
        assert!(is_harness_git(
            Tool::Git,
            &v("-c safe.bareRepository=explicit config --null --get core.fsmonitor"),
            "shim:agent-process"
        ));
        // The agent's shell typing the same words, a write, another option, no lead: the agent's.
        assert!(!is_harness_git(Tool::Git, &v(&format!("{lead} rev-parse HEAD")), "shim"));
        assert!(!is_harness_git(Tool::Git, &v(&format!("{lead} commit -m x")), "shim:agent-process"));
        assert!(!is_harness_git(Tool::Git, &v(&format!("{lead} remote add x y")), "shim:agent-process"));
        assert!(!is_harness_git(Tool::Git, &v("-c core.hooksPath=/x rev-parse HEAD"), "shim:agent-process"));
        assert!(!is_harness_git(Tool::Git, &v("rev-parse HEAD"), "shim:agent-process"));
        assert!(!is_harness_git(Tool::Gt, &v(&format!("{lead} rev-parse HEAD")), "shim:agent-process"));
    }

    #[test]
    fn harness_calls_are_counted_apart_from_the_agents_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.jsonl");
        let harness = |args: &str| DecisionLine {
            tool: "git".into(),
            argv: format!("-c safe.bareRepository=explicit -c core.hooksPath=/dev/null -c core.fsmonitor=false {args}")
                .split(' ')
                .map(String::from)
                .collect(),
            allowed: true,
            rule: "read".into(),
            via: "shim:agent-process".into(),
        };
        let agent = DecisionLine { via: "shim".into(), ..line(&["status"]) };
        let text: String = [harness("rev-parse HEAD"), agent, harness("rev-parse HEAD"), harness("remote -v")]
            .iter()
            .map(decision_line)
            .collect();
        std::fs::write(&file, text).unwrap();
        let facts = take_decisions(&file, Phase::Dev);
        assert_eq!(facts.len(), 2, "{facts:?}");
        assert!(matches!(&facts[0], Fact::CommandDecided { argv, .. } if argv == &["status"]));
        match &facts[1] {
            Fact::HarnessCommands { count: 3, sample, .. } => assert_eq!(sample.len(), 2, "{sample:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_git_and_gt_in_compound_commands() {
        let found = invocations(
            "cd x && gt sync; echo hi | /usr/bin/git push -f origin \"a b\" && bash -c 'gt move --onto main'",
            0,
        );
        let shown: Vec<String> = found.iter().map(|(t, a)| format!("{} {}", t.as_str(), a.join(" "))).collect();
        assert_eq!(shown, ["gt sync", "git push -f origin a b", "gt move --onto main"]);
    }
}
