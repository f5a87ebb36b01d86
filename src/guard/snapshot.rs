//! Detection: what the repository looks like before and after a phase, and what changed
//! outside the issue's own branch and worktree.
//!
//! This is the one guard that still holds under `danger-full-access`: it does not depend on
//! the agent's shell at all. Nothing is ever reverted; changes are only reported.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::workspace::{git, git_ok, WorkspaceError};

/// Every change a checkout shows, untracked files one by one.
const STATUS: &[&str] = &["status", "--porcelain", "--untracked-files=all"];

const GRAPHITE_FILES: &[&str] = &[".graphite_repo_config", ".graphite_metadata.db", ".graphite_pr_info"];

/// Everything a misbehaving agent could change outside its worktree that loop can see.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// refname → object id, every ref but remote-tracking ones (those only cache the remote).
    pub refs: BTreeMap<String, String>,
    /// worktree path → what it has checked out (`branch X` or `detached SHA`).
    pub worktrees: BTreeMap<String, String>,
    /// file in the common git dir → blake3 of its bytes (`absent` when missing).
    pub graphite: BTreeMap<String, String>,
    /// gt's view per branch (`gt state`), when gt is in use: it lets own-branch metadata
    /// changes pass while other branches' changes are caught.
    pub graphite_state: Option<BTreeMap<String, String>>,
    /// worktree path (the main checkout included) → `git status --porcelain` lines; the
    /// issue's own worktree and its siblings' are left out (see [`take`]).
    pub status: BTreeMap<String, Vec<String>>,
    /// The main checkout's path, as a key of `worktrees` and `status`.
    #[serde(default)]
    pub main: String,
}

/// Which changes belong to the issue.
pub struct Own<'a> {
    pub branch: &'a str,
    /// The worktree, canonical.
    worktree: String,
    /// `(branch, worktree)` of the run's other issues while they run concurrently (`--jobs` > 1):
    /// loop itself changes those during this phase, so they are theirs to check, not this one's.
    pub siblings: &'a [(String, String)],
    /// The siblings' worktree paths, as given and canonical: asked for every worktree of every
    /// snapshot, so made once (a run of 1,000 issues has 999 siblings).
    sibling_paths: HashSet<String>,
    /// Where loop makes its own scratch worktrees (verification baselines, as given and
    /// canonical): another issue's verification adds and removes them during this phase.
    scratch: Vec<String>,
}

impl<'a> Own<'a> {
    pub fn new(branch: &'a str, worktree: &Path, siblings: &'a [(String, String)]) -> Own<'a> {
        let sibling_paths =
            siblings.iter().flat_map(|(_, w)| [w.clone(), canon(Path::new(w)).display().to_string()]).collect();
        Own { branch, worktree: canon(worktree).display().to_string(), siblings, sibling_paths, scratch: Vec::new() }
    }

    /// Worktrees below `dir` are loop's own scratch worktrees (see [`Own::scratch`]).
    pub fn with_scratch(mut self, dir: Option<&Path>) -> Own<'a> {
        if let Some(d) = dir {
            let real = d.parent().map(|p| canon(p).join(d.file_name().unwrap_or_default())).unwrap_or_else(|| d.into());
            self.scratch = vec![format!("{}/", d.display()), format!("{}/", real.display())];
        }
        self
    }

    /// Whether `path` (a snapshot's key) is the issue's own worktree or a sibling's: their
    /// checkouts change during the phase by design, so their status is neither taken nor compared.
    fn owns_checkout(&self, path: &str) -> bool {
        path == self.worktree || self.is_sibling_worktree(path)
    }

    /// The branch, and branches it stacked on top of itself (`BRANCH-…`, the names
    /// README "Safety" asks `gt create` to use).
    fn owns_branch(&self, name: &str) -> bool {
        let mine = |b: &str| name == b || name.strip_prefix(b).is_some_and(|r| r.starts_with('-'));
        mine(self.branch) || self.siblings.iter().any(|(b, _)| mine(b))
    }

    fn is_sibling_worktree(&self, path: &str) -> bool {
        self.sibling_paths.contains(path) || self.scratch.iter().any(|s| path.starts_with(s.as_str()))
    }

    fn owns_ref(&self, refname: &str) -> bool {
        refname.strip_prefix("refs/heads/").is_some_and(|b| self.owns_branch(b))
    }
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Takes a snapshot of `repo` (the main checkout). `gt` is used for `gt state` when given.
///
/// `git status` is the expensive part (it looks at every file of a checkout: about 0.2 s per
/// 30,000 files, more in a fresh checkout whose index git never refreshed), so it is taken only
/// where [`foreign_changes`] compares it: the main checkout and worktrees that are not `own`'s.
///
/// With `--jobs`, another issue's `git worktree add` can be half-way (its admin dir exists, its
/// `commondir` not yet), and `git worktree list` then fails; that is transient, so a failed
/// snapshot is retried a few times before it counts.
///
/// `common` is the repository's common git dir when the caller knows it (it never moves; asking
/// git costs a process per snapshot).
pub fn take(
    repo: &Path,
    gt: Option<&crate::stack::Gt>,
    timeout: Duration,
    own: &Own,
    common: Option<&Path>,
) -> Result<Snapshot, WorkspaceError> {
    let mut last = None;
    for attempt in 0..5u64 {
        match take_once(repo, gt, timeout, own, common) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20 * (attempt + 1)));
    }
    Err(last.expect("at least one attempt"))
}

