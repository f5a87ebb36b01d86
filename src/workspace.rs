//! Git worktrees, one per issue, and the names they get.
//!
//! Invariants:
//! - `loop` creates, reuses and removes only worktrees whose intent it journaled; the engine holds
//!   that licence and passes `adopt` only when the journal shows a previous attempt of its own.
//! - Removal never forces: a worktree with uncommitted changes, or whose HEAD left its branch, is
//!   kept and the reason reported. Branches are never deleted.
//! - Issue ids pass through [`sanitize`] before they become a branch or a path.
//! - Durable before journaled: every git effect a record claims (worktree added, commit made,
//!   branch moved, worktree removed) is on disk when the method returns, in one of two ways
//!   chosen before git runs ([`Settle`]):
//!   loop's git commands always run with git's fsync settings ([`FSYNC_CONFIG`]): besides
//!   durability they order git's writes (objects before the ref naming them, the index before
//!   its rename), so a power cut in the middle leaves a repository git can read. What git never
//!   fsyncs (the worktree's `.git` file and checkout, the admin dir under `.git/worktrees/`,
//!   the directories that gained or lost an entry) loop makes durable:
//!   - where every file system the effect writes to (the common git dir's, the worktree's) is a
//!     local one whose `syncfs` is known to reach the device (ext4, XFS, btrfs, F2FS; tmpfs has
//!     no device), with one `syncfs` per file system after git. That is as strong as an fsync
//!     of each of them: `syncfs` writes back and waits on every dirty inode of the file system
//!     (data and metadata, directories included), then has it commit its journal and flush the
//!     device's write cache; and since its descriptors were opened before git ran, it reports
//!     a writeback error the kernel met in git's writes meanwhile. A 10-issue run made about 29
//!     fsyncs of loop's own per issue, now 3 `syncfs`. Its cost includes other programs' dirty
//!     data on the same file system (a build beside it).
//!   - elsewhere (FUSE, whose `syncfs` does not reach the daemon's storage; network or unknown
//!     file systems) with an fsync of each file and directory. Many files at once (a checkout)
//!     are made durable with one `syncfs` where it reaches the device, so an issue's cost does
//!     not grow with the repository's file count.
//! - Verify before trusting: before loop acts again in a worktree an earlier process made,
//!   [`Workspace::check`] looks at it; what loop's own killed git left (an empty `.git` file, a
//!   missing admin dir, a worktree still locked "initializing", a half-done removal, a stale
//!   `*.lock` no live process holds) is repaired from the journaled commit and reported, so the
//!   engine can journal the repair. A worktree that is sound but not as loop left it (another
//!   branch checked out, a branch moved elsewhere) is never touched.
//! - Every error knows its [`Blame`], decided where it is made (git's whole stderr, the OS error
//!   code): a full disk or an I/O error under git is loop's environment, never the issue's failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::blame::Blame;
use crate::proc::{self, Cmd, Output};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("git {args}: {detail}")]
    Git { args: String, detail: String, blame: Blame },
    /// A file operation of loop's own around git (mkdir, info/exclude).
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Proc(#[from] proc::ProcError),
    #[error("{path} already exists and was not created by loop; move it away or use another --state-dir")]
    PathTaken { path: String },
    #[error(
        "branch {branch} already exists and no run of this milestone journaled it as loop's; delete or rename it, \
         or start over on new branches with `loop run --fresh`"
    )]
    BranchTaken { branch: String },
    #[error("branch {branch} should exist (loop made it earlier) but is missing; `loop run --fresh` starts over")]
    BranchMissing { branch: String },
    #[error("{path} has uncommitted changes; loop merges the dependencies' branches only into a clean worktree")]
    Dirty { path: String },
    #[error("{path} is a worktree on {actual}, not on {expected}")]
    WrongBranch { path: String, expected: String, actual: String },
    #[error("{0} is not inside a git repository")]
    NotARepo(String),
    #[error("making {path} durable: {detail}")]
    Sync { path: String, detail: String },
    #[error("cannot repair {path}: {detail}")]
    Unrepairable { path: String, detail: String },
}

/// git's own durability for loop's git commands: objects, the index and refs are fsynced before
/// git reports success. `fsync` rather than `batch`: on Linux, batch mode flushes loose objects
/// with writeback plus one fsync of a scratch file, which only a file system that commits all
/// metadata together (ext4's journal) turns into durability; a per-file fsync holds everywhere.
pub const FSYNC_CONFIG: [&str; 4] = ["-c", "core.fsync=committed,index,reference", "-c", "core.fsyncMethod=fsync"];

/// For loop's git commands that write: no `git maintenance run --auto` after them. git starts
/// one after every commit, a process of its own, and when it finds work it runs detached in the
/// repository while loop goes on, where its `pack-refs` and `gc` take locks loop's next ref
/// update or worktree add may need. The team's own git commands still run it.
pub const NO_AUTO_MAINTENANCE: [&str; 2] = ["-c", "maintenance.auto=false"];

/// How one git effect is made durable, decided before its git command runs.
enum Settle {
    /// Not at all (`loop bench` only, to show what durability costs).
    Off,
    /// git fsyncs each object, index and ref it writes ([`FSYNC_CONFIG`]); loop fsyncs the
    /// files and directories git does not. Where `syncfs` is not known to reach the device.
    PerPath,
    /// git fsyncs what it orders (objects, index, refs); one `syncfs` of each file system it
    /// wrote to afterwards makes the rest of the effect durable, instead of loop's fsyncs. Each descriptor is opened before git runs: `syncfs` reports a
    /// writeback error the file system met since the descriptor was opened, so one in git's
    /// own writes (flushed by the kernel before loop asked) is reported too.
    Syncfs(Vec<(u64, std::fs::File)>),
}

impl Settle {
    fn git_config(&self) -> &'static [&'static str] {
        match self {
            Settle::Off => &[],
            // git's own fsyncs stay under a `syncfs` too: they order its writes (objects before
            // the ref naming them, the index before its rename), so a power cut before the
            // `syncfs` leaves a repository git can read, as it would without loop.
            Settle::PerPath | Settle::Syncfs(_) => &FSYNC_CONFIG,
        }
    }
}

/// What [`Workspace::check`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Each repair, in words, for the journal (empty: the worktree was sound).
    pub repairs: Vec<String>,
    /// The worktree is gone: the removal an interrupted process had started was finished.
    pub removed: bool,
}

impl WorkspaceError {
    /// A failed git (or gt) command: `detail` is what the message shows, `said` all it printed,
    /// which decides the blame.
    pub fn git(args: impl Into<String>, detail: impl Into<String>, said: &str) -> WorkspaceError {
        WorkspaceError::Git { args: args.into(), detail: detail.into(), blame: Blame::of_git_stderr(said) }
    }

    /// Whether resuming after the environment recovers would cure this.
    pub fn blame(&self) -> Blame {
        match self {
            WorkspaceError::Git { blame, .. } => *blame,
            WorkspaceError::Io { source, .. } => Blame::of_io(source),
            // loop could not run its own git: nothing about the issue.
            WorkspaceError::Proc(_) => Blame::Environment,
            // loop's own durability or leftovers: the run stops, the issue is not judged.
            WorkspaceError::Sync { .. } | WorkspaceError::Unrepairable { .. } => Blame::Environment,
            WorkspaceError::PathTaken { .. }
            | WorkspaceError::BranchTaken { .. }
            | WorkspaceError::BranchMissing { .. }
            | WorkspaceError::Dirty { .. }
            | WorkspaceError::WrongBranch { .. }
            | WorkspaceError::NotARepo(_) => Blame::Issue,
        }
    }
}

/// What happened when loop tried to remove a worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    Kept(String),
    AlreadyGone,
    /// Removed, finishing a removal an interrupted process had started (the reason says what
    /// was left); nothing was lost, every remaining file was as committed.
    Finished(String),
}

/// What [`Workspace::merge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The branch holds every parent at `commit`: merged now, or already (every parent was in
    /// HEAD, or an interrupted process had merged them). `repairs` says what such a process
    /// left and how it was finished (for the journal).
    Merged { commit: String, repairs: Vec<String> },
    /// Merging `parent` (after the ones before it) conflicts in `files`; nothing was changed.
    Conflict { parent: String, files: Vec<String> },
}

/// The file in a worktree's admin dir (beside git's own `MERGE_HEAD`) naming the merge commit
/// loop is checking out, written before the checkout starts and removed when it is done: a
/// worktree found dirty with it present is loop's own interrupted checkout, not anyone's work.
const MERGING: &str = "loop-merging";

/// The attributes file (in a worktree's admin dir) giving loop's own files `merge=union` for
/// [`Workspace::merge`].
const UNION_ATTRIBUTES: &str = "loop-union-attributes";

/// A gitattributes pattern matching exactly the repository-relative `path`: anchored with a
/// leading `/`, glob characters escaped, and quoted when it holds a space or a quote.
fn attr_pattern(path: &str) -> String {
    let mut p = String::from("/");
    for c in path.trim_start_matches('/').chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    if p.chars().any(|c| c.is_whitespace() || c == '"') {
        let escaped = p.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        p
    }
}

