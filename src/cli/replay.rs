//! `loop replay`: re-derive every state from the journal alone (no git, no agent), verify the
//! hash chain, and print the timeline.
//!
//! Replay re-runs the machine over the recorded machine events (audit facts only move tallies)
//! and compares the stage and the commands it decides now with the ones each record says the
//! engine was given. The two ways a replay fails are kept apart as types, each with its
//! sequence number: [`ReplayError::Corrupt`] (the bytes or the chain are not what was appended:
//! exit 4) and [`ReplayError::Nondeterminism`] (the journal is intact but the code now decides
//! differently: exit 5).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{exit, CliError, RepoArgs};
use crate::journal::view::{Applied, Divergence, RunView};
use crate::journal::{self, JournalError, Store};
use crate::render;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The run id, or any unique prefix of it.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub run_id: Option<String>,
    /// Replay an exported journal file instead of a run in the state dir.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the timeline and the verdict as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Only the verdict, no timeline.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The journal is intact, but the code decides differently from what it recorded.
    #[error("journal and code disagree at {0}")]
    Nondeterminism(Divergence),
    /// The bytes or the hash chain are not what was appended.
    #[error("{0}")]
    Corrupt(JournalError),
}

impl ReplayError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ReplayError::Nondeterminism(_) => exit::DIVERGED,
            ReplayError::Corrupt(_) => exit::CORRUPT,
        }
    }
}

/// What a replay found.
pub struct Verdict {
    pub records: u64,
    pub view: Option<RunView>,
    pub error: Option<ReplayError>,
    pub timeline: Vec<serde_json::Value>,
}

/// Replays a store: streaming, so memory stays flat for long journals.
pub fn replay_store(store: &dyn Store, mut line: impl FnMut(&str), keep_json: bool) -> Verdict {
    let mut view: Option<RunView> = None;
    let mut diverged: Option<Divergence> = None;
    let mut timeline = Vec::new();
    let result = journal::scan_verified(store, &mut |rec| {
        let applied = match &mut view {
            None => RunView::new(&rec).map(|v| {
                view = Some(v);
                Applied { issue: None, from: None, to: None }
            }),
            Some(v) => v.apply(&rec),
        };
        let applied = match applied {
            Ok(a) => a,
            Err(d) => {
                diverged = Some(d);
                // Stops the scan; the divergence, not this placeholder, is what is reported.
                return Err(JournalError::Empty);
            }
        };
        line(&render::timeline_line(&rec, &applied));
        if keep_json {
            timeline.push(render::record_json(&rec, &applied));
        }
        Ok(())
    });
    let records = view.as_ref().map(|v| v.records).unwrap_or(0);
    let error = match (result, diverged) {
        (_, Some(d)) => Some(ReplayError::Nondeterminism(d)),
        (Err(e), None) => Some(ReplayError::Corrupt(e)),
        (Ok(_), None) => None,
    };
    Verdict { records, view, error, timeline }
}

pub fn run(args: ReplayArgs) -> Result<i32, CliError> {
    let store: Box<dyn Store> = match (&args.file, &args.run_id) {
        // A file that cannot be read is a wrong argument (exit 2); only bytes that were read
        // and do not verify are a corrupt journal (exit 4).
        (Some(f), _) => {
            let bytes = std::fs::read(f).map_err(|e| CliError::Usage(format!("--file {}: {e}", f.display())))?;
            Box::new(journal::parse_export(&bytes, &f.display().to_string())?)
        }
        (None, Some(id)) => {
            let state = args.repo.state()?;
            let run_id = state.resolve(id)?;
            // Raw records: the replay itself verifies, so a corrupt journal still shows its
            // timeline up to the damage.
            Box::new(state.snapshot(&run_id)?)
        }
        (None, None) => return Err(CliError::Usage("give a RUN_ID or --file".into())),
    };
    let print = !args.json && !args.quiet;
    let verdict = replay_store(store.as_ref(), |l| if print { println!("{l}") }, args.json);
    if args.json {
        let out = json!({
            "run_id": verdict.view.as_ref().map(|v| v.run_id.clone()),
            "records": verdict.records,
            "verified": verdict.error.is_none(),
            "error": verdict.error.as_ref().map(|e| e.to_string()),
            "timeline": verdict.timeline,
            "status": verdict.view.as_ref().map(|v| render::status_json(v, None)),
        });
        println!("{out}");
    }
    match verdict.error {
        Some(e) => {
            if !args.json {
                eprintln!("loop: replay failed: {e}");
            }
            Ok(e.exit_code())
        }
        None => {
            if !args.json {
                let v = verdict.view.as_ref().expect("a verified journal has a view");
                println!("replay ok: {} records, chain verified; {}", verdict.records, render::summary(v));
                if let Some(g) = render::guard_summary(v) {
                    println!("{g}");
                }
            }
            Ok(exit::OK)
        }
    }
}
