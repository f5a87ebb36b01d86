//! `loop restate serve|jobs`, and the Restate side of `loop run --engine restate` (README
//! "Beyond one machine"). Without the `restate` feature every entry point says how to build
//! loop with it.

use clap::{Args, Subcommand, ValueEnum};

use super::{CliError, ExitCode};

/// Which engine drives a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// This process, in this clone (the default).
    #[default]
    Local,
    /// Restate: workflows on a Restate server, phases on `loop worker`s on any host.
    Restate,
}

/// How `loop run` reaches another engine.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Which engine drives the run: `local` (this process) or `restate` (a Restate server with
    /// `loop restate serve` registered and `loop worker`s; README "Beyond one machine").
    #[arg(long, value_enum, default_value_t = EngineKind::Local)]
    pub engine: EngineKind,
    /// The Restate ingress (with --engine restate).
    #[arg(long, env = "LOOP_RESTATE_INGRESS", value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub ingress: String,
    /// With --engine restate: print the run id and return at once; `loop watch RUN` follows it
    /// later and mirrors its journal here.
    #[arg(long)]
    pub detach: bool,
    /// With --engine restate: the job queue the run's phases go to (workers take from one queue).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub queue: String,
}

#[derive(Args, Debug)]
pub struct RestateArgs {
    #[command(subcommand)]
    pub command: RestateCommand,
}

#[derive(Subcommand, Debug)]
pub enum RestateCommand {
    /// Serve loop's Restate services (the endpoint) and register them with the server.
    ///
    /// Registration is idempotent: serving a new build of loop at the same address registers it
    /// again (how an upgrade reaches the server). The endpoint holds no state: kill and restart
    /// it at will; the server retries what was in flight.
    Serve {
        /// Where the endpoint listens (keep it on loopback unless the server is on another host).
        #[arg(long, default_value = "127.0.0.1:9080", value_name = "ADDR")]
        listen: String,
        /// The server's admin API, to register with.
        #[arg(long, env = "LOOP_RESTATE_ADMIN", default_value = "http://127.0.0.1:9070", value_name = "URL")]
        admin: String,
        /// The URL the server reaches this endpoint at [default: http://ADDR].
        #[arg(long, value_name = "URL")]
        advertise: Option<String>,
        /// Serve without registering.
        #[arg(long)]
        no_register: bool,
        /// Serve only requests the server signed with this key (`publickeyv1_…`, repeatable):
        /// Restate's request identity, for an endpoint other hosts can reach.
        #[arg(long = "identity-key", env = "LOOP_RESTATE_IDENTITY_KEY", value_name = "KEY")]
        identity_keys: Vec<String>,
    },
    /// List the job queue: each job, its attempt and who holds its lease.
    Jobs {
        #[arg(long, env = "LOOP_RESTATE_INGRESS", default_value = "http://127.0.0.1:8080", value_name = "URL")]
        ingress: String,
        #[arg(long, default_value = "default", value_name = "NAME")]
        queue: String,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// What to say when loop was built without the feature.
pub fn not_built() -> CliError {
    CliError::Usage(
        "this loop was built without Restate support; install it with `cargo install --path . --features restate` \
         (README \"Beyond one machine\")"
            .into(),
    )
}

#[cfg(not(feature = "restate"))]
pub fn run(_: RestateArgs) -> Result<ExitCode, CliError> {
    Err(not_built())
}

#[cfg(feature = "restate")]
pub fn run(args: RestateArgs) -> Result<ExitCode, CliError> {
    use crate::restate::client::Ingress;
    match args.command {
        RestateCommand::Serve { listen, admin, advertise, no_register, identity_keys } => {
            let addr: std::net::SocketAddr =
                listen.parse().map_err(|e| CliError::Usage(format!("--listen {listen}: {e}")))?;
            let admin = (!no_register).then_some(admin);
            crate::restate::serve::serve(addr, admin, advertise, &identity_keys, |uri| {
                crate::eoutln!("loop: restate endpoint serving on {uri}");
            })
            .map_err(|e| match e {
                crate::restate::RestateError::Refused(m) => CliError::Usage(m),
                e => CliError::Remote(e.to_string()),
            })?;
            Ok(ExitCode::Ok)
        }
        RestateCommand::Jobs { ingress, queue, json } => {
            let jobs = Ingress::new(&ingress).jobs(&queue).map_err(|e| CliError::Remote(e.to_string()))?;
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&jobs).expect("jobs serialize"));
            } else if jobs.is_empty() {
                crate::outln!("no jobs in queue {queue}");
            } else {
                for j in jobs {
                    let holder = j.holder.as_deref().unwrap_or("(queued)");
                    crate::outln!("{}  attempt {}  {}", j.job.id, j.token, holder);
                }
            }
            Ok(ExitCode::Ok)
        }
    }
}

