//! The record format: what one journal entry holds and how it is hashed.
//!
//! Invariants:
//! - A stored record is `rmp(content) ++ blake3(rmp(content))`. Verification hashes the bytes as
//!   stored, so it never depends on re-encoding being canonical.
//! - `content.prev` is the previous record's hash (all zeroes for the first), so any edit,
//!   insertion, removal or reordering breaks the chain at a known sequence number.
//! - `content.version` is [`FORMAT_VERSION`]; a reader refuses versions it does not know.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::machine::{Event, State};
pub use crate::vocab::{AgentSpec, PlannedIssue, RunStart};

/// Bumped whenever the encoding of [`Content`] changes; pinned by a golden-hash test.
pub const FORMAT_VERSION: u16 = 1;

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
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// The first record of every run: everything resume and replay need besides the events.
    RunStarted(RunStart),
    /// One issue's machine took an event. `to` is the state the code decided when it was written;
    /// replay recomputes it and reports any difference.
    Issue { issue: String, event: Event, to: State, evidence: Option<Evidence> },
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
}




/// The inputs behind a decision that are not part of the event itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
}

/// Encodes content and hashes it: the bytes to store, and the hash.
pub fn seal(content: &Content) -> (Vec<u8>, Hash) {
    let mut bytes = rmp_serde::to_vec_named(content).expect("journal content always encodes");
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
    #[error("record format version {0} is not known to this loop (knows {FORMAT_VERSION})")]
    Version(u16),
}

/// Checks a stored record's own hash and decodes it. Chain checks are the reader's job.
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
    let content: Content = rmp_serde::from_slice(body)
        .map_err(|e| RecordError::Decode(crate::text::printable(&e.to_string(), 300)))?;
    if content.version != FORMAT_VERSION {
        return Err(RecordError::Version(content.version));
    }
    Ok(Record { content, hash })
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
                to: State::Review { fix_cycles: 0 },
                evidence: Some(Evidence {
                    exit_code: Some(0),
                    duration_ms: 12,
                    output: Some("{\"status\":\"pass\"}".into()),
                    session: None,
                    tokens: None,
                    commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                    note: None,
                }),
            },
        }
    }

    /// Pins the encoding: if this changes, bump FORMAT_VERSION and keep reading old journals.
    #[test]
    fn golden_record_hash() {
        let (bytes, hash) = seal(&sample());
        assert_eq!(hash.hex(), "591389e8d6b5e1d6b235c34c30c5e9a441f61f1d00f1ca136917ac0340a2971f");
        assert_eq!(open(&bytes).unwrap().content, sample());
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
