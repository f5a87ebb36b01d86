//! The durable log of a run: sealed records chained by blake3 hashes, in a [`Store`].
//!
//! Invariants:
//! - Append only. Nothing in a journal is ever rewritten; resume and interruption add records.
//! - Durable before visible: [`Journal::append`] returns only after the store has synced, and the
//!   engine acts on an event only after its record was appended.
//! - Every read verifies the chain and stops at the first bad record, naming its sequence number.

pub mod log;
mod positional;
pub mod record;
pub mod replay;
pub mod store;
pub mod v1;
pub mod view;

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use record::{
    AgentSpec, Body, Content, Entry, Evidence, Fact, Hash, PlannedIssue, Record, RunStart, FORMAT_VERSION,
};
pub use store::{MemStore, SledStore, Store, StoreError};

use crate::clock::Clock;
use view::{Divergence, RunView};

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

    /// [`Journal::reopen`] that folds the records into a view as they are verified instead of
    /// returning them, so memory stays flat for long journals. Corruption is the outer error,
    /// divergence the inner one (see [`fold_verified`]).
    pub fn reopen_view(
        store: Box<dyn Store>,
        clock: Clock,
    ) -> Result<Result<(Journal, RunView), Divergence>, JournalError> {
        let mut folder = Folder::default();
        let mut run_id: Option<String> = None;
        let mut last = (0, Hash::ZERO);
        scan_verified_ref(store.as_ref(), &mut |rec| {
            folder.take(rec);
            // The chain checker holds every record to the first one's run id.
            if run_id.is_none() {
                run_id = Some(rec.content.run_id.clone());
            }
            last = (rec.content.seq, rec.hash);
            Ok(())
        })?;
        let run_id = run_id.ok_or(JournalError::Empty)?;
        let (seq, hash) = last;
        let journal = Journal { run_id, next_seq: seq + 1, last: hash, store, clock, appended: 0, fault_after: None };
        Ok(folder.finish().map(|view| (journal, view)))
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

    /// The sequence number the next record gets: how many records the journal holds.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
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
        let now = self.clock.now();
        let timed = bodies.into_iter().map(|b| (now, b)).collect();
        self.append_group_at(timed)
    }

    /// [`Journal::append_group`] with the time each record was decided elsewhere (a mirror of a
    /// run another engine drove keeps that engine's times).
    pub fn append_group_at(&mut self, bodies: Vec<(DateTime<Utc>, Body)>) -> Result<Vec<Record>, JournalError> {
        let mut sealed = Vec::with_capacity(bodies.len());
        let mut out = Vec::with_capacity(bodies.len());
        let (mut seq, mut prev) = (self.next_seq, self.last);
        for (time, body) in bodies {
            let content = Content { version: FORMAT_VERSION, run_id: self.run_id.clone(), seq, time, prev, body };
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
        self.check_opened(key, record::open(bytes))
    }

    /// The chain checks of [`ChainChecker::check`] on a record already opened (its own hash
    /// checked and decoded, perhaps on another thread): the order of checks, and so which
    /// error a bad record gets, is the same.
    pub fn check_opened(
        &mut self,
        key: u64,
        opened: Result<Record, record::RecordError>,
    ) -> Result<Record, JournalError> {
        self.check_in_place(key, &opened)?;
        Ok(opened.expect("a record that failed to open is an error above"))
    }

    /// [`ChainChecker::check_opened`] without taking the record: the threaded scan checks and
    /// folds records where they lie in their batch, so none is moved (each is ~600 bytes).
    fn check_in_place(&mut self, key: u64, opened: &Result<Record, record::RecordError>) -> Result<(), JournalError> {
        let corrupt = |reason: String| JournalError::Corrupt { seq: key, reason };
        let rec = opened.as_ref().map_err(|e| corrupt(e.to_string()))?;
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
        Ok(())
    }
}

/// Streams every record through `f`, verified, in sequence order. Opening records (their own
/// hash and the decode, most of a replay's work) runs on [`open_workers`] threads when the
/// journal is longer than one batch; the chain checks and `f` stay on this thread, in order,
/// so the result, the first error included, is the same as reading one record at a time.
/// Memory is bounded by the batches in flight, not by the journal's length.
pub fn scan_verified(
    store: &dyn Store,
    f: &mut dyn FnMut(Record) -> Result<(), JournalError>,
) -> Result<u64, JournalError> {
    scan_verified_with(store, open_workers(), Sink::Owned(f))
}

