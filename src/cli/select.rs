//! `loop run --issue ID`: narrowing a milestone's plan to some of its issues.
//!
//! Invariant: an issue runs only if each of its dependencies is either selected too or ended
//! Done in an earlier run of the same milestone; otherwise the run is refused before anything is
//! written (exit 2), naming what to add.

use super::CliError;
use crate::journal::view::RunView;
use crate::machine::Stage;
use crate::plan::Plan;
use crate::runs::StateDir;

/// Is `issue` Done in some earlier run of `milestone`? (Newest runs first.)
fn done_earlier(state: &StateDir, milestone: &str, issue: &str) -> bool {
    let Ok(ids) = state.list() else { return false };
    ids.iter().rev().any(|id| {
        let Ok(records) = state.read(id) else { return false };
        let Ok(view) = RunView::fold(&records) else { return false };
        view.start.milestone == milestone && matches!(view.state_of(issue).map(|s| &s.stage), Some(Stage::Done { .. }))
    })
}

pub fn only_issues(plan: &mut Plan, only: &[String], state: &StateDir) -> Result<(), CliError> {
    if only.is_empty() {
        return Ok(());
    }
    for id in only {
        if !plan.order.iter().any(|p| &p.id == id) {
            let known: Vec<&str> = plan.order.iter().map(|p| p.id.as_str()).collect();
            return Err(CliError::Usage(format!(
                "--issue {id}: not an issue of milestone {} (its issues: {})",
                plan.milestone,
                known.join(", ")
            )));
        }
    }
    plan.order.retain(|p| only.contains(&p.id));
    for p in &plan.order {
        for dep in &p.blocked_by {
            if !only.contains(dep) && !done_earlier(state, &plan.milestone, dep) {
                return Err(CliError::Usage(format!(
                    "--issue {}: it depends on {dep}, which is not Done in any earlier run of {}; add --issue {dep}",
                    p.id, plan.milestone
                )));
            }
        }
    }
    Ok(())
}
