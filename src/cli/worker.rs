//! `loop worker`: carries out a Restate run's phases in this clone (README "Beyond one
//! machine"). The queue, leases and git protocol are [`crate::restate::worker`]'s; this file
//! builds, for each job, the same agents, guard and engine a local `loop resume` would, from the
//! run's recorded start.

#[cfg(feature = "restate")]
use std::time::Duration;

use clap::Args;

use super::{CliError, ExitCode, RepoArgs};

#[derive(Args, Debug)]
#[command(after_help = "\
Start one in a clone of the repository whose `origin` is the team's shared remote, on any number
of hosts. A worker listens on no port: it takes jobs from the queue, fetches the base from origin,
makes the worktree here, runs the phase exactly as a local run does (agent, guard, verification),
commits, pushes the issue's branch to origin and reports the result. A job's lease is renewed
while it runs; when a worker dies its jobs go to another worker once the lease lapses.
SIGTERM or Ctrl-C: running phases get --grace to finish, then are stopped and handed back.")]
pub struct WorkerArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The Restate ingress.
    #[arg(long, env = "LOOP_RESTATE_INGRESS", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    pub ingress: String,
    /// How many jobs this worker runs at once.
    #[arg(long, short, default_value_t = 1)]
    pub jobs: usize,
    /// Seconds a job stays this worker's without a heartbeat (renewed every third of it).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub lease: f64,
    /// Seconds running phases get to finish after SIGTERM/Ctrl-C before they are stopped and handed back.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub grace: f64,
    /// The queue to take jobs from.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub queue: String,
    /// This worker's name in the queue [default: HOST:PID].
    #[arg(long)]
    pub name: Option<String>,
}

#[cfg(not(feature = "restate"))]
pub fn run(_: WorkerArgs) -> Result<ExitCode, CliError> {
    Err(super::restate_cmd::not_built())
}

#[cfg(feature = "restate")]
pub fn run(args: WorkerArgs) -> Result<ExitCode, CliError> {
    use crate::restate::worker::{self, WorkerOpts};
    let repo = args.repo.repo_root()?;
    let state = args.repo.state()?;
    if !crate::restate::client::url_safe(&args.queue) {
        return Err(CliError::Usage(format!("--queue {}: use letters, digits, '-', '_' and '.'", args.queue)));
    }
    let secs = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(CliError::Usage(format!("--{name} {v}: expected seconds > 0")))
        }
    };
    let (lease, grace) = (secs("lease", args.lease)?, secs("grace", args.grace)?);
    // A worker's clone is a cache of `origin`: nothing a job did counts until its branch is
    // pushed and the result reported, and after a crash the worker rebuilds what it uses from
    // `origin` (it fetches and checks every worktree before its first job). So its git effects
    // need not survive a power cut, unlike a local run's, whose journal claims them: no fsyncs.
    let ws = crate::workspace::GitWorkspace::new(&repo).with_durability(false);
    if let Ok(rel) = state.root.strip_prefix(&repo) {
        ws.exclude(&format!("/{}/", rel.display()))?;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = args.name.unwrap_or_else(|| format!("{}:{}", host.trim(), std::process::id()));
    let opts = WorkerOpts {
        ingress: args.ingress.clone(),
        queue: args.queue,
        jobs: args.jobs.max(1),
        lease,
        grace,
        name,
        repo: repo.clone(),
        times: std::env::var_os("LOOP_WORKER_TIMES").is_some(),
    };
    let stop = stop_on_signals();
    crate::eoutln!(
        "loop worker: {} taking jobs from {} (queue {}, {} at once, lease {:?})",
        opts.name,
        opts.ingress,
        opts.queue,
        opts.jobs,
        lease
    );
    // One workspace for every job: what it asks git once (the common dir, the identity)
    // stays asked.
    let perform = |task: worker::Task| perform(&repo, &ws, &state, opts.jobs, task);
    worker::run(&opts, &stop, &perform).map_err(|e| CliError::Remote(e.to_string()))?;
    crate::eoutln!("loop worker: stopped");
    Ok(ExitCode::Ok)
}

