//! Replay: re-derive every state of a run from its journal alone (no git, no agent) while the
//! hash chain is verified, streaming so memory stays flat for long journals.
//!
//! Invariant: the two ways a replay fails are told apart by type, because they mean different
//! things to a user: [`ReplayFailure::Corrupt`] — the bytes or the chain are damaged — and
//! [`ReplayFailure::Diverged`] — the records are intact but the code now decides differently
//! from what was recorded. How each is shown and which exit code it gets is the CLI's business.

use super::view::{Applied, Divergence, RunView};
use super::{JournalError, Record, Store};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    #[error("journal and code disagree at {0}")]
    Diverged(Divergence),
    /// Any failure to read a verified record; a store that cannot be read is reported here too.
    #[error("{0}")]
    Corrupt(JournalError),
}

/// What a replay found.
pub struct Replayed {
    /// Records re-derived before the end or the failure.
    pub records: u64,
    /// The run as far as it was re-derived (None when not even the first record was).
    pub view: Option<RunView>,
    pub failure: Option<ReplayFailure>,
}

/// Replays `store`, calling `each` with every record and what it did, in order.
pub fn replay(store: &dyn Store, mut each: impl FnMut(&Record, &Applied)) -> Replayed {
    let mut view: Option<RunView> = None;
    let mut diverged: Option<Divergence> = None;
    let result = super::scan_verified(store, &mut |rec| {
        let applied = match &mut view {
            None => match RunView::new(&rec) {
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
            Some(v) => match v.apply(&rec) {
                Ok(a) => a,
                Err(d) => {
                    diverged = Some(d);
                    return Err(JournalError::Empty);
                }
            },
        };
        each(&rec, &applied);
        Ok(())
    });
    let records = view.as_ref().map(|v| v.records).unwrap_or(0);
    let failure = match (result, diverged) {
        (_, Some(d)) => Some(ReplayFailure::Diverged(d)),
        (Err(e), None) => Some(ReplayFailure::Corrupt(e)),
        (Ok(_), None) => None,
    };
    Replayed { records, view, failure }
}
