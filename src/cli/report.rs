//! `loop report`: a run as one self-contained HTML page (the DAG, a timeline, every issue's
//! reviews, checks, commits and guard decisions), drawn from the journal alone.
//!
//! Read-only but for the one file it is asked to write (`--out FILE`; otherwise the page goes to
//! stdout): the journal is read as a snapshot (verified, never opened for writing), and the page
//! is written atomically without following a symlink (`crate::safefs`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::journal;
use crate::render::{history, report};

#[derive(Args, Debug)]
#[command(after_help = "Read-only: without --out the page goes to stdout, so nothing on disk changes
unless you name the file (on a terminal, say where with --out or a redirect).

Examples:
  loop report --out run.html         the newest run, to run.html
  loop report 2026 > run.html        the run whose id starts with 2026, on stdout
  loop report --file run.loopj --out run.html   an exported journal (loop export)")]
pub struct ReportArgs {
    /// The run id, or any unique prefix of it [default: the newest run].
    #[arg(conflicts_with = "file")]
    pub run_id: Option<String>,
    /// Where to write the page, or `-` for stdout [default: stdout, when it is not a terminal].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Draw an exported journal (`loop export`) instead of a run in the state dir.
    #[arg(long, value_name = "EXPORT")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub repo: RepoArgs,
}

pub fn run(args: ReportArgs) -> Result<ExitCode, CliError> {
    // Decided before any reading, so a forgotten --out costs nothing.
    let out = match args.out {
        Some(out) => out,
        None if std::io::stdout().is_terminal() => {
            return Err(CliError::Usage(
                "loop report writes an HTML page: name the file with --out FILE (e.g. --out report.html), \
                 or redirect stdout (loop report > report.html)"
                    .into(),
            ))
        }
        None => PathBuf::from("-"),
    };
    let records = match &args.file {
        Some(f) => {
            // A file that cannot be read is a wrong argument (exit 2), bytes that do not verify
            // a corrupt journal (exit 4), as for `replay --file`.
            let bytes = std::fs::read(f).map_err(|e| CliError::Usage(format!("--file {}: {e}", f.display())))?;
            let store = journal::parse_export(&bytes, &f.display().to_string())?;
            journal::read_all(&store)?
        }
        None => {
            let state = args.repo.state()?;
            let run_id = match &args.run_id {
                Some(p) => state.resolve(p)?,
                None => state.latest()?.ok_or_else(|| {
                    CliError::Usage(format!("no runs yet in {}: nothing to report", state.root.display()))
                })?,
            };
            state.read(&run_id)?
        }
    };
    let h = history::history(&records).map_err(|e| CliError::Check(e.to_string()))?;
    let page = report::html(&h);
    if out.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(page.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| CliError::io(Path::new("-"), e))?;
        return Ok(ExitCode::Ok);
    }
    write_page(&out, page.as_bytes())?;
    eprintln!(
        "report of run {} ({} issues: {}) written to {}",
        h.run_id,
        h.issues.len(),
        h.totals.by_state.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", "),
        out.display()
    );
    Ok(ExitCode::Ok)
}

/// Writes the page atomically in its directory, refusing a symlink at the file itself.
pub fn write_page(out: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let abs = std::path::absolute(out).map_err(|e| CliError::io(out, e))?;
    let (Some(dir), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Err(CliError::Usage(format!("--out {}: not a file name", out.display())));
    };
    crate::safefs::write(dir, Path::new(name), bytes)
        .map_err(|source| CliError::Fs { context: format!("writing the report {}", out.display()), source })
}
