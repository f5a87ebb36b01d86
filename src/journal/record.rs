//! The record format: what one journal entry holds and how it is hashed.
//!
//! Invariants:
//! - A stored record is `rmp(content) ++ blake3(rmp(content))`. Verification hashes the bytes as
//!   stored, so it never depends on re-encoding being canonical.
//! - `content.prev` is the previous record's hash (all zeroes for the first), so any edit,
//!   insertion, removal or reordering breaks the chain at a known sequence number.
//! - `content.version` is [`FORMAT_VERSION`] for what this loop writes; a reader refuses
//!   versions it does not know. Format 2 encodes content as positional msgpack (structs as
//!   arrays, enums tagged by variant name, times as nanoseconds), which decodes without
//!   buffering; format-1 records (named maps, internally tagged enums) are still read, by
//!   [`super::v1`], and converted into format-2 types on the way in, so nothing past [`open`]
//!   knows an older format existed.
//! - Only events that change an issue's state are [`Body::Issue`] records; what the guard
//!   decided, passed checks, stack bookkeeping and interruptions are [`Body::Audit`] facts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::machine::Entry;
use crate::machine::{Command, Event, Stage};
pub use crate::vocab::{AgentSpec, Fact, PlannedIssue, RunStart};

/// Bumped whenever the encoding of [`Content`] changes; pinned by a golden-hash test.
pub const FORMAT_VERSION: u16 = 2;

/// A blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", &self.hex()[..16])
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Hash;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Hash, E> {
                let arr: [u8; 32] = v.try_into().map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Hash(arr))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Hash, A::Error> {
                let mut arr = [0u8; 32];
                for (i, b) in arr.iter_mut().enumerate() {
                    *b = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Hash(arr))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The hashed part of a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Content {
    pub version: u16,
    pub run_id: String,
    pub seq: u64,
    #[serde(with = "chrono::serde::ts_nanoseconds")]
    pub time: DateTime<Utc>,
    pub prev: Hash,
    pub body: Body,
}

/// A record as read back: its content plus the hash it was stored under.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub content: Content,
    pub hash: Hash,
}

impl Record {
    pub fn seq(&self) -> u64 {
        self.content.seq
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The first record of every run: everything resume and replay need besides the events.
    RunStarted(RunStart),
    /// One issue's machine took an event. `to` is the stage and `commands` what the code
    /// decided when it was written; replay recomputes both and reports any difference.
    /// `commands` is `None` only for records read from format 1, which did not keep them.
    Issue { issue: String, event: Event, to: Stage, commands: Option<Vec<Command>>, evidence: Option<Evidence> },
    /// Audit, no machine event: a fact about an issue that changes nothing in its state.
    Audit { issue: String, fact: Fact, evidence: Option<Evidence> },
    /// A `loop resume` picked the run up again.
    RunResumed,
    /// Ctrl-C (or SIGTERM) stopped the run; resume continues it.
    RunInterrupted { reason: String },
    /// Every issue reached a terminal state.
    RunFinished,
    /// Audit, no machine event: before acting again in an issue's worktree, loop found what its
    /// own interrupted git left there (a power cut, a killed process tree) and repaired it.
    WorktreeRepaired { issue: String, path: String, repairs: Vec<String> },
    /// Audit, not a machine event: a phase's agent started as process group `pgid`, whose leader
    /// started at `start_time` (clock ticks since boot, `/proc/<pid>/stat` field 22). `resume`
    /// kills that group if it still lives, after checking the start time so a reused pid is
    /// never hit.
    ProcessGroup { issue: String, phase: crate::machine::Phase, pgid: i32, start_time: u64 },
    /// `loop land` merged the run's Done branches into a loop-made branch and checked it.
    Landed(crate::vocab::Landing),
}

/// The inputs behind a decision that are not part of the event itself.
///
/// Serialized by hand (see the `Serialize` impl below): the trailing optional fields are left
/// out only while everything after them is absent too, since positional msgpack knows a field
/// by its place.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Evidence {
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The agent's final message, verbatim.
    pub output: Option<String>,
    /// The agent session (codex thread id) the phase ran in.
    pub session: Option<String>,
    /// Tokens this phase used.
    pub tokens: Option<crate::vocab::Tokens>,
    /// The commit loop made of the agent's changes.
    pub commit: Option<String>,
    /// Free-form detail: why a phase failed, what git said.
    pub note: Option<String>,
    /// What this phase cost in USD (reported by the agent or priced from `[prices]`; absent in
    /// older journals and when unknown). Not written when unknown, so a record without a cost
    /// encodes exactly as before the field existed.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// What the commit loop made of the agent's changes (`commit`) changed. Absent in older
    /// journals and when loop made no commit; not written when absent.
    #[serde(default)]
    pub diffstat: Option<crate::vocab::DiffStat>,
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // A record without a cost and a diffstat encodes exactly as before either existed
        // (golden hashes); a diffstat without a cost writes the cost as nil to keep its place.
        let trailing = if self.diffstat.is_some() { 2 } else { usize::from(self.cost_usd.is_some()) };
        let mut st = s.serialize_struct("Evidence", 7 + trailing)?;
        st.serialize_field("exit_code", &self.exit_code)?;
        st.serialize_field("duration_ms", &self.duration_ms)?;
        st.serialize_field("output", &self.output)?;
        st.serialize_field("session", &self.session)?;
        st.serialize_field("tokens", &self.tokens)?;
        st.serialize_field("commit", &self.commit)?;
        st.serialize_field("note", &self.note)?;
        if trailing >= 1 {
            st.serialize_field("cost_usd", &self.cost_usd)?;
        }
        if trailing >= 2 {
            st.serialize_field("diffstat", &self.diffstat)?;
        }
        st.end()
    }
}

