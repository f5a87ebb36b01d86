//! `loop worker`: takes jobs from the queue, carries each out in this clone, pushes the issue's
//! branch to `origin`, and completes the job under its lease.
//!
//! Invariants:
//! - A worker listens on no port: it pulls (an idle slot waits in the queue, `wait_take`, and
//!   is handed the next job as it is queued; a slot that finished a job completes it and takes
//!   the next in one call), renews its lease by heartbeat, and completes; a lapsed lease makes
//!   the job anyone's again, with a new attempt number, and this worker's later result for it
//!   is refused.
//! - Before a job the worker makes its clone agree with `origin`: it fetches, moves loop's
//!   branches of the run to their pushed tips, and rebuilds the issue's worktree from the pushed
//!   branch when what it has differs (another worker may have carried the issue's last job).
//!   A job names the tips the run recorded for its branches; when the clone holds exactly those
//!   already (this worker pushed them, or fetched them for this run), the fetch is skipped: what
//!   `origin` holds beyond them is no record's, and the push's lease still refuses to move a
//!   branch that changed under the job.
//! - The run's log is read once per worker and then only from where it was left: entries are
//!   never rewritten, only appended.
//! - A job's branch is pushed before its result is reported, with `--force-with-lease` on the
//!   tip `origin` had when the job started, so a worker whose lease lapsed cannot move the
//!   branch under the attempt that replaced it. One exception, which holds no work: a job that
//!   only created the branch at a commit `origin` holds already (the run's base, a
//!   dependency's recorded tip), with a phase to follow, reports that tip unpushed; any worker
//!   makes the branch again from the recorded tip, and the next job pushes whatever differs
//!   from `origin` (leasing on `origin` lacking the branch).
//! - The clone is a cache of `origin`, not a record: a job counts once its branch is pushed and
//!   its result accepted, and a restarted worker fetches and checks before it trusts anything
//!   here. Its git effects are therefore not fsynced (a local run's are, because its journal
//!   claims them); a power cut on a worker costs at most the job in flight.
//! - loop's own troubles here (git, disk, the network) hand the job back; they never become the
//!   issue's failure. A stop (SIGTERM, SIGINT) lets running jobs finish within the grace period,
//!   then interrupts them and hands them back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::Ingress;
use super::{
    paths, Chained, CompleteTake, Completion, Entry, Fence, JobDone, Lease, RestateError, Take, Tips, WaitTake,
};
use crate::journal::Body;
use crate::machine::Command;
use crate::proc::{self, Cancel, Cmd};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOpts {
    pub ingress: String,
    pub queue: String,
    pub jobs: usize,
    pub lease: Duration,
    pub grace: Duration,
    /// This worker's name in the queue (`host:pid`).
    pub name: String,
    /// The clone's root.
    pub repo: PathBuf,
    /// Print each job's timings on stderr (`LOOP_WORKER_TIMES`, which `loop bench` sets).
    pub times: bool,
}

/// What a job needs carried out, with this clone's paths.
pub struct Task {
    pub run_id: String,
    pub issue: String,
    pub command: Command,
    /// The commands the issue's workflow holds after `command`.
    pub queued: Vec<Command>,
    /// The run's records so far, `run_started` first.
    pub bodies: Vec<Body>,
    /// Interrupts the job (a stop past the grace period, or a lost lease).
    pub cancel: Cancel,
}

/// Carries a task out with the local engine (going on with the short commands that follow it,
/// [`super::chains`]); returns the records it journaled and the commands it went on with, or
/// None when it was interrupted.
pub type Perform<'a> = dyn Fn(Task) -> Result<Option<Carried>, String> + Sync + 'a;

/// What a job carried out: the records it journaled, and the commands it went on with.
pub type Carried = (Vec<Entry>, Vec<Chained>);

const GIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The clone's refs are shared by the worker's job slots: one fetch, sync or push at a time.
static GIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A run's log as this worker read it (with this clone's paths), in the pieces its reads
/// brought: entries are only ever appended, so each piece is shared as it is. A job takes the
/// log from the cache without copying it under the lock its job slots share; the one copy it
/// makes is its own in-memory journal's.
type Log = Vec<Arc<[Entry]>>;

