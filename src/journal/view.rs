//! The fold of a journal into per-issue states: the one place that turns records into "where
//! does each issue stand". The engine, `status`, `resume` and `replay` all use it, so a live run
//! and a replay can never disagree about what a record means.
//!
//! Invariants:
//! - Every issue's state is the machine's own [`State`] (stage, worktree lifecycle, attempts,
//!   session); the view keeps no second state machine, only tallies beside it (tokens, guard
//!   decisions, the last review, interruptions, the last commit and process group).
//! - [`RunView::apply`] re-runs [`machine::transition`] on every machine event and compares the
//!   stage and the commands it decides now with what the record says was decided; any
//!   difference is a [`Divergence`] ("journal and code disagree"), kept apart from corruption,
//!   which the chain reader reports. It steps each issue's state in place
//!   ([`machine::transition_in_place`], the same table) and, on a divergence, puts it back: the
//!   view always ends at the last record that agreed.
//! - Audit facts never reach the machine; they only move tallies.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use super::record::{Body, Evidence, Fact, Record, RunStart};
use crate::machine::{self, Command, Event, IllegalTransition, Rules, Stage, State, Worktree};
use crate::vocab::{CarriedIssue, CheckKind, CheckRun};

#[derive(Clone, Debug, Serialize)]
pub struct IssueView {
    pub id: String,
    pub state: State,
    /// The latest review's raw output (the fix agent's input).
    pub last_review: Option<String>,
    pub interruptions: u32,
    /// Tokens used by all of this issue's phases.
    pub tokens: u64,
    /// Tokens used since the issue was last reopened (`loop retry`): what its budget counts,
    /// so an issue Capped by its budget can go on.
    #[serde(skip)]
    pub budget_tokens: u64,
    /// USD spent by the phases whose cost is known (reported by the agent or priced from the
    /// run's price table).
    #[serde(skip)]
    pub cost_usd: f64,
    /// USD spent since the last reopen: what the cost budgets count.
    #[serde(skip)]
    pub budget_cost_usd: f64,
    /// Phases that used tokens but whose cost is unknown (no price for their model).
    #[serde(skip)]
    pub unpriced_phases: u32,
    /// Phases whose cost is known.
    #[serde(skip)]
    pub priced_phases: u32,
    /// Done in an earlier run and carried over into this one (`carried_over`): where its work is.
    pub carried: Option<CarriedIssue>,
    pub guard: GuardTally,
    /// The last commit journaled for this issue (evidence of a phase): what its branch must hold.
    #[serde(skip)]
    pub commit: Option<String>,
    /// The last process group recorded for this issue's phases: `(pgid, start_time)`.
    #[serde(skip)]
    pub process_group: Option<(i32, u64)>,
    /// The checks of the issue's latest verification (setup and baseline runs are not here).
    #[serde(skip)]
    pub verification: Vec<CheckRun>,
    /// A verification is under way: its checks replace the previous one's.
    #[serde(skip)]
    verifying: bool,
    /// Retries of the current phase after a transient error or a stall (`agent_retried` since
    /// the issue's last machine event other than `phase_started` / `session_started`): resume
    /// goes on counting.
    #[serde(skip)]
    pub phase_retries: u32,
    /// Retries of any phase after a transient error or a stall, over the whole run.
    pub agent_retries: u32,
}

impl IssueView {
    pub fn worktree(&self) -> Option<&Worktree> {
        self.state.worktree.as_ref()
    }

    /// Tallies a record's evidence: tokens spent and the commit made.
    fn absorb(&mut self, evidence: Option<&Evidence>) {
        let Some(e) = evidence else { return };
        if let Some(c) = &e.commit {
            self.commit = Some(c.clone());
        }
        if let Some(t) = e.tokens {
            self.tokens += t.total();
            self.budget_tokens += t.total();
        }
        match e.cost_usd {
            Some(c) => {
                self.cost_usd += c;
                self.budget_cost_usd += c;
                self.priced_phases += 1;
            }
            None if e.tokens.is_some() => self.unpriced_phases += 1,
            None => {}
        }
    }

