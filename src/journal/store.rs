//! Where sealed records live: a small trait, the in-memory store, and the reader of format-1
//! journals (sled + WAL), kept so journals written before format 2 still replay and resume.
//! Format 2, the one written today, is [`super::log::LogStore`]: see its module doc for why one
//! file became the single truth (sled cannot be opened without writing to it, so read-only
//! commands could not stay read-only, and two copies gave damage two places to hide).
//!
//! Invariant: when `append` returns, the records are on stable storage, power cut included.
//! A panic inside sled (it unwraps some I/O results) is contained at this boundary and becomes
//! an I/O error; it never reaches the user.
//!
//! Format 1, as it was written: sled 0.34's `flush()` only issues `sync_file_range` (it survives a killed process, not a power
//! cut), and fsyncing sled's files after it would cost two device syncs per append. So the store
//! writes each group of records to a write-ahead file beside the sled directory
//! (`<journal>.wal`: `u64 seq, u32 len, bytes` frames) and `fdatasync`s that once; the same
//! records go into sled, which flushes in its own time. Opening the store (for writing *or*
//! reading) first copies into sled every complete WAL frame sled lacks, so the tree always holds
//! every durable record; a torn last frame was never acknowledged and is dropped. Once sled has
//! been flushed and its files fsynced, the WAL is emptied (a checkpoint).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal store at {path}: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("journal store at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal store at {path}: key {key:?} is not a sequence number")]
    BadKey { path: PathBuf, key: Vec<u8> },
    #[error("journal {path} is damaged at record {seq}: {reason}")]
    Damaged { path: PathBuf, seq: u64, reason: String },
    #[error("journal store at {path}: sled failed: {what}")]
    Panicked { path: PathBuf, what: String },
}

/// An append-only, ordered map from sequence number to sealed record bytes.
pub trait Store: Send {
    /// Appends records with consecutive sequence numbers; durable on return.
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError>;
    /// Visits every stored record in sequence order until `f` returns false.
    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError>;
}

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    wal: File,
    durable: bool,
}

/// The write-ahead file that belongs to a sled journal directory.
pub fn wal_path(journal: &Path) -> PathBuf {
    journal.with_extension("wal")
}

/// Checkpoint once the WAL holds this much: sled has long since flushed it.
const CHECKPOINT_BYTES: u64 = 8 << 20;

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let sled_err = |source| StoreError::Sled { path: path.to_path_buf(), source };
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        // A small page cache: the journal is read front to back (replay, resume), so a big cache
        // only makes memory grow with the journal's length.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(16 << 20)
            // No background flush: durability comes from the WAL, and sled syncing its own log
            // beside it would double the device syncs. Checkpoints flush sled explicitly.
            .flush_every_ms(None)
            .open()
            .map_err(sled_err)?;
        let tree = db.open_tree("records").map_err(sled_err)?;
        let wal_file = wal_path(path);
        let mut wal = OpenOptions::new().read(true).append(true).create(true).open(&wal_file).map_err(io)?;
        let mut bytes = Vec::new();
        wal.read_to_end(&mut bytes).map_err(io)?;
        let mut store = SledStore { path: path.to_path_buf(), db, tree, wal, durable: true };
        // Recover: every complete frame sled does not have yet goes in.
        let mut pos = 0usize;
        let mut recovered = 0usize;
        while bytes.len() - pos >= 12 {
            let seq = u64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            let len = u32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
            if bytes.len() - pos - 12 < len {
                break; // torn tail: never acknowledged
            }
            let key = seq.to_be_bytes();
            if store.tree.get(key).map_err(sled_err)?.is_none() {
                store.tree.insert(key, &bytes[pos + 12..pos + 12 + len]).map_err(sled_err)?;
                recovered += 1;
            }
            pos += 12 + len;
        }
        if recovered > 0 || pos != bytes.len() || bytes.len() as u64 > CHECKPOINT_BYTES {
            store.checkpoint()?;
        }
        Ok(store)
    }

    /// A store for benchmarks that measures write cost without the device sync.
    pub fn set_fsync(&mut self, on: bool) {
        self.durable = on;
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }

    /// Makes sled's own files durable, then empties the WAL.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(|source| StoreError::Sled { path: self.path.clone(), source })?;
        sync_tree(&self.path).map_err(|e| self.io(e))?;
        self.wal.set_len(0).map_err(|e| self.io(e))?;
        self.wal.sync_all().map_err(|e| self.io(e))?;
        Ok(())
    }
}

