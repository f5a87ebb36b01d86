//! `loop run`: plan a milestone, journal the run's inputs, and drive it. Settings are resolved by
//! [`crate::config::resolve_run`], the agent built by [`crate::agent::from_spec`], progress drawn
//! by [`crate::render::progress`].

use std::path::Path;

use clap::Args;

use super::inputs::{GuardInputs, RunInputs};
use super::{CliError, ExitCode, RepoArgs};
use crate::agent::PhaseAgentSet;
use crate::clock::{self, Clock};
use crate::config::EnvSettings;
use crate::engine::{Engine, GuardHooks, Hooks, Observer, Outcome, Recorder, StackHooks};
use crate::journal::view::{Applied, RunView};
use crate::journal::{AgentSpec, Journal, Record, RunStart};
use crate::machine::Phase;
use crate::render::progress::Progress;
use crate::vocab::EarlierRuns;
use crate::workspace::Workspace;
use crate::{docs, plan, render};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The milestone to run (optional when the docs name exactly one).
    #[arg(long, short)]
    pub milestone: Option<String>,
    #[command(flatten)]
    pub settings: super::setting_args::SettingArgs,
    /// Run only these issues (repeatable); their dependencies must be given too or be Done in an earlier run.
    #[arg(long = "issue", value_name = "ID")]
    pub issues: Vec<String>,
    /// Show what a run would do and change nothing: problems that would stop it first, then the
    /// waves, each issue's base, branch and worktree, and each phase's command line. Exits 2 when
    /// `loop run` would refuse to start (a missing agent CLI, pre-flight's problems). With --json:
    /// one object (warnings, waves, issues with base, branch, worktree and phases).
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: also print every rendered prompt (with --json: a `prompt` per phase).
    #[arg(long, requires = "dry_run")]
    pub verbose: bool,
    /// Start the milestone over: run every issue on new branches (`loop/<milestone>-<run id>/<issue>`),
    /// leaving earlier runs' branches untouched [default: keep the issues earlier runs ended Done,
    /// run the rest on loop's own branches].
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub drive: DriveArgs,
    #[command(flatten)]
    pub guard: crate::guard::GuardArgs,
    #[command(flatten)]
    pub engine: super::restate_cmd::EngineArgs,
}

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
    /// Never run the `[verify] setup` commands (installs already done).
    #[arg(long)]
    pub skip_setup: bool,
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

impl Observer for Progress {
    fn record(&mut self, rec: &Record, applied: &Applied, view: &RunView) {
        Progress::record(self, rec, applied, view);
    }

    fn tick(&mut self, view: &RunView) {
        Progress::tick(self, view);
    }
}

/// Plans the milestone, journals `run_started`, and drives the run. Returns the exit code.
pub fn start(inputs: RunInputs, progress: &mut Progress) -> Result<(ExitCode, RunView), CliError> {
    let (jobs, skip_setup) = (inputs.jobs, inputs.skip_setup);
    let begun = begin(inputs, progress)?;
    super::install_interrupt_handler();
    drive(begun.recorder, &begun.agents, &begun.ws, progress, jobs, super::verify_env(&begun.state, skip_setup))
}

/// A new run, journaled and ready to drive: its first record is durable.
pub struct Begun {
    pub recorder: Recorder,
    pub agents: PhaseAgentSet,
    pub ws: crate::workspace::GitWorkspace,
    pub state: crate::runs::StateDir,
    pub repo: std::path::PathBuf,
    /// Held until the run is driven (or handed to another engine).
    pub locks: (crate::runs::RunLock, crate::runs::RunLock),
}