/// What the worker's job slots share: the runs' logs as read so far, and what this process
/// knows of its clone.
#[derive(Default)]
struct Shared {
    /// Per run (the most recent few): the log, and the submitter's repo root its paths were
    /// moved from.
    logs: std::sync::Mutex<Vec<(String, String, Log)>>,
    /// Runs this process fetched `origin` for: the run's base (on `origin` when it was
    /// submitted) is in the clone.
    fetched: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Worktrees a job of this process left at a tip, clean (their next job need not look).
    left: std::sync::Mutex<std::collections::HashMap<PathBuf, String>>,
}

/// How many runs' logs a worker keeps (a run's log is read from the start again after).
const LOGS_KEPT: usize = 4;

impl Shared {
    /// The run's log with this clone's paths: what was read before, and what was appended since.
    /// Returns the submitter's repo root and the log.
    fn log(&self, ingress: &Ingress, run_id: &str, ours: &str) -> Result<(String, Log), String> {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let at = match logs.iter().position(|(r, _, _)| r == run_id) {
            Some(at) => at,
            None => {
                if logs.len() >= LOGS_KEPT {
                    logs.remove(0);
                }
                logs.push((run_id.to_string(), String::new(), Vec::new()));
                logs.len() - 1
            }
        };
        let (_, theirs, cached) = &mut logs[at];
        let read: usize = cached.iter().map(|piece| piece.len()).sum();
        let fresh = read_log_from(ingress, run_id, read as u64).map_err(|e| e.to_string())?;
        if read == 0 {
            let Some(Entry { body: Body::RunStarted(start), .. }) = fresh.first() else {
                return Err(format!("run {run_id}: its log does not start with run_started"));
            };
            *theirs = start.repo.clone();
        }
        if !fresh.is_empty() {
            cached.push(paths::remap(fresh, theirs, ours)?.into());
        }
        Ok((theirs.clone(), cached.clone()))
    }

    fn fetched(&self, run_id: &str) -> bool {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner()).contains(run_id)
    }

    fn note_fetch(&self, run_id: &str) {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner()).insert(run_id.to_string());
    }

    fn left_at(&self, worktree: &Path) -> Option<String> {
        self.left.lock().unwrap_or_else(|e| e.into_inner()).get(worktree).cloned()
    }

    /// A job's result was refused: what this process left is no record's.
    fn forget(&self) {
        self.left.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn leave(&self, worktree: &Path, tip: Option<String>) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        match tip {
            Some(tip) if worktree.join(".git").exists() => left.insert(worktree.to_path_buf(), tip),
            _ => left.remove(worktree),
        };
    }
}

/// Runs until `stop` is requested (and running jobs are finished or handed back).
pub fn run(opts: &WorkerOpts, stop: &Cancel, perform: &Perform<'_>) -> Result<(), RestateError> {
    let ingress = Ingress::new(&opts.ingress);
    let shared = Shared::default();
    std::thread::scope(|scope| {
        for slot in 0..opts.jobs.max(1) {
            let ingress = ingress.clone();
            let shared = &shared;
            scope.spawn(move || slot_loop(opts, slot, &ingress, shared, stop, perform));
        }
    });
    Ok(())
}

/// How long one waiting take lasts: a stop request waits at most this long for the take to
/// come back (a job it brings is handed back at once).
const TAKE_WAIT: Duration = Duration::from_secs(2);

