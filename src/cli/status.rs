//! `loop status`: where each issue of a run stands, from the journal alone.

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};
use crate::render;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The run id or a unique prefix [default: the newest run].
    pub run_id: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// `{"run_id": ..., "issues": [{"id", "state", "fix_cycles", ...}]}` on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let run_id = match &args.run_id {
        Some(p) => state.resolve(p)?,
        None => state.latest()?.ok_or_else(|| {
            CliError::Usage(format!("no runs in {} yet; start one with `loop run`", state.root.display()))
        })?,
    };
    let live = state.is_locked(&run_id);
    let records = state.read(&run_id)?;
    let view = crate::journal::view::RunView::fold(&records)?;
    // The history holds the times (run, issues, phases); a journal it cannot read has no start,
    // which the fold above has refused already.
    let history = render::history::history(&records).ok();
    if args.json {
        let mut v = render::status_json(&view, None);
        v["live"] = serde_json::json!(live);
        if let Some(h) = &history {
            render::add_times(&mut v, h);
        }
        println!("{v}");
    } else {
        print!("{}", render::status_text_timed(&view, live, history.as_ref(), render::style::Style::stdout()));
    }
    Ok(ExitCode::Ok)
}