/// The effects on git the engine needs.
pub trait Workspace: Send + Sync {
    /// The commit the run starts from (HEAD of the main checkout).
    fn head_commit(&self) -> Result<String, WorkspaceError>;
    /// The tip of a local branch, if it exists.
    fn branch_tip(&self, branch: &str) -> Result<Option<String>, WorkspaceError>;
    /// Creates the worktree on a new branch at `base`; with `adopt`, a worktree or branch left by
    /// an earlier attempt of the same run is reused when sound, or removed and added again when
    /// that attempt was killed half-way. With `reuse`, the branch already exists (loop made it in
    /// an earlier run of the milestone, or before a retry): it is checked out as it is, never
    /// moved, and `base` is only informative. Returns the repairs made (for the journal).
    fn create(
        &self,
        path: &Path,
        branch: &str,
        base: &str,
        adopt: bool,
        reuse: bool,
    ) -> Result<Vec<String>, WorkspaceError>;
    /// Merges `parents` (in order) into the worktree's branch as one merge commit, before any
    /// phase works there. A conflict changes nothing: the conflicting parent and files are
    /// returned. Finishes or redoes a merge an interrupted process left half-done. The files
    /// `union` names (repository-relative: loop's own append-only review docs) merge line-wise,
    /// both sides kept, as git's `merge=union` attribute does.
    fn merge(
        &self,
        worktree: &Path,
        parents: &[String],
        union: &[String],
        message: &str,
        date: Option<&str>,
    ) -> Result<MergeOutcome, WorkspaceError>;
    /// Checks a worktree loop made in an earlier process before loop acts in it again, and
    /// repairs what loop's own interrupted git left: a broken worktree is rebuilt on `branch`
    /// from `commit` (the last journaled commit), or, with `finishing`, its removal is finished.
    fn check(&self, path: &Path, branch: &str, commit: &str, finishing: bool) -> Result<Checked, WorkspaceError>;
    /// Commits everything in the worktree (the agent's sandbox cannot write `.git`, so loop
    /// commits for it). Returns the new commit, or None when nothing changed.
    fn commit_all(&self, worktree: &Path, message: &str, date: Option<&str>) -> Result<Option<String>, WorkspaceError>;
    /// Whether `ancestor` is `commit` or one of its ancestors.
    fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool, WorkspaceError>;
    /// Removes a finished issue's worktree if nothing would be lost.
    fn remove(&self, path: &Path, branch: &str) -> Result<Removal, WorkspaceError>;
    /// Whether git has a user identity here (else loop commits as `loop`); asked once per run.
    fn has_identity(&self, worktree: &Path) -> Result<bool, WorkspaceError>;
    /// The tree id of a commit (verification baselines are cached by tree).
    fn tree_of(&self, commit: &str) -> Result<String, WorkspaceError>;
    /// A detached checkout of `commit` at `path`, a scratch worktree loop owns (a verification
    /// baseline); a leftover of an interrupted earlier one at `path` is removed first.
    fn add_scratch(&self, path: &Path, commit: &str) -> Result<(), WorkspaceError>;
    /// Removes a scratch worktree [`Workspace::add_scratch`] made, whatever it holds.
    fn remove_scratch(&self, path: &Path) -> Result<(), WorkspaceError>;
    /// What `commit` changed against its first parent (journaled with the commit, for the
    /// report). None where the workspace cannot tell (a fake one in tests).
    fn diffstat(&self, _worktree: &Path, _commit: &str) -> Result<Option<crate::vocab::DiffStat>, WorkspaceError> {
        Ok(None)
    }
}

/// Reads the summary `git commit` prints (in the C locale): ` 3 files changed, 4 insertions(+),
/// 1 deletion(-)`, either count left out when it is zero; none when no line says so.
pub fn parse_commit_summary(out: &str) -> Option<crate::vocab::DiffStat> {
    let line = out.lines().find(|l| l.contains(" changed"))?;
    let mut stat = crate::vocab::DiffStat::default();
    for part in line.split(',') {
        let mut words = part.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next()? {
            "file" | "files" => stat.files = n.try_into().ok()?,
            w if w.starts_with("insertion") => stat.insertions = n,
            w if w.starts_with("deletion") => stat.deletions = n,
            _ => return None,
        }
    }
    Some(stat)
}

/// Sums `git diff-tree --numstat` lines: `added<TAB>deleted<TAB>path`, `-<TAB>-<TAB>path` for a
/// binary file (a changed file without lines).
pub fn parse_numstat(out: &str) -> crate::vocab::DiffStat {
    let mut stat = crate::vocab::DiffStat::default();
    for line in out.lines() {
        let mut cols = line.splitn(3, '\t');
        let (Some(a), Some(d), Some(_)) = (cols.next(), cols.next(), cols.next()) else { continue };
        stat.files += 1;
        stat.insertions += a.parse::<u64>().unwrap_or(0);
        stat.deletions += d.parse::<u64>().unwrap_or(0);
    }
    stat
}

pub struct GitWorkspace {
    repo: PathBuf,
    timeout: Duration,
    /// Whether git has a user identity here; asked once per run, not once per commit.
    has_identity: std::sync::OnceLock<bool>,
    /// Serialises `git worktree add/remove`: with --jobs, one `worktree add` can read another's
    /// half-made admin dir and fail ("failed to read .git/worktrees/X/commondir").
    admin: std::sync::Mutex<()>,
    /// The repository's common git dir (absolute), asked once.
    common: std::sync::OnceLock<PathBuf>,
    /// What each recent commit of `commit_all` changed, read from git's own summary of it, so
    /// `diffstat` needs no process of its own; taken out when asked for.
    stats: std::sync::Mutex<Vec<(String, crate::vocab::DiffStat)>>,
    /// Whether git effects are made durable (off only to measure their cost: `loop bench`).
    durable: bool,
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
        return Err(git_error(args, &out));
    }
    Ok(out.stdout_text().trim_end().to_string())
}

fn git_error(args: &[&str], out: &Output) -> WorkspaceError {
    let msg = out.stderr_text();
    let detail = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    WorkspaceError::git(args.join(" "), if detail.is_empty() { out.describe() } else { detail }, &msg)
}

/// How long one git command may take in `repo`: 120 s, plus 20 ms for every file the checkout
/// has (estimated from the size of its index, about 100 bytes an entry). Adding or removing a
/// worktree writes or unlinks every file of the checkout: at 30,000 files on a busy disk, one
/// `git worktree remove` took 60 to 80 s, and a fixed 120 s killed it under more load (the
/// guard row of `loop bench` lost an issue that way). A git that truly hangs is still stopped.
pub fn git_timeout(repo: &Path) -> Duration {
    const BASE: Duration = Duration::from_secs(120);
    const PER_FILE: Duration = Duration::from_millis(20);
    let entries = std::fs::metadata(repo.join(".git/index")).map(|m| m.len() / 100).unwrap_or(0);
    BASE + PER_FILE * entries.min(10_000_000) as u32
}

impl GitWorkspace {
    pub fn new(repo: &Path) -> GitWorkspace {
        GitWorkspace {
            repo: repo.to_path_buf(),
            timeout: git_timeout(repo),
            has_identity: Default::default(),
            admin: Default::default(),
            common: Default::default(),
            stats: Default::default(),
            durable: true,
        }
    }

    /// Turns git's fsync settings off (only `loop bench` does, to show what durability costs
    /// per issue; the CLI reads `LOOP_BENCH_NO_GIT_FSYNC`).
    pub fn with_durability(mut self, durable: bool) -> GitWorkspace {
        self.durable = durable;
        self
    }

    /// A git command that changes the repository: with git's fsync settings when durable.
    fn git_w(&self, dir: &Path, args: &[&str]) -> Result<Output, WorkspaceError> {
        let settle = if self.durable { Settle::PerPath } else { Settle::Off };
        self.git_s(dir, args, &settle)
    }

    /// A git command whose effect `settle` makes durable (with git's fsync settings unless
    /// durability is off).
    fn git_s(&self, dir: &Path, args: &[&str], settle: &Settle) -> Result<Output, WorkspaceError> {
        let mut all: Vec<&str> = NO_AUTO_MAINTENANCE.to_vec();
        all.extend_from_slice(settle.git_config());
        all.extend_from_slice(args);
        git(dir, &all, self.timeout)
    }

    fn git_s_ok(&self, dir: &Path, args: &[&str], settle: &Settle) -> Result<String, WorkspaceError> {
        let out = self.git_s(dir, args, settle)?;
        if !out.success() {
            return Err(git_error(args, &out));
        }
        Ok(out.stdout_text().trim_end().to_string())
    }

    fn git_w_ok(&self, dir: &Path, args: &[&str]) -> Result<String, WorkspaceError> {
        let out = self.git_w(dir, args)?;
        if !out.success() {
            return Err(git_error(args, &out));
        }
        Ok(out.stdout_text().trim_end().to_string())
    }

    fn common(&self) -> Result<&Path, WorkspaceError> {
        if let Some(c) = self.common.get() {
            return Ok(c);
        }
        let dir = git_ok(&self.repo, &["rev-parse", "--path-format=absolute", "--git-common-dir"], self.timeout)?;
        Ok(self.common.get_or_init(|| PathBuf::from(dir)))
    }

    /// The top of the repository containing `dir`.
    pub fn toplevel(dir: &Path) -> Result<PathBuf, WorkspaceError> {
        git_ok(dir, &["rev-parse", "--show-toplevel"], Duration::from_secs(30))
            .map(PathBuf::from)
            .map_err(|_| WorkspaceError::NotARepo(dir.display().to_string()))
    }