/// `loop run --engine restate`: hands the journaled run to Restate and mirrors it here until it
/// ends (or at once with --detach).
#[cfg(feature = "restate")]
pub fn submit(
    begun: super::run::Begun,
    engine: &EngineArgs,
    progress: &mut crate::render::progress::Progress,
) -> Result<(ExitCode, crate::journal::view::RunView), CliError> {
    use crate::restate::client::{url_safe, Ingress};
    use crate::restate::{Entry, RunInput};
    let super::run::Begun { mut recorder, state, repo, locks, .. } = begun;
    let view = recorder.view().clone();
    let run_id = view.run_id.clone();
    if !url_safe(&engine.queue) {
        return Err(CliError::Usage(format!("--queue {}: use letters, digits, '-', '_' and '.'", engine.queue)));
    }
    check_base_on_origin(&repo, &view.start.base_commit)?;
    let origin_tips = origin_tips(&repo, &view.start)?;
    mark(&state, &run_id, &engine.ingress)?;
    let first = Entry { time: view.started_at, body: crate::journal::Body::RunStarted(view.start.clone()) };
    let ingress = Ingress::new(&engine.ingress);
    ingress
        .submit(&RunInput { run_id: run_id.clone(), queue: engine.queue.clone(), first, origin_tips })
        .map_err(|e| CliError::Remote(format!("submitting run {run_id}: {e}")))?;
    if engine.detach {
        crate::outln!("{run_id}");
        crate::eoutln!("loop: run {run_id} submitted to {}; follow it with `loop watch {run_id}`", engine.ingress);
        return Ok((ExitCode::Ok, view));
    }
    super::install_interrupt_handler();
    let stop = crate::proc::Cancel::process();
    crate::restate::mirror::sync(&mut recorder, &ingress, progress, &stop, true)
        .map_err(|e| CliError::Remote(e.to_string()))?;
    drop(locks);
    let view = recorder.view().clone();
    if !view.finished {
        crate::eoutln!(
            "loop: stopped following run {run_id}; it goes on on Restate: `loop watch {run_id}` follows it again"
        );
        return Ok((ExitCode::for_signal(crate::proc::cancel_signal()), view));
    }
    Ok((super::run_exit_code(&view, crate::engine::Outcome::Finished), view))
}

/// Workers branch from `origin`: the run's base must be there.
#[cfg(feature = "restate")]
fn check_base_on_origin(repo: &std::path::Path, base: &str) -> Result<(), CliError> {
    use crate::proc::{run, Cmd};
    let git = |args: &[&str]| {
        run(&Cmd::new("git").args(args.iter().copied()).cwd(repo).timeout(std::time::Duration::from_secs(300)))
            .map_err(|e| CliError::Remote(format!("git {}: {e}", args.join(" "))))
    };
    let fetch = git(&["fetch", "--quiet", "origin"])?;
    if !fetch.success() {
        return Err(CliError::Remote(format!(
            "git fetch origin: {} (workers take the run's base from origin, the team's shared remote)",
            fetch.stderr_text().trim()
        )));
    }
    let on = git(&["branch", "--remotes", "--contains", base])?;
    if !on.success() || on.stdout_text().trim().is_empty() {
        return Err(CliError::Usage(format!(
            "the run's base {base} (HEAD) is not on origin: push it first (workers branch from origin)"
        )));
    }
    Ok(())
}

