//! `loop replay`: re-derive every state from the journal alone (no git, no agent), verify the
//! hash chain, and print the timeline. Corruption (bytes or chain) and divergence (the code now
//! decides differently from what was recorded) are reported apart, each with its sequence number.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{exit, CliError, RepoArgs};
use crate::journal::view::RunView;
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

/// What a replay found.
pub struct Verdict {
    pub records: u64,
    pub view: Option<RunView>,
    pub error: Option<(i32, String)>,
    pub timeline: Vec<serde_json::Value>,
}

/// Replays a store: streaming, so memory stays flat for long journals.
pub fn replay_store(store: &dyn Store, mut line: impl FnMut(&str), keep_json: bool) -> Verdict {
    let mut view: Option<RunView> = None;
    let mut diverged: Option<String> = None;
    let mut timeline = Vec::new();
    let result = journal::scan_verified(store, &mut |rec| {
        let applied = match &mut view {
            None => match RunView::new(&rec) {
                Ok(v) => {
                    view = Some(v);
                    crate::journal::view::Applied { issue: None, from: None, to: None }
                }
                Err(d) => {
                    diverged = Some(d.to_string());
                    return Err(JournalError::Empty);
                }
            },
            Some(v) => match v.apply(&rec) {
                Ok(a) => a,
                Err(d) => {
                    diverged = Some(d.to_string());
                    return Err(JournalError::Empty);
                }
            },
        };
        line(&render::timeline_line(&rec, &applied));
        if keep_json {
            timeline.push(render::record_json(&rec, &applied));
        }
        Ok(())
    });
    let records = view.as_ref().map(|v| v.records).unwrap_or(0);
    let error = match (result, diverged) {
        (_, Some(d)) => Some((exit::DIVERGED, format!("journal and code disagree at {d}"))),
        (Err(e), None) => Some((exit::CORRUPT, e.to_string())),
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
            "error": verdict.error.as_ref().map(|e| e.1.clone()),
            "timeline": verdict.timeline,
            "status": verdict.view.as_ref().map(|v| render::status_json(v, None)),
        });
        println!("{out}");
    }
    match verdict.error {
        Some((code, msg)) => {
            if !args.json {
                eprintln!("loop: replay failed: {msg}");
            }
            Ok(code)
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
