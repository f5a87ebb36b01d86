//! The per-issue state machine: states, events, and the one transition table.
//!
//! Invariants:
//! - [`transition`] is pure: no I/O, no clock, no randomness. Everything that decides a
//!   transition travels inside the [`Event`], so replaying the journal re-derives every state.
//! - The table is a single exhaustive `match (state, event)`; every pair it does not name is an
//!   [`IllegalTransition`].
//! - The fix-cycle count is part of the state, so "how many fixes so far" never lives anywhere else.

use serde::{Deserialize, Serialize};

pub use crate::vocab::{Rules, DEFAULT_MAX_FIX_CYCLES};




/// Where one issue stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Not started.
    Pending,
    /// The worktree exists; dev has not started.
    WorktreeReady,
    /// The dev phase is due or running.
    Dev,
    /// A review is due or running; `fix_cycles` fixes have happened so far.
    Review { fix_cycles: u32 },
    /// Fix number `cycle` (1-based) is due or running.
    Fix { cycle: u32 },
    Done { fix_cycles: u32 },
    Capped { fix_cycles: u32, reason: String },
    Blocked { fix_cycles: u32, reason: String },
    Failed { fix_cycles: u32, reason: String },
}

impl State {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            State::Done { .. } | State::Capped { .. } | State::Blocked { .. } | State::Failed { .. }
        )
    }

    /// Fix cycles entered so far (a fix in progress counts).
    pub fn fix_cycles(&self) -> u32 {
        match self {
            State::Pending | State::WorktreeReady | State::Dev => 0,
            State::Fix { cycle: fix_cycles }
            | State::Review { fix_cycles }
            | State::Done { fix_cycles }
            | State::Capped { fix_cycles, .. }
            | State::Blocked { fix_cycles, .. }
            | State::Failed { fix_cycles, .. } => *fix_cycles,
        }
    }

    /// The short name used in status output and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "Pending",
            State::WorktreeReady => "WorktreeReady",
            State::Dev => "Dev",
            State::Review { .. } => "Review",
            State::Fix { .. } => "Fix",
            State::Done { .. } => "Done",
            State::Capped { .. } => "Capped",
            State::Blocked { .. } => "Blocked",
            State::Failed { .. } => "Failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            State::Capped { reason, .. } | State::Blocked { reason, .. } | State::Failed { reason, .. } => {
                Some(reason)
            }
            _ => None,
        }
    }

    /// The phase an agent runs in this state, if any.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            State::Dev => Some(Phase::Dev),
            State::Review { .. } => Some(Phase::Review),
            State::Fix { .. } => Some(Phase::Fix),
            _ => None,
        }
    }
}

/// An agent phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Dev,
    Review,
    Fix,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dev => "dev",
            Phase::Review => "review",
            Phase::Fix => "fix",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Everything that can happen to an issue. Each event carries the inputs that decide its
