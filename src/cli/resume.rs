//! `loop resume`: refold a run's journal and continue it exactly where it stopped.

use clap::Args;

use super::run::{drive, finish_output};
use super::{CliError, ExitCode, RepoArgs};
use crate::clock::Clock;
use crate::engine::Recorder;
use crate::journal::view::RunView;
use crate::journal::Journal;

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run id, or any unique prefix of it.
    pub run_id: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub drive: super::run::DriveArgs,
}

pub fn run(args: ResumeArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let run_id = state.resolve(&args.run_id)?;
    let _lock = state.lock(&run_id)?;
    let store = state.open_store(&run_id, &mut |note| eprintln!("loop: {note}"))?;
    let clock = Clock::from_env();
    let (journal, view) = Journal::reopen_view(Box::new(store), clock.clone())??;
    let mut recorder = Recorder::from_view(journal.with_fault_after(super::fault_after_append()), view);
    let view = recorder.view();
    let repo = std::path::PathBuf::from(&view.start.repo);
    let _milestone_lock = state.lock_milestone(&repo, &view.start.milestone, crate::runs::Holder::Run(&run_id))?;
    let ids: Vec<&str> = view.start.issues.iter().map(|p| p.id.as_str()).collect();
    let agent = crate::agent::from_spec(&view.start.agent, &ids, "the recorded scenario")?;
    let ws = super::git_workspace(&repo);
    args.drive.check()?;
    let mut progress = args.drive.progress();
    if !recorder.view().finished {
        super::install_interrupt_handler();
        kill_leftovers(recorder.view());
        recorder.resumed(&mut progress)?;
    }
    let (code, view) = drive(
        recorder,
        agent.as_ref(),
        &ws,
        &mut progress,
        args.drive.jobs,
        super::verify_env(&state, args.drive.skip_setup),
    )?;
    finish_output(&view, args.drive.json, &repo, args.drive.quiet);
    Ok(code)
}

/// An agent of the interrupted run that still lives (its loop was killed and it escaped the
/// supervisor's cleanup, e.g. it was stopped) would work beside the phase resume starts again:
/// kill every recorded group that still lives, if its leader's start time is the recorded one.
fn kill_leftovers(view: &RunView) {
    for issue in &view.issues {
        let Some((pgid, start_time)) = issue.process_group else { continue };
        match crate::proc::kill_leftover_group(pgid, start_time) {
            crate::proc::Leftover::Killed(n) => eprintln!(
                "loop: killed process group {pgid} ({n} process(es)) left running by the interrupted run for {}",
                crate::render::printable(&issue.id, 100)
            ),
            crate::proc::Leftover::Reused => eprintln!(
                "loop: process {pgid} recorded for {} is another process now (start time differs); left alone",
                crate::render::printable(&issue.id, 100)
            ),
            crate::proc::Leftover::Gone => {}
        }
    }
}
