//! The journal's one storage file (format 2): `runs/<id>/journal.log`, the single truth.
//!
//! Layout:
//! - a 4 KiB header block: magic `LOOPLOG2`, the format version, the run id, zero padding, and a
//!   blake3 check over all of it; inside the block, at fixed offsets, two *head slots*;
//! - then one *group frame* per group commit: `GRP1 | u32 payload length | u64 first seq |
//!   u32 record count | payload | 16-byte blake3 check` where the payload is `u32 length | sealed
//!   record` for each record. The check covers the frame's header fields and its payload.
//!
//! A head slot says how far the journal is known to be durable: a generation, the record count,
//! the byte end of the last frame, the last record's hash, and a check. Slots alternate, so a
//! torn slot write leaves the other (older) slot intact.
//!
//! Invariants:
//! - Durable before acknowledged: [`LogStore::append`] writes the group's frame, `fdatasync`s
//!   the file (one device sync per group), and only then returns.
//! - A head never claims bytes that were not synced: the slot for group *k* is written right
//!   after group *k*'s sync, and reaches the disk with group *k + 1*'s sync, or with the sync of a
//!   clean close. After a killed process the page cache still holds it, so the head is exact;
//!   after a power cut it may lag by the last group, never lead.
//! - Reading classifies damage by position: anything wrong inside the head's extent, a frame
//!   that fails its check while a valid frame follows it, a missing or foreign file, a bad
//!   header — all are corruption (exit 4, naming the run, the file and the first bad or missing
//!   record). A bad frame that is the *last* thing in the file and lies past the head is the
//!   torn tail of an append that was never acknowledged: readers ignore it and report it in one
//!   line; a writer moves it aside to `journal.log.torn-<offset>` (kept as evidence) and
//!   truncates, so resume redoes that step.
//! - Readers open the file read-only and never write, grow or repair it; they read the head
//!   *before* the frames, so a live writer (which writes frames before heads) never looks
//!   damaged to them.
//! - A new journal is born whole: its header and first group are written and synced in a
//!   staging directory that is then renamed into place and the parent directory synced, so a
//!   run directory without `journal.log` means the file was removed, not that a run died young.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::record::Hash;
use super::store::{Store, StoreError};

pub const LOG_MAGIC: &[u8; 8] = b"LOOPLOG2";
pub const LOG_VERSION: u16 = 2;
pub const LOG_FILE: &str = "journal.log";
const HEADER_LEN: u64 = 4096;
/// The header's own check covers bytes `0..CHECKED`, with the slots zeroed.
const CHECK_AT: usize = 256;
const SLOT_AT: [usize; 2] = [512, 1024];
const SLOT_LEN: usize = 4 + 8 + 8 + 8 + 32 + 16;
const MAX_RUN_ID: usize = 200;
const FRAME_MAGIC: &[u8; 4] = b"GRP1";
const FRAME_HEAD: usize = 4 + 4 + 8 + 4;
const FRAME_CHECK: usize = 16;
/// `LogStore::open` keeps the records it read for the reopen that follows up to this size (a
/// typical run's whole journal); past it the reopen streams the file again, so memory stays flat.
const KEEP_OPENED_BYTES: usize = 8 << 20;
/// No single group is this big; a length past it is damage, not a reason to allocate.
const MAX_PAYLOAD: u32 = 256 << 20;

/// Where the journal is known to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Head {
    pub generation: u64,
    pub count: u64,
    pub end: u64,
    pub last: Hash,
}

/// Damage found while reading, kept apart from I/O errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The first record that is bad or missing.
    pub seq: u64,
    pub reason: String,
}

/// An unacknowledged append found torn at the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub offset: u64,
    pub len: u64,
}

/// Everything a read of the file found.
pub struct Scan {
    pub run_id: String,
    pub head: Option<Head>,
    /// Records in order, as `(seq, sealed bytes)`.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Byte offset just past the last good frame.
    pub good_end: u64,
    pub torn: Option<TornTail>,
    pub damage: Option<Damage>,
    /// Harmless damage worth a line (a torn or flipped inactive head slot).
    pub notes: Vec<String>,
}

