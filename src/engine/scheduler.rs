//! The scheduler: which issues run, when, and how the run ends.
//!
//! Invariants:
//! - An issue starts once every dependency is terminal; up to `jobs` run at once, picked in
//!   plan order, so `--jobs 1` is the plan order exactly.
//! - A terminal issue whose worktree still needs its end (removal or keeping) is driven once
//!   more for that; otherwise it is settled and never driven again.
//! - Issues the run start carries over from earlier runs are journaled Done (`carried_over`)
//!   before any issue starts, so their dependents see them Done.
//! - Nothing new starts once the run is cancelled, stopped or failed; the run ends when no
//!   driver is left, with exactly one closing run record (`run_finished` or `run_interrupted`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::Scope;
use std::time::Duration;

use super::driver::{IssueDriver, Parts};
use super::writer::{lock, Handle, WriteReq, Writer};
use super::{EngineError, Observer, Outcome, Step};
use crate::journal::view::RunView;
use crate::journal::{Body, Journal, PlannedIssue};
use crate::machine::{Event, Stage};

/// How long the scheduler waits for a driver before it ticks the observer.
const TICK: Duration = Duration::from_millis(200);

/// What a worker reports when its issue is done (or stopped).
type Done = (String, Result<Step, EngineError>);

/// Starts the journal writer, schedules every issue, and closes the run.
pub(super) fn run(
    journal: Journal,
    view: RunView,
    observer: &mut dyn Observer,
    parts: &Parts<'_>,
    jobs: usize,
) -> Result<(Outcome, RunView), EngineError> {
    let order: Vec<PlannedIssue> = view.start.issues.clone();
    let shared = Arc::new(Mutex::new(view));
    let observer: Arc<Mutex<&mut dyn Observer>> = Arc::new(Mutex::new(observer));
    let (tx, rx) = mpsc::channel::<WriteReq>();
    let writer = Writer { journal, view: shared.clone(), observer: observer.clone(), failed: None };
    let outcome = std::thread::scope(|scope| -> Result<Outcome, EngineError> {
        // The handle (and its clones in workers) are the writer's only senders: when this
        // closure returns they are all gone and the writer's loop ends.
        let handle = Handle { tx, view: shared.clone(), halt: Arc::new(AtomicBool::new(false)) };
        scope.spawn(move || writer.serve(rx));
        let ended = match carry_over(&handle) {
            Ok(()) => Scheduler::new(order, jobs).run(scope, &handle, parts, &observer),
            Err(e) => Ended { failure: Some(e), stopped: false },
        };
        conclude(&handle, ended, parts)
    });
    // The writer ends when the last handle is gone; the scope joined it.
    let view = lock(&shared).clone();
    outcome.map(|o| (o, view))
}

/// Journals `carried_over` for each issue the run start carries over from an earlier run that
/// is still untouched (Pending, no worktree): at a new run's start, or at the resume of a run
/// whose start was cut short before they were all journaled.
fn carry_over(handle: &Handle) -> Result<(), EngineError> {
    let due: Vec<_> = {
        let view = handle.view();
        view.start
            .earlier
            .carried_over
            .iter()
            .filter(|c| view.state_of(&c.issue).is_some_and(|s| s.stage == Stage::Pending && s.worktree.is_none()))
            .cloned()
            .collect()
    };
    for c in due {
        handle.event(&c.issue, Event::CarriedOver { run: c.run, branch: c.branch, tip: c.tip }, None)?;
    }
    Ok(())
}

/// How the scheduling loop ended.
#[derive(Default)]
struct Ended {
    /// The first error a driver stopped with.
    failure: Option<EngineError>,
    /// A driver stopped for a cancellation.
    stopped: bool,
}

struct Scheduler {
    order: Vec<PlannedIssue>,
    jobs: usize,
    running: HashSet<String>,
    settled: HashSet<String>,
}

impl Scheduler {
    fn new(order: Vec<PlannedIssue>, jobs: usize) -> Scheduler {
        Scheduler { order, jobs: jobs.max(1), running: HashSet::new(), settled: HashSet::new() }
    }