    /// Adds a pattern to the repository's `info/exclude` (shared by all worktrees) once.
    pub fn exclude(&self, pattern: &str) -> Result<(), WorkspaceError> {
        let common = self.common()?.to_path_buf();
        let rel = Path::new("info/exclude");
        let fs = |e: crate::safefs::SafeFsError| match e {
            crate::safefs::SafeFsError::Io { path, source } => WorkspaceError::Io { what: path, source },
            other => WorkspaceError::git("info/exclude", other.to_string(), ""),
        };
        let existing =
            String::from_utf8_lossy(&crate::safefs::read(&common, rel).map_err(fs)?.unwrap_or_default()).into_owned();
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

    fn create(
        &self,
        path: &Path,
        branch: &str,
        base: &str,
        adopt: bool,
        reuse: bool,
    ) -> Result<Vec<String>, WorkspaceError> {
        let shown = path.display().to_string();
        if reuse && self.branch_tip(branch)?.is_none() {
            // Never recreate it from `base`: the work it held would silently be gone.
            return Err(WorkspaceError::BranchMissing { branch: branch.to_string() });
        }
        if reuse && !adopt {
            if path.symlink_metadata().is_ok() {
                return Err(WorkspaceError::PathTaken { path: shown });
            }
            self.add_existing(path, branch)?;
            return Ok(Vec::new());
        }
        if !adopt {
            // A fresh worktree: one git call. `-b` refuses an existing branch, which is exactly
            // the ownership rule (loop never takes over a branch it did not create).
            if path.exists() {
                return Err(WorkspaceError::PathTaken { path: shown });
            }
            let started = since_now();
            self.make_parents(path)?;
            let settle = self.settle(path.parent().unwrap_or(path))?;
            let p = path.to_string_lossy();
            let out = {
                let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
                self.git_s(&self.repo, &["worktree", "add", "-q", "-b", branch, &p, base], &settle)?
            };
            if out.success() {
                self.finish(settle, Some((path, None)), || self.sync_added(path, branch, started))?;
                return Ok(Vec::new());
            }
            let err = out.stderr_text();
            if err.contains("already exists") && err.contains(branch) {
                return Err(WorkspaceError::BranchTaken { branch: branch.to_string() });
            }
            let detail = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            return Err(WorkspaceError::git(format!("worktree add -b {branch} {p} {base}"), detail, &err));
        }
        // An earlier attempt of this run journaled the intent and may have left anything from
        // nothing to a whole worktree: a sound one on the branch is adopted, a half-made one
        // (killed `git worktree add`) is removed and added again.
        let mut repairs = Vec::new();
        let admins = leftover_admins(self.common()?, path);
        if path.symlink_metadata().is_ok() || !admins.is_empty() {
            match self.diagnose(path, &admins) {
                None => {
                    if let Some((_, on)) = self.worktrees()?.into_iter().find(|(p, _)| same_path(p, path)) {
                        return match on {
                            Some(b) if b == branch => {
                                // That attempt's add may not have been made durable yet: a
                                // power cut before its checkout was fsynced leaves files whose
                                // data is gone (empty, or zeros) while git's index, elsewhere,
                                // is whole; the first commit would take them in. No agent has
                                // worked here yet, so any file unlike HEAD is such a loss.
                                if let Some(admin) = worktree_admin(path) {
                                    repairs.extend(self.remove_stale_locks(path, &admin, branch)?);
                                }
                                repairs.extend(self.restore_checkout(path)?);
                                self.sync_added(path, branch, SystemTime::UNIX_EPOCH)?;
                                Ok(repairs)
                            }
                            other => Err(WorkspaceError::WrongBranch {
                                path: shown,
                                expected: branch.to_string(),
                                actual: other.unwrap_or_else(|| "a detached HEAD".into()),
                            }),
                        };
                    }
                    return Err(WorkspaceError::PathTaken { path: shown });
                }
                Some(what) => {
                    // An empty directory is what an add killed before its first file leaves.
                    let empty = std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
                    self.teardown(path, &admins)?;
                    if !(empty && admins.is_empty()) {
                        repairs.push(format!("{what}: removed what an interrupted `git worktree add` left"));
                    }
                }
            }
        }
        // A `git worktree add -b` killed while creating the branch leaves its ref lock, which
        // would fail the add below.
        repairs.extend(self.remove_stale_ref_lock(path, branch)?);
        let started = since_now();
        self.make_parents(path)?;
        let settle = self.settle(path.parent().unwrap_or(path))?;
        let p = path.to_string_lossy();
        {
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            if self.branch_tip(branch)?.is_some() {
                self.git_s_ok(&self.repo, &["worktree", "add", "-q", &p, branch], &settle)?;
            } else {
                self.git_s_ok(&self.repo, &["worktree", "add", "-q", "-b", branch, &p, base], &settle)?;
            }
        }
        self.finish(settle, Some((path, None)), || self.sync_added(path, branch, started))?;
        Ok(repairs)
    }

    fn check(&self, path: &Path, branch: &str, commit: &str, finishing: bool) -> Result<Checked, WorkspaceError> {
        let mut out = Checked::default();
        let admins = leftover_admins(self.common()?, path);
        let present = path.symlink_metadata().is_ok();
        if finishing && !present && admins.is_empty() {
            // Removed completely; only the record of it was lost. `remove` says AlreadyGone.
            return Ok(out);
        }
        let short = &commit[..commit.len().min(12)];
        if let Some(what) = self.diagnose(path, &admins) {
            self.teardown(path, &admins)?;
            let moved = self.ensure_branch(path, branch, commit)?;
            out.repairs.extend(moved);
            if finishing {
                out.repairs.push(format!("{what}: finished its removal (branch {branch} keeps {short})"));
                out.removed = true;
            } else {
                self.add_existing(path, branch)?;
                out.repairs.push(format!("{what}: rebuilt it on {branch} from {short}"));
            }
            return Ok(out);
        }
        let admin = worktree_admin(path).ok_or_else(|| unrepairable(path, "no admin dir"))?;
        // The branch must hold what the journal says was committed on it.
        let tip = self.branch_tip(branch)?;
        let sound = match &tip {
            Some(t) => t == commit || self.is_ancestor(commit, t)?,
            None => false,
        };
        if !sound {
            let lost = match &tip {
                Some(t) => self.is_ancestor(t, commit)?,
                None => true,
            };
            if !lost {
                let t = tip.unwrap_or_default();
                return Err(unrepairable(
                    path,
                    &format!("branch {branch} is at {t}, which does not contain the journaled commit {commit}"),
                ));
            }
            self.teardown(path, &admins)?;
            out.repairs.extend(self.ensure_branch(path, branch, commit)?);
            if finishing {
                out.repairs.push(format!("finished its removal (branch {branch} keeps {short})"));
                out.removed = true;
            } else {
                self.add_existing(path, branch)?;
                out.repairs.push(format!("rebuilt it on {branch} from {short}"));
            }
            return Ok(out);
        }
        out.repairs.extend(self.remove_stale_locks(path, &admin, branch)?);
        Ok(out)
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
        // Files written since git last wrote the index are the ones this commit can take in;
        // with coarse file times, a second of slack costs a few extra fsyncs at most.
        let admin = worktree_admin(wt);
        let slack = Duration::from_secs(1);
        let changed_since = admin
            .as_ref()
            .and_then(|a| std::fs::metadata(a.join("index")).and_then(|m| m.modified()).ok())
            .map(|t| t - slack);
        let started = since_now();
        let settle = self.settle(wt)?;
        // Two git processes per commit (add, commit); the commit id is read from the ref file.
        // Every process counts: this runs after each dev and fix phase of every issue.
        let add: &[&str] = &["add", "-A"];
        let out = self.git_s(wt, add, &settle)?;
        if !out.success() {
            return Err(git_error(add, &out));
        }
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
        cmd = cmd.args(NO_AUTO_MAINTENANCE).args(settle.git_config());
        if !has_identity {
            cmd = cmd.args(["-c", "user.name=loop", "-c", "user.email=loop@localhost"]);
        }
        // Not `-q`: git's summary of the commit is the diffstat the journal records with it,
        // which saves a `git diff-tree` process per commit.
        cmd = cmd.args(["-c", "commit.gpgsign=false", "commit", "--no-verify", "-m", message]);
        if let Some(d) = date {
            cmd = cmd.env("GIT_AUTHOR_DATE", d).env("GIT_COMMITTER_DATE", d);
        }
        let out = proc::run(&cmd)?;
        if !out.success() {
            let said = format!("{}{}", out.stdout_text(), out.stderr_text());
            if out.code == Some(1) && (said.contains("nothing to commit") || said.contains("nothing added to commit")) {
                // `git add` may have rewritten the index, which git would have fsynced itself.
                if let Settle::Syncfs(_) = settle {
                    self.finish(settle, None, || Ok(()))?;
                }
                return Ok(None);
            }
            return Err(WorkspaceError::git("commit", said.trim(), &said));
        }
        let oid = match worktree_tip(wt) {
            Some(oid) => oid,
            None => git_ok(wt, &["rev-parse", "HEAD"], self.timeout)?,
        };
        self.finish(settle, Some((wt, changed_since)), || {
            self.sync_committed(wt, admin.as_deref(), changed_since, started)
        })?;
        if let Some(stat) = parse_commit_summary(&out.stdout_text()) {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            // A commit whose stat nobody asks for (not a phase's) must not make this grow.
            if stats.len() >= 16 {
                stats.remove(0);
            }
            stats.push((oid.clone(), stat));
        }
        Ok(Some(oid))
    }

    fn tree_of(&self, commit: &str) -> Result<String, WorkspaceError> {
        GitWorkspace::tree_of(self, commit)
    }

    fn add_scratch(&self, path: &Path, commit: &str) -> Result<(), WorkspaceError> {
        GitWorkspace::add_scratch(self, path, commit)
    }

    fn remove_scratch(&self, path: &Path) -> Result<(), WorkspaceError> {
        GitWorkspace::remove_scratch(self, path)
    }

    fn diffstat(&self, wt: &Path, commit: &str) -> Result<Option<crate::vocab::DiffStat>, WorkspaceError> {
        let known = {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats.iter().position(|(c, _)| c == commit).map(|i| stats.remove(i).1)
        };
        if known.is_some() {
            return Ok(known);
        }
        // A commit loop did not make itself (Graphite's): one read-only git process;
        // `--root` so a parentless commit counts too.
        let args = ["diff-tree", "--numstat", "--no-commit-id", "-M", "-r", "--root", commit];
        Ok(Some(parse_numstat(&git_ok(wt, &args, self.timeout)?)))
    }

    fn merge(
        &self,
        wt: &Path,
        parents: &[String],
        union: &[String],
        message: &str,
        date: Option<&str>,
    ) -> Result<MergeOutcome, WorkspaceError> {
        let admin = worktree_admin(wt).ok_or_else(|| unrepairable(wt, "not a worktree (no .git file)"))?;
        let mut repairs = Vec::new();
        if admin.join("MERGE_HEAD").is_file() {
            // loop never runs `git merge` itself; whoever left this, nothing half-merged stays.
            self.git_w_ok(wt, &["merge", "--abort"])?;
            repairs.push("aborted a merge left half-done in it (MERGE_HEAD)".to_string());
        }
        let head = git_ok(wt, &["rev-parse", "--verify", "HEAD^{commit}"], self.timeout)?;
        let marker = admin.join(MERGING);
        let interrupted = std::fs::read_to_string(&marker).ok().map(|t| t.trim().to_string());
        let head = match interrupted {
            Some(target) => {
                let first_parent =
                    git(wt, &["rev-parse", "--verify", "--quiet", &format!("{target}^1")], self.timeout)?;
                let from_here = target == head || first_parent.stdout_text().trim() == head;
                let started = since_now();
                let repair = if from_here {
                    // The checkout of loop's own merge commit was cut short: the worktree holds
                    // nothing but a part of it (the merge runs before any phase), so finish it.
                    self.git_w_ok(wt, &["reset", "-q", "--hard", &target])?;
                    if self.durable {
                        self.sync_committed(wt, Some(&admin), None, started)?;
                    }
                    let short = &target[..target.len().min(12)];
                    Some(format!("finished checking out the merge {short} an interrupted process had started"))
                } else {
                    None
                };
                self.clear_merging(wt, &admin)?;
                repairs.extend(repair);
                if from_here {
                    target
                } else {
                    head
                }
            }
            None => head,
        };
        let status = git(wt, &["status", "--porcelain", "--untracked-files=all"], self.timeout)?;
        if !status.success() {
            return Err(git_error(&["status", "--porcelain"], &status));
        }
        if !status.stdout_text().trim().is_empty() {
            return Err(WorkspaceError::Dirty { path: wt.display().to_string() });
        }
        let mut todo: Vec<&str> = Vec::new();
        for p in parents {
            if !self.is_ancestor(p, &head)? {
                todo.push(p);
            }
        }
        if todo.is_empty() {
            return Ok(MergeOutcome::Merged { commit: head, repairs });
        }
        // Each parent is merged in turn, in objects only (`merge-tree`): a conflict leaves the
        // worktree, its index and the branch exactly as they were. The steps between are
        // commits no ref names; the result is one commit whose parents are HEAD and them all.
        let started = since_now();
        // The union files' attribute, for these merges only: an attributes file of loop's own
        // beside the worktree's admin files (it stands in for the user's global one, if any, for
        // this one command; the repository's own attributes still apply).
        let attributes = if union.is_empty() {
            None
        } else {
            let text: String = union.iter().map(|p| format!("{} merge=union\n", attr_pattern(p))).collect();
            crate::safefs::write(&admin, Path::new(UNION_ATTRIBUTES), text.as_bytes()).map_err(|e| {
                WorkspaceError::Io {
                    what: admin.join(UNION_ATTRIBUTES).display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            Some(format!("core.attributesFile={}", admin.join(UNION_ATTRIBUTES).display()))
        };
        let mut acc = head.clone();
        let mut tree = String::new();
        for (i, p) in todo.iter().enumerate() {
            let mut args: Vec<&str> = Vec::new();
            if let Some(a) = &attributes {
                args.extend(["-c", a.as_str()]);
            }
            args.extend(["merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", acc.as_str(), p]);
            let out = self.git_w(wt, &args)?;
            let text = out.stdout_text();
            let mut fields = text.split('\0').filter(|f| !f.is_empty());
            match out.code {
                Some(0) => tree = fields.next().unwrap_or_default().to_string(),
                Some(1) => {
                    let mut files: Vec<String> = fields.skip(1).map(str::to_string).collect();
                    files.dedup();
                    return Ok(MergeOutcome::Conflict { parent: p.to_string(), files });
                }
                _ => return Err(git_error(&args, &out)),
            }
            if i + 1 < todo.len() {
                acc = self.commit_tree(wt, &tree, &[acc.as_str(), p], "loop: merge step", date)?;
            }
        }
        let mut all = vec![head.as_str()];
        all.extend(&todo);
        let merged = self.commit_tree(wt, &tree, &all, message, date)?;
        let fs = |e: crate::safefs::SafeFsError| WorkspaceError::Io {
            what: marker.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        crate::safefs::write(&admin, Path::new(MERGING), format!("{merged}\n").as_bytes()).map_err(fs)?;
        // `reset --keep` moves the branch and checks out what changed, refusing to overwrite any
        // local change (there is none: checked above); unlike `merge --ff-only`, no hook runs.
        let settle = self.settle(wt)?;
        self.git_s_ok(wt, &["reset", "-q", "--keep", &merged], &settle)?;
        self.finish(settle, Some((wt, Some(started))), || {
            self.sync_committed(wt, Some(&admin), Some(started), started)
        })?;
        self.clear_merging(wt, &admin)?;
        Ok(MergeOutcome::Merged { commit: merged, repairs })
    }

    fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, WorkspaceError> {
        let out = git(&self.repo, &["merge-base", "--is-ancestor", a, b], self.timeout)?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(git_error(&["merge-base", "--is-ancestor", a, b], &out)),
        }
    }

    fn remove(&self, path: &Path, branch: &str) -> Result<Removal, WorkspaceError> {
        if !path.exists() {
            // Already gone (removed by hand): let git forget it, nothing else to protect.
            let _ = self.git_w(&self.repo, &["worktree", "prune"]);
            self.sync_removed(path)?;
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
        let settle = self.settle(path.parent().unwrap_or(path))?;
        let out = {
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            self.git_s(&self.repo, &["worktree", "remove", &p], &settle)?
        };
        if out.success() {
            self.finish(settle, None, || self.sync_removed(path))?;
            return Ok(Removal::Removed);
        }
        let err = out.stderr_text();
        if err.contains("modified or untracked files") {
            let status = git(path, &["status", "--porcelain", "--untracked-files=all"], self.timeout)?;
            let lines: Vec<String> = status.stdout_text().lines().map(str::to_string).collect();
            // Only tracked files missing, nothing else changed: what a killed `git worktree
            // remove` leaves. Every file is in the branch's commit, so forcing loses nothing.
            if !lines.is_empty() && lines.iter().all(|l| l.starts_with(" D ")) {
                {
                    let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
                    self.git_w_ok(&self.repo, &["worktree", "remove", "--force", &p])?;
                }
                self.sync_removed(path)?;
                return Ok(Removal::Finished(format!(
                    "{} tracked file(s) already deleted by an interrupted removal: finished it",
                    lines.len()
                )));
            }
            let n = lines.len().max(1);
            return Ok(Removal::Kept(format!("{n} uncommitted change(s) in the worktree")));
        }
        let detail = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Err(WorkspaceError::git(format!("worktree remove {p}"), detail, &err))
    }
}

/// Scratch worktrees: detached, loop's own, thrown away after use (nothing in them is kept).
impl GitWorkspace {
    fn tree_of(&self, commit: &str) -> Result<String, WorkspaceError> {
        git_ok(&self.repo, &["rev-parse", "--verify", "--end-of-options", &format!("{commit}^{{tree}}")], self.timeout)
    }

    fn add_scratch(&self, path: &Path, commit: &str) -> Result<(), WorkspaceError> {
        self.remove_scratch(path)?;
        self.make_parents(path)?;
        let p = path.to_string_lossy();
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        self.git_w_ok(&self.repo, &["worktree", "add", "--detach", &p, commit]).map(|_| ())
    }

    fn remove_scratch(&self, path: &Path) -> Result<(), WorkspaceError> {
        let p = path.to_string_lossy();
        {
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            if path.exists() {
                // Twice --force: also a worktree an interrupted add left locked.
                let _ = self.git_w(&self.repo, &["worktree", "remove", "--force", "--force", &p]);
            }
            if path.exists() {
                std::fs::remove_dir_all(path)
                    .map_err(|source| WorkspaceError::Io { what: format!("removing {p}"), source })?;
            }
            self.git_w_ok(&self.repo, &["worktree", "prune"])?;
        }
        Ok(())
    }
}

/// Durability and repair helpers; all of them act only on paths loop owns.
impl GitWorkspace {
    /// How to make durable what a git command is about to write: in the common git dir
    /// (objects, refs, worktree admin dirs) and at `near` (an existing directory holding, or
    /// about to hold, the worktree). [`Settle::Syncfs`] when every file system involved is one
    /// whose `syncfs` reaches the device, else [`Settle::PerPath`].
    fn settle(&self, near: &Path) -> Result<Settle, WorkspaceError> {
        use std::os::unix::fs::MetadataExt;
        if !self.durable {
            return Ok(Settle::Off);
        }
        let common = self.common()?;
        let places = [
            common.to_path_buf(),
            common.join("objects"),
            common.join("refs/heads"),
            common.join("worktrees"),
            near.into(),
        ];
        let mut fds: Vec<(u64, std::fs::File)> = Vec::new();
        for p in places {
            // A missing one (`worktrees` before the first add) will be made in its parent,
            // which is listed.
            let Ok(m) = p.metadata() else { continue };
            if fds.iter().any(|(d, _)| *d == m.dev()) {
                continue;
            }
            if !syncfs_reaches_the_device(&p) {
                return Ok(Settle::PerPath);
            }
            match std::fs::File::open(&p) {
                Ok(f) => fds.push((m.dev(), f)),
                Err(_) => return Ok(Settle::PerPath),
            }
        }
        Ok(Settle::Syncfs(fds))
    }

    /// Makes a git effect durable as `settle` says: `per_path` for [`Settle::PerPath`]; for
    /// [`Settle::Syncfs`], one `syncfs` per file system, counting those of `tree`'s files
    /// changed at or after its time (all when None) when a mount point inside it puts some on
    /// another file system.
    fn finish(
        &self,
        settle: Settle,
        tree: Option<(&Path, Option<SystemTime>)>,
        per_path: impl FnOnce() -> Result<(), WorkspaceError>,
    ) -> Result<(), WorkspaceError> {
        let mut fds = match settle {
            Settle::Off => return Ok(()),
            Settle::PerPath => return per_path(),
            Settle::Syncfs(fds) => fds,
        };
        let err =
            |p: &Path, e: std::io::Error| WorkspaceError::Sync { path: p.display().to_string(), detail: e.to_string() };
        if let Some((dir, since)) = tree {
            let mut todo = Vec::new();
            collect_fresh(dir, since, &mut todo).map_err(|e| err(dir, e))?;
            for (p, dev) in todo {
                if fds.iter().any(|(d, _)| *d == dev) {
                    continue;
                }
                if syncfs_reaches_the_device(&p) {
                    fds.push((dev, std::fs::File::open(&p).map_err(|e| err(&p, e))?));
                } else {
                    sync_path(&p).map_err(|e| err(&p, e))?;
                }
            }
        }
        for (_, f) in &fds {
            syncfs_fd(f).map_err(|e| err(&self.repo, e))?;
        }
        Ok(())
    }

    fn sync(&self, p: &Path) -> Result<(), WorkspaceError> {
        if !self.durable {
            return Ok(());
        }
        sync_path(p).map_err(|e| WorkspaceError::Sync { path: p.display().to_string(), detail: e.to_string() })
    }

    fn sync_tree(&self, dir: &Path, since: Option<SystemTime>) -> Result<(), WorkspaceError> {
        if !self.durable {
            return Ok(());
        }
        sync_tree(dir, since)
            .map_err(|e| WorkspaceError::Sync { path: dir.display().to_string(), detail: e.to_string() })
    }

    fn make_parents(&self, path: &Path) -> Result<(), WorkspaceError> {
        let Some(parent) = path.parent() else { return Ok(()) };
        let created: Vec<PathBuf> =
            parent.ancestors().take_while(|d| d.symlink_metadata().is_err()).map(Path::to_path_buf).collect();
        std::fs::create_dir_all(parent)
            .map_err(|source| WorkspaceError::Io { what: format!("mkdir {}", parent.display()), source })?;
        // Each directory made here is a new entry in its parent (on the first issue: the
        // milestone and worktrees dirs); the worktree's own entry is synced after the add.
        for dir in created.iter().rev() {
            if let Some(up) = dir.parent() {
                self.sync(up)?;
            }
        }
        Ok(())
    }

    /// fsyncs a directory only when it changed since `since`: every fsync costs a few ms on
    /// real disks, even of a clean directory.
    fn sync_fresh(&self, dir: &Path, since: SystemTime) -> Result<(), WorkspaceError> {
        let fresh = dir.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= since);
        if fresh {
            self.sync(dir)?;
        }
        Ok(())
    }

    /// After `git worktree add`: git fsyncs neither the gitfile, the admin dir, the checkout
    /// nor any directory, so loop does.
    fn sync_added(&self, path: &Path, branch: &str, started: SystemTime) -> Result<(), WorkspaceError> {
        if !self.durable {
            return Ok(());
        }
        let admin = worktree_admin(path).ok_or_else(|| unrepairable(path, "no .git file after `git worktree add`"))?;
        // HEAD, commondir and gitdir make the worktree; git fsyncs the index itself
        // (core.fsync=index), and the reflog and ORIG_HEAD are not needed to use it.
        for file in ["HEAD", "commondir", "gitdir"] {
            self.sync(&admin.join(file))?;
        }
        self.sync(&admin)?;
        if let Some(worktrees) = admin.parent() {
            self.sync(worktrees)?;
            if let Some(common) = worktrees.parent() {
                self.sync_fresh(common, started)?;
            }
        }
        self.sync_tree(path, None)?;
        if let Some(parent) = path.parent() {
            self.sync(parent)?;
        }
        self.sync_ref_dirs(branch, started)
    }

    /// The directories holding the branch's ref: git fsyncs the ref file, not its entry. The
    /// ref's own dir always changed; the ones above only when a dir was made for it.
    fn sync_ref_dirs(&self, branch: &str, since: SystemTime) -> Result<(), WorkspaceError> {
        let heads = self.common()?.join("refs/heads");
        let mut dir = heads.join(branch);
        let mut first = true;
        while let Some(parent) = dir.parent() {
            if first {
                self.sync(parent)?;
                first = false;
            } else {
                self.sync_fresh(parent, since)?;
            }
            if parent == heads {
                break;
            }
            dir = parent.to_path_buf();
        }
        Ok(())
    }

    /// After a commit: the object dirs that gained loose objects, the admin dir (index
    /// renamed), the ref's dirs, and the worktree files the commit took in.
    fn sync_committed(
        &self,
        wt: &Path,
        admin: Option<&Path>,
        changed_since: Option<SystemTime>,
        started: SystemTime,
    ) -> Result<(), WorkspaceError> {
        let common = self.common()?.to_path_buf();
        let objects = common.join("objects");
        if let Ok(entries) = std::fs::read_dir(&objects) {
            for e in entries.flatten() {
                let fresh = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= started);
                if fresh && e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.sync(&e.path())?;
                }
            }
        }
        self.sync_fresh(&objects, started)?;
        if let Some(a) = admin {
            // git fsynced the new index; its rename into place is an entry of the admin dir.
            self.sync(a)?;
            if let Some(head) = std::fs::read_to_string(a.join("HEAD"))
                .ok()
                .and_then(|h| h.trim().strip_prefix("ref: refs/heads/").map(str::to_string))
            {
                self.sync_ref_dirs(&head, started)?;
            }
        }
        self.sync_tree(wt, changed_since)
    }

    /// After a worktree left: the directories that lost its entries.
    fn sync_removed(&self, path: &Path) -> Result<(), WorkspaceError> {
        if let Some(parent) = path.parent() {
            self.sync(parent)?;
        }
        let worktrees = self.common()?.join("worktrees");
        if worktrees.is_dir() {
            self.sync(&worktrees)?;
        }
        Ok(())
    }

    /// Why the worktree at `path` cannot be used as it is, if it cannot.
    fn diagnose(&self, path: &Path, admins: &[PathBuf]) -> Option<String> {
        if path.symlink_metadata().is_err() {
            return Some("the worktree directory is missing".into());
        }
        let dotgit = match std::fs::read_to_string(path.join(".git")) {
            Ok(t) => t,
            Err(_) => return Some("its .git file is missing".into()),
        };
        let Some(admin) = dotgit.trim().strip_prefix("gitdir:").map(|a| PathBuf::from(a.trim())) else {
            return Some("its .git file is empty or invalid".into());
        };
        let admin = if admin.is_absolute() { admin } else { path.join(admin) };
        if !admin.is_dir() {
            return Some(format!("its admin dir {} is missing", admin.display()));
        }
        if !admins.iter().any(|a| same_path(a, &admin)) {
            return Some(format!("its admin dir {} does not point back at it", admin.display()));
        }
        let locked = std::fs::read_to_string(admin.join("locked")).unwrap_or_default();
        if locked.trim() == "initializing" {
            return Some("half-added (still locked \"initializing\" by a `git worktree add` that is gone)".into());
        }
        for file in ["HEAD", "commondir"] {
            if std::fs::read_to_string(admin.join(file)).map(|t| t.trim().is_empty()).unwrap_or(true) {
                return Some(format!("its {file} is missing or empty"));
            }
        }
        // HEAD resolves and the index reads: the cheapest git command that needs both.
        match git(path, &["diff-index", "--cached", "--quiet", "HEAD", "--"], self.timeout) {
            Ok(out) if out.code == Some(0) || out.code == Some(1) => None,
            Ok(out) => {
                let err = out.stderr_text();
                let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                Some(format!("git cannot read it ({first})"))
            }
            Err(e) => Some(format!("git cannot read it ({e})")),
        }
    }

    /// Removes a broken loop-owned worktree and its admin dirs, and has git forget it.
    fn teardown(&self, path: &Path, admins: &[PathBuf]) -> Result<(), WorkspaceError> {
        // Gone already is what removing wants: another issue's `git worktree prune` may drop an
        // admin dir whose worktree has just vanished (seen with `--jobs`).
        let fail = |what: &Path, e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(unrepairable(path, &format!("removing {}: {e}", what.display())))
            }
        };
        // Other issues' git calls that prune admin dirs take the same lock.
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        match path.symlink_metadata() {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).or_else(|e| fail(path, e))?,
            Ok(_) => std::fs::remove_file(path).or_else(|e| fail(path, e))?,
            Err(_) => {}
        }
        for a in admins {
            std::fs::remove_dir_all(a).or_else(|e| fail(a, e))?;
        }
        self.git_w_ok(&self.repo, &["worktree", "prune"])?;
        drop(_admin);
        self.sync_removed(path)
    }

    /// Makes `branch` hold `commit`: kept when it already contains it, moved forward when its
    /// update was lost, created when it is missing. Returns the repair made, if any.
    fn ensure_branch(&self, path: &Path, branch: &str, commit: &str) -> Result<Option<String>, WorkspaceError> {
        let started = since_now();
        let spec = format!("{commit}^{{commit}}");
        if !git(&self.repo, &["cat-file", "-e", &spec], self.timeout)?.success() {
            return Err(unrepairable(path, &format!("the journaled commit {commit} is not in the repository")));
        }
        let refname = format!("refs/heads/{branch}");
        let repair = match self.branch_tip(branch)? {
            Some(t) if t == commit || self.is_ancestor(commit, &t)? => return Ok(None),
            Some(t) if self.is_ancestor(&t, commit)? => {
                self.git_w_ok(&self.repo, &["update-ref", &refname, commit, &t])?;
                format!("moved branch {branch} from {t} to the journaled {commit} (its update was lost)")
            }
            Some(t) => {
                return Err(unrepairable(
                    path,
                    &format!("branch {branch} is at {t}, which does not contain the journaled commit {commit}"),
                ))
            }
            None => {
                self.git_w_ok(&self.repo, &["update-ref", &refname, commit, ""])?;
                format!("branch {branch} was missing: recreated it at the journaled {commit}")
            }
        };
        self.sync_ref_dirs(branch, started)?;
        Ok(Some(repair))
    }

    /// Removes the git locks of the worktree's admin dir and of its branch that no live process
    /// holds (a killed git left them). Returns the repairs made.
    fn remove_stale_locks(&self, path: &Path, admin: &Path, branch: &str) -> Result<Vec<String>, WorkspaceError> {
        let mut repairs = Vec::new();
        for lock in lock_files(admin) {
            if held_by_live_process(&lock) {
                continue;
            }
            std::fs::remove_file(&lock)
                .map_err(|e| unrepairable(path, &format!("removing {}: {e}", lock.display())))?;
            if let Some(dir) = lock.parent() {
                self.sync(dir)?;
            }
            repairs.push(format!("removed {}, a git lock no live process holds", lock.display()));
        }
        repairs.extend(self.remove_stale_ref_lock(path, branch)?);
        Ok(repairs)
    }

    /// Removes `refs/heads/<branch>.lock` when no live process holds it (a killed git left it).
    fn remove_stale_ref_lock(&self, path: &Path, branch: &str) -> Result<Option<String>, WorkspaceError> {
        let lock = self.common()?.join(format!("refs/heads/{branch}.lock"));
        if !lock.is_file() || held_by_live_process(&lock) {
            return Ok(None);
        }
        std::fs::remove_file(&lock).map_err(|e| unrepairable(path, &format!("removing {}: {e}", lock.display())))?;
        if let Some(dir) = lock.parent() {
            self.sync(dir)?;
        }
        Ok(Some(format!("removed {}, a git lock no live process holds", lock.display())))
    }

    /// Makes every regular file of HEAD in the worktree hold HEAD's bytes again, judging by
    /// content, not by git's stat cache: the index lives in the repository (another disk,
    /// perhaps), so after a power cut it can describe a checkout whose data was lost. Only for a
    /// worktree no agent has worked in. Returns the repair made, if any.
    fn restore_checkout(&self, wt: &Path) -> Result<Option<String>, WorkspaceError> {
        let listing = git(wt, &["ls-tree", "-r", "-z", "HEAD"], self.timeout)?;
        if !listing.success() {
            return Err(git_error(&["ls-tree", "-r", "-z", "HEAD"], &listing));
        }
        // (path, blob) of each regular file; symlinks and submodules are metadata, not data.
        let mut files: Vec<(String, String)> = Vec::new();
        for entry in listing.stdout.split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, name)) = entry.split_once('\t') else { continue };
            let mut meta = meta.split(' ');
            let (mode, kind, oid) = (meta.next().unwrap_or(""), meta.next().unwrap_or(""), meta.next().unwrap_or(""));
            if kind == "blob" && (mode == "100644" || mode == "100755") {
                files.push((name.to_string(), oid.to_string()));
            }
        }
        let mut lost: Vec<String> = Vec::new();
        let mut present: Vec<&(String, String)> = Vec::new();
        for f in &files {
            match wt.join(&f.0).symlink_metadata() {
                Ok(m) if m.is_file() => present.push(f),
                Ok(_) => {}
                Err(_) => lost.push(f.0.clone()),
            }
        }
        for chunk in present.chunks(256) {
            let mut args: Vec<&str> = vec!["hash-object", "--"];
            args.extend(chunk.iter().map(|f| f.0.as_str()));
            let hashes = git_ok(wt, &args, self.timeout)?;
            let hashes: Vec<&str> = hashes.lines().collect();
            if hashes.len() != chunk.len() {
                return Err(unrepairable(wt, "git hash-object did not hash every file of the checkout"));
            }
            for (f, h) in chunk.iter().zip(hashes) {
                if h.trim() != f.1 {
                    // git would skip a file whose size and times match its index entry.
                    let p = wt.join(&f.0);
                    std::fs::remove_file(&p)
                        .map_err(|e| unrepairable(wt, &format!("removing {}: {e}", p.display())))?;
                    lost.push(f.0.clone());
                }
            }
        }
        if lost.is_empty() {
            return Ok(None);
        }
        for chunk in lost.chunks(256) {
            let mut args: Vec<&str> = vec!["--literal-pathspecs", "checkout", "-q", "HEAD", "--"];
            args.extend(chunk.iter().map(String::as_str));
            self.git_w_ok(wt, &args)?;
        }
        let shown: Vec<&str> = lost.iter().take(5).map(String::as_str).collect();
        let more =
            if lost.len() > shown.len() { format!(" and {} more", lost.len() - shown.len()) } else { String::new() };
        Ok(Some(format!(
            "{} file(s) of its checkout had lost their data (a power cut before the checkout was fsynced): restored from HEAD: {}{more}",
            lost.len(),
            shown.join(", ")
        )))
    }

    /// `git commit-tree`: a commit of `tree` with `parents`, as the user when git knows them,
    /// else as loop; dated `date` when given (a fixed clock gives fixed ids).
    fn commit_tree(
        &self,
        wt: &Path,
        tree: &str,
        parents: &[&str],
        message: &str,
        date: Option<&str>,
    ) -> Result<String, WorkspaceError> {
        let mut cmd = Cmd::new("git")
            .arg("-C")
            .arg(wt)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .timeout(self.timeout)
            .not_cancellable();
        if self.durable {
            cmd = cmd.args(FSYNC_CONFIG);
        }
        if !self.has_identity(wt)? {
            cmd = cmd.args(["-c", "user.name=loop", "-c", "user.email=loop@localhost"]);
        }
        cmd = cmd.args(["commit-tree", tree, "-m", message]);
        for p in parents {
            cmd = cmd.args(["-p", p]);
        }
        if let Some(d) = date {
            cmd = cmd.env("GIT_AUTHOR_DATE", d).env("GIT_COMMITTER_DATE", d);
        }
        let out = proc::run(&cmd)?;
        if !out.success() {
            return Err(git_error(&["commit-tree", tree], &out));
        }
        Ok(out.stdout_text().trim().to_string())
    }

    /// Removes the [`MERGING`] marker once its checkout is done (or no longer applies).
    fn clear_merging(&self, wt: &Path, admin: &Path) -> Result<(), WorkspaceError> {
        match std::fs::remove_file(admin.join(MERGING)) {
            Ok(()) => self.sync(admin),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unrepairable(wt, &format!("removing {}: {e}", admin.join(MERGING).display()))),
        }
    }

    fn add_existing(&self, path: &Path, branch: &str) -> Result<(), WorkspaceError> {
        let started = since_now();
        self.make_parents(path)?;
        let settle = self.settle(path.parent().unwrap_or(path))?;
        let p = path.to_string_lossy();
        {
            let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
            self.git_s_ok(&self.repo, &["worktree", "add", "-q", &p, branch], &settle)?;
        }
        self.finish(settle, Some((path, None)), || self.sync_added(path, branch, started))
    }
}