fn check16(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

fn header_block(run_id: &str) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN as usize];
    b[..8].copy_from_slice(LOG_MAGIC);
    b[8..10].copy_from_slice(&LOG_VERSION.to_be_bytes());
    let id = run_id.as_bytes();
    b[10..12].copy_from_slice(&(id.len() as u16).to_be_bytes());
    b[12..12 + id.len()].copy_from_slice(id);
    let check = header_check(&b);
    b[CHECK_AT..CHECK_AT + 32].copy_from_slice(&check);
    b
}

/// blake3 over the whole header block with the check field and both slots zeroed, so padding
/// is covered too: a flipped byte anywhere outside the slots is damage.
fn header_check(block: &[u8]) -> [u8; 32] {
    let mut copy = block[..HEADER_LEN as usize].to_vec();
    copy[CHECK_AT..CHECK_AT + 32].fill(0);
    for at in SLOT_AT {
        copy[at..at + SLOT_LEN].fill(0);
    }
    *blake3::hash(&copy).as_bytes()
}

fn encode_slot(h: &Head) -> [u8; SLOT_LEN] {
    let mut s = [0u8; SLOT_LEN];
    s[..4].copy_from_slice(b"HEAD");
    s[4..12].copy_from_slice(&h.generation.to_be_bytes());
    s[12..20].copy_from_slice(&h.count.to_be_bytes());
    s[20..28].copy_from_slice(&h.end.to_be_bytes());
    s[28..60].copy_from_slice(&h.last.0);
    let c = check16(&[&s[..60]]);
    s[60..76].copy_from_slice(&c);
    s
}

/// `Ok(None)` for a slot never written (all zero); `Err` for a damaged one.
fn decode_slot(s: &[u8]) -> Result<Option<Head>, ()> {
    if s.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if &s[..4] != b"HEAD" || check16(&[&s[..60]]) != s[60..76] {
        return Err(());
    }
    let u = |r: std::ops::Range<usize>| u64::from_be_bytes(s[r].try_into().expect("8 bytes"));
    let mut last = [0u8; 32];
    last.copy_from_slice(&s[28..60]);
    Ok(Some(Head { generation: u(4..12), count: u(12..20), end: u(20..28), last: Hash(last) }))
}