/// [`scan_verified`] for a reader that only looks at each record (a fold, a check): records
/// are lent where they were opened instead of moved out to it, and they are dropped on the
/// thread that decoded them (see [`Batch`]), which is what lets a long replay skip most of
/// the copying and cross-thread freeing it used to do.
pub fn scan_verified_ref(
    store: &dyn Store,
    f: &mut dyn FnMut(&Record) -> Result<(), JournalError>,
) -> Result<u64, JournalError> {
    scan_verified_with(store, open_workers(), Sink::Lent(f))
}

/// Where verified records go: moved to a caller that keeps them, or lent to one that does not.
pub enum Sink<'f> {
    Owned(&'f mut dyn FnMut(Record) -> Result<(), JournalError>),
    Lent(&'f mut dyn FnMut(&Record) -> Result<(), JournalError>),
}

/// Records handed to an opening thread at a time, and batches in flight per thread: enough to
/// keep the threads busy, little enough that memory stays flat (about 2 × 256 KiB per thread).
const BATCH: usize = 512;
const DEPTH: usize = 2;

/// How many threads open records: one per core (the caller's thread only checks and folds,
/// which is much less work), none with one core.
pub fn open_workers() -> usize {
    match std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) {
        1 => 0,
        n => n.min(8),
    }
}

type Opened = Vec<(u64, Result<Record, record::RecordError>)>;
/// One opening thread's queues: raw batches in, opened batches out.
type Lane = (std::sync::mpsc::SyncSender<Batch>, std::sync::mpsc::Receiver<Batch>);

/// Stored records copied into one buffer (one allocation per batch, not per record), and what
/// opening them gave. A batch goes to an opening thread and back, and is then used again by
/// the same thread, so a long scan reuses the same few buffers instead of allocating (and
/// faulting in) fresh ones for every batch. The opened records stay in the batch after they
/// were checked and folded and are dropped by that thread when it reuses the batch: freed
/// where they were allocated, the allocator's per-thread caches serve the next batch instead
/// of every free crossing to another thread's arena (measured with callgrind: malloc and
/// free were a seventh of a replay).
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// `(key, end of the record in bytes)`, in order.
    ends: Vec<(u64, usize)>,
    opened: Opened,
}

impl Batch {
    fn push(&mut self, key: u64, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push((key, self.bytes.len()));
    }

    fn records(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key, end)| {
            let r = &self.bytes[start..end];
            start = end;
            (key, r)
        })
    }

    /// On an opening thread: opens every record, each in the place of one from its last trip,
    /// then drops the raw bytes (keeping the buffers).
    ///
    /// The old record is dropped right before the new one is opened, not all of them first:
    /// a record's few blocks then go to the allocator's per-thread cache and come straight
    /// back for the next one, where dropping a whole batch overflowed that cache and sent
    /// every block through the slower free lists (callgrind: a tenth of a replay).
    fn open_all(&mut self) {
        let mut opened = std::mem::take(&mut self.opened);
        opened.truncate(self.ends.len());
        for (i, (k, bytes)) in self.records().enumerate() {
            match opened.get_mut(i) {
                Some(slot) => {
                    *slot = (k, TAKEN);
                    slot.1 = record::open(bytes);
                }
                None => opened.push((k, record::open(bytes))),
            }
        }
        self.opened = opened;
        self.bytes.clear();
        self.ends.clear();
    }
}

/// The in-order end of [`scan_verified`]: chain checks, then the caller's `f`.
struct Taker<'f> {
    checker: ChainChecker,
    failure: Option<JournalError>,
    f: Sink<'f>,
}

/// A record taken out of a batch for a [`Sink::Owned`] caller leaves this behind.
const TAKEN: Result<Record, record::RecordError> = Err(record::RecordError::TooShort(0));

impl Taker<'_> {
    /// False once a record failed (the failure is kept): the scan stops there. An owning
    /// caller gets the record moved out of `opened`; a borrowing one leaves it there.
    fn take(&mut self, key: u64, opened: &mut Result<Record, record::RecordError>) -> bool {
        let r = self.checker.check_in_place(key, opened).and_then(|()| match &mut self.f {
            Sink::Owned(f) => match std::mem::replace(opened, TAKEN) {
                Ok(rec) => f(rec),
                Err(_) => unreachable!("checked above"),
            },
            Sink::Lent(f) => match opened {
                Ok(rec) => f(rec),
                Err(_) => unreachable!("checked above"),
            },
        });
        match r {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }

    /// Takes the oldest batch in flight: lanes are filled round-robin and each works in order,
    /// so batch `received` is the next one out of lane `received % lanes`.
    /// The batch goes to its lane's `spare` to be filled again (its records are dropped there).
    fn take_batch(&mut self, lanes: &[Lane], received: &mut usize, spare: &mut [Vec<Batch>]) -> bool {
        let lane = *received % lanes.len();
        let mut out = lanes[lane].1.recv().expect("an opening thread answers every batch");
        *received += 1;
        let ok = out.opened.iter_mut().all(|(key, opened)| self.take(*key, opened));
        spare[lane].push(out);
        ok
    }
}

