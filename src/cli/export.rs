//! `loop export`: a run's journal as one portable, verifiable file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::journal;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The run id, or any unique prefix of it.
    pub run_id: String,
    /// The file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub repo: RepoArgs,
}

pub fn run(args: ExportArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let run_id = state.resolve(&args.run_id)?;
    let mem = state.snapshot(&run_id)?;
    let dir = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| CliError::io(dir, e))?;
    let n = journal::export(&mem, tmp.as_file_mut())?;
    tmp.as_file_mut().flush().map_err(|e| CliError::io(&args.out, e))?;
    tmp.as_file().sync_all().map_err(|e| CliError::io(&args.out, e))?;
    tmp.persist(&args.out).map_err(|e| CliError::io(&args.out, e.error))?;
    eprintln!("exported {n} records of run {run_id} to {}", args.out.display());
    Ok(ExitCode::Ok)
}
