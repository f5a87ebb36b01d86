//! The durable log of a run: sealed records chained by blake3 hashes, in a [`Store`].
//!
//! Invariants:
//! - Append only. Nothing in a journal is ever rewritten; resume and interruption add records.
//! - Durable before visible: [`Journal::append`] returns only after the store has synced, and the
//!   engine acts on an event only after its record was appended.
//! - Every read verifies the chain and stops at the first bad record, naming its sequence number.

pub mod record;
pub mod store;
pub mod view;

use std::io::{Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

pub use record::{AgentSpec, Body, Content, Evidence, Hash, PlannedIssue, Record, RunStart, FORMAT_VERSION};
pub use store::{MemStore, SledStore, Store, StoreError};

use crate::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("journal is corrupt at record {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("journal file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("journal is empty: no run was recorded")]
    Empty,
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
            fault_after: fault_from_env(),
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
            fault_after: fault_from_env(),
        };
        Ok((journal, records))
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

fn fault_from_env() -> Option<u64> {
    std::env::var("LOOP_FAULT_AFTER_APPEND").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0)
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

/// The portable export format: a magic line, then each stored record as a big-endian u32
/// length followed by its exact stored bytes (content and hash), in sequence order.
pub const EXPORT_MAGIC: &[u8; 8] = b"LOOPJNL1";

pub fn export(store: &dyn Store, out: &mut dyn Write) -> Result<u64, JournalError> {
    // Verify before writing, so an export is never a copy of a broken journal.
    read_all(store)?;
    let io = |e: std::io::Error| JournalError::File { path: "<export>".into(), reason: e.to_string() };
    out.write_all(EXPORT_MAGIC).map_err(io)?;
    let mut n = 0;
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
    Ok(n)
}

/// Parses an export file into a [`MemStore`] (framing only; verification is the reader's).
pub fn parse_export(bytes: &[u8], path: &str) -> Result<MemStore, JournalError> {
    let bad = |reason: String| JournalError::File { path: path.to_string(), reason };
    if bytes.len() < EXPORT_MAGIC.len() || &bytes[..8] != EXPORT_MAGIC {
        return Err(bad("not a loop journal export (missing LOOPJNL1 header)".into()));
    }
    let mut store = MemStore::default();
    let mut pos = 8usize;
    let mut index = 0u64;
    while pos < bytes.len() {
        if bytes.len() - pos < 4 {
            return Err(bad(format!("truncated inside the length of record {index} (byte {pos})")));
        }
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        pos += 4;
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
    Ok(store)
}

pub fn read_export_file(path: &Path) -> Result<MemStore, JournalError> {
    let shown = path.display().to_string();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| JournalError::File { path: shown.clone(), reason: e.to_string() })?;
    parse_export(&bytes, &shown)
}
