//! The per-issue state machine, as a transducer: `(state, event) -> (state, commands)`.
//!
//! Invariants:
//! - [`transition`] is pure: no I/O, no clock, no randomness. Everything that decides a
//!   transition travels inside the [`Event`], so replaying the journal re-derives every state
//!   and every [`Command`].
//! - [`State`] is the whole of what the machine knows about an issue: the [`Stage`], the
//!   worktree lifecycle, the attempts of the current phase and the agent session to continue.
//!   Nothing else (the journal view, the engine) keeps a second copy of any of it.
//! - The table is a single exhaustive `match (stage, event)`; every pair it does not name is an
//!   [`IllegalTransition`].
//! - Only events that change the state travel through the machine. Audit facts (guard
//!   decisions, passed checks, stack bookkeeping, interruptions) are journal records of their own.
//! - The fix-cycle count is part of the stage, so "how many fixes so far" never lives anywhere else.
//! - The commands after an event depend on the new state alone, except right after
//!   `worktree_intent` (create, not adopt) and `phase_started` (run, not start), so
//!   [`resume`] of any state is what a driver picking the issue up must do.

pub mod command;
pub mod reason;

use serde::{Deserialize, Serialize};

use crate::vocab::Fact;
pub use crate::vocab::{Phase, Rules, DEFAULT_MAX_FIX_CYCLES};
pub use command::Command;
pub use reason::Reason;

/// Where one issue stands in dev → review → fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Not started.
    Pending,
    /// The issue's worktree exists; dev has not started.
    WorktreeReady,
    /// The dev phase is due or running.
    Dev,
    /// A review is due or running; `fix_cycles` fixes have happened so far.
    Review {
        fix_cycles: u32,
    },
    /// Fix number `cycle` (1-based) is due or running.
    Fix {
        cycle: u32,
    },
    Done {
        fix_cycles: u32,
    },
    Capped {
        fix_cycles: u32,
        reason: Reason,
    },
    Blocked {
        fix_cycles: u32,
        reason: Reason,
    },
    Failed {
        fix_cycles: u32,
        reason: Reason,
    },
    /// loop runs the verification checks on the work of dev (`fix_cycles` 0) or of fix N.
    Verify {
        fix_cycles: u32,
    },
}

/// A stage's name without its data: for messages, errors and dependency checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StageKind {
    Pending,
    WorktreeReady,
    Dev,
    Review,
    Fix,
    Done,
    Capped,
    Blocked,
    Failed,
    Verify,
}

impl StageKind {
    pub const ALL: [StageKind; 10] = [
        StageKind::Pending,
        StageKind::WorktreeReady,
        StageKind::Dev,
        StageKind::Review,
        StageKind::Fix,
        StageKind::Done,
        StageKind::Capped,
        StageKind::Blocked,
        StageKind::Failed,
        StageKind::Verify,
    ];

    /// The short name used in status output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Pending => "Pending",
            StageKind::WorktreeReady => "WorktreeReady",
            StageKind::Dev => "Dev",
            StageKind::Review => "Review",
            StageKind::Fix => "Fix",
            StageKind::Done => "Done",
            StageKind::Capped => "Capped",
            StageKind::Blocked => "Blocked",
            StageKind::Failed => "Failed",
            StageKind::Verify => "Verify",
        }
    }

    /// The kind a [`StageKind::name`] names.
    pub fn from_name(name: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Stage {
    pub fn kind(&self) -> StageKind {
        match self {
            Stage::Pending => StageKind::Pending,
            Stage::WorktreeReady => StageKind::WorktreeReady,
            Stage::Dev => StageKind::Dev,
            Stage::Review { .. } => StageKind::Review,
            Stage::Fix { .. } => StageKind::Fix,
            Stage::Done { .. } => StageKind::Done,
            Stage::Capped { .. } => StageKind::Capped,
            Stage::Blocked { .. } => StageKind::Blocked,
            Stage::Failed { .. } => StageKind::Failed,
            Stage::Verify { .. } => StageKind::Verify,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Stage::Done { .. } | Stage::Capped { .. } | Stage::Blocked { .. } | Stage::Failed { .. })
    }

    /// Fix cycles entered so far (a fix in progress counts).
    pub fn fix_cycles(&self) -> u32 {
        match self {
            Stage::Pending | Stage::WorktreeReady | Stage::Dev => 0,
            Stage::Fix { cycle: fix_cycles }
            | Stage::Review { fix_cycles }
            | Stage::Verify { fix_cycles }
            | Stage::Done { fix_cycles }
            | Stage::Capped { fix_cycles, .. }
            | Stage::Blocked { fix_cycles, .. }
            | Stage::Failed { fix_cycles, .. } => *fix_cycles,
        }
    }

    /// The short name used in status output and JSON.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Stage::Capped { reason, .. } | Stage::Blocked { reason, .. } | Stage::Failed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The phase an agent runs in this stage, if any.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Stage::Dev => Some(Phase::Dev),
            Stage::Review { .. } => Some(Phase::Review),
            Stage::Fix { .. } => Some(Phase::Fix),
            _ => None,
        }
    }

    /// The fix cycle a phase in this stage belongs to (0 for dev and the first review).
    pub fn cycle(&self) -> u32 {
        match self {
            Stage::Fix { cycle } => *cycle,
            Stage::Review { fix_cycles } | Stage::Verify { fix_cycles } => *fix_cycles,
            _ => 0,
        }
    }

    /// Whether a stage the machine computed is the one a record holds (a format-1 record keeps
    /// its reason as text: see [`Reason::agrees_with`]).
    pub fn agrees_with(&self, recorded: &Stage) -> bool {
        match (self.reason(), recorded.reason()) {
            (Some(mine), Some(theirs)) => {
                self.kind() == recorded.kind() && self.fix_cycles() == recorded.fix_cycles() && mine.agrees_with(theirs)
            }
            _ => self == recorded,
        }
    }
}

