//! Replay: re-derive every state of a run from its journal alone (no git, no agent) while the
//! hash chain is verified, streaming so memory stays flat for long journals.
//!
//! Replay re-runs the machine over the recorded machine events (audit facts only move tallies)
//! and compares the stage and the commands it decides now with the ones each record says the
//! engine was given.
//!
//! Invariant: the two ways a replay fails are kept apart as types, each with its sequence
//! number: [`ReplayError::Corrupt`] (the bytes or the chain are not what was appended) and
//! [`ReplayError::Nondeterminism`] (the journal is intact but the code now decides
//! differently). How each is shown and which exit code it gets (4, 5) is the CLI's business.

use super::view::{Applied, Divergence, RunView};
use super::{JournalError, Record, Store};

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The journal is intact, but the code decides differently from what it recorded.
    #[error("journal and code disagree at {0}")]
    Nondeterminism(Divergence),
    /// The bytes or the hash chain are not what was appended (a store that cannot be read
    /// is reported here too).
    #[error("{0}")]
    Corrupt(JournalError),
}

/// What a replay found.
pub struct Replayed {
    /// Records re-derived before the end or the failure.
    pub records: u64,
    /// The run as far as it was re-derived (None when not even the first record was).
    pub view: Option<RunView>,
    pub error: Option<ReplayError>,
}

/// Replays `store`, calling `each` with every record and what it did, in order.
pub fn replay(store: &dyn Store, mut each: impl FnMut(&Record, &Applied)) -> Replayed {
    let mut view: Option<RunView> = None;
    let mut diverged: Option<Divergence> = None;
    let result = super::scan_verified_ref(store, &mut |rec| {
        let applied = match &mut view {
            None => match RunView::new(rec) {
                Ok(v) => {
                    view = Some(v);
                    Applied { issue: None, from: None, to: None }
                }
                Err(d) => {
                    diverged = Some(d);
                    // Only stops the scan; the divergence is what is reported.
                    return Err(JournalError::Empty);
                }
            },
            Some(v) => match v.apply(rec) {
                Ok(a) => a,
                Err(d) => {
                    diverged = Some(d);
                    return Err(JournalError::Empty);
                }
            },
        };
        each(rec, &applied);
        Ok(())
    });
    let records = view.as_ref().map(|v| v.records).unwrap_or(0);
    let error = match (result, diverged) {
        (_, Some(d)) => Some(ReplayError::Nondeterminism(d)),
        (Err(e), None) => Some(ReplayError::Corrupt(e)),
        (Ok(_), None) => None,
    };
    Replayed { records, view, error }
}
