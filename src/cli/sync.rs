//! `loop sync RUN`: fills the mirror of a Restate run with the records it is missing (README
//! "Beyond one machine"). Idempotent: a record already present is never written again.

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The run (its id or a unique prefix; the journal may be missing entirely: the full id).
    pub run_id: String,
    /// The Restate ingress [default: the one the run was submitted to].
    #[arg(long, env = "LOOP_RESTATE_INGRESS", value_name = "URL")]
    pub ingress: Option<String>,
    /// Keep following until the run finished.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object on stdout: run, added, records, finished.
    #[arg(long)]
    pub json: bool,
}

#[cfg(not(feature = "restate"))]
pub fn run(_: SyncArgs) -> Result<ExitCode, CliError> {
    Err(super::restate_cmd::not_built())
}

#[cfg(feature = "restate")]
pub fn run(args: SyncArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let mut progress = crate::render::progress::Progress::new(true, false);
    let (run_id, added, records, finished) =
        super::restate_cmd::mirror(&state, &args.run_id, args.ingress.as_deref(), &mut progress, args.follow)?;
    if args.json {
        crate::outln!(
            "{}",
            serde_json::json!({ "run": run_id, "added": added, "records": records, "finished": finished })
        );
    } else {
        let end = if finished { "finished" } else { "still running" };
        crate::eoutln!("loop: run {run_id}: {added} record(s) added, {records} in the mirror; the run is {end}");
    }
    Ok(ExitCode::Ok)
}
