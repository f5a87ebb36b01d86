//! The engine: drives each issue's machine in plan order and performs the effects (worktrees,
//! agents) that produce its events.
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
//! - Cancellation (Ctrl-C) is journaled as `interrupted` for the issue in flight and
//!   `run_interrupted` for the run.
//! - loop's own troubles are not the issue's failure: an error whose [`Blame`] is the
//!   environment (full disk, I/O error…) is journaled the same way, with the cause as evidence,
//!   and stops the run ([`EngineError::Environment`], exit 1); the unfinished step is retried at
//!   resume. A journal append that fails stops the run too ([`EngineError::Append`]): nothing is
//!   appended after it, since the store's tail is unknown.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::agent::{output, Agent, AgentError, PhaseRequest, Signal};
use crate::blame::Blame;
use crate::journal::view::{Applied, Divergence, RunView};
use crate::journal::{Body, Entry, Evidence, Fact, Journal, JournalError, PlannedIssue, Record};
use crate::machine::{self, Event, IllegalTransition, Phase, Stage, State};
use crate::proc;
use crate::reviewdoc;
use crate::workspace::{Removal, Workspace};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("internal: {0}")]
    Illegal(#[from] IllegalTransition),
    #[error("internal: the engine's own journal does not fold: {0}")]
    Divergence(#[from] Divergence),
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
    #[error("appending to the journal failed, the run stops (`loop resume` continues from the last durable record): {0}")]
    Append(String),
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

/// A request to the journal writer. Each waits for its own durable acknowledgement, so one
/// issue's events are never reordered; requests from different issues that arrive together are
/// committed as one group (one fsync).
type Reply = mpsc::Sender<Result<State, EngineError>>;

enum WriteReq {
    Issue { issue: String, event: Event, evidence: Option<Evidence>, reply: mpsc::Sender<Result<State, EngineError>> },
    Run { body: Body, reply: mpsc::Sender<Result<State, EngineError>> },
}

/// The single owner of the journal: decides each transition against the folded view, appends
/// the group durably, applies it to the shared view, and only then acknowledges.
struct Writer<'o> {
    journal: Journal,
    view: Arc<Mutex<RunView>>,
    observer: Arc<Mutex<&'o mut dyn Observer>>,
    /// Set by a failed append: the store's tail is unknown, so nothing more is appended.
    failed: Option<String>,
}

impl Writer<'_> {
    fn serve(mut self, rx: mpsc::Receiver<WriteReq>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<WriteReq>) {
        if let Some(why) = &self.failed {
            for req in batch {
                let (WriteReq::Issue { reply, .. } | WriteReq::Run { reply, .. }) = req;
                let _ = reply.send(Err(EngineError::Append(why.clone())));
            }
            return;
        }
        let rules = lock(&self.view).start.rules;
        let mut pending: Vec<(Body, Reply, State)> = Vec::new();
        // Decide every transition first, against the view plus the earlier members of the group.
        let mut scratch: std::collections::HashMap<String, State> = std::collections::HashMap::new();
        for req in batch {
            match req {
                WriteReq::Issue { issue, event, evidence, reply } => {
                    let from = scratch
                        .get(&issue)
                        .cloned()
                        .or_else(|| lock(&self.view).state_of(&issue).cloned())
                        .unwrap_or(State::PENDING);
                    match machine::transition(&from, &event, &rules) {
                        Ok((to, commands)) => {
                            scratch.insert(issue.clone(), to.clone());
                            let body = Body::Issue { issue, event, to: to.stage.clone(), commands: Some(commands), evidence };
                            pending.push((body, reply, to));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
                WriteReq::Run { body, reply } => pending.push((body, reply, State::PENDING)),
            }
        }
        if pending.is_empty() {
            return;
        }
        let bodies: Vec<Body> = pending.iter().map(|(b, _, _)| b.clone()).collect();
        match self.journal.append_group(bodies) {
            Ok(records) => {
                let mut view = lock(&self.view);
                let mut observer = lock(&self.observer);
                for (rec, (_, reply, to)) in records.iter().zip(pending) {
                    let result = view.apply(rec).map_err(EngineError::from);
                    if let Ok(applied) = &result {
                        observer.record(rec, applied, &view);
                    }
                    let _ = reply.send(result.map(|_| to));
                }
            }
            Err(e) => {
                // Every member of the group failed the same way: an I/O error, not corruption.
                let msg = e.to_string();
                for (_, reply, _) in pending {
                    let _ = reply.send(Err(EngineError::Append(msg.clone())));
                }
                self.failed = Some(msg);
            }
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking worker must not wedge the run: the data under the lock stays consistent
    // because every update is a complete fold step.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle to the writer, cheap to clone into each worker.
#[derive(Clone)]
struct Handle {
    tx: mpsc::Sender<WriteReq>,
    view: Arc<Mutex<RunView>>,
    /// Set when one issue stopped the run (environment, journal): the others stop at their next
    /// step, after the phase in flight, whose work is worth keeping.
    halt: Arc<AtomicBool>,
}

impl Handle {
    fn event(&self, issue: &str, event: Event, evidence: Option<Evidence>) -> Result<State, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(WriteReq::Issue { issue: issue.to_string(), event, evidence, reply })
            .map_err(|_| EngineError::WriterGone)?;
        rx.recv().map_err(|_| EngineError::WriterGone)?
    }

    fn run_record(&self, body: Body) -> Result<(), EngineError> {
        let (reply, rx) = mpsc::channel();
        self.tx.send(WriteReq::Run { body, reply }).map_err(|_| EngineError::WriterGone)?;
        rx.recv().map_err(|_| EngineError::WriterGone)?.map(|_| ())
    }

    fn view(&self) -> std::sync::MutexGuard<'_, RunView> {
        lock(&self.view)
    }
}

pub struct Engine<'a> {
    journal: Journal,
    view: RunView,
    agent: &'a dyn Agent,
    workspace: &'a dyn Workspace,
    observer: &'a mut dyn Observer,
    jobs: usize,
    guard: Option<&'a crate::guard::Guard>,
}

enum Step {
    Continue,
    Stop,
}

/// What a worker reports when its issue is done (or stopped).
type Done = (String, Result<Step, EngineError>);

impl<'a> Engine<'a> {
    pub fn new(
        journal: Journal,
        view: RunView,
        agent: &'a dyn Agent,
        workspace: &'a dyn Workspace,
        observer: &'a mut dyn Observer,
    ) -> Engine<'a> {
        Engine { journal, view, agent, workspace, observer, jobs: 1, guard: None }
    }

    /// Turns on the guardrails (README "Safety") for this drive.
    pub fn set_guard(&mut self, guard: &'a crate::guard::Guard) {
        self.guard = Some(guard);
    }

    /// How many issues may run at once.
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// Runs every issue to a terminal state. An issue starts as soon as all its dependencies are
    /// terminal (it is Blocked at once if one of them is not Done); up to `jobs` run at a time,
    /// picked in plan order, so `--jobs 1` is the plan order exactly.
    pub fn drive(self) -> Result<(Outcome, RunView), EngineError> {
        let Engine { journal, view, agent, workspace, observer, jobs, guard } = self;
        let order: Vec<PlannedIssue> = view.start.issues.clone();
        let shared = Arc::new(Mutex::new(view));
        let observer: Arc<Mutex<&mut dyn Observer>> = Arc::new(Mutex::new(observer));
        let (tx, rx) = mpsc::channel::<WriteReq>();
        let clock_fixed = std::env::var_os("LOOP_NOW").is_some();
        let writer = Writer { journal, view: shared.clone(), observer: observer.clone(), failed: None };

        let outcome = std::thread::scope(|scope| -> Result<Outcome, EngineError> {
            // The handle (and its clones in workers) are the writer's only senders: when this
            // closure returns they are all gone and the writer's loop ends.
            let handle = Handle { tx, view: shared.clone(), halt: Arc::new(AtomicBool::new(false)) };
            scope.spawn(move || writer.serve(rx));
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            let mut running: HashSet<String> = HashSet::new();
            let mut settled: HashSet<String> = HashSet::new();
            let mut failure: Option<EngineError> = None;
            let mut stopped = false;
            loop {
                let cancelled = proc::is_cancelled() || stopped || failure.is_some();
                if !cancelled {
                    let view = handle.view().clone();
                    for planned in &order {
                        if running.len() >= jobs {
                            break;
                        }
                        if running.contains(&planned.id) || settled.contains(&planned.id) {
                            continue;
                        }
                        let Some(iv) = view.issue(&planned.id) else { continue };
                        let needs_cleanup = iv.worktree().is_some_and(|w| w.live());
                        if iv.state.is_terminal() && !needs_cleanup {
                            settled.insert(planned.id.clone());
                            continue;
                        }
                        let deps_ready = planned
                            .blocked_by
                            .iter()
                            .all(|d| view.state_of(d).is_none_or(|s| s.is_terminal()));
                        if !deps_ready {
                            continue;
                        }
                        running.insert(planned.id.clone());
                        let driver = IssueDriver { handle: handle.clone(), agent, workspace, clock_fixed, guard };
                        let done_tx = done_tx.clone();
                        let planned = planned.clone();
                        scope.spawn(move || {
                            let result = driver.drive_issue(&planned);
                            let _ = done_tx.send((planned.id.clone(), result));
                        });
                    }
                }
                if running.is_empty() {
                    break;
                }
                match done_rx.recv_timeout(Duration::from_millis(200)) {
                    Ok((id, result)) => {
                        running.remove(&id);
                        match result {
                            Ok(Step::Continue) => {
                                settled.insert(id);
                            }
                            Ok(Step::Stop) => stopped = true,
                            Err(e) => {
                                handle.halt.store(true, Ordering::SeqCst);
                                failure.get_or_insert(e);
                            }
                        }
                    }
                    Err(_) => {
                        let view = handle.view();
                        lock(&observer).tick(&view);
                    }
                }
            }
            if let Some(e) = failure {
                if let EngineError::Environment { issue, cause, .. } = &e {
                    // Best effort: if the journal cannot take it, the issue's own record (or the
                    // error itself) still tells why the run stopped.
                    let _ = handle.run_record(Body::RunInterrupted { reason: format!("{issue}: {cause}") });
                }
                return Err(e);
            }
            if stopped || proc::is_cancelled() {
                let reason = match proc::cancel_signal() {
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
        });
        // The writer ends when the last handle is gone; the scope joined it.
        let view = lock(&shared).clone();
        outcome.map(|o| (o, view))
    }
}

/// Drives one issue: decides events, sends them to the writer, waits until each is durable,
/// and only then performs the next effect.
struct IssueDriver<'a> {
    handle: Handle,
    agent: &'a dyn Agent,
    workspace: &'a dyn Workspace,
    clock_fixed: bool,
    guard: Option<&'a crate::guard::Guard>,
}

impl IssueDriver<'_> {
    fn event(&self, issue: &str, event: Event, evidence: Option<Evidence>) -> Result<State, EngineError> {
        self.handle.event(issue, event, evidence)
    }

    fn state(&self, id: &str) -> State {
        self.handle.view().state_of(id).cloned().unwrap_or(State::PENDING)
    }

    /// Journals an audit fact about the issue (no machine event).
    fn audit(&self, id: &str, fact: Fact, evidence: Option<Evidence>) -> Result<(), EngineError> {
        self.handle.run_record(Body::Audit { issue: id.to_string(), fact, evidence })
    }

    /// Journals what the guard reported: a machine event or an audit fact.
    fn note(&self, id: &str, entry: Entry) -> Result<(), EngineError> {
        match entry {
            Entry::Machine(e) => self.event(id, e, None).map(|_| ()),
            Entry::Audit(f) => self.audit(id, f, None),
        }
    }

    /// loop's environment failed at this step: journal the issue's interruption with the cause
    /// (and whatever evidence the step had, tokens included) and stop the run. The step stays
    /// unfinished, so resume retries it. A terminal issue (its worktree's removal failed) takes
    /// no event; the run's `run_interrupted` carries the cause.
    fn stop_for_environment(&self, id: &str, cause: String, evidence: Option<Evidence>) -> Result<Step, EngineError> {
        let mut cause = cause;
        if !self.state(id).is_terminal() {
            let mut evidence = evidence.unwrap_or_default();
            evidence.note = Some(match evidence.note.take() {
                Some(n) => format!("{cause}; {n}"),
                None => cause.clone(),
            });
            // The same full disk often holds the journal: the first cause is the one to report.
            if let Err(e) = self.audit(id, Fact::Interrupted, Some(evidence)) {
                cause = format!("{cause}; the journal could not record it either: {e}");
            }
        }
        let run_id = self.handle.view().run_id.clone();
        Err(EngineError::Environment { run_id, issue: id.to_string(), cause })
    }

    fn drive_issue(&self, planned: &PlannedIssue) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        let mut started_here = false;
        self.check_worktree(planned)?;
        loop {
            let state = self.state(id);
            if state.is_terminal() {
                self.finish_worktree(planned)?;
                return Ok(Step::Continue);
            }
            if proc::is_cancelled() || self.handle.halt.load(Ordering::SeqCst) {
                self.audit(id, Fact::Interrupted, None)?;
                return Ok(Step::Stop);
            }
            match &state.stage {
                Stage::Pending => {
                    if let Step::Stop = self.prepare(planned)? {
                        return Ok(Step::Stop);
                    }
                }
                Stage::WorktreeReady => {
                    self.event(id, Event::PhaseStarted { phase: Phase::Dev, attempt: 1 }, None)?;
                    started_here = true;
                }
                Stage::Dev | Stage::Review { .. } | Stage::Fix { .. } => {
                    let phase = state.phase().expect("a phase state");
                    if !started_here {
                        let attempt = self.handle.view().issue(id).map(|v| v.state.attempts).unwrap_or(0) + 1;
                        self.event(id, Event::PhaseStarted { phase, attempt }, None)?;
                    }
                    started_here = false;
                    if let Step::Stop = self.run_phase(planned, &state, phase)? {
                        self.audit(id, Fact::Interrupted, None)?;
                        return Ok(Step::Stop);
                    }
                }
                Stage::Done { .. } | Stage::Capped { .. } | Stage::Blocked { .. } | Stage::Failed { .. } => {
                    unreachable!("terminal states return above")
                }
            }
        }
    }

    /// Before this process first acts in a worktree an earlier process made (a phase to run, or
    /// the removal after Done/Capped): have the workspace check it and repair what loop's own
    /// interrupted git left, and journal the repair. Worktrees loop no longer acts in (kept,
    /// removed, Failed/Blocked) are not looked at.
    fn check_worktree(&self, planned: &PlannedIssue) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        let Some(iv) = self.handle.view().issue(id).cloned() else { return Ok(()) };
        let Some(wt) = iv.worktree().cloned() else { return Ok(()) };
        if !wt.live() {
            return Ok(());
        }
        let finishing = matches!(iv.state.stage, Stage::Done { .. } | Stage::Capped { .. });
        if iv.state.is_terminal() && !finishing {
            return Ok(());
        }
        let commit = iv.commit.clone().unwrap_or_else(|| wt.base.clone());
        let checked = self
            .workspace
            .check(Path::new(&wt.path), &wt.branch, &commit, finishing)
            .map_err(|source| EngineError::Workspace { issue: id.to_string(), source })?;
        if !checked.repairs.is_empty() {
            let body = Body::WorktreeRepaired { issue: id.to_string(), path: wt.path.clone(), repairs: checked.repairs };
            self.handle.run_record(body)?;
        }
        if checked.removed {
            self.event(id, Event::WorktreeRemoved { path: wt.path }, None)?;
        }
        Ok(())
    }

    /// Pending: check dependencies, then create (or adopt) the worktree.
    fn prepare(&self, planned: &PlannedIssue) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        let not_done = {
            let view = self.handle.view();
            planned.blocked_by.iter().find_map(|dep| match view.state_of(dep).map(|s| &s.stage) {
                Some(Stage::Done { .. }) | None => None,
                Some(s) => Some((dep.clone(), s.kind())),
            })
        };
        if let Some((dependency, dependency_state)) = not_done {
            self.event(id, Event::DependencyNotDone { dependency, dependency_state }, None)?;
            return Ok(Step::Continue);
        }
        let existing = self.handle.view().issue(id).and_then(|v| v.worktree().cloned());
        let (path, branch, base, adopt) = match existing {
            Some(wt) if wt.intended() => (wt.path, wt.branch, wt.base, true),
            _ => {
                let base = match self.base_for(planned) {
                    Ok(b) => b,
                    Err(t) if t.blame.is_environment() => return self.stop_for_environment(id, t.reason, None),
                    Err(t) => {
                        self.event(id, Event::WorktreeFailed { reason: t.reason }, None)?;
                        return Ok(Step::Continue);
                    }
                };
                let (path, branch) = (planned.worktree.clone(), planned.branch.clone());
                let intent = Event::WorktreeIntent { path: path.clone(), branch: branch.clone(), base: base.clone() };
                self.event(id, intent, None)?;
                (path, branch, base, false)
            }
        };
        match self.workspace.create(Path::new(&path), &branch, &base, adopt) {
            Ok(repairs) => {
                if !repairs.is_empty() {
                    self.handle.run_record(Body::WorktreeRepaired { issue: id.to_string(), path: path.clone(), repairs })?;
                }
                let note = adopt.then(|| "adopted the worktree of an interrupted attempt".to_string());
                let evidence = note.map(|n| Evidence { note: Some(n), ..Default::default() });
                self.event(id, Event::WorktreeCreated { path, branch, base }, evidence)?;
                // guard: Graphite stack tracking (--stack graphite)
                if let Some(g) = self.guard {
                    let tracked = g.after_worktree_created(planned, &self.handle.view());
                    if let Some(e) = tracked {
                        self.note(id, e)?;
                    }
                }
            }
            Err(e) if e.blame().is_environment() => return self.stop_for_environment(id, format!("worktree: {e}"), None),
            Err(e) => {
                self.event(id, Event::WorktreeFailed { reason: format!("worktree: {e}") }, None)?;
            }
        }
        Ok(Step::Continue)
    }

    /// An issue with exactly one dependency builds on that dependency's branch, so its work is
    /// there; otherwise it starts from the run's base commit.
    fn base_for(&self, planned: &PlannedIssue) -> Result<String, Trouble> {
        let (dep_branch, base_commit) = {
            let view = self.handle.view();
            let dep_branch = match planned.blocked_by.as_slice() {
                [dep] => view.start.issues.iter().find(|p| &p.id == dep).map(|p| p.branch.clone()),
                _ => None,
            };
            (dep_branch, view.start.base_commit.clone())
        };
        if let Some(branch) = dep_branch {
            match self.workspace.branch_tip(&branch) {
                Ok(Some(tip)) => return Ok(tip),
                Ok(None) => {}
                Err(e) => return Err(Trouble::new(format!("reading branch {branch}: {e}"), e.blame())),
            }
        }
        Ok(base_commit)
    }

    fn run_phase(&self, planned: &PlannedIssue, state: &State, phase: Phase) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        let (issue_view, run_id, milestone, timeout_secs, budget) = {
            let view = self.handle.view();
            (
                view.issue(id).cloned().expect("planned issue has a view"),
                view.run_id.clone(),
                view.start.milestone.clone(),
                view.start.phase_timeout_secs,
                view.start.max_tokens_per_issue,
            )
        };
        let worktree: PathBuf =
            issue_view.worktree().map(|w| PathBuf::from(&w.path)).unwrap_or_else(|| planned.worktree.clone().into());
        let cycle = state.stage.cycle();
        let req = PhaseRequest {
            run_id: run_id.clone(),
            milestone,
            issue: planned.clone(),
            phase,
            cycle,
            attempt: issue_view.state.attempts.max(1),
            worktree: worktree.clone(),
            last_review: issue_view.last_review.clone(),
            resume_session: issue_view.state.session.clone(),
            timeout: Duration::from_secs(timeout_secs),
            env: Vec::new(),
        };
        let mut req = req;
        // guard: before-phase check (journaled); shims for the agent's shell
        let guard_before = match self.guard {
            Some(g) => {
                let before = g.before_phase(planned, &worktree, phase, &self.handle.view());
                let failed = matches!(before.entry, Entry::Machine(_));
                self.note(id, before.entry)?;
                if failed {
                    return Ok(Step::Continue);
                }
                req.env = before.env;
                before.snapshot.map(|snap| (snap, before.relay))
            }
            None => None,
        };
        let agent = self.agent;
        let mut journal_failure: Option<EngineError> = None;
        // Each agent process group is journaled as soon as it exists, so a resume after loop
        // was killed can find and kill it.
        let spawn_failure: Arc<Mutex<Option<EngineError>>> = Arc::new(Mutex::new(None));
        let hook = {
            let (handle, issue, failure) = (self.handle.clone(), id.to_string(), spawn_failure.clone());
            move |spawned: proc::Spawned| {
                let body = Body::ProcessGroup { issue: issue.clone(), phase, pgid: spawned.pgid, start_time: spawned.start_time };
                if let Err(e) = handle.run_record(body) {
                    lock(&failure).get_or_insert(e);
                }
            }
        };
        let result = proc::observe_spawns(hook, || {
            agent.run(&req, &mut |signal| match signal {
                Signal::SessionStarted { session } => {
                    if journal_failure.is_none() {
                        if let Err(e) = self.event(id, Event::SessionStarted { phase, session }, None) {
                            journal_failure = Some(e);
                        }
                    }
                }
            })
        });
        if let Some(e) = journal_failure.or_else(|| lock(&spawn_failure).take()) {
            return Err(e);
        }
        // guard: shim decisions, then the after-phase check (a violation fails the phase)
        if let (Some(g), Some((before, relay))) = (self.guard, guard_before) {
            // Interrupted: the relay still drains into the decisions file when dropped, and
            // the phase's next attempt folds those lines in.
            if !matches!(result, Err(AgentError::Interrupted { .. })) {
                let (decisions, violation) = g.after_phase(planned, &worktree, phase, &before, relay);
                for d in decisions {
                    self.audit(id, d, None)?;
                }
                if let Some(v) = violation {
                    self.event(id, v, None)?;
                    return Ok(Step::Continue);
                }
            }
        }
        let reply = match result {
            Ok(r) => r,
            Err(AgentError::Interrupted { .. }) => return Ok(Step::Stop),
            Err(e) => {
                if proc::is_cancelled() {
                    return Ok(Step::Stop);
                }
                if e.blame().is_environment() {
                    return self.stop_for_environment(id, e.to_string(), None);
                }
                let exit_code = match &e {
                    AgentError::Crashed { exit_code, .. } => *exit_code,
                    _ => None,
                };
                let evidence = Evidence { exit_code, note: Some(e.to_string()), ..Default::default() };
                self.event(id, Event::PhaseFailed { phase, reason: e.to_string() }, Some(evidence))?;
                return Ok(Step::Continue);
            }
        };
        let mut evidence = Evidence {
            exit_code: reply.exit_code,
            duration_ms: reply.duration.as_millis() as u64,
            output: Some(reply.output.clone()),
            session: reply.session.clone(),
            tokens: reply.tokens,
            commit: None,
            note: reply.note.clone(),
        };
        let event = match phase {
            Phase::Dev | Phase::Fix => match output::parse_work(phase, &reply.output) {
                Ok(out) => {
                    let what = if phase == Phase::Dev { "dev".to_string() } else { format!("fix cycle {cycle}") };
                    let message = format!("{id}: {what}\n\nCommitted by loop (run {run_id}).");
                    match symlinked_git_file(&worktree) {
                        Some(changes) => Event::GuardViolation { phase, changes },
                        None => match self.commit(&worktree, &message, &mut evidence) {
                            Ok(Some(c)) => {
                                evidence.commit = Some(c);
                                Event::WorkFinished { phase, status: out.status }
                            }
                            Ok(None) => {
                                let nothing = "the agent changed nothing".to_string();
                                evidence.note = Some(match evidence.note.take() {
                                    Some(n) => format!("{nothing}; {n}"),
                                    None => nothing,
                                });
                                Event::WorkFinished { phase, status: out.status }
                            }
                            Err(e) if e.blame().is_environment() => {
                                return self.stop_for_environment(id, format!("committing the agent's changes: {e}"), Some(evidence));
                            }
                            Err(e) => Event::PhaseFailed { phase, reason: format!("committing the agent's changes: {e}") },
                        },
                    }
                }
                Err(e) => Event::PhaseFailed { phase, reason: e.to_string() },
            },
            Phase::Review => match output::parse_review(&reply.output) {
                Ok(out) => match self.write_review_doc(planned, &worktree, cycle, &out, &mut evidence) {
                    Ok(()) => Event::ReviewFinished { verdict: out.status },
                    Err(ReviewDocFailure::Symlink(changes)) => Event::GuardViolation { phase, changes },
                    Err(ReviewDocFailure::Other(t)) if t.blame.is_environment() => return self.stop_for_environment(id, t.reason, Some(evidence)),
                    Err(ReviewDocFailure::Other(t)) => Event::PhaseFailed { phase, reason: t.reason },
                },
                Err(e) => Event::PhaseFailed { phase, reason: e.to_string() },
            },
        };
        let used = issue_view.tokens + reply.tokens.map(|t| t.total()).unwrap_or(0);
        let now = self.event(id, event, Some(evidence))?;
        if let Some(limit) = budget {
            if used > limit && !now.is_terminal() {
                self.event(id, Event::BudgetExceeded { used, limit }, None)?;
            }
        }
        Ok(Step::Continue)
    }

    /// After a review validated: loop itself appends it to the milestone's review doc in the
    /// worktree and commits that, recording where in the evidence (the agent's output stays verbatim).
    fn write_review_doc(
        &self,
        planned: &PlannedIssue,
        worktree: &Path,
        fix_cycles: u32,
        review: &output::ReviewOutput,
        evidence: &mut Evidence,
    ) -> Result<(), ReviewDocFailure> {
        let (enabled, milestone, run_id) = {
            let view = self.handle.view();
            (view.start.review_doc, view.start.milestone.clone(), view.run_id.clone())
        };
        if !enabled {
            return Ok(());
        }
        let rel = reviewdoc::doc_path(&planned.doc, &milestone);
        let entry = reviewdoc::Entry {
            run_id: &run_id,
            issue: &planned.id,
            review: fix_cycles + 1,
            fix_cycles,
            result: review,
        };
        reviewdoc::write(worktree, &rel, &milestone, &entry).map_err(|e| match e.is_symlink() {
            true => ReviewDocFailure::Symlink(vec![e.to_string()]),
            false => ReviewDocFailure::Other(Trouble::new(e.to_string(), e.blame())),
        })?;
        if let Some(changes) = symlinked_git_file(worktree) {
            return Err(ReviewDocFailure::Symlink(changes));
        }
        let message = format!(
            "{}: review {} ({})\n\nReview entry appended by loop (run {}).",
            planned.id,
            fix_cycles + 1,
            serde_json::to_value(review.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            run_id
        );
        let commit = self
            .commit(worktree, &message, evidence)
            .map_err(|e| ReviewDocFailure::Other(Trouble::new(format!("committing the review doc {rel}: {e}"), e.blame())))?;
        evidence.commit = commit;
        let written = format!("review_doc_path={rel}; review_entry_written=true");
        evidence.note = Some(match evidence.note.take() {
            Some(n) => format!("{written}; {n}"),
            None => written,
        });
        Ok(())
    }

    /// Commits everything in the worktree for the agent: through gt with `--stack graphite`
    /// (noted in the evidence), else with git.
    fn commit(&self, worktree: &Path, message: &str, evidence: &mut Evidence) -> Result<Option<String>, crate::workspace::WorkspaceError> {
        let date = self.journal_clock_date();
        match self.guard.and_then(|g| g.stack_commit(worktree, message, date.as_deref(), self.workspace)) {
            Some(result) => {
                let how = "committed with `gt modify --commit --all`".to_string();
                evidence.note = Some(match evidence.note.take() {
                    Some(n) => format!("{how}; {n}"),
                    None => how,
                });
                result
            }
            None => self.workspace.commit_all(worktree, message, date.as_deref()),
        }
    }

    /// Commit dates follow the journal's clock, so a fixed test clock gives fixed commit ids.
    fn journal_clock_date(&self) -> Option<String> {
        self.clock_fixed.then(|| crate::clock::Clock::from_env().now().format("%Y-%m-%dT%H:%M:%S+0000").to_string())
    }

    /// After an issue ends: Done and Capped worktrees are removed when nothing would be lost;
    /// any other worktree is kept for inspection. Done once per issue.
    fn finish_worktree(&self, planned: &PlannedIssue) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        let Some(iv) = self.handle.view().issue(id).cloned() else { return Ok(()) };
        let Some(wt) = iv.worktree().cloned() else { return Ok(()) };
        if !wt.live() {
            return Ok(());
        }
        let path = wt.path.clone();
        // guard: draft submission at Done (--submit draft)
        if let (Some(g), Stage::Done { .. }) = (self.guard, &iv.state.stage) {
            if let Some(f) = g.at_done(planned, Path::new(&path)) {
                self.audit(id, f, None)?;
            }
        }
        let event = match &iv.state.stage {
            Stage::Done { .. } | Stage::Capped { .. } => {
                match self.workspace.remove(Path::new(&path), &wt.branch) {
                    Ok(Removal::Removed) | Ok(Removal::AlreadyGone) => Event::WorktreeRemoved { path },
                    Ok(Removal::Finished(repair)) => {
                        let body = Body::WorktreeRepaired { issue: id.to_string(), path: path.clone(), repairs: vec![repair] };
                        self.handle.run_record(body)?;
                        Event::WorktreeRemoved { path }
                    }
                    Ok(Removal::Kept(reason)) => Event::WorktreeKept { path, reason },
                    Err(e) if e.blame().is_environment() => {
                        return self.stop_for_environment(id, format!("removing the worktree {path}: {e}"), None).map(|_| ());
                    }
                    Err(e) => Event::WorktreeKept { path, reason: format!("removal failed: {e}") },
                }
            }
            other => Event::WorktreeKept { path, reason: format!("issue ended {}; kept for inspection", other.name()) },
        };
        self.event(id, event, None)?;
        Ok(())
    }
}

