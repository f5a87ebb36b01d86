//! Git worktrees, one per issue, and the names they get.
//!
//! Invariants:
//! - `loop` creates, reuses and removes only worktrees whose intent it journaled; the engine holds
//!   that licence and passes `adopt` only when the journal shows a previous attempt of its own.
//! - Removal never forces: a worktree with uncommitted changes, or whose HEAD left its branch, is
//!   kept and the reason reported. Branches are never deleted.
//! - Issue ids pass through [`sanitize`] before they become a branch or a path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::{self, Cmd, Output};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("git {args}: {detail}")]
    Git { args: String, detail: String },
    #[error(transparent)]
    Proc(#[from] proc::ProcError),
    #[error("{path} already exists and was not created by loop; move it away or use another --state-dir")]
    PathTaken { path: String },
    #[error("branch {branch} already exists and loop did not create it in this run; delete or rename it first")]
    BranchTaken { branch: String },
    #[error("{path} is a worktree on {actual}, not on {expected}")]
    WrongBranch { path: String, expected: String, actual: String },
    #[error("{0} is not inside a git repository")]
    NotARepo(String),
}

/// What happened when loop tried to remove a worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    Kept(String),
    AlreadyGone,
}

/// The effects on git the engine needs.
pub trait Workspace: Send + Sync {
    /// The commit the run starts from (HEAD of the main checkout).
    fn head_commit(&self) -> Result<String, WorkspaceError>;
    /// The tip of a local branch, if it exists.
    fn branch_tip(&self, branch: &str) -> Result<Option<String>, WorkspaceError>;
    /// Creates the worktree on a new branch at `base`; with `adopt`, a worktree or branch left by
    /// an earlier attempt of the same run is reused.
    fn create(&self, path: &Path, branch: &str, base: &str, adopt: bool) -> Result<(), WorkspaceError>;
    /// Commits everything in the worktree (the agent's sandbox cannot write `.git`, so loop
    /// commits for it). Returns the new commit, or None when nothing changed.
    fn commit_all(&self, worktree: &Path, message: &str, date: Option<&str>) -> Result<Option<String>, WorkspaceError>;
    /// Removes a finished issue's worktree if nothing would be lost.
    fn remove(&self, path: &Path, branch: &str) -> Result<Removal, WorkspaceError>;
    /// Whether git has a user identity here (else loop commits as `loop`); asked once per run.
    fn has_identity(&self, worktree: &Path) -> Result<bool, WorkspaceError>;
}

pub struct GitWorkspace {
    repo: PathBuf,
    timeout: Duration,
    /// Whether git has a user identity here; asked once per run, not once per commit.
    has_identity: std::sync::OnceLock<bool>,
    /// Serialises `git worktree add/remove`: with --jobs, one `worktree add` can read another's
    /// half-made admin dir and fail ("failed to read .git/worktrees/X/commondir").
    admin: std::sync::Mutex<()>,
}

/// Runs git with an argument vector, no prompts, no inherited repository overrides.
pub fn git(dir: &Path, args: &[&str], timeout: Duration) -> Result<Output, WorkspaceError> {
    let cmd = Cmd::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // Read-only commands (status) must not take index.lock: with --jobs, one issue's guard
        // snapshot would otherwise collide with another issue's `git add` in its worktree.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .timeout(timeout)
        .not_cancellable();
    Ok(proc::run(&cmd)?)
}

/// Like [`git`], but a non-zero exit is an error carrying git's message.
pub fn git_ok(dir: &Path, args: &[&str], timeout: Duration) -> Result<String, WorkspaceError> {
    let out = git(dir, args, timeout)?;
    if !out.success() {
        let msg = out.stderr_text();
        let detail = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(WorkspaceError::Git {
            args: args.join(" "),
            detail: if detail.is_empty() { out.describe() } else { detail },
        });
    }
    Ok(out.stdout_text().trim_end().to_string())
}