/// transition; richer evidence (raw agent output, exit code, timings) rides beside it in the
/// journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A dependency finished in a state other than Done, so this issue can never start.
    DependencyNotDone { dependency: String, dependency_state: String },
    /// The orchestrator is about to create the worktree (journaled first: the licence to touch it).
    WorktreeIntent { path: String, branch: String, base: String },
    /// The worktree exists on its branch.
    WorktreeCreated { path: String, branch: String, base: String },
    /// The worktree could not be created (or adopted); the issue cannot start.
    WorktreeFailed { reason: String },
    /// An agent phase is starting (again, after a crash or interruption, if already started).
    PhaseStarted { phase: Phase, attempt: u32 },
    /// The agent's session for the running phase exists (journaled the moment it is known, so
    /// resume can continue it).
    SessionStarted { phase: Phase, session: String },
    /// The issue used more tokens than its budget allows.
    BudgetExceeded { used: u64, limit: u64 },
    /// Dev or fix finished with this status.
    WorkFinished { phase: Phase, status: WorkStatus },
    /// A review finished with this verdict.
    ReviewFinished { verdict: Verdict },
    /// A phase could not produce a usable result: crash, timeout, unusable output.
    PhaseFailed { phase: Phase, reason: String },
    /// Ctrl-C or another stop request reached a running issue; the phase will run again on resume.
    Interrupted,
    /// The worktree was removed after the issue ended (the branch stays).
    WorktreeRemoved { path: String },
    /// The worktree was kept after the issue ended, with the reason.
    WorktreeKept { path: String, reason: String },
    /// The guard's before-phase check (main checkout, worktree ownership and branch).
    GuardChecked { phase: Phase, ok: bool, details: Vec<String> },
    /// After the phase, things outside the branch and worktree had changed.
    GuardViolation { phase: Phase, changes: Vec<String> },
    /// A git/gt shim or the Claude Code hook classified a command the agent ran.
    CommandDecided { phase: Phase, tool: String, argv: Vec<String>, allowed: bool, rule: String },
    /// `gt track` of the new worktree's branch onto its parent (`--stack graphite`).
    StackTracked { parent: String, error: Option<String> },
    /// `gt submit --draft` at Done (`--submit draft`); a failure is reported, the issue stays Done.
    StackSubmitted { ok: bool, detail: String },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::DependencyNotDone { .. } => "dependency_not_done",
            Event::WorktreeIntent { .. } => "worktree_intent",
            Event::WorktreeCreated { .. } => "worktree_created",
            Event::WorktreeFailed { .. } => "worktree_failed",
            Event::PhaseStarted { .. } => "phase_started",
            Event::SessionStarted { .. } => "session_started",
            Event::BudgetExceeded { .. } => "budget_exceeded",
            Event::WorkFinished { .. } => "work_finished",
            Event::ReviewFinished { .. } => "review_finished",
            Event::PhaseFailed { .. } => "phase_failed",
            Event::Interrupted => "interrupted",
            Event::WorktreeRemoved { .. } => "worktree_removed",
            Event::WorktreeKept { .. } => "worktree_kept",
            Event::GuardChecked { .. } => "guard_checked",
            Event::GuardViolation { .. } => "guard_violation",
            Event::CommandDecided { .. } => "command_decided",
            Event::StackTracked { .. } => "stack_tracked",
            Event::StackSubmitted { .. } => "stack_submitted",
        }
    }
}

/// An event that the table does not allow in that state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: event `{event}` in state {state}")]
pub struct IllegalTransition {
    pub state: String,
    pub event: String,
}

