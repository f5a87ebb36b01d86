//! The engine: drives each issue's machine in plan order and performs the effects (worktrees,
//! agents) that produce its events.
//!
//! Parts (each file one job):
//! - [`recorder`]: the journal-writing service the CLI uses before and after a drive (run
//!   start, resume, clean); together with [`writer`] the engine is the journal's only writer.
//! - [`writer`]: the single owner of the journal during a drive: decides each transition,
//!   appends in groups (one fsync per group), applies to the shared view, acknowledges.
//! - [`scheduler`]: the ready set (dependencies terminal, plan order, `--jobs`), and how the
//!   run ends (finished, interrupted, stopped by an error).
//! - [`driver`]: one issue: works out the next effect from its folded state
//!   ([`driver::next_effect`], the seam where another engine could drive the same machine) and
//!   performs it (worktree creation, phases, the worktree's end).
//! - [`phase`]: one agent phase as small named steps (request, before-phase hooks, agent,
//!   after-phase hooks, outcome, commit or review doc, budget).
//! - [`hooks`]: what the guard and the Graphite stack add around those steps.
//! - [`checks`]: loop's own verification of dev's and each fix's work (baseline, setup,
//!   checks), the machine's `verify` command.
//!
//! Invariants:
//! - Decide, journal, then act: every event is appended (durably) before the next effect starts,
//!   and the engine's idea of each state is the fold of its own journal ([`RunView`]), the same
//!   fold `status` and `replay` use.
//! - Finished phases are never re-run; a phase that started but has no result is run again
//!   (with a new `phase_started` attempt). Worktrees are created or adopted only under a
//!   journaled intent.
//! - A worktree an earlier process made is checked before this process acts in it
//!   ([`Workspace::check`]); a repair of loop's own leftovers is journaled as
//!   `worktree_repaired` and never ends the issue.
//! - Cancellation ([`Cancel`], set by the signal handler) is journaled as `interrupted` for
//!   the issue in flight and `run_interrupted` for the run.
//! - The engine reads no environment: clock, cancellation and every setting are passed in.
//! - loop's own troubles are not the issue's failure: an error whose [`crate::blame::Blame`]
//!   is the environment (full disk, I/O error…) is journaled the same way, with the cause as
//!   evidence, and stops the run ([`EngineError::Environment`], exit 1); the unfinished step is
//!   retried at resume. A journal append that fails stops the run too ([`EngineError::Append`]):
//!   nothing is appended after it, since the store's tail is unknown.

mod checks;
mod driver;
pub mod hooks;
pub mod land;
mod phase;
pub mod recorder;
pub mod remote;
mod scheduler;
mod writer;

#[cfg(test)]
mod tests;

use crate::agent::Agent;
use crate::blame::Blame;
use crate::clock::Clock;
use crate::journal::view::{Applied, Divergence, RunView};
use crate::journal::{JournalError, Record};
use crate::machine::IllegalTransition;
use crate::proc::Cancel;
use crate::workspace::Workspace;

pub use checks::VerifyEnv;
pub use hooks::{GuardHooks, Hooks, StackHooks};
pub use recorder::Recorder;
pub use writer::bench_group_commit;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("internal: {0}")]
    Illegal(#[from] IllegalTransition),
    /// Boxed: a divergence carries both stages and command lists, and every engine step
    /// returns this error.
    #[error("internal: the engine's own journal does not fold: {0}")]
    Divergence(Box<Divergence>),
    #[error("internal: this engine cannot carry out {0} yet")]
    Unsupported(String),
    #[error("internal: the journal writer stopped")]
    WriterGone,
    /// loop's own worktree is damaged beyond what loop repairs (the run stops, exit 1).
    #[error("worktree of {issue}: {source}")]
    Workspace { issue: String, source: crate::workspace::WorkspaceError },
    /// loop's environment failed at a step of `issue`; the run was stopped as interrupted.
    #[error(
        "{issue}: {cause} (loop's environment failed, not the issue: run {run_id} is interrupted; \
         fix the cause, then `loop resume {run_id}`)"
    )]
    Environment { run_id: String, issue: String, cause: String },
    /// The journal could not be written: an I/O error, never a sign of corruption.
    #[error(
        "appending to the journal failed, the run stops (`loop resume` continues from the last durable record): {0}"
    )]
    Append(String),
}

