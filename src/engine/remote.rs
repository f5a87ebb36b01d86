//! One command of one issue, carried out in this process for a driver elsewhere: the seam a
//! durable engine (Restate's workflows, `crate::restate`) drives the same machine through.
//!
//! The far driver owns the issue's state and decides every transition; it sends a command
//! here. This process folds the run's records as the far driver journaled them into a
//! private, in-memory journal, performs the command with the local engine's own steps (the
//! same `perform` a local drive uses: worktree, phase pipeline, hooks, verification), and
//! reports the records that journal gained. The far driver re-decides each of their events
//! with [`crate::machine::transition`] before anything is applied.
//!
//! Invariants:
//! - Nothing is written to the clone's state dir's journals: the records live only in memory
//!   until the far driver accepts them.
//! - The far driver's command is performed, then only the commands the caller's `more` accepts,
//!   each taken as a local drive takes its next command; which ones and where they began is
//!   reported, so the far driver can check it would have issued the same. A cancellation stops
//!   the job like a local drive's (the phase's process group is killed) and none of it counts
//!   as done.

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};

use super::driver::{IssueDriver, Parts};
use super::writer::{Handle, WriteReq, Writer};
use super::{Engine, EngineError, Outcome, Recorder, Step};
use crate::clock::Clock;
use crate::journal::view::RunView;
use crate::journal::{Body, Journal, MemStore};
use crate::machine::Command;

/// A recorder over an in-memory journal holding `bodies` (the run's records so far, `run_started`
/// first), folded.
pub fn seeded(run_id: &str, clock: Clock, bodies: Vec<Body>) -> Result<Recorder, EngineError> {
    let mut journal = Journal::create(Box::new(MemStore::default()), run_id, clock);
    let records = journal.append_group(bodies)?;
    let view = RunView::fold(&records)?;
    Ok(Recorder::from_view(journal, view))
}

impl Engine<'_> {
    /// Performs `command` for `issue` (`queued`: the commands the far driver holds after it),
    /// then, while `more` accepts it, each command the machine asks for next; returns whether
    /// the job finished or was interrupted. The records journaled reach the observer as in a
    /// drive.
    pub fn perform(
        self,
        issue: &str,
        command: Command,
        queued: Vec<Command>,
        more: &dyn Fn(&Command) -> bool,
    ) -> Result<Performed, EngineError> {
        let Engine { recorder, agents, workspace, observer, hooks, settings } = self;
        let (journal, view) = recorder.into_parts();
        let Some(planned) = view.start.issues.iter().find(|p| p.id.as_str() == issue).cloned() else {
            return Err(EngineError::Unsupported(format!("issue {issue} is not in run {}", view.run_id)));
        };
        let parts = Parts::new(agents, workspace, &hooks, &settings);
        let shared = Arc::new(Mutex::new(view));
        let observer: Arc<Mutex<&mut dyn super::Observer>> = Arc::new(Mutex::new(observer));
        let (tx, rx) = mpsc::channel::<WriteReq>();
        let writer = Writer { journal, view: shared.clone(), observer, failed: None };
        let step = std::thread::scope(|scope| {
            // The driver holds the only sender: when it is dropped the writer's loop ends.
            let handle = Handle { tx, view: shared.clone(), halt: Arc::new(AtomicBool::new(false)) };
            scope.spawn(move || writer.serve(rx));
            // No grouping of an event with the `phase_started` it leads to: the far driver must
            // see each command it would take, `start_phase` included, where it began.
            let driver = IssueDriver::new(handle, &parts).one_command();
            driver.perform_chain(&planned, command, queued, more)
        })?;
        let (step, chained) = step;
        let outcome = match step {
            Some(Step::Stop) => Outcome::Interrupted,
            _ => Outcome::Finished,
        };
        Ok(Performed { outcome, chained })
    }
}

/// What [`Engine::perform`] did.
pub struct Performed {
    pub outcome: Outcome,
    /// Each command carried out after the first, with how many of the job's records were
    /// journaled before it: the far driver takes the same commands at the same points, or
    /// the worker's code is not its own.
    pub chained: Vec<(Command, u64)>,
}