/// The transition table.
pub fn transition(state: &State, event: &Event, rules: &Rules) -> Result<State, IllegalTransition> {
    use Event as E;
    use State as S;
    let next = match (state, event) {
        (S::Pending, E::DependencyNotDone { dependency, dependency_state }) => S::Blocked {
            fix_cycles: 0,
            reason: format!("dependency {dependency} ended {dependency_state}"),
        },
        (S::Pending, E::WorktreeIntent { .. }) => S::Pending,
        (S::Pending, E::WorktreeCreated { .. }) => S::WorktreeReady,

        (S::WorktreeReady, E::PhaseStarted { phase: Phase::Dev, .. }) => S::Dev,
        (S::Dev, E::PhaseStarted { phase: Phase::Dev, .. }) => S::Dev,
        (S::Review { fix_cycles }, E::PhaseStarted { phase: Phase::Review, .. }) => {
            S::Review { fix_cycles: *fix_cycles }
        }
        (S::Fix { cycle }, E::PhaseStarted { phase: Phase::Fix, .. }) => S::Fix { cycle: *cycle },

        (S::Dev, E::SessionStarted { phase: Phase::Dev, .. })
        | (S::Review { .. }, E::SessionStarted { phase: Phase::Review, .. })
        | (S::Fix { .. }, E::SessionStarted { phase: Phase::Fix, .. }) => state.clone(),

        (S::WorktreeReady | S::Dev | S::Review { .. } | S::Fix { .. }, E::BudgetExceeded { used, limit }) => {
            S::Capped {
                fix_cycles: state.fix_cycles(),
                reason: format!("token budget exceeded: {used} used, limit {limit}"),
            }
        }

        (S::Dev, E::WorkFinished { phase: Phase::Dev, status }) => match status {
            WorkStatus::Pass => S::Review { fix_cycles: 0 },
            WorkStatus::Failed => S::Failed { fix_cycles: 0, reason: "dev agent reported failed".into() },
            WorkStatus::Deferred => S::Blocked { fix_cycles: 0, reason: "dev agent deferred the issue".into() },
        },
        (S::Fix { cycle }, E::WorkFinished { phase: Phase::Fix, status }) => match status {
            WorkStatus::Pass => S::Review { fix_cycles: *cycle },
            WorkStatus::Failed => S::Failed {
                fix_cycles: *cycle,
                reason: format!("fix agent reported failed in cycle {cycle}"),
            },
            WorkStatus::Deferred => S::Blocked {
                fix_cycles: *cycle,
                reason: format!("fix agent deferred in cycle {cycle}"),
            },
        },

        (S::Review { fix_cycles }, E::ReviewFinished { verdict }) => match verdict {
            Verdict::Pass => S::Done { fix_cycles: *fix_cycles },
            Verdict::Blocked => S::Blocked { fix_cycles: *fix_cycles, reason: "review said blocked".into() },
            Verdict::ChangesRequired if *fix_cycles >= rules.max_fix_cycles => S::Capped {
                fix_cycles: *fix_cycles,
                reason: format!("changes still required after {} fix cycles", rules.max_fix_cycles),
            },
            Verdict::ChangesRequired => S::Fix { cycle: fix_cycles + 1 },
        },

        (S::Dev, E::PhaseFailed { phase: Phase::Dev, reason })
        | (S::Review { .. }, E::PhaseFailed { phase: Phase::Review, reason })
        | (S::Fix { .. }, E::PhaseFailed { phase: Phase::Fix, reason }) => {
            S::Failed { fix_cycles: state.fix_cycles(), reason: reason.clone() }
        }
        (S::Pending, E::WorktreeFailed { reason }) => S::Failed { fix_cycles: 0, reason: reason.clone() },

        (S::Pending | S::WorktreeReady | S::Dev | S::Review { .. } | S::Fix { .. }, E::Interrupted) => {
            state.clone()
        }

        (S::Done { .. } | S::Capped { .. } | S::Failed { .. } | S::Blocked { .. }, E::WorktreeRemoved { .. })
        | (S::Done { .. } | S::Capped { .. } | S::Failed { .. } | S::Blocked { .. }, E::WorktreeKept { .. }) => {
            state.clone()
        }

        (S::Dev, E::GuardChecked { phase: Phase::Dev, ok, details })
        | (S::Review { .. }, E::GuardChecked { phase: Phase::Review, ok, details })
        | (S::Fix { .. }, E::GuardChecked { phase: Phase::Fix, ok, details }) => {
            if *ok {
                state.clone()
            } else {
                S::Failed { fix_cycles: state.fix_cycles(), reason: format!("guard: {}", details.join("; ")) }
            }
        }
        (S::Dev, E::GuardViolation { phase: Phase::Dev, changes })
        | (S::Review { .. }, E::GuardViolation { phase: Phase::Review, changes })
        | (S::Fix { .. }, E::GuardViolation { phase: Phase::Fix, changes }) => S::Failed {
            fix_cycles: state.fix_cycles(),
            reason: format!("guard: the agent changed things outside its worktree: {}", changes.join("; ")),
        },
        (S::Dev, E::CommandDecided { phase: Phase::Dev, .. })
        | (S::Review { .. }, E::CommandDecided { phase: Phase::Review, .. })
        | (S::Fix { .. }, E::CommandDecided { phase: Phase::Fix, .. }) => state.clone(),
        (S::WorktreeReady, E::StackTracked { parent, error }) => match error {
            None => S::WorktreeReady,
            Some(e) => S::Failed { fix_cycles: 0, reason: format!("gt track -p {parent}: {e}") },
        },
        (S::Done { .. }, E::StackSubmitted { .. }) => state.clone(),

        (
            S::Pending
            | S::WorktreeReady
            | S::Dev
            | S::Review { .. }
            | S::Fix { .. }
            | S::Done { .. }
            | S::Capped { .. }
            | S::Blocked { .. }
            | S::Failed { .. },
            E::DependencyNotDone { .. }
            | E::WorktreeIntent { .. }
            | E::WorktreeCreated { .. }
            | E::WorktreeFailed { .. }
            | E::PhaseStarted { .. }
            | E::SessionStarted { .. }
            | E::BudgetExceeded { .. }
            | E::WorkFinished { .. }
            | E::ReviewFinished { .. }
            | E::PhaseFailed { .. }
            | E::Interrupted
            | E::WorktreeRemoved { .. }
            | E::WorktreeKept { .. }
            | E::GuardChecked { .. }
            | E::GuardViolation { .. }
            | E::CommandDecided { .. }
            | E::StackTracked { .. }
            | E::StackSubmitted { .. },
        ) => {
            return Err(IllegalTransition { state: format!("{state:?}"), event: event.name().to_string() });
        }
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[Event]) -> Result<State, IllegalTransition> {
        let rules = Rules::default();
        events.iter().try_fold(State::Pending, |s, e| transition(&s, e, &rules))
    }

    fn wt() -> Vec<Event> {
        vec![
            Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() },
            Event::PhaseStarted { phase: Phase::Dev, attempt: 1 },
            Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
        ]
    }

    #[test]
    fn happy_path_reaches_done() {
        let mut ev = wt();
        ev.push(Event::ReviewFinished { verdict: Verdict::Pass });
        assert_eq!(run(&ev).unwrap(), State::Done { fix_cycles: 0 });
    }

    #[test]
    fn third_changes_required_caps() {
        let mut ev = wt();
        for _ in 0..2 {
            ev.push(Event::ReviewFinished { verdict: Verdict::ChangesRequired });
            ev.push(Event::PhaseStarted { phase: Phase::Fix, attempt: 1 });
            ev.push(Event::WorkFinished { phase: Phase::Fix, status: WorkStatus::Pass });
        }
        assert_eq!(run(&ev).unwrap(), State::Review { fix_cycles: 2 });
        ev.push(Event::ReviewFinished { verdict: Verdict::ChangesRequired });
        assert!(matches!(run(&ev).unwrap(), State::Capped { fix_cycles: 2, .. }));
    }

    #[test]
    fn guard_failures_fail_the_phase_and_decisions_do_not_move_it() {
        let mut ev = wt()[..2].to_vec();
        let decided = Event::CommandDecided {
            phase: Phase::Dev,
            tool: "gt".into(),
            argv: vec!["sync".into()],
            allowed: false,
            rule: "gt-sync-restack".into(),
        };
        ev.push(Event::GuardChecked { phase: Phase::Dev, ok: true, details: vec![] });
        ev.push(decided);
        assert_eq!(run(&ev).unwrap(), State::Dev);
        ev.push(Event::GuardViolation { phase: Phase::Dev, changes: vec!["ref refs/heads/x created".into()] });
        let s = run(&ev).unwrap();
        assert!(matches!(&s, State::Failed { reason, .. } if reason.contains("refs/heads/x")), "{s:?}");
        let dirty = Event::GuardChecked { phase: Phase::Dev, ok: false, details: vec!["main checkout is not clean".into()] };
        assert!(matches!(run(&[wt()[0].clone(), wt()[1].clone(), dirty]).unwrap(), State::Failed { .. }));
        let bad = Event::GuardChecked { phase: Phase::Review, ok: true, details: vec![] };
        assert!(run(&[wt()[0].clone(), wt()[1].clone(), bad]).is_err());
    }

    #[test]
    fn review_before_dev_is_illegal() {
        let err = run(&[Event::ReviewFinished { verdict: Verdict::Pass }]).unwrap_err();
        assert_eq!(err.event, "review_finished");
    }
}
