//! The issue driver: turns one issue's folded state into the next effect and performs it.
//!
//! [`next_effect`] is the narrow, documented seam between the machine and the effects: given
//! the issue's state (and whether this driver already journaled the phase's start) it names
//! the one thing to do next. Another engine could drive the same machine by implementing
//! these effects; once the machine emits commands, they replace this function.
//!
//! Invariants:
//! - Every effect is preceded by its journaled decision (intent, `phase_started`…), and its
//!   result is journaled before the next effect is worked out.
//! - A stop request (cancellation, or another issue halting the run) is honoured between
//!   effects, never inside one: the phase in flight finishes or is interrupted by its agent.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::hooks::Hooks;
use super::writer::Handle;
use super::{EngineError, Step, Trouble};
use crate::agent::Agent;
use crate::clock::Clock;
use crate::journal::view::IssueView;
use crate::journal::{Body, Evidence, PlannedIssue};
use crate::machine::{Event, Phase, State};
use crate::proc::Cancel;
use crate::workspace::{Removal, Workspace};

/// The engine's collaborators, shared by every issue driver of a drive.
pub(super) struct Parts<'a> {
    pub(super) agent: &'a dyn Agent,
    pub(super) workspace: &'a dyn Workspace,
    pub(super) hooks: &'a [&'a dyn Hooks],
    pub(super) clock: Clock,
    pub(super) cancel: Cancel,
}

/// The next thing to do for an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Effect {
    /// The issue is terminal: end its worktree (remove or keep) and let it go.
    Finish,
    /// A stop was requested: journal `interrupted` and stop.
    Interrupt,
    /// Pending: check dependencies, then create (or adopt) the worktree.
    Prepare,
    /// Journal `phase_started` for this phase and attempt, and nothing more yet.
    StartPhase { phase: Phase, attempt: u32 },
    /// Run the phase; journal its `phase_started` first when `start` says which attempt.
    RunPhase { phase: Phase, start: Option<u32> },
}

/// Maps today's state to the next effect. `started_here`: this driver journaled the phase's
/// start itself, so the phase runs without another `phase_started`; a phase state found
/// otherwise (an earlier process started it) is a new attempt.
pub(super) fn next_effect(issue: &IssueView, started_here: bool, stop: bool) -> Effect {
    let state = &issue.state;
    if state.is_terminal() {
        return Effect::Finish;
    }
    if stop {
        return Effect::Interrupt;
    }
    match state {
        State::Pending => Effect::Prepare,
        State::WorktreeReady => Effect::StartPhase { phase: Phase::Dev, attempt: 1 },
        _ => {
            let phase = state.phase().expect("a non-terminal state past WorktreeReady runs a phase");
            let start = (!started_here).then_some(issue.attempts + 1);
            Effect::RunPhase { phase, start }
        }
    }
}

/// Drives one issue: decides events, sends them to the writer, waits until each is durable,
/// and only then performs the next effect.
pub(super) struct IssueDriver<'a> {
    pub(super) handle: Handle,
    pub(super) parts: &'a Parts<'a>,
}