fn take_once(
    repo: &Path,
    gt: Option<&crate::stack::Gt>,
    timeout: Duration,
    own: &Own,
    common: Option<&Path>,
) -> Result<Snapshot, WorkspaceError> {
    let mut s = Snapshot::default();
    let refs = git_ok(repo, &["for-each-ref", "--format=%(refname) %(objectname)"], timeout)?;
    for line in refs.lines() {
        if let Some((name, oid)) = line.split_once(' ') {
            if !name.starts_with("refs/remotes/") {
                s.refs.insert(name.to_string(), oid.to_string());
            }
        }
    }
    let list = git_ok(repo, &["worktree", "list", "--porcelain"], timeout)?;
    let mut cur: Option<String> = None;
    for line in list.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            let path = canon(Path::new(p)).display().to_string();
            // git lists the main worktree first.
            if s.worktrees.is_empty() {
                s.main = path.clone();
            }
            s.worktrees.insert(path.clone(), String::new());
            cur = Some(path);
        } else if let Some(c) = &cur {
            let what = if let Some(b) = line.strip_prefix("branch ") {
                format!("branch {}", b.trim_start_matches("refs/heads/"))
            } else if let Some(h) = line.strip_prefix("HEAD ") {
                format!("detached {h}")
            } else {
                continue;
            };
            // `branch` follows `HEAD` in the porcelain output and wins.
            let e = s.worktrees.entry(c.clone()).or_default();
            if e.is_empty() || what.starts_with("branch ") {
                *e = what;
            }
        }
    }
    for path in s.worktrees.keys().cloned().collect::<Vec<_>>() {
        if own.owns_checkout(&path) || !Path::new(&path).is_dir() {
            continue;
        }
        let out = git(Path::new(&path), STATUS, timeout)?;
        // The main checkout's status also decides whether a phase may start: a failure there
        // is an error (retried), never "clean".
        if path == s.main && !out.success() {
            return Err(WorkspaceError::git(STATUS.join(" "), out.stderr_text().trim(), &out.stderr_text()));
        }
        let lines = out.stdout_text().lines().map(String::from).collect();
        s.status.insert(path, lines);
    }
    let common = match common {
        Some(c) => c.to_path_buf(),
        None => common_dir(repo, timeout)?,
    };
    for f in GRAPHITE_FILES {
        let hash = match std::fs::read(common.join(f)) {
            Ok(bytes) => blake3::hash(&bytes).to_hex().to_string(),
            Err(_) => "absent".to_string(),
        };
        s.graphite.insert(f.to_string(), hash);
    }
    if let Some(gt) = gt {
        if s.graphite.get(".graphite_repo_config").is_some_and(|h| h != "absent") {
            s.graphite_state = Some(gt.state(repo)?);
        }
    }
    Ok(s)
}

