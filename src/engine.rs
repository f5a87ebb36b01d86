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
//! - Cancellation (Ctrl-C) is journaled as `interrupted` for the issue in flight and
//!   `run_interrupted` for the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::{output, Agent, AgentError, PhaseRequest, Signal};
use crate::journal::view::{Applied, Divergence, RunView};
use crate::journal::{Body, Evidence, Journal, JournalError, PlannedIssue, Record};
use crate::machine::{self, Event, IllegalTransition, Phase, State};
use crate::proc;
use crate::workspace::{Removal, Workspace};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("internal: {0}")]
    Illegal(#[from] IllegalTransition),
    #[error("internal: the engine's own journal does not fold: {0}")]
    Divergence(#[from] Divergence),
}

/// How a drive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every issue is terminal.
    Finished,
    /// Stopped by Ctrl-C; `loop resume` continues.
    Interrupted,
}

/// Receives every record right after it became durable (progress output, `--json-events`).
pub trait Observer {
    fn record(&mut self, rec: &Record, applied: &Applied, view: &RunView);
}

pub struct Engine<'a> {
    journal: Journal,
    view: RunView,
    agent: &'a dyn Agent,
    workspace: &'a dyn Workspace,
    observer: &'a mut dyn Observer,
    clock_fixed: bool,
    guard: Option<&'a crate::guard::Guard>,
}

enum Step {
    Continue,
    Stop,
}

