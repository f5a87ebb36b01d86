//! The submitting clone's side of a Restate run: its journal mirrors the run's `LoopLog`, so
//! `status`, `replay`, `export`, `report` and `watch` work on a distributed run unchanged.
//!
//! Invariants:
//! - Log entry `n` becomes the journal's record `n`, sealed into the same blake3 chain a local
//!   run has, at the time the run's engine decided it. Reading from the journal's length on
//!   skips every record already present, so mirroring (and `loop sync`) is idempotent.
//! - Each mirrored record is folded as it is appended: a record the fold refuses stops the
//!   mirror there with "journal and code disagree", as a local journal would.
//! - The mirror never changes the run: Ctrl-C only stops following it.

use std::time::{Duration, Instant};

use super::client::Ingress;
use super::{Entry, RestateError};
use crate::engine::{Observer, Recorder};
use crate::proc::Cancel;

/// How often a following mirror asks for new records.
const POLL: Duration = Duration::from_millis(100);

/// How long one wait for the run's end lasts before it is renewed.
const ATTACH: Duration = Duration::from_secs(300);

/// The name of the file in a run's directory that says which ingress drives it.
pub const MARKER: &str = "restate";

/// Appends the log entries the journal lacks; with `follow`, keeps going until the run
/// finished (or `stop`). Returns how many records were appended.
pub fn sync(
    recorder: &mut Recorder,
    ingress: &Ingress,
    observer: &mut dyn Observer,
    stop: &Cancel,
    follow: bool,
) -> Result<u64, RestateError> {
    let run_id = recorder.view().run_id.clone();
    // Following: a waiter attached to the run's workflow says at once when it ended, so the
    // last records are read then, not at the next poll.
    let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
    if follow {
        let (ingress, run_id) = (Ingress::with_timeout(ingress.url(), ATTACH), run_id.clone());
        std::thread::spawn(move || loop {
            match ingress.wait_run(&run_id) {
                Ok(false) => {}
                Ok(true) => {
                    let _ = ended_tx.send(());
                    return;
                }
                // Polling alone still sees the end.
                Err(_) => return,
            }
        });
    }
    let mut added = 0u64;
    let mut last_error: Option<(String, Instant)> = None;
    loop {
        if stop.is_requested() {
            return Ok(added);
        }
        match ingress.read(&run_id, recorder.records()) {
            Ok(page) => {
                last_error = None;
                let got = page.entries.len() as u64;
                if got > 0 {
                    let entries = page.entries.into_iter().map(|Entry { time, body }| (time, body)).collect();
                    added += recorder.mirror(entries, observer)? as u64;
                }
                if recorder.view().finished || (!follow && recorder.records() >= page.total) {
                    return Ok(added);
                }
                if got > 0 && recorder.records() < page.total {
                    continue;
                }
            }
            // Following a long run: the server or the network may blip; say so once a minute.
            Err(e) if follow => {
                let say = last_error.as_ref().is_none_or(|(_, at)| at.elapsed() > Duration::from_secs(60));
                if say {
                    eprintln!("loop: reading run {run_id} from {}: {e}; trying again", ingress.url());
                    last_error = Some((e.to_string(), Instant::now()));
                }
            }
            Err(e) => return Err(e),
        }
        observer.tick(recorder.view());
        match ended.recv_timeout(POLL) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
    }
}
