//! Graphite stacks (optional, `--stack graphite`): each issue's branch is tracked on its
//! dependency's branch (or trunk), so a chain of `blocked_by` becomes a stack.
//!
//! Invariants:
//! - Every gt call goes through [`crate::proc::run`] with a hard timeout, `--no-interactive`,
//!   telemetry and upgrade prompts off: offline `gt sync`/`gt submit` hang otherwise.
//! - A timeout is an error that says so, never a hang.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::proc::{self, Cmd};
pub use crate::vocab::{StackMode, SubmitMode};
use crate::workspace::WorkspaceError;

/// `--stack graphite` for one run: what loop does with Graphite around an issue (track its
/// branch, commit through gt, submit drafts). The engine calls it through its hooks
/// (`engine::hooks::StackHooks`), apart from the guard, which only reads Graphite's metadata.
#[derive(Clone, Debug)]
pub struct Stack {
    pub gt: Gt,
    pub repo: PathBuf,
    pub trunk: String,
    pub submit: SubmitMode,
}

impl Stack {
    /// Tracks the worktree's branch on `parent`, initialising Graphite in the repository first.
    pub fn track(&self, worktree: &Path, parent: &str) -> Result<(), WorkspaceError> {
        self.gt.ensure_init(&self.repo, &self.trunk).and_then(|_| self.gt.track(worktree, parent))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gt {
    pub bin: PathBuf,
    pub timeout: Duration,
}

impl Gt {
    /// The gt binary: `LOOP_GT_BIN`, else `gt` on PATH; `LOOP_GT_TIMEOUT_SECS` bounds each call.
    pub fn from_env(timeout: Duration) -> Gt {
        let bin = std::env::var_os("LOOP_GT_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("gt"));
        let timeout = std::env::var("LOOP_GT_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(timeout);
        Gt { bin, timeout }
    }

    fn cmd(&self, dir: &Path, args: &[&str]) -> Cmd {
        Cmd::new(&self.bin)
            .args(args)
            .arg("--no-interactive")
            .cwd(dir)
            .env("GRAPHITE_DISABLE_TELEMETRY", "1")
            .env("GRAPHITE_DISABLE_UPGRADE_PROMPT", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .timeout(self.timeout)
    }

    /// Runs gt; a non-zero exit or a timeout is an error with gt's own words.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Result<String, WorkspaceError> {
        self.check(args, proc::run(&self.cmd(dir, args))?)
    }

    fn check(&self, args: &[&str], out: proc::Output) -> Result<String, WorkspaceError> {
        if !out.success() {
            let text = format!("{}\n{}", out.stderr_text(), out.stdout_text());
            let detail = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
            let how = out.describe();
            let detail = if detail.is_empty() || out.timed_out { how } else { format!("{detail} ({how})") };
            return Err(WorkspaceError::git(format!("gt {}", args.join(" ")), detail, &text));
        }
        Ok(out.stdout_text())
    }

    /// `gt init --trunk TRUNK`, once per repository.
    pub fn ensure_init(&self, repo: &Path, trunk: &str) -> Result<(), WorkspaceError> {
        let common =
            crate::workspace::git_ok(repo, &["rev-parse", "--path-format=absolute", "--git-common-dir"], self.timeout)?;
        if Path::new(&common).join(".graphite_repo_config").exists() {
            return Ok(());
        }
        self.run(repo, &["init", "--trunk", trunk]).map(|_| ())
    }

    pub fn track(&self, worktree: &Path, parent: &str) -> Result<(), WorkspaceError> {
        self.run(worktree, &["track", "--parent", parent]).map(|_| ())
    }

    /// Commits everything in the worktree as a new commit on its branch with
    /// `gt modify --commit --all`, so Graphite records the change itself (and restacks the
    /// branch's children, of which a loop branch in dev or fix has none: dependants start only
    /// once it is finished). Returns the new commit, or None when nothing changed.
    ///
    /// Not cancellable, like every git bookkeeping step: Ctrl-C must not leave half a commit.
    pub fn commit_all(
        &self,
        worktree: &Path,
        message: &str,
        date: Option<&str>,
        has_identity: bool,
    ) -> Result<Option<String>, WorkspaceError> {
        let status =
            crate::workspace::git_ok(worktree, &["status", "--porcelain", "--untracked-files=all"], self.timeout)?;
        if status.trim().is_empty() {
            return Ok(None);
        }
        let mut cmd =
            self.cmd(worktree, &["modify", "--commit", "--all", "--no-verify", "--message", message]).not_cancellable();
        // Commit as loop rather than fail when git has no identity here (as `git commit` does).
        if !has_identity {
            for (k, v) in [
                ("GIT_AUTHOR_NAME", "loop"),
                ("GIT_AUTHOR_EMAIL", "loop@localhost"),
                ("GIT_COMMITTER_NAME", "loop"),
                ("GIT_COMMITTER_EMAIL", "loop@localhost"),
            ] {
                cmd = cmd.env(k, v);
            }
        }
        if let Some(d) = date {
            cmd = cmd.env("GIT_AUTHOR_DATE", d).env("GIT_COMMITTER_DATE", d);
        }
        self.check(&["modify", "--commit", "--all"], proc::run(&cmd)?)?;
        Ok(Some(crate::workspace::git_ok(worktree, &["rev-parse", "HEAD"], self.timeout)?))
    }

    pub fn submit_draft(&self, worktree: &Path) -> Result<String, WorkspaceError> {
        self.run(worktree, &["submit", "--draft"])
    }

    /// `gt state` as branch → compact JSON of its entry.
    pub fn state(&self, dir: &Path) -> Result<BTreeMap<String, String>, WorkspaceError> {
        let text = self.run(dir, &["state"])?;
        let start = text.find('{').unwrap_or(0);
        let end = text.rfind('}').map(|e| e + 1).unwrap_or(text.len());
        let v: serde_json::Value = serde_json::from_str(&text[start..end])
            .map_err(|e| WorkspaceError::git("gt state", format!("not JSON: {e}"), ""))?;
        Ok(v.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()).unwrap_or_default())
    }
}
