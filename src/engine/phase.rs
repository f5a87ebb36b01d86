//! One agent phase as a pipeline of named steps:
//! [`prepare_request`](IssueDriver::prepare_request) →
//! [`before_phase`](IssueDriver::before_phase) (hooks) → [`run_agent`](IssueDriver::run_agent) →
//! [`after_phase`](IssueDriver::after_phase) (hooks) → [`agent_reply`](IssueDriver::agent_reply) →
//! [`judge`](IssueDriver::judge) (validate the output; commit the work or write the review doc)
//! → [`record_result`](IssueDriver::record_result) (the result event, then the budget).
//!
//! Invariants:
//! - Each step that learns something journals it before the next step runs (a hook's check,
//!   the agent's session and process group, the shims' decisions).
//! - A phase ends in exactly one of: a result event (`work_finished`, `review_finished`,
//!   `phase_failed`, `guard_violation`), a stop (interrupted; the phase runs again at resume),
//!   or an environment failure (the run stops; the phase runs again at resume).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::driver::IssueDriver;
use super::hooks::{After, Commit};
use super::writer::lock;
use super::{EngineError, Step, Trouble};
use crate::agent::{output, AgentError, PhaseReply, PhaseRequest, Signal};
use crate::journal::view::IssueView;
use crate::journal::{Body, Evidence, Fact, PlannedIssue};
use crate::machine::{Event, Phase};
use crate::proc;
use crate::reviewdoc;
use crate::vocab::to_micro_usd;

/// The machine's `run_phase` command.
pub(super) struct PhaseCall {
    pub(super) phase: Phase,
    /// The fix cycle (fix), fixes so far (review), 0 (dev).
    pub(super) cycle: u32,
    pub(super) attempt: u32,
    /// The agent session an earlier attempt of this phase left, to continue.
    pub(super) resume_session: Option<String>,
}

/// What every step of one phase reads.
struct PhaseCtx {
    issue: IssueView,
    run_id: String,
    budget: Option<u64>,
    /// `max_cost_usd_per_issue`.
    cost_budget: Option<f64>,
    worktree: PathBuf,
    cycle: u32,
    phase: Phase,
    attempt: u32,
    resume_session: Option<String>,
}

/// How a step ended the phase early.
enum Early {
    /// The phase has its result event (or a hook refused it): go on with the issue.
    Continue,
    /// Interrupted: journal it and stop.
    Stop,
}

