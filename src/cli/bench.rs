//! `loop bench`: performance figures as ratios against baselines measured in the same run.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::{CliError, ExitCode};
use crate::bench;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Small sizes (seconds, not minutes): what CI runs to keep the benchmarks working.
    #[arg(long)]
    pub quick: bool,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Internal: replay one journal in this process and report time and peak memory.
    #[arg(long, hide = true, value_name = "PATH")]
    pub replay_child: Option<PathBuf>,
    /// Internal: with --replay-child, the path is a flat export file.
    #[arg(long, hide = true)]
    pub flat: bool,
    /// Only the rows with this id (e.g. `replay`), to measure one case without the others;
    /// `per-issue:200` runs one size of the per-issue row.
    #[arg(long, hide = true, value_name = "ID")]
    pub only: Option<String>,
    /// Internal: write a journal of N replay events (and its flat export) into the directory
    /// given with --replay-child, and keep it (to profile a replay of it).
    #[arg(long, hide = true, value_name = "N", requires = "replay_child")]
    pub generate: Option<u64>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode, CliError> {
    if let (Some(n), Some(dir)) = (args.generate, &args.replay_child) {
        let (journal, flat) = bench::generate(dir, n).map_err(|e| CliError::Usage(e.to_string()))?;
        crate::outln!("{}\n{}", journal.display(), flat.display());
        return Ok(ExitCode::Ok);
    }
    if let Some(p) = &args.replay_child {
        let r = bench::replay_child(p, args.flat).map_err(|e| CliError::Usage(e.to_string()))?;
        crate::outln!("{}", serde_json::to_string(&r).expect("serializable"));
        return Ok(ExitCode::Ok);
    }
    let json_out = args.json;
    if !json_out {
        crate::eoutln!(
            "loop bench{}: each figure is measured beside its baseline in this run",
            if args.quick { " --quick" } else { "" }
        );
    }
    let report = bench::run_all(args.quick, args.only.as_deref(), &mut |row| {
        if !json_out {
            crate::outln!("{}", bench::format_row(row));
        }
    })
    .map_err(|e| CliError::Usage(e.to_string()))?;
    if json_out {
        crate::outln!("{}", json!({"machine": report.machine, "quick": args.quick, "rows": report.rows}));
    } else {
        crate::outln!("machine: {}", report.machine);
    }
    Ok(ExitCode::Ok)
}
