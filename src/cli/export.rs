//! `loop export`: a run's journal as one portable, verifiable file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::journal;

#[derive(Args, Debug)]
#[command(after_help = "Replay an export anywhere: loop replay --file FILE")]
pub struct ExportArgs {
    /// The run id, or any unique prefix of it [default: the newest run].
    pub run_id: Option<String>,
    /// The file to write (replaced atomically), or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Say what was exported as one JSON object on stdout: run_id, records, out (not with `--out -`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExportArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let run_id = match &args.run_id {
        Some(p) => state.resolve(p)?,
        None => state
            .latest()?
            .ok_or_else(|| CliError::Usage(format!("no runs yet in {}: nothing to export", state.root.display())))?,
    };
    let mem = state.snapshot(&run_id)?;
    if args.out.as_os_str() == "-" {
        if args.json {
            return Err(CliError::Usage("--json says what went to a file; with --out - the export is stdout".into()));
        }
        // The journal is verified before its first byte is written (see journal::export).
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let n = journal::export(&mem, &mut stdout)?;
        stdout.flush().map_err(|e| CliError::io(std::path::Path::new("-"), e))?;
        eprintln!("exported {n} records of run {run_id}");
        return Ok(ExitCode::Ok);
    }
    let dir = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| CliError::io(dir, e))?;
    let n = journal::export(&mem, tmp.as_file_mut())?;
    tmp.as_file_mut().flush().map_err(|e| CliError::io(&args.out, e))?;
    tmp.as_file().sync_all().map_err(|e| CliError::io(&args.out, e))?;
    tmp.persist(&args.out).map_err(|e| CliError::io(&args.out, e.error))?;
    if args.json {
        println!("{}", serde_json::json!({"run_id": run_id, "records": n, "out": args.out.display().to_string()}));
    } else {
        eprintln!("exported {n} records of run {run_id} to {}", args.out.display());
    }
    Ok(ExitCode::Ok)
}