/// A moment just before now, as file times will show it: the kernel stamps files from a coarse
/// clock that can lag this one, so a second of slack keeps a fresh file from looking old.
fn since_now() -> SystemTime {
    SystemTime::now() - Duration::from_secs(1)
}

fn unrepairable(path: &Path, detail: &str) -> WorkspaceError {
    WorkspaceError::Unrepairable { path: path.display().to_string(), detail: detail.to_string() }
}

/// fsync of one file or directory (a directory's fsync makes its entries durable).
fn sync_path(p: &Path) -> std::io::Result<()> {
    std::fs::File::open(p)?.sync_all()
}

/// From this many files and directories on, [`sync_tree`] makes them durable with one `syncfs`
/// of their file system instead of one fsync each. A checkout holds every file of the
/// repository, and the repository grows with the milestone (each issue adds its doc), so an
/// fsync per file made each issue cost more the more issues there were (on ext4 each fsync is
/// a journal commit and a device flush: about 1.5 ms here, 440 of them per issue at 200 issues).
const SYNCFS_FROM: usize = 8;

/// fsyncs every regular file and directory under `dir` changed at or after `since` (all when
/// None), each directory after its entries. Symlinks are not followed: their entry is the
/// directory's. Many at once on a file system whose `syncfs` is known to reach the device are
/// made durable by one `syncfs` per file system instead ([`SYNCFS_FROM`]).
fn sync_tree(dir: &Path, since: Option<SystemTime>) -> std::io::Result<()> {
    let mut todo = Vec::new();
    collect_fresh(dir, since, &mut todo)?;
    if todo.len() >= SYNCFS_FROM {
        // One path per file system (a mount point inside the tree is another one).
        let mut per_dev: Vec<(u64, &Path)> = Vec::new();
        for (p, dev) in &todo {
            if !per_dev.iter().any(|(d, _)| d == dev) {
                per_dev.push((*dev, p));
            }
        }
        if per_dev.iter().all(|(_, p)| syncfs_reaches_the_device(p)) {
            for (_, p) in per_dev {
                syncfs(p)?;
            }
            return Ok(());
        }
    }
    for (p, _) in &todo {
        sync_path(p)?;
    }
    Ok(())
}