/// Where an issue's worktree is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Life {
    /// `worktree_intent` was journaled: loop may create or adopt this path and branch.
    Intended,
    /// The worktree exists on its branch.
    Created,
    /// Removed after the issue ended (the branch stays).
    Removed,
    /// Kept after the issue ended, with the reason.
    Kept { reason: String },
}

/// An issue's worktree as the machine knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    pub path: String,
    pub branch: String,
    pub base: String,
    pub life: Life,
    /// Commits still to merge into the branch after it was created at `base` (the other
    /// dependencies' work); empty once merged.
    #[serde(default)]
    pub merge: Vec<String>,
    /// The branch existed before (loop made it in an earlier run or before a retry): the
    /// worktree checks it out as it is.
    #[serde(default)]
    pub reuse: bool,
}

impl Worktree {
    /// Intended but not (known to be) created yet.
    pub fn intended(&self) -> bool {
        self.life == Life::Intended
    }

    /// Created at some point (it may have been removed or kept since).
    pub fn created(&self) -> bool {
        self.life != Life::Intended
    }

    pub fn removed(&self) -> bool {
        self.life == Life::Removed
    }

    pub fn kept(&self) -> Option<&str> {
        match &self.life {
            Life::Kept { reason } => Some(reason),
            _ => None,
        }
    }

    /// Created and neither removed nor kept: loop still owes it a removal or a keep.
    pub fn live(&self) -> bool {
        self.life == Life::Created
    }
}

/// Everything the machine knows about one issue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub stage: Stage,
    pub worktree: Option<Worktree>,
    /// `phase_started` events since the stage last changed (0: the phase has not started).
    pub attempts: u32,
    /// The agent session of the current phase, if the agent reported one; kept across attempts
    /// of the same phase so a re-run continues it.
    pub session: Option<String>,
    /// Fix cycles granted beyond the run's limit by `loop retry`.
    pub extra_fix_cycles: u32,
}

impl Default for State {
    fn default() -> Self {
        State::PENDING
    }
}

impl State {
    pub const PENDING: State =
        State { stage: Stage::Pending, worktree: None, attempts: 0, session: None, extra_fix_cycles: 0 };

    /// How many fix cycles this issue may use: the run's limit and what retries added.
    pub fn fix_limit(&self, rules: &Rules) -> u32 {
        rules.max_fix_cycles.saturating_add(self.extra_fix_cycles)
    }

    pub fn is_terminal(&self) -> bool {
        self.stage.is_terminal()
    }

    pub fn name(&self) -> &'static str {
        self.stage.name()
    }

    pub fn fix_cycles(&self) -> u32 {
        self.stage.fix_cycles()
    }

    pub fn reason(&self) -> Option<&Reason> {
        self.stage.reason()
    }

    pub fn phase(&self) -> Option<Phase> {
        self.stage.phase()
    }
}

/// What a dev or fix agent said it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    Pass,
    Failed,
    Deferred,
}

/// What a reviewer decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    ChangesRequired,
    Blocked,
}

/// Everything that changes an issue's state. Each event carries the inputs that decide its
/// transition; richer evidence (raw agent output, exit code, timings) rides beside it in the
/// journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A dependency finished in a state other than Done, so this issue can never start.
    DependencyNotDone { dependency: String, dependency_state: StageKind },
    /// The orchestrator is about to create the worktree (journaled first: the licence to touch it).
    /// `merge`: the other dependencies' commits, merged in plan order once the worktree exists;
    /// `reuse`: the branch exists already (loop made it earlier) and is checked out as it is.
    WorktreeIntent {
        path: String,
        branch: String,
        base: String,
        #[serde(default)]
        merge: Vec<String>,
        #[serde(default)]
        reuse: bool,
    },
    /// The worktree exists on its branch.
    WorktreeCreated { path: String, branch: String, base: String },
    /// The worktree could not be created (or adopted); the issue cannot start.
    WorktreeFailed { reason: String },
    /// `gt track` of the new worktree's branch onto its parent failed (`--stack graphite`).
    StackTrackFailed { parent: String, error: String },
    /// An agent phase is starting (again, after a crash or interruption, if already started).
    PhaseStarted { phase: Phase, attempt: u32 },
    /// The agent's session for the running phase exists (journaled the moment it is known, so
    /// resume can continue it: the session is part of the state).
    SessionStarted { phase: Phase, session: String },
    /// The issue used more tokens than its budget allows.
    BudgetExceeded { used: u64, limit: u64 },
    /// Dev or fix finished with this status.
    WorkFinished { phase: Phase, status: WorkStatus },
    /// A review finished with this verdict.
    ReviewFinished { verdict: Verdict },
    /// A phase could not produce a usable result: crash, timeout, unusable output.
    PhaseFailed { phase: Phase, reason: String },
    /// The guard's before-phase check failed (main checkout, worktree ownership and branch).
    GuardCheckFailed { phase: Phase, details: Vec<String> },
    /// After the phase, things outside the issue's branch and worktree had changed.
    GuardViolation { phase: Phase, changes: Vec<String> },
    /// The worktree was removed after the issue ended (the branch stays).
    WorktreeRemoved { path: String },
    /// The worktree was kept after the issue ended, with the reason.
    WorktreeKept { path: String, reason: String },
    /// The pending merges made this commit on the issue's branch.
    BasesMerged { commit: String },
    /// Merging `parent` conflicted in `files`; the merge was aborted (nothing half-merged left).
    MergeConflict { parent: String, files: Vec<String> },
    /// loop's checks ran on the work; `failures` names each check that failed and did not fail
    /// on the base already (command, why, output tail). Empty: verified.
    VerifyFinished { failures: Vec<String> },
    /// The issue ended Done in an earlier run of the milestone; its branch is at `tip`.
    CarriedOver { run: String, branch: String, tip: String },
    /// `loop retry` reopened the ended issue, granting `extra_fix_cycles` more fix cycles.
    Reopened { extra_fix_cycles: u32 },
    /// The issue spent more USD (micro-dollars, since its last reopen) than its budget allows.
    CostExceeded { used_micro_usd: u64, limit_micro_usd: u64 },
    /// The run's cost budget is spent: an issue not started yet never starts (Blocked), one in
    /// flight starts no further phase (Capped).
    RunBudgetSpent { used_micro_usd: u64, limit_micro_usd: u64 },
}

