//! The command line: one file per subcommand (parsing and printing only), and the error type
//! whose kind decides the exit code ([`error`]).

pub mod bench;
pub mod clean;
pub mod codex_args;
pub mod completions;
pub mod config;
pub mod demo;
pub mod diff;
pub mod dryrun;
pub mod error;
pub mod export;
pub mod init;
pub mod inputs;
pub mod land;
pub mod logs;
pub mod man;
pub mod plan;
pub mod prompts;
pub mod replay;
pub mod report;
pub mod rerun;
pub mod restate_cmd;
pub mod resume;
pub mod retry;
pub mod run;
pub mod runs;
pub mod select;
pub mod setting_args;
pub mod status;
pub mod sync;
pub mod watch;
pub mod worker;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use error::{finish, CliError, ExitCode};

use crate::runs::StateDir;
use crate::workspace::GitWorkspace;

#[derive(Parser, Debug)]
#[command(
    name = "loop",
    version,
    about = "Drive coding agents through milestone → issue → dev → review → fix, durably.",
    long_about = "loop reads a milestone's issue docs (docs/projects/<project>/issues/*.md), orders them as a \
dependency DAG, and runs each issue through dev → review → fix (at most 2 fix cycles) in a git worktree of its \
own. Every transition is journaled before the next step acts, so `loop resume` continues after a crash or \
Ctrl-C and `loop replay` re-derives and verifies every state.\n\nStart with `loop demo`.",
    after_help = "Exit codes: 0 all issues Done; 1 error; 2 bad input; 3 finished with Capped/Blocked/Failed issues; \
4 journal corrupt; 5 journal and code disagree; 6 run locked; 130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Colour: on a terminal only (auto; off when NO_COLOR is set or TERM=dumb), always, or never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value = "auto", env = "LOOP_COLOR")]
    pub color: ColorWhen,
}

