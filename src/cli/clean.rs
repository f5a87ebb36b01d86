//! `loop clean [RUN_ID] [--dry-run]`: removes the worktrees finished runs left behind.
//!
//! Invariants: the journal's `worktree_created` is the only licence: a path that is not
//! registered as a worktree on the journaled branch is never touched, even if the name
//! matches. Dirty worktrees and worktrees whose HEAD left their branch are kept and reported.
//! Never `--force`, never a branch deletion. Each removal is journaled in its run.

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::clock::Clock;
use crate::engine::Recorder;
use crate::journal::Journal;
use crate::machine::Event;
use crate::runs::{Holder, RunsError};
use crate::workspace::{git, git_ok, Removal, Workspace};

#[derive(Args, Debug)]
pub struct CleanArgs {
    /// Only this run (id or unique prefix) [default: every finished run].
    pub run_id: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Say what would be removed and kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object on stdout: removed, kept, dry_run and every action (run, issue, path,
    /// action, reason).
    #[arg(long)]
    pub json: bool,
}

/// What clean did, said as lines or gathered for `--json`.
struct Report {
    json: bool,
    actions: Vec<serde_json::Value>,
}

impl Report {
    /// A worktree clean leaves in place, and why (both the keep checks and git's refusal).
    fn kept(&mut self, run: &str, issue: &str, path: &str, reason: &str) {
        let text = format!("run {run} {issue}: kept {path}: {reason}");
        self.say(text, "kept", run, Some(issue), Some(path), Some(reason));
    }

    fn say(
        &mut self,
        text: String,
        action: &str,
        run: &str,
        issue: Option<&str>,
        path: Option<&str>,
        reason: Option<&str>,
    ) {
        if self.json {
            self.actions.push(
                serde_json::json!({"run": run, "issue": issue, "path": path, "action": action, "reason": reason}),
            );
        } else {
            crate::outln!("{text}");
        }
    }
}

/// Why a worktree cannot be removed safely, or None.
fn keep_reason(repo: &std::path::Path, path: &std::path::Path, branch: &str) -> Result<Option<String>, CliError> {
    let t = std::time::Duration::from_secs(60);
    let list = git_ok(repo, &["worktree", "list", "--porcelain"], t)?;
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut found: Option<Option<String>> = None;
    let mut cur_matches = false;
    for line in list.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            cur_matches = std::fs::canonicalize(p).unwrap_or_else(|_| p.into()) == want;
            if cur_matches {
                found = Some(None);
            }
        } else if let (true, Some(b)) = (cur_matches, line.strip_prefix("branch ")) {
            found = Some(Some(b.trim_start_matches("refs/heads/").to_string()));
        }
    }
    match found {
        None => return Ok(Some("not a registered worktree of this repository; not loop's to remove".into())),
        Some(Some(b)) if b == branch => {}
        Some(other) => {
            let on = other.unwrap_or_else(|| "a detached HEAD".into());
            return Ok(Some(format!("it is on {on}, not on {branch} as loop created it; not touched")));
        }
    }
    let status = git(path, &["status", "--porcelain", "--untracked-files=all"], t)?;
    let n = status.stdout_text().lines().count();
    if n > 0 {
        return Ok(Some(format!("{n} uncommitted change(s) in the worktree")));
    }
    Ok(None)
}