/// Plans the milestone and journals the new run's `run_started` (nothing is driven yet).
pub fn begin(inputs: RunInputs, progress: &mut Progress) -> Result<Begun, CliError> {
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
        jobs: _,
        verify,
        skip_setup: _,
        guard,
        fresh,
        resilience,
        spend,
    } = inputs;
    let docs = docs::load(&repo)?;
    let milestone = plan::choose_milestone(&docs, milestone.as_deref())?;
    let mut plan = plan::build(&docs, &milestone)?;
    super::select::only_issues(&mut plan, &only, &state)?;
    let ids: Vec<&str> = plan.order.iter().map(|p| p.id.as_str()).collect();
    // Check the scenario before anything is written.
    let clock = Clock::from_env();
    let phase_specs = match spend.as_ref().and_then(|s| s.agents.as_ref()) {
        Some(a) => [&a.dev, &a.review, &a.fix],
        None => [&agent; 3],
    };
    let agents = crate::agent::PhaseAgentSet::from_specs(phase_specs, &ids, &scenario_source)?;

    let ws = super::git_workspace(&repo);
    if state.root.starts_with(&repo) {
        if let Ok(rel) = state.root.strip_prefix(&repo) {
            ws.exclude(&format!("/{}/", rel.display()))?;
        }
    }
    let base_commit = ws.head_commit().map_err(|e| {
        CliError::Usage(format!("{}: the repository needs at least one commit to branch from ({e})", repo.display()))
    })?;
    let run_id = clock::new_run_id(&clock);
    // A staged run under this id that never made a record durable gives way (see `create_run`).
    state.remove_empty(&run_id)?;
    if state.kind(&run_id) != crate::runs::RunKind::Absent {
        return Err(CliError::Usage(format!("run {run_id} already exists")));
    }
    let milestone_lock = state.lock_milestone(&repo, &milestone, crate::runs::Holder::Run(&run_id))?;
    // Under the milestone's lock, the earlier runs' journals are final.
    let (issues, rerun) = if fresh {
        let names = super::rerun::fresh_namespace(&milestone, &run_id);
        (plan::planned_issues(&plan, &state.worktrees_dir(), &names), super::rerun::Rerun::default())
    } else {
        let mut issues = plan::planned_issues(&plan, &state.worktrees_dir(), &milestone);
        let rerun = super::rerun::earlier_runs(&state, &repo, &milestone, &mut issues, &ws)?;
        (issues, rerun)
    };
    for note in &rerun.notes {
        crate::eoutln!("loop: {note}");
    }
    let (lock, store) = state.create_run(&run_id)?;
    let journal =
        Journal::create(Box::new(store), &run_id, clock.clone()).with_fault_after(super::fault_after_append());
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
        verify,
        earlier: Box::new(EarlierRuns { carried_over: rerun.carried, reusable_branches: rerun.reusable }),
        resilience: Box::new(resilience),
        spend,
    };
    let recorder = Recorder::start(journal, start, progress)?;
    Ok(Begun { recorder, agents, ws, state, repo, locks: (lock, milestone_lock) })
}

/// Drives a journaled run to its end or to an interruption.
pub fn drive(
    recorder: Recorder,
    agents: &PhaseAgentSet,
    ws: &dyn Workspace,
    progress: &mut Progress,
    jobs: usize,
    verify: crate::engine::VerifyEnv,
) -> Result<(ExitCode, RunView), CliError> {
    let view = recorder.view();
    let mut guard =
        view.start.guard.as_ref().and_then(|g| crate::guard::Guard::from_spec(g, Path::new(&view.start.repo)));
    if let (Some(g), true) = (&mut guard, jobs > 1) {
        g.siblings = view.start.issues.iter().map(|p| (p.branch.to_string(), p.worktree.clone())).collect();
        g.scratch = Some(verify.scratch_root.clone());
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
    let settings = super::engine_settings(jobs).with_verify(verify);
    let hooks = [guard_hooks.as_ref().map(|h| h as &dyn Hooks), stack_hooks.as_ref().map(|h| h as &dyn Hooks)];
    let (outcome, view) = assemble(recorder, agents, ws, progress, settings, hooks).drive()?;
    let code = super::run_exit_code(&view, outcome);
    if outcome == Outcome::Interrupted {
        crate::eoutln!("loop: run {} interrupted; continue with `loop resume {}`", view.run_id, view.run_id);
    }
    Ok((code, view))
}

/// The engine of a run: each phase on its recorded backend, then the guard's and the Graphite
/// stack's hooks (in that order). Shared by local drives and a worker's jobs.
pub fn assemble<'a>(
    recorder: Recorder,
    agents: &'a PhaseAgentSet,
    ws: &'a dyn Workspace,
    observer: &'a mut dyn Observer,
    settings: crate::engine::Settings,
    hooks: [Option<&'a dyn Hooks>; 2],
) -> Engine<'a> {
    let mut engine = Engine::new(recorder, agents.get(Phase::Dev), ws, observer, settings)
        .phase_agent(Phase::Review, agents.get(Phase::Review))
        .phase_agent(Phase::Fix, agents.get(Phase::Fix));
    for h in hooks.into_iter().flatten() {
        engine = engine.hook(h);
    }
    engine
}