    /// The issue's cost when every phase's is known; None when some phase's is not.
    pub fn known_cost_usd(&self) -> Option<f64> {
        (self.unpriced_phases == 0).then_some(self.cost_usd)
    }
}

/// What the guard decided for one issue, for `status` and `replay`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GuardTally {
    pub checks_failed: u32,
    pub allowed: u32,
    pub refused: u32,
    /// The first refused commands (`git worktree add ../y [git-worktree (shim)]`), at most
    /// [`GuardTally::SHOWN`].
    pub refused_commands: Vec<String>,
    pub violations: u32,
    /// git commands codex's own harness ran through the shim (not the agent's decisions).
    pub harness: u32,
}

impl GuardTally {
    pub const SHOWN: usize = 5;
}

/// The issue index's hasher: every replayed record looks its issue up, and SipHash's defence
/// against chosen keys buys nothing for ids the run's own plan fixed. FNV-1a over the bytes,
/// then murmur3's finalizer so every bit of the state reaches the low bits (the bucket) and the
/// top bits (hashbrown's tag).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h ^ 0xcbf2_9ce4_8422_2325;
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[derive(Clone, Debug)]
pub struct RunView {
    pub run_id: String,
    pub start: RunStart,
    pub issues: Vec<IssueView>,
    index: HashMap<String, usize, BuildHasherDefault<IdHasher>>,
    pub finished: bool,
    pub interrupted: bool,
    pub records: u64,
    /// Baselines checked in this run, by tree id: the commands failing there (None: the base
    /// could not be checked, so no failure counts as pre-existing).
    pub baselines: HashMap<String, Option<Vec<String>>>,
    /// Lockfile hashes whose setup passed in this run.
    pub setups_passed: HashSet<String>,
    /// The last `loop land` of this run, if any.
    pub landing: Option<crate::vocab::Landing>,
    /// When the run started (its first record) and when its latest record was written.
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub last_at: chrono::DateTime<chrono::Utc>,
}

/// Why a record could not be applied although its bytes and chain are fine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    #[error("record {seq}: {source}")]
    Illegal { seq: u64, source: IllegalTransition },
    #[error("record {seq}: issue {issue}: journal says {recorded:?}, code decides {computed:?}")]
    Mismatch { seq: u64, issue: String, recorded: Box<Stage>, computed: Box<Stage> },
    #[error("record {seq}: issue {issue}: journal says the engine was told {recorded:?}, code decides {computed:?}")]
    Commands { seq: u64, issue: String, recorded: Vec<Command>, computed: Vec<Command> },
    #[error("record {seq}: issue {issue} is not part of this run")]
    UnknownIssue { seq: u64, issue: String },
    #[error("record {seq}: a second run_started")]
    Restarted { seq: u64 },
    #[error("record {seq}: the first record is not run_started")]
    NoStart { seq: u64 },
}

impl Divergence {
    pub fn seq(&self) -> u64 {
        match self {
            Divergence::Illegal { seq, .. }
            | Divergence::Mismatch { seq, .. }
            | Divergence::Commands { seq, .. }
            | Divergence::UnknownIssue { seq, .. }
            | Divergence::Restarted { seq }
            | Divergence::NoStart { seq } => *seq,
        }
    }
}

/// What applying one record did, for timelines.
#[derive(Clone, Debug)]
pub struct Applied {
    pub issue: Option<String>,
    pub from: Option<Stage>,
    pub to: Option<Stage>,
}

impl RunView {
    /// USD the run's budget counts: every issue's spend since its last reopen.
    pub fn budget_cost_usd(&self) -> f64 {
        self.issues.iter().map(|i| i.budget_cost_usd).sum()
    }

    /// Whether costs are worth showing: the run records prices, budgets or per-phase agents, or
    /// some phase used tokens (its cost known, or unknown for want of a price: said, never 0).
    pub fn shows_cost(&self) -> bool {
        self.start.spend.is_some() || self.issues.iter().any(|i| i.priced_phases + i.unpriced_phases > 0)
    }