fn slot_loop(opts: &WorkerOpts, slot: usize, ingress: &Ingress, shared: &Shared, stop: &Cancel, perform: &Perform<'_>) {
    let take = Take { worker: format!("{}#{slot}", opts.name), lease_ms: opts.lease.as_millis() as u64 };
    let mut waiting = Instant::now();
    // The job the last completion brought (taken in the same call).
    let mut next: Option<Lease> = None;
    while !stop.is_requested() {
        let lease = match next.take() {
            Some(lease) => lease,
            // A waiting take: the queue hands this slot the next job as it is queued (no
            // poll's delay), or answers none after TAKE_WAIT.
            None => {
                let asked = Instant::now();
                match ingress
                    .wait_take(&opts.queue, &WaitTake { take: take.clone(), wait_ms: TAKE_WAIT.as_millis() as u64 })
                {
                    Ok(Some(lease)) => lease,
                    Ok(None) => {
                        // An answer well before the wait's end (a lease about to lapse): no tight loop.
                        if asked.elapsed() < Duration::from_millis(20) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    }
                    Err(e) => {
                        eprintln!("loop worker: {e}; trying again");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
        };
        if stop.is_requested() {
            let _ = ingress.release(&opts.queue, &Fence { job_id: lease.job.id.clone(), token: lease.token });
            break;
        }
        if opts.times {
            eprintln!("loop worker: idle {} ms before {}", waiting.elapsed().as_millis(), lease.job.id);
        }
        next = carry_out(opts, ingress, shared, lease, &take, stop, perform);
        waiting = Instant::now();
    }
}

fn carry_out(
    opts: &WorkerOpts,
    ingress: &Ingress,
    shared: &Shared,
    lease: Lease,
    take: &Take,
    stop: &Cancel,
    perform: &Perform<'_>,
) -> Option<Lease> {
    let Lease { job, token, lease_ms } = lease;
    let began = Instant::now();
    let what = command_name(&job.command);
    eprintln!("loop worker: took {} {what} (attempt {token})", job.id);
    let fence = Fence { job_id: job.id.clone(), token };
    let cancel = Cancel::new();
    let lost = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let outcome = std::thread::scope(|scope| {
        // Heartbeat: renew at a third of the lease; a refused renewal means the job went to
        // another attempt, so this one stops. A stop request past the grace interrupts it.
        let (lost2, cancel2, fence2) = (lost.clone(), cancel.clone(), fence.clone());
        scope.spawn(move || {
            let every = Duration::from_millis((lease_ms / 3).max(50));
            let mut last = Instant::now();
            let mut stop_seen: Option<Instant> = None;
            // Woken at once when the job ends (its sender is dropped).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(Duration::from_millis(50))
            {
                if stop.is_requested() {
                    let since = *stop_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= opts.grace {
                        cancel2.request(libc::SIGTERM);
                    }
                }
                if last.elapsed() >= every {
                    last = Instant::now();
                    if let Ok(false) = ingress.renew(&opts.queue, &fence2) {
                        lost2.store(true, Ordering::SeqCst);
                        cancel2.request(libc::SIGTERM);
                    }
                }
            }
        });
        let result = attempt(opts, ingress, shared, &job, cancel.clone(), perform);
        drop(done_tx);
        result
    });
    if lost.load(Ordering::SeqCst) {
        eprintln!("loop worker: {} {what} refused (lease lapsed)", job.id);
        shared.forget();
        return None;
    }
    match outcome {
        Ok(Some(done)) => {
            let done = Completion { job_id: job.id.clone(), token, done };
            // The next job in the same call, unless this worker is stopping.
            let take = (!stop.is_requested()).then(|| take.clone());
            match ingress.complete_take(&opts.queue, &CompleteTake { done, take }) {
                Ok(super::Completed { accepted: true, next }) => {
                    eprintln!("loop worker: {} {what} done", job.id);
                    if opts.times {
                        eprintln!("loop worker: {} took {} ms", job.id, began.elapsed().as_millis());
                    }
                    next
                }
                Ok(super::Completed { accepted: false, next }) => {
                    eprintln!("loop worker: {} {what} refused (lease lapsed)", job.id);
                    shared.forget();
                    next
                }
                Err(e) => {
                    eprintln!("loop worker: {} {what}: reporting the result failed: {e}", job.id);
                    None
                }
            }
        }
        Ok(None) => {
            eprintln!("loop worker: {} {what} interrupted; handed back", job.id);
            let _ = ingress.release(&opts.queue, &fence);
            None
        }
        Err(e) => {
            eprintln!("loop worker: {} {what}: {e}; handed back", job.id);
            let _ = ingress.release(&opts.queue, &fence);
            // Not in a tight loop: the same trouble would meet the next attempt at once.
            std::thread::sleep(Duration::from_secs(1));
            None
        }
    }
}

/// The command's name as the journal's commands are named.
fn command_name(c: &Command) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Object(m) => m.keys().next().cloned(),
            _ => None,
        })
        .unwrap_or_else(|| "command".into())
}