pub fn finish_output(view: &RunView, json: bool, repo: &Path, quiet: bool) {
    if json {
        crate::outln!("{}", render::status_json(view, Some(repo)));
    } else if !quiet {
        crate::eout!("{}", render::status_text(view, false, render::style::Style::stderr()));
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let repo = args.repo.repo_root()?;
    let state = args.repo.state()?;
    let cfg = crate::config::load(&repo)?;
    let scenario = match &args.settings.sim_scenario {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| CliError::io(p, e))?),
        None => None,
    };
    let flags = args.settings.flags();
    let settings =
        crate::config::resolve_run(&cfg, &EnvSettings::from_process(), &flags, &repo, &state.root.join("logs"))?;
    args.drive.check()?;
    // A scenario file is checked against the milestone's ids inside `start`; its parse errors
    // name the file, so check the syntax here where the path is known.
    if let (Some(text), Some(p)) = (&scenario, &args.settings.sim_scenario) {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| CliError::Usage(format!("{}: not valid JSON: {e}", p.display())))?;
    }
    let codex = settings.codex.clone();
    let claude = settings.claude.clone();
    let codex_json = codex.as_ref().map(|c| serde_json::to_string(c).expect("settings serialize"));
    let claude_json = claude.as_ref().map(|c| serde_json::to_string(c).expect("settings serialize"));
    // Each kind's spec carries what that kind needs: the scenario (sim), the settings (codex,
    // claude).
    let spec_for = |kind: &str| match kind {
        "sim" => AgentSpec { kind: kind.to_string(), scenario: scenario.clone(), settings: None },
        "codex" => AgentSpec { kind: kind.to_string(), scenario: None, settings: codex_json.clone() },
        "claude" => AgentSpec { kind: kind.to_string(), scenario: None, settings: claude_json.clone() },
        _ => AgentSpec { kind: kind.to_string(), scenario: None, settings: None },
    };
    let agents = settings.mixed().then(|| crate::vocab::PhaseAgents {
        dev: spec_for(settings.phase_agent(Phase::Dev)),
        review: spec_for(settings.phase_agent(Phase::Review)),
        fix: spec_for(settings.phase_agent(Phase::Fix)),
    });
    let spend = crate::vocab::SpendSpec {
        agents,
        prices: settings.prices.clone(),
        max_cost_usd_per_issue: settings.max_cost_usd_per_issue,
        max_cost_usd_per_run: settings.max_cost_usd_per_run,
    }
    .or_none();
    let inputs = RunInputs {
        repo: repo.clone(),
        state,
        milestone: args.milestone,
        agent: spec_for(&settings.agent),
        scenario_source: args.settings.sim_scenario.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        rules: settings.rules,
        phase_timeout_secs: settings.phase_timeout_secs,
        max_tokens_per_issue: settings.max_tokens_per_issue,
        review_doc: settings.review_doc,
        issues: args.issues,
        fresh: args.fresh,
        jobs: args.drive.jobs,
        verify: settings.verify.clone(),
        skip_setup: args.drive.skip_setup,
        guard: Some(GuardInputs { args: args.guard, file: cfg.guard.clone(), sandbox: settings.sandbox() }),
        resilience: settings.resilience,
        spend,
    };
    let min_free_disk_mb = cfg.run.min_free_disk_mb.unwrap_or(crate::preflight::DEFAULT_MIN_FREE_DISK_MB);
    let problems = preflight(&inputs, codex.as_ref(), claude.as_ref(), min_free_disk_mb)?;
    if args.dry_run {
        return super::dryrun::show(&inputs, codex.as_ref(), claude.as_ref(), &problems, args.verbose, args.drive.json);
    }
    if !problems.is_empty() {
        return Err(crate::preflight::PreflightError { problems }.into());
    }
    let mut progress = args.drive.progress();
    let (code, view) = match args.engine.engine {
        super::restate_cmd::EngineKind::Local => start(inputs, &mut progress)?,
        super::restate_cmd::EngineKind::Restate => on_restate(inputs, &args.engine, &mut progress)?,
    };
    if args.engine.detach && args.engine.engine == super::restate_cmd::EngineKind::Restate {
        return Ok(code);
    }
    finish_output(&view, args.drive.json, &repo, args.drive.quiet);
    Ok(code)
}