/// [`scan_verified`] with `workers` opening threads (0: all on this thread).
pub fn scan_verified_with(store: &dyn Store, workers: usize, f: Sink) -> Result<u64, JournalError> {
    let mut t = Taker { checker: ChainChecker::default(), failure: None, f };
    let scanned = std::thread::scope(|s| {
        // Spawned at the first full batch, so a short journal never starts a thread.
        let mut lanes: Vec<Lane> = Vec::new();
        let (mut sent, mut received) = (0usize, 0usize);
        let mut batch = Batch::default();
        // Batches back from the opening threads, per lane (each goes back to the thread that
        // opened its records): at most the number in flight.
        let mut spare: Vec<Vec<Batch>> = (0..workers).map(|_| Vec::new()).collect();
        let mut ok = true;
        let result = store.scan(&mut |key, bytes| {
            if workers == 0 {
                ok = t.take(key, &mut record::open(bytes));
                return ok;
            }
            batch.push(key, bytes);
            if batch.ends.len() < BATCH {
                return true;
            }
            if lanes.is_empty() {
                for _ in 0..workers {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(DEPTH);
                    let (otx, orx) = std::sync::mpsc::sync_channel::<Batch>(DEPTH);
                    s.spawn(move || {
                        for mut b in rx {
                            b.open_all();
                            if otx.send(b).is_err() {
                                break;
                            }
                        }
                    });
                    lanes.push((tx, orx));
                }
            }
            // At most DEPTH batches per lane in flight, which its queues hold without blocking
            // (round-robin spreads any DEPTH × lanes consecutive batches evenly).
            if sent - received == lanes.len() * DEPTH && !t.take_batch(&lanes, &mut received, &mut spare) {
                ok = false;
                return false;
            }
            let lane = sent % lanes.len();
            let full = std::mem::replace(&mut batch, spare[(sent + 1) % lanes.len()].pop().unwrap_or_default());
            lanes[lane].0.send(full).expect("an opening thread takes every batch");
            sent += 1;
            true
        });
        while ok && received < sent {
            ok = t.take_batch(&lanes, &mut received, &mut spare);
        }
        if ok {
            for (key, bytes) in batch.records() {
                if !t.take(key, &mut record::open(bytes)) {
                    break;
                }
            }
        }
        // Dropping the lanes ends the threads, even those with work still queued.
        drop(lanes);
        result
    });
    // A bad record comes before the store's own damage, which it reports only after every
    // record it could read (the pipeline may learn of the record only after the store is done).
    if let Some(e) = t.failure {
        return Err(e);
    }
    scanned?;
    if t.checker.expected_seq == 0 {
        return Err(JournalError::Empty);
    }
    Ok(t.checker.expected_seq)
}

/// Verifies every record of `store` and folds it into a [`RunView`] as it streams past, keeping
/// no record. Corruption anywhere is reported before divergence (the outer error), as when
/// the records were first read whole and then folded: after a divergence the rest is still
/// verified, just not folded.
pub fn fold_verified(store: &dyn Store) -> Result<Result<RunView, Divergence>, JournalError> {
    let mut folder = Folder::default();
    scan_verified_ref(store, &mut |rec| {
        folder.take(rec);
        Ok(())
    })?;
    Ok(folder.finish())
}

/// A fold that records the first divergence instead of stopping at it.
#[derive(Default)]
struct Folder {
    view: Option<RunView>,
    diverged: Option<Divergence>,
}

impl Folder {
    fn take(&mut self, rec: &Record) {
        if self.diverged.is_some() {
            return;
        }
        let r = match &mut self.view {
            None => RunView::new(rec).map(|v| self.view = Some(v)),
            Some(v) => v.apply_quiet(rec),
        };
        if let Err(d) = r {
            self.diverged = Some(d);
        }
    }

