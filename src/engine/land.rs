//! `loop land`: brings a run's Done branches together on one loop-made branch and checks it.
//!
//! The Done branches are merged in plan order into `loop/<milestone>/land`, made from the
//! `onto` branch's tip in a loop-owned worktree; a branch that conflicts is left out (nothing
//! half-merged: [`Workspace::merge`] changes nothing on a conflict) and the others still go in.
//! Then the run's setup and checks (and every landed issue's own checks) run there, as they ran
//! in each issue's worktree ([`crate::verify`]). Under `--stack graphite --submit draft` the
//! Done stacks are submitted with `gt submit --stack --draft` instead.
//!
//! Invariants:
//! - Only loop's own branch moves: `onto` (the user's main or any other branch) and the issues'
//!   branches are read, never written. The land branch is made once; a later landing of the same
//!   run moves it only if it is still where the journal says loop left it (compare-and-swap), so
//!   a branch a person made or moved under that name is never overwritten.
//! - Nothing is pushed: the only network step is the opt-in Graphite submit.
//! - The landing is journaled (`landed`) with every branch's outcome and every check's result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{EngineError, Recorder};
use crate::clock::Clock;
use crate::journal::view::RunView;
use crate::machine::Stage;
use crate::stack::Gt;
use crate::verify::{self, CheckKind, Logs, VerifyError};
use crate::vocab::{sanitize, LandOutcome, LandedBranch, Landing, StackMode, SubmitMode};
use crate::workspace::{git, git_ok, MergeOutcome, Workspace, WorkspaceError};

const GIT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum LandError {
    #[error("run {run} is not finished: `loop resume {run}` first, then land it")]
    NotFinished { run: String },
    #[error("run {run} has no Done issue: nothing to land")]
    NothingDone { run: String },
    #[error("--onto {onto}: {detail}")]
    Onto { onto: String, detail: String },
    #[error(
        "branch {branch} exists and is not where loop left it ({detail}); loop never moves a branch it does \
         not own: rename or delete it, then land again"
    )]
    BranchTaken { branch: String, detail: String },
    #[error("{issue}: its branch {branch} is gone; cannot land it")]
    BranchGone { issue: String, branch: String },
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What a landing is given besides the run: where to build it and what to start from.
pub struct LandRequest {
    /// The branch to start from (the user's main, usually); read, never written.
    pub onto: String,
    /// A loop-owned path for the land worktree (removed at the end; the branch stays).
    pub worktree: PathBuf,
    /// The state dir's logs root and this run's logs dir below it.
    pub logs_root: PathBuf,
    pub logs_dir: PathBuf,
    /// gt, for `--stack graphite --submit draft` runs.
    pub gt: Option<Gt>,
    pub clock: Clock,
}

/// The branch a milestone lands on.
pub fn land_branch(milestone: &str) -> String {
    format!("loop/{}/land", sanitize(milestone))
}

/// Lands the run whose journal `recorder` holds; journals and returns the landing.
pub fn land(recorder: &mut Recorder, ws: &dyn Workspace, req: &LandRequest) -> Result<Landing, LandError> {
    let view = recorder.view().clone();
    if !view.finished {
        return Err(LandError::NotFinished { run: view.run_id.clone() });
    }
    let done = done_branches(&view, ws)?;
    if done.is_empty() {
        return Err(LandError::NothingDone { run: view.run_id.clone() });
    }
    let repo = PathBuf::from(&view.start.repo);
    let onto_commit = match ws.branch_tip(&req.onto)? {
        Some(c) => c,
        None => return Err(LandError::Onto { onto: req.onto.clone(), detail: "no such branch".into() }),
    };
    let graphite =
        view.start.guard.as_ref().filter(|g| g.stack == StackMode::Graphite && g.submit == SubmitMode::Draft);
    let landing = match (graphite, &req.gt) {
        (Some(_), Some(gt)) => submit_stacks(&view, ws, req, gt, done, onto_commit)?,
        _ => merge_and_check(&view, &repo, ws, req, done, onto_commit)?,
    };
    recorder.landed(landing.clone())?;
    Ok(landing)
}