/// One group frame for `records`.
pub fn encode_frame(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let payload_len: usize = records.iter().map(|(_, b)| 4 + b.len()).sum();
    let mut f = Vec::with_capacity(FRAME_HEAD + payload_len + FRAME_CHECK);
    f.extend_from_slice(FRAME_MAGIC);
    f.extend_from_slice(&(payload_len as u32).to_be_bytes());
    f.extend_from_slice(&records.first().map(|r| r.0).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for (_, b) in records {
        f.extend_from_slice(&(b.len() as u32).to_be_bytes());
        f.extend_from_slice(b);
    }
    let c = check16(&[&f]);
    f.extend_from_slice(&c);
    f
}

/// A frame parsed from `bytes` at its start: `(first seq, record count, frame length)`, or why
/// not. Its records are then walked with [`frame_records`] without copying them.
fn decode_frame(bytes: &[u8]) -> Result<(u64, usize, usize), String> {
    if bytes.len() < FRAME_HEAD {
        return Err(format!("{} bytes where a frame header needs {FRAME_HEAD}", bytes.len()));
    }
    if &bytes[..4] != FRAME_MAGIC {
        return Err("no frame starts here".into());
    }
    let len = u32::from_be_bytes(bytes[4..8].try_into().expect("4"));
    if len > MAX_PAYLOAD {
        return Err(format!("frame length {len} is impossible"));
    }
    let total = FRAME_HEAD + len as usize + FRAME_CHECK;
    if bytes.len() < total {
        return Err(format!("frame of {total} bytes cut short at {}", bytes.len()));
    }
    let body = &bytes[..FRAME_HEAD + len as usize];
    if check16(&[body]) != bytes[FRAME_HEAD + len as usize..total] {
        return Err("frame check does not match its bytes".into());
    }
    let first = u64::from_be_bytes(bytes[8..16].try_into().expect("8"));
    let count = u32::from_be_bytes(bytes[16..20].try_into().expect("4")) as usize;
    let mut pos = FRAME_HEAD;
    for _ in 0..count {
        if body.len() - pos < 4 {
            return Err("record length runs past its frame".into());
        }
        let n = u32::from_be_bytes(body[pos..pos + 4].try_into().expect("4")) as usize;
        pos += 4;
        if body.len() - pos < n {
            return Err("record runs past its frame".into());
        }
        pos += n;
    }
    if pos != body.len() {
        return Err("frame holds bytes after its last record".into());
    }
    Ok((first, count, total))
}

/// The records of a frame [`decode_frame`] accepted, as slices of it.
fn frame_records(frame: &[u8], count: usize) -> impl Iterator<Item = &[u8]> {
    let mut pos = FRAME_HEAD;
    (0..count).map(move |_| {
        let n = u32::from_be_bytes(frame[pos..pos + 4].try_into().expect("4")) as usize;
        pos += 4 + n;
        &frame[pos - n..pos]
    })
}

/// Is there a valid frame anywhere in `bytes`? (Only asked about a damaged tail, so a byte-wise
/// search is fine.)
fn valid_frame_in(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i + FRAME_HEAD + FRAME_CHECK <= bytes.len() {
        if &bytes[i..i + 4] == FRAME_MAGIC && decode_frame(&bytes[i..]).is_ok() {
            return true;
        }
        i += 1;
    }
    false
}

/// Reads and classifies a journal file without writing anything, keeping every record in
/// [`Scan::records`]. `expected_run` (the directory's name) catches a file moved in from
/// another run. Readers that fold as they go use [`stream_file`] instead.
pub fn scan_file(path: &Path, expected_run: Option<&str>) -> Result<Scan, StoreError> {
    let mut records = Vec::new();
    let mut scan = stream_file(path, expected_run, &mut |seq, bytes| {
        records.push((seq, bytes.to_vec()));
        true
    })?;
    scan.records = records;
    Ok(scan)
}

/// Reads and classifies a journal file like [`scan_file`], handing each record of a frame that
/// passed its check to `f` as it is read (until `f` returns false) instead of keeping it, so
/// memory stays flat: one frame at a time. The returned [`Scan`] has no `records`; its
/// classification is the same as `scan_file`'s (both are this code), and it comes after the
/// records, so a caller learns of damage or a torn tail only once it has seen every good record.
pub fn stream_file(
    path: &Path,
    expected_run: Option<&str>,
    f: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<Scan, StoreError> {
    let file = File::open(path).map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
    stream_open_file(&file, path, expected_run, f)
}

/// [`stream_file`] over a file already open (read with positioned reads from its start, so the
/// handle's own offset does not matter and it can be read again); `path` names it in errors.
pub fn stream_open_file(
    file: &File,
    path: &Path,
    expected_run: Option<&str>,
    f: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<Scan, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let mut file = ReadAt { file, pos: 0 };
    let mut header = vec![0u8; HEADER_LEN as usize];
    // The head first (see the module doc): then every frame it claims is already in the file.
    let got = read_up_to(&mut file, &mut header).map_err(io)?;
    header.truncate(got);
    // Small enough that a big frame (a bulk import, a long group) is read past it straight into
    // the frame buffer instead of being copied through it; big enough for many small frames.
    let mut rest = BufReader::with_capacity(64 << 10, file);
    scan_stream(&header, &mut rest, expected_run, f).map_err(io)
}

/// Reads a shared file handle from its own position.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// [`scan_file`] over bytes already read (also the fuzzing entry point).
pub fn scan_bytes(bytes: &[u8], expected_run: Option<&str>) -> Scan {
    let split = bytes.len().min(HEADER_LEN as usize);
    let mut records = Vec::new();
    let mut scan = scan_stream(&bytes[..split], &mut &bytes[split..], expected_run, &mut |seq, b| {
        records.push((seq, b.to_vec()));
        true
    })
    .expect("reading a slice cannot fail");
    scan.records = records;
    scan
}

/// The one reader of the format: the header from `header`, then frames read from `rest` one at
/// a time into a reused buffer. Only when a frame does not decode is the rest of the file read
/// into memory, to tell a torn tail (nothing valid after it) from damage (a valid frame after it).
fn scan_stream(
    header: &[u8],
    rest: &mut dyn Read,
    expected_run: Option<&str>,
    f: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> std::io::Result<Scan> {
    let got = header.len();
    let mut scan = Scan {
        run_id: String::new(),
        head: None,
        records: Vec::new(),
        good_end: HEADER_LEN,
        torn: None,
        damage: None,
        notes: Vec::new(),
    };
    let damaged = |scan: &mut Scan, seq: u64, reason: String| {
        scan.damage = Some(Damage { seq, reason });
    };
    if got < HEADER_LEN as usize {
        damaged(&mut scan, 0, format!("the file is {got} bytes, shorter than its {HEADER_LEN}-byte header"));
        return Ok(scan);
    }
    if &header[..8] != LOG_MAGIC {
        damaged(&mut scan, 0, "not a loop journal (bad magic)".into());
        return Ok(scan);
    }
    let version = u16::from_be_bytes([header[8], header[9]]);
    if header_check(header) != header[CHECK_AT..CHECK_AT + 32] {
        damaged(&mut scan, 0, "its header fails its check".into());
        return Ok(scan);
    }
    if version != LOG_VERSION {
        damaged(&mut scan, 0, format!("format version {version} is not one this loop reads ({LOG_VERSION})"));
        return Ok(scan);
    }
    let id_len = u16::from_be_bytes([header[10], header[11]]) as usize;
    scan.run_id = String::from_utf8_lossy(&header[12..12 + id_len.min(MAX_RUN_ID)]).into_owned();
    if let Some(want) = expected_run {
        if scan.run_id != want {
            let why = format!("the file belongs to run {}, not {want}", scan.run_id);
            damaged(&mut scan, 0, why);
            return Ok(scan);
        }
    }
    let mut heads = Vec::new();
    for (i, at) in SLOT_AT.iter().enumerate() {
        match decode_slot(&header[*at..*at + SLOT_LEN]) {
            Ok(Some(h)) => heads.push(h),
            Ok(None) => {}
            Err(()) => scan.notes.push(format!("head slot {i} is damaged (the other one is used)")),
        }
    }
    scan.head = heads.iter().copied().max_by_key(|h| h.generation);
    let head_end = scan.head.map(|h| h.end).unwrap_or(HEADER_LEN);
    // The stored hash of the record the head says is last, met on the way.
    let head_last_at = scan.head.and_then(|h| h.count.checked_sub(1));
    let mut head_last: Option<Vec<u8>> = None;

    // Frames.
    let mut pos = 0u64;
    let mut next_seq = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let offset = HEADER_LEN + pos;
        // A whole frame in `buf[..got]`, or, when it is not whole, everything left in the file.
        let (whole, got) = read_frame(rest, &mut buf)?;
        if got == 0 {
            break;
        }
        if !whole {
            buf.truncate(got);
            rest.read_to_end(&mut buf)?;
        }
        let have = if whole { got } else { buf.len() };
        match decode_frame(&buf[..have]) {
            Ok((first, count, len)) if first == next_seq => {
                for r in frame_records(&buf[..len], count) {
                    if head_last_at == Some(next_seq) {
                        head_last = Some(r[r.len().saturating_sub(32)..].to_vec());
                    }
                    let seq = next_seq;
                    next_seq += 1;
                    if !f(seq, r) {
                        return Ok(scan);
                    }
                }
                // A frame decodes only when `read_frame` found it whole, so `buf[..len]` is just it.
                pos += len as u64;
                scan.good_end = HEADER_LEN + pos;
            }
            Ok((first, _, _)) => {
                damaged(
                    &mut scan,
                    next_seq,
                    format!("the frame at byte {offset} starts at record {first}, record {next_seq} is missing"),
                );
                return Ok(scan);
            }
            Err(why) => {
                if whole {
                    buf.truncate(got);
                    rest.read_to_end(&mut buf)?;
                }
                if offset < head_end || valid_frame_in(&buf[1..]) {
                    damaged(&mut scan, next_seq, format!("the frame at byte {offset} is damaged ({why})"));
                } else {
                    scan.torn = Some(TornTail { offset, len: buf.len() as u64 });
                }
                break;
            }
        }
    }
    Ok(check_head(scan, next_seq, head_last))
}

/// After the last frame: the head must not claim more than the file holds, and its last hash
/// must be that of the record it counts as last.
fn check_head(mut scan: Scan, next_seq: u64, head_last: Option<Vec<u8>>) -> Scan {
    if let Some(h) = scan.head {
        if scan.damage.is_none() && (next_seq < h.count || scan.good_end < h.end) {
            let why = format!(
                "the file ends at record {next_seq} (byte {}) but its head says {} records were durably appended (to byte {})",
                scan.good_end, h.count, h.end
            );
            scan.damage = Some(Damage { seq: next_seq, reason: why });
        } else if scan.damage.is_none() && h.count > 0 && head_last.as_deref() != Some(&h.last.0[..]) {
            let why = "the head's last hash does not match that record".to_string();
            scan.damage = Some(Damage { seq: h.count - 1, reason: why });
        }
    }
    scan
}

/// Reads one frame into `buf[..n]`, returning `(whole, n)` (`n` is 0 at the end of the file).
/// `whole` when `buf[..n]` is a whole frame as its header announces it; false when the header is
/// not a frame's or the file ends first (then `buf[..n]` is what there was, and the caller reads
/// on). `buf` is only ever grown, never cleared: bytes past `n` are stale, and re-zeroing a
/// frame-sized buffer for every frame cost as much as copying it.
fn read_frame(rest: &mut dyn Read, buf: &mut Vec<u8>) -> std::io::Result<(bool, usize)> {
    if buf.len() < FRAME_HEAD {
        buf.resize(FRAME_HEAD, 0);
    }
    let got = read_up_to(rest, &mut buf[..FRAME_HEAD])?;
    if got < FRAME_HEAD || &buf[..4] != FRAME_MAGIC {
        return Ok((false, got));
    }
    let len = u32::from_be_bytes(buf[4..8].try_into().expect("4"));
    if len > MAX_PAYLOAD {
        return Ok((false, got));
    }
    let total = FRAME_HEAD + len as usize + FRAME_CHECK;
    if buf.len() < total {
        buf.resize(total, 0);
    }
    let got = FRAME_HEAD + read_up_to(rest, &mut buf[FRAME_HEAD..total])?;
    Ok((got == total, got))
}

fn read_up_to(f: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// fsyncs a directory, so a new or renamed entry in it survives a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A journal file opened for reading only: each scan streams it again, frame by frame, from
/// the handle opened here (so a file renamed or replaced meanwhile is not mixed in).
pub struct LogReader {
    file: File,
    path: PathBuf,
    expected_run: Option<String>,
}

impl LogReader {
    pub fn open(path: &Path, expected_run: Option<&str>) -> Result<LogReader, StoreError> {
        let file = File::open(path).map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        Ok(LogReader { file, path: path.to_path_buf(), expected_run: expected_run.map(str::to_string) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Streams the records through `f` (see [`stream_file`]) and returns what else was found.
    pub fn stream(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<Scan, StoreError> {
        stream_open_file(&self.file, &self.path, self.expected_run.as_deref(), f)
    }
}

impl Store for LogReader {
    fn append(&mut self, _: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        Err(StoreError::Io { path: self.path.clone(), source: std::io::Error::other("opened for reading only") })
    }

    /// Damage is an error after every good record was visited; a torn tail is not.
    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        let mut stopped = false;
        let scan = self.stream(&mut |k, v| {
            stopped = !f(k, v);
            !stopped
        })?;
        match scan.damage {
            Some(d) if !stopped => Err(StoreError::Damaged { path: self.path.clone(), seq: d.seq, reason: d.reason }),
            _ => Ok(()),
        }
    }
}

/// The writer's handle on a journal file.
pub struct LogStore {
    path: PathBuf,
    file: File,
    head: Head,
    /// The run directory is still being staged: the first append renames it into place.
    staged: Option<(PathBuf, PathBuf)>,
    durable: bool,
    /// The head of the last synced group has been written but not yet synced.
    head_dirty: bool,
    /// The records `open` just read and verified, so the reopen that follows does not read the
    /// file a second time; dropped at the first append, and never kept for a journal longer
    /// than [`KEEP_OPENED_BYTES`].
    opened: Option<Vec<(u64, Vec<u8>)>>,
}

impl LogStore {
    /// Starts a journal in `staging_dir` (which must exist); the first append makes it durable and
    /// renames `staging_dir` to `final_dir`.
    pub fn create_staged(staging_dir: &Path, final_dir: &Path, run_id: &str) -> Result<LogStore, StoreError> {
        assert!(run_id.len() <= MAX_RUN_ID, "run ids are short");
        let path = staging_dir.join(LOG_FILE);
        let io = |source| StoreError::Io { path: path.clone(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?;
        file.write_all(&header_block(run_id)).map_err(io)?;
        Ok(LogStore {
            path: final_dir.join(LOG_FILE),
            file,
            head: Head { generation: 0, count: 0, end: HEADER_LEN, last: Hash::ZERO },
            staged: Some((staging_dir.to_path_buf(), final_dir.to_path_buf())),
            durable: true,
            head_dirty: false,
            opened: None,
        })
    }

    /// A journal written in place in `dir`, without staging (benchmarks and tests).
    pub fn create_in(dir: &Path, run_id: &str) -> Result<LogStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        LogStore::create_staged(dir, dir, run_id)
    }

    /// Opens an existing journal to append to it. Damage is an error; a torn tail of an
    /// unacknowledged append is moved aside (kept as `journal.log.torn-<offset>`) and reported
    /// through `on_note`.
    pub fn open(path: &Path, run_id: &str, on_note: &mut dyn FnMut(String)) -> Result<(LogStore, Scan), StoreError> {
        // Kept for the reopen that follows only while small: a long journal is read again,
        // frame by frame, rather than held whole in memory.
        let mut opened = Some(Vec::new());
        let (mut kept, mut count, mut last) = (0usize, 0u64, Hash::ZERO);
        let scan = stream_file(path, Some(run_id), &mut |seq, b| {
            count += 1;
            if b.len() >= 32 {
                last.0.copy_from_slice(&b[b.len() - 32..]);
            }
            kept += b.len();
            match &mut opened {
                Some(v) if kept <= KEEP_OPENED_BYTES => v.push((seq, b.to_vec())),
                _ => opened = None,
            }
            true
        })?;
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        if let Some(d) = &scan.damage {
            return Err(StoreError::Damaged { path: path.to_path_buf(), seq: d.seq, reason: d.reason.clone() });
        }
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io)?;
        if let Some(t) = &scan.torn {
            let aside = path.with_file_name(format!("{LOG_FILE}.torn-{}", t.offset));
            let mut tail = vec![0u8; t.len as usize];
            file.read_exact_at(&mut tail, t.offset).map_err(io)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&aside)
                .map_err(|source| StoreError::Io { path: aside.clone(), source })?;
            f.write_all(&tail)
                .and_then(|_| f.sync_all())
                .map_err(|source| StoreError::Io { path: aside.clone(), source })?;
            file.set_len(t.offset).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent() {
                sync_dir(dir).map_err(io)?;
            }
            on_note(format!(
                "{}: {} bytes at byte {} were an append that never completed (torn by a crash); kept in {}, and that step is redone",
                path.display(),
                t.len,
                t.offset,
                aside.display()
            ));
        }
        for n in &scan.notes {
            on_note(format!("{}: {n}", path.display()));
        }
        let head = Head { generation: scan.head.map(|h| h.generation).unwrap_or(0), count, end: scan.good_end, last };
        let mut store =
            LogStore { path: path.to_path_buf(), file, head, staged: None, durable: true, head_dirty: false, opened };
        // Make the head exact again before anything new is appended.
        store.write_head()?;
        store.sync()?;
        Ok((store, scan))
    }

    /// For benchmarks: measure the write path without the device sync.
    pub fn set_fsync(&mut self, on: bool) {
        self.durable = on;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }

    fn write_head(&mut self) -> Result<(), StoreError> {
        self.head.generation += 1;
        let slot = SLOT_AT[(self.head.generation % 2) as usize];
        self.file.write_all_at(&encode_slot(&self.head), slot as u64).map_err(|e| self.io(e))?;
        self.head_dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.durable {
            self.file.sync_data().map_err(|e| self.io(e))?;
        }
        self.head_dirty = false;
        Ok(())
    }

    /// Syncs the head so the journal's end is exact on disk (a clean close, or a pause).
    pub fn close(&mut self) -> Result<(), StoreError> {
        if self.head_dirty {
            self.sync()?;
        }
        Ok(())
    }
}

impl Store for LogStore {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.opened = None;
        let frame = encode_frame(records);
        let end = self.head.end;
        self.file.write_all_at(&frame, end).map_err(|e| self.io(e))?;
        // One sync for the frame and the previous group's head.
        self.sync()?;
        if let Some((staging, final_dir)) = self.staged.take() {
            // The journal is whole: only now does the run exist under its name.
            std::fs::rename(&staging, &final_dir).map_err(|e| self.io(e))?;
            if let Some(parent) = final_dir.parent() {
                sync_dir(parent).map_err(|e| self.io(e))?;
            }
        }
        self.head.end = end + frame.len() as u64;
        self.head.count += records.len() as u64;
        let last = &records.last().expect("not empty").1;
        self.head.last.0.copy_from_slice(&last[last.len() - 32..]);
        self.write_head()
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        if let Some(records) = &self.opened {
            for (k, v) in records {
                if !f(*k, v) {
                    break;
                }
            }
            return Ok(());
        }
        let scan = stream_file(&self.path, None, f)?;
        if let Some(d) = scan.damage {
            return Err(StoreError::Damaged { path: self.path.clone(), seq: d.seq, reason: d.reason });
        }
        Ok(())
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call, as pipes and short reads do.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn trickled(bytes: &[u8], step: usize) -> Scan {
        let split = bytes.len().min(HEADER_LEN as usize);
        let mut records = Vec::new();
        let mut scan =
            scan_stream(&bytes[..split], &mut Trickle { bytes: &bytes[split..], step }, Some("bench"), &mut |k, b| {
                records.push((k, b.to_vec()));
                true
            })
            .unwrap();
        scan.records = records;
        scan
    }

    fn same(a: &Scan, b: &Scan, what: &str) {
        assert_eq!(a.records, b.records, "{what}: records");
        assert_eq!(
            (a.good_end, &a.torn, &a.damage, &a.notes, a.head),
            (b.good_end, &b.torn, &b.damage, &b.notes, b.head),
            "{what}"
        );
    }

    /// The frame-at-a-time reader gives the whole-file answer however the bytes arrive: cut
    /// anywhere, flipped anywhere, read in short pieces.
    #[test]
    fn streaming_classifies_like_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = crate::bench::generate(dir.path(), 2500).unwrap();
        let good = std::fs::read(path.join(LOG_FILE)).unwrap();
        let whole = scan_bytes(&good, Some("bench"));
        assert!(whole.damage.is_none() && whole.torn.is_none());
        assert_eq!(whole.records.len(), 2500);
        let from_file = scan_file(&path.join(LOG_FILE), Some("bench")).unwrap();
        same(&from_file, &whole, "file");
        let len = good.len();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for cut in [0, 100, 4096, 4100, 4096 + 300, len / 2, len - 17, len - 1] {
            cases.push((format!("cut at {cut}"), good[..cut].to_vec()));
        }
        for at in [600, 4096, 4100, 4096 + 500, len / 3, len / 2, len - 20, len - 1] {
            let mut b = good.clone();
            b[at] ^= 0x40;
            cases.push((format!("flip at {at}"), b));
        }
        let mut junk = good.clone();
        junk.extend_from_slice(b"GRP1 and then nothing that decodes");
        cases.push(("junk tail".into(), junk));
        for (what, bytes) in &cases {
            let expect = scan_bytes(bytes, Some("bench"));
            for step in [1, 7, 4096, usize::MAX] {
                same(&trickled(bytes, step), &expect, &format!("{what}, {step}-byte reads"));
            }
        }
    }

    /// A reader that stops early reads no further than it must.
    #[test]
    fn a_stopped_stream_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = crate::bench::generate(dir.path(), 1500).unwrap();
        let mut seen = 0;
        let scan = stream_file(&path.join(LOG_FILE), Some("bench"), &mut |_, _| {
            seen += 1;
            seen < 3
        })
        .unwrap();
        assert_eq!(seen, 3);
        assert!(scan.damage.is_none() && scan.torn.is_none());
    }
}
