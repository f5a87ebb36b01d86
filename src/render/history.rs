//! A run's history, per issue: its phases in order with their wall-clock times, the reviews'
//! verdicts and required actions, verification results, commits, guard decisions, retries and
//! interruptions, and how it ended. What `loop report` draws and what a person asks of a run
//! after the fact ("what did the reviewer still want?", "where did the time go?").
//!
//! Invariants:
//! - [`history`] is a pure function of the records: no git, no disk, no clock. The same journal
//!   gives the same history, byte for byte once serialized.
//! - Stages are the ones the records hold (`to`), not recomputed: replay is the place that
//!   checks the code still agrees; a history shows what was recorded, even for a journal the
//!   code now reads differently.
//! - A phase opens at its `phase_started` (a verification at the record that moved the issue
//!   into `Verify`) and closes at the record that ends it; a phase still open when the run was
//!   interrupted, or when the journal ends, is closed there and marked so. Times are record
//!   times, so phases of one issue never overlap and are in journal order.
//! - Everything here is `Serialize`, for `--json` readers and the report alike.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::agent::output::parse_review;
use crate::journal::{Body, Evidence, Fact, Record};
use crate::machine::{Event, Phase, Stage, Verdict, WorkStatus};
use crate::vocab::{sanitize, CheckKind, CheckRun, DiffStat, Tokens};

/// The whole run, as [`history`] folds it.
#[derive(Clone, Debug, Serialize)]
pub struct RunHistory {
    pub run_id: String,
    pub milestone: String,
    pub repo: String,
    pub base_commit: String,
    /// The run's agent (`codex (gpt-5.5)`, `sim`).
    pub agent: String,
    pub started_at: DateTime<Utc>,
    /// The time of the last record.
    pub ended_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Every issue reached a terminal state (`run_finished` was journaled).
    pub finished: bool,
    /// The run's own interruptions (Ctrl-C, a stop request) and resumes, in order.
    pub stops: Vec<RunStop>,
    pub issues: Vec<IssueHistory>,
    pub totals: Totals,
    pub records: u64,
}

/// A whole-run interruption or resume.
#[derive(Clone, Debug, Serialize)]
pub struct RunStop {
    pub at: DateTime<Utc>,
    /// `interrupted` or `resumed`.
    pub kind: &'static str,
    pub reason: Option<String>,
}

/// Sums over the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub tokens: u64,
    /// USD of the phases whose cost is known.
    pub cost_usd: f64,
    /// Phases that used tokens but whose cost is unknown: `cost_usd` is then a lower bound.
    pub unpriced_phases: u32,
    pub phases: u32,
    pub retries: u32,
    pub interruptions: u32,
    /// Issues by end state name (`Done`, `Capped`…; `Pending` and the like for a run not over).
    pub by_state: BTreeMap<String, u32>,
    pub commits: u32,
    pub diffstat: DiffStat,
}

/// One issue's story.
#[derive(Clone, Debug, Serialize)]
pub struct IssueHistory {
    pub id: String,
    pub title: String,
    pub blocked_by: Vec<String>,
    pub branch: String,
    /// The plan wave: 0 for an issue without dependencies, else one more than its deepest one.
    pub wave: u32,
    /// The commit or branch the issue's worktree started from (`worktree_intent`).
    pub base: Option<String>,
    /// The other dependencies' branches merged onto it.
    pub merged: Vec<String>,
    /// The stage's name (`Done`, `Capped`, `Review`…).
    pub state: String,
    /// As `status` shows it: `Fix(2)`, `Capped`.
    pub state_short: String,
    /// Why it ended Capped, Blocked or Failed.
    pub reason: Option<String>,
    pub fix_cycles: u32,
    pub terminal: bool,
    /// Done in an earlier run: that run's id.
    pub carried_from: Option<String>,
    /// The first and the last record about this issue.
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    pub phases: Vec<PhaseRun>,
    pub reviews: Vec<ReviewEntry>,
    /// Verification commands loop ran (setup, checks, baselines), in order.
    pub checks: Vec<CheckEntry>,
    pub guard: Vec<GuardEntry>,
    pub retries: Vec<RetryEntry>,
    pub interruptions: Vec<Interruption>,
    pub commits: Vec<CommitEntry>,
    pub tokens: u64,
    pub cost_usd: f64,
    pub unpriced_phases: u32,
    /// The worktree, when it was kept after the issue ended, and why.
    pub worktree_kept: Option<String>,
}

