//! `loop run --dry-run`: everything a run would do, shown and not done.
//!
//! Invariant: no side effects — no journal, no state dir, no worktree, branch, log, schema file
//! or git config is written; only reads (docs, HEAD, earlier runs for `--issue`).

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::RunInputs;
use super::{CliError, ExitCode};
use crate::agent::claude::ClaudeAgent;
use crate::agent::codex::CodexAgent;
use crate::agent::PhaseRequest;
use crate::clock::{self, Clock};
use crate::machine::Phase;
use crate::render::dryrun::{DryRun, DryRunIssue, DryRunPhase};
use crate::workspace::{GitWorkspace, Workspace};
use crate::{docs, plan, prompts};

/// A review shaped like a real one, so the fix prompt shows where required actions go.
const SAMPLE_REVIEW: &str = r#"{"required_actions": ["<the required_actions of the review before this fix>"]}"#;

/// The real agent whose argv and prompts a dry run shows.
pub enum Shown {
    Codex(CodexAgent),
    Claude(ClaudeAgent),
}

impl Shown {
    fn prompt(&self, req: &PhaseRequest) -> Result<String, prompts::PromptError> {
        match self {
            Shown::Codex(a) => a.prompt(req),
            Shown::Claude(a) => a.prompt(req),
        }
    }

    /// The command line on one line: the prompt as `label`, Claude's inline JSON schema as
    /// `<json schema: PHASE>`.
    fn argv(&self, req: &PhaseRequest, label: &str) -> String {
        // A stand-in the display leaves unquoted, replaced by the label afterwards.
        const PROMPT: &str = "LOOP-DRY-RUN-PROMPT";
        let quoted = |arg: &str| crate::proc::Cmd::new("x").arg(arg).display().split_off(2);
        let shown = match self {
            Shown::Codex(a) => a.fresh_cmd(req, PROMPT).display(),
            Shown::Claude(a) => {
                let schema = quoted(crate::agent::output::schema_text(req.phase).trim());
                let line = a.cmd(req, PROMPT, None).display();
                line.replace(&schema, &format!("<json schema: {}>", req.phase))
            }
        };
        shown.replace(PROMPT, label)
    }

    /// Where the phase's prompt template comes from: the user's file, or the built-in name.
    fn prompt_source(&self, phase: Phase) -> String {
        let dir = match self {
            Shown::Codex(a) => a.settings.prompts_dir.as_deref(),
            Shown::Claude(a) => a.settings.prompts_dir.as_deref(),
        };
        let name = prompts::name_for(phase);
        match prompts::load(name, dir.map(std::path::Path::new)) {
            Ok(t) if t.source != "built-in" => t.source,
            _ => name.to_string(),
        }
    }

    fn installed(&self) -> Result<String, String> {
        let found = match self {
            Shown::Codex(a) => crate::agent::codex::check_installed(&a.settings.bin),
            Shown::Claude(a) => crate::agent::claude::check_installed(&a.settings.bin),
        };
        found.map(|p| p.display().to_string())
    }
}

