//! Where runs live on disk, and who may write them.
//!
//! Layout under the state dir (default `<repo>/.loop/`):
//! `runs/<run-id>/journal.log` (the journal, format 2), `runs/<run-id>/run.lock`,
//! `worktrees/<milestone>/<issue>/`, `logs/<run-id>/`. Format-1 runs have `runs/<run-id>/journal/`
//! (sled) and `journal.wal` instead, and a `lock` file.
//!
//! Invariants:
//! - A run's journal is written only by the process that holds its lock.
//! - Readers never write: they open `journal.log` read-only (format 1 is read from a private
//!   copy), so `status`, `replay`, `runs` and `export` work on a full disk and a read-only
//!   `.loop/`, and never block or disturb a live writer.
//! - A run is born whole: it is staged in `runs/.new-<run-id>/` and renamed into place once its
//!   first record is durable. A staging directory left behind is an *empty* run (killed in its
//!   first milliseconds): listed as such, skipped by `status`, removed by `clean`. A run directory
//!   without its journal is damage, never mistaken for an empty run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::journal::log::{self as jlog, LogReader, LogStore};
use crate::journal::store::read_legacy;
use crate::journal::store::{Store, StoreError};
use crate::journal::view::{Divergence, RunView};
use crate::journal::{self, JournalError, MemStore, Record};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("no run matches '{0}' (see `loop runs`)")]
    NoSuchRun(String),
    #[error("'{prefix}' matches several runs: {}", .matches.join(", "))]
    Ambiguous { prefix: String, matches: Vec<String> },
    #[error("run {run} is locked by another loop process{}; wait for it or stop it first", .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { run: String, pid: Option<String> },
    #[error("milestone {milestone} is already being run by {holder}{}{}; wait for it or stop it first", .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default(), .state_dir.as_ref().map(|d| format!(" with state dir {d}")).unwrap_or_default())]
    MilestoneBusy { milestone: String, holder: String, pid: Option<String>, state_dir: Option<String> },
    #[error("finding the repository's git dir: {0}")]
    GitDir(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunsError + '_ {
    move |source| RunsError::Io { path: path.display().to_string(), source }
}

#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

/// Who takes a milestone lock, as a refused second process is told.
#[derive(Clone, Copy, Debug)]
pub enum Holder<'a> {
    Run(&'a str),
    Clean,
    Land,
}

/// Held while a process writes a run; released on drop (and by the OS if the process dies).
pub struct RunLock {
    _file: File,
}

impl StateDir {
    pub fn new(root: PathBuf) -> StateDir {
        StateDir { root }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs_dir().join(id)
    }

    /// The journal file of a format-2 run.
    pub fn journal_path(&self, id: &str) -> PathBuf {
        self.run_dir(id).join(jlog::LOG_FILE)
    }

    /// The sled directory of a format-1 run.
    pub fn legacy_journal_path(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("journal")
    }

    fn staging_dir(&self, id: &str) -> PathBuf {
        self.runs_dir().join(format!("{STAGING}{id}"))
    }

    /// What is on disk for a run id.
    pub fn kind(&self, id: &str) -> RunKind {
        let dir = self.run_dir(id);
        if dir.is_dir() {
            if self.journal_path(id).exists() {
                RunKind::Log
            } else if self.legacy_journal_path(id).is_dir() {
                RunKind::Legacy
            } else if dir.join(RUN_LOCK).exists() {
                RunKind::Missing
            } else {
                // A format-1 run killed before its store existed: only its `lock` file.
                RunKind::Empty
            }
        } else if self.staging_dir(id).is_dir() {
            RunKind::Empty
        } else {
            RunKind::Absent
        }
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees")
    }

    pub fn logs_dir(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(id)
    }

    /// Every run id with a journal (possibly damaged), oldest first (ids sort by start time).
    /// Empty runs are left out: see [`StateDir::list_empty`].
    pub fn list(&self) -> Result<Vec<String>, RunsError> {
        Ok(self.list_all()?.into_iter().filter(|(_, k)| *k != RunKind::Empty).map(|(id, _)| id).collect())
    }

    /// Runs killed before their first record was durable.
    pub fn list_empty(&self) -> Result<Vec<String>, RunsError> {
        Ok(self.list_all()?.into_iter().filter(|(_, k)| *k == RunKind::Empty).map(|(id, _)| id).collect())
    }