    /// Starts a view from the run's first record.
    pub fn new(first: &Record) -> Result<RunView, Divergence> {
        let Body::RunStarted(start) = &first.content.body else {
            return Err(Divergence::NoStart { seq: first.seq() });
        };
        let issues: Vec<IssueView> = start
            .issues
            .iter()
            .map(|p| IssueView {
                id: p.id.to_string(),
                state: State::PENDING,
                last_review: None,
                interruptions: 0,
                tokens: 0,
                budget_tokens: 0,
                cost_usd: 0.0,
                budget_cost_usd: 0.0,
                unpriced_phases: 0,
                priced_phases: 0,
                carried: None,
                guard: GuardTally::default(),
                commit: None,
                process_group: None,
                verification: Vec::new(),
                verifying: false,
                phase_retries: 0,
                agent_retries: 0,
            })
            .collect();
        let index = issues.iter().enumerate().map(|(i, v)| (v.id.clone(), i)).collect();
        Ok(RunView {
            run_id: first.content.run_id.clone(),
            start: start.clone(),
            issues,
            index,
            finished: false,
            interrupted: false,
            records: 1,
            baselines: HashMap::new(),
            setups_passed: HashSet::new(),
            landing: None,
            started_at: first.content.time,
            last_at: first.content.time,
        })
    }

    /// Folds a whole verified record list.
    pub fn fold(records: &[Record]) -> Result<RunView, Divergence> {
        let first = records.first().ok_or(Divergence::NoStart { seq: 0 })?;
        let mut view = RunView::new(first)?;
        for r in &records[1..] {
            view.apply(r)?;
        }
        Ok(view)
    }

    pub fn issue(&self, id: &str) -> Option<&IssueView> {
        self.index.get(id).map(|&i| &self.issues[i])
    }

    pub fn state_of(&self, id: &str) -> Option<&State> {
        self.issue(id).map(|v| &v.state)
    }

    /// The rules the machine applies to `issue` (the run's, plus whether it has checks).
    pub fn rules_for(&self, issue: &str) -> Rules {
        match self.index.get(issue) {
            Some(&i) => self.start.rules_of(&self.start.issues[i]),
            None => self.start.rules,
        }
    }

    fn index_of(&self, seq: u64, issue: &str) -> Result<usize, Divergence> {
        self.index.get(issue).copied().ok_or_else(|| Divergence::UnknownIssue { seq, issue: issue.to_string() })
    }

    pub fn all_terminal(&self) -> bool {
        self.issues.iter().all(|i| i.state.is_terminal())
    }

    /// Applies the record after the ones already folded.
    pub fn apply(&mut self, rec: &Record) -> Result<Applied, Divergence> {
        Ok(match self.fold_in(rec)? {
            None => Applied { issue: None, from: None, to: None },
            Some((idx, from)) => {
                let view = &self.issues[idx];
                let to = from.as_ref().map(|_| view.state.stage.clone());
                Applied { issue: Some(view.id.clone()), from, to }
            }
        })
    }

    /// [`RunView::apply`] for a reader that does not look at what the record did (`status`,
    /// `resume`, the streaming fold): the same checks and the same view, without copying the
    /// issue id and stages out for every record.
    pub fn apply_quiet(&mut self, rec: &Record) -> Result<(), Divergence> {
        self.fold_in(rec).map(|_| ())
    }

