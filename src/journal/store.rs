//! Where sealed records live: a small trait and its sled implementation.
//!
//! Invariant: when `append` returns, the records are on stable storage. sled 0.34's `flush()`
//! only issues `sync_file_range` (it survives a killed process, not a power cut), so after each
//! flush the store also `fsync`s sled's files and directory.

use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal store at {path}: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("journal store at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal store at {path}: key {key:?} is not a sequence number")]
    BadKey { path: PathBuf, key: Vec<u8> },
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
    /// sled's log file, kept open so each append's fsync costs one syscall.
    log: Option<File>,
    durable: bool,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let sled_err = |source| StoreError::Sled { path: path.to_path_buf(), source };
        let db = sled::Config::new().path(path).open().map_err(sled_err)?;
        let tree = db.open_tree("records").map_err(sled_err)?;
        let log = File::open(path.join("db")).ok();
        // Make the directory entries themselves durable once.
        let mut store = SledStore { path: path.to_path_buf(), db, tree, log, durable: true };
        store.sync_dir()?;
        Ok(store)
    }

    /// A store for benchmarks that measures sled alone: flush, but no fsync.
    pub fn set_fsync(&mut self, on: bool) {
        self.durable = on;
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }

    fn sync_dir(&mut self) -> Result<(), StoreError> {
        if let Ok(dir) = File::open(&self.path) {
            dir.sync_all().map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn sync_files(&mut self, large: bool) -> Result<(), StoreError> {
        if self.log.is_none() {
            self.log = File::open(self.path.join("db")).ok();
        }
        if let Some(log) = &self.log {
            log.sync_data().map_err(|e| self.io(e))?;
        }
        if large {
            // Values above sled's blob threshold live in files of their own.
            let blobs = self.path.join("blobs");
            if let Ok(entries) = std::fs::read_dir(&blobs) {
                for entry in entries.flatten() {
                    if let Ok(f) = File::open(entry.path()) {
                        f.sync_data().map_err(|e| self.io(e))?;
                    }
                }
                if let Ok(d) = File::open(&blobs) {
                    d.sync_all().map_err(|e| self.io(e))?;
                }
            }
            self.sync_dir()?;
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let sled_err = |source| StoreError::Sled { path: self.path.clone(), source };
        let mut batch = sled::Batch::default();
        let mut large = false;
        for (seq, bytes) in records {
            large |= bytes.len() > 64 * 1024;
            batch.insert(&seq.to_be_bytes(), bytes.as_slice());
        }
        self.tree.apply_batch(batch).map_err(sled_err)?;
        self.db.flush().map_err(sled_err)?;
        if self.durable {
            self.sync_files(large)?;
        }
        Ok(())
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|source| StoreError::Sled { path: self.path.clone(), source })?;
            let key: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::BadKey { path: self.path.clone(), key: k.to_vec() })?;
            if !f(u64::from_be_bytes(key), &v) {
                break;
            }
        }
        Ok(())
    }
}

/// An in-memory store, for tests and for reading exported files through the same reader.
#[derive(Default)]
pub struct MemStore {
    pub records: Vec<(u64, Vec<u8>)>,
}

impl Store for MemStore {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.records.extend(records.iter().cloned());
        Ok(())
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        for (k, v) in &self.records {
            if !f(*k, v) {
                break;
            }
        }
        Ok(())
    }
}
