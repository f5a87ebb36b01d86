//! What the machine tells its driver to do next: the output half of the transducer.
//!
//! The seam is deliberately narrow: a driver (today's engine; a durable workflow engine later)
//! needs only [`super::resume`] for an issue it picks up, [`super::transition`] for each event it
//! journals, and this enum. Each command names the events that may answer it; a driver that
//! performs the command and journals one of those events keeps the machine and the journal in
//! step. Guardrails may add their own events around a command (a failed before-phase check, a
//! failed `gt track`, a budget overrun after a phase): those events end the issue, and the
//! commands they yield supersede the ones before.

use serde::{Deserialize, Serialize};

use super::{Phase, StageKind};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Check the dependencies and choose its base. Answer: `dependency_not_done`,
    /// `worktree_failed`, or `worktree_intent` (the licence to create the worktree).
    Prepare,
    /// Create the worktree (`adopt`: an earlier process may have created it partly; take it
    /// over; `reuse`: the branch exists, check it out as it is). Answer: `worktree_created` or
    /// `worktree_failed`.
    CreateWorktree {
        path: String,
        branch: String,
        base: String,
        adopt: bool,
        #[serde(default)]
        reuse: bool,
    },
    /// Journal `phase_started` with this attempt: the licence to run the phase.
    StartPhase { phase: Phase, attempt: u32 },
    /// Run the agent. `cycle` is the fix cycle (the review after fix N has cycle N);
    /// `resume_session` is the agent session an earlier attempt of this phase left.
    /// Answer: `session_started` while running, then `work_finished`, `review_finished`,
    /// `phase_failed` or `guard_violation` (or nothing when interrupted).
    RunPhase { phase: Phase, cycle: u32, attempt: u32, resume_session: Option<String> },
    /// The issue ended Done or Capped: remove its worktree if nothing would be lost.
    /// Answer: `worktree_removed` or `worktree_kept`.
    RemoveWorktree { path: String, branch: String },
    /// The issue ended otherwise: keep its worktree for inspection. Answer: `worktree_kept`.
    KeepWorktree { path: String, ended: StageKind },
    /// Nothing is left to do for this issue.
    Finish,
    /// Merge `parents` (in order) into the worktree's branch. Answer: `bases_merged` or
    /// `merge_conflict` (after aborting the merge).
    MergeBases { path: String, parents: Vec<String> },
    /// Run loop's checks on the work of fix `cycle` (0: dev). Answer: `verify_finished`.
    Verify { path: String, cycle: u32 },
}