/// Why loop's review entry could not be written and committed.
enum ReviewDocFailure {
    /// A symlink on the way: the worktree tried to steer loop's write outside (a guard violation).
    Symlink(Vec<String>),
    Other(Trouble),
}

/// loop commits with `git -C <worktree>`, which follows the worktree's `.git` to wherever it
/// points: a symlink there would have loop write objects and refs into another repository.
fn symlinked_git_file(worktree: &Path) -> Option<Vec<String>> {
    match crate::safefs::check(worktree, Path::new(".git")) {
        Err(e) if e.is_symlink() => Some(vec![format!("committing: {e}")]),
        _ => None,
    }
}

struct Silent;
impl Observer for Silent {
    fn record(&mut self, _: &Record, _: &Applied, _: &RunView) {}
}

/// Drives the journal writer exactly as a parallel run does, with `writers` threads each
/// appending `per_writer` records for its own issue (`interrupted` audit records, which move
/// no state), and returns how long it took. Used by `loop bench`.
pub fn bench_group_commit(
    journal: Journal,
    view: RunView,
    writers: usize,
    per_writer: usize,
) -> Result<Duration, EngineError> {
    let ids: Vec<String> = view.start.issues.iter().take(writers).map(|p| p.id.clone()).collect();
    let shared = Arc::new(Mutex::new(view));
    let mut silent = Silent;
    let observer: Arc<Mutex<&mut dyn Observer>> = Arc::new(Mutex::new(&mut silent));
    let (tx, rx) = mpsc::channel::<WriteReq>();
    let writer = Writer { journal, view: shared.clone(), observer, failed: None };
    let start = std::time::Instant::now();
    std::thread::scope(|scope| -> Result<(), EngineError> {
        let handle = Handle { tx, view: shared.clone(), halt: Arc::new(AtomicBool::new(false)) };
        scope.spawn(move || writer.serve(rx));
        let workers: Vec<_> = ids
            .iter()
            .map(|id| {
                let h = handle.clone();
                scope.spawn(move || -> Result<(), EngineError> {
                    for _ in 0..per_writer {
                        let body = Body::Audit { issue: id.clone(), fact: Fact::Interrupted, evidence: None };
                        h.run_record(body)?;
                    }
                    Ok(())
                })
            })
            .collect();
        drop(handle);
        for w in workers {
            w.join().map_err(|_| EngineError::WriterGone)??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{AgentSpec, RunStart, StoreError};
    use crate::machine::Rules;

    /// Takes the first `ok` appends, then fails every one with ENOSPC, counting the attempts.
    struct FullDisk {
        ok: usize,
        attempts: Arc<Mutex<usize>>,
    }

    impl crate::journal::Store for FullDisk {
        fn append(&mut self, _: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
            let mut n = lock(&self.attempts);
            *n += 1;
            if *n <= self.ok {
                return Ok(());
            }
            Err(StoreError::Io { path: "journal".into(), source: std::io::Error::from_raw_os_error(libc::ENOSPC) })
        }
        fn scan(&self, _: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn issue_req(id: &str) -> (WriteReq, mpsc::Receiver<Result<State, EngineError>>) {
        let (reply, rx) = mpsc::channel();
        let body = Body::Audit { issue: id.into(), fact: Fact::Interrupted, evidence: None };
        (WriteReq::Run { body, reply }, rx)
    }

    #[test]
    fn a_failed_group_append_is_an_io_error_for_every_member_and_nothing_is_appended_after() {
        let attempts = Arc::new(Mutex::new(0));
        let store = FullDisk { ok: 1, attempts: attempts.clone() };
        let mut journal = Journal::create(Box::new(store), "r", crate::clock::Clock::from_env());
        let issues = ["A", "B"].map(|id| PlannedIssue {
            id: id.into(),
            title: id.into(),
            doc: format!("docs/projects/p/issues/{id}.md"),
            blocked_by: vec![],
            branch: format!("loop/M/{id}"),
            worktree: format!("/w/{id}"),
        });
        let first = journal
            .append(Body::RunStarted(RunStart {
                tool_version: "t".into(),
                milestone: "M".into(),
                repo: "/repo".into(),
                base_commit: "0".repeat(40),
                rules: Rules::default(),
                agent: AgentSpec { kind: "sim".into(), scenario: None, settings: None },
                phase_timeout_secs: 60,
                max_tokens_per_issue: None,
                review_doc: false,
                issues: issues.to_vec(),
                guard: None,
            }))
            .unwrap();
        let view = Arc::new(Mutex::new(RunView::new(&first).unwrap()));
        let mut silent = Silent;
        let observer: Arc<Mutex<&mut dyn Observer>> = Arc::new(Mutex::new(&mut silent));
        let mut writer = Writer { journal, view: view.clone(), observer, failed: None };

        let (a, a_rx) = issue_req("A");
        let (b, b_rx) = issue_req("B");
        writer.commit(vec![a, b]);
        for rx in [a_rx, b_rx] {
            match rx.recv().unwrap() {
                Err(EngineError::Append(msg)) => assert!(msg.contains("No space left on device"), "{msg}"),
                other => panic!("a failed append must be an I/O error for every member, got {other:?}"),
            }
        }
        // The store's tail is unknown after a failed write: nothing more goes to it.
        let (c, c_rx) = issue_req("A");
        writer.commit(vec![c]);
        assert!(matches!(c_rx.recv().unwrap(), Err(EngineError::Append(_))));
        assert_eq!(*lock(&attempts), 2, "one successful append, one failed, none after");
        assert_eq!(lock(&view).records, 1, "nothing was applied");
    }
}
