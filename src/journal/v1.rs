//! Format-1 records: the types loop 0.1 wrote, kept only to read old journals.
//!
//! Invariants:
//! - These types are frozen: they decode exactly the bytes format 1 wrote (named msgpack maps,
//!   enums tagged by `kind`, `event` and `state`), and are never written by a run.
//! - [`decode`] converts a format-1 record into format-2 types at once: events that moved no
//!   state become [`Fact`]s, reasons are kept as [`Reason::Recorded`] text, and the commands,
//!   which format 1 did not record, are `None`. Replay of a converted journal therefore checks
//!   every recorded stage, as format 1 did.
//! - [`seal`] exists for tests and fixtures that need format-1 bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::record::{self, Evidence, Fact, Hash, RecordError, RunStart};
use crate::machine::{self, Phase, Reason, Stage, StageKind, Verdict, WorkStatus};

pub const VERSION: u16 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Content {
    pub version: u16,
    pub run_id: String,
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub prev: Hash,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    RunStarted(RunStart),
    Issue { issue: String, event: Event, to: State, evidence: Option<Evidence> },
    RunResumed,
    RunInterrupted { reason: String },
    RunFinished,
    WorktreeRepaired { issue: String, path: String, repairs: Vec<String> },
    ProcessGroup { issue: String, phase: Phase, pgid: i32, start_time: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Pending,
    WorktreeReady,
    Dev,
    Review { fix_cycles: u32 },
    Fix { cycle: u32 },
    Done { fix_cycles: u32 },
    Capped { fix_cycles: u32, reason: String },
    Blocked { fix_cycles: u32, reason: String },
    Failed { fix_cycles: u32, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    DependencyNotDone { dependency: String, dependency_state: String },
    WorktreeIntent { path: String, branch: String, base: String },
    WorktreeCreated { path: String, branch: String, base: String },
    WorktreeFailed { reason: String },
    PhaseStarted { phase: Phase, attempt: u32 },
    SessionStarted { phase: Phase, session: String },
    BudgetExceeded { used: u64, limit: u64 },
    WorkFinished { phase: Phase, status: WorkStatus },
    ReviewFinished { verdict: Verdict },
    PhaseFailed { phase: Phase, reason: String },
    Interrupted,
    WorktreeRemoved { path: String },
    WorktreeKept { path: String, reason: String },
    GuardChecked { phase: Phase, ok: bool, details: Vec<String> },
    GuardViolation { phase: Phase, changes: Vec<String> },
    CommandDecided { phase: Phase, tool: String, argv: Vec<String>, allowed: bool, rule: String },
    StackTracked { parent: String, error: Option<String> },
    StackSubmitted { ok: bool, detail: String },
}

/// Encodes format-1 content as loop 0.1 did: the bytes to store, and the hash.
pub fn seal(content: &Content) -> (Vec<u8>, Hash) {
    let mut bytes = rmp_serde::to_vec_named(content).expect("format-1 content always encodes");
    let hash = Hash::of(&bytes);
    bytes.extend_from_slice(&hash.0);
    (bytes, hash)
}

/// Decodes format-1 content (its hash already checked) into format-2 content.
pub fn decode(body: &[u8]) -> Result<record::Content, RecordError> {
    let bad = |e: String| RecordError::Decode(crate::text::printable(&e, 300));
    let c: Content = rmp_serde::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if c.version != VERSION {
        return Err(RecordError::Version(c.version));
    }
    // Format 2 stores the time as i64 nanoseconds (1677–2262): an older record outside that
    // range cannot be carried over, so it is refused here rather than failing when re-sealed
    // (fuzz: `journal_record`, a format-1 time in the year 4646).
    if c.time.timestamp_nanos_opt().is_none() {
        return Err(bad(format!("time {} is outside what a record can hold (years 1677 to 2262)", c.time)));
    }
    let body = convert(c.body).map_err(bad)?;
    Ok(record::Content { version: c.version, run_id: c.run_id, seq: c.seq, time: c.time, prev: c.prev, body })
}

fn convert(body: Body) -> Result<record::Body, String> {
    use record::Body as B;
    Ok(match body {
        Body::RunStarted(s) => B::RunStarted(s),
        Body::RunResumed => B::RunResumed,
        Body::RunInterrupted { reason } => B::RunInterrupted { reason },
        Body::RunFinished => B::RunFinished,
        Body::WorktreeRepaired { issue, path, repairs } => B::WorktreeRepaired { issue, path, repairs },
        Body::ProcessGroup { issue, phase, pgid, start_time } => B::ProcessGroup { issue, phase, pgid, start_time },
        Body::Issue { issue, event, to, evidence } => {
            let audit = |fact| Ok(B::Audit { issue: issue.clone(), fact, evidence: evidence.clone() });
            let event = match event {
                Event::Interrupted => return audit(Fact::Interrupted),
                Event::GuardChecked { phase, ok: true, details } => {
                    return audit(Fact::GuardChecked { phase, details })
                }
                Event::CommandDecided { phase, tool, argv, allowed, rule } => {
                    return audit(Fact::CommandDecided { phase, tool, argv, allowed, rule })
                }
                Event::StackTracked { parent, error: None } => return audit(Fact::StackTracked { parent }),
                Event::StackSubmitted { ok, detail } => return audit(Fact::StackSubmitted { ok, detail }),
                other => machine_event(other)?,
            };
            B::Issue { issue, event, to: stage(to), commands: None, evidence }
        }
    })
}

fn machine_event(e: Event) -> Result<machine::Event, String> {
    use machine::Event as E;
    Ok(match e {
        Event::DependencyNotDone { dependency, dependency_state } => {
            let dependency_state = StageKind::from_name(&dependency_state)
                .ok_or_else(|| format!("dependency_not_done names an unknown state {dependency_state:?}"))?;
            E::DependencyNotDone { dependency, dependency_state }
        }
        Event::WorktreeIntent { path, branch, base } => {
            E::WorktreeIntent { path, branch, base, merge: Vec::new(), reuse: false }
        }
        Event::WorktreeCreated { path, branch, base } => E::WorktreeCreated { path, branch, base },
        Event::WorktreeFailed { reason } => E::WorktreeFailed { reason },
        Event::PhaseStarted { phase, attempt } => E::PhaseStarted { phase, attempt },
        Event::SessionStarted { phase, session } => E::SessionStarted { phase, session },
        Event::BudgetExceeded { used, limit } => E::BudgetExceeded { used, limit },
        Event::WorkFinished { phase, status } => E::WorkFinished { phase, status },
        Event::ReviewFinished { verdict } => E::ReviewFinished { verdict },
        Event::PhaseFailed { phase, reason } => E::PhaseFailed { phase, reason },
        Event::WorktreeRemoved { path } => E::WorktreeRemoved { path },
        Event::WorktreeKept { path, reason } => E::WorktreeKept { path, reason },
        Event::GuardChecked { phase, details, .. } => E::GuardCheckFailed { phase, details },
        Event::GuardViolation { phase, changes } => E::GuardViolation { phase, changes },
        Event::StackTracked { parent, error } => E::StackTrackFailed { parent, error: error.unwrap_or_default() },
        Event::Interrupted | Event::CommandDecided { .. } | Event::StackSubmitted { .. } => {
            unreachable!("audit facts are split off before")
        }
    })
}

fn stage(s: State) -> Stage {
    match s {
        State::Pending => Stage::Pending,
        State::WorktreeReady => Stage::WorktreeReady,
        State::Dev => Stage::Dev,
        State::Review { fix_cycles } => Stage::Review { fix_cycles },
        State::Fix { cycle } => Stage::Fix { cycle },
        State::Done { fix_cycles } => Stage::Done { fix_cycles },
        State::Capped { fix_cycles, reason } => Stage::Capped { fix_cycles, reason: Reason::Recorded(reason) },
        State::Blocked { fix_cycles, reason } => Stage::Blocked { fix_cycles, reason: Reason::Recorded(reason) },
        State::Failed { fix_cycles, reason } => Stage::Failed { fix_cycles, reason: Reason::Recorded(reason) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Content {
        Content {
            version: VERSION,
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
                    cost_usd: None,
                    diffstat: None,
                }),
            },
        }
    }

    /// Pins format 1 as loop 0.1 wrote it: the hash is the one its own golden test pinned.
    #[test]
    fn golden_v1_record_hash() {
        let (bytes, hash) = seal(&sample());
        assert_eq!(hash.hex(), "591389e8d6b5e1d6b235c34c30c5e9a441f61f1d00f1ca136917ac0340a2971f");
        let rec = record::open(&bytes).unwrap();
        assert_eq!(rec.hash, hash);
        assert_eq!(rec.content.version, VERSION);
        let record::Body::Issue { event, to, commands, .. } = rec.content.body else { panic!("an issue record") };
        assert_eq!(event, machine::Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass });
        assert_eq!((to, commands), (Stage::Review { fix_cycles: 0 }, None));
    }

    #[test]
    fn state_free_events_become_audit_facts_and_failures_stay_events() {
        let open = |event: Event| {
            let mut c = sample();
            c.body = Body::Issue { issue: "ORB-1".into(), event, to: State::Dev, evidence: None };
            record::open(&seal(&c).0).unwrap().content.body
        };
        let ok = open(Event::GuardChecked { phase: Phase::Dev, ok: true, details: vec![] });
        assert!(matches!(ok, record::Body::Audit { fact: Fact::GuardChecked { .. }, .. }), "{ok:?}");
        let bad = open(Event::GuardChecked { phase: Phase::Dev, ok: false, details: vec!["dirty".into()] });
        assert!(matches!(bad, record::Body::Issue { event: machine::Event::GuardCheckFailed { .. }, .. }), "{bad:?}");
        assert!(matches!(open(Event::Interrupted), record::Body::Audit { fact: Fact::Interrupted, .. }));
        let failed = open(Event::StackTracked { parent: "main".into(), error: Some("no gt".into()) });
        assert!(matches!(failed, record::Body::Issue { event: machine::Event::StackTrackFailed { .. }, .. }));
    }

    /// Not a check, a measurement: `cargo test --release --lib decode_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn decode_cost() {
        let old = sample();
        let Body::Issue { issue, evidence, .. } = old.body.clone() else { unreachable!() };
        let new = record::Content {
            version: record::FORMAT_VERSION,
            run_id: old.run_id.clone(),
            seq: old.seq,
            time: old.time,
            prev: old.prev,
            body: record::Body::Issue {
                issue,
                event: machine::Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
                to: Stage::Review { fix_cycles: 0 },
                commands: Some(vec![machine::Command::StartPhase { phase: Phase::Review, attempt: 1 }]),
                evidence,
            },
        };
        let (v1_bytes, _) = seal(&old);
        let (v2_bytes, _) = record::seal(&new);
        let n = 200_000;
        for (name, bytes) in [("format 1", &v1_bytes), ("format 2", &v2_bytes)] {
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(record::open(std::hint::black_box(bytes)).unwrap());
            }
            let per = t.elapsed().as_nanos() / n;
            println!("{name}: {} bytes, open (hash + decode) {per} ns/record", bytes.len());
        }
    }
}