/// One attempt at a job: read the run's log, sync the clone, perform, push.
fn attempt(
    opts: &WorkerOpts,
    ingress: &Ingress,
    shared: &Shared,
    job: &super::Job,
    cancel: Cancel,
    perform: &Perform<'_>,
) -> Result<Option<JobDone>, String> {
    let (run_id, issue) = (job.run_id.as_str(), job.issue.as_str());
    let t0 = Instant::now();
    let ours = opts.repo.display().to_string();
    let (theirs, log) = shared.log(ingress, run_id, &ours)?;
    let t_read = t0.elapsed();
    let Some(Entry { body: Body::RunStarted(start), .. }) = log.first().and_then(|piece| piece.first()) else {
        return Err(format!("run {run_id}: its log does not start with run_started"));
    };
    let command = paths::remap_value(job.command.clone(), &theirs, &ours)?;
    let queued = paths::remap_value(job.queued.clone(), &theirs, &ours)?;
    let base_commit = start.base_commit.clone();
    let planned = start.issues.iter().find(|p| p.id.as_str() == issue).cloned();
    let Some(planned) = planned else { return Err(format!("issue {issue} is not in run {run_id}")) };
    // Only the job's own branch and its dependencies' (ended, so nobody moves them): another
    // job of this worker may be at work on any other branch.
    let mut branches: Vec<String> = vec![planned.branch.to_string()];
    for dep in &planned.blocked_by {
        if let Some(p) = start.issues.iter().find(|p| p.id == *dep) {
            branches.push(p.branch.to_string());
        }
    }
    let git = Git { repo: &opts.repo };
    let own_path = PathBuf::from(&planned.worktree);
    // `prepare` and `create_worktree` make the worktree themselves (or decide not to).
    let needs_worktree = !matches!(command, Command::Prepare | Command::CreateWorktree { .. });
    // `started_at`: the job's branch on `origin` as this clone knows it (the push's lease).
    let (started_at, fetched) = {
        let _one = GIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let expected: Option<Vec<Option<String>>> = branches.iter().map(|b| job.tips.get(b).cloned()).collect();
        let tips = git.tips(&branches)?;
        let current = shared.fetched(run_id)
            && expected.as_ref().is_some_and(|e| e.iter().zip(&tips).all(|(want, (here, _))| want == here));
        if current {
            if needs_worktree {
                if let Some(tip) = &tips[0].0 {
                    let known_clean = shared.left_at(&own_path).as_deref() == Some(tip.as_str());
                    git.ensure_worktree(&branches[0], &own_path, tip, !known_clean)?;
                }
            }
            (tips[0].1.clone(), false)
        } else {
            git.fetch()?;
            shared.note_fetch(run_id);
            let recorded: Vec<Option<String>> = branches.iter().map(|b| job.tips.get(b).cloned().flatten()).collect();
            (git.sync_branches(&branches, &recorded, &own_path, needs_worktree)?, true)
        }
    };
    // Whatever happens to the job from here, this worktree is no longer known clean.
    shared.leave(&own_path, None);
    let t_sync = t0.elapsed();
    // The job's in-memory journal owns its records: the one copy of the log a job makes.
    let bodies = log.iter().flat_map(|piece| piece.iter()).map(|e| e.body.clone()).collect();
    let task = Task { run_id: run_id.to_string(), issue: issue.to_string(), command, queued, bodies, cancel };
    let Some((done, chained)) = perform(task)? else { return Ok(None) };
    let t_work = t0.elapsed();
    // A branch this job only created, at a commit `origin` holds already (the run's base or a
    // dependency's recorded tip), with a phase to follow: its push is left to the phase's job,
    // which pushes whatever differs from `origin`. Any worker can make the branch again from
    // the recorded tip, and the phase's push still leases on `origin` lacking the branch.
    let last = chained.last().map(|c| &c.command).unwrap_or(&job.command);
    let goes_on = matches!(last, Command::CreateWorktree { .. } | Command::StartPhase { .. });
    let on_origin = |tip: &str| {
        tip == base_commit || branches[1..].iter().any(|b| job.tips.get(b).is_some_and(|t| t.as_deref() == Some(tip)))
    };
    let tip = {
        let _one = GIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        git.push(planned.branch.as_str(), started_at.as_deref(), |tip| goes_on && on_origin(tip))?
    };
    shared.leave(&own_path, tip.clone());
    if opts.times {
        eprintln!(
            "loop worker: {issue}: read {} ms, {} {} ms, work {} ms, push {} ms",
            t_read.as_millis(),
            if fetched { "fetch and sync" } else { "check" },
            (t_sync - t_read).as_millis(),
            (t_work - t_sync).as_millis(),
            (t0.elapsed() - t_work).as_millis()
        );
    }
    let entries = paths::remap(done, &ours, &theirs)?;
    let chained = paths::remap_value(chained, &ours, &theirs)?;
    Ok(Some(JobDone { entries, tips: Tips::from([(planned.branch.to_string(), tip)]), chained }))
}