/// The Done issues in plan order with their branches and tips.
fn done_branches(view: &RunView, ws: &dyn Workspace) -> Result<Vec<(String, String, String)>, LandError> {
    let mut out = Vec::new();
    for planned in &view.start.issues {
        let Some(iv) = view.issue(planned.id.as_str()) else { continue };
        if !matches!(iv.state.stage, Stage::Done { .. }) {
            continue;
        }
        let branch = iv.worktree().map(|w| w.branch.clone()).unwrap_or_else(|| planned.branch.to_string());
        match ws.branch_tip(&branch)? {
            Some(tip) => out.push((planned.id.to_string(), branch, tip)),
            None => return Err(LandError::BranchGone { issue: planned.id.to_string(), branch }),
        }
    }
    Ok(out)
}

/// Makes the land branch at `onto_commit` (or takes back the one an earlier landing of this run
/// left, if nobody moved it), merges every Done branch, runs the checks.
fn merge_and_check(
    view: &RunView,
    repo: &Path,
    ws: &dyn Workspace,
    req: &LandRequest,
    done: Vec<(String, String, String)>,
    onto_commit: String,
) -> Result<Landing, LandError> {
    let branch = land_branch(&view.start.milestone);
    if let Some(tip) = ws.branch_tip(&branch)? {
        let ours = view.landing.as_ref().filter(|l| l.branch == branch).map(|l| l.commit.clone());
        match ours {
            Some(left) if left == tip => {
                // Ours, untouched since: start it over from `onto` (compare-and-swap on its tip).
                let r = format!("refs/heads/{branch}");
                git_ok(repo, &["update-ref", "-m", "loop land: start over", &r, &onto_commit, &tip], GIT_TIMEOUT)?;
            }
            Some(left) => {
                let detail = format!("loop left it at {}, it is at {}", short(&left), short(&tip));
                return Err(LandError::BranchTaken { branch, detail });
            }
            None => {
                let detail = "no landing of this run made it".to_string();
                return Err(LandError::BranchTaken { branch, detail });
            }
        }
    }
    let reuse = ws.branch_tip(&branch)?.is_some();
    leave_worktree(ws, &req.worktree, &branch)?;
    ws.create(&req.worktree, &branch, &onto_commit, false, reuse)?;
    let result = merge_all(view, ws, req, &done).and_then(|merged| {
        let checks = run_checks(view, req, &merged)?;
        Ok((merged, checks))
    });
    // The branch stays; the worktree goes whatever happened (a failed check keeps its log).
    let commit = git_ok(&req.worktree, &["rev-parse", "HEAD"], GIT_TIMEOUT);
    leave_worktree(ws, &req.worktree, &branch)?;
    let (merged, checks) = result?;
    Ok(Landing { branch, onto: req.onto.clone(), onto_commit, commit: commit?, merged, checks, submitted: Vec::new() })
}

fn merge_all(
    view: &RunView,
    ws: &dyn Workspace,
    req: &LandRequest,
    done: &[(String, String, String)],
) -> Result<Vec<LandedBranch>, LandError> {
    let mut merged = Vec::new();
    for (issue, branch, tip) in done {
        let before = git_ok(&req.worktree, &["rev-parse", "HEAD"], GIT_TIMEOUT)?;
        let message = format!("loop land: merge {branch} ({issue}) of milestone {}", view.start.milestone);
        let date = req.clock.is_fixed().then(|| req.clock.now().format("%Y-%m-%dT%H:%M:%S+0000").to_string());
        let outcome = match ws.merge(&req.worktree, std::slice::from_ref(tip), &[], &message, date.as_deref())? {
            MergeOutcome::Merged { commit, .. } if commit == before => LandOutcome::AlreadyIn,
            MergeOutcome::Merged { commit, .. } => LandOutcome::Merged { commit },
            MergeOutcome::Conflict { files, .. } => LandOutcome::Conflict { files },
        };
        merged.push(LandedBranch { issue: issue.clone(), branch: branch.clone(), tip: tip.clone(), outcome });
    }
    Ok(merged)
}