/// fsyncs every file under a directory, and the directories themselves.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            File::open(&p)?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

impl Store for SledStore {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let sled_err = |source| StoreError::Sled { path: self.path.clone(), source };
        let mut frame = Vec::with_capacity(records.iter().map(|(_, b)| b.len() + 12).sum());
        for (seq, bytes) in records {
            frame.extend_from_slice(&seq.to_be_bytes());
            frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            frame.extend_from_slice(bytes);
        }
        // Durable first (one write, one fdatasync for the whole group), then visible in sled.
        self.wal.write_all(&frame).map_err(|e| self.io(e))?;
        if self.durable {
            self.wal.sync_data().map_err(|e| self.io(e))?;
        }
        // Plain inserts, not a sled Batch: a batch makes sled sync its own log (measured: one
        // sync_file_range per batch), and atomicity already comes from the WAL, whose replay
        // re-inserts whatever a crash left out.
        for (seq, bytes) in records {
            self.tree.insert(seq.to_be_bytes(), bytes.as_slice()).map_err(sled_err)?;
        }
        let len = self.wal.metadata().map(|m| m.len()).unwrap_or(0);
        if len > CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|source| StoreError::Sled { path: self.path.clone(), source })?;
            let key: [u8; 8] =
                k.as_ref().try_into().map_err(|_| StoreError::BadKey { path: self.path.clone(), key: k.to_vec() })?;
            if !f(u64::from_be_bytes(key), &v) {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // A clean close leaves sled complete and the WAL empty; a crash leaves the WAL to replay.
        if self.durable {
            let _ = self.checkpoint();
        }
    }
}

/// Reads a format-1 journal without touching it: sled cannot open a database without writing
/// to it, so the directory and its WAL are copied to a private temporary directory first and
/// opened there. A panic inside sled becomes [`StoreError::Panicked`].
pub fn read_legacy(journal: &Path) -> Result<MemStore, StoreError> {
    let io = |source| StoreError::Io { path: journal.to_path_buf(), source };
    let tmp = tempfile::tempdir().map_err(io)?;
    let copy = tmp.path().join("journal");
    copy_dir(journal, &copy).map_err(io)?;
    let wal = wal_path(journal);
    if wal.exists() {
        std::fs::copy(&wal, wal_path(&copy)).map_err(io)?;
    }
    contain(journal, || {
        let store = SledStore::open(&copy)?;
        let mut mem = MemStore::default();
        store.scan(&mut |k, v| {
            mem.records.push((k, v.to_vec()));
            true
        })?;
        Ok(mem)
    })
}

/// Runs sled code, turning a panic into an error.
pub fn contain<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(StoreError::Panicked { path: path.to_path_buf(), what })
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else if e.file_type()?.is_file() {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// An in-memory store, for tests and for reading exported files through the same reader. A
/// store read from a damaged file carries the damage: its scan visits the good records, then
/// fails, so replay still shows the timeline up to the damage.
#[derive(Default)]
pub struct MemStore {
    pub records: Vec<(u64, Vec<u8>)>,
    pub damage: Option<(PathBuf, u64, String)>,
}

impl Store for MemStore {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.records.extend(records.iter().cloned());
        Ok(())
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        for (k, v) in &self.records {
            if !f(*k, v) {
                return Ok(());
            }
        }
        if let Some((path, seq, reason)) = &self.damage {
            return Err(StoreError::Damaged { path: path.clone(), seq: *seq, reason: reason.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_in_the_wal_are_recovered_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        {
            let mut s = SledStore::open(&path).unwrap();
            s.append(&[(0, b"zero".to_vec()), (1, b"one".to_vec())]).unwrap();
            // Simulate a crash: sled never flushed, no checkpoint ran.
            std::mem::forget(s);
        }
        // A sled that lost its unflushed tail: only the WAL knows record 1.
        let wal = std::fs::read(wal_path(&path)).unwrap();
        assert!(wal.len() > 24);
        std::fs::remove_dir_all(&path).unwrap();
        let mut torn = wal.clone();
        torn.extend_from_slice(&7u64.to_be_bytes()); // a torn frame: header only
        std::fs::write(wal_path(&path), &torn).unwrap();
        let s = SledStore::open(&path).unwrap();
        let mut seen = Vec::new();
        s.scan(&mut |k, v| {
            seen.push((k, v.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(0, b"zero".to_vec()), (1, b"one".to_vec())]);
        drop(s);
        assert_eq!(std::fs::metadata(wal_path(&path)).unwrap().len(), 0, "a clean close checkpoints");
    }
}