/// What ran: an agent phase or loop's verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    Dev,
    Review,
    Fix,
    Verify,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Dev => "dev",
            PhaseKind::Review => "review",
            PhaseKind::Fix => "fix",
            PhaseKind::Verify => "verify",
        }
    }
}

/// How a phase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Failed,
    Deferred,
    ChangesRequired,
    Blocked,
    /// The guard stopped it (a failed check before, a violation after).
    Guard,
    /// A token or cost budget ended it.
    Budget,
    Interrupted,
    /// Still running when the journal ends.
    Running,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Failed => "failed",
            Outcome::Deferred => "deferred",
            Outcome::ChangesRequired => "changes required",
            Outcome::Blocked => "blocked",
            Outcome::Guard => "guard",
            Outcome::Budget => "budget",
            Outcome::Interrupted => "interrupted",
            Outcome::Running => "running",
        }
    }
}

/// One phase as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseRun {
    pub kind: PhaseKind,
    /// `dev`, `review 2`, `fix 1`, `verify 1` (the verification after fix 1; `verify` after dev).
    pub label: String,
    /// The fix cycle the phase belongs to (0: dev and the first review).
    pub cycle: u32,
    pub attempt: u32,
    /// The backend, when the run journals one per phase (`codex`, `claude (opus)`).
    pub backend: Option<String>,
    pub session: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    /// Wall-clock, from the records' times.
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// Why it failed or what stopped it, in loop's words.
    pub detail: Option<String>,
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    pub commit: Option<String>,
    pub diffstat: Option<DiffStat>,
    /// Retries after a transient error or a stall within this phase.
    pub retries: u32,
    /// Where the agent's raw event log is, relative to the state dir (codex and claude keep
    /// one per attempt; a retry adds `-2`, `-3`… to the name).
    pub log: Option<String>,
}

/// One review's result.
#[derive(Clone, Debug, Serialize)]
pub struct ReviewEntry {
    /// 1 for the first review, 2 after fix 1…
    pub number: u32,
    pub at: DateTime<Utc>,
    pub verdict: Verdict,
    pub summary: Option<String>,
    pub required_actions: Vec<String>,
    /// The findings as `severity: title`.
    pub findings: Vec<String>,
    pub confidence: Option<String>,
}

/// One verification command loop ran.
#[derive(Clone, Debug, Serialize)]
pub struct CheckEntry {
    pub at: DateTime<Utc>,
    pub kind: CheckKind,
    pub command: String,
    pub passed: bool,
    /// `passed`, `failed (exit code 1)`, `pre-existing failure (…)`.
    pub status: String,
    pub duration_ms: u64,
    pub tail: String,
    /// The whole output's file.
    pub log: String,
}