impl From<Divergence> for EngineError {
    fn from(d: Divergence) -> EngineError {
        EngineError::Divergence(Box::new(d))
    }
}

/// Why a step failed, and whether resuming could cure it.
struct Trouble {
    reason: String,
    blame: Blame,
}

impl Trouble {
    fn new(reason: String, blame: Blame) -> Trouble {
        Trouble { reason, blame }
    }
}

/// How a drive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every issue is terminal.
    Finished,
    /// Stopped by Ctrl-C; `loop resume` continues.
    Interrupted,
}

/// Receives every record right after it became durable (progress output, `--json-events`), and
/// a tick now and then so live displays can update elapsed times.
pub trait Observer: Send {
    fn record(&mut self, rec: &Record, applied: &Applied, view: &RunView);
    fn tick(&mut self, _view: &RunView) {}
}

/// An observer that shows nothing.
pub struct Silent;

impl Observer for Silent {
    fn record(&mut self, _: &Record, _: &Applied, _: &RunView) {}
}

/// Whether an issue's driver may go on with the run or the run must stop.
enum Step {
    Continue,
    Stop,
}

/// What the engine is driven with besides its collaborators; the CLI fills it in (from flags
/// and the environment), tests build it directly.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many issues may run at once (at least 1).
    pub jobs: usize,
    /// The journal's clock; when fixed (tests), commit dates follow it too.
    pub clock: Clock,
    /// Checked between steps; set by the signal handler ([`Cancel::process`]).
    pub cancel: Cancel,
    /// Where verification writes, and `--skip-setup`.
    pub verify: VerifyEnv,
}

impl Settings {
    pub fn new(jobs: usize, clock: Clock, cancel: Cancel) -> Settings {
        Settings { jobs: jobs.max(1), clock, cancel, verify: VerifyEnv::default() }
    }

    pub fn with_verify(self, verify: VerifyEnv) -> Settings {
        Settings { verify, ..self }
    }
}

/// Everything one drive needs; [`Engine::drive`] consumes it.
pub struct Engine<'a> {
    recorder: Recorder,
    /// The agent of dev, review and fix.
    agents: [&'a dyn Agent; 3],
    workspace: &'a dyn Workspace,
    observer: &'a mut dyn Observer,
    hooks: Vec<&'a dyn Hooks>,
    settings: Settings,
}

impl<'a> Engine<'a> {
    pub fn new(
        recorder: Recorder,
        agent: &'a dyn Agent,
        workspace: &'a dyn Workspace,
        observer: &'a mut dyn Observer,
        settings: Settings,
    ) -> Engine<'a> {
        let settings = Settings { jobs: settings.jobs.max(1), ..settings };
        Engine { recorder, agents: [agent; 3], workspace, observer, hooks: Vec::new(), settings }
    }

    /// Runs `phase` with `agent` instead of the one given to [`Engine::new`] (a backend per phase).
    pub fn phase_agent(mut self, phase: crate::machine::Phase, agent: &'a dyn Agent) -> Self {
        self.agents[driver::phase_index(phase)] = agent;
        self
    }

    /// Adds hooks around the engine's steps (guard, Graphite stack); called in the order added.
    pub fn hook(mut self, hooks: &'a dyn Hooks) -> Self {
        self.hooks.push(hooks);
        self
    }

    /// Runs every issue to a terminal state. An issue starts as soon as all its dependencies are
    /// terminal (it is Blocked at once if one of them is not Done); up to `jobs` run at a time,
    /// picked in plan order, so `--jobs 1` is the plan order exactly.
    pub fn drive(self) -> Result<(Outcome, RunView), EngineError> {
        let Engine { recorder, agents, workspace, observer, hooks, settings } = self;
        let (journal, view) = recorder.into_parts();
        let parts = driver::Parts::new(agents, workspace, &hooks, &settings);
        scheduler::run(journal, view, observer, &parts, settings.jobs)
    }
}
