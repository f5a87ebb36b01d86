//! Where runs live on disk, and who may write them.
//!
//! Layout under the state dir (default `<repo>/.loop/`):
//! `runs/<run-id>/journal/` (the sled store), `runs/<run-id>/lock`, `worktrees/<milestone>/<issue>/`,
//! `logs/<run-id>/`. Invariant: a run's journal is written only by the process that holds its
//! lock; readers of a locked run read a snapshot copy and never block or disturb the writer.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::journal::{self, JournalError, MemStore, Record, SledStore, Store};

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

    pub fn journal_path(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("journal")
    }

    pub fn worktrees_dir(&self) -> PathBuf {
        self.root.join("worktrees")
    }

    pub fn logs_dir(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(id)
    }

    /// Every run id, oldest first (ids sort by start time).
    pub fn list(&self) -> Result<Vec<String>, RunsError> {
        let dir = self.runs_dir();
        let mut ids = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if e.path().join("journal").is_dir() {
                        ids.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        ids.sort();
        Ok(ids)
    }

    /// Resolves a run id or a unique prefix of one.
    pub fn resolve(&self, prefix: &str) -> Result<String, RunsError> {
        let ids = self.list()?;
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

    /// The newest run, if any.
    pub fn latest(&self) -> Result<Option<String>, RunsError> {
        Ok(self.list()?.pop())
    }

    /// Takes the run's lock, or says who has it.
    pub fn lock(&self, id: &str) -> Result<RunLock, RunsError> {
        let dir = self.run_dir(id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
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
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let field = |key: &str| {
                    text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
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
        };
        // One `key value` line each; the state dir is last and may hold spaces.
        write!(file, "holder {holder}\npid {}\nstate {}\n", std::process::id(), self.root.display()).map_err(io(&path))?;
        Ok(RunLock { _file: file })
    }

    /// Is some process writing this run right now?
    pub fn is_locked(&self, id: &str) -> bool {
        let path = self.run_dir(id).join("lock");
        match File::open(&path) {
            Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    /// Opens a run's store for writing; the caller must hold its lock.
    pub fn open_store(&self, id: &str) -> Result<SledStore, RunsError> {
        Ok(SledStore::open(&self.journal_path(id)).map_err(JournalError::from)?)
    }

    /// A run's stored records, raw and unverified, read without disturbing a live writer: a
    /// locked run is read from a snapshot copy of its store.
    pub fn snapshot(&self, id: &str) -> Result<MemStore, RunsError> {
        let mut mem = MemStore::default();
        let mut collect = |store: &SledStore| {
            store.scan(&mut |k, v| {
                mem.records.push((k, v.to_vec()));
                true
            })
        };
        match self.lock(id) {
            Ok(_lock) => collect(&self.open_store(id)?).map_err(JournalError::from)?,
            Err(RunsError::Locked { .. }) => {
                let tmp = tempfile::tempdir().map_err(io(&self.root))?;
                let copy = tmp.path().join("journal");
                // The WAL first: a record is durable once it is there, and opening the copy
                // moves any record sled had not flushed yet into it.
                let wal = crate::journal::store::wal_path(&self.journal_path(id));
                let wal_copy = crate::journal::store::wal_path(&copy);
                std::fs::copy(&wal, &wal_copy).map_err(io(&wal))?;
                copy_dir(&self.journal_path(id), &copy)?;
                collect(&SledStore::open(&copy).map_err(JournalError::from)?).map_err(JournalError::from)?;
            }
            Err(e) => return Err(e),
        }
        Ok(mem)
    }

    /// Reads and verifies a run's records.
    pub fn read(&self, id: &str) -> Result<Vec<Record>, RunsError> {
        Ok(journal::read_all(&self.snapshot(id)?)?)
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), RunsError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for e in std::fs::read_dir(from).map_err(io(from))?.flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target).map_err(io(&target))?;
        }
    }
    Ok(())
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