pub fn run(args: CleanArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let ids = match &args.run_id {
        Some(p) => vec![state.resolve(p)?],
        None => state.list()?,
    };
    let (mut removed, mut kept) = (0, 0);
    let mut report = Report { json: args.json, actions: Vec::new() };
    // Runs killed before their first record: nothing to clean but the empty directory.
    let empties = match &args.run_id {
        Some(_) => ids.iter().filter(|id| state.kind(id) == crate::runs::RunKind::Empty).cloned().collect(),
        None => state.list_empty()?,
    };
    let ids: Vec<String> = ids.into_iter().filter(|id| !empties.contains(id)).collect();
    for id in empties {
        if args.dry_run {
            report.say(
                format!("run {id}: empty (killed before its first record); would remove it"),
                "would_remove_empty_run",
                &id,
                None,
                None,
                None,
            );
        } else if state.remove_empty(&id)? {
            report.say(
                format!("run {id}: empty (killed before its first record); removed"),
                "removed_empty_run",
                &id,
                None,
                None,
                None,
            );
        }
    }
    for id in ids {
        if state.is_locked(&id) {
            report.say(format!("run {id}: running; skipped"), "skipped", &id, None, None, Some("running"));
            continue;
        }
        let view = state.view(&id)??;
        if !view.finished {
            report.say(
                format!("run {id}: not finished (resume it first); skipped"),
                "skipped",
                &id,
                None,
                None,
                Some("not finished"),
            );
            continue;
        }
        let repo = std::path::PathBuf::from(&view.start.repo);
        // The milestone's lock before looking at its worktrees: a run of it from any state dir
        // may be creating them or committing on their branches right now.
        let _milestone_lock = match state.lock_milestone(&repo, &view.start.milestone, Holder::Clean) {
            Ok(l) => l,
            Err(e @ RunsError::MilestoneBusy { .. }) if args.run_id.is_none() => {
                report.say(format!("run {id}: {e}; skipped"), "skipped", &id, None, None, Some(&e.to_string()));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // Read again under the lock: another `loop clean` may have journaled removals meanwhile.
        let view = state.view(&id)??;
        let ws = super::git_workspace(&repo);
        let mut to_journal: Vec<(String, Event)> = Vec::new();
        for issue in &view.issues {
            let Some(wt) = issue.worktree() else { continue };
            if !wt.created() || wt.removed() {
                continue;
            }
            let path = std::path::Path::new(&wt.path);
            if !path.exists() {
                report.say(
                    format!("run {id} {}: {} already gone", issue.id, wt.path),
                    "already_gone",
                    &id,
                    Some(&issue.id),
                    Some(&wt.path),
                    None,
                );
                if !args.dry_run {
                    to_journal.push((issue.id.clone(), Event::WorktreeRemoved { path: wt.path.clone() }));
                }
                continue;
            }
            if let Some(reason) = keep_reason(&repo, path, &wt.branch)? {
                kept += 1;
                report.kept(&id, &issue.id, &wt.path, &reason);
                continue;
            }
            if args.dry_run {
                report.say(
                    format!("run {id} {}: would remove {} (branch {} stays)", issue.id, wt.path, wt.branch),
                    "would_remove",
                    &id,
                    Some(&issue.id),
                    Some(&wt.path),
                    None,
                );
                removed += 1;
                continue;
            }
            match ws.remove(path, &wt.branch)? {
                Removal::Removed | Removal::AlreadyGone | Removal::Finished(_) => {
                    removed += 1;
                    report.say(
                        format!("run {id} {}: removed {} (branch {} stays)", issue.id, wt.path, wt.branch),
                        "removed",
                        &id,
                        Some(&issue.id),
                        Some(&wt.path),
                        None,
                    );
                    to_journal.push((issue.id.clone(), Event::WorktreeRemoved { path: wt.path.clone() }));
                }
                Removal::Kept(reason) => {
                    kept += 1;
                    report.kept(&id, &issue.id, &wt.path, &reason);
                }
            }
        }
        if !to_journal.is_empty() {
            let _lock = state.lock(&id)?;
            let store = state.open_store(&id, &mut |note| eprintln!("loop: {note}"))?;
            let (journal, view) = Journal::reopen_view(Box::new(store), Clock::from_env())??;
            let mut recorder = Recorder::from_view(journal.with_fault_after(super::fault_after_append()), view);
            for (issue, event) in to_journal {
                recorder.issue_event(&issue, event)?;
            }
        }
    }
    if args.json {
        let v =
            serde_json::json!({"removed": removed, "kept": kept, "dry_run": args.dry_run, "actions": report.actions});
        crate::outln!("{v}");
        return Ok(ExitCode::Ok);
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    crate::outln!("clean: {verb} {removed} worktree(s), kept {kept}");
    Ok(ExitCode::Ok)
}