impl Event {
    /// The event's name in timelines and JSON. A failed guard check and a failed `gt track`
    /// keep the names format 1 gave them (`guard_checked`, `stack_tracked`), whose passing
    /// counterparts are now audit records.
    pub fn name(&self) -> &'static str {
        match self {
            Event::DependencyNotDone { .. } => "dependency_not_done",
            Event::WorktreeIntent { .. } => "worktree_intent",
            Event::WorktreeCreated { .. } => "worktree_created",
            Event::WorktreeFailed { .. } => "worktree_failed",
            Event::StackTrackFailed { .. } => "stack_tracked",
            Event::PhaseStarted { .. } => "phase_started",
            Event::SessionStarted { .. } => "session_started",
            Event::BudgetExceeded { .. } => "budget_exceeded",
            Event::WorkFinished { .. } => "work_finished",
            Event::ReviewFinished { .. } => "review_finished",
            Event::PhaseFailed { .. } => "phase_failed",
            Event::GuardCheckFailed { .. } => "guard_checked",
            Event::GuardViolation { .. } => "guard_violation",
            Event::WorktreeRemoved { .. } => "worktree_removed",
            Event::WorktreeKept { .. } => "worktree_kept",
            Event::BasesMerged { .. } => "bases_merged",
            Event::MergeConflict { .. } => "merge_conflict",
            Event::VerifyFinished { .. } => "verify_finished",
            Event::CarriedOver { .. } => "carried_over",
            Event::Reopened { .. } => "reopened",
            Event::CostExceeded { .. } => "cost_exceeded",
            Event::RunBudgetSpent { .. } => "run_budget_spent",
        }
    }
}

/// An event that the table does not allow in that stage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: event `{event}` in state {state}")]
pub struct IllegalTransition {
    pub state: StageKind,
    pub event: &'static str,
}

/// What a driver picking up an issue in `state` must do next (a fresh start, a resume after a
/// crash or Ctrl-C, or the step after any event that changed the stage).
pub fn resume(state: &State) -> Vec<Command> {
    let stage = &state.stage;
    let create = |wt: &Worktree| Command::CreateWorktree {
        path: wt.path.clone(),
        branch: wt.branch.clone(),
        base: wt.base.clone(),
        adopt: true,
        reuse: wt.reuse,
    };
    match stage {
        Stage::Pending => match &state.worktree {
            Some(wt) if wt.intended() => vec![create(wt)],
            _ => vec![Command::Prepare],
        },
        // A reopened issue whose worktree was removed gets it back (on its branch) first.
        Stage::WorktreeReady | Stage::Dev | Stage::Review { .. } | Stage::Fix { .. } | Stage::Verify { .. }
            if state.worktree.as_ref().is_some_and(Worktree::intended) =>
        {
            vec![create(state.worktree.as_ref().expect("an intended worktree"))]
        }
        Stage::WorktreeReady => match &state.worktree {
            Some(wt) if !wt.merge.is_empty() => {
                vec![Command::MergeBases { path: wt.path.clone(), parents: wt.merge.clone() }]
            }
            _ => vec![Command::StartPhase { phase: Phase::Dev, attempt: state.attempts + 1 }],
        },
        Stage::Verify { fix_cycles } => {
            let path = state.worktree.as_ref().map(|wt| wt.path.clone()).unwrap_or_default();
            vec![Command::Verify { path, cycle: *fix_cycles }]
        }
        Stage::Dev | Stage::Review { .. } | Stage::Fix { .. } => {
            let phase = stage.phase().expect("a phase stage");
            vec![Command::StartPhase { phase, attempt: state.attempts + 1 }]
        }
        Stage::Done { .. } | Stage::Capped { .. } | Stage::Blocked { .. } | Stage::Failed { .. } => {
            match &state.worktree {
                Some(wt) if wt.live() => match stage {
                    Stage::Done { .. } | Stage::Capped { .. } => {
                        vec![Command::RemoveWorktree { path: wt.path.clone(), branch: wt.branch.clone() }]
                    }
                    _ => vec![Command::KeepWorktree { path: wt.path.clone(), ended: stage.kind() }],
                },
                _ => vec![Command::Finish],
            }
        }
    }
}

/// The command a driver takes next for an issue: the first of `next` (the commands the machine
/// emitted last), or, once none is left, the first of what resuming the issue's state asks for
/// (`state` is asked only then). The local drive and Restate's workflow both take their commands
/// here, so a worker's drive and the far workflow cannot disagree on the order.
pub fn next_command<S: std::borrow::Borrow<State>>(next: &mut Vec<Command>, state: impl FnOnce() -> S) -> Command {
    upcoming(next, state);
    next.remove(0)
}

/// The command [`next_command`] would take, left first in `next`.
pub fn upcoming<S: std::borrow::Borrow<State>>(next: &mut Vec<Command>, state: impl FnOnce() -> S) -> &Command {
    if next.is_empty() {
        *next = resume(state().borrow());
    }
    &next[0]
}