impl GitWorkspace {
    pub fn new(repo: &Path) -> GitWorkspace {
        GitWorkspace {
            repo: repo.to_path_buf(),
            timeout: Duration::from_secs(120),
            has_identity: Default::default(),
            admin: Default::default(),
        }
    }

    /// The top of the repository containing `dir`.
    pub fn toplevel(dir: &Path) -> Result<PathBuf, WorkspaceError> {
        git_ok(dir, &["rev-parse", "--show-toplevel"], Duration::from_secs(30))
            .map(PathBuf::from)
            .map_err(|_| WorkspaceError::NotARepo(dir.display().to_string()))
    }

    /// Adds a pattern to the repository's `info/exclude` (shared by all worktrees) once.
    pub fn exclude(&self, pattern: &str) -> Result<(), WorkspaceError> {
        let common = git_ok(&self.repo, &["rev-parse", "--git-common-dir"], self.timeout)?;
        let common = self.repo.join(common);
        let rel = Path::new("info/exclude");
        let fs = |e: crate::safefs::SafeFsError| WorkspaceError::Git { args: "info/exclude".into(), detail: e.to_string() };
        let existing = String::from_utf8_lossy(&crate::safefs::read(&common, rel).map_err(fs)?.unwrap_or_default()).into_owned();
        if existing.lines().any(|l| l.trim() == pattern) {
            return Ok(());
        }
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(pattern);
        text.push('\n');
        crate::safefs::write(&common, rel, text.as_bytes()).map_err(fs)
    }

    /// `(path, branch)` of every registered worktree.
    fn worktrees(&self) -> Result<Vec<(PathBuf, Option<String>)>, WorkspaceError> {
        // A concurrent `git worktree add` (another issue, --jobs) can make this fail for a moment.
        let mut attempt = 0u64;
        let text = loop {
            match git_ok(&self.repo, &["worktree", "list", "--porcelain"], self.timeout) {
                Ok(t) => break t,
                Err(e) if attempt >= 4 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 * attempt));
                }
            }
        };
        let mut out = Vec::new();
        let mut cur: Option<(PathBuf, Option<String>)> = None;
        for line in text.lines() {
            if let Some(p) = line.strip_prefix("worktree ") {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
                cur = Some((PathBuf::from(p), None));
            } else if let Some(b) = line.strip_prefix("branch ") {
                if let Some(c) = &mut cur {
                    c.1 = Some(b.trim_start_matches("refs/heads/").to_string());
                }
            }
        }
        out.extend(cur);
        Ok(out)
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

impl Workspace for GitWorkspace {
    fn head_commit(&self) -> Result<String, WorkspaceError> {
        git_ok(&self.repo, &["rev-parse", "--verify", "HEAD^{commit}"], self.timeout)
    }

    fn branch_tip(&self, branch: &str) -> Result<Option<String>, WorkspaceError> {
        let refname = format!("refs/heads/{branch}");
        let out = git(&self.repo, &["rev-parse", "--verify", "--quiet", &refname], self.timeout)?;
        Ok(out.success().then(|| out.stdout_text().trim().to_string()))
    }