#[cfg(feature = "restate")]
fn on_restate(
    inputs: RunInputs,
    engine: &super::restate_cmd::EngineArgs,
    progress: &mut Progress,
) -> Result<(ExitCode, RunView), CliError> {
    let begun = begin(inputs, progress)?;
    super::restate_cmd::submit(begun, engine, progress)
}

#[cfg(not(feature = "restate"))]
fn on_restate(
    _: RunInputs,
    _: &super::restate_cmd::EngineArgs,
    _: &mut Progress,
) -> Result<(ExitCode, RunView), CliError> {
    Err(super::restate_cmd::not_built())
}

/// Pre-flight for a new run of `inputs` (README "Pre-flight"): every problem that would stop it,
/// found before anything is written. Docs that do not load or plan are errors of their own.
pub fn preflight(
    inputs: &RunInputs,
    codex: Option<&crate::agent::codex::CodexSettings>,
    claude: Option<&crate::agent::claude::ClaudeSettings>,
    min_free_disk_mb: u64,
) -> Result<Vec<crate::preflight::Problem>, CliError> {
    let docs = docs::load(&inputs.repo)?;
    let milestone = plan::choose_milestone(&docs, inputs.milestone.as_deref())?;
    let mut plan = plan::build(&docs, &milestone)?;
    super::select::only_issues(&mut plan, &inputs.issues, &inputs.state)?;
    let issues = plan::planned_issues(&plan, &inputs.state.worktrees_dir(), &milestone);
    // Bad input (a scenario naming unknown issues) is reported as such, before the environment.
    let ids: Vec<&str> = issues.iter().map(|p| p.id.as_str()).collect();
    crate::agent::PhaseAgentSet::from_specs(inputs.phase_specs(), &ids, &inputs.scenario_source)?;
    let guard = inputs.guard.as_ref().map(|g| g.args.spec(&g.file, g.sandbox.clone(), Path::new("")));
    let req = crate::preflight::Request {
        repo: &inputs.repo,
        state_dir: &inputs.state.root,
        allow_dirty: guard.as_ref().is_some_and(|g| g.config.allow_dirty),
        check_checkout: guard.as_ref().is_some_and(|g| g.config.checks),
        docs: issues.iter().map(|i| i.doc.clone()).collect(),
        codex: codex.map(|c| crate::agent::codex::check_installed(&c.bin)),
        gt: guard
            .as_ref()
            .filter(|g| g.stack == crate::stack::StackMode::Graphite)
            .map(|_| crate::stack::Gt::from_env(std::time::Duration::from_secs(60)).bin),
        min_free_disk_mb,
        backends: backends(codex, claude),
    };
    let mut problems = crate::preflight::check(&crate::preflight::gather(&req));
    // Claude Code has no `login status` to ask; an API key or token is checked by its first call.
    if let Some(Err(m)) = claude.map(|c| crate::agent::claude::check_installed(&c.bin)) {
        problems.push(crate::preflight::Problem::CodexMissing(m));
    }
    Ok(problems)
}

/// The agent backends a run will use that are installed, for pre-flight's version and login
/// checks (a missing one is reported by its own presence check). A new backend adds its entry.
pub fn backends(
    codex: Option<&crate::agent::codex::CodexSettings>,
    claude: Option<&crate::agent::claude::ClaudeSettings>,
) -> Vec<crate::preflight::Backend> {
    let codex = codex
        .and_then(|c| crate::agent::codex::check_installed(&c.bin).ok())
        .map(|bin| crate::preflight::Backend { kind: "codex".into(), bin });
    let claude = claude
        .and_then(|c| crate::agent::claude::check_installed(&c.bin).ok())
        .map(|bin| crate::preflight::Backend { kind: "claude".into(), bin });
    codex.into_iter().chain(claude).collect()
}
