//! `loop run --dry-run`: everything a run would do, shown and not done.
//!
//! Invariant: no side effects — no journal, no state dir, no worktree, branch, log, schema file
//! or git config is written; only reads (docs, HEAD, earlier runs for `--issue`).

use std::path::PathBuf;
use std::time::Duration;

use super::run::{planned_issues, RunInputs};
use super::CliError;
use crate::agent::codex::{check_installed, CodexAgent, CodexSettings};
use crate::agent::PhaseRequest;
use crate::clock::{self, Clock};
use crate::machine::Phase;
use crate::workspace::{GitWorkspace, Workspace};
use crate::{docs, plan, prompts};

/// A review shaped like a real one, so the fix prompt shows where required actions go.
const SAMPLE_REVIEW: &str = r#"{"required_actions": ["<the required_actions of the review before this fix>"]}"#;

pub fn show(inputs: &RunInputs, codex: Option<&CodexSettings>) -> Result<i32, CliError> {
    let docs = docs::load(&inputs.repo)?;
    let milestone = plan::choose_milestone(&docs, inputs.milestone.as_deref())?;
    let mut plan = plan::build(&docs, &milestone)?;
    super::select::only_issues(&mut plan, &inputs.issues, &inputs.state)?;
    let issues = planned_issues(&plan, &inputs.state, &milestone);
    let base = GitWorkspace::new(&inputs.repo).head_commit().unwrap_or_else(|e| format!("(none: {e})"));
    let run_id = clock::new_run_id(&Clock::from_env());
    let mut out = String::new();
    out.push_str("dry run: nothing is written (no journal, worktree, branch, commit or log)\n");
    out.push_str(&format!(
        "milestone {milestone}: {} issue(s), agent {}, base {base}\nrun id would be {run_id}\n",
        issues.len(),
        inputs.agent.kind
    ));
    out.push_str(&format!(
        "phase timeout {}s, max fix cycles {}, token budget per issue {}, review doc {}\n",
        inputs.phase_timeout_secs,
        inputs.rules.max_fix_cycles,
        inputs.max_tokens_per_issue.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
        if inputs.review_doc { "on" } else { "off" }
    ));
    if let Some(g) = &inputs.guard {
        out.push_str(&format!("{}\n", g.args.spec(&g.file, g.sandbox.clone(), &inputs.state.logs_dir(&run_id)).describe()));
    }
    if let Some(s) = codex {
        match check_installed(&s.bin) {
            Ok(p) => out.push_str(&format!("codex: {}\n", p.display())),
            Err(msg) => out.push_str(&format!("warning: {msg}\n")),
        }
    }
    let agent = codex.cloned().map(CodexAgent::new);
    for issue in &issues {
        out.push_str(&format!("\n== {}: {}\n", issue.id, issue.title));
        out.push_str(&format!("doc       {}\nbranch    {}\nworktree  {}\n", issue.doc, issue.branch, issue.worktree));
        let deps = if issue.blocked_by.is_empty() { "-".to_string() } else { issue.blocked_by.join(", ") };
        out.push_str(&format!("blocked by {deps}\n"));
        if inputs.review_doc {
            out.push_str(&format!("review doc {}\n", crate::reviewdoc::doc_path(&issue.doc, &milestone)));
        }
        let Some(agent) = &agent else {
            out.push_str("(the simulated agent runs no command)\n");
            continue;
        };
        for (phase, cycle, label) in [
            (Phase::Dev, 0, "dev".to_string()),
            (Phase::Review, 0, "review 1".into()),
            (Phase::Fix, 1, "fix cycle 1".into()),
        ] {
            let req = PhaseRequest {
                run_id: run_id.clone(),
                milestone: milestone.clone(),
                issue: issue.clone(),
                phase,
                cycle,
                attempt: 1,
                worktree: PathBuf::from(&issue.worktree),
                last_review: (phase == Phase::Fix).then(|| SAMPLE_REVIEW.to_string()),
                resume_session: None,
                timeout: Duration::from_secs(inputs.phase_timeout_secs),
                env: Vec::new(),
            };
            let prompt = agent.prompt(&req).map_err(|e| CliError::Usage(e.to_string()))?;
            let cmd = agent.fresh_cmd(&req, &prompt);
            let template = prompts::name_for(phase);
            out.push_str(&format!("\n-- {label}: argv (prompt = {template}, shown below)\n"));
            // The prompt is the last argument; show it once, below, rather than quoted inline.
            let shown = cmd.clone();
            let mut argv = shown.display();
            if let Some(cut) = argv.rfind(" -- ") {
                argv.truncate(cut);
                argv.push_str(" -- <prompt>");
            }
            out.push_str(&format!(
                "{argv}\n(cwd {}, stdin null, timeout {}s)\n",
                issue.worktree, inputs.phase_timeout_secs
            ));
            out.push_str(&format!("-- {label}: prompt\n{}\n", prompt.trim_end()));
        }
    }
    // Prompts quote titles from the docs; a terminal must not act on them.
    crate::out!("{}", crate::render::escape_lines(&out));
    Ok(0)
}
