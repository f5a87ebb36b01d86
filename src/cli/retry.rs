//! `loop retry RUN ISSUE... [--fix-cycles N]`: reopen issues that ended Failed, Capped or
//! Blocked in the same run, and drive the run on as `loop resume` does.
//!
//! Invariants:
//! - Everything is checked before anything is written: an unknown issue, or one that is not
//!   terminal or ended Done, refuses the whole retry (exit 2) naming the issue and its state.
//! - A reopen is one journaled machine event (`reopened`) per issue, all of a retry's in one
//!   group appended by the engine's [`crate::engine::Recorder`] (a crash keeps all or none);
//!   the machine decides where the issue resumes (`machine::reopen_stage`), and its worktree
//!   and branch are loop's own, reused as they are.
//! - Every issue that ended Blocked because a reopened issue was not Done (directly or through
//!   another such issue) is reopened too, with no extra fix cycles: it has not run yet.

use clap::Args;
use serde_json::json;

use super::resume::continue_run;
use super::{CliError, ExitCode, RepoArgs};
use crate::journal::view::RunView;
use crate::machine::{Event, Reason, Stage};

#[derive(Args, Debug)]
pub struct RetryArgs {
    /// The run id, or any unique prefix of it.
    pub run_id: String,
    /// The issues to reopen (Failed, Capped or Blocked in that run).
    #[arg(required = true, value_name = "ISSUE")]
    pub issues: Vec<String>,
    /// Fix cycles each named issue gets beyond the run's limit.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub fix_cycles: u32,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub drive: super::run::DriveArgs,
}

/// One issue to reopen and the fix cycles it gains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopen {
    pub issue: String,
    pub extra_fix_cycles: u32,
}

/// The issues to reopen, in plan order: the named ones (each checked) and the dependents they
/// blocked. Pure: it reads the view only.
pub fn reopen_plan(view: &RunView, named: &[String], extra_fix_cycles: u32) -> Result<Vec<Reopen>, CliError> {
    for id in named {
        let Some(iv) = view.issue(id) else {
            let known: Vec<&str> = view.issues.iter().map(|i| i.id.as_str()).collect();
            return Err(CliError::Usage(format!(
                "retry {id}: not an issue of run {} (its issues: {})",
                view.run_id,
                known.join(", ")
            )));
        };
        let stage = &iv.state.stage;
        let reopenable = matches!(stage, Stage::Failed { .. } | Stage::Capped { .. } | Stage::Blocked { .. });
        if !reopenable {
            let why =
                if stage.is_terminal() { "it is Done" } else { "it has not ended yet (`loop resume` continues it)" };
            return Err(CliError::Usage(format!(
                "retry {id}: issue {id} of run {} is {}; only Failed, Capped or Blocked issues can be retried ({why})",
                view.run_id,
                crate::render::state_short(stage)
            )));
        }
    }
    let mut out: Vec<Reopen> = Vec::new();
    // Plan order is a topological order: a dependent comes after what blocked it.
    for planned in &view.start.issues {
        let id = planned.id.as_str();
        let Some(iv) = view.issue(id) else { continue };
        if named.iter().any(|n| n == id) {
            out.push(Reopen { issue: id.to_string(), extra_fix_cycles });
        } else if let Stage::Blocked { reason: Reason::DependencyNotDone { dependency, .. }, .. } = &iv.state.stage {
            if out.iter().any(|r| &r.issue == dependency) {
                out.push(Reopen { issue: id.to_string(), extra_fix_cycles: 0 });
            }
        }
    }
    Ok(out)
}

pub fn run(args: RetryArgs) -> Result<ExitCode, CliError> {
    let mut reopened: Vec<Reopen> = Vec::new();
    let (code, view, repo) = continue_run(&args.repo, &args.run_id, &args.drive, |recorder, progress| {
        reopened = reopen_plan(recorder.view(), &args.issues, args.fix_cycles)?;
        let events = reopened
            .iter()
            .map(|r| (r.issue.clone(), Event::Reopened { extra_fix_cycles: r.extra_fix_cycles }))
            .collect();
        recorder.issue_events(events, progress)?;
        Ok(())
    })?;
    if args.drive.json {
        let mut v = crate::render::status_json(&view, Some(&repo));
        v["reopened"] = json!(reopened
            .iter()
            .map(|r| json!({"issue": r.issue, "extra_fix_cycles": r.extra_fix_cycles}))
            .collect::<Vec<_>>());
        crate::outln!("{v}");
    } else if !args.drive.quiet {
        crate::eout!("{}", crate::render::status_text(&view, false, crate::render::style::Style::stderr()));
    }
    Ok(code)
}
