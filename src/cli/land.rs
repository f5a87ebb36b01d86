//! `loop land RUN [--onto BRANCH] [--json]`: merges a finished run's Done branches, in plan
//! order, into the loop-made branch `loop/<milestone>/land` and runs the checks there
//! ([`crate::engine::land`]). main and every other branch are only read; nothing is pushed
//! (under `--stack graphite --submit draft` the Done stacks are submitted as drafts instead).
//! Exit 0 when every branch merged and every check passed, 3 otherwise.

use clap::Args;
use serde_json::json;

use super::{CliError, ExitCode, RepoArgs};
use crate::clock::Clock;
use crate::engine::land::{self, LandError, LandRequest};
use crate::engine::Recorder;
use crate::journal::Journal;
use crate::runs::Holder;
use crate::vocab::{sanitize, LandOutcome, Landing};
use crate::workspace::git;

#[derive(Args, Debug)]
#[command(after_help = "The land branch is made by loop and only ever moved by loop: landing the same run again \
starts it over from --onto, unless someone moved it since (then loop refuses). Conflicting branches are left out \
and named; the checks are the run's [verify] setup and commands plus each landed issue's own `verify:` lines, run \
with `sh -c` in a loop-owned worktree.")]
pub struct LandArgs {
    /// The run (id or unique prefix).
    pub run_id: String,
    /// The branch to start from [default: the branch checked out in the repository].
    #[arg(long, value_name = "BRANCH")]
    pub onto: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the landing as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: LandArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let id = state.resolve(&args.run_id)?;
    let _lock = state.lock(&id)?;
    let view = state.view(&id)??;
    let repo = std::path::PathBuf::from(&view.start.repo);
    let _milestone_lock = state.lock_milestone(&repo, &view.start.milestone, Holder::Land)?;
    let onto = match args.onto {
        Some(b) => b,
        None => checked_out_branch(&repo)?,
    };
    let store = state.open_store(&id, &mut |note| eprintln!("loop: {note}"))?;
    let (journal, view) = Journal::reopen_view(Box::new(store), Clock::from_env())??;
    let worktree = state.worktrees_dir().join(sanitize(&view.start.milestone)).join("_land");
    let mut recorder = Recorder::from_view(journal.with_fault_after(super::fault_after_append()), view);
    let ws = super::git_workspace(&repo);
    let request = LandRequest {
        onto,
        worktree,
        logs_root: state.logs_dir(&id).parent().map(|p| p.to_path_buf()).unwrap_or_default(),
        logs_dir: state.logs_dir(&id),
        gt: Some(crate::stack::Gt::from_env(std::time::Duration::from_secs(120))),
        clock: Clock::from_env(),
    };
    let landing = land::land(&mut recorder, &ws, &request).map_err(CliError::from)?;
    if args.json {
        let mut v = serde_json::to_value(&landing).map_err(|e| CliError::Check(e.to_string()))?;
        v["run"] = json!(id);
        v["clean"] = json!(landing.clean());
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_text(&id, &landing);
    }
    Ok(if landing.clean() { ExitCode::Ok } else { ExitCode::NotAllDone })
}

/// The branch the repository's main checkout has checked out.
fn checked_out_branch(repo: &std::path::Path) -> Result<String, CliError> {
    let out = git(repo, &["symbolic-ref", "--quiet", "--short", "HEAD"], std::time::Duration::from_secs(30))?;
    let name = out.stdout_text().trim().to_string();
    if !out.success() || name.is_empty() {
        return Err(CliError::Usage(
            "the repository's HEAD is detached: say which branch to land on with --onto".into(),
        ));
    }
    Ok(name)
}

fn print_text(id: &str, l: &Landing) {
    if !l.submitted.is_empty() {
        crate::outln!("land: run {id}: submitting the Done stacks as drafts (gt submit --stack --draft)");
        for s in &l.submitted {
            let how = if s.ok { "submitted".to_string() } else { format!("FAILED: {}", s.detail) };
            crate::outln!("  {:<28} {how}", s.branch);
        }
        return;
    }
    crate::outln!("land: run {id} onto {} ({}) → {}", l.onto, short(&l.onto_commit), l.branch);
    for m in &l.merged {
        let how = match &m.outcome {
            LandOutcome::Merged { .. } => "merged".to_string(),
            LandOutcome::AlreadyIn => "already in".to_string(),
            LandOutcome::Conflict { files } => format!("CONFLICT in {} (left out)", files.join(", ")),
        };
        crate::outln!("  {:<12} {:<28} {how}", m.issue, m.branch);
    }
    for c in &l.checks {
        crate::outln!("  check `{}`: {} ({} ms; log {})", c.command, c.status(), c.duration_ms, c.log);
    }
    let merged = l.merged.iter().filter(|m| !matches!(m.outcome, LandOutcome::Conflict { .. })).count();
    let checks = match (l.checks.is_empty(), l.verified()) {
        (true, _) => "no checks configured".to_string(),
        (false, true) => "checks passed".to_string(),
        (false, false) => "checks FAILED".to_string(),
    };
    crate::outln!(
        "land: {} at {}: {merged} of {} Done branch(es) merged; {checks}",
        l.branch,
        short(&l.commit),
        l.merged.len()
    );
}

fn short(c: &str) -> &str {
    c.get(..7).unwrap_or(c)
}

impl From<LandError> for CliError {
    fn from(e: LandError) -> CliError {
        match e {
            LandError::Engine(e) => CliError::from(e),
            LandError::Workspace(e) => CliError::Workspace(e),
            other => CliError::Land(Box::new(other)),
        }
    }
}