    fn create(&self, path: &Path, branch: &str, base: &str, adopt: bool) -> Result<(), WorkspaceError> {
        let shown = path.display().to_string();
        if !adopt {
            // A fresh worktree: one git call. `-b` refuses an existing branch, which is exactly
            // the ownership rule (loop never takes over a branch it did not create).
            if path.exists() {
                return Err(WorkspaceError::PathTaken { path: shown });
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| WorkspaceError::Git { args: "mkdir".into(), detail: e.to_string() })?;
            }
            let p = path.to_string_lossy();
            let out = {
                let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
                git(&self.repo, &["worktree", "add", "-q", "-b", branch, &p, base], self.timeout)?
            };
            if out.success() {
                return Ok(());
            }
            let err = out.stderr_text();
            if err.contains("already exists") && err.contains(branch) {
                return Err(WorkspaceError::BranchTaken { branch: branch.to_string() });
            }
            let detail = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            return Err(WorkspaceError::Git { args: format!("worktree add -b {branch} {p} {base}"), detail });
        }
        if let Some((_, on)) = self.worktrees()?.into_iter().find(|(p, _)| same_path(p, path)) {
            if !adopt {
                return Err(WorkspaceError::PathTaken { path: shown });
            }
            return match on {
                Some(b) if b == branch => Ok(()),
                other => Err(WorkspaceError::WrongBranch {
                    path: shown,
                    expected: branch.to_string(),
                    actual: other.unwrap_or_else(|| "a detached HEAD".into()),
                }),
            };
        }
        if path.exists() {
            let empty = std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !(adopt && empty) {
                return Err(WorkspaceError::PathTaken { path: shown });
            }
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| WorkspaceError::Git { args: "mkdir".into(), detail: e.to_string() })?;
        }
        let p = path.to_string_lossy();
        if self.branch_tip(branch)?.is_some() {
            if !adopt {
                return Err(WorkspaceError::BranchTaken { branch: branch.to_string() });
            }
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            git_ok(&self.repo, &["worktree", "add", &p, branch], self.timeout)?;
        } else {
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            git_ok(&self.repo, &["worktree", "add", "-b", branch, &p, base], self.timeout)?;
        }
        Ok(())
    }

    fn has_identity(&self, wt: &Path) -> Result<bool, WorkspaceError> {
        match self.has_identity.get() {
            Some(v) => Ok(*v),
            None => {
                let v = git(wt, &["config", "user.email"], self.timeout)?.success();
                Ok(*self.has_identity.get_or_init(|| v))
            }
        }
    }

    fn commit_all(&self, wt: &Path, message: &str, date: Option<&str>) -> Result<Option<String>, WorkspaceError> {
        // Two git processes per commit (add, commit); the commit id is read from the ref file.
        // Every process counts: this runs after each dev and fix phase of every issue.
        git_ok(wt, &["add", "-A"], self.timeout)?;
        // Use the user's identity when git has one; otherwise commit as loop rather than fail.
        let has_identity = self.has_identity(wt)?;
        let mut cmd = Cmd::new("git")
            .arg("-C")
            .arg(wt)
            .env("GIT_TERMINAL_PROMPT", "0")
            // git's "nothing to commit" is matched below; keep it in English.
            .env("LC_ALL", "C")
            .timeout(self.timeout)
            .not_cancellable();
        if !has_identity {
            cmd = cmd.args(["-c", "user.name=loop", "-c", "user.email=loop@localhost"]);
        }
        cmd = cmd.args(["-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message]);
        if let Some(d) = date {
            cmd = cmd.env("GIT_AUTHOR_DATE", d).env("GIT_COMMITTER_DATE", d);
        }
        let out = proc::run(&cmd)?;
        if !out.success() {
            let said = format!("{}{}", out.stdout_text(), out.stderr_text());
            if out.code == Some(1) && (said.contains("nothing to commit") || said.contains("nothing added to commit")) {
                return Ok(None);
            }
            return Err(WorkspaceError::Git { args: "commit".into(), detail: said.trim().to_string() });
        }
        match worktree_tip(wt) {
            Some(oid) => Ok(Some(oid)),
            None => Ok(Some(git_ok(wt, &["rev-parse", "HEAD"], self.timeout)?)),
        }
    }

    fn remove(&self, path: &Path, branch: &str) -> Result<Removal, WorkspaceError> {
        if !path.exists() {
            // Already gone (removed by hand): let git forget it, nothing else to protect.
            let _ = git(&self.repo, &["worktree", "prune"], self.timeout);
            return Ok(Removal::AlreadyGone);
        }
        match worktree_head(path) {
            Some(on) if on == branch => {}
            other => {
                let at = other.unwrap_or_else(|| "a detached HEAD".into());
                return Ok(Removal::Kept(format!("worktree is on {at}, not {branch}; its commits could be lost")));
            }
        }
        // Without --force, git itself refuses a worktree with modified or untracked files:
        // that refusal is the "nothing would be lost" check, in the same process.
        let p = path.to_string_lossy();
        let out = {
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            git(&self.repo, &["worktree", "remove", &p], self.timeout)?
        };
        if out.success() {
            return Ok(Removal::Removed);
        }
        let err = out.stderr_text();
        if err.contains("modified or untracked files") {
            let status = git(path, &["status", "--porcelain", "--untracked-files=all"], self.timeout)?;
            let n = status.stdout_text().lines().count().max(1);
            return Ok(Removal::Kept(format!("{n} uncommitted change(s) in the worktree")));
        }
        let detail = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Err(WorkspaceError::Git { args: format!("worktree remove {p}"), detail })
    }
}

/// The commit a linked worktree's branch points at, read from the loose ref (no git process);
/// None when it is not a loose ref (then ask git).
fn worktree_tip(wt: &Path) -> Option<String> {
    let admin = worktree_admin(wt)?;
    let head = std::fs::read_to_string(admin.join("HEAD")).ok()?;
    let refname = head.trim().strip_prefix("ref: ")?.to_string();
    let common = std::fs::read_to_string(admin.join("commondir")).ok()?;
    let common = common.trim();
    let common = if Path::new(common).is_absolute() { PathBuf::from(common) } else { admin.join(common) };
    let oid = std::fs::read_to_string(common.join(&refname)).ok()?;
    let oid = oid.trim();
    (oid.len() >= 40 && oid.chars().all(|c| c.is_ascii_hexdigit())).then(|| oid.to_string())
}

fn worktree_admin(wt: &Path) -> Option<PathBuf> {
    let dotgit = std::fs::read_to_string(wt.join(".git")).ok()?;
    let admin = dotgit.strip_prefix("gitdir:")?.trim();
    Some(if Path::new(admin).is_absolute() { PathBuf::from(admin) } else { wt.join(admin) })
}

/// The branch a linked worktree has checked out, read from its HEAD file (no git process):
/// `<wt>/.git` names the worktree's admin dir, whose `HEAD` is `ref: refs/heads/BRANCH`.
fn worktree_head(wt: &Path) -> Option<String> {
    let admin = worktree_admin(wt)?;
    let head = std::fs::read_to_string(admin.join("HEAD")).ok()?;
    head.trim().strip_prefix("ref: refs/heads/").map(str::to_string)
}

/// Turns an issue or milestone id into a safe branch component and directory name.
///
/// Keeps `[A-Za-z0-9._-]`, maps everything else to `-`, never yields `.`/`..`, a leading `-` or
/// `.`, or a `.lock` suffix. When anything had to change, a short hash of the original id is
/// appended so two different ids can never collide.
pub fn sanitize(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let trimmed = s.trim_matches(|c| c == '-' || c == '.').to_string();
    let mut out: String = trimmed.chars().take(60).collect();
    if out.ends_with(".lock") {
        out.push('-');
    }
    if out != id || out.is_empty() {
        let h = blake3::hash(id.as_bytes()).to_hex();
        let tag = &h.as_str()[..8];
        out = if out.is_empty() { format!("id-{tag}") } else { format!("{out}-{tag}") };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_ids_pass_through() {
        assert_eq!(sanitize("ORB-3"), "ORB-3");
        assert_eq!(sanitize("M2-engine"), "M2-engine");
    }

    #[test]
    fn hostile_ids_are_tamed_and_distinct() {
        for id in ["../etc", "a b", "a;rm -rf /", "-x", ".hidden", "x.lock", "é", "a/b", "", "..", "a\nb"] {
            let s = sanitize(id);
            assert!(!s.is_empty(), "{id:?}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{id:?} -> {s}");
            assert!(!s.starts_with(['-', '.']) && !s.contains("..") && !s.ends_with(".lock"), "{id:?} -> {s}");
        }
        assert_ne!(sanitize("a b"), sanitize("a-b"));
        assert_ne!(sanitize("a/b"), sanitize("a b"));
    }
}
