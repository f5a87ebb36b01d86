//! The durable log of a run: sealed records chained by blake3 hashes, in a [`Store`].
//!
//! Invariants:
//! - Append only. Nothing in a journal is ever rewritten; resume and interruption add records.
//! - Durable before visible: [`Journal::append`] returns only after the store has synced, and the
//!   engine acts on an event only after its record was appended.
//! - Every read verifies the chain and stops at the first bad record, naming its sequence number.

pub mod log;
pub mod record;
pub mod store;
pub mod v1;
pub mod view;

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use record::{AgentSpec, Body, Content, Entry, Evidence, Fact, Hash, PlannedIssue, Record, RunStart, FORMAT_VERSION};
pub use store::{MemStore, SledStore, Store, StoreError};

use crate::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// loop's own I/O trouble (disk full, permissions, a failed sync): the journal is fine.
    #[error(transparent)]
    Store(StoreError),
    /// The bytes on disk are not what was durably appended.
    #[error("journal {file} is damaged at record {seq}: {reason}")]
    Damaged { file: String, seq: u64, reason: String },
    /// A run directory whose journal file is gone.
    #[error("run {run}: its journal {file} is missing (deleted or moved); nothing of this run can be trusted")]
    Missing { run: String, file: String },
    #[error("journal is corrupt at record {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// An append of the same group failed (the first request got the cause).
    #[error("journal append failed: {0}")]
    AppendFailed(String),
    #[error("journal file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("journal is empty: no run was recorded")]
    Empty,
}

impl From<StoreError> for JournalError {
    fn from(e: StoreError) -> JournalError {
        match e {
            StoreError::Damaged { path, seq, reason } => {
                JournalError::Damaged { file: path.display().to_string(), seq, reason }
            }
            other => JournalError::Store(other),
        }
    }
}

/// What a journal writer needs to know to keep the chain going.
pub struct Journal {
    store: Box<dyn Store>,
    run_id: String,
    next_seq: u64,
    last: Hash,
    clock: Clock,
    appended: u64,
    fault_after: Option<u64>,
}

impl Journal {
    /// Starts a new, empty journal.
    pub fn create(store: Box<dyn Store>, run_id: &str, clock: Clock) -> Journal {
        Journal {
            store,
            run_id: run_id.to_string(),
            next_seq: 0,
            last: Hash::ZERO,
            clock,
            appended: 0,
            fault_after: None,
        }
    }

    /// Opens an existing journal to continue it: verifies every record first.
    pub fn reopen(store: Box<dyn Store>, clock: Clock) -> Result<(Journal, Vec<Record>), JournalError> {
        let records = read_all(store.as_ref())?;
        let last = records.last().ok_or(JournalError::Empty)?;
        let journal = Journal {
            run_id: last.content.run_id.clone(),
            next_seq: last.seq() + 1,
            last: last.hash,
            store,
            clock,
            appended: 0,
            fault_after: None,
        };
        Ok((journal, records))
    }

