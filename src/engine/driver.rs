//! The issue driver: carries out one issue's machine commands ([`Command`]), each answered by
//! the events it journals.
//!
//! This is the narrow seam between the machine and the effects: a driver picking an issue up
//! asks [`machine::resume`] what to do; every machine event it journals answers with the next
//! commands ([`machine::transition`]), which supersede the ones before. Another engine could
//! drive the same machine by carrying out the same seven commands.
//!
//! Invariants:
//! - Every effect is preceded by its journaled decision (intent, `phase_started`…), and its
//!   result is journaled before the next command is carried out.
//! - A stop request (cancellation, or another issue halting the run) is honoured between
//!   commands, never inside one: the phase in flight finishes or is interrupted by its agent.
//!   An issue that already ended still has its worktree removed or kept.
//! - The run's cost budget (`max_cost_usd_per_run`, what its issues spent since each one's
//!   last reopen) is checked before an issue is prepared and before each phase starts, never
//!   inside a phase: the phase in flight finishes and is journaled. Once it is spent, an issue
//!   not started ends Blocked (nothing of it ran: like a dependency that is not Done, and
//!   `retry` starts it from Pending) and one under way ends Capped (stopped by a limit, like the
//!   token and issue cost budgets), both with `run_budget_spent`.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::hooks::Hooks;
use super::phase::PhaseCall;
use super::writer::Handle;
use super::{EngineError, Step, Trouble};
use crate::agent::Agent;
use crate::blame::Blame;
use crate::clock::Clock;
use crate::journal::view::RunView;
use crate::journal::{Body, Entry, Evidence, Fact, PlannedIssue};
use crate::machine::{self, Command, Event, Stage, StageKind, State};
use crate::plan::{self, Base};
use crate::proc::Cancel;
use crate::reviewdoc;
use crate::workspace::{MergeOutcome, Removal, Workspace};

/// The engine's collaborators, shared by every issue driver of a drive.
pub(super) struct Parts<'a> {
    /// The agent of dev, review and fix ([`phase_index`]).
    pub(super) agents: [&'a dyn Agent; 3],
    pub(super) workspace: &'a dyn Workspace,
    pub(super) hooks: &'a [&'a dyn Hooks],
    pub(super) clock: Clock,
    pub(super) cancel: Cancel,
    pub(super) verify: super::VerifyEnv,
    /// One baseline is checked at a time, so issues on the same base share it.
    pub(super) baseline: std::sync::Mutex<()>,
}

impl<'a> Parts<'a> {
    /// What every driver of a drive (or of one remote command) shares.
    pub(super) fn new(
        agents: [&'a dyn Agent; 3],
        workspace: &'a dyn Workspace,
        hooks: &'a [&'a dyn Hooks],
        settings: &super::Settings,
    ) -> Parts<'a> {
        Parts {
            agents,
            workspace,
            hooks,
            clock: settings.clock.clone(),
            cancel: settings.cancel.clone(),
            verify: settings.verify.clone(),
            baseline: std::sync::Mutex::new(()),
        }
    }

    pub(super) fn agent(&self, phase: machine::Phase) -> &dyn Agent {
        self.agents[phase_index(phase)]
    }
}

pub(super) fn phase_index(phase: machine::Phase) -> usize {
    match phase {
        machine::Phase::Dev => 0,
        machine::Phase::Review => 1,
        machine::Phase::Fix => 2,
    }
}

/// Whether a command may be carried out after a stop request: an ended issue's worktree is
/// still removed or kept (and its end is no step to interrupt).
/// How a chain of commands ended, and each command after the first with the number of
/// records journaled before it.
pub(super) type Chain = (Option<Step>, Vec<(Command, u64)>);

pub(super) fn runs_after_stop(command: &Command) -> bool {
    matches!(command, Command::RemoveWorktree { .. } | Command::KeepWorktree { .. } | Command::Finish)
}

/// The branch of the milestone's issue `dep`: as planned when it is in this run, else the
/// name loop gives it (a dependency Done in an earlier run of the milestone).
pub(super) fn dependency_branch(view: &RunView, dep: &str) -> String {
    match view.start.issues.iter().find(|p| p.id.as_str() == dep) {
        Some(p) => p.branch.to_string(),
        None => plan::branch_name(&view.start.milestone, dep),
    }
}

/// How an ended issue's worktree ends.
enum End<'b> {
    /// Done or Capped: removed when nothing would be lost (the branch stays).
    Remove { branch: &'b str },
    /// Any other end: kept for inspection.
    Keep { ended: StageKind },
}