/// Where `origin` (as just fetched) has each of the run's issue branches: workers that already
/// hold these tips need not fetch before an issue's first job.
#[cfg(feature = "restate")]
fn origin_tips(repo: &std::path::Path, start: &crate::journal::RunStart) -> Result<crate::restate::Tips, CliError> {
    use crate::proc::{run, Cmd};
    let args = ["for-each-ref", "--format=%(objectname) %(refname)", "refs/remotes/origin"];
    let out = run(&Cmd::new("git").args(args).cwd(repo).timeout(std::time::Duration::from_secs(300)))
        .map_err(|e| CliError::Remote(format!("git {}: {e}", args.join(" "))))?;
    if !out.success() {
        return Err(CliError::Remote(format!("git {}: {}", args.join(" "), out.stderr_text().trim())));
    }
    let text = out.stdout_text();
    let on_origin: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(oid, name)| name.strip_prefix("refs/remotes/origin/").map(|b| (b, oid)))
        .collect();
    Ok(start
        .issues
        .iter()
        .map(|p| (p.branch.to_string(), on_origin.get(p.branch.as_str()).map(|o| o.to_string())))
        .collect())
}

/// Records in the run's directory which ingress drives it (`resume` refuses such a run; `watch`
/// and `sync` find the ingress there).
#[cfg(feature = "restate")]
pub fn mark(state: &crate::runs::StateDir, run_id: &str, ingress: &str) -> Result<(), CliError> {
    let rel = std::path::Path::new("runs").join(run_id).join(crate::restate::mirror::MARKER);
    crate::safefs::write(&state.root, &rel, ingress.as_bytes())
        .map_err(|e| CliError::Fs { context: format!("run {run_id}"), source: e })
}

/// Mirrors run `run` of this state dir from Restate (creating the mirror when it is missing):
/// returns the run id, the records added, the records the mirror holds, whether the run finished.
#[cfg(feature = "restate")]
pub fn mirror(
    state: &crate::runs::StateDir,
    run: &str,
    ingress: Option<&str>,
    progress: &mut crate::render::progress::Progress,
    follow: bool,
) -> Result<(String, u64, u64, bool), CliError> {
    use crate::engine::Recorder;
    use crate::journal::{Body, Journal};
    use crate::restate::client::Ingress;
    let remote = |e: crate::restate::RestateError| CliError::Remote(e.to_string());
    let clock = crate::clock::Clock::from_env();
    let existing = state.resolve(run).ok();
    let (run_id, _lock, mut recorder, url) = match existing {
        Some(run_id) => {
            let marked = crate::safefs::read(
                &state.root,
                &std::path::Path::new("runs").join(&run_id).join(crate::restate::mirror::MARKER),
            )
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string());
            let url = ingress.map(str::to_string).or(marked).ok_or_else(|| {
                CliError::Usage(format!("run {run_id} was not submitted to Restate from here: give --ingress URL"))
            })?;
            let lock = state.lock(&run_id)?;
            let store = state.open_store(&run_id, &mut |note| eprintln!("loop: {note}"))?;
            let (journal, view) = Journal::reopen_view(Box::new(store), clock)??;
            (run_id, lock, Recorder::from_view(journal, view), url)
        }
        None => {
            let url = ingress.map(str::to_string).ok_or_else(|| {
                CliError::Usage(format!("no run {run} here: give --ingress URL to fetch it from Restate"))
            })?;
            let page = Ingress::new(&url).read(run, 0).map_err(remote)?;
            let Some(first) = page.entries.into_iter().next() else {
                return Err(CliError::Usage(format!("{url} knows no run {run}")));
            };
            let Body::RunStarted(start) = first.body else {
                return Err(CliError::Remote(format!("run {run}: its log does not start with run_started")));
            };
            let (lock, store) = state.create_run(run)?;
            let journal = Journal::create(Box::new(store), run, clock);
            let recorder = Recorder::start_at(journal, first.time, start, progress)?;
            mark(state, run, &url)?;
            (run.to_string(), lock, recorder, url)
        }
    };
    let before = recorder.records();
    let ingress = Ingress::new(&url);
    let stop = crate::proc::Cancel::process();
    if follow {
        super::install_interrupt_handler();
    }
    crate::restate::mirror::sync(&mut recorder, &ingress, progress, &stop, follow).map_err(remote)?;
    let after = recorder.records();
    Ok((run_id, after - before, after, recorder.view().finished))
}

/// The ingress a run was submitted to, when it was (its marker).
pub fn submitted_to(state: &crate::runs::StateDir, run_id: &str) -> Option<String> {
    let rel = std::path::Path::new("runs").join(run_id).join("restate");
    crate::safefs::read(&state.root, &rel).ok().flatten().map(|b| String::from_utf8_lossy(&b).trim().to_string())
}