/// The paths [`sync_tree`] must make durable, each directory after its entries, with their
/// device.
fn collect_fresh(dir: &Path, since: Option<SystemTime>, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let fresh = |m: &std::fs::Metadata| since.is_none_or(|s| m.modified().is_ok_and(|t| t >= s));
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let m = p.symlink_metadata()?;
        if m.is_dir() {
            collect_fresh(&p, since, out)?;
        } else if m.is_file() && fresh(&m) {
            out.push((p, m.dev()));
        }
    }
    match dir.symlink_metadata() {
        Ok(m) if fresh(&m) => out.push((dir.to_path_buf(), m.dev())),
        _ => {}
    }
    Ok(())
}

/// Whether `syncfs` on the file system holding `p` makes its files' data and metadata durable:
/// only local file systems loop knows to implement it so. FUSE file systems, for one, are not
/// asked (the kernel sends their daemon fsync, not syncfs), so everything else keeps an fsync
/// per file.
fn syncfs_reaches_the_device(p: &Path) -> bool {
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    const BTRFS: u64 = 0x9123_683E;
    const F2FS: u64 = 0xF2F5_2010;
    const TMPFS: u64 = 0x0102_1994;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statfs buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    // f_type's width differs between targets (i64 here, u32 elsewhere); the magic numbers are
    // 32 bits.
    let kind = (st.f_type as u64) & 0xFFFF_FFFF;
    [EXT4, XFS, BTRFS, F2FS, TMPFS].contains(&kind)
}

