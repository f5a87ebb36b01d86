//! One milestone across hosts on Restate (feature `restate`; README "Beyond one machine").
//!
//! The same machine, another driver. Restate keeps what the local engine keeps in its journal
//! and threads: which issues are ready, each issue's progress, which effect is in flight. The
//! pieces:
//! - [`services`]: the Restate services the endpoint serves. `LoopRun` (a workflow per run id)
//!   is the scheduler: it starts an issue once its dependencies ended, as the local scheduler
//!   does. `LoopIssue` (a workflow per run and issue) drives one issue: [`crate::machine::resume`]
//!   and [`crate::machine::transition`] (the same functions the local engine calls) decide every
//!   step; the journal-only command `start_phase` is a durable step of its own, every other
//!   command is a job for a worker. `LoopJobs` (a virtual object) is the job queue with leases;
//!   `LoopLog` (a virtual object per run) is the run's journal in Restate, in order, which the
//!   submitting clone mirrors.
//! - [`serve`]: `loop restate serve`, the endpoint (an accept loop that sets `TCP_NODELAY`) and
//!   its registration with the server's admin API.
//! - [`worker`]: `loop worker`: takes jobs, carries each out with the local engine's own code
//!   ([`crate::engine::remote`]) in a worktree of its clone, pushes the issue's branch to `origin`
//!   and completes the job under its lease.
//! - [`mirror`]: the submitting side: submits a run, mirrors `LoopLog` into the clone's own
//!   journal (same records, same chain), `loop sync`.
//! - [`client`]: the small blocking HTTP client of the ingress.
//!
//! Invariants:
//! - No second state machine: the only place an issue's state changes is
//!   [`crate::machine::transition`], called by the `LoopIssue` workflow on every event a worker
//!   reports; a worker's own fold of the same events must agree, or the workflow stops the issue
//!   as nondeterministic (a worker of other code).
//! - A job's result is applied at most once, and only from the worker that holds its current
//!   lease: every take bumps the job's attempt number, which is the fencing token a completion
//!   must carry.
//! - The mirror is the audit record: entry `n` of `LoopLog` is record `n` of the clone's
//!   journal; a record already there is skipped, so mirroring is idempotent.

pub mod client;
pub mod mirror;
pub mod paths;
pub mod serve;
pub mod services;
pub mod worker;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::journal::Body;
use crate::machine::{Command, Rules};
use crate::vocab::PlannedIssue;

/// The queue every worker takes from unless told otherwise (`--queue`).
pub const DEFAULT_QUEUE: &str = "default";

/// One journal record without its place in a chain (the mirror seals it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub body: Body,
}

/// Branch tips as the run knows them: branch → the commit `origin` holds for it (None: the
/// branch is not on `origin`). A branch missing from the map is not known. A job carries the
/// tips of the branches it needs, so a worker whose clone already holds exactly these (its own
/// last job pushed them) skips its fetch.
pub type Tips = std::collections::BTreeMap<String, Option<String>>;

/// What `loop run --engine restate` submits: the run's first record, as the clone journaled it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInput {
    pub run_id: String,
    pub queue: String,
    pub first: Entry,
    /// The run's issue branches as `origin` held them when the run was submitted.
    #[serde(default)]
    pub origin_tips: Tips,
}

/// What `LoopRun` gives each `LoopIssue` it starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueInput {
    pub run_id: String,
    pub queue: String,
    pub planned: PlannedIssue,
    pub rules: Rules,
    /// `rules.verify`, which `Rules` does not serialize (the journal derives it per issue).
    pub verify: bool,
    /// A per-run cost budget is set: `start_phase` needs the whole run's spend, so a worker
    /// (which folds the whole log) decides it.
    pub run_budget: bool,
    /// The tips of the issue's branch and its dependencies' branches, where known.
    #[serde(default)]
    pub tips: Tips,
}

/// How an issue ended (the stage's name, as `status` shows it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueEnd {
    pub issue: String,
    pub stage: String,
    /// The issue's branch on `origin` after its last job, where known.
    #[serde(default)]
    pub tips: Tips,
}

/// How a run ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunEnd {
    pub run_id: String,
    pub issues: Vec<IssueEnd>,
}

