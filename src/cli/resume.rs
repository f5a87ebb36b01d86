//! `loop resume`: refold a run's journal and continue it exactly where it stopped.


use clap::Args;

use super::run::{agent_for, drive, finish_output, Progress};
use super::{CliError, RepoArgs};
use crate::clock::Clock;
use crate::journal::view::RunView;
use crate::journal::{Body, Journal};
use crate::workspace::GitWorkspace;

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run id, or any unique prefix of it.
    pub run_id: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// How many issues may run at once.
    #[arg(long, short, default_value_t = 1)]
    pub jobs: usize,
    /// Print the final status as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Stream every journal record as a JSON line on stdout.
    #[arg(long, conflicts_with = "json")]
    pub json_events: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ResumeArgs) -> Result<i32, CliError> {
    let state = args.repo.state()?;
    let run_id = state.resolve(&args.run_id)?;
    let _lock = state.lock(&run_id)?;
    let store = state.open_store(&run_id)?;
    let clock = Clock::from_env();
    let (journal, records) = Journal::reopen(Box::new(store), clock.clone())?;
    let view = RunView::fold(&records)?;
    let _milestone_lock = state.lock_milestone(&view.start.milestone, &run_id)?;
    let repo = std::path::PathBuf::from(&view.start.repo);
    let ids: Vec<&str> = view.start.issues.iter().map(|p| p.id.as_str()).collect();
    let agent = agent_for(&view.start.agent, &ids, "the recorded scenario")?;
    let ws = GitWorkspace::new(&repo);
    let mut progress = Progress::new(args.quiet, args.json_events);
    let mut engine_journal = journal;
    let mut view = view;
    if !view.finished {
        let rec = engine_journal.append(Body::RunResumed)?;
        let applied = view.apply(&rec)?;
        use crate::engine::Observer;
        progress.record(&rec, &applied, &view);
        super::install_interrupt_handler();
    }
    let (code, view) = drive(engine_journal, view, agent.as_ref(), &ws, &mut progress, args.jobs)?;
    finish_output(&view, args.json, &repo, args.quiet);
    Ok(code)
}
