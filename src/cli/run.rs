//! `loop run`: plan a milestone, journal the run's inputs, and drive it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::{exit, CliError, RepoArgs};
use crate::agent::codex::{CodexAgent, CodexSettings};
use crate::agent::sim::{parse_scenario, SimAgent};
use crate::agent::Agent;
use crate::clock::{self, Clock};
use crate::engine::{Engine, GuardHooks, Hooks, Observer, Outcome, Recorder, StackHooks};
use crate::journal::view::{Applied, RunView};
use crate::journal::{AgentSpec, Journal, PlannedIssue, Record, RunStart};
use crate::machine::Rules;
use crate::runs::StateDir;
use crate::workspace::{sanitize, Workspace};
use crate::{docs, plan, render};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The milestone to run (optional when the docs name exactly one).
    #[arg(long, short)]
    pub milestone: Option<String>,
    /// Which agent runs the phases.
    #[arg(long, env = "LOOP_AGENT", default_value = "codex", value_parser = ["codex", "sim"])]
    pub agent: String,
    /// Run only these issues (repeatable); their dependencies must be given too or be Done in an earlier run.
    #[arg(long = "issue", value_name = "ID")]
    pub issues: Vec<String>,
    /// Show the plan, worktree and branch names, rendered prompts and exact codex argv; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub codex: super::codex_args::CodexArgs,
    /// JSON file scripting the simulated agent (implies --agent sim): {"ISSUE": {"dev": "pass", "reviews": ["changes_required", "pass"]}}.
    #[arg(long, value_name = "FILE")]
    pub sim_scenario: Option<PathBuf>,
    /// Fix cycles allowed before an issue ends Capped [default: 2, or loop.toml].
    #[arg(long)]
    pub max_fix_cycles: Option<u32>,
    /// Seconds one agent phase may take before its process group is killed [default: 1800, or loop.toml].
    #[arg(long, value_name = "SECS")]
    pub phase_timeout: Option<u64>,
    /// Tokens one issue may use; over it the issue ends Capped [default: unlimited, or loop.toml].
    #[arg(long, value_name = "N")]
    pub max_tokens_per_issue: Option<u64>,
    /// Do not append reviews to docs/projects/<project>/reviews/REVIEW-<milestone>.md.
    #[arg(long)]
    pub no_review_doc: bool,
    #[command(flatten)]
    pub drive: DriveArgs,
    #[command(flatten)]
    pub guard: crate::guard::GuardArgs,
}

/// The longest phase timeout accepted: a deadline must stay representable.
const MAX_PHASE_TIMEOUT: u64 = 30 * 24 * 3600;

/// How a run is driven and shown; shared by `run` and `resume`.
#[derive(Args, Debug)]
pub struct DriveArgs {
    /// How many issues may run at once (each in its own worktree).
    #[arg(long, short, default_value_t = 1)]
    pub jobs: usize,
    /// Print the final status as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Stream every journal record as a JSON line on stdout.
    #[arg(long, conflicts_with = "json")]
    pub json_events: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

impl DriveArgs {
    pub fn check(&self) -> Result<(), CliError> {
        if self.jobs == 0 || self.jobs > 64 {
            return Err(CliError::Usage("--jobs must be between 1 and 64".into()));
        }
        Ok(())
    }

    pub fn progress(&self) -> Progress {
        Progress::new(self.quiet, self.json_events)
    }
}

/// Prints each record as it becomes durable: on a terminal, one live line per running issue
/// (phase, fix cycle, elapsed, tokens) under the permanent lines of finished issues, plus a
/// summary line; otherwise plain timestamped lines (logs, CI).
pub struct Progress {
    pub quiet: bool,
    pub json_events: bool,
    pub start: Instant,
    live: Option<Live>,
}

struct Live {
    /// Lines drawn last time, to move back over them.
    drawn: usize,
    /// issue → when its current phase started.
    since: std::collections::BTreeMap<String, Instant>,
}

impl Progress {
    pub fn new(quiet: bool, json_events: bool) -> Progress {
        use std::io::IsTerminal;
        let live = (!quiet && std::io::stderr().is_terminal() && std::env::var_os("LOOP_PLAIN_PROGRESS").is_none())
            .then(|| Live { drawn: 0, since: Default::default() });
        Progress { quiet, json_events, start: Instant::now(), live }
    }