    fn finish(self) -> Result<RunView, Divergence> {
        match (self.diverged, self.view) {
            (Some(d), _) => Err(d),
            (None, Some(v)) => Ok(v),
            (None, None) => Err(Divergence::NoStart { seq: 0 }),
        }
    }
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
    // Verify before writing, so an export is never a copy of a broken journal (streaming: an
    // export of a long journal is read twice rather than held in memory).
    let mut last = Hash::ZERO;
    scan_verified_ref(store, &mut |r| {
        last = r.hash;
        Ok(())
    })?;
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
                let stored =
                    store.records.last().map(|(_, b)| &b[b.len().saturating_sub(32)..]).unwrap_or(&[0u8; 32][..]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::log::{scan_file, LogReader, LogStore, LOG_FILE};

    fn records_of(n: u64) -> (tempfile::TempDir, Vec<(u64, Vec<u8>)>) {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = crate::bench::generate(dir.path(), n).unwrap();
        let records = scan_file(&path.join(LOG_FILE), Some("bench")).unwrap().records;
        (dir, records)
    }

    /// Every record `f` saw, and how the scan ended; the same whether records are moved to `f`
    /// or lent to it.
    fn verify(store: &dyn Store, workers: usize) -> (Vec<u64>, Result<u64, String>) {
        let mut seen = Vec::new();
        let r = scan_verified_with(
            store,
            workers,
            Sink::Owned(&mut |rec| {
                seen.push(rec.seq());
                Ok(())
            }),
        );
        let mut lent = Vec::new();
        let r_lent = scan_verified_with(
            store,
            workers,
            Sink::Lent(&mut |rec| {
                lent.push(rec.seq());
                Ok(())
            }),
        );
        let (r, r_lent) = (r.map_err(|e| e.to_string()), r_lent.map_err(|e| e.to_string()));
        assert_eq!((&lent, &r_lent), (&seen, &r), "{workers} threads: a lent record is the one an owner gets");
        (seen, r)
    }

    /// Opening records on other threads changes nothing a reader sees: the records, their
    /// order, and the first error (a bad record, a missing one, the store's own damage).
    #[test]
    fn threaded_verification_agrees_with_one_thread() {
        let (_dir, good) = records_of(3 * BATCH as u64 + 77);
        let mut cases: Vec<(&str, MemStore)> = vec![("intact", MemStore { records: good.clone(), damage: None })];
        let mut flipped = good.clone();
        flipped[BATCH + 5].1[10] ^= 1;
        cases.push(("flipped record", MemStore { records: flipped, damage: None }));
        let mut holed = good.clone();
        holed.remove(2 * BATCH + 1);
        cases.push(("missing record", MemStore { records: holed, damage: None }));
        let mut swapped = good.clone();
        let (a, b) = (swapped[BATCH].1.clone(), swapped[BATCH + 1].1.clone());
        swapped[BATCH].1 = b;
        swapped[BATCH + 1].1 = a;
        cases.push(("swapped records", MemStore { records: swapped, damage: None }));
        let damage = Some((std::path::PathBuf::from("j"), good.len() as u64, "cut".to_string()));
        cases.push(("damaged store", MemStore { records: good.clone(), damage }));
        let mut both = good.clone();
        both[7].1[20] ^= 1;
        let damage = Some((std::path::PathBuf::from("j"), good.len() as u64, "cut".to_string()));
        cases.push(("bad record, then damage", MemStore { records: both, damage }));
        for (what, store) in &cases {
            let one = verify(store, 0);
            for workers in [1, 2, 3] {
                assert_eq!(verify(store, workers), one, "{what}, {workers} threads");
            }
        }
        assert_eq!(cases[0].1.records.len() as u64, verify(&cases[0].1, 2).1.unwrap());
    }

    /// The streaming fold reports corruption before divergence, wherever each lies, as reading
    /// everything first and folding after did.
    #[test]
    fn corruption_outranks_an_earlier_divergence() {
        let (_dir, good) = records_of(5);
        let start = record::open(&good[0].1).unwrap().content.body;
        let dir = tempfile::tempdir().unwrap();
        let mut j =
            Journal::create(Box::new(LogStore::create_in(dir.path(), "bench").unwrap()), "bench", Clock::from_env());
        j.append(start.clone()).unwrap();
        j.append(start).unwrap(); // a second run_started: the fold diverges here
        for _ in 0..3 {
            j.append(Body::RunResumed).unwrap();
        }
        drop(j);
        let path = dir.path().join(LOG_FILE);
        let reader = LogReader::open(&path, Some("bench")).unwrap();
        assert!(matches!(fold_verified(&reader).unwrap(), Err(Divergence::Restarted { seq: 1 })));
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 40] ^= 1; // inside the last record
        std::fs::write(&path, &bytes).unwrap();
        let reader = LogReader::open(&path, Some("bench")).unwrap();
        let err = fold_verified(&reader).unwrap_err();
        assert!(matches!(err, JournalError::Damaged { seq: 4, .. }), "{err}");
    }
}
