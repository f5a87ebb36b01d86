//! `loop diff RUN ISSUE [--stat]`: what an issue's agents changed, `base..branch`, where both
//! come from the run's journal (the commit the issue's worktree started from, or the merge of
//! its dependencies loop made, and the issue's branch).
//!
//! Invariants: read-only — git runs with argv (no shell), `GIT_OPTIONAL_LOCKS=0`, no pager and
//! comparing two commits only, so neither the index nor any ref is touched; colour only when
//! stdout is a terminal.

use std::io::Write;
use std::path::Path;

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::journal::view::{IssueView, RunView};
use crate::runs::StateDir;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  loop diff 2026 ORB-2          # the patch ORB-2's agents made\n  loop diff 2026 ORB-2 --stat   # \
files and lines changed"
)]
pub struct DiffArgs {
    /// The run id or a unique prefix.
    pub run_id: String,
    /// The issue id.
    pub issue: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Files changed and lines added/removed instead of the patch.
    #[arg(long)]
    pub stat: bool,
}

/// A run's verified view and one of its issues, or an error naming what is unknown.
pub fn run_issue(state: &StateDir, run: &str, issue: &str) -> Result<RunView, CliError> {
    let run_id = state.resolve(run)?;
    let view = state.view(&run_id)?.map_err(|d| CliError::Diverged(Box::new(d)))?;
    if view.issue(issue).is_none() {
        let known: Vec<&str> = view.issues.iter().map(|i| i.id.as_str()).collect();
        return Err(CliError::Usage(format!(
            "issue {issue} is not part of run {run_id} (its issues: {})",
            known.join(", ")
        )));
    }
    Ok(view)
}

/// `(base, branch)` of an issue, from the journal.
fn base_and_branch(view: &RunView, i: &IssueView) -> Result<(String, String), CliError> {
    match i.worktree() {
        Some(wt) if !wt.intended() => Ok((wt.base.clone(), wt.branch.clone())),
        _ => Err(CliError::Usage(match &i.carried {
            Some(c) => format!(
                "issue {} was carried over into run {} from run {}: see `loop diff {} {}`",
                i.id, view.run_id, c.run, c.run, i.id
            ),
            None => format!(
                "issue {} has no branch yet in run {} (it is {}): nothing to diff",
                i.id,
                view.run_id,
                i.state.name()
            ),
        })),
    }
}

pub fn run(args: DiffArgs) -> Result<ExitCode, CliError> {
    use std::io::IsTerminal;
    let state = args.repo.state()?;
    let view = run_issue(&state, &args.run_id, &args.issue)?;
    let issue = view.issue(&args.issue).expect("run_issue checked it");
    let (base, branch) = base_and_branch(&view, issue)?;
    let repo = args.repo.repo_root().unwrap_or_else(|_| std::path::PathBuf::from(&view.start.repo));
    let color = if std::io::stdout().is_terminal() { "--color=always" } else { "--color=never" };
    // `base branch`, not `base..branch` spelled as one word: each is its own argv entry.
    let range = [base.as_str(), branch.as_str()];
    let mut argv = vec!["--no-pager", "diff", color, "--no-ext-diff"];
    if args.stat {
        argv.push("--stat");
    }
    argv.extend(range);
    argv.push("--");
    let out = crate::workspace::git(&repo, &argv, std::time::Duration::from_secs(300))?;
    if !out.success() {
        let said = out.stderr_text();
        let detail = said.lines().find(|l| !l.trim().is_empty()).map(str::to_string).unwrap_or_else(|| out.describe());
        let detail = format!("{detail} (issue {} of run {}: base {base}, branch {branch})", args.issue, view.run_id);
        return Err(crate::workspace::WorkspaceError::git(argv.join(" "), detail, &said).into());
    }
    // Bytes as git wrote them: a patch need not be UTF-8.
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out.stdout).and_then(|()| stdout.flush()).map_err(|e| CliError::io(Path::new("<stdout>"), e))?;
    Ok(ExitCode::Ok)
}