/// Encodes content and hashes it: the bytes to store, and the hash.
pub fn seal(content: &Content) -> (Vec<u8>, Hash) {
    let mut bytes = rmp_serde::to_vec(content).expect("journal content always encodes");
    let hash = Hash::of(&bytes);
    bytes.extend_from_slice(&hash.0);
    (bytes, hash)
}

/// Why a stored record could not be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, shorter than its hash")]
    TooShort(usize),
    #[error("stored hash does not match the record's bytes (edited or damaged)")]
    HashMismatch,
    #[error("record does not decode: {0}")]
    Decode(String),
    #[error("record format version {0} is not known to this loop (knows 1 and {FORMAT_VERSION})")]
    Version(u16),
}

/// Checks a stored record's own hash and decodes it, whatever format it was written in.
/// Chain checks are the reader's job.
pub fn open(bytes: &[u8]) -> Result<Record, RecordError> {
    if bytes.len() < 32 {
        return Err(RecordError::TooShort(bytes.len()));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 32);
    let hash = Hash::of(body);
    if hash.0 != tail {
        return Err(RecordError::HashMismatch);
    }
    // The decoder's message quotes the record's strings (fuzz: `journal_record`).
    let decode = |e: &dyn std::fmt::Display| RecordError::Decode(crate::text::printable(&e.to_string(), 300));
    // Format 1 wrote content as a map, format 2 as an array whose first element is the version.
    let content = match body.first() {
        Some(0x80..=0x8f | 0xde | 0xdf) => super::v1::decode(body)?,
        _ => {
            match array_version(body) {
                Some(v) if v == u64::from(FORMAT_VERSION) => {}
                Some(v) => return Err(RecordError::Version(u16::try_from(v).unwrap_or(u16::MAX))),
                None => return Err(decode(&"content is neither a format-1 map nor a versioned array")),
            }
            // The fast reader gives the same content or gives up; then rmp_serde decides,
            // and its error is the one reported.
            match super::positional::from_slice::<Content>(body) {
                Some(content) => content,
                None => rmp_serde::from_slice::<Content>(body).map_err(|e| decode(&e))?,
            }
        }
    };
    // The time is stored as i64 nanoseconds, but the decoder also takes a u64 beyond i64::MAX
    // (fuzz: `journal_record`); such a record could never be sealed again, so it is refused.
    if content.time.timestamp_nanos_opt().is_none() {
        return Err(decode(&format!("time {} is outside what a record can hold (years 1677 to 2262)", content.time)));
    }
    Ok(Record { content, hash })
}