impl<'a> Engine<'a> {
    pub fn new(
        journal: Journal,
        view: RunView,
        agent: &'a dyn Agent,
        workspace: &'a dyn Workspace,
        observer: &'a mut dyn Observer,
    ) -> Engine<'a> {
        let clock_fixed = std::env::var_os("LOOP_NOW").is_some();
        Engine { journal, view, agent, workspace, observer, clock_fixed, guard: None }
    }

    /// Turns on the guardrails (docs/safety.md) for this drive.
    pub fn set_guard(&mut self, guard: &'a crate::guard::Guard) {
        self.guard = Some(guard);
    }

    pub fn view(&self) -> &RunView {
        &self.view
    }

    /// Appends a run-level record.
    pub fn append_run(&mut self, body: Body) -> Result<(), EngineError> {
        let rec = self.journal.append(body)?;
        let applied = self.view.apply(&rec)?;
        self.observer.record(&rec, &applied, &self.view);
        Ok(())
    }

    /// Decides an issue's next state, journals it, and only then returns it.
    fn event(&mut self, issue: &str, event: Event, evidence: Option<Evidence>) -> Result<State, EngineError> {
        let from = self.view.state_of(issue).cloned().unwrap_or(State::Pending);
        let to = machine::transition(&from, &event, &self.view.start.rules)?;
        let rec = self.journal.append(Body::Issue { issue: issue.to_string(), event, to: to.clone(), evidence })?;
        let applied = self.view.apply(&rec)?;
        self.observer.record(&rec, &applied, &self.view);
        Ok(to)
    }

    /// Runs every issue to a terminal state, in plan order.
    pub fn drive(&mut self) -> Result<Outcome, EngineError> {
        let order: Vec<PlannedIssue> = self.view.start.issues.clone();
        for planned in &order {
            if let Step::Stop = self.drive_issue(planned)? {
                return self.interrupt(Some(&planned.id));
            }
        }
        if !self.view.finished {
            self.append_run(Body::RunFinished)?;
        }
        Ok(Outcome::Finished)
    }

    fn interrupt(&mut self, issue: Option<&str>) -> Result<Outcome, EngineError> {
        if let Some(id) = issue {
            if self.view.state_of(id).is_some_and(|s| !s.is_terminal()) {
                self.event(id, Event::Interrupted, None)?;
            }
        }
        self.append_run(Body::RunInterrupted { reason: "interrupted by signal".into() })?;
        Ok(Outcome::Interrupted)
    }

    fn drive_issue(&mut self, planned: &PlannedIssue) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        let mut started_here = false;
        loop {
            let state = self.view.state_of(id).cloned().unwrap_or(State::Pending);
            if state.is_terminal() {
                self.finish_worktree(planned)?;
                return Ok(Step::Continue);
            }
            if proc::is_cancelled() {
                return Ok(Step::Stop);
            }
            match state {
                State::Pending => self.prepare(planned)?,
                State::WorktreeReady => {
                    self.event(id, Event::PhaseStarted { phase: Phase::Dev, attempt: 1 }, None)?;
                    started_here = true;
                }
                State::Dev | State::Review { .. } | State::Fix { .. } => {
                    let phase = state.phase().expect("a phase state");
                    if !started_here {
                        let attempt = self.view.issue(id).map(|v| v.attempts).unwrap_or(0) + 1;
                        self.event(id, Event::PhaseStarted { phase, attempt }, None)?;
                    }
                    started_here = false;
                    if let Step::Stop = self.run_phase(planned, &state, phase)? {
                        return Ok(Step::Stop);
                    }
                }
                State::Done { .. } | State::Capped { .. } | State::Blocked { .. } | State::Failed { .. } => {
                    unreachable!("terminal states return above")
                }
            }
        }
    }

    /// Pending: check dependencies, then create (or adopt) the worktree.
    fn prepare(&mut self, planned: &PlannedIssue) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        for dep in &planned.blocked_by {
            match self.view.state_of(dep) {
                Some(State::Done { .. }) | None => {}
                Some(s) => {
                    let event =
                        Event::DependencyNotDone { dependency: dep.clone(), dependency_state: s.name().to_string() };
                    self.event(id, event, None)?;
                    return Ok(());
                }
            }
        }
        let existing = self.view.issue(id).and_then(|v| v.worktree.clone());
        let (path, branch, base, adopt) = match existing {
            Some(wt) if wt.intended => (wt.path, wt.branch, wt.base, true),
            _ => {
                let base = match self.base_for(planned) {
                    Ok(b) => b,
                    Err(reason) => {
                        self.event(id, Event::WorktreeFailed { reason }, None)?;
                        return Ok(());
                    }
                };
                let (path, branch) = (planned.worktree.clone(), planned.branch.clone());
                let intent = Event::WorktreeIntent { path: path.clone(), branch: branch.clone(), base: base.clone() };
                self.event(id, intent, None)?;
                (path, branch, base, false)
            }
        };
        match self.workspace.create(Path::new(&path), &branch, &base, adopt) {
            Ok(()) => {
                let note = adopt.then(|| "adopted the worktree of an interrupted attempt".to_string());
                let evidence = note.map(|n| Evidence { note: Some(n), ..Default::default() });
                self.event(id, Event::WorktreeCreated { path, branch, base }, evidence)?;
                // guard: Graphite stack tracking (--stack graphite)
                if let Some(g) = self.guard {
                    if let Some(e) = g.after_worktree_created(planned, &self.view) {
                        self.event(id, e, None)?;
                    }
                }
            }
            Err(e) => {
                self.event(id, Event::WorktreeFailed { reason: format!("worktree: {e}") }, None)?;
            }
        }
        Ok(())
    }

    /// An issue with exactly one dependency builds on that dependency's branch, so its work is
    /// there; otherwise it starts from the run's base commit.
    fn base_for(&self, planned: &PlannedIssue) -> Result<String, String> {
        if let [dep] = planned.blocked_by.as_slice() {
            if let Some(dep_plan) = self.view.start.issues.iter().find(|p| &p.id == dep) {
                match self.workspace.branch_tip(&dep_plan.branch) {
                    Ok(Some(tip)) => return Ok(tip),
                    Ok(None) => {}
                    Err(e) => return Err(format!("reading branch {}: {e}", dep_plan.branch)),
                }
            }
        }
        Ok(self.view.start.base_commit.clone())
    }

    fn run_phase(&mut self, planned: &PlannedIssue, state: &State, phase: Phase) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        let issue_view = self.view.issue(id).cloned().expect("planned issue has a view");
        let worktree: PathBuf =
            issue_view.worktree.as_ref().map(|w| PathBuf::from(&w.path)).unwrap_or_else(|| planned.worktree.clone().into());
        let cycle = match state {
            State::Fix { cycle } => *cycle,
            State::Review { fix_cycles } => *fix_cycles,
            _ => 0,
        };
        let req = PhaseRequest {
            run_id: self.view.run_id.clone(),
            milestone: self.view.start.milestone.clone(),
            issue: planned.clone(),
            phase,
            cycle,
            attempt: issue_view.attempts.max(1),
            worktree: worktree.clone(),
            last_review: issue_view.last_review.clone(),
            resume_session: issue_view.session.clone(),
            timeout: Duration::from_secs(self.view.start.phase_timeout_secs),
            env: Vec::new(),
        };
        let mut req = req;
        // guard: before-phase check (journaled); shims for the agent's shell
        let guard_before = match self.guard {
            Some(g) => {
                let before = g.before_phase(planned, &worktree, phase, &self.view);
                let failed = matches!(before.event, Event::GuardChecked { ok: false, .. });
                self.event(id, before.event, None)?;
                if failed {
                    return Ok(Step::Continue);
                }
                req.env = before.env;
                before.snapshot
            }
            None => None,
        };
        let agent = self.agent;
        let mut journal_failure: Option<EngineError> = None;
        let result = agent.run(&req, &mut |signal| match signal {
            Signal::SessionStarted { session } => {
                if journal_failure.is_none() {
                    if let Err(e) = self.event(id, Event::SessionStarted { phase, session }, None) {
                        journal_failure = Some(e);
                    }
                }
            }
        });
        if let Some(e) = journal_failure {
            return Err(e);
        }
        // guard: shim decisions, then the after-phase check (a violation fails the phase)
        if let (Some(g), Some(before)) = (self.guard, &guard_before) {
            if !matches!(result, Err(AgentError::Interrupted { .. })) {
                let (decisions, violation) = g.after_phase(planned, &worktree, phase, before);
                for d in decisions {
                    self.event(id, d, None)?;
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
                    let message = format!("{id}: {what}\n\nCommitted by loop (run {}).", self.view.run_id);
                    let date = self.journal_clock_date();
                    match self.workspace.commit_all(&worktree, &message, date.as_deref()) {
                        Ok(Some(c)) => {
                            evidence.commit = Some(c);
                            Event::WorkFinished { phase, status: out.status }
                        }
                        Ok(None) => {
                            evidence.note = Some("the agent changed nothing".into());
                            Event::WorkFinished { phase, status: out.status }
                        }
                        Err(e) => Event::PhaseFailed { phase, reason: format!("committing the agent's changes: {e}") },
                    }
                }
                Err(e) => Event::PhaseFailed { phase, reason: e.to_string() },
            },
            Phase::Review => match output::parse_review(&reply.output) {
                Ok(out) => Event::ReviewFinished { verdict: out.status },
                Err(e) => Event::PhaseFailed { phase, reason: e.to_string() },
            },
        };
        let used = self.view.issue(id).map(|v| v.tokens).unwrap_or(0) + reply.tokens.map(|t| t.total()).unwrap_or(0);
        self.event(id, event, Some(evidence))?;
        if let Some(limit) = self.view.start.max_tokens_per_issue {
            let now = self.view.state_of(id).cloned().unwrap_or(State::Pending);
            if used > limit && !now.is_terminal() {
                self.event(id, Event::BudgetExceeded { used, limit }, None)?;
            }
        }
        Ok(Step::Continue)
    }

    /// Commit dates follow the journal's clock, so a fixed test clock gives fixed commit ids.
    fn journal_clock_date(&self) -> Option<String> {
        self.clock_fixed.then(|| self.journal.now().format("%Y-%m-%dT%H:%M:%S+0000").to_string())
    }

    /// After an issue ends: Done and Capped worktrees are removed when nothing would be lost;
    /// any other worktree is kept for inspection. Done once per issue.
    fn finish_worktree(&mut self, planned: &PlannedIssue) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        let Some(iv) = self.view.issue(id).cloned() else { return Ok(()) };
        let Some(wt) = iv.worktree else { return Ok(()) };
        if !wt.created || wt.removed || wt.kept.is_some() {
            return Ok(());
        }
        let path = wt.path.clone();
        // guard: draft submission at Done (--submit draft)
        if let (Some(g), State::Done { .. }) = (self.guard, &iv.state) {
            if let Some(e) = g.at_done(planned, Path::new(&path)) {
                self.event(id, e, None)?;
            }
        }
        let event = match &iv.state {
            State::Done { .. } | State::Capped { .. } => {
                match self.workspace.remove(Path::new(&path), &wt.branch) {
                    Ok(Removal::Removed) | Ok(Removal::AlreadyGone) => Event::WorktreeRemoved { path },
                    Ok(Removal::Kept(reason)) => Event::WorktreeKept { path, reason },
                    Err(e) => Event::WorktreeKept { path, reason: format!("removal failed: {e}") },
                }
            }
            other => Event::WorktreeKept { path, reason: format!("issue ended {}; kept for inspection", other.name()) },
        };
        self.event(id, event, None)?;
        Ok(())
    }
}