impl IssueDriver<'_> {
    pub(super) fn event(&self, issue: &str, event: Event, evidence: Option<Evidence>) -> Result<State, EngineError> {
        self.handle.event(issue, event, evidence)
    }

    pub(super) fn state(&self, id: &str) -> State {
        self.handle.view().state_of(id).cloned().unwrap_or(State::Pending)
    }

    pub(super) fn issue_view(&self, id: &str) -> IssueView {
        self.handle.view().issue(id).cloned().expect("a planned issue has a view")
    }

    fn stop_requested(&self) -> bool {
        self.parts.cancel.is_requested() || self.handle.halt.load(Ordering::SeqCst)
    }

    /// loop's environment failed at this step: journal the issue's interruption with the cause
    /// (and whatever evidence the step had, tokens included) and stop the run. The step stays
    /// unfinished, so resume retries it. A terminal issue (its worktree's removal failed) takes
    /// no event; the run's `run_interrupted` carries the cause.
    pub(super) fn stop_for_environment(&self, id: &str, cause: String, evidence: Option<Evidence>) -> EngineError {
        let mut cause = cause;
        if !self.state(id).is_terminal() {
            let mut evidence = evidence.unwrap_or_default();
            evidence.note = Some(match evidence.note.take() {
                Some(n) => format!("{cause}; {n}"),
                None => cause.clone(),
            });
            // The same full disk often holds the journal: the first cause is the one to report.
            if let Err(e) = self.event(id, Event::Interrupted, Some(evidence)) {
                cause = format!("{cause}; the journal could not record it either: {e}");
            }
        }
        let run_id = self.handle.view().run_id.clone();
        EngineError::Environment { run_id, issue: id.to_string(), cause }
    }

    pub(super) fn drive_issue(&self, planned: &PlannedIssue) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        let mut started_here = false;
        self.check_worktree(planned)?;
        loop {
            let issue = self.issue_view(id);
            match next_effect(&issue, started_here, self.stop_requested()) {
                Effect::Finish => {
                    self.finish_worktree(planned)?;
                    return Ok(Step::Continue);
                }
                Effect::Interrupt => {
                    self.event(id, Event::Interrupted, None)?;
                    return Ok(Step::Stop);
                }
                Effect::Prepare => {
                    if let Step::Stop = self.prepare(planned)? {
                        return Ok(Step::Stop);
                    }
                }
                Effect::StartPhase { phase, attempt } => {
                    self.event(id, Event::PhaseStarted { phase, attempt }, None)?;
                    started_here = true;
                }
                Effect::RunPhase { phase, start } => {
                    if let Some(attempt) = start {
                        self.event(id, Event::PhaseStarted { phase, attempt }, None)?;
                    }
                    started_here = false;
                    if let Step::Stop = self.run_phase(planned, &issue.state, phase)? {
                        self.event(id, Event::Interrupted, None)?;
                        return Ok(Step::Stop);
                    }
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
        let Some(wt) = iv.worktree else { return Ok(()) };
        if !wt.created || wt.removed || wt.kept.is_some() {
            return Ok(());
        }
        let finishing = matches!(iv.state, State::Done { .. } | State::Capped { .. });
        if iv.state.is_terminal() && !finishing {
            return Ok(());
        }
        let commit = wt.commit.clone().unwrap_or_else(|| wt.base.clone());
        let checked = self
            .parts
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
        if let Some((dependency, dependency_state)) = self.dependency_not_done(planned) {
            self.event(id, Event::DependencyNotDone { dependency, dependency_state }, None)?;
            return Ok(Step::Continue);
        }
        let Some((path, branch, base, adopt)) = self.worktree_intent(planned)? else { return Ok(Step::Continue) };
        match self.parts.workspace.create(Path::new(&path), &branch, &base, adopt) {
            Ok(repairs) => {
                if !repairs.is_empty() {
                    self.handle.run_record(Body::WorktreeRepaired { issue: id.to_string(), path: path.clone(), repairs })?;
                }
                let note = adopt.then(|| "adopted the worktree of an interrupted attempt".to_string());
                let evidence = note.map(|n| Evidence { note: Some(n), ..Default::default() });
                self.event(id, Event::WorktreeCreated { path, branch, base }, evidence)?;
                for hooks in self.parts.hooks {
                    let events = hooks.worktree_created(planned, &self.handle.view());
                    for e in events {
                        self.event(id, e, None)?;
                    }
                }
            }
            Err(e) if e.blame().is_environment() => return Err(self.stop_for_environment(id, format!("worktree: {e}"), None)),
            Err(e) => {
                self.event(id, Event::WorktreeFailed { reason: format!("worktree: {e}") }, None)?;
            }
        }
        Ok(Step::Continue)
    }

    /// The first dependency that ended other than Done, with its state's name.
    fn dependency_not_done(&self, planned: &PlannedIssue) -> Option<(String, String)> {
        let view = self.handle.view();
        planned.blocked_by.iter().find_map(|dep| match view.state_of(dep) {
            Some(State::Done { .. }) | None => None,
            Some(s) => Some((dep.clone(), s.name().to_string())),
        })
    }

    /// The worktree to create, `(path, branch, base, adopt)`: the journaled intent of an
    /// interrupted attempt (adopted), or a new intent journaled here. None when the issue
    /// ended instead (its base could not be read).
    fn worktree_intent(&self, planned: &PlannedIssue) -> Result<Option<(String, String, String, bool)>, EngineError> {
        let id = planned.id.as_str();
        let existing = self.handle.view().issue(id).and_then(|v| v.worktree.clone());
        if let Some(wt) = existing.filter(|w| w.intended) {
            return Ok(Some((wt.path, wt.branch, wt.base, true)));
        }
        let base = match self.base_for(planned) {
            Ok(b) => b,
            Err(t) if t.blame.is_environment() => return Err(self.stop_for_environment(id, t.reason, None)),
            Err(t) => {
                self.event(id, Event::WorktreeFailed { reason: t.reason }, None)?;
                return Ok(None);
            }
        };
        let (path, branch) = (planned.worktree.clone(), planned.branch.clone());
        let intent = Event::WorktreeIntent { path: path.clone(), branch: branch.clone(), base: base.clone() };
        self.event(id, intent, None)?;
        Ok(Some((path, branch, base, false)))
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
            match self.parts.workspace.branch_tip(&branch) {
                Ok(Some(tip)) => return Ok(tip),
                Ok(None) => {}
                Err(e) => return Err(Trouble::new(format!("reading branch {branch}: {e}"), e.blame())),
            }
        }
        Ok(base_commit)
    }

    /// After an issue ends: Done and Capped worktrees are removed when nothing would be lost;
    /// any other worktree is kept for inspection. Done once per issue.
    fn finish_worktree(&self, planned: &PlannedIssue) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        let Some(iv) = self.handle.view().issue(id).cloned() else { return Ok(()) };
        let Some(wt) = iv.worktree else { return Ok(()) };
        if !wt.created || wt.removed || wt.kept.is_some() {
            return Ok(());
        }
        let path = wt.path.clone();
        for hooks in self.parts.hooks {
            for e in hooks.issue_done(planned, &iv.state, Path::new(&path)) {
                self.event(id, e, None)?;
            }
        }
        let event = match &iv.state {
            State::Done { .. } | State::Capped { .. } => self.remove_worktree(id, path, &wt.branch)?,
            other => Event::WorktreeKept { path, reason: format!("issue ended {}; kept for inspection", other.name()) },
        };
        self.event(id, event, None)?;
        Ok(())
    }

    /// Removes a finished issue's worktree; what happened, as the event to journal.
    fn remove_worktree(&self, id: &str, path: String, branch: &str) -> Result<Event, EngineError> {
        Ok(match self.parts.workspace.remove(Path::new(&path), branch) {
            Ok(Removal::Removed) | Ok(Removal::AlreadyGone) => Event::WorktreeRemoved { path },
            Ok(Removal::Finished(repair)) => {
                let body = Body::WorktreeRepaired { issue: id.to_string(), path: path.clone(), repairs: vec![repair] };
                self.handle.run_record(body)?;
                Event::WorktreeRemoved { path }
            }
            Ok(Removal::Kept(reason)) => Event::WorktreeKept { path, reason },
            Err(e) if e.blame().is_environment() => {
                return Err(self.stop_for_environment(id, format!("removing the worktree {path}: {e}"), None));
            }
            Err(e) => Event::WorktreeKept { path, reason: format!("removal failed: {e}") },
        })
    }
}