    /// Every run id and what is on disk for it, oldest first.
    pub fn list_all(&self) -> Result<Vec<(String, RunKind)>, RunsError> {
        let dir = self.runs_dir();
        let mut ids = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        continue;
                    }
                    let name = e.file_name().to_string_lossy().into_owned();
                    let id = name.strip_prefix(STAGING).unwrap_or(&name).to_string();
                    if id.starts_with('.') || ids.iter().any(|(i, _)| *i == id) {
                        continue;
                    }
                    let kind = self.kind(&id);
                    ids.push((id, kind));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        ids.sort();
        Ok(ids)
    }

    /// Removes an empty run (never one with a journal, never a locked one).
    pub fn remove_empty(&self, id: &str) -> Result<bool, RunsError> {
        if self.kind(id) != RunKind::Empty || self.is_locked(id) {
            return Ok(false);
        }
        for dir in [self.staging_dir(id), self.run_dir(id)] {
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
        }
        Ok(true)
    }

    /// Resolves a run id or a unique prefix of one.
    pub fn resolve(&self, prefix: &str) -> Result<String, RunsError> {
        let ids: Vec<String> = self.list_all()?.into_iter().map(|(id, _)| id).collect();
        if ids.iter().any(|i| i == prefix) {
            return Ok(prefix.to_string());
        }
        let matches: Vec<String> = ids.into_iter().filter(|i| i.starts_with(prefix)).collect();
        match matches.len() {
            0 => Err(RunsError::NoSuchRun(prefix.to_string())),
            1 => Ok(matches.into_iter().next().expect("one match")),
            _ => Err(RunsError::Ambiguous { prefix: prefix.to_string(), matches }),
        }
    }

    /// The newest run by start time, if any. Ids sort by the second a run started in, and the
    /// random suffix decides within one second; the first record's time (nanoseconds) does not,
    /// so that is what orders runs. A run whose first record cannot be read counts as oldest.
    pub fn latest(&self) -> Result<Option<String>, RunsError> {
        Ok(self.list()?.into_iter().map(|id| (self.started_at(&id), id)).max().map(|(_, id)| id))
    }

    /// When a run started: the time of its first record, read without reading the rest.
    /// (The log is read directly, not through a [`Snapshot`], whose first scan tells of damage
    /// on stderr: the reader that picked this run tells that once.)
    pub fn started_at(&self, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let mut first = None;
        let mut take = |_: u64, bytes: &[u8]| {
            first = journal::record::open(bytes).ok().map(|r| r.content.time);
            false
        };
        match self.kind(id) {
            RunKind::Log => {
                let reader = LogReader::open(&self.journal_path(id), Some(id)).ok()?;
                reader.stream(&mut take).ok()?;
            }
            _ => self.snapshot(id).ok()?.scan(&mut take).ok()?,
        }
        first
    }

    /// Takes the run's lock, or says who has it.
    pub fn lock(&self, id: &str) -> Result<RunLock, RunsError> {
        let dir = self.run_dir(id);
        if !dir.is_dir() {
            return Err(RunsError::NoSuchRun(id.to_string()));
        }
        Self::lock_in(&dir, id)
    }

    /// The lock file of a run directory: `run.lock`, or a format-1 run's `lock`.
    fn lock_file(dir: &Path) -> PathBuf {
        if !dir.join(RUN_LOCK).exists() && dir.join("lock").exists() {
            dir.join("lock")
        } else {
            dir.join(RUN_LOCK)
        }
    }

    fn lock_in(dir: &Path, id: &str) -> Result<RunLock, RunsError> {
        let path = Self::lock_file(dir);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                return Err(RunsError::Locked { run: id.to_string(), pid });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        write!(file, "{}", std::process::id()).map_err(io(&path))?;
        Ok(RunLock { _file: file })
    }

    /// Takes the lock that lets one process at a time work a milestone in `repo`, so two runs
    /// can never work the same issue. Held for the life of the returned guard.
    ///
    /// The lock lives in the repository's common git dir (`<common>/loop/active/<milestone>.lock`),
    /// not in the state dir: the branches it guards live there, and a run with another
    /// `--state-dir`, or started from another worktree of the repository, must see it too.
    pub fn lock_milestone(&self, repo: &Path, milestone: &str, holder: Holder<'_>) -> Result<RunLock, RunsError> {
        let common = crate::workspace::git_ok(
            repo,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
            std::time::Duration::from_secs(60),
        )
        .map_err(|e| RunsError::GitDir(e.to_string()))?;
        let dir = Path::new(&common).join("loop").join("active");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{}.lock", crate::workspace::sanitize(milestone)));
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let field = |key: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(key))
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                };
                return Err(RunsError::MilestoneBusy {
                    milestone: milestone.to_string(),
                    holder: field("holder ").unwrap_or_else(|| "another loop process".into()),
                    pid: field("pid "),
                    state_dir: field("state "),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        let holder = match holder {
            Holder::Run(id) => format!("run {id}"),
            Holder::Clean => "loop clean".to_string(),
            Holder::Land => "loop land".to_string(),
        };
        // One `key value` line each; the state dir is last and may hold spaces.
        write!(file, "holder {holder}\npid {}\nstate {}\n", std::process::id(), self.root.display())
            .map_err(io(&path))?;
        Ok(RunLock { _file: file })
    }

    /// Is some process writing this run right now?
    pub fn is_locked(&self, id: &str) -> bool {
        [self.run_dir(id), self.staging_dir(id)].iter().any(|dir| {
            ["lock", RUN_LOCK].iter().any(|name| match File::open(dir.join(name)) {
                Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
                Err(_) => false,
            })
        })
    }

    /// Starts a new run: a staging directory, its lock, and a journal that appears under the
    /// run's name once its first record is durable.
    pub fn create_run(&self, id: &str) -> Result<(RunLock, LogStore), RunsError> {
        let runs = self.runs_dir();
        if !runs.is_dir() {
            std::fs::create_dir_all(&runs).map_err(io(&runs))?;
            // The new directories must survive a power cut too.
            for d in [runs.as_path(), self.root.as_path()] {
                if let Some(parent) = d.parent() {
                    jlog::sync_dir(parent).map_err(io(parent))?;
                }
            }
        }
        // A run under this id that never made its first record durable (a power cut or a kill
        // while it was staged) acknowledged nothing: with no process holding it, it gives way.
        self.remove_empty(id)?;
        if self.kind(id) != RunKind::Absent {
            return Err(RunsError::Io {
                path: self.run_dir(id).display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a run with this id already exists"),
            });
        }
        let staging = self.staging_dir(id);
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        let lock = Self::lock_in(&staging, id)?;
        let store = LogStore::create_staged(&staging, &self.run_dir(id), id).map_err(JournalError::from)?;
        Ok((lock, store))
    }

    /// Opens a run's journal to append to it; the caller must hold its lock. A format-1 journal
    /// is first copied into a format-2 file (the original is kept, renamed `journal.v1`). A torn
    /// tail left by a power cut is moved aside and reported through `on_note`.
    pub fn open_store(&self, id: &str, on_note: &mut dyn FnMut(String)) -> Result<LogStore, RunsError> {
        match self.kind(id) {
            RunKind::Log => {}
            RunKind::Legacy => self.upgrade_legacy(id, on_note)?,
            RunKind::Missing => return Err(self.missing(id).into()),
            RunKind::Empty => return Err(JournalError::Empty.into()),
            RunKind::Absent => return Err(RunsError::NoSuchRun(id.to_string())),
        }
        let (store, _) = LogStore::open(&self.journal_path(id), id, on_note).map_err(JournalError::from)?;
        Ok(store)
    }

    fn missing(&self, id: &str) -> JournalError {
        JournalError::Missing { run: id.to_string(), file: self.journal_path(id).display().to_string() }
    }

    fn upgrade_legacy(&self, id: &str, on_note: &mut dyn FnMut(String)) -> Result<(), RunsError> {
        let old = self.legacy_journal_path(id);
        let mem = read_legacy(&old).map_err(JournalError::from)?;
        // Verify before copying: a damaged format-1 journal is reported, not laundered.
        journal::read_all(&mem)?;
        let dir = self.run_dir(id);
        let staging = dir.join(".upgrade");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        {
            use crate::journal::Store as _;
            let mut store =
                LogStore::create_staged(&staging, &dir.join(".upgraded"), id).map_err(JournalError::from)?;
            store.append(&mem.records).map_err(JournalError::from)?;
        }
        let moved = dir.join(".upgraded").join(jlog::LOG_FILE);
        std::fs::rename(&moved, self.journal_path(id)).map_err(io(&moved))?;
        let _ = std::fs::remove_dir(dir.join(".upgraded"));
        std::fs::rename(&old, dir.join("journal.v1")).map_err(io(&old))?;
        let wal = crate::journal::store::wal_path(&old);
        if wal.exists() {
            std::fs::rename(&wal, dir.join("journal.v1.wal")).map_err(io(&wal))?;
        }
        jlog::sync_dir(&dir).map_err(io(&dir))?;
        on_note(format!(
            "run {id}: journal upgraded to format 2 ({} records); the format-1 store is kept as journal.v1",
            mem.records.len()
        ));
        Ok(())
    }

    /// A run's stored records, raw (the chain is the reader's to verify), read without writing
    /// anything and without disturbing a live writer. Damage is carried in the store, after the
    /// good records, so a replay can show what came before it. A format-2 journal is read frame
    /// by frame each time the snapshot is scanned, never held whole in memory.
    pub fn snapshot(&self, id: &str) -> Result<Snapshot, RunsError> {
        match self.kind(id) {
            RunKind::Log => {
                let path = self.journal_path(id);
                let reader = LogReader::open(&path, Some(id)).map_err(JournalError::from)?;
                Ok(Snapshot::Log { reader, id: id.to_string(), state: self.clone(), told: AtomicBool::new(false) })
            }
            RunKind::Legacy => {
                Ok(Snapshot::Legacy(read_legacy(&self.legacy_journal_path(id)).map_err(JournalError::from)?))
            }
            RunKind::Missing => Err(self.missing(id).into()),
            RunKind::Empty => Err(JournalError::Empty.into()),
            RunKind::Absent => Err(RunsError::NoSuchRun(id.to_string())),
        }
    }

    /// Verifies a run's journal and folds it, streaming: what `status` and `runs` show. The
    /// outer error is the journal's (corrupt, missing, unreadable), the inner one a divergence.
    pub fn view(&self, id: &str) -> Result<Result<RunView, Divergence>, RunsError> {
        Ok(journal::fold_verified(&self.snapshot(id)?)?)
    }

    /// Reads and verifies a run's records.
    pub fn read(&self, id: &str) -> Result<Vec<Record>, RunsError> {
        Ok(journal::read_all(&self.snapshot(id)?)?)
    }
}