/// The first element of a msgpack array holding an unsigned integer: the format-2 version,
/// read before committing to a decoder that only knows format 2.
fn array_version(body: &[u8]) -> Option<u64> {
    let rest = match *body.first()? {
        0x90..=0x9f => body.get(1..)?,
        0xdc => body.get(3..)?,
        0xdd => body.get(5..)?,
        _ => return None,
    };
    match *rest.first()? {
        b @ 0x00..=0x7f => Some(u64::from(b)),
        0xcc => rest.get(1).map(|b| u64::from(*b)),
        0xcd => Some(u64::from(u16::from_be_bytes(rest.get(1..3)?.try_into().ok()?))),
        0xce => Some(u64::from(u32::from_be_bytes(rest.get(1..5)?.try_into().ok()?))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Phase, WorkStatus};

    fn sample() -> Content {
        Content {
            version: FORMAT_VERSION,
            run_id: "20260101-000000-golden".into(),
            seq: 7,
            time: "2026-01-01T00:00:00Z".parse().unwrap(),
            prev: Hash([1; 32]),
            body: Body::Issue {
                issue: "ORB-1".into(),
                event: Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
                to: Stage::Review { fix_cycles: 0 },
                commands: Some(vec![Command::StartPhase { phase: Phase::Review, attempt: 1 }]),
                evidence: Some(Evidence {
                    exit_code: Some(0),
                    duration_ms: 12,
                    output: Some("{\"status\":\"pass\"}".into()),
                    session: None,
                    tokens: None,
                    commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                    note: None,
                    cost_usd: None,
                    diffstat: None,
                }),
            },
        }
    }

    /// Pins the encoding: if this changes, bump FORMAT_VERSION and keep reading old journals.
    /// (Format 1 is pinned by `v1::tests::golden_v1_record_hash`.)
    #[test]
    fn golden_record_hash() {
        let (bytes, hash) = seal(&sample());
        assert_eq!(hash.hex(), "606a1d17c580bf6552ce82c3eb8d7657f99926c71d1d35bae0bb115788cb3d81");
        assert_eq!(open(&bytes).unwrap().content, sample());
    }

    /// A known cost is written and read back; an unknown one leaves the encoding as it was.
    #[test]
    fn a_phase_cost_round_trips_and_an_unknown_one_is_not_written() {
        let mut c = sample();
        let (plain, _) = seal(&c);
        if let Body::Issue { evidence: Some(e), .. } = &mut c.body {
            e.cost_usd = Some(0.0425);
        }
        let (bytes, _) = seal(&c);
        assert!(bytes.len() > plain.len());
        assert_eq!(open(&bytes).unwrap().content, c);
    }

    /// A diffstat is written after the cost, which keeps its place (nil) when unknown.
    #[test]
    fn a_diffstat_round_trips_with_or_without_a_cost() {
        for cost in [None, Some(0.5)] {
            let mut c = sample();
            if let Body::Issue { evidence: Some(e), .. } = &mut c.body {
                e.cost_usd = cost;
                e.diffstat = Some(crate::vocab::DiffStat { files: 3, insertions: 40, deletions: 2 });
            }
            let (bytes, _) = seal(&c);
            assert_eq!(open(&bytes).unwrap().content, c, "cost {cost:?}");
        }
    }

    #[test]
    fn audit_facts_round_trip() {
        let mut c = sample();
        c.body = Body::Audit {
            issue: "ORB-1".into(),
            fact: Fact::CommandDecided {
                phase: Phase::Dev,
                tool: "gt".into(),
                argv: vec!["sync".into()],
                allowed: false,
                rule: "gt-sync-restack".into(),
            },
            evidence: None,
        };
        let (bytes, _) = seal(&c);
        assert_eq!(open(&bytes).unwrap().content, c);
    }

    #[test]
    fn unknown_versions_are_refused_by_number() {
        let mut c = sample();
        c.version = 3;
        let (bytes, _) = seal(&c);
        assert_eq!(open(&bytes).unwrap_err(), RecordError::Version(3));
    }

    /// Format-2 bodies (hash stripped) of the golden demo journal, which holds every kind of
    /// record a run writes, and of the samples above.
    fn format2_bodies() -> Vec<Vec<u8>> {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/journals/demo-golden.loopj")).unwrap();
        let store = crate::journal::parse_export(&bytes, "demo-golden.loopj").unwrap();
        let mut bodies = Vec::new();
        // Most of it is format 1: read into today's types and sealed again, it is format 2.
        crate::journal::Store::scan(&store, &mut |_, r| {
            let (b, _) = seal(&open(r).unwrap().content);
            bodies.push(b[..b.len() - 32].to_vec());
            true
        })
        .unwrap();
        let mut audit = sample();
        audit.body = Body::Audit { issue: "ORB-2".into(), fact: Fact::Interrupted, evidence: None };
        let mut costly = sample();
        if let Body::Issue { evidence: Some(e), .. } = &mut costly.body {
            e.cost_usd = Some(0.25);
            e.diffstat = Some(crate::vocab::DiffStat { files: 1, insertions: 2, deletions: 3 });
        }
        for c in [sample(), audit, costly] {
            let (b, _) = seal(&c);
            bodies.push(b[..b.len() - 32].to_vec());
        }
        bodies
    }

    /// The fast reader and rmp_serde agree on every record a run writes, and every kind of
    /// record is read by the fast reader (it does not just give up).
    #[test]
    fn the_fast_reader_reads_what_rmp_serde_reads() {
        let bodies = format2_bodies();
        assert!(bodies.len() > 20, "the golden journal is format 2: {} records", bodies.len());
        for b in &bodies {
            let slow: Content = rmp_serde::from_slice(b).unwrap();
            let fast: Content = super::super::positional::from_slice(b).expect("the fast reader reads a valid record");
            assert_eq!(fast, slow);
        }
    }

    /// On damaged bytes the fast reader either gives up or gives exactly what rmp_serde gives:
    /// it never accepts what rmp_serde refuses, nor reads it differently.
    #[test]
    fn on_damaged_records_the_fast_reader_agrees_or_gives_up() {
        let (mut agreed, mut gave_up) = (0u32, 0u32);
        for b in format2_bodies() {
            let mut variants: Vec<Vec<u8>> = (0..b.len()).map(|n| b[..n].to_vec()).collect();
            for i in 0..b.len() {
                for x in [0x01u8, 0x10, 0x80, 0xff] {
                    let mut m = b.clone();
                    m[i] ^= x;
                    variants.push(m);
                }
                for set in [0xc0u8, 0x00, 0x91, 0x81, 0xa1, 0xc4, 0xcb, 0xd3] {
                    let mut m = b.clone();
                    m[i] = set;
                    variants.push(m);
                }
            }
            for m in variants {
                match super::super::positional::from_slice::<Content>(&m) {
                    Some(fast) => {
                        let slow = rmp_serde::from_slice::<Content>(&m).unwrap_or_else(|e| {
                            panic!("fast reader accepted what rmp_serde refuses ({e}): {m:?} from {b:?}")
                        });
                        // Debug, not ==: a flipped byte may make a NaN cost.
                        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{m:?}");
                        agreed += 1;
                    }
                    None => gave_up += 1,
                }
            }
        }
        assert!(agreed > 1000 && gave_up > 1000, "agreed {agreed}, gave up {gave_up}");
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let (bytes, _) = seal(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(open(&b).is_err(), "flip at {i} went unnoticed");
        }
    }
}