/// Drives one issue: carries out its commands, sends each answering event to the writer,
/// waits until it is durable, and only then carries out the next command.
pub(super) struct IssueDriver<'a> {
    handle: Handle,
    pub(super) parts: &'a Parts<'a>,
    /// The commands still to carry out: those of the last machine event this driver journaled,
    /// or of [`machine::resume`] when it picked the issue up.
    next: RefCell<Vec<Command>>,
    /// Whether an event and the `phase_started` it leads to may be journaled as one group
    /// ([`IssueDriver::event_then_start`]): not for a far driver, which is sent the records of
    /// exactly one command.
    group_starts: bool,
}

impl<'a> IssueDriver<'a> {
    pub(super) fn new(handle: Handle, parts: &'a Parts<'a>) -> IssueDriver<'a> {
        IssueDriver { handle, parts, next: RefCell::new(Vec::new()), group_starts: true }
    }

    /// A driver that carries out commands for a far driver: each journal group answers one
    /// command, so the far driver sees every command it would take, `start_phase` included.
    pub(super) fn one_command(mut self) -> IssueDriver<'a> {
        self.group_starts = false;
        self
    }

    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Journals a machine event; its commands (if it emitted any) become the next ones.
    pub(super) fn event(&self, issue: &str, event: Event, evidence: Option<Evidence>) -> Result<State, EngineError> {
        let (state, commands) = self.handle.event(issue, event, evidence)?;
        // `session_started` emits none: the phase keeps running.
        if !commands.is_empty() {
            *self.next.borrow_mut() = commands;
        }
        Ok(state)
    }

    /// Journals a machine event after which, when its commands begin with `start_phase`, the
    /// driver would journal `phase_started` next: both in one group (one sync instead of two)
    /// when nothing may come between them (no run cost budget to check, no stop requested, a
    /// local drive). Nothing acts on the event before the group is durable; its commands are
    /// those after `phase_started`. The journal holds the same records either way.
    pub(super) fn event_then_start(
        &self,
        issue: &str,
        event: Event,
        evidence: Option<Evidence>,
    ) -> Result<State, EngineError> {
        let together =
            self.group_starts && !self.stop_requested() && self.handle.view().start.max_cost_usd_per_run().is_none();
        if !together {
            return self.event(issue, event, evidence);
        }
        let (state, commands) = self.handle.event_then_start(issue, event, evidence)?;
        if !commands.is_empty() {
            *self.next.borrow_mut() = commands;
        }
        Ok(state)
    }

    /// Journals an audit fact about the issue (no machine event).
    pub(super) fn audit(&self, id: &str, fact: Fact, evidence: Option<Evidence>) -> Result<(), EngineError> {
        self.handle.audit(id, fact, evidence)
    }

    /// Journals what a hook reported: a machine event or an audit fact.
    pub(super) fn note(&self, id: &str, entry: Entry) -> Result<(), EngineError> {
        match entry {
            Entry::Machine(e) => self.event(id, e, None).map(|_| ()),
            Entry::Audit(f) => self.audit(id, f, None),
        }
    }

    pub(super) fn state(&self, id: &str) -> State {
        self.handle.view().state_of(id).cloned().unwrap_or(State::PENDING)
    }

    fn stop_requested(&self) -> bool {
        self.parts.cancel.is_requested() || self.handle.halt.load(Ordering::SeqCst)
    }

    /// The next command: the first one left, or what resuming the issue's state asks for.
    fn next_command(&self, id: &str) -> Command {
        machine::next_command(&mut self.next.borrow_mut(), || self.state(id))
    }

    /// The command [`Self::next_command`] would return, left in place.
    fn peek_command(&self, id: &str) -> Command {
        machine::upcoming(&mut self.next.borrow_mut(), || self.state(id)).clone()
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
            if let Err(e) = self.audit(id, Fact::Interrupted, Some(evidence)) {
                cause = format!("{cause}; the journal could not record it either: {e}");
            }
        }
        let run_id = self.handle.view().run_id.clone();
        EngineError::Environment { run_id, issue: id.to_string(), cause }
    }

    pub(super) fn drive_issue(&self, planned: &PlannedIssue) -> Result<Step, EngineError> {
        let id = planned.id.as_str();
        self.check_worktree(planned)?;
        *self.next.borrow_mut() = machine::resume(&self.state(id));
        loop {
            let command = self.next_command(id);
            if !runs_after_stop(&command) && self.stop_requested() {
                self.audit(id, Fact::Interrupted, None)?;
                return Ok(Step::Stop);
            }
            if let Some(step) = self.perform(planned, command)? {
                return Ok(step);
            }
        }
    }

    /// Carries out a command a far driver sent ([`super::remote`]), after checking the worktree
    /// as a resumed drive does; `queued` are the commands the far driver holds after it. Then,
    /// while `more` accepts the command the machine asks for next (taken as a drive takes it),
    /// carries that out too. Returns how the last one ended, and each command carried out after
    /// the first with the number of records journaled before it.
    pub(super) fn perform_chain(
        &self,
        planned: &PlannedIssue,
        command: Command,
        queued: Vec<Command>,
        more: &dyn Fn(&Command) -> bool,
    ) -> Result<Chain, EngineError> {
        self.check_worktree(planned)?;
        let id = planned.id.as_str();
        *self.next.borrow_mut() = queued;
        let before = self.handle.view().records;
        let mut chained = Vec::new();
        let mut command = command;
        loop {
            if !runs_after_stop(&command) && self.stop_requested() {
                return Ok((Some(Step::Stop), chained));
            }
            if let Some(step) = self.perform(planned, command)? {
                return Ok((Some(step), chained));
            }
            if !more(&self.peek_command(id)) {
                return Ok((None, chained));
            }
            command = self.next_command(id);
            chained.push((command.clone(), self.handle.view().records - before));
        }
    }

    /// Carries out one command; `Some` when the issue's driving ends here.
    fn perform(&self, planned: &PlannedIssue, command: Command) -> Result<Option<Step>, EngineError> {
        let id = planned.id.as_str();
        match command {
            Command::Prepare => self.prepare(planned)?,
            // A reused branch is loop's own from an earlier run (or before a retry): it is
            // checked out as it is, and a worktree of it left at the path is adopted.
            Command::CreateWorktree { path, branch, base, adopt, reuse } => {
                self.create_worktree(planned, path, branch, base, adopt || reuse, reuse)?
            }
            // Once the run's cost budget is spent no phase starts: the one in flight finished.
            Command::StartPhase { phase, attempt } => match self.run_budget_spent() {
                Some((used_micro_usd, limit_micro_usd)) => {
                    self.event(id, Event::RunBudgetSpent { used_micro_usd, limit_micro_usd }, None)?;
                }
                None => {
                    self.event(id, Event::PhaseStarted { phase, attempt }, None)?;
                }
            },
            Command::RunPhase { phase, cycle, attempt, resume_session } => {
                if let Step::Stop = self.run_phase(planned, PhaseCall { phase, cycle, attempt, resume_session })? {
                    self.audit(id, Fact::Interrupted, None)?;
                    return Ok(Some(Step::Stop));
                }
            }
            Command::Verify { path, cycle } => {
                if let Step::Stop = self.verify(planned, path, cycle)? {
                    return Ok(Some(Step::Stop));
                }
            }
            Command::RemoveWorktree { path, branch } => {
                self.end_worktree(planned, path, End::Remove { branch: &branch })?
            }
            Command::KeepWorktree { path, ended } => self.end_worktree(planned, path, End::Keep { ended })?,
            Command::Finish => return Ok(Some(Step::Continue)),
            Command::MergeBases { path, parents } => self.merge_bases(planned, path, parents)?,
        }
        Ok(None)
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
            .parts
            .workspace
            .check(Path::new(&wt.path), &wt.branch, &commit, finishing)
            .map_err(|source| EngineError::Workspace { issue: id.to_string(), source })?;
        if !checked.repairs.is_empty() {
            let body =
                Body::WorktreeRepaired { issue: id.to_string(), path: wt.path.clone(), repairs: checked.repairs };
            self.handle.run_record(body)?;
        }
        if checked.removed {
            self.event(id, Event::WorktreeRemoved { path: wt.path }, None)?;
        }
        Ok(())
    }

    /// `(used, limit)` in micro-dollars when the run's cost budget is spent: what its issues
    /// spent since each one's last reopen reached `max_cost_usd_per_run`.
    fn run_budget_spent(&self) -> Option<(u64, u64)> {
        let view = self.handle.view();
        let limit = view.start.max_cost_usd_per_run()?;
        let used = view.budget_cost_usd();
        (used >= limit).then(|| (crate::vocab::to_micro_usd(used), crate::vocab::to_micro_usd(limit)))
    }

    /// `prepare`: a dependency that did not end Done blocks the issue; otherwise choose the
    /// base and journal the intent (the licence to create the worktree).
    fn prepare(&self, planned: &PlannedIssue) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        if let Some((dependency, dependency_state)) = self.dependency_not_done(planned) {
            self.event(id, Event::DependencyNotDone { dependency, dependency_state }, None)?;
            return Ok(());
        }
        if let Some((used_micro_usd, limit_micro_usd)) = self.run_budget_spent() {
            self.event(id, Event::RunBudgetSpent { used_micro_usd, limit_micro_usd }, None)?;
            return Ok(());
        }
        let (base, merge) = match self.base_for(planned) {
            Ok(b) => b,
            Err(t) if t.blame.is_environment() => return Err(self.stop_for_environment(id, t.reason, None)),
            Err(t) => {
                self.event(id, Event::WorktreeFailed { reason: t.reason }, None)?;
                return Ok(());
            }
        };
        // A branch an earlier run of the milestone made is loop's own: checked out as it is.
        let reuse = self.handle.view().start.earlier.reusable_branches.iter().any(|b| *b == planned.branch.as_str());
        let intent = Event::WorktreeIntent {
            path: planned.worktree.clone(),
            branch: planned.branch.to_string(),
            base,
            merge,
            reuse,
        };
        self.event(id, intent, None)?;
        Ok(())
    }

    /// `create_worktree` (or adopt the one an interrupted attempt left), then the hooks.
    fn create_worktree(
        &self,
        planned: &PlannedIssue,
        path: String,
        branch: String,
        base: String,
        adopt: bool,
        reuse: bool,
    ) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        match self.parts.workspace.create(Path::new(&path), &branch, &base, adopt, reuse) {
            Ok(repairs) => {
                if !repairs.is_empty() {
                    self.handle.run_record(Body::WorktreeRepaired {
                        issue: id.to_string(),
                        path: path.clone(),
                        repairs,
                    })?;
                }
                let note = adopt.then(|| "adopted the worktree of an interrupted attempt".to_string());
                let evidence = note.map(|n| Evidence { note: Some(n), ..Default::default() });
                let created = Event::WorktreeCreated { path, branch, base };
                // The hooks journal what they report about the new worktree before the dev
                // phase starts.
                if self.parts.hooks.is_empty() {
                    self.event_then_start(id, created, evidence)?;
                } else {
                    self.event(id, created, evidence)?;
                }
                for hooks in self.parts.hooks {
                    let entries = hooks.worktree_created(planned, &self.handle.view());
                    for e in entries {
                        self.note(id, e)?;
                    }
                }
            }
            Err(e) if e.blame().is_environment() => {
                return Err(self.stop_for_environment(id, format!("worktree: {e}"), None))
            }
            Err(e) => {
                self.event(id, Event::WorktreeFailed { reason: format!("worktree: {e}") }, None)?;
            }
        }
        Ok(())
    }

    /// `merge_bases`: merges the other dependencies' tips into the new branch, as one commit.
    /// A conflict changes nothing and ends the issue Blocked naming the files; loop's own
    /// environment failing is an interruption (resume merges again).
    fn merge_bases(&self, planned: &PlannedIssue, path: String, parents: Vec<String>) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        let (run_id, names, union) = {
            let view = self.handle.view();
            let branches: Vec<String> = planned.blocked_by.iter().map(|d| dependency_branch(&view, d)).collect();
            // loop's own review docs only ever gain entries: both sides' entries are kept.
            let mut union: Vec<String> =
                view.start.issues.iter().map(|p| reviewdoc::doc_path(&p.doc, &view.start.milestone, &p.id)).collect();
            union.sort();
            union.dedup();
            (view.run_id.clone(), branches, union)
        };
        // Each parent by the dependency branch whose tip it is, for the message and the event.
        let ws = self.parts.workspace;
        let name_of = |commit: &str| {
            names
                .iter()
                .find(|b| ws.branch_tip(b).ok().flatten().as_deref() == Some(commit))
                .cloned()
                .unwrap_or_else(|| commit.to_string())
        };
        let named: Vec<String> = parents.iter().map(|p| name_of(p)).collect();
        let deps: Vec<&str> = planned.blocked_by.iter().map(|d| d.as_str()).collect();
        let mut message = format!("{id}: merge the work of {}\n\n", deps.join(", "));
        message.push_str(&format!(
            "Merged by loop (run {run_id}) before dev, so the branch holds every dependency's work:\n"
        ));
        for (p, n) in parents.iter().zip(&named) {
            message.push_str(&format!("- {n} {p}\n"));
        }
        let date = self.commit_date();
        match ws.merge(Path::new(&path), &parents, &union, &message, date.as_deref()) {
            Ok(MergeOutcome::Merged { commit, repairs }) => {
                if !repairs.is_empty() {
                    self.handle.run_record(Body::WorktreeRepaired { issue: id.to_string(), path, repairs })?;
                }
                let note = format!("merged {}", named.join(" + "));
                let evidence = Evidence { commit: Some(commit.clone()), note: Some(note), ..Default::default() };
                self.event(id, Event::BasesMerged { commit }, Some(evidence))?;
            }
            Ok(MergeOutcome::Conflict { parent, files }) => {
                let note = format!("merging {parent} conflicts; nothing was merged, the worktree is as created");
                let evidence = Evidence { note: Some(note), ..Default::default() };
                self.event(id, Event::MergeConflict { parent: name_of(&parent), files }, Some(evidence))?;
            }
            Err(e) if e.blame().is_environment() => {
                return Err(self.stop_for_environment(id, format!("merging the dependencies' branches: {e}"), None));
            }
            Err(e) => {
                // Not a conflict, and not loop's environment (a worktree someone changed): the
                // issue cannot start from its dependencies' work.
                // Blocked like a conflict (a retry merges again once it is cleared).
                let files = vec![format!("(could not merge: {e})")];
                self.event(id, Event::MergeConflict { parent: named.join(" + "), files }, None)?;
            }
        }
        Ok(())
    }

    /// The first dependency that ended other than Done, with its stage.
    fn dependency_not_done(&self, planned: &PlannedIssue) -> Option<(String, StageKind)> {
        let view = self.handle.view();
        planned.blocked_by.iter().find_map(|dep| match view.state_of(dep).map(|s| &s.stage) {
            Some(Stage::Done { .. }) | None => None,
            Some(s) => Some((dep.to_string(), s.kind())),
        })
    }

    /// Where the issue's branch starts ([`plan::base_of`]): the run's base commit when it has
    /// no dependency, else its first dependency's branch tip (plan order), with the other
    /// dependencies' tips to merge into it (those the base already holds left out). A
    /// dependency counts whether it ended Done in this run or in an earlier one of the
    /// milestone (carried over): its branch holds its work either way.
    fn base_for(&self, planned: &PlannedIssue) -> Result<(String, Vec<String>), Trouble> {
        let (branches, base_commit) = {
            let view = self.handle.view();
            let branches: Vec<String> = planned.blocked_by.iter().map(|d| dependency_branch(&view, d)).collect();
            (branches, view.start.base_commit.clone())
        };
        let ws = self.parts.workspace;
        let tip = |branch: &str| match ws.branch_tip(branch) {
            Ok(Some(tip)) => Ok(tip),
            // Starting without it would hide its work from the agent: refuse instead.
            Ok(None) => Err(Trouble::new(format!("the dependency's branch {branch} is missing"), Blame::Issue)),
            Err(e) => Err(Trouble::new(format!("reading branch {branch}: {e}"), e.blame())),
        };
        match plan::base_of(&branches) {
            Base::Run => Ok((base_commit, Vec::new())),
            Base::Deps { first, merge } => {
                let base = tip(&first)?;
                let mut parents: Vec<String> = Vec::new();
                for branch in merge {
                    let t = tip(&branch)?;
                    let held = ws
                        .is_ancestor(&t, &base)
                        .map_err(|e| Trouble::new(format!("comparing {branch} with {first}: {e}"), e.blame()))?;
                    if !held && !parents.contains(&t) {
                        parents.push(t);
                    }
                }
                Ok((base, parents))
            }
        }
    }

    /// `remove_worktree` or `keep_worktree`; the hooks see the issue's end first.
    fn end_worktree(&self, planned: &PlannedIssue, path: String, end: End<'_>) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        let state = self.state(id);
        for hooks in self.parts.hooks {
            for e in hooks.issue_done(planned, &state, Path::new(&path)) {
                self.note(id, e)?;
            }
        }
        let event = match end {
            End::Remove { branch } => self.remove_worktree(id, path, branch)?,
            End::Keep { ended } => {
                Event::WorktreeKept { path, reason: format!("issue ended {ended}; kept for inspection") }
            }
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