/// Where `loop retry` resumes an ended issue: the step that ended it, or the next fix when a
/// review (or the checks) still wanted changes. An issue whose worktree never existed starts over.
pub fn reopen_stage(state: &State) -> Stage {
    use Reason as R;
    use Stage as S;
    if !state.worktree.as_ref().is_some_and(Worktree::created) {
        return S::Pending;
    }
    let fix_cycles = state.stage.fix_cycles();
    let again = if fix_cycles == 0 { S::Dev } else { S::Fix { cycle: fix_cycles } };
    match &state.stage {
        // A cost budget stopped the issue between steps: it goes on where it was stopped.
        S::Capped { fix_cycles, reason: R::CostExceeded { at, .. } | R::RunBudgetSpent { at, .. } } => match at {
            StageKind::Dev => S::Dev,
            StageKind::Review => S::Review { fix_cycles: *fix_cycles },
            StageKind::Fix => S::Fix { cycle: *fix_cycles },
            StageKind::Verify => S::Verify { fix_cycles: *fix_cycles },
            _ => S::WorktreeReady,
        },
        S::Capped { fix_cycles, .. } | S::Blocked { fix_cycles, reason: R::ReviewBlocked } => {
            S::Fix { cycle: fix_cycles + 1 }
        }
        S::Blocked { reason: R::DevDeferred, .. } | S::Failed { reason: R::DevFailed, .. } => S::Dev,
        S::Blocked { reason: R::FixDeferred { cycle }, .. } | S::Failed { reason: R::FixFailed { cycle }, .. } => {
            S::Fix { cycle: *cycle }
        }
        S::Failed { reason: R::PhaseFailed { phase, .. }, fix_cycles } => match phase {
            Phase::Dev => S::Dev,
            Phase::Review => S::Review { fix_cycles: *fix_cycles },
            Phase::Fix => S::Fix { cycle: *fix_cycles },
        },
        S::Blocked { reason: R::MergeConflict { .. } | R::DependencyNotDone { .. }, .. }
        | S::Failed { reason: R::StackTrackFailed { .. } | R::WorktreeFailed { .. }, .. } => S::WorktreeReady,
        _ => again,
    }
}

/// The transition table: the next state and the commands the driver must carry out.
pub fn transition(state: &State, event: &Event, rules: &Rules) -> Result<(State, Vec<Command>), IllegalTransition> {
    let mut next = state.clone();
    let (commands, _) = transition_in_place(&mut next, event, rules)?;
    Ok((next, commands))
}

/// What [`transition_in_place`] changed, kept so the change can be taken back: the previous
/// stage (moved out, not copied), the counters, and the session and worktree only when the
/// step replaced them (a worktree is copied only by the few events that edit it).
#[derive(Debug)]
pub struct Undo {
    /// The stage the state left.
    pub stage: Stage,
    attempts: u32,
    extra_fix_cycles: u32,
    session: Option<Option<String>>,
    worktree: Option<Option<Worktree>>,
}

impl Undo {
    /// Puts `state` back as it was before the step that returned this.
    pub fn restore(self, state: &mut State) {
        state.stage = self.stage;
        state.attempts = self.attempts;
        state.extra_fix_cycles = self.extra_fix_cycles;
        if let Some(session) = self.session {
            state.session = session;
        }
        if let Some(worktree) = self.worktree {
            state.worktree = worktree;
        }
    }
}