/// `problems`: what pre-flight found. They are shown first, and after the whole summary the dry
/// run exits as a real run would have at pre-flight (nothing is started either way).
pub fn show(
    inputs: &RunInputs,
    codex: Option<&crate::agent::codex::CodexSettings>,
    claude: Option<&crate::agent::claude::ClaudeSettings>,
    problems: &[crate::preflight::Problem],
    verbose: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    // The real agent of each phase (dev, review, fix); none for the simulated one.
    let specs = inputs.phase_specs();
    let agents: Vec<Option<Shown>> = specs
        .iter()
        .map(|spec| match spec.kind.as_str() {
            "codex" => codex.map(|c| Shown::Codex(CodexAgent::new(c.clone()))),
            "claude" => claude.map(|c| Shown::Claude(ClaudeAgent::new(c.clone()))),
            _ => None,
        })
        .collect();
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
    let bases = plan::bases(&plan, &super::plan::head_label(&inputs.repo));
    let mut shown = Vec::new();
    for (issue, (_, base)) in issues.into_iter().zip(bases) {
        let phases = match agents.iter().any(Option::is_some) {
            true => Some(phases(&agents, inputs, &run_id, &milestone, &issue)?),
            false => None,
        };
        let review_doc = inputs.review_doc.then(|| crate::reviewdoc::doc_path(&issue.doc, &milestone, &issue.id));
        shown.push(DryRunIssue { issue, base, review_doc, phases });
    }
    let dry = DryRun {
        milestone,
        agent: agents_line(inputs),
        costs: costs_line(inputs),
        base,
        run_id,
        phase_timeout_secs: inputs.phase_timeout_secs,
        max_fix_cycles: inputs.rules.max_fix_cycles,
        max_tokens_per_issue: inputs.max_tokens_per_issue,
        review_doc: inputs.review_doc,
        guard,
        codex: agents.iter().flatten().next().map(Shown::installed),
        waves: plan.waves.clone(),
        issues: shown,
        preflight: problems.iter().map(ToString::to_string).collect(),
    };
    if json {
        crate::outln!("{}", crate::render::dryrun::json(&dry, verbose));
    } else {
        crate::out!("{}", crate::render::dryrun::text(&dry, verbose, crate::render::style::Style::stdout()));
    }
    let warnings = dry.warnings();
    if warnings.is_empty() {
        return Ok(ExitCode::Ok);
    }
    crate::eoutln!("loop: dry run: {} problem(s) would stop `loop run` (listed first above)", warnings.len());
    // The same exit as the real run's refusal; the problems are already on stdout.
    let mut problems = problems.to_vec();
    if problems.is_empty() {
        problems = warnings.into_iter().map(crate::preflight::Problem::CodexMissing).collect();
    }
    Err(CliError::from(crate::preflight::PreflightError { problems }).reported())
}

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Dev => 0,
        Phase::Review => 1,
        Phase::Fix => 2,
    }
}

/// `codex`, or each phase's backend when they differ: `dev codex (gpt-5.5), review sim, fix codex`.
fn agents_line(inputs: &RunInputs) -> String {
    let specs = inputs.phase_specs();
    if specs.iter().all(|s| *s == specs[0]) {
        return specs[0].kind.clone();
    }
    [Phase::Dev, Phase::Review, Phase::Fix]
        .iter()
        .zip(specs)
        .map(|(p, s)| format!("{p} {}", s.describe()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The cost budgets and the priced models, when any is set.
fn costs_line(inputs: &RunInputs) -> Option<String> {
    let spend = inputs.spend.as_ref()?;
    let usd = |v: Option<f64>| v.map(|v| format!("${v}")).unwrap_or_else(|| "unlimited".into());
    let priced: Vec<&str> = spend.prices.keys().map(String::as_str).collect();
    Some(format!(
        "cost budget per issue {}, per run {}; priced models: {}",
        usd(spend.max_cost_usd_per_issue),
        usd(spend.max_cost_usd_per_run),
        if priced.is_empty() { "none".to_string() } else { priced.join(", ") }
    ))
}

/// The argv and prompt of dev, the first review and the first fix, as their agents would get them.
fn phases(
    agents: &[Option<Shown>],
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
    for (phase, cycle, label) in
        [(Phase::Dev, 0, "dev".to_string()), (Phase::Review, 0, "review 1".into()), (Phase::Fix, 1, "fix 1".into())]
    {
        // Only the phases codex runs have a codex command.
        // Only the phases a real agent runs have a command to show.
        let Some(agent) = &agents[phase_index(phase)] else { continue };
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
        let prompt_source = agent.prompt_source(phase);
        let argv = agent.argv(&req, &DryRunPhase::prompt_label(&prompt, &prompt_source));
        out.push(DryRunPhase { label, template: prompts::name_for(phase), argv, prompt, prompt_source });
    }
    Ok(out)
}
