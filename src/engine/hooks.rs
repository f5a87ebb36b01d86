//! Hooks: what may be added around the engine's steps without the engine knowing what it is.
//! Two implementations: [`GuardHooks`] (README "Safety": checks before and after each phase,
//! shims for the agent) and [`StackHooks`] (`--stack graphite`: track, commit through gt,
//! submit drafts).
//!
//! Invariants:
//! - A hook never journals: it returns entries (machine events or audit facts), and the engine
//!   journals them in the order the hooks were added, before the step that follows. A machine
//!   event from a hook (a failed check, a failed `gt track`) ends the issue: the commands it
//!   yields supersede the ones before.
//! - Every method has a default that does nothing, so a hook implements only its own points.

use std::path::{Path, PathBuf};

use crate::guard::{shim, snapshot, Guard};
use crate::journal::view::RunView;
use crate::journal::{Entry, Fact, PlannedIssue};
use crate::machine::{Event, Phase, Stage, State};
use crate::stack::{Stack, SubmitMode};
use crate::workspace::{Workspace, WorkspaceError};

/// What a hook says before a phase; `'h` is the hook's own lifetime (the after half may
/// borrow it).
pub struct Before<'h> {
    /// Journaled at once: an audit fact (a passed check), or a machine event that ends the
    /// phase (a failed check).
    pub entry: Entry,
    /// False: the phase does not run; `entry` is its result.
    pub proceed: bool,
    /// Added to the agent's environment.
    pub env: Vec<(String, String)>,
    /// Called once the agent returned (not after an interruption).
    pub after: Option<Box<dyn After + 'h>>,
}

/// The second half of a before/after pair, holding what the first half saw.
pub trait After {
    /// Entries to journal first (decisions), then the violation that fails the phase, if any.
    fn after_phase(self: Box<Self>) -> (Vec<Entry>, Option<Event>);
}

/// A hook's commit of the agent's work in place of loop's own `git commit`.
pub struct Commit {
    /// The new commit, None when nothing changed.
    pub result: Result<Option<String>, WorkspaceError>,
    /// How it was committed, for the evidence.
    pub note: String,
}

pub trait Hooks: Sync {
    /// After `worktree_created` was journaled.
    fn worktree_created(&self, _planned: &PlannedIssue, _view: &RunView) -> Vec<Entry> {
        Vec::new()
    }

    /// Before the agent runs a phase (after its `phase_started`).
    fn before_phase(
        &self,
        _planned: &PlannedIssue,
        _worktree: &Path,
        _phase: Phase,
        _view: &RunView,
    ) -> Option<Before<'_>> {
        None
    }

    /// Commits the agent's work instead of loop; the first hook that answers wins.
    fn commit(&self, _worktree: &Path, _message: &str, _date: Option<&str>, _ws: &dyn Workspace) -> Option<Commit> {
        None
    }

    /// The issue is terminal in `state` and its worktree is about to be removed or kept.
    fn issue_done(&self, _planned: &PlannedIssue, _state: &State, _worktree: &Path) -> Vec<Entry> {
        Vec::new()
    }
}

/// The guard's checks around every phase.
pub struct GuardHooks<'g>(pub &'g Guard);

struct GuardAfter<'g> {
    guard: &'g Guard,
    planned: PlannedIssue,
    worktree: PathBuf,
    phase: Phase,
    snapshot: snapshot::Snapshot,
    relay: Option<shim::Relay>,
}

impl After for GuardAfter<'_> {
    fn after_phase(self: Box<Self>) -> (Vec<Entry>, Option<Event>) {
        let GuardAfter { guard, planned, worktree, phase, snapshot, relay } = *self;
        let (decisions, violation) = guard.after_phase(&planned, &worktree, phase, &snapshot, relay);
        (decisions.into_iter().map(Entry::Audit).collect(), violation)
    }
}

impl Hooks for GuardHooks<'_> {
    fn before_phase(
        &self,
        planned: &PlannedIssue,
        worktree: &Path,
        phase: Phase,
        view: &RunView,
    ) -> Option<Before<'_>> {
        let before = self.0.before_phase(planned, worktree, phase, &view.start.issues);
        let proceed = !matches!(before.entry, Entry::Machine(_));
        let after = before.snapshot.map(|snapshot| {
            let after = GuardAfter {
                guard: self.0,
                planned: planned.clone(),
                worktree: worktree.to_path_buf(),
                phase,
                snapshot,
                relay: before.relay,
            };
            Box::new(after) as Box<dyn After + '_>
        });
        Some(Before { entry: before.entry, proceed, env: before.env, after })
    }
}

/// `--stack graphite`: each issue's branch is tracked on its first dependency's branch (or trunk),
/// the agent's work is committed through gt, and `--submit draft` submits at Done.
pub struct StackHooks<'s>(pub &'s Stack);

impl Hooks for StackHooks<'_> {
    fn worktree_created(&self, planned: &PlannedIssue, view: &RunView) -> Vec<Entry> {
        let stack = self.0;
        // The first dependency (plan order) is the branch's parent; loop's merge brings the
        // others' work onto the branch (see `engine::driver`'s `base_for`).
        let parent = planned
            .blocked_by
            .first()
            .map(|dep| super::driver::dependency_branch(view, dep))
            .unwrap_or_else(|| stack.trunk.clone());
        let Some(wt) = view.issue(&planned.id).and_then(|i| i.worktree()).map(|w| PathBuf::from(&w.path)) else {
            return Vec::new();
        };
        vec![match stack.track(&wt, &parent) {
            Ok(()) => Entry::Audit(Fact::StackTracked { parent }),
            Err(e) => Entry::Machine(Event::StackTrackFailed { parent, error: e.to_string() }),
        }]
    }

    fn commit(&self, worktree: &Path, message: &str, date: Option<&str>, ws: &dyn Workspace) -> Option<Commit> {
        let gt = &self.0.gt;
        let result = ws.has_identity(worktree).and_then(|id| gt.commit_all(worktree, message, date, id));
        Some(Commit { result, note: "committed with `gt modify --commit --all`".into() })
    }

    fn issue_done(&self, _planned: &PlannedIssue, state: &State, worktree: &Path) -> Vec<Entry> {
        if self.0.submit != SubmitMode::Draft || !matches!(state.stage, Stage::Done { .. }) {
            return Vec::new();
        }
        let fact = match self.0.gt.submit_draft(worktree) {
            Ok(out) => Fact::StackSubmitted { ok: true, detail: out.lines().last().unwrap_or("").trim().to_string() },
            Err(e) => Fact::StackSubmitted { ok: false, detail: e.to_string() },
        };
        vec![Entry::Audit(fact)]
    }
}