/// [`transition`] on the state itself: on success `state` is the next state, and the returned
/// [`Undo`] takes it back; on an illegal transition `state` is untouched. The same table and
/// the same result as [`transition`] (which is this on a copy), without copying the state for
/// every event: replay folds a million records through here.
pub fn transition_in_place(
    state: &mut State,
    event: &Event,
    rules: &Rules,
) -> Result<(Vec<Command>, Undo), IllegalTransition> {
    use Event as E;
    use Stage as S;
    // The events whose arms below edit the worktree: the only ones that pay for a copy to undo.
    let undo_worktree = matches!(
        event,
        E::WorktreeIntent { .. }
            | E::WorktreeCreated { .. }
            | E::BasesMerged { .. }
            | E::WorktreeRemoved { .. }
            | E::WorktreeKept { .. }
            | E::Reopened { .. }
    )
    .then(|| state.worktree.clone());
    let mut extra_fix_cycles = state.extra_fix_cycles;
    let limit = state.fix_limit(rules);
    let failed = |reason: Reason| S::Failed { fix_cycles: state.stage.fix_cycles(), reason };
    let intended = state.worktree.as_ref().is_some_and(Worktree::intended);
    let merging = state.worktree.as_ref().is_some_and(|wt| wt.created() && !wt.merge.is_empty());
    // The work of dev or fix N passed: loop's checks come first when the issue has any.
    let verified_next =
        |fix_cycles: u32| if rules.verify { S::Verify { fix_cycles } } else { S::Review { fix_cycles } };
    let stage = match (&state.stage, event) {
        (S::Pending, E::DependencyNotDone { dependency, dependency_state }) => S::Blocked {
            fix_cycles: 0,
            reason: Reason::DependencyNotDone { dependency: dependency.clone(), state: *dependency_state },
        },
        (S::Pending, E::WorktreeIntent { path, branch, base, merge, reuse }) => {
            state.worktree = Some(Worktree {
                path: path.clone(),
                branch: branch.clone(),
                base: base.clone(),
                life: Life::Intended,
                merge: merge.clone(),
                reuse: *reuse,
            });
            S::Pending
        }
        (S::Pending, E::WorktreeCreated { path, branch, base }) => {
            // The intent's pending merges (if one was journaled) survive the creation.
            let (merge, reuse) = match &state.worktree {
                Some(wt) if wt.path == *path => (wt.merge.clone(), wt.reuse),
                _ => (Vec::new(), false),
            };
            state.worktree = Some(Worktree {
                path: path.clone(),
                branch: branch.clone(),
                base: base.clone(),
                life: Life::Created,
                merge,
                reuse,
            });
            S::WorktreeReady
        }
        // A reopened issue's worktree is back: the issue goes on where it was.
        (
            S::WorktreeReady | S::Dev | S::Review { .. } | S::Fix { .. } | S::Verify { .. },
            E::WorktreeCreated { .. },
        ) if intended => {
            if let Some(wt) = state.worktree.as_mut() {
                wt.life = Life::Created;
            }
            state.stage.clone()
        }
        (S::Pending, E::WorktreeFailed { reason }) => {
            S::Failed { fix_cycles: 0, reason: Reason::WorktreeFailed { detail: reason.clone() } }
        }
        (S::WorktreeReady, E::StackTrackFailed { parent, error }) => S::Failed {
            fix_cycles: 0,
            reason: Reason::StackTrackFailed { parent: parent.clone(), error: error.clone() },
        },
        (S::WorktreeReady, E::BasesMerged { commit }) if merging => {
            if let Some(wt) = state.worktree.as_mut() {
                wt.base = commit.clone();
                wt.merge.clear();
            }
            S::WorktreeReady
        }
        (S::WorktreeReady, E::MergeConflict { parent, files }) if merging => {
            S::Blocked { fix_cycles: 0, reason: Reason::MergeConflict { parent: parent.clone(), files: files.clone() } }
        }
        (S::Pending, E::CarriedOver { .. }) if state.worktree.is_none() => S::Done { fix_cycles: 0 },

        (S::WorktreeReady, E::PhaseStarted { phase: Phase::Dev, .. }) if !intended && !merging => S::Dev,
        (S::Dev, E::PhaseStarted { phase: Phase::Dev, .. })
        | (S::Review { .. }, E::PhaseStarted { phase: Phase::Review, .. })
        | (S::Fix { .. }, E::PhaseStarted { phase: Phase::Fix, .. })
            if !intended =>
        {
            state.stage.clone()
        }
        (S::Dev, E::SessionStarted { phase: Phase::Dev, .. })
        | (S::Review { .. }, E::SessionStarted { phase: Phase::Review, .. })
        | (S::Fix { .. }, E::SessionStarted { phase: Phase::Fix, .. }) => state.stage.clone(),

        // A dev or fix with checks ends its phase in Verify: the token budget stops it there too.
        (
            S::WorktreeReady | S::Dev | S::Review { .. } | S::Fix { .. } | S::Verify { .. },
            E::BudgetExceeded { used, limit },
        ) => S::Capped {
            fix_cycles: state.stage.fix_cycles(),
            reason: Reason::BudgetExceeded { used: *used, limit: *limit },
        },

        // After dev or a fix the issue may be in Verify already: the budget stops it there too.
        (
            S::WorktreeReady | S::Dev | S::Review { .. } | S::Fix { .. } | S::Verify { .. },
            E::CostExceeded { used_micro_usd, limit_micro_usd },
        ) => S::Capped {
            fix_cycles: state.stage.fix_cycles(),
            reason: Reason::CostExceeded {
                used_micro_usd: *used_micro_usd,
                limit_micro_usd: *limit_micro_usd,
                at: state.stage.kind(),
            },
        },
        (S::Pending, E::RunBudgetSpent { used_micro_usd, limit_micro_usd }) => S::Blocked {
            fix_cycles: 0,
            reason: Reason::RunBudgetSpent {
                used_micro_usd: *used_micro_usd,
                limit_micro_usd: *limit_micro_usd,
                at: StageKind::Pending,
            },
        },
        (
            S::WorktreeReady | S::Dev | S::Review { .. } | S::Fix { .. },
            E::RunBudgetSpent { used_micro_usd, limit_micro_usd },
        ) => S::Capped {
            fix_cycles: state.stage.fix_cycles(),
            reason: Reason::RunBudgetSpent {
                used_micro_usd: *used_micro_usd,
                limit_micro_usd: *limit_micro_usd,
                at: state.stage.kind(),
            },
        },

        (S::Dev, E::WorkFinished { phase: Phase::Dev, status }) => match status {
            WorkStatus::Pass => verified_next(0),
            WorkStatus::Failed => S::Failed { fix_cycles: 0, reason: Reason::DevFailed },
            WorkStatus::Deferred => S::Blocked { fix_cycles: 0, reason: Reason::DevDeferred },
        },
        (S::Fix { cycle }, E::WorkFinished { phase: Phase::Fix, status }) => match status {
            WorkStatus::Pass => verified_next(*cycle),
            WorkStatus::Failed => S::Failed { fix_cycles: *cycle, reason: Reason::FixFailed { cycle: *cycle } },
            WorkStatus::Deferred => S::Blocked { fix_cycles: *cycle, reason: Reason::FixDeferred { cycle: *cycle } },
        },
        (S::Verify { fix_cycles }, E::VerifyFinished { failures }) if !intended => {
            if failures.is_empty() {
                S::Review { fix_cycles: *fix_cycles }
            } else if *fix_cycles >= limit {
                S::Capped { fix_cycles: *fix_cycles, reason: Reason::ChecksStillFailing { max_fix_cycles: limit } }
            } else {
                S::Fix { cycle: fix_cycles + 1 }
            }
        }

        (S::Review { fix_cycles }, E::ReviewFinished { verdict }) => match verdict {
            Verdict::Pass => S::Done { fix_cycles: *fix_cycles },
            Verdict::Blocked => S::Blocked { fix_cycles: *fix_cycles, reason: Reason::ReviewBlocked },
            Verdict::ChangesRequired if *fix_cycles >= limit => {
                S::Capped { fix_cycles: *fix_cycles, reason: Reason::ChangesStillRequired { max_fix_cycles: limit } }
            }
            Verdict::ChangesRequired => S::Fix { cycle: fix_cycles + 1 },
        },

        (S::Dev, E::PhaseFailed { phase: phase @ Phase::Dev, reason })
        | (S::Review { .. }, E::PhaseFailed { phase: phase @ Phase::Review, reason })
        | (S::Fix { .. }, E::PhaseFailed { phase: phase @ Phase::Fix, reason }) => {
            failed(Reason::PhaseFailed { phase: *phase, detail: reason.clone() })
        }
        (S::Dev, E::GuardCheckFailed { phase: Phase::Dev, details })
        | (S::Review { .. }, E::GuardCheckFailed { phase: Phase::Review, details })
        | (S::Fix { .. }, E::GuardCheckFailed { phase: Phase::Fix, details }) => {
            failed(Reason::GuardCheckFailed { details: details.clone() })
        }
        (S::Dev, E::GuardViolation { phase: Phase::Dev, changes })
        | (S::Review { .. }, E::GuardViolation { phase: Phase::Review, changes })
        | (S::Fix { .. }, E::GuardViolation { phase: Phase::Fix, changes }) => {
            failed(Reason::GuardViolation { changes: changes.clone() })
        }

        (S::Done { .. } | S::Capped { .. } | S::Failed { .. } | S::Blocked { .. }, E::WorktreeRemoved { .. }) => {
            // A kept worktree may be removed later (`loop clean`); one never created stays so.
            if let Some(wt) = state.worktree.as_mut().filter(|wt| matches!(wt.life, Life::Created | Life::Kept { .. }))
            {
                wt.life = Life::Removed;
            }
            state.stage.clone()
        }
        (S::Done { .. } | S::Capped { .. } | S::Failed { .. } | S::Blocked { .. }, E::WorktreeKept { reason, .. }) => {
            if let Some(wt) = state.worktree.as_mut().filter(|wt| wt.live()) {
                wt.life = Life::Kept { reason: reason.clone() };
            }
            state.stage.clone()
        }
        (S::Capped { .. } | S::Failed { .. } | S::Blocked { .. }, E::Reopened { extra_fix_cycles: extra }) => {
            let stage = reopen_stage(state);
            // Never beyond the limit: a retry always grants at least the cycle it resumes in.
            let needed = stage.fix_cycles().saturating_sub(rules.max_fix_cycles);
            extra_fix_cycles = extra_fix_cycles.saturating_add(*extra).max(needed);
            if let Some(wt) = state.worktree.as_mut() {
                match wt.life {
                    // Removed after the end: created again on the same branch, as it is.
                    Life::Removed => {
                        wt.life = Life::Intended;
                        wt.reuse = true;
                    }
                    Life::Kept { .. } => wt.life = Life::Created,
                    Life::Intended | Life::Created => {}
                }
            }
            stage
        }

        (
            S::Pending
            | S::WorktreeReady
            | S::Dev
            | S::Review { .. }
            | S::Fix { .. }
            | S::Verify { .. }
            | S::Done { .. }
            | S::Capped { .. }
            | S::Blocked { .. }
            | S::Failed { .. },
            E::DependencyNotDone { .. }
            | E::WorktreeIntent { .. }
            | E::WorktreeCreated { .. }
            | E::WorktreeFailed { .. }
            | E::StackTrackFailed { .. }
            | E::PhaseStarted { .. }
            | E::SessionStarted { .. }
            | E::BudgetExceeded { .. }
            | E::WorkFinished { .. }
            | E::ReviewFinished { .. }
            | E::PhaseFailed { .. }
            | E::GuardCheckFailed { .. }
            | E::GuardViolation { .. }
            | E::WorktreeRemoved { .. }
            | E::WorktreeKept { .. }
            | E::BasesMerged { .. }
            | E::MergeConflict { .. }
            | E::VerifyFinished { .. }
            | E::CarriedOver { .. }
            | E::Reopened { .. }
            | E::CostExceeded { .. }
            | E::RunBudgetSpent { .. },
        ) => return Err(IllegalTransition { state: state.stage.kind(), event: event.name() }),
    };
    let mut undo = Undo {
        stage: std::mem::replace(&mut state.stage, stage),
        attempts: state.attempts,
        extra_fix_cycles: state.extra_fix_cycles,
        session: None,
        worktree: undo_worktree,
    };
    state.extra_fix_cycles = extra_fix_cycles;
    // Attempts and the session belong to one stage: a new stage starts them afresh.
    if state.stage != undo.stage {
        state.attempts = 0;
        undo.session = Some(state.session.take());
    }
    match event {
        E::PhaseStarted { .. } => state.attempts += 1,
        E::SessionStarted { session: s, .. } => {
            let before = state.session.replace(s.clone());
            undo.session.get_or_insert(before);
        }
        _ => {}
    }
    let next = &*state;
    let commands = match event {
        E::WorktreeIntent { path, branch, base, reuse, .. } => {
            vec![Command::CreateWorktree {
                path: path.clone(),
                branch: branch.clone(),
                base: base.clone(),
                adopt: false,
                reuse: *reuse,
            }]
        }
        E::PhaseStarted { phase, .. } => vec![Command::RunPhase {
            phase: *phase,
            cycle: next.stage.cycle(),
            attempt: next.attempts,
            resume_session: next.session.clone(),
        }],
        // The phase keeps running: nothing new to do.
        E::SessionStarted { .. } => Vec::new(),
        _ => resume(next),
    };
    Ok((commands, undo))
}

