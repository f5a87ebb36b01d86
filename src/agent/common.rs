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