    /// The one fold step: the issue the record was about (its index) and, for a machine event,
    /// the stage it left.
    fn fold_in(&mut self, rec: &Record) -> Result<Option<(usize, Option<Stage>)>, Divergence> {
        let seq = rec.seq();
        self.records += 1;
        self.last_at = rec.content.time;
        match &rec.content.body {
            Body::RunStarted(_) => Err(Divergence::Restarted { seq }),
            Body::RunResumed => {
                self.interrupted = false;
                Ok(None)
            }
            Body::RunInterrupted { .. } => {
                self.interrupted = true;
                Ok(None)
            }
            Body::RunFinished => {
                self.finished = true;
                Ok(None)
            }
            Body::Landed(landing) => {
                self.landing = Some(landing.clone());
                Ok(None)
            }
            Body::WorktreeRepaired { issue, .. } => Ok(Some((self.index_of(seq, issue)?, None))),
            Body::ProcessGroup { issue, pgid, start_time, .. } => {
                let idx = self.index_of(seq, issue)?;
                self.issues[idx].process_group = Some((*pgid, *start_time));
                Ok(Some((idx, None)))
            }
            Body::Audit { issue, fact, evidence } => {
                let idx = self.index_of(seq, issue)?;
                match fact {
                    Fact::BaselineChecked { tree, failing, unusable, .. } => {
                        self.baselines.insert(tree.clone(), unusable.is_none().then(|| failing.clone()));
                    }
                    Fact::SetupChecked { lockfiles, ran: true, passed: true } => {
                        self.setups_passed.insert(lockfiles.clone());
                    }
                    _ => {}
                }
                let view = &mut self.issues[idx];
                match fact {
                    Fact::Interrupted => view.interruptions += 1,
                    Fact::CommandDecided { allowed: true, .. } => view.guard.allowed += 1,
                    Fact::CommandDecided { tool, argv, allowed: false, rule, .. } => {
                        view.guard.refused += 1;
                        if view.guard.refused_commands.len() < GuardTally::SHOWN {
                            view.guard.refused_commands.push(format!("{tool} {} [{rule}]", argv.join(" ")));
                        }
                    }
                    Fact::CheckRan(run) if run.kind == CheckKind::Check => {
                        if !view.verifying {
                            view.verifying = true;
                            view.verification.clear();
                        }
                        // A verification run again after an interruption replaces its own checks.
                        match view.verification.iter_mut().find(|c| c.command == run.command) {
                            Some(c) => *c = run.clone(),
                            None => view.verification.push(run.clone()),
                        }
                    }
                    Fact::AgentRetried { retry, .. } => {
                        view.phase_retries = *retry;
                        view.agent_retries += 1;
                    }
                    Fact::HarnessCommands { count, .. } => view.guard.harness += count,
                    Fact::GuardChecked { .. }
                    | Fact::StackTracked { .. }
                    | Fact::StackSubmitted { .. }
                    | Fact::CheckRan(_)
                    | Fact::BaselineChecked { .. }
                    | Fact::SetupChecked { .. }
                    | Fact::PhaseAgent { .. } => {}
                }
                view.absorb(evidence.as_ref());
                Ok(Some((idx, None)))
            }
            Body::Issue { issue, event, to, commands, evidence } => {
                let idx = self.index_of(seq, issue)?;
                let rules = self.start.rules_of(&self.start.issues[idx]);
                let view = &mut self.issues[idx];
                // In place, not on a copy of the state: a divergence puts the state back, so the
                // view still ends at the last record that agreed.
                let (computed, undo) = machine::transition_in_place(&mut view.state, event, &rules)
                    .map_err(|source| Divergence::Illegal { seq, source })?;
                if !view.state.stage.agrees_with(to) {
                    let computed = Box::new(view.state.stage.clone());
                    undo.restore(&mut view.state);
                    return Err(Divergence::Mismatch {
                        seq,
                        issue: issue.clone(),
                        recorded: Box::new(to.clone()),
                        computed,
                    });
                }
                if let Some(recorded) = commands.as_ref().filter(|c| **c != computed) {
                    undo.restore(&mut view.state);
                    return Err(Divergence::Commands {
                        seq,
                        issue: issue.clone(),
                        recorded: recorded.clone(),
                        computed,
                    });
                }
                // A phase's result (or any other step) starts the count again; its start (again, at
                // resume) and its session do not.
                if !matches!(event, Event::SessionStarted { .. } | Event::PhaseStarted { .. }) {
                    view.phase_retries = 0;
                }
                match event {
                    Event::ReviewFinished { .. } => {
                        view.last_review = evidence.as_ref().and_then(|e| e.output.clone());
                    }
                    Event::VerifyFinished { failures } => {
                        view.verifying = false;
                        // The fix agent's required actions are the failures, as a review's would be.
                        if !failures.is_empty() {
                            let actions = serde_json::json!({
                                "summary": "loop's verification failed",
                                "required_actions": failures,
                            });
                            view.last_review = Some(actions.to_string());
                        }
                    }
                    Event::GuardCheckFailed { .. } => view.guard.checks_failed += 1,
                    Event::GuardViolation { .. } => view.guard.violations += 1,
                    Event::Reopened { .. } => {
                        view.budget_tokens = 0;
                        view.budget_cost_usd = 0.0;
                    }
                    Event::CarriedOver { run, branch, tip } => {
                        view.commit = Some(tip.clone());
                        view.carried = Some(CarriedIssue {
                            issue: issue.as_str().into(),
                            run: run.clone(),
                            branch: branch.clone(),
                            tip: tip.clone(),
                        });
                    }
                    _ => {}
                }
                view.absorb(evidence.as_ref());
                let from = undo.stage;
                if matches!(event, Event::Reopened { .. }) {
                    // A reopened issue has work left: the run is no longer finished.
                    self.finished = false;
                }
                Ok(Some((idx, Some(from))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{self, AgentSpec, Content, Hash, PlannedIssue};
    use crate::journal::v1;
    use crate::machine::{Phase, Rules, Verdict, WorkStatus};
    use crate::vocab::Tokens;

    fn start() -> RunStart {
        let issue = |id: &str, deps: &[&str]| PlannedIssue {
            id: id.into(),
            title: id.into(),
            doc: format!("docs/{id}.md"),
            blocked_by: deps.iter().map(|d| (*d).into()).collect(),
            branch: format!("loop/M/{id}").into(),
            worktree: format!("/w/{id}"),
            verify: Vec::new(),
        };
        RunStart {
            tool_version: "t".into(),
            milestone: "M".into(),
            repo: "/repo".into(),
            base_commit: "0".repeat(40),
            rules: Rules::with_max_fix_cycles(1),
            agent: AgentSpec { kind: "sim".into(), scenario: None, settings: None },
            phase_timeout_secs: 60,
            max_tokens_per_issue: None,
            review_doc: false,
            issues: vec![issue("A", &[]), issue("B", &["A"]), issue("C", &[])],
            guard: None,
            verify: Default::default(),
            earlier: Default::default(),
            resilience: Default::default(),
            spend: None,
        }
    }

    fn ev(tokens: u64, output: &str, commit: Option<&str>) -> Option<Evidence> {
        Some(Evidence {
            output: Some(output.into()),
            tokens: Some(Tokens { input: tokens, ..Default::default() }),
            commit: commit.map(String::from),
            ..Default::default()
        })
    }

    /// A run as format 1 recorded it: (issue, event, evidence), with every kind of event,
    /// the state-free ones included.
    fn script() -> Vec<(&'static str, v1::Event, Option<Evidence>)> {
        use v1::Event as E;
        let wt = |id: &str| (format!("/w/{id}"), format!("loop/M/{id}"), "c0".to_string());
        let (pa, ba, ca) = wt("A");
        let (pc, bc, cc) = wt("C");
        vec![
            ("A", E::WorktreeIntent { path: pa.clone(), branch: ba.clone(), base: ca.clone() }, None),
            ("A", E::WorktreeCreated { path: pa.clone(), branch: ba.clone(), base: ca }, None),
            ("A", E::StackTracked { parent: "main".into(), error: None }, None),
            ("A", E::PhaseStarted { phase: Phase::Dev, attempt: 1 }, None),
            ("A", E::GuardChecked { phase: Phase::Dev, ok: true, details: vec!["clean".into()] }, None),
            ("A", E::SessionStarted { phase: Phase::Dev, session: "t1".into() }, None),
            ("A", E::Interrupted, ev(5, "", None)),
            ("A", E::PhaseStarted { phase: Phase::Dev, attempt: 2 }, None),
            (
                "A",
                E::CommandDecided {
                    phase: Phase::Dev,
                    tool: "gt".into(),
                    argv: vec!["sync".into()],
                    allowed: false,
                    rule: "r".into(),
                },
                None,
            ),
            (
                "A",
                E::CommandDecided {
                    phase: Phase::Dev,
                    tool: "git".into(),
                    argv: vec!["status".into()],
                    allowed: true,
                    rule: "ok".into(),
                },
                None,
            ),
            ("A", E::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass }, ev(10, "{}", Some("c1"))),
            ("A", E::PhaseStarted { phase: Phase::Review, attempt: 1 }, None),
            ("A", E::ReviewFinished { verdict: Verdict::ChangesRequired }, ev(3, "fix it", None)),
            ("A", E::PhaseStarted { phase: Phase::Fix, attempt: 1 }, None),
            ("A", E::WorkFinished { phase: Phase::Fix, status: WorkStatus::Pass }, ev(4, "{}", Some("c2"))),
            ("A", E::PhaseStarted { phase: Phase::Review, attempt: 1 }, None),
            ("A", E::ReviewFinished { verdict: Verdict::ChangesRequired }, ev(2, "still", None)),
            ("A", E::WorktreeRemoved { path: pa }, None),
            ("B", E::DependencyNotDone { dependency: "A".into(), dependency_state: "Capped".into() }, None),
            ("C", E::WorktreeCreated { path: pc.clone(), branch: bc, base: cc }, None),
            ("C", E::PhaseStarted { phase: Phase::Dev, attempt: 1 }, None),
            ("C", E::GuardViolation { phase: Phase::Dev, changes: vec!["ref x".into()] }, None),
            ("C", E::WorktreeKept { path: pc, reason: "issue ended Failed; kept for inspection".into() }, None),
        ]
    }

    fn v1_record(seq: u64, prev: Hash, body: v1::Body) -> Record {
        let c = v1::Content {
            version: v1::VERSION,
            run_id: "r".into(),
            seq,
            time: "2026-01-01T00:00:00Z".parse().unwrap(),
            prev,
            body,
        };
        record::open(&v1::seal(&c).0).expect("a format-1 record opens")
    }

    /// The same run, as format 1 wrote it and as this code writes it, folds to the same end.
    #[test]
    fn a_v1_record_stream_replays_to_the_same_end_states() {
        // Format 1, with the states the old machine recorded.
        let mut old = vec![v1_record(0, Hash::ZERO, v1::Body::RunStarted(start()))];
        let mut states: HashMap<&str, v1::State> = HashMap::new();
        for (issue, event, evidence) in script() {
            let from = states.get(issue).cloned().unwrap_or(v1::State::Pending);
            let to = old_machine(&from, &event);
            states.insert(issue, to.clone());
            let body = v1::Body::Issue { issue: issue.into(), event, to, evidence };
            let prev = old.last().unwrap().hash;
            old.push(v1_record(old.len() as u64, prev, body));
        }
        let old_view = RunView::fold(&old).expect("format 1 replays");

        // Format 2, written the way the engine writes it.
        let first = Record {
            content: Content {
                version: record::FORMAT_VERSION,
                run_id: "r".into(),
                seq: 0,
                time: Default::default(),
                prev: Hash::ZERO,
                body: Body::RunStarted(start()),
            },
            hash: Hash::ZERO,
        };
        let mut new_view = RunView::new(&first).unwrap();
        for (n, r) in old[1..].iter().enumerate() {
            let body = match &r.content.body {
                Body::Issue { issue, event, evidence, .. } => {
                    let from = new_view.state_of(issue).unwrap().clone();
                    let (to, commands) = machine::transition(&from, event, &new_view.rules_for(issue)).unwrap();
                    Body::Issue {
                        issue: issue.clone(),
                        event: event.clone(),
                        to: to.stage,
                        commands: Some(commands),
                        evidence: evidence.clone(),
                    }
                }
                other => other.clone(),
            };
            let content = Content { seq: n as u64 + 1, body, ..first.content.clone() };
            new_view.apply(&Record { content, hash: Hash::ZERO }).expect("format 2 replays");
        }

        for (a, b) in old_view.issues.iter().zip(&new_view.issues) {
            assert_eq!(a.state.stage.kind(), b.state.stage.kind(), "{}", a.id);
            assert_eq!(a.state.reason().map(|r| r.to_string()), b.state.reason().map(|r| r.to_string()));
            assert!(b.state.stage.agrees_with(&a.state.stage), "{}: {:?} vs {:?}", a.id, a.state, b.state);
            assert_eq!(
                (&a.state.worktree, a.state.attempts, &a.state.session),
                (&b.state.worktree, b.state.attempts, &b.state.session)
            );
            assert_eq!(
                (a.tokens, &a.guard, a.interruptions, &a.last_review, &a.commit),
                (b.tokens, &b.guard, b.interruptions, &b.last_review, &b.commit)
            );
        }
        let a = old_view.issue("A").unwrap();
        assert_eq!(a.state.reason().unwrap().to_string(), "changes still required after 1 fix cycles");
        assert!(a.state.worktree.as_ref().unwrap().removed());
        assert_eq!((a.tokens, a.interruptions, a.guard.refused, a.guard.allowed), (24, 1, 1, 1));
        assert_eq!(old_view.issue("B").unwrap().state.reason().unwrap().to_string(), "dependency A ended Capped");
        let c = old_view.issue("C").unwrap();
        assert_eq!(
            (c.guard.violations, c.state.worktree.as_ref().unwrap().kept()),
            (1, Some("issue ended Failed; kept for inspection"))
        );
    }

    /// The quiet fold (what `status`, `resume` and the streaming reader use) leaves the view
    /// exactly as the fold that reports each step; the reported steps name the record's issue and,
    /// for machine events only, the stage it left and the one it reached.
    #[test]
    fn the_quiet_fold_ends_where_the_reporting_fold_ends() {
        let mut recs = vec![v1_record(0, Hash::ZERO, v1::Body::RunStarted(start()))];
        let mut states: HashMap<&str, v1::State> = HashMap::new();
        for (issue, event, evidence) in script() {
            let from = states.get(issue).cloned().unwrap_or(v1::State::Pending);
            let to = old_machine(&from, &event);
            states.insert(issue, to.clone());
            let prev = recs.last().unwrap().hash;
            recs.push(v1_record(recs.len() as u64, prev, v1::Body::Issue { issue: issue.into(), event, to, evidence }));
        }
        let mut loud = RunView::new(&recs[0]).unwrap();
        let mut quiet = RunView::new(&recs[0]).unwrap();
        let mut machine_steps = 0;
        for r in &recs[1..] {
            let before = match &r.content.body {
                Body::Issue { issue, .. } | Body::Audit { issue, .. } => {
                    Some(loud.state_of(issue).unwrap().stage.clone())
                }
                _ => None,
            };
            let applied = loud.apply(r).unwrap();
            quiet.apply_quiet(r).unwrap();
            match &r.content.body {
                Body::Issue { issue, .. } => {
                    machine_steps += 1;
                    assert_eq!(applied.issue.as_deref(), Some(issue.as_str()));
                    assert_eq!(applied.from, before);
                    assert_eq!(applied.to.as_ref(), Some(&loud.state_of(issue).unwrap().stage));
                }
                Body::Audit { issue, .. } => {
                    assert_eq!(applied.issue.as_deref(), Some(issue.as_str()));
                    assert_eq!((applied.from, applied.to), (None, None));
                }
                _ => assert!(applied.issue.is_none()),
            }
        }
        assert!(machine_steps > 10, "the script drives the machine: {machine_steps}");
        let json = |v: &RunView| serde_json::to_string(&v.issues).unwrap();
        assert_eq!(json(&quiet), json(&loud));
        let skipped = |v: &RunView| v.issues.iter().map(|i| (i.commit.clone(), i.process_group)).collect::<Vec<_>>();
        assert_eq!(skipped(&quiet), skipped(&loud));
        assert_eq!((quiet.records, quiet.finished, quiet.interrupted), (loud.records, loud.finished, loud.interrupted));
        // An issue the plan does not know is the same divergence either way.
        let mut stray = recs[1].clone();
        if let Body::Issue { issue, .. } = &mut stray.content.body {
            *issue = "ZZZ-404".into();
        }
        assert_eq!(loud.apply(&stray).unwrap_err(), quiet.apply_quiet(&stray).unwrap_err());
    }

    /// The fold steps states in place, yet a record that diverges (another stage, other
    /// commands) leaves the issue's state as the last agreeing record left it, worktree and
    /// session included; the next agreeing record then applies as if nothing had happened.
    #[test]
    fn a_divergence_leaves_the_state_as_it_was() {
        let mut recs = vec![v1_record(0, Hash::ZERO, v1::Body::RunStarted(start()))];
        let mut states: HashMap<&str, v1::State> = HashMap::new();
        // Up to A's second dev attempt: a worktree, a session, attempts.
        for (issue, event, evidence) in script().into_iter().take(8) {
            let from = states.get(issue).cloned().unwrap_or(v1::State::Pending);
            let to = old_machine(&from, &event);
            states.insert(issue, to.clone());
            let prev = recs.last().unwrap().hash;
            recs.push(v1_record(recs.len() as u64, prev, v1::Body::Issue { issue: issue.into(), event, to, evidence }));
        }
        let mut view = RunView::fold(&recs).unwrap();
        let before = view.state_of("A").unwrap().clone();
        assert!(before.worktree.is_some() && before.session.is_some() && before.attempts == 2, "{before:?}");
        let done = |to: Stage, commands: Option<Vec<Command>>| Record {
            content: Content {
                version: record::FORMAT_VERSION,
                run_id: "r".into(),
                seq: recs.len() as u64,
                time: Default::default(),
                prev: Hash::ZERO,
                body: Body::Issue {
                    issue: "A".into(),
                    event: Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Failed },
                    to,
                    commands,
                    evidence: None,
                },
            },
            hash: Hash::ZERO,
        };
        let failed = Stage::Failed { fix_cycles: 0, reason: machine::Reason::DevFailed };
        let wrong_stage = done(Stage::Review { fix_cycles: 0 }, None);
        assert!(matches!(view.apply(&wrong_stage), Err(Divergence::Mismatch { .. })));
        assert_eq!(view.state_of("A").unwrap(), &before);
        let wrong_commands = done(failed.clone(), Some(vec![Command::Prepare]));
        assert!(matches!(view.apply_quiet(&wrong_commands), Err(Divergence::Commands { .. })));
        assert_eq!(view.state_of("A").unwrap(), &before);
        let applied = view.apply(&done(failed.clone(), None)).unwrap();
        assert_eq!((applied.from, applied.to), (Some(before.stage.clone()), Some(failed.clone())));
        assert_eq!(view.state_of("A").unwrap().stage, failed);
    }

    /// A record whose recorded stage the code no longer decides is a divergence, whatever the
    /// format.
    #[test]
    fn a_v1_record_with_another_outcome_diverges() {
        let mut recs = vec![v1_record(0, Hash::ZERO, v1::Body::RunStarted(start()))];
        let body = v1::Body::Issue {
            issue: "B".into(),
            event: v1::Event::DependencyNotDone { dependency: "A".into(), dependency_state: "Failed".into() },
            to: v1::State::Blocked { fix_cycles: 0, reason: "dependency A ended Capped".into() },
            evidence: None,
        };
        recs.push(v1_record(1, recs[0].hash, body));
        assert!(matches!(RunView::fold(&recs), Err(Divergence::Mismatch { seq: 1, .. })));
    }

    /// The format-1 machine, only as far as [`script`] needs it: what it recorded as `to`.
    fn old_machine(from: &v1::State, e: &v1::Event) -> v1::State {
        use v1::Event as E;
        use v1::State as S;
        match (from, e) {
            (S::Pending, E::WorktreeCreated { .. }) => S::WorktreeReady,
            (S::WorktreeReady, E::PhaseStarted { .. }) => S::Dev,
            (S::Dev, E::WorkFinished { .. }) => S::Review { fix_cycles: 0 },
            (S::Review { fix_cycles: 0 }, E::ReviewFinished { .. }) => S::Fix { cycle: 1 },
            (S::Fix { cycle }, E::WorkFinished { .. }) => S::Review { fix_cycles: *cycle },
            (S::Review { fix_cycles }, E::ReviewFinished { .. }) => {
                S::Capped { fix_cycles: *fix_cycles, reason: "changes still required after 1 fix cycles".into() }
            }
            (S::Pending, E::DependencyNotDone { dependency, dependency_state }) => {
                S::Blocked { fix_cycles: 0, reason: format!("dependency {dependency} ended {dependency_state}") }
            }
            (S::Dev, E::GuardViolation { changes, .. }) => S::Failed {
                fix_cycles: 0,
                reason: format!("guard: the agent changed things outside its worktree: {}", changes.join("; ")),
            },
            (s, _) => s.clone(),
        }
    }
}