    /// Test hook: abort the process right after the `n`th record this journal appends is
    /// durable (the CLI reads it from `LOOP_FAULT_AFTER_APPEND`).
    pub fn with_fault_after(mut self, n: Option<u64>) -> Journal {
        self.fault_after = n.filter(|n| *n > 0);
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Appends one record; durable on return.
    pub fn append(&mut self, body: Body) -> Result<Record, JournalError> {
        Ok(self.append_group(vec![body])?.pop().expect("one record in, one out"))
    }

    /// Appends several records with one durable sync (group commit).
    pub fn append_group(&mut self, bodies: Vec<Body>) -> Result<Vec<Record>, JournalError> {
        let mut sealed = Vec::with_capacity(bodies.len());
        let mut out = Vec::with_capacity(bodies.len());
        let (mut seq, mut prev) = (self.next_seq, self.last);
        for body in bodies {
            let content = Content {
                version: FORMAT_VERSION,
                run_id: self.run_id.clone(),
                seq,
                time: self.clock.now(),
                prev,
                body,
            };
            let (bytes, hash) = record::seal(&content);
            sealed.push((seq, bytes));
            out.push(Record { content, hash });
            prev = hash;
            seq += 1;
        }
        self.store.append(&sealed)?;
        self.next_seq = seq;
        self.last = prev;
        for _ in &out {
            self.appended += 1;
            if self.fault_after == Some(self.appended) {
                // Test hook: die exactly here, after the record is durable and before any effect.
                eprintln!("loop: LOOP_FAULT_AFTER_APPEND={} reached; aborting", self.appended);
                std::process::abort();
            }
        }
        Ok(out)
    }
}


/// Verifies records one at a time as they stream past; keeps only the previous hash, so
/// memory stays flat however long the journal is.
#[derive(Default)]
pub struct ChainChecker {
    expected_seq: u64,
    prev: Hash,
    run_id: Option<String>,
}

impl ChainChecker {
    pub fn check(&mut self, key: u64, bytes: &[u8]) -> Result<Record, JournalError> {
        let corrupt = |reason: String| JournalError::Corrupt { seq: key, reason };
        let rec = record::open(bytes).map_err(|e| corrupt(e.to_string()))?;
        let c = &rec.content;
        if key != self.expected_seq {
            return Err(JournalError::Corrupt {
                seq: self.expected_seq,
                reason: format!("record {} is missing (next stored record is {key})", self.expected_seq),
            });
        }
        if c.seq != key {
            return Err(corrupt(format!("stored under {key} but says it is record {}", c.seq)));
        }
        if c.prev != self.prev {
            return Err(corrupt("does not chain to the previous record's hash".into()));
        }
        match &self.run_id {
            None => {
                if !matches!(c.body, Body::RunStarted(_)) {
                    return Err(corrupt("first record is not run_started".into()));
                }
                self.run_id = Some(c.run_id.clone());
            }
            Some(id) if *id != c.run_id => {
                return Err(corrupt(format!("belongs to run {} inside run {id}", c.run_id)));
            }
            Some(_) => {}
        }
        self.prev = rec.hash;
        self.expected_seq += 1;
        Ok(rec)
    }
}

/// Streams every record through `f`, verified.
pub fn scan_verified(
    store: &dyn Store,
    f: &mut dyn FnMut(Record) -> Result<(), JournalError>,
) -> Result<u64, JournalError> {
    let mut checker = ChainChecker::default();
    let mut failure: Option<JournalError> = None;
    store.scan(&mut |key, bytes| match checker.check(key, bytes).and_then(&mut *f) {
        Ok(()) => true,
        Err(e) => {
            failure = Some(e);
            false
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if checker.expected_seq == 0 {
        return Err(JournalError::Empty);
    }
    Ok(checker.expected_seq)
}

/// Reads and verifies a whole journal into memory.
pub fn read_all(store: &dyn Store) -> Result<Vec<Record>, JournalError> {
    let mut out = Vec::new();
    scan_verified(store, &mut |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// The portable export format, version 2: the magic `LOOPJNL2`, then each stored record as a
/// big-endian u32 length followed by its exact stored bytes (content and hash), in sequence order,
/// then a trailer: the length `u32::MAX`, the record count (u64) and the last record's hash, so a
/// file cut anywhere, even between records, is caught. Version 1 (`LOOPJNL1`, no trailer) is
/// still read.
pub const EXPORT_MAGIC: &[u8; 8] = b"LOOPJNL2";
pub const EXPORT_MAGIC_V1: &[u8; 8] = b"LOOPJNL1";
const TRAILER_TAG: u32 = u32::MAX;

pub fn export(store: &dyn Store, out: &mut dyn Write) -> Result<u64, JournalError> {
    // Verify before writing, so an export is never a copy of a broken journal.
    let records = read_all(store)?;
    let io = |e: std::io::Error| JournalError::File { path: "<export>".into(), reason: e.to_string() };
    out.write_all(EXPORT_MAGIC).map_err(io)?;
    let mut n: u64 = 0;
    let mut err = None;
    store.scan(&mut |_, bytes| {
        let len = (bytes.len() as u32).to_be_bytes();
        if let Err(e) = out.write_all(&len).and_then(|_| out.write_all(bytes)) {
            err = Some(e);
        }
        n += 1;
        true
    })?;
    if let Some(e) = err {
        return Err(io(e));
    }
    let last = records.last().map(|r| r.hash).unwrap_or(Hash::ZERO);
    out.write_all(&TRAILER_TAG.to_be_bytes()).map_err(io)?;
    out.write_all(&n.to_be_bytes()).map_err(io)?;
    out.write_all(&last.0).map_err(io)?;
    Ok(n)
}

/// Parses an export file into a [`MemStore`] (framing and trailer; the chain is the reader's).
pub fn parse_export(bytes: &[u8], path: &str) -> Result<MemStore, JournalError> {
    let bad = |reason: String| JournalError::File { path: path.to_string(), reason };
    let v2 = bytes.len() >= 8 && &bytes[..8] == EXPORT_MAGIC;
    if bytes.len() < EXPORT_MAGIC.len() || !(v2 || &bytes[..8] == EXPORT_MAGIC_V1) {
        return Err(bad("not a loop journal export (missing LOOPJNL2 or LOOPJNL1 header)".into()));
    }
    let mut store = MemStore::default();
    let mut pos = 8usize;
    let mut index = 0u64;
    while pos < bytes.len() {
        if bytes.len() - pos < 4 {
            return Err(bad(format!("truncated inside the length of record {index} (byte {pos})")));
        }
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        pos += 4;
        if v2 && len == TRAILER_TAG {
            // Trailer trouble is reported after the records are verified (carried as damage), so
            // a record dropped from the middle is named by the chain, not just counted here.
            let why = if bytes.len() - pos != 40 {
                Some(format!("the trailer at byte {} is {} bytes, not 40", pos - 4, bytes.len() - pos))
            } else {
                let count = u64::from_be_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
                let last = &bytes[pos + 8..pos + 40];
                let stored = store.records.last().map(|(_, b)| &b[b.len().saturating_sub(32)..]).unwrap_or(&[0u8; 32][..]);
                if count != index {
                    Some(format!("the trailer says {count} records, the file holds {index}"))
                } else if stored != last {
                    Some(format!("the trailer's last hash does not match record {}", index.saturating_sub(1)))
                } else {
                    None
                }
            };
            store.damage = why.map(|w| (PathBuf::from(path), index, w));
            return Ok(store);
        }
        let len = len as usize;
        if bytes.len() - pos < len {
            return Err(bad(format!(
                "truncated inside record {index}: {len} bytes announced at byte {pos}, {} present",
                bytes.len() - pos
            )));
        }
        store.records.push((index, bytes[pos..pos + len].to_vec()));
        pos += len;
        index += 1;
    }
    if v2 {
        let why = format!("the export is cut short: no trailer after its {index} records (byte {pos})");
        store.damage = Some((PathBuf::from(path), index, why));
    }
    Ok(store)
}