/// A run's journal as its readers see it (see [`StateDir::snapshot`]).
pub enum Snapshot {
    /// Format 2: streamed from the open file at each scan. A torn tail and harmless head-slot
    /// damage are said on stderr once, after the first scan.
    Log { reader: LogReader, id: String, state: StateDir, told: AtomicBool },
    /// Format 1, read through a copy of its sled store.
    Legacy(MemStore),
}

impl Store for Snapshot {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        match self {
            Snapshot::Log { reader, .. } => reader.append(records),
            Snapshot::Legacy(_) => Err(StoreError::Io {
                path: PathBuf::from("<format-1 journal>"),
                source: std::io::Error::other("a snapshot is read-only"),
            }),
        }
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        let (reader, id, state, told) = match self {
            Snapshot::Legacy(mem) => return mem.scan(f),
            Snapshot::Log { reader, id, state, told } => (reader, id, state, told),
        };
        let path = reader.path();
        let mut stopped = false;
        let scan = reader.stream(&mut |k, v| {
            stopped = !f(k, v);
            !stopped
        })?;
        if !told.swap(true, Ordering::Relaxed) {
            // A scan stopped early knows nothing of the tail (`scan.torn` is none then).
            if let Some(t) = &scan.torn {
                if !state.is_locked(id) {
                    eprintln!(
                        "loop: run {id}: {}: {} bytes at byte {} are an append that never completed (a crash); ignored, `loop resume` redoes that step",
                        path.display(),
                        t.len,
                        t.offset
                    );
                }
            }
            for n in &scan.notes {
                eprintln!("loop: run {id}: {}: {n}", path.display());
            }
        }
        match scan.damage {
            Some(d) if !stopped => Err(StoreError::Damaged { path: path.to_path_buf(), seq: d.seq, reason: d.reason }),
            _ => Ok(()),
        }
    }
}

/// Staging directories of runs not yet born: `runs/.new-<id>`.
const STAGING: &str = ".new-";
/// A format-2 run's lock file.
const RUN_LOCK: &str = "run.lock";

/// What is on disk for a run id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunKind {
    /// `journal.log`: format 2.
    Log,
    /// sled + WAL: format 1.
    Legacy,
    /// Killed before its first record was durable.
    Empty,
    /// A run directory whose journal is gone: damage.
    Missing,
    /// No such run.
    Absent,
}

/// The shortest prefix of each id that no other id shares (at least `min` characters).
pub fn shortest_prefixes(ids: &[String], min: usize) -> Vec<String> {
    ids.iter()
        .map(|id| {
            let mut n = min.min(id.len());
            while n < id.len() && ids.iter().any(|o| o != id && o.starts_with(&id[..n])) {
                n += 1;
            }
            id[..n].to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_short() {
        let ids: Vec<String> = ["20260101-000000-aaaaaa", "20260101-000000-abbbbb", "20260102-000000-cccccc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = shortest_prefixes(&ids, 4);
        assert_eq!(p, ["20260101-000000-aa", "20260101-000000-ab", "20260102"]);
    }
}