/// One command of one issue for a worker to carry out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `RUN/ISSUE/N`: the issue's Nth job.
    pub id: String,
    pub run_id: String,
    pub issue: String,
    pub command: Command,
    /// The awakeable the issue's workflow waits on.
    pub awakeable: String,
    /// The tips the job's branches (the issue's own, its dependencies') have on `origin`, as
    /// the run recorded them; a branch missing here makes the worker fetch.
    #[serde(default)]
    pub tips: Tips,
    /// The commands the issue's workflow holds after this one (the machine emitted them
    /// together): a worker that goes on takes them in this order.
    #[serde(default)]
    pub queued: Vec<Command>,
}

/// A job as a worker holds it: `token` is the attempt number that fences its completion.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lease {
    pub job: Job,
    pub token: u64,
    pub lease_ms: u64,
}

/// A worker asking for a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Take {
    pub worker: String,
    pub lease_ms: u64,
}

/// A worker asking for a job and willing to wait for one: `LoopJobs/wait_take` answers as soon
/// as a job is queued for it (the queue hands it over), or with none after `wait_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaitTake {
    pub take: Take,
    pub wait_ms: u64,
}

/// A worker's result for the job it holds, and its ask for the next job (None: it stops).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompleteTake {
    pub done: Completion,
    pub take: Option<Take>,
}

/// The answer to a [`CompleteTake`]: whether the result was accepted, and the next job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Completed {
    pub accepted: bool,
    pub next: Option<Lease>,
}

/// A take that found nothing free and left a waiter behind: the awakeable the queue resolves
/// with a lease when a job is queued or handed back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Waiter {
    pub awakeable: String,
    pub take: Take,
}

/// What `LoopJobs/take_or_wait` answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Offer {
    /// A job, leased to the taker.
    Lease(Box<Lease>),
    /// Nothing free: the waiter is registered; `lapse_ms` is when the earliest lease lapses
    /// (ms since the epoch; 0: none held), after which a take may find that job.
    Wait { lapse_ms: u64 },
}

/// A worker naming the job it holds (renew, release).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fence {
    pub job_id: String,
    pub token: u64,
}

/// A worker's result for the job it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Completion {
    pub job_id: String,
    pub token: u64,
    #[serde(flatten)]
    pub done: JobDone,
}

/// What a job did: the records it journaled, and where it left the issue's branch on `origin`
/// (what the job's awakeable resolves with).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobDone {
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub tips: Tips,
    /// Commands the worker carried out after the job's own, where the machine asked for a
    /// short one next: each with how many of `entries` came before it.
    #[serde(default)]
    pub chained: Vec<Chained>,
}

/// A command a worker carried out after its job's own ([`JobDone::chained`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chained {
    pub command: Command,
    /// How many of the job's entries were journaled before it began.
    pub at: u64,
}

/// Whether a worker goes on with `next` after a job's command instead of handing it back to
/// the issue's workflow as a job of its own: the short steps between phases (worktrees,
/// merging bases, the licence to start a phase unless the whole run's budget must decide it).
/// A phase and a verification are always a job of their own, so their start is seen as it
/// happens and each result is kept as soon as it is in.
pub fn chains(next: &Command, run_budget: bool) -> bool {
    match next {
        Command::CreateWorktree { .. }
        | Command::MergeBases { .. }
        | Command::RemoveWorktree { .. }
        | Command::KeepWorktree { .. } => true,
        Command::StartPhase { .. } => !run_budget,
        Command::Prepare | Command::RunPhase { .. } | Command::Verify { .. } | Command::Finish => false,
    }
}

/// A page of a run's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// How many entries the log holds.
    pub total: u64,
}

/// A job as `loop restate jobs` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSlot {
    pub job: Job,
    pub token: u64,
    pub holder: Option<String>,
    pub lease_until_ms: u64,
    pub lease_ms: u64,
    /// The waiter (awakeable) the job was handed to, while that take may still give up: a
    /// waiter that timed out hands the job back rather than let its lease lapse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_to: Option<String>,
}

impl JobSlot {
    /// Whether `fence` names this job's current attempt: the one fencing rule renew, release
    /// and complete share.
    pub fn fenced_by(&self, job_id: &str, token: u64) -> bool {
        self.job.id == job_id && self.token == token
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestateError {
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: the server answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: unexpected answer: {reason}")]
    Decode { url: String, reason: String },
    #[error("{0}")]
    Git(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}