    fn redraw(&mut self, view: &RunView, permanent: Option<String>) {
        let Some(live) = &mut self.live else { return };
        let mut err = std::io::stderr().lock();
        // Move up over the previous live block and clear it.
        for _ in 0..live.drawn {
            let _ = write!(err, "\x1b[1A\x1b[2K");
        }
        if let Some(line) = permanent {
            let _ = writeln!(err, "{line}");
        }
        let (mut done, mut running, mut waiting, mut blocked) = (0, 0, 0, 0);
        let mut lines = Vec::new();
        for i in &view.issues {
            match &i.state.stage {
                crate::machine::Stage::Done { .. } => done += 1,
                crate::machine::Stage::Capped { .. }
                | crate::machine::Stage::Blocked { .. }
                | crate::machine::Stage::Failed { .. } => blocked += 1,
                crate::machine::Stage::Pending if !live.since.contains_key(&i.id) => waiting += 1,
                s => {
                    running += 1;
                    let since = live.since.get(&i.id).map(|t| t.elapsed().as_secs()).unwrap_or(0);
                    let tokens = if i.tokens > 0 { format!("  {} tokens", i.tokens) } else { String::new() };
                    lines.push(format!("  {:<14} {:<22} {:>4}s{tokens}", i.id, render::state_short(s), since));
                }
            }
        }
        lines.push(format!(
            "  {done} done · {running} running · {waiting} waiting · {blocked} capped/blocked/failed  [{:.0}s]",
            self.start.elapsed().as_secs_f64()
        ));
        for l in &lines {
            let _ = writeln!(err, "{l}");
        }
        live.drawn = lines.len();
        let _ = err.flush();
    }
}

impl Observer for Progress {
    fn record(&mut self, rec: &Record, applied: &Applied, view: &RunView) {
        if self.json_events {
            let line = render::record_json(rec, applied);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if self.quiet {
            return;
        }
        let line = format!("[{:>7.2}s] {}", self.start.elapsed().as_secs_f64(), render::timeline_line(rec, applied));
        let Some(live) = &mut self.live else {
            crate::eoutln!("{line}");
            return;
        };
        // Live mode keeps the screen short: state changes and run-level records become
        // permanent lines; bookkeeping (phase attempts, sessions, guard checks) only updates the
        // live block.
        let changed = applied.from != applied.to;
        if let Some(id) = &applied.issue {
            if changed {
                live.since.insert(id.clone(), Instant::now());
            }
        }
        let permanent = (applied.issue.is_none() || changed).then_some(line);
        self.redraw(view, permanent);
    }

    fn tick(&mut self, view: &RunView) {
        if !self.quiet && self.live.is_some() {
            self.redraw(view, None);
        }
    }
}

/// Builds the agent a run was recorded with.
pub fn agent_for(spec: &AgentSpec, ids: &[&str], source: &str) -> Result<Box<dyn Agent>, CliError> {
    match spec.kind.as_str() {
        "sim" => {
            let scenario = match &spec.scenario {
                Some(text) => parse_scenario(text, source, ids)?,
                None => Default::default(),
            };
            Ok(Box::new(SimAgent::new(scenario)))
        }
        "codex" => {
            let text =
                spec.settings.as_deref().ok_or_else(|| CliError::Usage("the run recorded no codex settings".into()))?;
            let settings: CodexSettings = serde_json::from_str(text)
                .map_err(|e| CliError::Usage(format!("the run's recorded codex settings do not parse: {e}")))?;
            Ok(Box::new(CodexAgent::new(settings)))
        }
        other => Err(CliError::Usage(format!("this loop does not know agent '{other}'"))),
    }
}

/// Everything needed to start a run, already checked.
pub struct RunInputs {
    pub repo: PathBuf,
    pub state: StateDir,
    pub milestone: Option<String>,
    pub agent: AgentSpec,
    /// How to name the scenario in errors (its file path).
    pub scenario_source: String,
    pub rules: Rules,
    pub phase_timeout_secs: u64,
    pub max_tokens_per_issue: Option<u64>,
    pub review_doc: bool,
    /// Only these issues (empty: the whole milestone).
    pub issues: Vec<String>,
    pub jobs: usize,
    /// Guardrails (README "Safety"); `None` runs unguarded.
    pub guard: Option<GuardInputs>,
}

/// What a run's guard is built from: the flags, loop.toml's `[guard]`, and the sandbox the
/// agent will really run in.
#[derive(Clone, Debug, Default)]
pub struct GuardInputs {
    pub args: crate::guard::GuardArgs,
    pub file: crate::config::GuardTable,
    pub sandbox: crate::guard::SandboxSettings,
}

/// Plans the milestone, journals `run_started`, and drives the run. Returns the exit code.
pub fn start(inputs: RunInputs, progress: &mut Progress) -> Result<(i32, RunView), CliError> {
    let RunInputs {
        repo,
        state,
        milestone,
        agent,
        scenario_source,
        rules,
        phase_timeout_secs,
        max_tokens_per_issue,
        review_doc,
        issues: only,
        jobs,
        guard,
    } = inputs;
    let docs = docs::load(&repo)?;
    let milestone = plan::choose_milestone(&docs, milestone.as_deref())?;
    let mut plan = plan::build(&docs, &milestone)?;
    super::select::only_issues(&mut plan, &only, &state)?;
    let ids: Vec<&str> = plan.order.iter().map(|p| p.id.as_str()).collect();
    // Check the scenario before anything is written.
    let clock = Clock::from_env();
    let agent_impl = agent_for(&agent, &ids, &scenario_source)?;

    let ws = super::git_workspace(&repo);
    if state.root.starts_with(&repo) {
        if let Ok(rel) = state.root.strip_prefix(&repo) {
            ws.exclude(&format!("/{}/", rel.display()))?;
        }
    }
    let base_commit = ws.head_commit().map_err(|e| {
        CliError::Usage(format!("{}: the repository needs at least one commit to branch from ({e})", repo.display()))
    })?;
    let issues = planned_issues(&plan, &state, &milestone);

    let run_id = clock::new_run_id(&clock);
    if state.kind(&run_id) != crate::runs::RunKind::Absent {
        return Err(CliError::Usage(format!("run {run_id} already exists")));
    }
    let _milestone_lock = state.lock_milestone(&repo, &milestone, crate::runs::Holder::Run(&run_id))?;
    let (_lock, store) = state.create_run(&run_id)?;
    let journal = Journal::create(Box::new(store), &run_id, clock.clone()).with_fault_after(super::fault_after_append());
    let start = RunStart {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        milestone: milestone.clone(),
        repo: repo.display().to_string(),
        base_commit,
        rules,
        agent,
        phase_timeout_secs,
        max_tokens_per_issue,
        review_doc,
        issues,
        guard: guard.map(|g| g.args.spec(&g.file, g.sandbox, &state.logs_dir(&run_id))),
    };
    let recorder = Recorder::start(journal, start, progress)?;
    super::install_interrupt_handler();
    drive(recorder, agent_impl.as_ref(), &ws, progress, jobs)
}

/// The plan's issues with the branch and worktree names loop gives them.
pub fn planned_issues(plan: &plan::Plan, state: &StateDir, milestone: &str) -> Vec<PlannedIssue> {
    let wt_root = state.worktrees_dir().join(sanitize(milestone));
    plan.order
        .iter()
        .map(|p| PlannedIssue {
            id: p.id.clone(),
            title: p.title.clone(),
            doc: p.doc.clone(),
            blocked_by: p.blocked_by.clone(),
            branch: format!("loop/{}/{}", sanitize(milestone), sanitize(&p.id)),
            worktree: wt_root.join(sanitize(&p.id)).display().to_string(),
        })
        .collect()
}

/// Drives a journaled run to its end or to an interruption.
pub fn drive(
    recorder: Recorder,
    agent: &dyn Agent,
    ws: &dyn Workspace,
    progress: &mut Progress,
    jobs: usize,
) -> Result<(i32, RunView), CliError> {
    let view = recorder.view();
    let mut guard = view.start.guard.as_ref().and_then(|g| crate::guard::Guard::from_spec(g, Path::new(&view.start.repo)));
    if let (Some(g), true) = (&mut guard, jobs > 1) {
        g.siblings = view.start.issues.iter().map(|p| (p.branch.clone(), p.worktree.clone())).collect();
    }
    if let Some(w) = view.start.guard.as_ref().and_then(|g| g.config.sandbox.warning()) {
        crate::eoutln!("loop: {w}");
        if jobs > 1 {
            // The after-phase check cannot tell a sibling's own work from a write into it.
            crate::eoutln!(
                "loop: WARNING: with --jobs {jobs} the after-phase check ignores other issues' branches and \
                 worktrees (they change concurrently), so nothing stops or reports an agent writing into \
                 them; use --jobs 1 with danger-full-access"
            );
        }
    }
    let stack = guard.as_ref().and_then(|g| g.stack());
    let guard_hooks = guard.as_ref().map(GuardHooks);
    let stack_hooks = stack.as_ref().map(StackHooks);
    let mut engine = Engine::new(recorder, agent, ws, progress, super::engine_settings(jobs));
    for hooks in [guard_hooks.as_ref().map(|h| h as &dyn Hooks), stack_hooks.as_ref().map(|h| h as &dyn Hooks)].into_iter().flatten() {
        engine = engine.hook(hooks);
    }
    let (outcome, view) = engine.drive()?;
    let code = super::run_exit_code(&view, outcome);
    if outcome == Outcome::Interrupted {
        crate::eoutln!("loop: run {} interrupted; continue with `loop resume {}`", view.run_id, view.run_id);
    }
    Ok((code, view))
}

pub fn finish_output(view: &RunView, json: bool, repo: &Path, quiet: bool) {
    if json {
        crate::outln!("{}", render::status_json(view, Some(repo)));
    } else if !quiet {
        crate::eout!("{}", render::status_text(view, false));
    }
}

pub fn run(args: RunArgs) -> Result<i32, CliError> {
    let repo = args.repo.repo_root()?;
    let state = args.repo.state()?;
    let cfg = crate::config::load(&repo).map_err(|e| CliError::Usage(e.to_string()))?;
    let scenario = match &args.sim_scenario {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| CliError::io(p, e))?),
        None => None,
    };
    let max_fix_cycles =
        args.max_fix_cycles.or(cfg.run.max_fix_cycles).unwrap_or(crate::machine::DEFAULT_MAX_FIX_CYCLES);
    let from_toml = |key: &str, v: Option<i64>| -> Result<Option<u64>, CliError> {
        v.map(|n| u64::try_from(n).map_err(|_| CliError::Usage(format!("loop.toml: [run] {key} must not be negative ({n})"))))
            .transpose()
    };
    let phase_timeout = args.phase_timeout.or(from_toml("phase_timeout", cfg.run.phase_timeout)?).unwrap_or(1800);
    if phase_timeout > MAX_PHASE_TIMEOUT {
        return Err(CliError::Usage(format!("phase timeout {phase_timeout}s is over the limit of {MAX_PHASE_TIMEOUT}s (30 days)")));
    }
    let max_tokens = args.max_tokens_per_issue.or(from_toml("max_tokens_per_issue", cfg.run.max_tokens_per_issue)?);
    if max_fix_cycles > 100 {
        return Err(CliError::Usage("--max-fix-cycles must be at most 100".into()));
    }
    args.drive.check()?;
    if phase_timeout == 0 {
        return Err(CliError::Usage("--phase-timeout must be at least 1 second".into()));
    }
    // A scenario file is checked against the milestone's ids inside `start`; its parse errors
    // name the file, so check the syntax here where the path is known.
    if let (Some(text), Some(p)) = (&scenario, &args.sim_scenario) {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| CliError::Usage(format!("{}: not valid JSON: {e}", p.display())))?;
    }
    // A scenario only means something to the simulated agent; scripts written when sim was the
    // default keep working.
    let agent_kind = if args.sim_scenario.is_some() { "sim".to_string() } else { args.agent.clone() };
    let codex = match agent_kind.as_str() {
        "codex" => Some(args.codex.settings(&cfg, &repo, &state)?),
        _ => None,
    };
    let settings = codex.as_ref().map(|c| serde_json::to_string(c).expect("settings serialize"));
    let inputs = RunInputs {
        repo: repo.clone(),
        state,
        milestone: args.milestone,
        agent: AgentSpec { kind: agent_kind, scenario, settings },
        scenario_source: args.sim_scenario.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        rules: Rules { max_fix_cycles },
        phase_timeout_secs: phase_timeout,
        max_tokens_per_issue: max_tokens,
        review_doc: !args.no_review_doc && cfg.run.review_doc.unwrap_or(true),
        issues: args.issues,
        jobs: args.drive.jobs,
        guard: Some(GuardInputs {
            args: args.guard,
            file: cfg.guard.clone(),
            sandbox: codex
                .as_ref()
                .map(|c| {
                    use crate::machine::Phase;
                    crate::guard::SandboxSettings::from_modes(c.sandbox(Phase::Dev), c.sandbox(Phase::Fix), c.sandbox(Phase::Review))
                })
                // The simulated agent runs in no sandbox at all; say so in the journal.
                .unwrap_or_else(|| crate::guard::SandboxSettings::from_modes("none", "none", "none")),
        }),
    };
    if args.dry_run {
        return super::dryrun::show(&inputs, codex.as_ref());
    }
    if let Some(c) = &codex {
        crate::agent::codex::check_installed(&c.bin).map_err(CliError::Usage)?;
    }
    let mut progress = args.drive.progress();
    let (code, view) = start(inputs, &mut progress)?;
    finish_output(&view, args.drive.json, &repo, args.drive.quiet);
    Ok(if code == exit::OK { exit::OK } else { code })
}