    /// The issues to start now, in plan order, within the free slots. Terminal issues with
    /// nothing left to do are settled on the way.
    fn ready(&mut self, view: &RunView) -> Vec<PlannedIssue> {
        let mut out = Vec::new();
        for planned in &self.order {
            if self.running.len() + out.len() >= self.jobs {
                break;
            }
            if self.running.contains(planned.id.as_str()) || self.settled.contains(planned.id.as_str()) {
                continue;
            }
            let Some(iv) = view.issue(&planned.id) else { continue };
            let needs_cleanup = iv.worktree().is_some_and(|w| w.live());
            if iv.state.is_terminal() && !needs_cleanup {
                self.settled.insert(planned.id.to_string());
                continue;
            }
            let deps_ready = planned.blocked_by.iter().all(|d| view.state_of(d).is_none_or(|s| s.is_terminal()));
            if deps_ready {
                out.push(planned.clone());
            }
        }
        out
    }

    fn run<'scope, 'env>(
        mut self,
        scope: &'scope Scope<'scope, 'env>,
        handle: &Handle,
        parts: &'env Parts<'env>,
        observer: &Mutex<&mut dyn Observer>,
    ) -> Ended {
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut ended = Ended::default();
        loop {
            if !(parts.cancel.is_requested() || ended.stopped || ended.failure.is_some()) {
                let view = handle.view().clone();
                for planned in self.ready(&view) {
                    self.running.insert(planned.id.to_string());
                    let driver = IssueDriver::new(handle.clone(), parts);
                    let done_tx = done_tx.clone();
                    scope.spawn(move || {
                        let result = driver.drive_issue(&planned);
                        let _ = done_tx.send((planned.id.to_string(), result));
                    });
                }
            }
            if self.running.is_empty() {
                return ended;
            }
            match done_rx.recv_timeout(TICK) {
                Ok((id, result)) => self.finished(id, result, handle, &mut ended),
                Err(_) => {
                    // The writer takes the view, then the observer: the same order here.
                    let view = handle.view();
                    lock(observer).tick(&view);
                }
            }
        }
    }

    fn finished(&mut self, id: String, result: Result<Step, EngineError>, handle: &Handle, ended: &mut Ended) {
        self.running.remove(&id);
        match result {
            Ok(Step::Continue) => {
                self.settled.insert(id);
            }
            Ok(Step::Stop) => ended.stopped = true,
            Err(e) => {
                handle.halt.store(true, Ordering::SeqCst);
                ended.failure.get_or_insert(e);
            }
        }
    }
}

/// Closes the run: `run_interrupted` after an environment failure or a cancellation,
/// `run_finished` once every issue is terminal (and it was not journaled before).
fn conclude(handle: &Handle, ended: Ended, parts: &Parts<'_>) -> Result<Outcome, EngineError> {
    if let Some(e) = ended.failure {
        if let EngineError::Environment { issue, cause, .. } = &e {
            // Best effort: if the journal cannot take it, the issue's own record (or the
            // error itself) still tells why the run stopped.
            let _ = handle.run_record(Body::RunInterrupted { reason: format!("{issue}: {cause}") });
        }
        return Err(e);
    }
    if ended.stopped || parts.cancel.is_requested() {
        let reason = match parts.cancel.signal() {
            Some(libc::SIGTERM) => "interrupted by SIGTERM",
            Some(libc::SIGHUP) => "interrupted by SIGHUP",
            Some(libc::SIGINT) => "interrupted by SIGINT",
            _ => "interrupted by signal",
        };
        handle.run_record(Body::RunInterrupted { reason: reason.into() })?;
        return Ok(Outcome::Interrupted);
    }
    let finished = {
        let v = handle.view();
        v.finished || !v.all_terminal()
    };
    if !finished {
        handle.run_record(Body::RunFinished)?;
    }
    Ok(Outcome::Finished)
}
