//! The Restate services `loop restate serve` binds: the run's scheduler (`LoopRun`), one
//! workflow per issue (`LoopIssue`), the job queue (`LoopJobs`) and the run's log (`LoopLog`).
//!
//! Invariants:
//! - Handlers are deterministic: everything that differs between executions (the time, a
//!   worker's result) enters through the Restate journal (`ctx.run`, an awakeable), so a replay
//!   after a crash takes the same path.
//! - No handler runs an agent phase: phases take minutes to an hour, longer than the server's
//!   inactivity and abort timeouts; they run in workers and come back through awakeables, while
//!   the issue's invocation is suspended.
//! - `LoopLog` entry `n` is record `n` of the run's journal; an issue's entries are appended
//!   before its workflow takes its next step, so a worker folding the log sees the issue as it is.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use restate_sdk::prelude::*;

use super::{
    CompleteTake, Completed, Completion, Entry, Fence, IssueEnd, IssueInput, Job, JobDone, JobSlot, Lease, Offer, Page,
    RunEnd, RunInput, Take, Tips, WaitTake, Waiter,
};
use crate::journal::Body;
use crate::machine::{self, Command, Event, Stage, State};

fn terminal(e: impl std::fmt::Display) -> HandlerError {
    TerminalError::new(e.to_string()).into()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn time_of(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

/// The run's journal in Restate, keyed by run id: appended by the run's workflows, read by
/// workers (to fold the run) and by the submitting clone (to mirror it).
pub struct LoopLog;

const LOG_LEN: &str = "len";

fn entry_key(n: u64) -> String {
    format!("e{n}")
}

#[restate_sdk::object]
impl LoopLog {
    /// Appends entries in order; returns the log's new length.
    #[handler]
    async fn append(&self, ctx: ObjectContext<'_>, entries: Json<Vec<Entry>>) -> Result<u64, HandlerError> {
        let mut len = ctx.get::<u64>(LOG_LEN).await?.unwrap_or(0);
        for e in entries.into_inner() {
            ctx.set(&entry_key(len), Json(e));
            len += 1;
        }
        ctx.set(LOG_LEN, len);
        Ok(len)
    }

    /// Writes the run's first record once (a second submit of the same run changes nothing).
    #[handler]
    async fn init(&self, ctx: ObjectContext<'_>, first: Json<Entry>) -> Result<u64, HandlerError> {
        let len = ctx.get::<u64>(LOG_LEN).await?.unwrap_or(0);
        if len == 0 {
            ctx.set(&entry_key(0), first);
            ctx.set(LOG_LEN, 1u64);
            return Ok(1);
        }
        Ok(len)
    }

    /// Entries from `from` on (at most 1,000), and the log's length.
    #[handler]
    async fn read(&self, ctx: SharedObjectContext<'_>, from: u64) -> Result<Json<Page>, HandlerError> {
        let total = ctx.get::<u64>(LOG_LEN).await?.unwrap_or(0);
        let mut entries = Vec::new();
        let mut n = from;
        while n < total && entries.len() < 1000 {
            match ctx.get::<Json<Entry>>(&entry_key(n)).await? {
                Some(e) => entries.push(e.into_inner()),
                None => return Err(terminal(format!("log entry {n} of {total} is missing"))),
            }
            n += 1;
        }
        Ok(Json(Page { entries, total }))
    }
}

/// The job queue, keyed by queue name. Workers pull (no inbound port on a worker); each take
/// leases a job and bumps its attempt number, the token a completion must carry.
///
/// A take that finds nothing free may wait (`wait_take`): it leaves a waiter (an awakeable)
/// and the queue hands the next job queued or handed back straight to the oldest waiter, so a
/// job reaches an idle worker without a poll's delay. A waiter that gives up first is
/// forgotten, and a job already handed to it is handed back, never left to lapse.
pub struct LoopJobs;

const JOBS: &str = "jobs";
const WAITERS: &str = "waiters";

/// At most this many waiters are kept (the oldest go first): a waiter whose worker died is
/// dropped in time without a job, or takes one whose lease then lapses.
const WAITERS_KEPT: usize = 64;

async fn slots(ctx: &ObjectContext<'_>) -> Result<Vec<JobSlot>, HandlerError> {
    Ok(ctx.get::<Json<Vec<JobSlot>>>(JOBS).await?.map(|j| j.into_inner()).unwrap_or_default())
}

async fn waiters(ctx: &ObjectContext<'_>) -> Result<Vec<Waiter>, HandlerError> {
    Ok(ctx.get::<Json<Vec<Waiter>>>(WAITERS).await?.map(|j| j.into_inner()).unwrap_or_default())
}

/// Leases `slot` to `take` at `now`: the one place a take bumps the attempt number.
fn lease_to(slot: &mut JobSlot, take: Take, now: u64) -> Lease {
    slot.token += 1;
    slot.holder = Some(take.worker);
    slot.lease_ms = take.lease_ms;
    slot.lease_until_ms = now + take.lease_ms;
    slot.handed_to = None;
    Lease { job: slot.job.clone(), token: slot.token, lease_ms: take.lease_ms }
}

/// The job a take gets at `now`: the oldest one nobody holds or whose lease lapsed. Every take
/// (plain, waiting, after a completion) finds its job here, so they cannot disagree on the rule.
fn free_slot(all: &mut [JobSlot], now: u64) -> Option<&mut JobSlot> {
    all.iter_mut().find(|s| s.holder.is_none() || s.lease_until_ms < now)
}

/// Applies `done` if it comes from the job's current attempt ([`JobSlot::fenced_by`]): the job
/// leaves the queue and its workflow gets the result. A late result (its lease lapsed and the
/// job went to another attempt, or the job is done) is refused: false, and `all` is unchanged.
/// Every completion (plain, or with the next take) is settled here: one fencing rule.
fn settle(ctx: &ObjectContext<'_>, all: &mut Vec<JobSlot>, done: Completion) -> bool {
    let Some(at) = all.iter().position(|s| s.fenced_by(&done.job_id, done.token)) else {
        return false;
    };
    let slot = all.remove(at);
    ctx.resolve_awakeable(&slot.job.awakeable, Json(done.done));
    true
}

/// Hands free jobs to waiting takers, oldest first (after a job was queued or handed back);
/// `all` is written by the caller.
async fn dispatch(ctx: &ObjectContext<'_>, all: &mut [JobSlot]) -> Result<(), HandlerError> {
    if !all.iter().any(|s| s.holder.is_none()) {
        return Ok(());
    }
    let mut waiting = waiters(ctx).await?;
    if waiting.is_empty() {
        return Ok(());
    }
    let now = clock(ctx).await?;
    for slot in all.iter_mut().filter(|s| s.holder.is_none()) {
        if waiting.is_empty() {
            break;
        }
        let w = waiting.remove(0);
        let lease = lease_to(slot, w.take, now);
        slot.handed_to = Some(w.awakeable.clone());
        ctx.resolve_awakeable(&w.awakeable, Json(lease));
    }
    ctx.set(WAITERS, Json(waiting));
    Ok(())
}

async fn clock(ctx: &ObjectContext<'_>) -> Result<u64, HandlerError> {
    Ok(ctx.run(|| async { Ok(now_ms()) }).name("now").await?)
}

#[restate_sdk::object]
impl LoopJobs {
    /// Queues a job (a job already queued under its id is left as it is).
    #[handler]
    async fn enqueue(&self, ctx: ObjectContext<'_>, job: Json<Job>) -> Result<(), HandlerError> {
        let job = job.into_inner();
        let mut all = slots(&ctx).await?;
        if !all.iter().any(|s| s.job.id == job.id) {
            all.push(JobSlot { job, token: 0, holder: None, lease_until_ms: 0, lease_ms: 0, handed_to: None });
            dispatch(&ctx, &mut all).await?;
            ctx.set(JOBS, Json(all));
        }
        Ok(())
    }

    /// A take that waits: leases a job at once if one is free, else waits (without holding
    /// the queue: this handler is shared) until the queue hands one over, the earliest lease
    /// lapses, or `wait_ms` passed.
    #[handler]
    async fn wait_take(
        &self,
        ctx: SharedObjectContext<'_>,
        ask: Json<WaitTake>,
    ) -> Result<Json<Option<Lease>>, HandlerError> {
        let WaitTake { take, wait_ms } = ask.into_inner();
        let queue = ctx.object_client::<LoopJobsClient>(ctx.key());
        let (awakeable, handed) = ctx.awakeable::<Json<Lease>>();
        let waiter = Waiter { awakeable: awakeable.clone(), take };
        let lease = match queue.take_or_wait(Json(waiter)).call().await?.into_inner() {
            Offer::Lease(lease) => Some(*lease),
            Offer::Wait { lapse_ms } => {
                let now = ctx.run(|| async { Ok(now_ms()) }).name("now").await?;
                let until = if lapse_ms > 0 { (now + wait_ms).min(lapse_ms) } else { now + wait_ms };
                let nap = std::time::Duration::from_millis(until.saturating_sub(now).max(1));
                restate_sdk::select! {
                    lease = handed => Some(lease?.into_inner()),
                    _ = ctx.sleep(nap) => {
                        // Gave up: a job handed over meanwhile goes back to the queue.
                        queue.forget(awakeable).call().await?;
                        None
                    }
                }
            }
        };
        Ok(Json(lease))
    }

    /// `wait_take`'s locked half: leases the oldest free job (or one whose lease lapsed) to
    /// the waiter's taker, or registers the waiter.
    #[handler]
    async fn take_or_wait(&self, ctx: ObjectContext<'_>, waiter: Json<Waiter>) -> Result<Json<Offer>, HandlerError> {
        let waiter = waiter.into_inner();
        let mut all = slots(&ctx).await?;
        let now = if all.is_empty() { 0 } else { clock(&ctx).await? };
        if let Some(slot) = free_slot(&mut all, now) {
            let lease = lease_to(slot, waiter.take, now);
            ctx.set(JOBS, Json(all));
            return Ok(Json(Offer::Lease(Box::new(lease))));
        }
        let lapse_ms = all.iter().filter(|s| s.holder.is_some()).map(|s| s.lease_until_ms).min().unwrap_or(0);
        let mut waiting = waiters(&ctx).await?;
        waiting.push(waiter);
        if waiting.len() > WAITERS_KEPT {
            waiting.remove(0);
        }
        ctx.set(WAITERS, Json(waiting));
        Ok(Json(Offer::Wait { lapse_ms }))
    }

    /// A waiter gave up: it is forgotten, and a job handed to it meanwhile (its lease not yet
    /// renewed by anyone) is handed back to the queue at once.
    #[handler]
    async fn forget(&self, ctx: ObjectContext<'_>, awakeable: String) -> Result<(), HandlerError> {
        let mut waiting = waiters(&ctx).await?;
        if let Some(at) = waiting.iter().position(|w| w.awakeable == awakeable) {
            waiting.remove(at);
            ctx.set(WAITERS, Json(waiting));
            return Ok(());
        }
        let mut all = slots(&ctx).await?;
        let Some(slot) = all.iter_mut().find(|s| s.handed_to.as_deref() == Some(awakeable.as_str())) else {
            return Ok(());
        };
        slot.holder = None;
        slot.lease_until_ms = 0;
        slot.handed_to = None;
        dispatch(&ctx, &mut all).await?;
        ctx.set(JOBS, Json(all));
        Ok(())
    }

    /// Leases the oldest job nobody holds (or whose lease lapsed) to `worker`, or answers none.
    /// Workers of this code take with `wait_take` and `complete_take`; this stays because
    /// workers of older code, talking to a newer endpoint, poll `peek` and then take here (and
    /// the waiting-take test takes a job with it).
    #[handler]
    async fn take(&self, ctx: ObjectContext<'_>, take: Json<Take>) -> Result<Json<Option<Lease>>, HandlerError> {
        let take = take.into_inner();
        let mut all = slots(&ctx).await?;
        if all.is_empty() {
            return Ok(Json(None));
        }
        let now = clock(&ctx).await?;
        let Some(slot) = free_slot(&mut all, now) else {
            return Ok(Json(None));
        };
        let lease = lease_to(slot, take, now);
        ctx.set(JOBS, Json(all));
        Ok(Json(Some(lease)))
    }

    /// Extends a lease; false when the job is gone or its lease went to another attempt (the
    /// worker must stop: its result would be refused).
    #[handler]
    async fn renew(&self, ctx: ObjectContext<'_>, fence: Json<Fence>) -> Result<bool, HandlerError> {
        let fence = fence.into_inner();
        let mut all = slots(&ctx).await?;
        let now = clock(&ctx).await?;
        let Some(slot) = all.iter_mut().find(|s| s.fenced_by(&fence.job_id, fence.token)) else {
            return Ok(false);
        };
        if slot.holder.is_none() {
            return Ok(false);
        }
        slot.lease_until_ms = now + slot.lease_ms;
        ctx.set(JOBS, Json(all));
        Ok(true)
    }

    /// Hands a job back (a worker stopping, or loop's own environment failing on a worker).
    #[handler]
    async fn release(&self, ctx: ObjectContext<'_>, fence: Json<Fence>) -> Result<bool, HandlerError> {
        let fence = fence.into_inner();
        let mut all = slots(&ctx).await?;
        let Some(slot) = all.iter_mut().find(|s| s.fenced_by(&fence.job_id, fence.token)) else {
            return Ok(false);
        };
        slot.holder = None;
        slot.lease_until_ms = 0;
        slot.handed_to = None;
        dispatch(&ctx, &mut all).await?;
        ctx.set(JOBS, Json(all));
        Ok(true)
    }

    /// Applies a result if it comes from the job's current attempt ([`settle`]).
    #[handler]
    async fn complete(&self, ctx: ObjectContext<'_>, done: Json<Completion>) -> Result<bool, HandlerError> {
        let mut all = slots(&ctx).await?;
        if !settle(&ctx, &mut all, done.into_inner()) {
            return Ok(false);
        }
        ctx.set(JOBS, Json(all));
        Ok(true)
    }

    /// `complete` and `take` in one call: a worker that finished a job asks for the next at once
    /// (it is likely queued), one round trip instead of two.
    #[handler]
    async fn complete_take(
        &self,
        ctx: ObjectContext<'_>,
        ask: Json<CompleteTake>,
    ) -> Result<Json<Completed>, HandlerError> {
        let CompleteTake { done, take } = ask.into_inner();
        let mut all = slots(&ctx).await?;
        let accepted = settle(&ctx, &mut all, done);
        let mut next = None;
        if let (Some(take), false) = (take, all.is_empty()) {
            let now = clock(&ctx).await?;
            next = free_slot(&mut all, now).map(|slot| lease_to(slot, take, now));
        }
        if accepted || next.is_some() {
            ctx.set(JOBS, Json(all));
        }
        Ok(Json(Completed { accepted, next }))
    }

    /// A cheap look (a shared handler takes no lock and writes nothing): how many jobs nobody
    /// holds, and when the earliest lease lapses (ms since the epoch; 0: none held). Workers of
    /// this code wait in `wait_take` instead; this stays because workers of older code, talking
    /// to a newer endpoint, poll it before they `take`.
    #[handler]
    async fn peek(&self, ctx: SharedObjectContext<'_>) -> Result<Json<(u64, u64)>, HandlerError> {
        let all = ctx.get::<Json<Vec<JobSlot>>>(JOBS).await?.map(|j| j.into_inner()).unwrap_or_default();
        let free = all.iter().filter(|s| s.holder.is_none()).count() as u64;
        let lapse = all.iter().filter(|s| s.holder.is_some()).map(|s| s.lease_until_ms).min().unwrap_or(0);
        Ok(Json((free, lapse)))
    }

    /// How many takes wait for a job.
    #[handler]
    async fn waiting(&self, ctx: SharedObjectContext<'_>) -> Result<u64, HandlerError> {
        Ok(ctx.get::<Json<Vec<Waiter>>>(WAITERS).await?.map(|w| w.into_inner().len() as u64).unwrap_or(0))
    }

    /// The queue as it stands.
    #[handler]
    async fn list(&self, ctx: SharedObjectContext<'_>) -> Result<Json<Vec<JobSlot>>, HandlerError> {
        Ok(Json(ctx.get::<Json<Vec<JobSlot>>>(JOBS).await?.map(|j| j.into_inner()).unwrap_or_default()))
    }
}

/// One issue of a run, keyed `RUN/ISSUE`: its state is the machine's, and only
/// [`machine::transition`] changes it.
pub struct LoopIssue;

#[restate_sdk::workflow]
impl LoopIssue {
    #[handler]
    async fn run(&self, ctx: WorkflowContext<'_>, input: Json<IssueInput>) -> Result<Json<IssueEnd>, HandlerError> {
        let IssueInput { run_id, queue, planned, rules, verify, run_budget, mut tips } = input.into_inner();
        let rules = crate::machine::Rules { verify, ..rules };
        let id = planned.id.to_string();
        let own = planned.branch.to_string();
        let mut state = State::PENDING;
        let mut next: Vec<Command> = Vec::new();
        let mut jobs = 0u64;
        loop {
            let command = machine::next_command(&mut next, || &state);
            let (entries, chained) = match command {
                Command::Finish => break,
                // Journal-only: the licence to run the phase. With a per-run budget the spend of
                // every issue decides it, which a worker's fold of the whole log knows.
                Command::StartPhase { phase, attempt } if !run_budget => {
                    let ms = ctx.run(|| async { Ok(now_ms()) }).name("now").await?;
                    let event = Event::PhaseStarted { phase, attempt };
                    (vec![Entry { time: time_of(ms), body: issue_body(&id, event) }], Vec::new())
                }
                command => {
                    jobs += 1;
                    let (awakeable, result) = ctx.awakeable::<Json<JobDone>>();
                    let job = Job {
                        id: format!("{run_id}/{id}/{jobs}"),
                        run_id: run_id.clone(),
                        issue: id.clone(),
                        command,
                        awakeable,
                        tips: tips.clone(),
                        queued: next.clone(),
                    };
                    ctx.object_client::<LoopJobsClient>(queue.clone()).enqueue(Json(job)).send();
                    let done = result.await?.into_inner();
                    // A job moves only the issue's own branch; an answer without its tip (a
                    // worker of older code) makes the next job's worker fetch.
                    match done.tips.get(&own) {
                        Some(tip) => tips.insert(own.clone(), tip.clone()),
                        None => tips.remove(&own),
                    };
                    (done.entries, done.chained)
                }
            };
            // A worker that went on took each further command where this workflow would have:
            // each is checked here before the entries it journaled are decided.
            let mut chained = chained.into_iter().peekable();
            let mut take_chained = |at: u64, next: &mut Vec<Command>, state: &State| -> Result<(), HandlerError> {
                while let Some(c) = chained.next_if(|c| c.at <= at) {
                    let ours = machine::next_command(next, || state);
                    if ours != c.command {
                        return Err(terminal(format!(
                            "nondeterminism: {id}: a worker went on with {:?}, this endpoint takes {ours:?}",
                            c.command
                        )));
                    }
                }
                Ok(())
            };
            let mut decided = Vec::with_capacity(entries.len());
            for (at, entry) in entries.into_iter().enumerate() {
                take_chained(at as u64, &mut next, &state)?;
                let Entry { time, body } = entry;
                let body = match body {
                    Body::Issue { issue, event, to, commands, evidence } if issue == id => {
                        let (after, emitted) = machine::transition(&state, &event, &rules).map_err(terminal)?;
                        // A worker folds the same events with its own copy of the machine: a
                        // worker of other code would disagree here.
                        let placeholder = matches!(to, Stage::Pending) && commands.is_none();
                        if !placeholder && (!after.stage.agrees_with(&to) || commands.as_ref() != Some(&emitted)) {
                            return Err(terminal(format!(
                                "nondeterminism: {id}: a worker decided {} {:?} for {}, this endpoint decides {} {:?}",
                                to.name(),
                                commands,
                                event.name(),
                                after.stage.name(),
                                emitted
                            )));
                        }
                        let to = after.stage.clone();
                        state = after;
                        if !emitted.is_empty() {
                            next = emitted.clone();
                        }
                        Body::Issue { issue, event, to, commands: Some(emitted), evidence }
                    }
                    Body::Issue { issue, .. } => {
                        return Err(terminal(format!("a job of {id} reported an event of {issue}")));
                    }
                    other => other,
                };
                decided.push(Entry { time, body });
            }
            take_chained(u64::MAX, &mut next, &state)?;
            ctx.object_client::<LoopLogClient>(run_id.clone()).append(Json(decided)).call().await?;
        }
        let tips: Tips = tips.remove_entry(&own).into_iter().collect();
        Ok(Json(IssueEnd { issue: id, stage: state.stage.name().to_string(), tips }))
    }
}

/// An issue event whose stage and commands the workflow fills in.
fn issue_body(issue: &str, event: Event) -> Body {
    Body::Issue { issue: issue.to_string(), event, to: Stage::Pending, commands: None, evidence: None }
}

/// The run, keyed by run id: the scheduler. An issue starts once every dependency in the run
/// ended (its own `prepare` then blocks it if one is not Done); issues the run carries over
/// from earlier runs are journaled Done first, as the local scheduler does.
pub struct LoopRun;

#[restate_sdk::workflow]
impl LoopRun {
    #[handler]
    async fn run(&self, ctx: WorkflowContext<'_>, input: Json<RunInput>) -> Result<Json<RunEnd>, HandlerError> {
        let RunInput { run_id, queue, first, origin_tips } = input.into_inner();
        let Body::RunStarted(start) = &first.body else {
            return Err(terminal("a run's first record must be run_started"));
        };
        let start = start.clone();
        let log = || ctx.object_client::<LoopLogClient>(run_id.clone());
        log().init(Json(first)).call().await?;
        let run_budget = start.max_cost_usd_per_run().is_some();
        let mut ended: HashMap<String, String> = HashMap::new();
        // Where each issue's branch is on `origin`: as submitted, then as each issue left it.
        let mut known: Tips = origin_tips;
        // Carried over: Done before anything starts, so dependents see them Done.
        let mut carried = Vec::new();
        for c in &start.earlier.carried_over {
            if !start.issues.iter().any(|p| p.id == c.issue) {
                continue;
            }
            let event = Event::CarriedOver { run: c.run.clone(), branch: c.branch.clone(), tip: c.tip.clone() };
            let (after, emitted) = machine::transition(&State::PENDING, &event, &start.rules).map_err(terminal)?;
            let body = Body::Issue {
                issue: c.issue.to_string(),
                event,
                to: after.stage.clone(),
                commands: Some(emitted),
                evidence: None,
            };
            carried.push(body);
            ended.insert(c.issue.to_string(), after.stage.name().to_string());
        }
        if !carried.is_empty() {
            let ms = ctx.run(|| async { Ok(now_ms()) }).name("now").await?;
            let entries = carried.into_iter().map(|body| Entry { time: time_of(ms), body }).collect();
            log().append(Json(entries)).call().await?;
        }
        let in_run: HashSet<String> = start.issues.iter().map(|p| p.id.to_string()).collect();
        let mut waiting: Vec<_> = start.issues.iter().filter(|p| !ended.contains_key(p.id.as_str())).cloned().collect();
        let mut running = DurableFuturesUnordered::new();
        loop {
            let (ready, rest): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|p| {
                p.blocked_by.iter().all(|d| !in_run.contains(d.as_str()) || ended.contains_key(d.as_str()))
            });
            waiting = rest;
            for planned in ready {
                let key = format!("{run_id}/{}", planned.id);
                // The issue's own rules (its checks decide whether `verify` comes after dev).
                let rules = start.rules_of(&planned);
                let mut tips = Tips::new();
                let deps = planned.blocked_by.iter().filter_map(|d| start.issues.iter().find(|p| p.id == *d));
                for branch in std::iter::once(&planned.branch).chain(deps.map(|p| &p.branch)) {
                    if let Some(tip) = known.get(branch.as_str()) {
                        tips.insert(branch.to_string(), tip.clone());
                    }
                }
                let input = IssueInput {
                    run_id: run_id.clone(),
                    queue: queue.clone(),
                    planned,
                    verify: rules.verify,
                    rules,
                    run_budget,
                    tips,
                };
                running.push(ctx.workflow_client::<LoopIssueClient>(key).run(Json(input)).call());
            }
            if running.is_empty() {
                break;
            }
            let Some((_, result)) = running.next().await? else { break };
            let end = result?.into_inner();
            known.extend(end.tips);
            ended.insert(end.issue, end.stage);
        }
        let ms = ctx.run(|| async { Ok(now_ms()) }).name("now").await?;
        log().append(Json(vec![Entry { time: time_of(ms), body: Body::RunFinished }])).call().await?;
        let issues = start
            .issues
            .iter()
            .map(|p| IssueEnd {
                issue: p.id.to_string(),
                stage: ended[p.id.as_str()].clone(),
                tips: known.get_key_value(p.branch.as_str()).map(|(b, t)| (b.clone(), t.clone())).into_iter().collect(),
            })
            .collect();
        Ok(Json(RunEnd { run_id, issues }))
    }
}