/// `syncfs(2)` of the file system holding `p`: every dirty file and directory on it reaches the
/// device. Since Linux 5.8 it also reports a writeback error seen on that file system. (Public
/// for `loop bench`'s durable floor, which settles git's effects as loop does.)
pub fn syncfs(p: &Path) -> std::io::Result<()> {
    syncfs_fd(&std::fs::File::open(p)?)
}

/// `syncfs(2)` of the file system `f` is on.
fn syncfs_fd(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The admin dirs under `<common>/worktrees/` that belong to the worktree at `path`: those whose
/// `gitdir` names it, and those a `git worktree add` killed before it wrote `gitdir` left
/// (named after the worktree, locked "initializing").
fn leftover_admins(common: &Path, path: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(common.join("worktrees")) else { return Vec::new() };
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dotgit = path.join(".git");
    let mut out = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        match std::fs::read_to_string(dir.join("gitdir")) {
            Ok(g) => {
                let g = g.trim();
                if !g.is_empty() && (Path::new(g) == dotgit || same_path(Path::new(g), &dotgit)) {
                    out.push(dir);
                }
            }
            Err(_) => {
                let name = e.file_name().to_string_lossy().into_owned();
                let suffix = name.strip_prefix(base.as_str());
                let ours = suffix.is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()));
                let locked = std::fs::read_to_string(dir.join("locked")).unwrap_or_default();
                if ours && locked.trim() == "initializing" {
                    out.push(dir);
                }
            }
        }
    }
    out
}

