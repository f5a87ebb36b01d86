//! `loop replay`: re-derive every state from the journal alone (no git, no agent), verify the
//! hash chain, and print the timeline. Corruption (bytes or chain) and divergence (the code now
//! decides differently from what was recorded) are reported apart, each with its sequence number
//! and its own exit code (see [`crate::journal::replay`]).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::journal::{self, Store};
use crate::render;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The run id, or any unique prefix of it [default: the newest run].
    #[arg(conflicts_with = "file")]
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

pub fn run(args: ReplayArgs) -> Result<ExitCode, CliError> {
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
        (None, None) => {
            let state = args.repo.state()?;
            let Some(run_id) = state.latest()? else {
                return Err(CliError::Usage(format!("no runs yet in {}: nothing to replay", state.root.display())));
            };
            Box::new(state.snapshot(&run_id)?)
        }
    };
    let print = !args.json && !args.quiet;
    let style = render::style::Style::stdout();
    let mut timeline = Vec::new();
    let replayed = journal::replay::replay(store.as_ref(), |rec, applied| {
        if print {
            println!("{}", style.timeline(&render::timeline_line(rec, applied)));
        }
        if args.json {
            timeline.push(render::record_json(rec, applied));
        }
    });
    if args.json {
        println!("{}", render::replay::json(&replayed, timeline));
    }
    match replayed.error {
        // The JSON object carries the error; the text form says it on stderr.
        Some(f) if args.json => Err(CliError::from(f).reported()),
        Some(f) => Err(f.into()),
        None => {
            if !args.json {
                print!("{}", render::replay::verdict_text(&replayed, style));
            }
            Ok(ExitCode::Ok)
        }
    }
}