/// The entries of a run's log from `from` on.
fn read_log_from(ingress: &Ingress, run_id: &str, from: u64) -> Result<Vec<Entry>, RestateError> {
    let mut all = Vec::new();
    loop {
        let page = ingress.read(run_id, from + all.len() as u64)?;
        let got = page.entries.len();
        all.extend(page.entries);
        if got == 0 || from + all.len() as u64 >= page.total {
            return Ok(all);
        }
    }
}

/// A branch's tip here and on `origin`.
type HereAndThere = (Option<String>, Option<String>);

/// git in the worker's clone, argv only.
struct Git<'a> {
    repo: &'a Path,
}

impl Git<'_> {
    fn git(&self, args: &[&str]) -> Result<String, String> {
        self.git_in(self.repo, args)
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> Result<String, String> {
        let out = proc::run(&Cmd::new("git").args(args.iter().copied()).cwd(dir).timeout(GIT_TIMEOUT))
            .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
        if !out.success() {
            return Err(format!("git {}: {}", args.join(" "), out.stderr_text().trim()));
        }
        Ok(out.stdout_text())
    }

    fn fetch(&self) -> Result<(), String> {
        self.git(&["fetch", "--quiet", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*"]).map(|_| ())
    }

    fn local_tip(&self, branch: &str) -> Option<String> {
        let r = format!("refs/heads/{branch}");
        self.git(&["rev-parse", "--verify", "--quiet", &r]).ok().map(|s| s.trim().to_string())
    }

    /// Worktrees of this clone by branch.
    fn worktrees(&self) -> Result<Vec<(PathBuf, Option<String>)>, String> {
        let out = self.git(&["worktree", "list", "--porcelain"])?;
        let mut all = Vec::new();
        let mut path: Option<PathBuf> = None;
        for line in out.lines() {
            if let Some(p) = line.strip_prefix("worktree ") {
                if let Some(prev) = path.take() {
                    all.push((prev, None));
                }
                path = Some(PathBuf::from(p));
            } else if let Some(b) = line.strip_prefix("branch refs/heads/") {
                if let Some(p) = path.take() {
                    all.push((p, Some(b.to_string())));
                }
            }
        }
        if let Some(p) = path {
            all.push((p, None));
        }
        Ok(all)
    }

    /// Local and `origin`'s tips of `branches`, in one git call.
    fn tips(&self, branches: &[String]) -> Result<Vec<HereAndThere>, String> {
        let out =
            self.git(&["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/remotes/origin"])?;
        let mut all = std::collections::HashMap::new();
        for line in out.lines() {
            if let Some((oid, name)) = line.split_once(' ') {
                all.insert(name.to_string(), oid.to_string());
            }
        }
        Ok(branches
            .iter()
            .map(|b| {
                (all.get(&format!("refs/heads/{b}")).cloned(), all.get(&format!("refs/remotes/origin/{b}")).cloned())
            })
            .collect())
    }

    /// Makes loop's branches of the run agree with `origin`: a branch at another tip (and a
    /// worktree of it) is moved to the pushed tip; a branch not on `origin` is made at the tip
    /// the run recorded for it (`recorded`, per branch) when this clone has that commit (a job
    /// created it there and left its push to the next job), else dropped (its job did not
    /// complete, so nothing the run recorded is on it). With `add`, the job's own worktree
    /// (`branches[0]`) is rebuilt on that tip when it is missing, and cleaned of what a dead
    /// attempt left. Returns `origin`'s tip of the job's branch.
    fn sync_branches(
        &self,
        branches: &[String],
        recorded: &[Option<String>],
        own_path: &Path,
        add: bool,
    ) -> Result<Option<String>, String> {
        let tips = self.tips(branches)?;
        let target: Vec<Option<String>> = (0..branches.len())
            .map(|i| match (&tips[i].1, recorded.get(i).cloned().flatten()) {
                (Some(there), _) => Some(there.clone()),
                (None, Some(c)) if self.has_commit(&c) => Some(c),
                (None, _) => None,
            })
            .collect();
        let differ: Vec<usize> = (0..branches.len()).filter(|&i| tips[i].0 != target[i]).collect();
        if !differ.is_empty() {
            let worktrees = self.worktrees()?;
            for &i in &differ {
                let b = &branches[i];
                for (path, _) in worktrees.iter().filter(|(_, wb)| wb.as_deref() == Some(b.as_str())) {
                    let p = path.display().to_string();
                    self.git(&["worktree", "remove", "--force", &p])?;
                }
                match &target[i] {
                    Some(tip) => self.git(&["branch", "--force", "--no-track", b, tip])?,
                    None => self.git(&["branch", "-D", b])?,
                };
            }
            self.git(&["worktree", "prune"])?;
        }
        if let (true, Some(tip)) = (add, &target[0]) {
            self.ensure_worktree(&branches[0], own_path, tip, true)?;
        }
        Ok(tips[0].1.clone())
    }

    fn has_commit(&self, oid: &str) -> bool {
        self.git(&["cat-file", "-e", &format!("{oid}^{{commit}}")]).is_ok()
    }

    /// The job's worktree of branch `own` at `tip`: rebuilt when it is missing; with `look`,
    /// cleaned of anything a dead attempt left (one status call when it is clean and at the
    /// tip, as after this worker's own last job).
    fn ensure_worktree(&self, own: &str, own_path: &Path, tip: &str, look: bool) -> Result<(), String> {
        if !own_path.join(".git").exists() {
            if own_path.exists() {
                // A leftover directory git no longer knows as a worktree.
                std::fs::remove_dir_all(own_path).map_err(|e| format!("{}: {e}", own_path.display()))?;
            }
            if let Some(parent) = own_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let p = own_path.display().to_string();
            self.git(&["worktree", "add", "--quiet", &p, own])?;
        } else if look {
            let status = self.git_in(own_path, &["status", "--porcelain=v2", "--branch", "--untracked-files=all"])?;
            let at_tip = status.lines().any(|l| l.strip_prefix("# branch.oid ") == Some(tip));
            let clean = status.lines().all(|l| l.starts_with('#'));
            if !at_tip || !clean {
                self.git_in(own_path, &["reset", "--quiet", "--hard", tip])?;
                self.git_in(own_path, &["clean", "-fdq"])?;
            }
        }
        Ok(())
    }

    /// Pushes the branch if it differs from `origin` (`started_at`, as the job began); refused
    /// when `origin` moved since. A new branch whose tip `defer` accepts is not pushed (the
    /// issue's next job does). Returns the branch's tip as the run records it (None: no branch).
    fn push(
        &self,
        branch: &str,
        started_at: Option<&str>,
        defer: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, String> {
        let Some(tip) = self.local_tip(branch) else { return Ok(started_at.map(String::from)) };
        if started_at == Some(tip.as_str()) || (started_at.is_none() && defer(&tip)) {
            return Ok(Some(tip));
        }
        let lease = format!("--force-with-lease=refs/heads/{branch}:{}", started_at.unwrap_or(""));
        let spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        self.git(&["push", "--quiet", "--no-verify", &lease, "origin", &spec])?;
        Ok(Some(tip))
    }
}
