//! `loop resume`: refold a run's journal and continue it exactly where it stopped.

use clap::Args;

use super::run::{drive, finish_output};
use super::{CliError, ExitCode, RepoArgs};
use crate::clock::Clock;
use crate::engine::Recorder;
use crate::journal::view::RunView;
use crate::journal::Journal;
use crate::render::progress::Progress;

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
    let (code, view, repo) = continue_run(&args.repo, &args.run_id, &args.drive, |_, _| Ok(()))?;
    finish_output(&view, args.drive.json, &repo, args.drive.quiet);
    Ok(code)
}

/// Opens run `run_id` under its locks, lets `amend` journal what it must before the drive (it
/// sees the folded view first and may refuse, writing nothing), journals `run_resumed` unless
/// the run is finished, and drives it on. Shared by `resume` and `retry`.
pub fn continue_run(
    repo_args: &RepoArgs,
    run_id: &str,
    drive_args: &super::run::DriveArgs,
    amend: impl FnOnce(&mut Recorder, &mut Progress) -> Result<(), CliError>,
) -> Result<(ExitCode, RunView, std::path::PathBuf), CliError> {
    let state = repo_args.state()?;
    let run_id = state.resolve(run_id)?;
    if let Some(url) = super::restate_cmd::submitted_to(&state, &run_id) {
        return Err(CliError::Usage(format!(
            "run {run_id} is driven by Restate ({url}), which continues it by itself: follow it with \
             `loop watch {run_id}`, fill its journal with `loop sync {run_id}`"
        )));
    }
    let _lock = state.lock(&run_id)?;
    let store = state.open_store(&run_id, &mut |note| eprintln!("loop: {note}"))?;
    let clock = Clock::from_env();
    let (journal, view) = Journal::reopen_view(Box::new(store), clock.clone())??;
    let mut recorder = Recorder::from_view(journal.with_fault_after(super::fault_after_append()), view);
    let view = recorder.view();
    let repo = std::path::PathBuf::from(&view.start.repo);
    let _milestone_lock = state.lock_milestone(&repo, &view.start.milestone, crate::runs::Holder::Run(&run_id))?;
    let ids: Vec<&str> = view.start.issues.iter().map(|p| p.id.as_str()).collect();
    // Each phase on the backend the run recorded, whatever loop.toml says now.
    let agents = crate::agent::PhaseAgentSet::from_start(&view.start, &ids, "the recorded scenario")?;
    let ws = super::git_workspace(&repo);
    drive_args.check()?;
    let mut progress = drive_args.progress();
    amend(&mut recorder, &mut progress)?;
    if !recorder.view().finished {
        resume_preflight(recorder.view(), &state.root)?;
        super::install_interrupt_handler();
        kill_leftovers(recorder.view());
        recorder.resumed(&mut progress)?;
    }
    let (code, view) = drive(
        recorder,
        &agents,
        &ws,
        &mut progress,
        drive_args.jobs,
        super::verify_env(&state, drive_args.skip_setup),
    )?;
    Ok((code, view, repo))
}

/// Pre-flight before a resumed run appends anything: the recorded agent (codex present and
/// logged in), gt for a graphite stack, the main checkout under the recorded guard, the state dir
/// and free disk space. Issue docs are not checked again: the run was planned from them.
fn resume_preflight(view: &RunView, state_root: &std::path::Path) -> Result<(), CliError> {
    let repo = std::path::Path::new(&view.start.repo);
    // Codex is checked when any phase runs it.
    let codex = [crate::machine::Phase::Dev, crate::machine::Phase::Review, crate::machine::Phase::Fix]
        .map(|p| view.start.agent_for(p))
        .into_iter()
        .find_map(|spec| match (spec.kind.as_str(), &spec.settings) {
            ("codex", Some(text)) => serde_json::from_str::<crate::agent::codex::CodexSettings>(text)
                .ok()
                .map(|s| crate::agent::codex::check_installed(&s.bin)),
            _ => None,
        });
    let claude = [crate::machine::Phase::Dev, crate::machine::Phase::Review, crate::machine::Phase::Fix]
        .map(|p| view.start.agent_for(p))
        .into_iter()
        .find_map(|spec| match (spec.kind.as_str(), &spec.settings) {
            ("claude", Some(text)) => serde_json::from_str::<crate::agent::claude::ClaudeSettings>(text).ok(),
            _ => None,
        });
    let mut backends = match &codex {
        Some(Ok(bin)) => vec![crate::preflight::Backend { kind: "codex".into(), bin: bin.clone() }],
        _ => Vec::new(),
    };
    if let Some(Ok(bin)) = claude.as_ref().map(|s| crate::agent::claude::check_installed(&s.bin)) {
        backends.push(crate::preflight::Backend { kind: "claude".into(), bin });
    }
    let guard = view.start.guard.as_ref();
    // Only this setting of loop.toml is read again: it guards the machine, not the run's course.
    let min_free_disk_mb = crate::config::load(repo)
        .ok()
        .and_then(|c| c.run.min_free_disk_mb)
        .unwrap_or(crate::preflight::DEFAULT_MIN_FREE_DISK_MB);
    let req = crate::preflight::Request {
        repo,
        state_dir: state_root,
        allow_dirty: guard.is_some_and(|g| g.config.allow_dirty),
        check_checkout: guard.is_some_and(|g| g.config.checks),
        docs: Vec::new(),
        codex,
        gt: guard
            .filter(|g| g.stack == crate::stack::StackMode::Graphite)
            .map(|_| crate::stack::Gt::from_env(std::time::Duration::from_secs(60)).bin),
        min_free_disk_mb,
        backends,
    };
    if let Some(settings) = claude {
        if let Err(m) = crate::agent::claude::check_installed(&settings.bin) {
            let problems = vec![crate::preflight::Problem::CodexMissing(m)];
            return Err(crate::preflight::PreflightError { problems }.into());
        }
    }
    Ok(crate::preflight::run(&req)?)
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