impl IssueDriver<'_> {
    pub(super) fn run_phase(&self, planned: &PlannedIssue, call: PhaseCall) -> Result<Step, EngineError> {
        let ctx = self.phase_ctx(planned, call);
        self.journal_phase_agent(planned, &ctx)?;
        let mut req = self.prepare_request(planned, &ctx);
        let Some(after) = self.before_phase(planned, &ctx, &mut req)? else { return Ok(Step::Continue) };
        let result = self.run_with_retries(planned, &ctx, &mut req)?;
        if !matches!(result, Err(AgentError::Interrupted { .. })) && self.after_phase(planned, after)? {
            return Ok(Step::Continue);
        }
        let reply = match self.agent_reply(planned, &ctx, result)? {
            Ok(reply) => reply,
            Err(Early::Continue) => return Ok(Step::Continue),
            Err(Early::Stop) => return Ok(Step::Stop),
        };
        let mut evidence = evidence_of(&reply);
        if evidence.cost_usd.is_none() {
            evidence.cost_usd = self.price(ctx.phase, reply.tokens.as_ref());
        }
        let event = self.judge(planned, &ctx, &reply, &mut evidence)?;
        self.record_result(planned, &ctx, event, evidence, &reply)?;
        Ok(Step::Continue)
    }

    /// In a run with an agent per phase, which backend runs this one (an audit fact).
    fn journal_phase_agent(&self, planned: &PlannedIssue, ctx: &PhaseCtx) -> Result<(), EngineError> {
        let spec = {
            let view = self.handle().view();
            match view.start.spend.as_ref().and_then(|s| s.agents.as_ref()) {
                Some(agents) => agents.get(ctx.phase).clone(),
                None => return Ok(()),
            }
        };
        let fact = Fact::PhaseAgent { phase: ctx.phase, kind: spec.kind.clone(), model: spec.model() };
        self.audit(&planned.id, fact, None)
    }

    /// What `tokens` cost by the run's recorded price table, for the model `phase` runs; None
    /// when no price is known for it (the cost stays unknown, never 0).
    fn price(&self, phase: Phase, tokens: Option<&crate::vocab::Tokens>) -> Option<f64> {
        let tokens = tokens?;
        let view = self.handle().view();
        let model = view.start.agent_for(phase).model()?;
        view.start.prices().get(&model).map(|p| p.cost_usd(tokens))
    }

    fn phase_ctx(&self, planned: &PlannedIssue, call: PhaseCall) -> PhaseCtx {
        let (issue, run_id, budget, cost_budget) = {
            let view = self.handle().view();
            let issue = view.issue(&planned.id).cloned().expect("planned issue has a view");
            (issue, view.run_id.clone(), view.start.max_tokens_per_issue, view.start.max_cost_usd_per_issue())
        };
        let worktree =
            issue.worktree().map(|w| PathBuf::from(&w.path)).unwrap_or_else(|| planned.worktree.clone().into());
        let PhaseCall { phase, cycle, attempt, resume_session } = call;
        PhaseCtx { issue, run_id, budget, cost_budget, worktree, cycle, phase, attempt, resume_session }
    }

    /// Everything the agent is told, from the folded view.
    fn prepare_request(&self, planned: &PlannedIssue, ctx: &PhaseCtx) -> PhaseRequest {
        let (milestone, timeout_secs, stall_timeout) = {
            let view = self.handle().view();
            (view.start.milestone.clone(), view.start.phase_timeout_secs, view.start.resilience.stall_timeout())
        };
        PhaseRequest {
            run_id: ctx.run_id.clone(),
            milestone,
            issue: planned.clone(),
            phase: ctx.phase,
            cycle: ctx.cycle,
            attempt: ctx.attempt.max(1),
            worktree: ctx.worktree.clone(),
            last_review: ctx.issue.last_review.clone(),
            verification: (ctx.phase == Phase::Review).then(|| verification_summary(&ctx.issue)).flatten(),
            resume_session: ctx.resume_session.clone(),
            timeout: Duration::from_secs(timeout_secs),
            stall_timeout,
            env: Vec::new(),
        }
    }

    /// The hooks' before-phase checks, each journaled; the agent's environment gets what they
    /// add. None when a check refused the phase (its event is the phase's result).
    fn before_phase(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        req: &mut PhaseRequest,
    ) -> Result<Option<Vec<Box<dyn After + '_>>>, EngineError> {
        let mut afters = Vec::new();
        for hooks in self.parts.hooks {
            let Some(before) = hooks.before_phase(planned, &ctx.worktree, ctx.phase, &self.handle().view()) else {
                continue;
            };
            self.note(&planned.id, before.entry)?;
            if !before.proceed {
                return Ok(None);
            }
            req.env.extend(before.env);
            afters.extend(before.after);
        }
        Ok(Some(afters))
    }

    /// Runs the agent; after a transient error or a stall, runs it again after a backoff, up to
    /// `[run] retries` times for this phase (counted from the journal, so a resume goes on
    /// counting). Each retry is journaled (`agent_retried`: the error, the wait, the session
    /// continued) before the wait; Ctrl-C during the wait stops the phase at once, as interrupted.
    fn run_with_retries(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        req: &mut PhaseRequest,
    ) -> Result<Result<PhaseReply, AgentError>, EngineError> {
        let id = planned.id.as_str();
        let resilience = *self.handle().view().start.resilience;
        loop {
            let result = self.run_agent(planned, ctx, req)?;
            let e = match &result {
                Err(e) if e.is_retryable() && !self.parts.cancel.is_requested() => e,
                _ => return Ok(result),
            };
            let used = self.handle().view().issue(id).map(|v| v.phase_retries).unwrap_or(0);
            if used >= resilience.retries {
                return Ok(result);
            }
            let delay = resilience.delay(used);
            // A retry continues the failed attempt's session, else the one it was continuing.
            let session = e.session().map(str::to_string).or_else(|| req.resume_session.clone());
            let fact = Fact::AgentRetried {
                phase: ctx.phase,
                retry: used + 1,
                error: e.to_string(),
                delay_ms: delay.as_millis() as u64,
                session: session.clone(),
            };
            self.audit(id, fact, None)?;
            if !self.backoff(delay) {
                return Ok(Err(AgentError::Interrupted { phase: ctx.phase }));
            }
            req.resume_session = session;
        }
    }

    /// Waits `delay`, or less when a stop is requested: false then.
    fn backoff(&self, delay: Duration) -> bool {
        let until = std::time::Instant::now() + delay;
        loop {
            if self.parts.cancel.is_requested() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }

    /// Runs the agent, journaling its session and each process group the moment they exist,
    /// so a resume after loop was killed can continue the one and kill the other.
    fn run_agent(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        req: &PhaseRequest,
    ) -> Result<Result<PhaseReply, AgentError>, EngineError> {
        let (id, phase) = (planned.id.as_str(), ctx.phase);
        let mut journal_failure: Option<EngineError> = None;
        let spawn_failure: Arc<Mutex<Option<EngineError>>> = Arc::new(Mutex::new(None));
        let hook = {
            let (handle, issue, failure) = (self.handle().clone(), id.to_string(), spawn_failure.clone());
            move |spawned: proc::Spawned| {
                let body = Body::ProcessGroup {
                    issue: issue.clone(),
                    phase,
                    pgid: spawned.pgid,
                    start_time: spawned.start_time,
                };
                if let Err(e) = handle.run_record(body) {
                    lock(&failure).get_or_insert(e);
                }
            }
        };
        let agent = self.parts.agent(phase);
        let result = proc::observe_spawns(hook, || {
            agent.run(req, &mut |signal| match signal {
                Signal::SessionStarted { session } => {
                    if journal_failure.is_none() {
                        if let Err(e) = self.event(id, Event::SessionStarted { phase, session }, None) {
                            journal_failure = Some(e);
                        }
                    }
                }
            })
        });
        match journal_failure.or_else(|| lock(&spawn_failure).take()) {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }

    /// The hooks' after-phase checks (not after an interruption: the shims' relay still drains
    /// when dropped, and the phase's next attempt folds those decisions in). True when one
    /// found a violation, which is the phase's result.
    fn after_phase(&self, planned: &PlannedIssue, afters: Vec<Box<dyn After + '_>>) -> Result<bool, EngineError> {
        for after in afters {
            let (decisions, violation) = after.after_phase();
            for d in decisions {
                self.note(&planned.id, d)?;
            }
            if let Some(v) = violation {
                self.event(&planned.id, v, None)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The agent's reply, or how its failure ends the phase: interrupted (stop), the
    /// environment's fault (the run stops), else `phase_failed`.
    fn agent_reply(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        result: Result<PhaseReply, AgentError>,
    ) -> Result<Result<PhaseReply, Early>, EngineError> {
        let e = match result {
            Ok(reply) => return Ok(Ok(reply)),
            Err(AgentError::Interrupted { .. }) => return Ok(Err(Early::Stop)),
            Err(e) => e,
        };
        if self.parts.cancel.is_requested() {
            return Ok(Err(Early::Stop));
        }
        let id = planned.id.as_str();
        if e.blame().is_environment() {
            return Err(self.stop_for_environment(id, e.to_string(), None));
        }
        let exit_code = match &e {
            AgentError::Crashed { exit_code, .. } => *exit_code,
            _ => None,
        };
        let evidence = Evidence { exit_code, note: Some(e.to_string()), ..Default::default() };
        self.event(id, Event::PhaseFailed { phase: ctx.phase, reason: e.to_string() }, Some(evidence))?;
        Ok(Err(Early::Continue))
    }

    /// Validates the reply against its phase's schema and keeps the work: dev and fix are
    /// committed, a review is appended to the review doc. The result event to journal.
    fn judge(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        reply: &PhaseReply,
        evidence: &mut Evidence,
    ) -> Result<Event, EngineError> {
        let phase = ctx.phase;
        Ok(match phase {
            Phase::Dev | Phase::Fix => match output::parse_work(phase, &reply.output) {
                Ok(out) => match self.commit_work(planned, ctx, evidence)? {
                    Ok(()) => Event::WorkFinished { phase, status: out.status },
                    Err(event) => event,
                },
                Err(e) => Event::PhaseFailed { phase, reason: e.to_string() },
            },
            Phase::Review => match output::parse_review(&reply.output) {
                Ok(out) => match self.write_review_doc(planned, &ctx.worktree, ctx.cycle, &out, evidence) {
                    Ok(()) => Event::ReviewFinished { verdict: out.status },
                    Err(ReviewDocFailure::Symlink(changes)) => Event::GuardViolation { phase, changes },
                    Err(ReviewDocFailure::Other(t)) if t.blame.is_environment() => {
                        return Err(self.stop_for_environment(&planned.id, t.reason, Some(evidence.clone())))
                    }
                    Err(ReviewDocFailure::Other(t)) => Event::PhaseFailed { phase, reason: t.reason },
                },
                Err(e) => Event::PhaseFailed { phase, reason: e.to_string() },
            },
        })
    }

    /// Commits the agent's dev or fix work; `Err(event)` when that ends the phase otherwise.
    fn commit_work(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        evidence: &mut Evidence,
    ) -> Result<Result<(), Event>, EngineError> {
        let (id, phase) = (planned.id.as_str(), ctx.phase);
        let what = if phase == Phase::Dev { "dev".to_string() } else { format!("fix cycle {}", ctx.cycle) };
        let message = format!("{id}: {what}\n\nCommitted by loop (run {}).", ctx.run_id);
        if let Some(changes) = symlinked_git_file(&ctx.worktree) {
            return Ok(Err(Event::GuardViolation { phase, changes }));
        }
        match self.commit(&ctx.worktree, &message, evidence) {
            Ok(Some(c)) => evidence.commit = Some(c),
            Ok(None) => prepend_note(evidence, "the agent changed nothing".to_string()),
            Err(e) if e.blame().is_environment() => {
                let cause = format!("committing the agent's changes: {e}");
                return Err(self.stop_for_environment(id, cause, Some(evidence.clone())));
            }
            Err(e) => {
                return Ok(Err(Event::PhaseFailed { phase, reason: format!("committing the agent's changes: {e}") }))
            }
        }
        Ok(Ok(()))
    }

    /// Journals the phase's result, then `budget_exceeded` when the issue used more tokens
    /// than allowed, or `cost_exceeded` when it spent more USD, and is still running.
    fn record_result(
        &self,
        planned: &PlannedIssue,
        ctx: &PhaseCtx,
        event: Event,
        evidence: Evidence,
        reply: &PhaseReply,
    ) -> Result<(), EngineError> {
        let id = planned.id.as_str();
        // Counted since the last reopen: a retried issue gets its budget again.
        let used = ctx.issue.budget_tokens + reply.tokens.map(|t| t.total()).unwrap_or(0);
        let spent = ctx.issue.budget_cost_usd + evidence.cost_usd.unwrap_or(0.0);
        // With a budget, `budget_exceeded` or `cost_exceeded` may come before the next phase.
        let mut now = if ctx.budget.is_none() && ctx.cost_budget.is_none() {
            self.event_then_start(id, event, Some(evidence))?
        } else {
            self.event(id, event, Some(evidence))?
        };
        if let Some(limit) = ctx.budget {
            if used > limit && !now.is_terminal() {
                now = self.event(id, Event::BudgetExceeded { used, limit }, None)?;
            }
        }
        if let Some(limit) = ctx.cost_budget {
            let (used_micro_usd, limit_micro_usd) = (to_micro_usd(spent), to_micro_usd(limit));
            if used_micro_usd > limit_micro_usd && !now.is_terminal() {
                self.event(id, Event::CostExceeded { used_micro_usd, limit_micro_usd }, None)?;
            }
        }
        Ok(())
    }

    /// After a review validated: loop itself appends it to the milestone's review doc in the
    /// worktree and commits that, recording where in the evidence (the agent's output stays verbatim).
    fn write_review_doc(
        &self,
        planned: &PlannedIssue,
        worktree: &Path,
        fix_cycles: u32,
        review: &output::ReviewOutput,
        evidence: &mut Evidence,
    ) -> Result<(), ReviewDocFailure> {
        let (enabled, milestone, run_id) = {
            let view = self.handle().view();
            (view.start.review_doc, view.start.milestone.clone(), view.run_id.clone())
        };
        if !enabled {
            return Ok(());
        }
        let rel = reviewdoc::doc_path(&planned.doc, &milestone, &planned.id);
        let entry = reviewdoc::Entry {
            run_id: &run_id,
            issue: &planned.id,
            review: fix_cycles + 1,
            fix_cycles,
            result: review,
        };
        reviewdoc::write(worktree, &rel, &milestone, &entry).map_err(|e| match e.is_symlink() {
            true => ReviewDocFailure::Symlink(vec![e.to_string()]),
            false => ReviewDocFailure::Other(Trouble::new(e.to_string(), e.blame())),
        })?;
        if let Some(changes) = symlinked_git_file(worktree) {
            return Err(ReviewDocFailure::Symlink(changes));
        }
        let verdict =
            serde_json::to_value(review.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let message = format!(
            "{}: review {} ({verdict})\n\nReview entry appended by loop (run {run_id}).",
            planned.id,
            fix_cycles + 1,
        );
        let commit = self.commit(worktree, &message, evidence).map_err(|e| {
            ReviewDocFailure::Other(Trouble::new(format!("committing the review doc {rel}: {e}"), e.blame()))
        })?;
        evidence.commit = commit;
        prepend_note(evidence, format!("review_doc_path={rel}; review_entry_written=true"));
        Ok(())
    }

    /// Commits everything in the worktree for the agent: through the first hook that commits
    /// (the Graphite stack, noted in the evidence), else with git.
    fn commit(
        &self,
        worktree: &Path,
        message: &str,
        evidence: &mut Evidence,
    ) -> Result<Option<String>, crate::workspace::WorkspaceError> {
        let date = self.commit_date();
        let ws = self.parts.workspace;
        let hooked = self.parts.hooks.iter().find_map(|h| h.commit(worktree, message, date.as_deref(), ws));
        let result = match hooked {
            Some(Commit { result, note }) => {
                prepend_note(evidence, note);
                result
            }
            None => ws.commit_all(worktree, message, date.as_deref()),
        };
        // The diffstat is for people reading the run later; not knowing it changes nothing.
        if let Ok(Some(c)) = &result {
            evidence.diffstat = ws.diffstat(worktree, c).ok().flatten();
        }
        result
    }

    /// Commit dates follow the journal's clock when it is fixed, so a fixed test clock gives
    /// fixed commit ids.
    pub(super) fn commit_date(&self) -> Option<String> {
        let clock = &self.parts.clock;
        clock.is_fixed().then(|| clock.now().format("%Y-%m-%dT%H:%M:%S+0000").to_string())
    }
}

/// The evidence of a finished agent call, before loop's own steps add to it.
fn evidence_of(reply: &PhaseReply) -> Evidence {
    Evidence {
        exit_code: reply.exit_code,
        duration_ms: reply.duration.as_millis() as u64,
        output: Some(reply.output.clone()),
        session: reply.session.clone(),
        tokens: reply.tokens,
        commit: None,
        note: reply.note.clone(),
        cost_usd: reply.cost_usd,
        diffstat: None,
    }
}

/// Puts loop's own note before whatever the evidence already says.
fn prepend_note(evidence: &mut Evidence, note: String) {
    evidence.note = Some(match evidence.note.take() {
        Some(n) => format!("{note}; {n}"),
        None => note,
    });
}

/// Why loop's review entry could not be written and committed.
enum ReviewDocFailure {
    /// A symlink on the way: the worktree tried to steer loop's write outside (a guard violation).
    Symlink(Vec<String>),
    Other(Trouble),
}

/// loop commits with `git -C <worktree>`, which follows the worktree's `.git` to wherever it
/// points: a symlink there would have loop write objects and refs into another repository.
fn symlinked_git_file(worktree: &Path) -> Option<Vec<String>> {
    match crate::safefs::check(worktree, Path::new(".git")) {
        Err(e) if e.is_symlink() => Some(vec![format!("committing: {e}")]),
        _ => None,
    }
}

/// One line per check of the issue's latest verification, for the review prompt.
fn verification_summary(issue: &IssueView) -> Option<String> {
    if issue.verification.is_empty() {
        return None;
    }
    let lines: Vec<String> = issue
        .verification
        .iter()
        .map(|c| format!("- `{}`: {} ({} ms; log {})", c.command, c.status(), c.duration_ms, c.log))
        .collect();
    Some(lines.join("\n"))
}