/// What the guard decided.
#[derive(Clone, Debug, Serialize)]
pub struct GuardEntry {
    pub at: DateTime<Utc>,
    pub phase: Option<Phase>,
    /// `check passed`, `check failed`, `allowed`, `refused`, `violation`, `harness`.
    pub kind: &'static str,
    /// Whether this is a problem (a failed check, a refusal, a violation).
    pub bad: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetryEntry {
    pub at: DateTime<Utc>,
    pub phase: Phase,
    pub retry: u32,
    pub error: String,
    pub delay_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Interruption {
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CommitEntry {
    pub at: DateTime<Utc>,
    /// What made it: `dev`, `fix 1`, `review 1` (loop's review entry), `merge`.
    pub what: String,
    pub commit: String,
    pub diffstat: Option<DiffStat>,
}

/// Why a history could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("the journal is empty")]
    Empty,
    #[error("the journal's first record is not run_started")]
    NoStart,
}

/// Folds verified records into the run's history.
pub fn history(records: &[Record]) -> Result<RunHistory, HistoryError> {
    let first = records.first().ok_or(HistoryError::Empty)?;
    let Body::RunStarted(start) = &first.content.body else {
        return Err(HistoryError::NoStart);
    };
    let run_id = first.content.run_id.clone();
    let waves = waves(start.issues.iter().map(|p| (p.id.to_string(), p.blocked_by.iter().map(|d| d.to_string()))));
    let mut issues: Vec<Fold> = start
        .issues
        .iter()
        .zip(waves)
        .map(|(p, wave)| Fold {
            h: IssueHistory {
                id: p.id.to_string(),
                title: p.title.clone(),
                blocked_by: p.blocked_by.iter().map(|d| d.to_string()).collect(),
                branch: p.branch.to_string(),
                wave,
                base: None,
                merged: Vec::new(),
                state: Stage::Pending.name().to_string(),
                state_short: super::state_short(&Stage::Pending),
                reason: None,
                fix_cycles: 0,
                terminal: false,
                carried_from: None,
                first_at: None,
                last_at: None,
                phases: Vec::new(),
                reviews: Vec::new(),
                checks: Vec::new(),
                guard: Vec::new(),
                retries: Vec::new(),
                interruptions: Vec::new(),
                commits: Vec::new(),
                tokens: 0,
                cost_usd: 0.0,
                unpriced_phases: 0,
                worktree_kept: None,
            },
            open: None,
            backend: None,
            stage: Stage::Pending,
        })
        .collect();
    let index: BTreeMap<String, usize> = issues.iter().enumerate().map(|(i, f)| (f.h.id.clone(), i)).collect();
    let ctx = Ctx { run_id: &run_id, default_kind: &start.agent.kind };
    let mut stops = Vec::new();
    let mut finished = false;
    let mut last = first.content.time;
    for rec in &records[1..] {
        let at = rec.content.time;
        last = at;
        match &rec.content.body {
            Body::Issue { issue, event, to, evidence, .. } => {
                if let Some(&i) = index.get(issue.as_str()) {
                    issues[i].event(&ctx, at, event, to, evidence.as_ref());
                }
            }
            Body::Audit { issue, fact, evidence } => {
                if let Some(&i) = index.get(issue.as_str()) {
                    issues[i].fact(at, fact, evidence.as_ref());
                }
            }
            Body::RunInterrupted { reason } => {
                stops.push(RunStop { at, kind: "interrupted", reason: Some(reason.clone()) });
                for f in issues.iter_mut().filter(|f| f.open.is_some()) {
                    f.close(at, Outcome::Interrupted, Some(format!("run interrupted: {reason}")), None);
                }
            }
            Body::RunResumed => stops.push(RunStop { at, kind: "resumed", reason: None }),
            Body::RunFinished => finished = true,
            Body::RunStarted(_) | Body::WorktreeRepaired { .. } | Body::ProcessGroup { .. } | Body::Landed(_) => {}
        }
    }
    for f in &mut issues {
        if f.open.is_some() {
            f.close(last, Outcome::Running, None, None);
        }
    }
    let issues: Vec<IssueHistory> = issues.into_iter().map(|f| f.h).collect();
    let mut totals = Totals::default();
    for i in &issues {
        totals.tokens += i.tokens;
        totals.cost_usd += i.cost_usd;
        totals.unpriced_phases += i.unpriced_phases;
        totals.phases += i.phases.iter().filter(|p| p.kind != PhaseKind::Verify).count() as u32;
        totals.retries += i.retries.len() as u32;
        totals.interruptions += i.interruptions.len() as u32;
        *totals.by_state.entry(i.state.clone()).or_default() += 1;
        for c in &i.commits {
            totals.commits += 1;
            if let Some(d) = c.diffstat {
                totals.diffstat.files += d.files;
                totals.diffstat.insertions += d.insertions;
                totals.diffstat.deletions += d.deletions;
            }
        }
    }
    Ok(RunHistory {
        run_id,
        milestone: start.milestone.clone(),
        repo: start.repo.clone(),
        base_commit: start.base_commit.clone(),
        agent: start.agent.describe(),
        started_at: first.content.time,
        ended_at: last,
        duration_ms: millis(first.content.time, last),
        finished,
        stops,
        issues,
        totals,
        records: records.len() as u64,
    })
}

/// Each issue's plan wave, in the order given: 0 without dependencies, else one more than the
/// deepest dependency. A dependency that is not in the list (or a cycle) counts as wave 0.
pub fn waves<I, D>(issues: I) -> Vec<u32>
where
    I: IntoIterator<Item = (String, D)>,
    D: IntoIterator<Item = String>,
{
    let issues: Vec<(String, Vec<String>)> = issues.into_iter().map(|(id, d)| (id, d.into_iter().collect())).collect();
    let index: BTreeMap<&str, usize> = issues.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let mut wave = vec![0u32; issues.len()];
    // Longest path by relaxation: at most n rounds, so a cycle cannot loop forever.
    for _ in 0..issues.len() {
        let mut changed = false;
        for (i, (_, deps)) in issues.iter().enumerate() {
            let w = deps.iter().filter_map(|d| index.get(d.as_str())).map(|&j| wave[j] + 1).max().unwrap_or(0);
            if w > wave[i] && w <= issues.len() as u32 {
                wave[i] = w;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    wave
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_milliseconds().max(0) as u64
}

struct Ctx<'a> {
    run_id: &'a str,
    default_kind: &'a str,
}

/// One issue being folded: its history so far, the phase running, the backend announced for
/// the next phase, and the stage the records last gave it.
struct Fold {
    h: IssueHistory,
    open: Option<PhaseRun>,
    backend: Option<(String, Option<String>)>,
    stage: Stage,
}

impl Fold {
    fn touch(&mut self, at: DateTime<Utc>) {
        self.h.first_at.get_or_insert(at);
        self.h.last_at = Some(at);
    }

    fn absorb(&mut self, evidence: Option<&Evidence>) {
        let Some(e) = evidence else { return };
        if let Some(t) = e.tokens {
            self.h.tokens += t.total();
        }
        match e.cost_usd {
            Some(c) => self.h.cost_usd += c,
            None if e.tokens.is_some() => self.h.unpriced_phases += 1,
            None => {}
        }
    }

    fn open(&mut self, ctx: &Ctx, at: DateTime<Utc>, kind: PhaseKind, cycle: u32, attempt: u32) {
        let label = match kind {
            PhaseKind::Dev => "dev".to_string(),
            PhaseKind::Review => format!("review {}", cycle + 1),
            PhaseKind::Fix => format!("fix {cycle}"),
            PhaseKind::Verify if cycle == 0 => "verify".to_string(),
            PhaseKind::Verify => format!("verify {cycle}"),
        };
        let backend = match kind {
            PhaseKind::Verify => None,
            _ => self.backend.take(),
        };
        let kind_name = backend.as_ref().map(|(k, _)| k.as_str()).unwrap_or(ctx.default_kind);
        // The stems codex and claude name their logs by (`agent::common::log_stem`).
        let stem = match kind {
            PhaseKind::Dev => Some(format!("dev-attempt{attempt}")),
            PhaseKind::Review => Some(format!("review{}-attempt{attempt}", cycle + 1)),
            PhaseKind::Fix => Some(format!("fix{cycle}-attempt{attempt}")),
            PhaseKind::Verify => None,
        };
        let log = stem
            .filter(|_| matches!(kind_name, "codex" | "claude"))
            .map(|stem| format!("logs/{}/{}/{stem}.jsonl", sanitize(ctx.run_id), sanitize(&self.h.id)));
        self.open = Some(PhaseRun {
            kind,
            label,
            cycle,
            attempt,
            backend: backend.map(|(k, m)| match m {
                Some(m) => format!("{k} ({m})"),
                None => k,
            }),
            session: None,
            started_at: at,
            ended_at: at,
            duration_ms: 0,
            outcome: Outcome::Running,
            detail: None,
            tokens: None,
            cost_usd: None,
            commit: None,
            diffstat: None,
            retries: 0,
            log,
        });
    }

    fn close(&mut self, at: DateTime<Utc>, outcome: Outcome, detail: Option<String>, evidence: Option<&Evidence>) {
        let Some(mut p) = self.open.take() else { return };
        p.ended_at = at;
        p.duration_ms = millis(p.started_at, at);
        p.outcome = outcome;
        p.detail = detail.or_else(|| evidence.and_then(|e| e.note.clone()));
        if let Some(e) = evidence {
            p.tokens = e.tokens.or(p.tokens);
            p.cost_usd = e.cost_usd.or(p.cost_usd);
            p.session = e.session.clone().or(p.session);
            p.commit = e.commit.clone();
            p.diffstat = e.diffstat;
        }
        if outcome == Outcome::Interrupted {
            self.h.interruptions.push(Interruption { at, reason: p.detail.clone() });
        }
        self.h.phases.push(p);
    }

    fn commit(&mut self, at: DateTime<Utc>, what: String, evidence: Option<&Evidence>) {
        if let Some(e) = evidence {
            if let Some(c) = &e.commit {
                self.h.commits.push(CommitEntry { at, what, commit: c.clone(), diffstat: e.diffstat });
            }
        }
    }

    fn event(&mut self, ctx: &Ctx, at: DateTime<Utc>, event: &Event, to: &Stage, evidence: Option<&Evidence>) {
        self.touch(at);
        self.absorb(evidence);
        let label = self.open.as_ref().map(|p| p.label.clone());
        match event {
            Event::WorktreeIntent { base, merge, .. } => {
                self.h.base = Some(base.clone());
                self.h.merged = merge.clone();
            }
            Event::PhaseStarted { phase, attempt } => {
                if self.open.is_some() {
                    // Started again without an end: the earlier attempt was cut short.
                    self.close(at, Outcome::Interrupted, Some("started again".into()), None);
                }
                let kind = match phase {
                    Phase::Dev => PhaseKind::Dev,
                    Phase::Review => PhaseKind::Review,
                    Phase::Fix => PhaseKind::Fix,
                };
                self.open(ctx, at, kind, to.cycle(), *attempt);
            }
            Event::SessionStarted { session, .. } => {
                if let Some(p) = &mut self.open {
                    p.session = Some(session.clone());
                }
            }
            Event::WorkFinished { status, .. } => {
                let outcome = match status {
                    WorkStatus::Pass => Outcome::Pass,
                    WorkStatus::Failed => Outcome::Failed,
                    WorkStatus::Deferred => Outcome::Deferred,
                };
                self.commit(at, label.unwrap_or_default(), evidence);
                self.close(at, outcome, None, evidence);
            }
            Event::ReviewFinished { verdict } => {
                let outcome = match verdict {
                    Verdict::Pass => Outcome::Pass,
                    Verdict::ChangesRequired => Outcome::ChangesRequired,
                    Verdict::Blocked => Outcome::Blocked,
                };
                let number = self.h.reviews.len() as u32 + 1;
                let parsed = evidence.and_then(|e| e.output.as_deref()).and_then(|o| parse_review(o).ok());
                self.h.reviews.push(ReviewEntry {
                    number,
                    at,
                    verdict: *verdict,
                    summary: parsed.as_ref().map(|r| r.summary.clone()),
                    required_actions: parsed.as_ref().map(|r| r.required_actions.clone()).unwrap_or_default(),
                    findings: parsed
                        .as_ref()
                        .map(|r| r.issues.iter().map(|f| format!("{}: {}", f.severity, f.title)).collect())
                        .unwrap_or_default(),
                    confidence: parsed.map(|r| r.confidence),
                });
                self.commit(at, label.unwrap_or_default(), evidence);
                self.close(at, outcome, None, evidence);
            }
            Event::PhaseFailed { reason, .. } => self.close(at, Outcome::Failed, Some(reason.clone()), evidence),
            Event::GuardCheckFailed { phase, details } => {
                self.guard(at, Some(*phase), "check failed", true, details.join("; "));
                self.close(at, Outcome::Guard, Some(format!("guard check failed: {}", details.join("; "))), evidence);
            }
            Event::GuardViolation { phase, changes } => {
                self.guard(at, Some(*phase), "violation", true, changes.join("; "));
                self.close(at, Outcome::Guard, Some(format!("guard violation: {}", changes.join("; "))), evidence);
            }
            Event::BudgetExceeded { used, limit } => {
                self.close(at, Outcome::Budget, Some(format!("{used} tokens used, limit {limit}")), evidence);
            }
            Event::CostExceeded { .. } | Event::RunBudgetSpent { .. } => {
                self.close(at, Outcome::Budget, to.reason().map(|r| r.to_string()), evidence);
            }
            Event::VerifyFinished { failures } => {
                let detail = (!failures.is_empty()).then(|| failures.join("\n"));
                let outcome = if failures.is_empty() { Outcome::Pass } else { Outcome::Failed };
                self.close(at, outcome, detail, evidence);
            }
            Event::BasesMerged { .. } => self.commit(at, "merge".into(), evidence),
            Event::CarriedOver { run, .. } => self.h.carried_from = Some(run.clone()),
            Event::WorktreeKept { path, reason } => self.h.worktree_kept = Some(format!("{path}: {reason}")),
            Event::Reopened { .. } => {
                self.h.reason = None;
            }
            Event::DependencyNotDone { .. }
            | Event::WorktreeCreated { .. }
            | Event::WorktreeFailed { .. }
            | Event::StackTrackFailed { .. }
            | Event::WorktreeRemoved { .. }
            | Event::MergeConflict { .. } => {}
        }
        // Moving into Verify starts loop's verification of the work just done.
        if let Stage::Verify { fix_cycles } = to {
            if !matches!(self.stage, Stage::Verify { .. }) {
                self.open(ctx, at, PhaseKind::Verify, *fix_cycles, 1);
            }
        }
        self.stage = to.clone();
        self.h.state = to.name().to_string();
        self.h.state_short = super::state_short(to);
        self.h.fix_cycles = to.fix_cycles();
        self.h.terminal = to.is_terminal();
        if let Some(r) = to.reason() {
            self.h.reason = Some(r.to_string());
        }
    }

    fn guard(&mut self, at: DateTime<Utc>, phase: Option<Phase>, kind: &'static str, bad: bool, detail: String) {
        self.h.guard.push(GuardEntry { at, phase, kind, bad, detail });
    }

    fn fact(&mut self, at: DateTime<Utc>, fact: &Fact, evidence: Option<&Evidence>) {
        self.touch(at);
        self.absorb(evidence);
        match fact {
            Fact::GuardChecked { phase, details } => {
                let detail = if details.is_empty() { "ok".to_string() } else { details.join("; ") };
                self.guard(at, Some(*phase), "check passed", false, detail);
            }
            Fact::CommandDecided { phase, tool, argv, allowed, rule } => {
                let kind = if *allowed { "allowed" } else { "refused" };
                self.guard(at, Some(*phase), kind, !allowed, format!("{tool} {} [{rule}]", argv.join(" ")));
            }
            Fact::HarnessCommands { phase, count, sample } => {
                let detail = format!("{count} git command(s) by the agent's harness: {}", sample.join("; "));
                self.guard(at, Some(*phase), "harness", false, detail);
            }
            Fact::Interrupted => {
                let reason = evidence.and_then(|e| e.note.clone());
                if self.open.is_some() {
                    self.close(at, Outcome::Interrupted, reason, evidence);
                } else {
                    self.h.interruptions.push(Interruption { at, reason });
                }
            }
            Fact::CheckRan(c) => self.h.checks.push(check_entry(at, c)),
            Fact::PhaseAgent { kind, model, .. } => self.backend = Some((kind.clone(), model.clone())),
            Fact::AgentRetried { phase, retry, error, delay_ms, .. } => {
                if let Some(p) = &mut self.open {
                    p.retries += 1;
                }
                self.h.retries.push(RetryEntry {
                    at,
                    phase: *phase,
                    retry: *retry,
                    error: error.clone(),
                    delay_ms: *delay_ms,
                });
            }
            Fact::StackTracked { .. }
            | Fact::StackSubmitted { .. }
            | Fact::BaselineChecked { .. }
            | Fact::SetupChecked { .. } => {}
        }
    }
}

fn check_entry(at: DateTime<Utc>, c: &CheckRun) -> CheckEntry {
    CheckEntry {
        at,
        kind: c.kind,
        command: c.command.clone(),
        passed: c.passed(),
        status: c.status(),
        duration_ms: c.duration_ms,
        tail: c.tail.clone(),
        log: c.log.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Vec<Record> {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/journals/demo-golden.loopj")).unwrap();
        let store = crate::journal::parse_export(&bytes, "demo-golden.loopj").unwrap();
        crate::journal::read_all(&store).unwrap()
    }

    /// The demo's journal (the simulated agent): each issue's phases in order, the reviews and
    /// the end states as the run recorded them.
    #[test]
    fn the_demo_run_folds_into_phases_reviews_and_end_states() {
        let h = history(&golden()).unwrap();
        assert_eq!(h.run_id, "golden-demo");
        assert!(h.finished);
        let ids: Vec<&str> = h.issues.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["ORB-1", "ORB-2", "ORB-3", "ORB-5", "ORB-4"], "plan order");
        assert_eq!(h.totals.by_state.get("Done"), Some(&4));
        assert_eq!(h.totals.by_state.get("Capped"), Some(&1));

        let orb4 = h.issues.iter().find(|i| i.id == "ORB-4").unwrap();
        let labels: Vec<&str> = orb4.phases.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["dev", "review 1", "fix 1", "review 2", "fix 2", "review 3"]);
        assert_eq!(orb4.state, "Capped");
        assert_eq!(orb4.reason.as_deref(), Some("changes still required after 2 fix cycles"));
        assert_eq!(orb4.reviews.len(), 3);
        assert!(orb4.reviews.iter().all(|r| r.verdict == Verdict::ChangesRequired));
        // The simulated reviewer's reply validates, so its summary and actions are kept.
        assert!(orb4.reviews.iter().all(|r| r.summary.is_some()), "{:?}", orb4.reviews);
        assert!(!orb4.reviews[2].required_actions.is_empty(), "{:?}", orb4.reviews[2]);
        // Phases are in time order and never overlap.
        for w in orb4.phases.windows(2) {
            assert!(w[0].ended_at <= w[1].started_at);
        }
        // The guard checked before every phase.
        assert_eq!(orb4.guard.iter().filter(|g| g.kind == "check passed").count(), 6);
        // The sim agent keeps no logs of its own.
        assert!(orb4.phases.iter().all(|p| p.log.is_none()));

        let orb2 = h.issues.iter().find(|i| i.id == "ORB-2").unwrap();
        assert_eq!(orb2.state, "Done");
        assert_eq!(orb2.reason, None);
        assert_eq!(orb2.phases.iter().map(|p| p.outcome).collect::<Vec<_>>(), {
            use Outcome::*;
            [Pass, ChangesRequired, Pass, Pass]
        });
        assert!(orb2.base.is_some());
        assert!(serde_json::to_value(&h).is_ok());
    }

    #[test]
    fn waves_follow_the_deepest_dependency_and_survive_a_cycle() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let plan = vec![
            ("A".to_string(), s(&[])),
            ("B".to_string(), s(&["A"])),
            ("C".to_string(), s(&["A", "B"])),
            ("D".to_string(), s(&["X"])),
        ];
        assert_eq!(waves(plan), [0, 1, 2, 0]);
        let cyclic = vec![("A".to_string(), s(&["B"])), ("B".to_string(), s(&["A"]))];
        assert!(waves(cyclic).iter().all(|w| *w <= 2));
    }
}