/// Something to journal about an issue: an event for its machine, or an audit fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Machine(Event),
    Audit(Fact),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_command_is_the_first_emitted_then_what_resuming_asks_for() {
        let mut next = vec![Command::Finish];
        let unasked = || -> State { panic!("the state is asked while emitted commands are left") };
        assert_eq!(next_command(&mut next, unasked), Command::Finish);
        let resumed = resume(&State::PENDING);
        assert_eq!(upcoming(&mut next, || State::PENDING), &resumed[0]);
        assert_eq!(next, resumed, "upcoming leaves the command in place");
        assert_eq!(next_command(&mut next, || &State::PENDING), resumed[0]);
    }

    fn run(events: &[Event]) -> Result<State, IllegalTransition> {
        let rules = Rules::default();
        events.iter().try_fold(State::PENDING, |s, e| transition(&s, e, &rules).map(|(s, _)| s))
    }

    fn wt() -> Vec<Event> {
        vec![
            Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() },
            Event::PhaseStarted { phase: Phase::Dev, attempt: 1 },
            Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
        ]
    }

    #[test]
    fn happy_path_reaches_done_and_asks_for_the_worktree_removal() {
        let mut ev = wt();
        ev.push(Event::ReviewFinished { verdict: Verdict::Pass });
        let s = run(&ev).unwrap();
        assert_eq!(s.stage, Stage::Done { fix_cycles: 0 });
        assert_eq!(resume(&s), vec![Command::RemoveWorktree { path: "p".into(), branch: "b".into() }]);
        let (s, cmds) = transition(&s, &Event::WorktreeRemoved { path: "p".into() }, &Rules::default()).unwrap();
        assert!(s.worktree.as_ref().unwrap().removed());
        assert_eq!(cmds, vec![Command::Finish]);
    }

    #[test]
    fn third_changes_required_caps() {
        let mut ev = wt();
        for _ in 0..2 {
            ev.push(Event::ReviewFinished { verdict: Verdict::ChangesRequired });
            ev.push(Event::PhaseStarted { phase: Phase::Fix, attempt: 1 });
            ev.push(Event::WorkFinished { phase: Phase::Fix, status: WorkStatus::Pass });
        }
        assert_eq!(run(&ev).unwrap().stage, Stage::Review { fix_cycles: 2 });
        ev.push(Event::ReviewFinished { verdict: Verdict::ChangesRequired });
        let s = run(&ev).unwrap();
        assert!(matches!(&s.stage, Stage::Capped { fix_cycles: 2, .. }));
        assert_eq!(s.reason().unwrap().to_string(), "changes still required after 2 fix cycles");
    }

    #[test]
    fn a_rerun_phase_counts_attempts_and_continues_its_session() {
        let rules = Rules::default();
        let mut s = run(&wt()[..2]).unwrap();
        assert_eq!(s.attempts, 1);
        s = transition(&s, &Event::SessionStarted { phase: Phase::Dev, session: "t1".into() }, &rules).unwrap().0;
        assert_eq!(resume(&s), vec![Command::StartPhase { phase: Phase::Dev, attempt: 2 }]);
        let (s, cmds) = transition(&s, &Event::PhaseStarted { phase: Phase::Dev, attempt: 2 }, &rules).unwrap();
        assert_eq!(
            cmds,
            vec![Command::RunPhase { phase: Phase::Dev, cycle: 0, attempt: 2, resume_session: Some("t1".into()) }]
        );
        let (s, cmds) =
            transition(&s, &Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass }, &rules).unwrap();
        assert_eq!((s.attempts, s.session.as_deref()), (0, None), "a new stage starts afresh");
        assert_eq!(cmds, vec![Command::StartPhase { phase: Phase::Review, attempt: 1 }]);
    }

    #[test]
    fn guard_failures_fail_the_phase() {
        let ev = wt()[..2].to_vec();
        let mut v = ev.clone();
        v.push(Event::GuardViolation { phase: Phase::Dev, changes: vec!["ref refs/heads/x created".into()] });
        let s = run(&v).unwrap();
        assert!(matches!(&s.stage, Stage::Failed { reason: Reason::GuardViolation { .. }, .. }), "{s:?}");
        assert!(s.reason().unwrap().to_string().contains("refs/heads/x"));
        assert_eq!(resume(&s), vec![Command::KeepWorktree { path: "p".into(), ended: StageKind::Failed }]);
        let mut v = ev.clone();
        v.push(Event::GuardCheckFailed { phase: Phase::Dev, details: vec!["main checkout is not clean".into()] });
        assert_eq!(run(&v).unwrap().reason().unwrap().to_string(), "guard: main checkout is not clean");
        let mut v = ev;
        v.push(Event::GuardCheckFailed { phase: Phase::Review, details: vec![] });
        assert!(run(&v).is_err());
    }

    #[test]
    fn review_before_dev_is_illegal() {
        let err = run(&[Event::ReviewFinished { verdict: Verdict::Pass }]).unwrap_err();
        assert_eq!((err.state, err.event), (StageKind::Pending, "review_finished"));
        assert_eq!(err.to_string(), "illegal transition: event `review_finished` in state Pending");
    }

    #[test]
    fn an_intent_is_created_fresh_and_adopted_on_resume() {
        let intent = Event::WorktreeIntent {
            path: "p".into(),
            branch: "b".into(),
            base: "c".into(),
            merge: vec![],
            reuse: false,
        };
        let (s, cmds) = transition(&State::PENDING, &intent, &Rules::default()).unwrap();
        let create = |adopt| Command::CreateWorktree {
            path: "p".into(),
            branch: "b".into(),
            base: "c".into(),
            adopt,
            reuse: false,
        };
        assert_eq!(cmds, vec![create(false)]);
        assert_eq!(resume(&s), vec![create(true)]);
        assert_eq!(resume(&State::PENDING), vec![Command::Prepare]);
    }

    fn intent(merge: Vec<String>) -> Event {
        Event::WorktreeIntent { path: "p".into(), branch: "b".into(), base: "c".into(), merge, reuse: false }
    }

    #[test]
    fn a_diamond_merges_its_other_dependencies_before_dev_and_a_conflict_blocks() {
        let rules = Rules::default();
        let s = run(&[intent(vec!["d2".into()])]).unwrap();
        let (s, _) =
            transition(&s, &Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() }, &rules)
                .unwrap();
        assert_eq!(resume(&s), vec![Command::MergeBases { path: "p".into(), parents: vec!["d2".into()] }]);
        let start = Event::PhaseStarted { phase: Phase::Dev, attempt: 1 };
        assert!(transition(&s, &start, &rules).is_err(), "dev waits for the merge");
        let (merged, cmds) = transition(&s, &Event::BasesMerged { commit: "m".into() }, &rules).unwrap();
        assert_eq!(merged.worktree.as_ref().unwrap().base, "m");
        assert_eq!(cmds, vec![Command::StartPhase { phase: Phase::Dev, attempt: 1 }]);
        let conflict = Event::MergeConflict { parent: "d2".into(), files: vec!["a.txt".into()] };
        let (blocked, cmds) = transition(&s, &conflict, &rules).unwrap();
        assert_eq!(blocked.reason().unwrap().to_string(), "merging d2 conflicted in a.txt");
        assert_eq!(cmds, vec![Command::KeepWorktree { path: "p".into(), ended: StageKind::Blocked }]);
    }

    #[test]
    fn verification_comes_before_review_and_a_failure_is_a_fix_cycle() {
        let rules = Rules { verify: true, ..Rules::with_max_fix_cycles(1) };
        let s = wt().iter().try_fold(State::PENDING, |s, e| transition(&s, e, &rules).map(|(s, _)| s)).unwrap();
        assert_eq!(s.stage, Stage::Verify { fix_cycles: 0 });
        assert_eq!(resume(&s), vec![Command::Verify { path: "p".into(), cycle: 0 }]);
        let failed = Event::VerifyFinished { failures: vec!["cargo test: exit 101".into()] };
        let (s, _) = transition(&s, &failed, &rules).unwrap();
        assert_eq!(s.stage, Stage::Fix { cycle: 1 });
        let s = [
            Event::PhaseStarted { phase: Phase::Fix, attempt: 1 },
            Event::WorkFinished { phase: Phase::Fix, status: WorkStatus::Pass },
        ]
        .iter()
        .try_fold(s, |s, e| transition(&s, e, &rules).map(|(s, _)| s))
        .unwrap();
        assert_eq!(s.stage, Stage::Verify { fix_cycles: 1 });
        let (capped, _) = transition(&s, &failed, &rules).unwrap();
        assert_eq!(capped.reason().unwrap().to_string(), "checks still failing after 1 fix cycles");
        let (passed, _) = transition(&s, &Event::VerifyFinished { failures: vec![] }, &rules).unwrap();
        assert_eq!(passed.stage, Stage::Review { fix_cycles: 1 });
    }

    #[test]
    fn a_retried_capped_issue_gets_its_worktree_back_and_one_more_fix() {
        let rules = Rules::with_max_fix_cycles(0);
        let mut ev = wt();
        ev.push(Event::ReviewFinished { verdict: Verdict::ChangesRequired });
        ev.push(Event::WorktreeRemoved { path: "p".into() });
        let s = run_with(&ev, &rules);
        assert!(matches!(s.stage, Stage::Capped { .. }));
        let (s, cmds) = transition(&s, &Event::Reopened { extra_fix_cycles: 1 }, &rules).unwrap();
        assert_eq!((s.stage.clone(), s.extra_fix_cycles), (Stage::Fix { cycle: 1 }, 1));
        assert_eq!(
            cmds,
            vec![Command::CreateWorktree {
                path: "p".into(),
                branch: "b".into(),
                base: "c".into(),
                adopt: true,
                reuse: true
            }]
        );
        let (s, cmds) =
            transition(&s, &Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() }, &rules)
                .unwrap();
        assert_eq!(cmds, vec![Command::StartPhase { phase: Phase::Fix, attempt: 1 }]);
        assert!(s.worktree.as_ref().unwrap().live());
        assert!(transition(&State::PENDING, &Event::Reopened { extra_fix_cycles: 1 }, &rules).is_err());
    }

    /// A token budget spent by a dev or fix whose issue has checks: the phase's result moved the
    /// issue to Verify before the engine appended `budget_exceeded`, which was illegal there.
    #[test]
    fn a_token_budget_caps_an_issue_waiting_for_its_checks() {
        let rules = Rules::default();
        let verify = State { stage: Stage::Verify { fix_cycles: 1 }, ..State::PENDING };
        let (s, cmds) = transition(&verify, &Event::BudgetExceeded { used: 9, limit: 5 }, &rules).unwrap();
        assert_eq!(s.stage, Stage::Capped { fix_cycles: 1, reason: Reason::BudgetExceeded { used: 9, limit: 5 } });
        assert!(cmds.contains(&Command::Finish), "{cmds:?}");
    }

    #[test]
    fn a_cost_budget_caps_between_steps_and_a_retry_goes_on_where_it_stopped() {
        let rules = Rules::default();
        let mut events = wt();
        events.push(Event::CostExceeded { used_micro_usd: 3, limit_micro_usd: 2 });
        let s = run(&events).unwrap();
        let reason = Reason::CostExceeded { used_micro_usd: 3, limit_micro_usd: 2, at: StageKind::Review };
        assert_eq!(s.stage, Stage::Capped { fix_cycles: 0, reason });
        // The review that was due runs after the retry (not a fix of a review that never ran).
        let (s, _) = transition(&s, &Event::Reopened { extra_fix_cycles: 0 }, &rules).unwrap();
        assert_eq!(s.stage, Stage::Review { fix_cycles: 0 });
        // The run budget blocks an issue that never started; a retry starts it from the beginning.
        let spent = Event::RunBudgetSpent { used_micro_usd: 5, limit_micro_usd: 5 };
        let (s, cmds) = transition(&State::PENDING, &spent, &rules).unwrap();
        assert!(matches!(
            s.stage,
            Stage::Blocked { reason: Reason::RunBudgetSpent { at: StageKind::Pending, .. }, .. }
        ));
        assert_eq!(cmds, [Command::Finish]);
        assert_eq!(transition(&s, &Event::Reopened { extra_fix_cycles: 0 }, &rules).unwrap().0.stage, Stage::Pending);
        // Verify is no phase: the run budget is checked before phases, never there.
        let verify = State { stage: Stage::Verify { fix_cycles: 0 }, ..State::PENDING };
        assert!(transition(&verify, &spent, &Rules { verify: true, ..rules }).is_err());
    }

    #[test]
    fn a_carried_over_issue_is_done_without_a_worktree() {
        let ev = Event::CarriedOver { run: "r1".into(), branch: "b".into(), tip: "t".into() };
        let (s, cmds) = transition(&State::PENDING, &ev, &Rules::default()).unwrap();
        assert_eq!((s.stage, cmds), (Stage::Done { fix_cycles: 0 }, vec![Command::Finish]));
    }

    fn run_with(events: &[Event], rules: &Rules) -> State {
        events.iter().try_fold(State::PENDING, |s, e| transition(&s, e, rules).map(|(s, _)| s)).unwrap()
    }
}