/// git's lock files at the top of a worktree's admin dir (`index.lock`, `HEAD.lock`, …).
fn lock_files(admin: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(admin) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "lock") && p.is_file()).collect()
}

/// Whether a live process has `file` open. git holds its lock files open until it renames or
/// deletes them, so a lock nobody has open is one a killed git left.
fn held_by_live_process(file: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(file) else { return false };
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    for p in procs.flatten() {
        if !p.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target)) {
            return true;
        }
    }
    false
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

pub use crate::vocab::sanitize;

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with one commit on `main` and branches `a`, `b` (each adding its own file)
    /// and `c` (writing `a.txt` differently from `a`).
    fn repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let g = |args: &[&str]| {
            let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"];
            all.extend_from_slice(args);
            git_ok(&repo, &all, Duration::from_secs(30)).unwrap()
        };
        g(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README"), "r\n").unwrap();
        g(&["add", "-A"]);
        g(&["commit", "-q", "-m", "init"]);
        for (branch, file, text) in [("a", "a.txt", "from a\n"), ("b", "b.txt", "from b\n"), ("c", "a.txt", "from c\n")]
        {
            g(&["checkout", "-q", "-b", branch, "main"]);
            std::fs::write(repo.join(file), text).unwrap();
            g(&["add", "-A"]);
            g(&["commit", "-q", "-m", branch]);
        }
        g(&["checkout", "-q", "main"]);
        (dir, repo)
    }

    fn rev(dir: &Path, what: &str) -> String {
        git_ok(dir, &["rev-parse", what], Duration::from_secs(30)).unwrap()
    }

    fn clean(wt: &Path) -> bool {
        git_ok(wt, &["status", "--porcelain", "--untracked-files=all"], Duration::from_secs(30)).unwrap().is_empty()
    }

    /// A small checkout keeps the base timeout; one of thousands of files gets more time for
    /// the git commands that write or unlink all of them.
    #[test]
    fn the_git_timeout_grows_with_the_checkout() {
        let (_d, repo) = repo();
        let small = git_timeout(&repo);
        assert!(small >= Duration::from_secs(120) && small < Duration::from_secs(121), "{small:?}");
        let many = repo.join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..3000 {
            std::fs::write(many.join(format!("f{i}")), "x\n").unwrap();
        }
        git_ok(&repo, &["add", "-A"], Duration::from_secs(30)).unwrap();
        let big = git_timeout(&repo);
        // 3,000 entries of about 100 bytes each: about a minute more.
        assert!(big >= Duration::from_secs(150) && big <= Duration::from_secs(240), "{big:?}");
        assert_eq!(GitWorkspace::new(&repo).timeout, big);
    }

    /// The diffstat of a commit loop made counts files, lines added and removed, and a binary
    /// file as a changed file without lines.
    #[test]
    fn a_commit_s_diffstat_counts_files_and_lines() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        ws.create(&wt, "loop/M/X", &rev(&repo, "main"), false, false).unwrap();
        std::fs::write(wt.join("README"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(wt.join("new.txt"), "n\n").unwrap();
        std::fs::write(wt.join("blob.bin"), [0u8, 1, 2, 0, 255]).unwrap();
        let commit = ws.commit_all(&wt, "X: dev", None).unwrap().unwrap();
        let stat = Workspace::diffstat(&ws, &wt, &commit).unwrap().unwrap();
        assert_eq!(stat, crate::vocab::DiffStat { files: 3, insertions: 4, deletions: 1 });
        assert_eq!(parse_numstat(""), crate::vocab::DiffStat::default());

        // A second commit with a rename: git's summary of it (what `commit_all` keeps) and a
        // `git diff-tree` of the same commit (what a commit made elsewhere gets) agree.
        std::fs::rename(wt.join("new.txt"), wt.join("renamed.txt")).unwrap();
        std::fs::write(wt.join("README"), "one\n").unwrap();
        let second = ws.commit_all(&wt, "X: fix", None).unwrap().unwrap();
        let from_summary = Workspace::diffstat(&ws, &wt, &second).unwrap().unwrap();
        let from_diff_tree = Workspace::diffstat(&GitWorkspace::new(&repo), &wt, &second).unwrap().unwrap();
        assert_eq!(from_summary, crate::vocab::DiffStat { files: 2, insertions: 0, deletions: 2 });
        assert_eq!(from_diff_tree, from_summary);
        // Asked once, the summary is gone: a second ask reads git again and gets the same.
        assert_eq!(Workspace::diffstat(&ws, &wt, &second).unwrap().unwrap(), from_summary);
    }

    #[test]
    fn a_commit_summary_reads_each_count_or_none() {
        let stat = |files, insertions, deletions| crate::vocab::DiffStat { files, insertions, deletions };
        let out =
            "[loop/M/X 1a2b3c4] X: dev\n 3 files changed, 4 insertions(+), 1 deletion(-)\n create mode 100644 a\n";
        assert_eq!(parse_commit_summary(out), Some(stat(1 + 2, 4, 1)));
        assert_eq!(parse_commit_summary(" 1 file changed, 2 deletions(-)\n"), Some(stat(1, 0, 2)));
        assert_eq!(parse_commit_summary(" 1 file changed, 1 insertion(+)\n"), Some(stat(1, 1, 0)));
        assert_eq!(parse_commit_summary(" 2 files changed, 0 insertions(+), 0 deletions(-)\n"), Some(stat(2, 0, 0)));
        assert_eq!(parse_commit_summary("[main abc] x\n"), None);
        assert_eq!(parse_commit_summary(" 1 file changed, 3 fishes\n"), None);
    }

    #[test]
    fn merge_makes_one_commit_of_every_parent_and_skips_those_already_in() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        ws.create(&wt, "loop/M/X", &rev(&repo, "a"), false, false).unwrap();
        let parents = vec![rev(&repo, "a"), rev(&repo, "b")];
        let MergeOutcome::Merged { commit, repairs } = ws.merge(&wt, &parents, &[], "X: merge", None).unwrap() else {
            panic!("conflict")
        };
        assert!(repairs.is_empty());
        assert_eq!(rev(&repo, "loop/M/X"), commit);
        // `a` is the base, already in HEAD: the merge commit's parents are HEAD and `b`.
        let shown = git_ok(&wt, &["log", "-1", "--format=%P"], Duration::from_secs(30)).unwrap();
        assert_eq!(shown, format!("{} {}", rev(&repo, "a"), rev(&repo, "b")));
        assert_eq!(std::fs::read_to_string(wt.join("b.txt")).unwrap(), "from b\n");
        assert_eq!(std::fs::read_to_string(wt.join("a.txt")).unwrap(), "from a\n");
        assert!(clean(&wt));
        // Again: nothing left to merge, nothing made.
        let again = ws.merge(&wt, &parents, &[], "X: merge", None).unwrap();
        assert_eq!(again, MergeOutcome::Merged { commit: commit.clone(), repairs: Vec::new() });
        assert_eq!(rev(&repo, "loop/M/X"), commit);
    }

    #[test]
    fn merge_of_three_branches_is_one_commit_with_all_parents() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        let main = rev(&repo, "main");
        ws.create(&wt, "loop/M/X", &main, false, false).unwrap();
        let parents = vec![rev(&repo, "a"), rev(&repo, "b")];
        let date = Some("2026-01-01T00:00:00+0000");
        let MergeOutcome::Merged { commit, .. } = ws.merge(&wt, &parents, &[], "X: merge", date).unwrap() else {
            panic!("conflict")
        };
        let shown = git_ok(&wt, &["log", "-1", "--format=%P %cI %s"], Duration::from_secs(30)).unwrap();
        assert_eq!(shown, format!("{main} {} {} 2026-01-01T00:00:00Z X: merge", parents[0], parents[1]));
        assert_eq!(rev(&wt, "HEAD"), commit);
        assert!(wt.join("a.txt").is_file() && wt.join("b.txt").is_file() && clean(&wt));
    }

    #[test]
    fn a_conflict_changes_nothing_and_names_the_parent_and_files() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        let main = rev(&repo, "main");
        ws.create(&wt, "loop/M/X", &main, false, false).unwrap();
        let parents = vec![rev(&repo, "a"), rev(&repo, "b"), rev(&repo, "c")];
        let out = ws.merge(&wt, &parents, &[], "X: merge", None).unwrap();
        assert_eq!(out, MergeOutcome::Conflict { parent: parents[2].clone(), files: vec!["a.txt".to_string()] });
        assert_eq!(rev(&repo, "loop/M/X"), main);
        assert!(clean(&wt) && !wt.join("a.txt").exists());
        assert!(!worktree_admin(&wt).unwrap().join("MERGE_HEAD").exists());
    }

    #[test]
    fn union_files_keep_both_sides_instead_of_conflicting() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        ws.create(&wt, "loop/M/X", &rev(&repo, "a"), false, false).unwrap();
        let parents = vec![rev(&repo, "a"), rev(&repo, "c")];
        let union = vec!["a.txt".to_string()];
        let MergeOutcome::Merged { .. } = ws.merge(&wt, &parents, &union, "X: merge", None).unwrap() else {
            panic!("a union file conflicted")
        };
        assert_eq!(std::fs::read_to_string(wt.join("a.txt")).unwrap(), "from a\nfrom c\n");
        assert!(clean(&wt));
        assert_eq!(attr_pattern("docs/a b/R[1].md"), "\"/docs/a b/R\\\\[1].md\"");
        assert_eq!(attr_pattern("docs/reviews/REVIEW-M1.md"), "/docs/reviews/REVIEW-M1.md");
    }

    #[test]
    fn merge_finishes_or_redoes_what_an_interrupted_one_left() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        let main = rev(&repo, "main");
        ws.create(&wt, "loop/M/X", &main, false, false).unwrap();
        let admin = worktree_admin(&wt).unwrap();
        let parents = vec![rev(&repo, "a"), rev(&repo, "b")];
        // A `git merge` stopped before its commit (MERGE_HEAD, a staged file): aborted, redone.
        let t = Duration::from_secs(30);
        assert!(git(&wt, &["merge", "-q", "--no-ff", "--no-commit", "b"], t).unwrap().success());
        assert!(admin.join("MERGE_HEAD").is_file());
        let MergeOutcome::Merged { commit, repairs } = ws.merge(&wt, &parents, &[], "X: merge", None).unwrap() else {
            panic!("conflict")
        };
        assert!(repairs[0].contains("MERGE_HEAD"), "{repairs:?}");
        assert!(!admin.join("MERGE_HEAD").exists() && clean(&wt));
        assert_eq!(rev(&wt, "HEAD"), commit);

        // loop's own checkout cut short: the marker names the merge, a file of it is written
        // but the branch did not move yet. It is finished, not refused as a dirty worktree.
        let wt2 = repo.parent().unwrap().join("wt2");
        ws.create(&wt2, "loop/M/Y", &main, false, false).unwrap();
        let admin2 = worktree_admin(&wt2).unwrap();
        std::fs::write(admin2.join(MERGING), format!("{commit}\n")).unwrap();
        std::fs::write(wt2.join("a.txt"), "from a\n").unwrap();
        let MergeOutcome::Merged { commit: c2, repairs } = ws.merge(&wt2, &parents, &[], "Y: merge", None).unwrap()
        else {
            panic!("conflict")
        };
        assert_eq!(c2, commit);
        assert!(repairs[0].contains("finished checking out"), "{repairs:?}");
        assert!(clean(&wt2) && !admin2.join(MERGING).exists());
        assert_eq!(rev(&repo, "loop/M/Y"), commit);

        // Dirty with no marker: someone's work, never overwritten.
        let wt3 = repo.parent().unwrap().join("wt3");
        ws.create(&wt3, "loop/M/Z", &main, false, false).unwrap();
        std::fs::write(wt3.join("mine.txt"), "mine\n").unwrap();
        assert!(matches!(ws.merge(&wt3, &parents, &[], "Z", None), Err(WorkspaceError::Dirty { .. })));
        assert_eq!(std::fs::read_to_string(wt3.join("mine.txt")).unwrap(), "mine\n");
    }

    #[test]
    fn reuse_checks_out_the_existing_branch_without_moving_it() {
        let (_d, repo) = repo();
        let ws = GitWorkspace::new(&repo);
        let wt = repo.parent().unwrap().join("wt");
        let a = rev(&repo, "a");
        // `base` is only informative: the branch stays where it is.
        ws.create(&wt, "a", &rev(&repo, "main"), false, true).unwrap();
        assert_eq!(rev(&wt, "HEAD"), a);
        assert_eq!(rev(&repo, "a"), a);
        assert!(wt.join("a.txt").is_file());
        let gone = repo.parent().unwrap().join("gone");
        let err = ws.create(&gone, "loop/M/none", &a, false, true).unwrap_err();
        assert!(matches!(err, WorkspaceError::BranchMissing { .. }), "{err}");
        assert!(!gone.exists());
        // With adopt (an interrupted attempt), a reused branch is adopted the same way.
        let wt2 = repo.parent().unwrap().join("wt2");
        ws.create(&wt2, "b", &a, true, true).unwrap();
        assert_eq!(rev(&wt2, "HEAD"), rev(&repo, "b"));
    }

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