/// The run's setup, then the run's checks and those of every issue that went in, each once.
fn run_checks(
    view: &RunView,
    req: &LandRequest,
    merged: &[LandedBranch],
) -> Result<Vec<crate::vocab::CheckRun>, LandError> {
    let spec = &view.start.verify;
    let mut commands: Vec<String> = Vec::new();
    let landed = |id: &str| merged.iter().any(|m| m.issue == id && !matches!(m.outcome, LandOutcome::Conflict { .. }));
    let own = view.start.issues.iter().filter(|p| landed(p.id.as_str())).flat_map(|p| p.verify.iter());
    for c in own.chain(spec.commands.iter()) {
        if !commands.contains(c) {
            commands.push(c.clone());
        }
    }
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    let timeout = Duration::from_secs(match spec.timeout_secs {
        0 => verify::DEFAULT_TIMEOUT_SECS,
        t => t,
    });
    let logs_dir = req.logs_dir.strip_prefix(&req.logs_root).unwrap_or(&req.logs_dir).join("land");
    let logs = Logs { root: req.logs_root.clone(), dir: logs_dir, label: "land".into() };
    let mut runs = verify::run_setup(&req.worktree, &spec.setup, &logs, timeout)?;
    if runs.iter().all(|r| r.passed()) {
        runs.extend(verify::run_checks(&req.worktree, &commands, CheckKind::Check, &logs, timeout)?);
    }
    Ok(runs)
}

/// Removes the land worktree if one is there (an earlier landing cut short), keeping the branch.
fn leave_worktree(ws: &dyn Workspace, path: &Path, branch: &str) -> Result<(), LandError> {
    if path.exists() || registered(path)? {
        ws.remove(path, branch)?;
    }
    Ok(())
}

/// Whether git still lists `path` as a worktree (its directory may be gone).
fn registered(path: &Path) -> Result<bool, LandError> {
    let Some(parent) = path.parent().filter(|p| p.exists()) else { return Ok(false) };
    let out = git(parent, &["worktree", "list", "--porcelain"], GIT_TIMEOUT)?;
    let want = format!("worktree {}", path.display());
    Ok(out.stdout_text().lines().any(|l| l == want))
}

/// `--stack graphite --submit draft`: each Done stack (every Done branch no other Done branch
/// builds on) is submitted as drafts with `gt submit --stack --draft`, from a loop-owned
/// worktree on its top branch.
fn submit_stacks(
    view: &RunView,
    ws: &dyn Workspace,
    req: &LandRequest,
    gt: &Gt,
    done: Vec<(String, String, String)>,
    onto_commit: String,
) -> Result<Landing, LandError> {
    let is_parent = |id: &str| {
        view.start
            .issues
            .iter()
            .any(|p| p.blocked_by.iter().any(|d| d.as_str() == id) && done.iter().any(|(i, _, _)| i == p.id.as_str()))
    };
    let mut submitted = Vec::new();
    let mut merged = Vec::new();
    for (issue, branch, tip) in &done {
        merged.push(LandedBranch {
            issue: issue.clone(),
            branch: branch.clone(),
            tip: tip.clone(),
            outcome: LandOutcome::AlreadyIn,
        });
        if is_parent(issue) {
            continue;
        }
        leave_worktree(ws, &req.worktree, branch)?;
        ws.create(&req.worktree, branch, tip, false, true)?;
        let said = gt.run(&req.worktree, &["submit", "--stack", "--draft"]);
        leave_worktree(ws, &req.worktree, branch)?;
        let (ok, detail) = match said {
            Ok(out) => (true, out.trim().to_string()),
            Err(e) if e.blame().is_environment() => return Err(e.into()),
            Err(e) => (false, e.to_string()),
        };
        submitted.push(crate::vocab::Submission { branch: branch.clone(), ok, detail });
    }
    Ok(Landing {
        branch: String::new(),
        onto: req.onto.clone(),
        onto_commit: onto_commit.clone(),
        commit: onto_commit,
        merged,
        checks: Vec::new(),
        submitted,
    })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