/// A stop request the worker heeds at its own pace: unlike a run's, the first SIGTERM/SIGINT
/// does not stop running phases (they get the grace period); a second one exits at once.
#[cfg(feature = "restate")]
fn stop_on_signals() -> crate::proc::Cancel {
    use std::sync::atomic::{AtomicI32, Ordering};
    static STOP: AtomicI32 = AtomicI32::new(0);
    extern "C" fn on_signal(sig: libc::c_int) {
        if STOP.swap(sig, Ordering::SeqCst) != 0 {
            // Children die with the worker (PDEATHSIG); the server hands their jobs on.
            unsafe { libc::_exit(128 + sig) }
        }
    }
    for sig in crate::proc::STOP_SIGNALS {
        // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    let cancel = crate::proc::Cancel::new();
    let watch = cancel.clone();
    std::thread::spawn(move || loop {
        let sig = STOP.load(Ordering::SeqCst);
        if sig != 0 {
            watch.request(sig);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    cancel
}

/// One job with the local engine: the run's records so far folded in memory, the agents and
/// guard the run recorded, one command performed.
#[cfg(feature = "restate")]
fn perform(
    repo: &std::path::Path,
    ws: &crate::workspace::GitWorkspace,
    state: &crate::runs::StateDir,
    jobs: usize,
    task: crate::restate::worker::Task,
) -> Result<Option<crate::restate::worker::Carried>, String> {
    use crate::engine::{GuardHooks, Hooks, Outcome, StackHooks};
    let crate::restate::worker::Task { run_id, issue, command, queued, bodies, cancel } = task;
    let clock = crate::clock::Clock::from_env();
    let recorder = crate::engine::remote::seeded(&run_id, clock.clone(), bodies).map_err(|e| e.to_string())?;
    let view = recorder.view().clone();
    let ids: Vec<&str> = view.start.issues.iter().map(|p| p.id.as_str()).collect();
    let agents = crate::agent::PhaseAgentSet::from_start(&view.start, &ids, "the recorded scenario")
        .map_err(|e| e.to_string())?;
    let verify = super::verify_env(state, false);
    let mut guard = view.start.guard.as_ref().and_then(|g| crate::guard::Guard::from_spec(g, repo));
    if let (Some(g), true) = (&mut guard, jobs > 1) {
        g.siblings = view.start.issues.iter().map(|p| (p.branch.to_string(), p.worktree.clone())).collect();
        g.scratch = Some(verify.scratch_root.clone());
    }
    let stack = guard.as_ref().and_then(|g| g.stack());
    let guard_hooks = guard.as_ref().map(GuardHooks);
    let stack_hooks = stack.as_ref().map(StackHooks);
    let mut collect = Collect(Vec::new());
    let settings = crate::engine::Settings::new(1, clock, cancel.clone()).with_verify(verify);
    let hooks = [guard_hooks.as_ref().map(|h| h as &dyn Hooks), stack_hooks.as_ref().map(|h| h as &dyn Hooks)];
    let run_budget = view.start.max_cost_usd_per_run().is_some();
    let more = |next: &crate::machine::Command| crate::restate::chains(next, run_budget);
    let engine = super::run::assemble(recorder, &agents, ws, &mut collect, settings, hooks);
    let done = crate::proc::with_cancel(&cancel, || engine.perform(&issue, command, queued, &more))
        .map_err(|e| e.to_string())?;
    Ok(match done.outcome {
        Outcome::Finished => {
            let chained = done.chained.into_iter().map(|(command, at)| crate::restate::Chained { command, at });
            Some((collect.0, chained.collect()))
        }
        Outcome::Interrupted => None,
    })
}

/// Keeps the records a job journaled, to report them.
#[cfg(feature = "restate")]
struct Collect(Vec<crate::restate::Entry>);

#[cfg(feature = "restate")]
impl crate::engine::Observer for Collect {
    fn record(
        &mut self,
        rec: &crate::journal::Record,
        _: &crate::journal::view::Applied,
        _: &crate::journal::view::RunView,
    ) {
        self.0.push(crate::restate::Entry { time: rec.content.time, body: rec.content.body.clone() });
    }
}