/// Every change from `before` to `after` that is not the issue's own, one line each.
pub fn foreign_changes(before: &Snapshot, after: &Snapshot, own: &Own) -> Vec<String> {
    let mut out = Vec::new();
    let own_wt = own.worktree.as_str();
    for (name, oid) in &after.refs {
        match before.refs.get(name) {
            Some(old) if old == oid => {}
            _ if own.owns_ref(name) => {}
            Some(old) => out.push(format!("ref {name} moved {} → {}", short(old), short(oid))),
            None => out.push(format!("ref {name} created at {}", short(oid))),
        }
    }
    for (name, oid) in &before.refs {
        if !after.refs.contains_key(name) && !own.owns_ref(name) {
            out.push(format!("ref {name} deleted (was {})", short(oid)));
        }
    }
    for (path, what) in &after.worktrees {
        if own.is_sibling_worktree(path) {
            continue;
        }
        match before.worktrees.get(path) {
            None => out.push(format!("worktree {path} added ({what})")),
            Some(old) if old != what => {
                let own_move = path == own_wt && what.strip_prefix("branch ").is_some_and(|b| own.owns_branch(b));
                if !own_move {
                    out.push(format!("worktree {path} switched from {old} to {what}"));
                }
            }
            Some(_) => {}
        }
    }
    for path in before.worktrees.keys() {
        if !after.worktrees.contains_key(path) && !own.is_sibling_worktree(path) {
            out.push(format!("worktree {path} removed"));
        }
    }
    let uses_state = before.graphite_state.is_some() && after.graphite_state.is_some();
    for (f, h) in &after.graphite {
        if before.graphite.get(f) != Some(h) && !(uses_state && f == ".graphite_metadata.db") {
            out.push(format!("graphite metadata {f} changed"));
        }
    }
    if let (Some(b), Some(a)) = (&before.graphite_state, &after.graphite_state) {
        for (branch, v) in a {
            if b.get(branch) != Some(v) && !own.owns_branch(branch) {
                out.push(format!("graphite branch {branch} changed: {v}"));
            }
        }
        for branch in b.keys() {
            if !a.contains_key(branch) && !own.owns_branch(branch) {
                out.push(format!("graphite branch {branch} untracked"));
            }
        }
    }
    for (path, lines) in &after.status {
        if own.owns_checkout(path) {
            continue;
        }
        let old = before.status.get(path).cloned().unwrap_or_default();
        for l in lines {
            if !old.contains(l) {
                out.push(format!("{path}: {l}"));
            }
        }
        for l in &old {
            if !lines.contains(l) {
                out.push(format!("{path}: no longer `{l}`"));
            }
        }
    }
    out
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(12)]
}

/// The repository's common git dir, absolute.
pub fn common_dir(repo: &Path, timeout: Duration) -> Result<PathBuf, WorkspaceError> {
    git_ok(repo, &["rev-parse", "--path-format=absolute", "--git-common-dir"], timeout).map(PathBuf::from)
}

/// `git status --porcelain` of the main checkout, for the before-phase cleanliness check.
pub fn main_status(repo: &Path, timeout: Duration) -> Result<Vec<String>, WorkspaceError> {
    let out = git_ok(repo, STATUS, timeout)?;
    Ok(out.lines().map(String::from).collect())
}

/// The branch checked out in `dir`, if any.
pub fn current_branch(dir: &Path, timeout: Duration) -> Option<String> {
    let out = git(dir, &["symbolic-ref", "-q", "--short", "HEAD"], timeout).ok()?;
    out.success().then(|| out.stdout_text().trim().to_string())
}
