//! Why an issue ended Capped, Blocked or Failed, as data.
//!
//! Invariants:
//! - The machine only ever builds typed reasons; English exists only in [`Reason`]'s `Display`,
//!   which renders exactly the text format-1 journals stored, so status output, JSON and tests
//!   read the same as before the reasons were typed.
//! - [`Reason::Recorded`] holds a format-1 reason as the text it was stored as. The machine never
//!   produces it; replay compares it with a computed reason by rendering ([`Reason::agrees_with`]).

use serde::{Deserialize, Serialize};

use super::{Phase, StageKind};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A dependency ended in a state other than Done.
    DependencyNotDone {
        dependency: String,
        state: StageKind,
    },
    /// The worktree could not be created or adopted (the workspace's words).
    WorktreeFailed {
        detail: String,
    },
    /// `gt track -p <parent>` of the new worktree's branch failed.
    StackTrackFailed {
        parent: String,
        error: String,
    },
    BudgetExceeded {
        used: u64,
        limit: u64,
    },
    DevFailed,
    DevDeferred,
    FixFailed {
        cycle: u32,
    },
    FixDeferred {
        cycle: u32,
    },
    ReviewBlocked,
    /// The review still asked for changes when no fix cycle was left.
    ChangesStillRequired {
        max_fix_cycles: u32,
    },
    /// A phase produced no usable result (crash, timeout, unusable output): the engine's words.
    PhaseFailed {
        phase: Phase,
        detail: String,
    },
    /// The guard's before-phase check failed.
    GuardCheckFailed {
        details: Vec<String>,
    },
    /// After a phase, things outside the branch and worktree had changed.
    GuardViolation {
        changes: Vec<String>,
    },
    /// A reason read from a format-1 record, verbatim.
    Recorded(String),
    /// Merging a dependency's work into the branch conflicted.
    MergeConflict {
        parent: String,
        files: Vec<String>,
    },
    /// loop's checks still failed when no fix cycle was left.
    ChecksStillFailing {
        max_fix_cycles: u32,
    },
    /// The issue spent more than `max_cost_usd_per_issue` (micro-dollars, since its last reopen).
    /// `at`: the stage it was stopped in, where `loop retry` continues.
    CostExceeded {
        used_micro_usd: u64,
        limit_micro_usd: u64,
        at: StageKind,
    },
    /// The run's `max_cost_usd_per_run` was spent: Blocked before the issue started, Capped
    /// before its next phase. `at`: the stage it was stopped in, where `loop retry` continues.
    RunBudgetSpent {
        used_micro_usd: u64,
        limit_micro_usd: u64,
        at: StageKind,
    },
}

impl Reason {
    /// Whether a reason the machine computed is the one a record holds: equal, or, for a
    /// format-1 record, rendering to the recorded text.
    pub fn agrees_with(&self, recorded: &Reason) -> bool {
        match recorded {
            Reason::Recorded(text) => self.to_string() == *text,
            other => self == other,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::DependencyNotDone { dependency, state } => write!(f, "dependency {dependency} ended {state}"),
            Reason::WorktreeFailed { detail } | Reason::PhaseFailed { detail, .. } | Reason::Recorded(detail) => {
                f.write_str(detail)
            }
            Reason::StackTrackFailed { parent, error } => write!(f, "gt track -p {parent}: {error}"),
            Reason::BudgetExceeded { used, limit } => write!(f, "token budget exceeded: {used} used, limit {limit}"),
            Reason::DevFailed => f.write_str("dev agent reported failed"),
            Reason::DevDeferred => f.write_str("dev agent deferred the issue"),
            Reason::FixFailed { cycle } => write!(f, "fix agent reported failed in cycle {cycle}"),
            Reason::FixDeferred { cycle } => write!(f, "fix agent deferred in cycle {cycle}"),
            Reason::ReviewBlocked => f.write_str("review said blocked"),
            Reason::ChangesStillRequired { max_fix_cycles } => {
                write!(f, "changes still required after {max_fix_cycles} fix cycles")
            }
            Reason::GuardCheckFailed { details } => write!(f, "guard: {}", details.join("; ")),
            Reason::MergeConflict { parent, files } => {
                write!(f, "merging {parent} conflicted in {}", files.join(", "))
            }
            Reason::ChecksStillFailing { max_fix_cycles } => {
                write!(f, "checks still failing after {max_fix_cycles} fix cycles")
            }
            Reason::CostExceeded { used_micro_usd, limit_micro_usd, .. } => write!(
                f,
                "cost budget exceeded: {} used, limit {}",
                crate::vocab::format_micro_usd(*used_micro_usd),
                crate::vocab::format_micro_usd(*limit_micro_usd)
            ),
            Reason::RunBudgetSpent { used_micro_usd, limit_micro_usd, .. } => write!(
                f,
                "run cost budget spent: {} used, limit {}",
                crate::vocab::format_micro_usd(*used_micro_usd),
                crate::vocab::format_micro_usd(*limit_micro_usd)
            ),
            Reason::GuardViolation { changes } => {
                write!(f, "guard: the agent changed things outside its worktree: {}", changes.join("; "))
            }
        }
    }
}
