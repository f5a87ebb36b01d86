//! `loop run -m M` when earlier runs of M exist: which issues are carried over as Done, which
//! branches loop may check out again, and which names the issues keep. Computed by the CLI from
//! the earlier journals before anything is written, and recorded in the new run's `run_started`
//! (`earlier`: `carried_over`, `reusable_branches`) so the engine and a resume see the same answer.
//!
//! Invariants:
//! - Only journals decide what is loop's: a branch is reusable only when an earlier journal of
//!   this milestone (in this repository) journaled a worktree on it, or carried it over, and it
//!   still exists. A user's own branch with loop's name stays refused.
//! - An issue is carried over when the newest earlier run that planned it ended it Done and its
//!   branch still points at the commit that journal recorded; a branch that moved or is gone is
//!   reported and the issue runs again.
//! - An issue is carried over only if every dependency it has in this run is carried over too:
//!   work built on a dependency that runs again would not hold the dependency's new work.
//! - Each issue keeps the branch and worktree names of the newest earlier run that planned it,
//!   so a re-run after `--fresh` goes on with the fresh names.
//! - Read-only: nothing here writes to the state dir or to git.

use std::collections::BTreeSet;
use std::path::Path;

use super::CliError;
use crate::journal::view::RunView;
use crate::machine::Stage;
use crate::runs::StateDir;
use crate::vocab::{CarriedIssue, PlannedIssue};
use crate::workspace::Workspace;

/// What the earlier runs of a milestone leave to a new run.
#[derive(Debug, Default, PartialEq)]
pub struct Rerun {
    /// Done earlier, branch where the journal left it: journaled as `carried_over` at run start.
    pub carried: Vec<CarriedIssue>,
    /// loop's own branches of this milestone that exist: checked out as they are, not created.
    pub reusable: Vec<String>,
    /// What the user should know (a moved branch, an unreadable journal), one line each.
    pub notes: Vec<String>,
}

/// Where the run's names come from: the milestone's usual names, or new ones for `--fresh`.
pub fn fresh_namespace(milestone: &str, run_id: &str) -> String {
    format!("{milestone}-{run_id}")
}

/// The earlier runs of `milestone` in `repo`, newest first (runs that cannot be read are noted
/// and skipped: they cannot vouch for anything).
fn earlier_views(state: &StateDir, repo: &Path, milestone: &str, notes: &mut Vec<String>) -> Vec<RunView> {
    let Ok(ids) = state.list() else { return Vec::new() };
    let repo = repo.display().to_string();
    let mut out = Vec::new();
    for id in ids.iter().rev() {
        match state.view(id) {
            Ok(Ok(view)) => {
                if view.start.milestone == milestone && view.start.repo == repo {
                    out.push(view);
                }
            }
            Ok(Err(d)) => notes.push(format!("run {id}: its journal does not fold ({d}); not used for this run")),
            Err(e) => notes.push(format!("run {id}: {e}; not used for this run")),
        }
    }
    out
}

/// Works out what the earlier runs of `milestone` leave to a run of `issues` (plan order), and
/// renames `issues` to the names they had in the newest earlier run that planned them.
pub fn earlier_runs(
    state: &StateDir,
    repo: &Path,
    milestone: &str,
    issues: &mut [PlannedIssue],
    ws: &dyn Workspace,
) -> Result<Rerun, CliError> {
    let mut out = Rerun::default();
    let views = earlier_views(state, repo, milestone, &mut out.notes);
    if views.is_empty() {
        return Ok(out);
    }
    // Every branch loop journaled for this milestone, in any earlier run.
    let mut owned: BTreeSet<String> = BTreeSet::new();
    for view in &views {
        for iv in &view.issues {
            if let Some(wt) = iv.worktree() {
                owned.insert(wt.branch.clone());
            }
            if let Some(c) = &iv.carried {
                owned.insert(c.branch.clone());
            }
        }
    }
    let mut carried_ids: BTreeSet<String> = BTreeSet::new();
    let planned_ids: BTreeSet<String> = issues.iter().map(|p| p.id.to_string()).collect();
    for planned in issues.iter_mut() {
        let id = planned.id.to_string();
        let Some((view, iv)) = views.iter().find_map(|v| v.issue(&id).map(|iv| (v, iv))) else { continue };
        let before = view.start.issues.iter().find(|p| p.id == id.as_str()).expect("a folded issue is planned");
        let branch = iv
            .carried
            .as_ref()
            .map(|c| c.branch.clone())
            .or_else(|| iv.worktree().map(|w| w.branch.clone()))
            .unwrap_or_else(|| before.branch.to_string());
        planned.branch = branch.clone().into();
        planned.worktree = before.worktree.clone();
        let tip_now = ws.branch_tip(&branch)?;
        if tip_now.is_some() && owned.contains(&branch) {
            out.reusable.push(branch.clone());
        }
        if !matches!(iv.state.stage, Stage::Done { .. }) {
            continue;
        }
        let recorded = iv
            .carried
            .as_ref()
            .map(|c| c.tip.clone())
            .or_else(|| iv.commit.clone())
            .or_else(|| iv.worktree().map(|w| w.base.clone()));
        let Some(recorded) = recorded else { continue };
        let short = |c: &str| c.chars().take(12).collect::<String>();
        match tip_now {
            Some(t) if t == recorded => {}
            Some(t) => {
                out.notes.push(format!(
                    "{id}: Done in run {}, but branch {branch} moved ({} → {}); running it again on that branch",
                    view.run_id,
                    short(&recorded),
                    short(&t)
                ));
                continue;
            }
            None => {
                out.notes
                    .push(format!("{id}: Done in run {}, but branch {branch} is gone; running it again", view.run_id));
                continue;
            }
        }
        let deps_rerun: Vec<&str> = planned
            .blocked_by
            .iter()
            .map(|d| d.as_str())
            .filter(|d| planned_ids.contains(*d) && !carried_ids.contains(*d))
            .collect();
        if !deps_rerun.is_empty() {
            out.notes.push(format!(
                "{id}: Done in run {}, but {} run again; running it again on its branch",
                view.run_id,
                deps_rerun.join(", ")
            ));
            continue;
        }
        let run = iv.carried.as_ref().map(|c| c.run.clone()).unwrap_or_else(|| view.run_id.clone());
        carried_ids.insert(id.clone());
        out.carried.push(CarriedIssue { issue: id.into(), run, branch, tip: recorded });
    }
    Ok(out)
}