/// `--color WHEN` (see [`crate::render::style`]).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole loop on a throwaway repo with sample issue docs and the simulated agent.
    Demo(demo::DemoArgs),
    /// Show a milestone's dependency order and parallel waves.
    Plan(plan::PlanArgs),
    /// Run a milestone's issues through dev → review → fix.
    Run(Box<run::RunArgs>),
    /// Continue an interrupted or crashed run exactly where it stopped.
    Resume(resume::ResumeArgs),
    /// Reopen Failed, Capped or Blocked issues of a run (and the issues they blocked), then continue it.
    Retry(retry::RetryArgs),
    /// Re-derive every state from the journal alone, verify the hash chain, print the timeline.
    Replay(replay::ReplayArgs),
    /// Show where each issue of a run stands (default: the newest run).
    Status(status::StatusArgs),
    /// Show an issue's changes, base..branch, as the journal recorded them (read-only).
    Diff(diff::DiffArgs),
    /// List an issue's raw logs, or print one (read-only).
    Logs(logs::LogsArgs),
    /// Follow a run live from another terminal (read-only); end with its summary.
    Watch(watch::WatchArgs),
    /// Draw a run as one self-contained HTML page: DAG, timeline, reviews, checks, commits.
    Report(report::ReportArgs),
    /// List the runs recorded in this repository.
    Runs(runs::RunsArgs),
    /// Write a run's journal to a portable file (replay it with `loop replay --file`).
    Export(export::ExportArgs),
    /// Measure the journal, replay, per-issue overhead and planning against baselines.
    Bench(bench::BenchArgs),
    /// List, show or install the dev-auto-* prompt templates.
    Prompts(prompts::PromptsArgs),
    /// Merge a finished run's Done branches into loop/<milestone>/land and run the checks there.
    Land(land::LandArgs),
    /// Remove worktrees finished runs left behind (owned and clean only); say what is kept and why.
    Clean(clean::CleanArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one per subcommand with --out DIR.
    Man(man::ManArgs),
    /// Start here: sample issue docs and a commented loop.toml in this repository (never overwrites).
    Init(init::InitArgs),
    /// Show the settings a run here would use and where each came from (flag, env, loop.toml:line, default).
    Config(Box<config::ConfigArgs>),
    /// Run loop's services for Restate (`serve`) and look at its job queue (`jobs`): one milestone across hosts.
    Restate(restate_cmd::RestateArgs),
    /// Carry out a Restate run's phases in this clone, pushing branches to origin (any number of hosts).
    Worker(worker::WorkerArgs),
    /// Fill the journal of a Restate run here with the records it is missing (idempotent).
    Sync(sync::SyncArgs),
    /// Agent hooks: `loop hook claude` is Claude Code's PreToolUse hook (exit 2 blocks).
    #[command(hide = true)]
    Hook { agent: String },
    /// The git/gt shim by subcommand: `loop __shim git ARGS…`.
    #[command(name = "__shim", hide = true)]
    Shim {
        tool: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Where the repository and loop's state are.
#[derive(Args, Debug, Clone)]
pub struct RepoArgs {
    /// The repository (any directory inside it).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Where loop keeps journals, worktrees and logs [default: <repo>/.loop]
    #[arg(long, value_name = "DIR", env = "LOOP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The root once found: a command asks for it and for the state dir, one git call is enough.
    #[arg(skip)]
    root: std::sync::OnceLock<PathBuf>,
}

impl RepoArgs {
    /// The repository root, made absolute.
    pub fn repo_root(&self) -> Result<PathBuf, CliError> {
        if let Some(root) = self.root.get() {
            return Ok(root.clone());
        }
        let dir = std::path::absolute(&self.repo).map_err(|e| CliError::io(&self.repo, e))?;
        if !dir.is_dir() {
            return Err(CliError::Usage(format!("--repo {}: no such directory", self.repo.display())));
        }
        let root = GitWorkspace::toplevel(&dir)?;
        Ok(self.root.get_or_init(|| root).clone())
    }

    /// The state dir. Read-only commands do not need a git repository, only the state dir.
    pub fn state(&self) -> Result<StateDir, CliError> {
        if let Some(s) = &self.state_dir {
            return Ok(StateDir::new(std::path::absolute(s).map_err(|e| CliError::io(s, e))?));
        }
        let root = match self.repo_root() {
            Ok(r) => r,
            Err(_) => std::path::absolute(&self.repo).map_err(|e| CliError::io(&self.repo, e))?,
        };
        Ok(StateDir::new(root.join(".loop")))
    }
}

/// The exit code for a finished or stopped run.
pub fn run_exit_code(view: &crate::journal::view::RunView, outcome: crate::engine::Outcome) -> ExitCode {
    if outcome == crate::engine::Outcome::Interrupted {
        return ExitCode::for_signal(crate::proc::cancel_signal());
    }
    if view.issues.iter().all(|i| matches!(i.state.stage, crate::machine::Stage::Done { .. })) {
        ExitCode::Ok
    } else {
        ExitCode::NotAllDone
    }
}

/// `LOOP_FAULT_AFTER_APPEND=N` (tests): abort right after the Nth record this process appends
/// to a journal is durable.
pub fn fault_after_append() -> Option<u64> {
    std::env::var("LOOP_FAULT_AFTER_APPEND").ok().and_then(|v| v.parse().ok())
}

/// The repository's worktrees, durable unless `LOOP_BENCH_NO_GIT_FSYNC` is set (`loop bench`).
pub fn git_workspace(repo: &std::path::Path) -> GitWorkspace {
    GitWorkspace::new(repo).with_durability(std::env::var_os("LOOP_BENCH_NO_GIT_FSYNC").is_none())
}

/// How the engine drives: `jobs` at once, the clock `LOOP_NOW` may fix, and the process's
/// cancellation token (set by the signal handler).
pub fn engine_settings(jobs: usize) -> crate::engine::Settings {
    crate::engine::Settings::new(jobs, crate::clock::Clock::from_env(), crate::proc::Cancel::process())
}

/// Where verification keeps its logs (`<state>/logs/<run>/<issue>/`) and its baseline
/// checkouts (`<state>/verify/<run>/`, removed after use).
pub fn verify_env(state: &StateDir, skip_setup: bool) -> crate::engine::VerifyEnv {
    crate::engine::VerifyEnv { logs_root: state.root.join("logs"), scratch_root: state.root.join("verify"), skip_setup }
}

/// SIGINT, SIGTERM and SIGHUP stop running phases and journal the interruption; a second one
/// exits at once (the journal is consistent after every append, so nothing is lost).
pub fn install_interrupt_handler() {
    crate::proc::install_signal_handlers();
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    use crate::render::style::{set_choice, ColorChoice};
    set_choice(match cli.color {
        ColorWhen::Auto => ColorChoice::Auto,
        ColorWhen::Always => ColorChoice::Always,
        ColorWhen::Never => ColorChoice::Never,
    });
    // Only commands that journal nothing may die of a closed pipe (see `crate::out`).
    if matches!(
        cli.command,
        Command::Plan(_)
            | Command::Replay(_)
            | Command::Status(_)
            | Command::Watch(_)
            | Command::Diff(_)
            | Command::Logs(_)
            | Command::Runs(_)
            | Command::Export(_)
            | Command::Completions(_)
            | Command::Config(_)
    ) {
        crate::out::die_on_closed_pipe();
    }
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Run(a) => run::run(*a),
        Command::Resume(a) => resume::run(a),
        Command::Retry(a) => retry::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Status(a) => status::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Logs(a) => logs::run(a),
        Command::Report(a) => report::run(a),
        Command::Runs(a) => runs::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Prompts(a) => prompts::run(a),
        Command::Clean(a) => clean::run(a),
        Command::Land(a) => land::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Init(a) => init::run(a),
        Command::Config(a) => config::run(*a),
        Command::Restate(a) => restate_cmd::run(a),
        Command::Worker(a) => worker::run(a),
        Command::Sync(a) => sync::run(a),
        Command::Hook { agent } if agent == "claude" => {
            crate::guard::shim::hook_claude(&mut std::io::stdin().lock())?;
            Ok(ExitCode::Ok)
        }
        Command::Hook { agent } => Err(CliError::Usage(format!("no hook for agent '{agent}' (known: claude)"))),
        Command::Shim { tool, args } => match crate::guard::policy::Tool::from_name(&tool) {
            Some(t) => match crate::guard::shim::run_shim(t, &args)? {},
            None => Err(CliError::Usage(format!("no shim for '{tool}' (known: git, gt)"))),
        },
    }
}
