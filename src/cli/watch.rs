//! `loop watch`: follow a run from another terminal with the live display `run` draws, and end
//! with the summary `run` ends with.
//!
//! Invariants:
//! - Read-only: the journal is opened read-only and never locked, written or repaired (the same
//!   reader `status` uses); nothing is created in the state dir. The run's lock is only probed
//!   (a shared `try_lock` on its lock file, released at once), never held.
//! - A live writer is never disturbed and never looks damaged: the reader reads the journal's head
//!   before its frames and the writer writes frames before heads, so a half-written tail is an
//!   append not yet complete ("not yet"), picked up at the next poll once it is whole.
//! - Every record is verified (hash and chain) and folded in order, and shown through
//!   [`Progress`], so the lines are the ones `run` printed live for the same records. The
//!   summary at the end is `status`'s for the same journal.
//! - The watch ends when the run's process has released its lock (finished, interrupted, or
//!   killed) and every record it made has been read: the lock is probed *before* each read, so
//!   the read after the lock was seen free holds the run's last record.

use std::time::{Duration, Instant};

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::journal::record::Body;
use crate::journal::view::RunView;
use crate::journal::{ChainChecker, JournalError, Store};
use crate::render::{self, progress::Progress};
use crate::runs::{RunKind, StateDir};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  loop run -m M1 --jobs 3     # in one terminal\n  loop watch                  # in another: \
follows the newest run until it ends\n  loop watch 20260101 --timeline   # a finished run: its timeline and summary"
)]
pub struct WatchArgs {
    /// The run id or a unique prefix [default: the newest run].
    pub run_id: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print every record of the run so far, also for a finished run (by default a finished
    /// run only gets its summary).
    #[arg(long)]
    pub timeline: bool,
    /// How often to look for new records, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub interval: u64,
}

pub fn run(args: WatchArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let interval = Duration::from_millis(args.interval);
    let run_id = match &args.run_id {
        Some(p) => state.resolve(p)?,
        None => state.latest()?.ok_or_else(|| {
            CliError::Usage(format!("no runs in {} yet; start one with `loop run`", state.root.display()))
        })?,
    };
    // A Restate run nobody mirrors now (submitted with --detach, or its submitter stopped
    // following): this watch mirrors it, then ends like any watch of a finished run.
    #[cfg(feature = "restate")]
    if super::restate_cmd::submitted_to(&state, &run_id).is_some() && !state.is_locked(&run_id) {
        let mut progress = Progress::new(false, false);
        let (_, _, _, finished) = super::restate_cmd::mirror(&state, &run_id, None, &mut progress, true)?;
        if !finished {
            return Ok(ExitCode::for_signal(crate::proc::cancel_signal()));
        }
    }
    // A run is staged until its first record is durable: wait for it to be born.
    while state.kind(&run_id) == RunKind::Empty && state.is_locked(&run_id) {
        std::thread::sleep(interval);
    }
    let live_at_start = state.is_locked(&run_id);
    let mut watch = Watch::new(&state, &run_id, live_at_start || args.timeline)?;
    loop {
        let live = state.is_locked(&run_id);
        watch.poll()?;
        if !live {
            break;
        }
        std::thread::sleep(interval);
        if let Some(view) = &watch.view {
            watch.progress.tick(view);
        }
    }
    watch.finish(live_at_start)
}

/// A run being followed: the verified fold so far and what has been shown.
struct Watch<'a> {
    state: &'a StateDir,
    run_id: &'a str,
    snapshot: crate::runs::Snapshot,
    chain: ChainChecker,
    view: Option<RunView>,
    /// Every record so far: the summary's times come from the run's history.
    records: Vec<crate::journal::Record>,
    /// The next record to read.
    next: u64,
    /// The journal's length at the last read: unchanged, there is nothing new.
    seen_len: Option<u64>,
    /// Why the run was last interrupted (cleared by a resume): decides the exit code.
    interrupted_by: Option<String>,
    progress: Progress,
    show: bool,
}

impl<'a> Watch<'a> {
    fn new(state: &'a StateDir, run_id: &'a str, show: bool) -> Result<Watch<'a>, CliError> {
        let snapshot = state.snapshot(run_id)?;
        Ok(Watch {
            state,
            run_id,
            snapshot,
            chain: ChainChecker::default(),
            view: None,
            records: Vec::new(),
            next: 0,
            seen_len: None,
            interrupted_by: None,
            progress: Progress::new(!show, false),
            show,
        })
    }

    /// Reads, verifies and shows the records appended since the last poll.
    fn poll(&mut self) -> Result<(), CliError> {
        let len = std::fs::metadata(self.state.journal_path(self.run_id)).ok().map(|m| m.len());
        if len.is_some() && len == self.seen_len {
            return Ok(());
        }
        let mut fresh = Vec::new();
        let mut failed = None;
        let next = self.next;
        let chain = &mut self.chain;
        let scanned = self.snapshot.scan(&mut |seq, bytes| {
            if seq < next {
                return true;
            }
            match chain.check(seq, bytes) {
                Ok(rec) => {
                    fresh.push(rec);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        scanned.map_err(JournalError::from)?;
        self.seen_len = len;
        let now = chrono::Utc::now();
        for rec in fresh {
            self.next = rec.seq() + 1;
            match &rec.content.body {
                Body::RunInterrupted { reason } => self.interrupted_by = Some(reason.clone()),
                Body::RunResumed => self.interrupted_by = None,
                _ => {}
            }
            self.records.push(rec.clone());
            let Some(view) = &mut self.view else {
                let view = RunView::new(&rec).map_err(|d| CliError::Diverged(Box::new(d)))?;
                // Elapsed times count from the run's start, as `run` counts them.
                let age = (now - rec.content.time).to_std().unwrap_or_default();
                self.progress.start = Instant::now().checked_sub(age).unwrap_or(self.progress.start);
                if self.show {
                    let applied = crate::journal::view::Applied { issue: None, from: None, to: None };
                    self.progress.record_made(&rec, &applied, &view, age);
                }
                self.view = Some(view);
                continue;
            };
            let applied = view.apply(&rec).map_err(|d| CliError::Diverged(Box::new(d)))?;
            if self.show {
                let ago = (now - rec.content.time).to_std().unwrap_or_default();
                self.progress.record_made(&rec, &applied, view, ago);
            }
        }
        Ok(())
    }

    /// The summary `run` ends with, and the exit code `run` would have ended with.
    fn finish(self, was_live: bool) -> Result<ExitCode, CliError> {
        let view = self.view.ok_or(JournalError::Empty)?;
        // The live block (a terminal) is redrawn once more so its last state is not left stale.
        let mut progress = self.progress;
        progress.tick(&view);
        let history = render::history::history(&self.records).ok();
        crate::out!("{}", render::status_text_timed(&view, false, history.as_ref(), render::style::Style::stdout()));
        let code = ExitCode::of_journaled_run(&view, self.interrupted_by.as_deref());
        if !view.finished && !view.interrupted && !view.all_terminal() {
            crate::eoutln!(
                "loop: run {} {} without finishing or recording an interruption (killed?); `loop resume {}` continues it",
                view.run_id,
                if was_live { "stopped" } else { "is not running: it stopped" },
                view.run_id
            );
        } else if view.interrupted {
            crate::eoutln!("loop: run {} interrupted; continue with `loop resume {}`", view.run_id, view.run_id);
        }
        Ok(code)
    }
}
