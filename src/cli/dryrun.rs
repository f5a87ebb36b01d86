//! `loop run --dry-run`: everything a run would do, shown and not done.
//!
//! Invariant: no side effects — no journal, no state dir, no worktree, branch, log, schema file
//! or git config is written; only reads (docs, HEAD, earlier runs for `--issue`).

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::RunInputs;
use super::{CliError, ExitCode};
use crate::agent::codex::{check_installed, CodexAgent, CodexSettings};
use crate::agent::PhaseRequest;
use crate::clock::{self, Clock};
use crate::machine::Phase;
use crate::render::dryrun::{DryRun, DryRunIssue, DryRunPhase};
use crate::workspace::{GitWorkspace, Workspace};
use crate::{docs, plan, prompts};

/// A review shaped like a real one, so the fix prompt shows where required actions go.
const SAMPLE_REVIEW: &str = r#"{"required_actions": ["<the required_actions of the review before this fix>"]}"#;

/// `problems`: what pre-flight found (shown; a dry run starts nothing, so it still exits 0).
pub fn show(
    inputs: &RunInputs,
    codex: Option<&CodexSettings>,
    problems: &[crate::preflight::Problem],
) -> Result<ExitCode, CliError> {
    let docs = docs::load(&inputs.repo)?;
    let milestone = plan::choose_milestone(&docs, inputs.milestone.as_deref())?;
    let mut plan = plan::build(&docs, &milestone)?;
    super::select::only_issues(&mut plan, &inputs.issues, &inputs.state)?;
    let issues = plan::planned_issues(&plan, &inputs.state.worktrees_dir(), &milestone);
    let base = GitWorkspace::new(&inputs.repo).head_commit().unwrap_or_else(|e| format!("(none: {e})"));
    let run_id = clock::new_run_id(&Clock::from_env());
    let guard = inputs
        .guard
        .as_ref()
        .map(|g| g.args.spec(&g.file, g.sandbox.clone(), &inputs.state.logs_dir(&run_id)).describe());
    let agent = codex.cloned().map(CodexAgent::new);
    let bases = plan::bases(&plan, &super::plan::head_label(&inputs.repo));
    let mut shown = Vec::new();
    for (issue, (_, base)) in issues.into_iter().zip(bases) {
        let phases = match &agent {
            Some(agent) => Some(phases(agent, inputs, &run_id, &milestone, &issue)?),
            None => None,
        };
        let review_doc = inputs.review_doc.then(|| crate::reviewdoc::doc_path(&issue.doc, &milestone, &issue.id));
        shown.push(DryRunIssue { issue, base, review_doc, phases });
    }
    let dry = DryRun {
        milestone,
        agent: inputs.agent.kind.clone(),
        base,
        run_id,
        phase_timeout_secs: inputs.phase_timeout_secs,
        max_fix_cycles: inputs.rules.max_fix_cycles,
        max_tokens_per_issue: inputs.max_tokens_per_issue,
        review_doc: inputs.review_doc,
        guard,
        codex: codex.map(|s| check_installed(&s.bin).map(|p| p.display().to_string())),
        issues: shown,
        preflight: problems.iter().map(ToString::to_string).collect(),
    };
    crate::out!("{}", crate::render::dryrun::text(&dry));
    Ok(ExitCode::Ok)
}

/// The argv and prompt of dev, the first review and the first fix, as codex would get them.
fn phases(
    agent: &CodexAgent,
    inputs: &RunInputs,
    run_id: &str,
    milestone: &str,
    issue: &crate::journal::PlannedIssue,
) -> Result<Vec<DryRunPhase>, CliError> {
    let mut out = Vec::new();
    let verify_lines = issue
        .verify
        .iter()
        .chain(inputs.verify.commands.iter())
        .map(|c| format!("- `{c}`: <passed, or a pre-existing failure> (<duration>; log <path>)"))
        .collect::<Vec<_>>()
        .join("\n");
    for (phase, cycle, label) in [
        (Phase::Dev, 0, "dev".to_string()),
        (Phase::Review, 0, "review 1".into()),
        (Phase::Fix, 1, "fix cycle 1".into()),
    ] {
        let req = PhaseRequest {
            run_id: run_id.to_string(),
            milestone: milestone.to_string(),
            issue: issue.clone(),
            phase,
            cycle,
            attempt: 1,
            worktree: PathBuf::from(&issue.worktree),
            last_review: (phase == Phase::Fix).then(|| SAMPLE_REVIEW.to_string()),
            verification: (phase == Phase::Review && !verify_lines.is_empty()).then(|| verify_lines.clone()),
            resume_session: None,
            timeout: Duration::from_secs(inputs.phase_timeout_secs),
            stall_timeout: inputs.resilience.stall_timeout(),
            env: Vec::new(),
        };
        let prompt = agent.prompt(&req).map_err(|e| CliError::Usage(e.to_string()))?;
        let argv = agent.fresh_cmd(&req, &prompt).display();
        out.push(DryRunPhase { label, template: prompts::name_for(phase), argv, prompt });
    }
    Ok(out)
}
