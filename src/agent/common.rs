//! What every real agent driver shares: the phase prompt (the same `dev-auto-*` templates and
//! inputs whatever runs them), the messages that re-ask or continue a session, log names, and
//! the "is the binary there" check.
//!
//! Invariant: a driver renders its prompt only through [`prompt`], so a template renders the same
//! for codex and Claude Code (and the dry run shows what each really gets).

use std::path::{Path, PathBuf};

use super::output::{self, OutputError};
use super::PhaseRequest;
use crate::machine::Phase;
use crate::prompts;

/// The review doc a review is appended to, relative to the repo (see [`crate::reviewdoc`]).
fn review_doc_for(req: &PhaseRequest) -> String {
    crate::vocab::review_doc_path(&req.issue.doc, &req.milestone, &req.issue.id)
}

fn required_actions(last_review: Option<&str>) -> String {
    let actions: Vec<String> = last_review
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|v| v.get("required_actions").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    if actions.is_empty() {
        "- (the review listed none; see its findings in the review doc)".into()
    } else {
        actions.iter().map(|a| format!("- {a}")).collect::<Vec<_>>().join("\n")
    }
}

fn verification(summary: Option<&str>) -> String {
    summary.unwrap_or("- (no verification commands are configured for this issue)").to_string()
}

/// The phase's prompt, rendered from its template (the user's `prompts_dir` first) with
/// explicit inputs.
pub fn prompt(req: &PhaseRequest, prompts_dir: Option<&str>) -> Result<String, prompts::PromptError> {
    let t = prompts::load(prompts::name_for(req.phase), prompts_dir.map(Path::new))?;
    let values = [
        ("run_id", req.run_id.clone()),
        ("issue_id", req.issue.id.to_string()),
        ("issue_title", req.issue.title.clone()),
        ("issue_doc", req.issue.doc.clone()),
        ("milestone", req.milestone.clone()),
        ("branch", req.issue.branch.to_string()),
        ("worktree", req.worktree.display().to_string()),
        ("cycle", req.cycle.to_string()),
        ("review_number", (req.cycle + 1).to_string()),
        ("required_actions", required_actions(req.last_review.as_deref())),
        ("review_doc", review_doc_for(req)),
        ("verification", verification(req.verification.as_deref())),
        ("schema", output::schema_file_name(req.phase).to_string()),
    ];
    prompts::render(&t, &values)
}

/// The stem of a phase attempt's log files: `dev-attempt1`, `review2-attempt1`, `fix1-attempt1`.
pub fn log_stem(req: &PhaseRequest) -> String {
    match req.phase {
        Phase::Dev => format!("dev-attempt{}", req.attempt),
        Phase::Review => format!("review{}-attempt{}", req.cycle + 1, req.attempt),
        Phase::Fix => format!("fix{}-attempt{}", req.cycle, req.attempt),
    }
}

/// Asks again for a final message loop could not use.
pub fn retry_message(err: &OutputError) -> String {
    format!(
        "loop could not use your final message: {err}\n\nReply again with ONLY a JSON object that validates against the \
output schema you were given — no prose, no code fence. Do not redo the work; just report it."
    )
}

/// Sent when continuing an interrupted attempt's session. The instructions are repeated because a
/// crash can come before the agent stored the first prompt in the session (it dies with loop's pipe).
pub fn continue_message(prompt: &str) -> String {
    format!(
        "loop was interrupted while this phase was running and has restarted it in this same thread. If you already \
did part of the work above, continue from there instead of starting over; then reply with ONLY the JSON object the \
output schema requires. The phase's instructions, repeated:\n\n{prompt}"
    )
}

/// Is the binary there (a path, or a name on PATH)? `Err` names `what` and says how to install it.
pub fn check_installed(bin: &str, what: &str, hint: &str) -> Result<PathBuf, String> {
    let found = if bin.contains('/') {
        Some(PathBuf::from(bin)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|d| d.join(bin)).find(|p| p.is_file()))
            .unwrap_or(None)
    };
    found.ok_or_else(|| {
        let looked =
            if bin.contains('/') { format!("{bin} does not exist") } else { format!("`{bin}` is not on PATH") };
        format!("{what} is not installed ({looked}); {hint}")
    })
}

/// What [`run_logged`] needs to know of the driver: its name (for "not installed" errors), how
/// to install it, and the root its logs live under (opened without following symlinks).
pub struct LogSpec<'a> {
    pub tool: &'a str,
    pub install_hint: &'a str,
    pub logs_root: &'a Path,
}

/// A failure under loop's own files is its environment's (the run stops for resume); a symlink
/// or a bad path is not.
pub fn fs_err(phase: Phase, what: String, e: crate::safefs::SafeFsError) -> super::AgentError {
    match e {
        crate::safefs::SafeFsError::Io { path, source } => {
            super::AgentError::Io { phase, what: format!("{what} {path}"), source }
        }
        other => super::AgentError::Setup { phase, source: format!("{what}: {other}").into() },
    }
}

/// Runs one agent invocation under supervision the same way for every driver: the phase's
/// deadline and stall timeout, every stdout line to `log_path` (and to `on_line`), stderr to
/// the `.stderr` beside it, and loop's own outcomes (not installed, interrupted, timed out,
/// stalled, a log that could not be written) as errors. What the agent itself said is the
/// caller's to judge from the returned output.
pub fn run_logged(
    req: &PhaseRequest,
    spec: &LogSpec,
    cmd: crate::proc::Cmd,
    log_path: &Path,
    deadline: std::time::Instant,
    on_line: &mut dyn FnMut(&str),
) -> Result<crate::proc::Output, super::AgentError> {
    use super::AgentError;
    use std::io::Write;
    let phase = req.phase;
    let now = std::time::Instant::now();
    if now >= deadline {
        return Err(AgentError::TimedOut { phase, secs: req.timeout.as_secs() });
    }
    let below = |p: &'_ Path| p.strip_prefix(spec.logs_root).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf());
    let mut log = crate::safefs::open_log(spec.logs_root, &below(log_path), crate::safefs::Log::Truncate)
        .map_err(|e| fs_err(phase, "creating the log".into(), e))?;
    let mut cmd = cmd.timeout(deadline - now);
    if let Some(stall) = req.stall_timeout {
        cmd = cmd.stall_timeout(stall);
    }
    let mut log_failed = None;
    let result = crate::proc::run_streaming(&cmd, &mut |line| {
        if let Err(e) = writeln!(log, "{line}") {
            log_failed.get_or_insert(e);
        }
        on_line(line);
    });
    let out = match result {
        Ok(o) => o,
        Err(crate::proc::ProcError::NotFound { program, .. }) => {
            let msg = format!("`{program}` was not found: {} is not installed; {}", spec.tool, spec.install_hint);
            return Err(AgentError::Setup { phase, source: msg.into() });
        }
        Err(e) => return Err(AgentError::Setup { phase, source: Box::new(e) }),
    };
    let _ = crate::safefs::write(spec.logs_root, &below(&log_path.with_extension("stderr")), &out.stderr);
    if let Some(e) = log_failed {
        return Err(AgentError::Io { phase, what: format!("writing {}", log_path.display()), source: e });
    }
    if out.cancelled {
        return Err(AgentError::Interrupted { phase });
    }
    if out.timed_out {
        return Err(AgentError::TimedOut { phase, secs: req.timeout.as_secs() });
    }
    if out.stalled {
        return Err(AgentError::Stalled { phase, secs: req.stall_timeout.unwrap_or_default().as_secs_f64() });
    }
    Ok(out)
}
