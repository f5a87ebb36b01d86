//! The fold of a journal into per-issue states: the one place that turns records into "where
//! does each issue stand". The engine, `status`, `resume` and `replay` all use it, so a live run
//! and a replay can never disagree about what a record means.
//!
//! Invariant: [`RunView::apply`] re-derives every transition with [`machine::transition`] and
//! compares it with the state the record says was decided; any difference is a [`Divergence`]
//! ("journal and code disagree"), kept apart from corruption, which the chain reader reports.

use std::collections::HashMap;

use serde::Serialize;

use super::record::{Body, Record, RunStart};
use crate::machine::{self, Event, IllegalTransition, State};

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WorktreeView {
    pub path: String,
    pub branch: String,
    pub base: String,
    /// A `worktree_intent` was journaled: loop may create or adopt this path and branch.
    pub intended: bool,
    pub created: bool,
    pub removed: bool,
    pub kept: Option<String>,
    /// The last commit journaled for this issue (evidence of a phase): what its branch must hold.
    #[serde(skip)]
    pub commit: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IssueView {
    pub id: String,
    pub state: State,
    pub worktree: Option<WorktreeView>,
    /// `phase_started` records since the state last changed (0: the phase has not started).
    pub attempts: u32,
    /// The latest review's raw output (the fix agent's input).
    pub last_review: Option<String>,
    pub interruptions: u32,
    /// The session of the current phase attempt, if the agent reported one.
    pub session: Option<String>,
    /// Tokens used by all of this issue's phases.
    pub tokens: u64,
    pub guard: GuardTally,
    /// The last process group recorded for this issue's phases: `(pgid, start_time)`.
    #[serde(skip)]
    pub process_group: Option<(i32, u64)>,
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
}

impl GuardTally {
    pub const SHOWN: usize = 5;
}

#[derive(Clone, Debug)]
pub struct RunView {
    pub run_id: String,
    pub start: RunStart,
    pub issues: Vec<IssueView>,
    index: HashMap<String, usize>,
    pub finished: bool,
    pub interrupted: bool,
    pub records: u64,
}

/// Why a record could not be applied although its bytes and chain are fine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    #[error("record {seq}: {source}")]
    Illegal { seq: u64, source: IllegalTransition },
    #[error("record {seq}: issue {issue}: journal says {recorded}, code decides {computed}")]
    Mismatch { seq: u64, issue: String, recorded: String, computed: String },
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
    pub from: Option<State>,
    pub to: Option<State>,
}

impl RunView {
    /// Starts a view from the run's first record.
    pub fn new(first: &Record) -> Result<RunView, Divergence> {
        let Body::RunStarted(start) = &first.content.body else {
            return Err(Divergence::NoStart { seq: first.seq() });
        };
        let issues: Vec<IssueView> = start
            .issues
            .iter()
            .map(|p| IssueView {
                id: p.id.clone(),
                state: State::Pending,
                worktree: None,
                attempts: 0,
                last_review: None,
                interruptions: 0,
                session: None,
                tokens: 0,
                guard: GuardTally::default(),
                process_group: None,
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

    pub fn all_terminal(&self) -> bool {
        self.issues.iter().all(|i| i.state.is_terminal())
    }

    /// Applies the record after the ones already folded.
    pub fn apply(&mut self, rec: &Record) -> Result<Applied, Divergence> {
        let seq = rec.seq();
        self.records += 1;
        let none = Applied { issue: None, from: None, to: None };
        match &rec.content.body {
            Body::RunStarted(_) => Err(Divergence::Restarted { seq }),
            Body::RunResumed => {
                self.interrupted = false;
                Ok(none)
            }
            Body::RunInterrupted { .. } => {
                self.interrupted = true;
                Ok(none)
            }
            Body::RunFinished => {
                self.finished = true;
                Ok(none)
            }
            Body::WorktreeRepaired { issue, .. } => {
                if !self.index.contains_key(issue) {
                    return Err(Divergence::UnknownIssue { seq, issue: issue.clone() });
                }
                Ok(Applied { issue: Some(issue.clone()), from: None, to: None })
            }
            Body::ProcessGroup { issue, pgid, start_time, .. } => {
                let idx = *self
                    .index
                    .get(issue)
                    .ok_or_else(|| Divergence::UnknownIssue { seq, issue: issue.clone() })?;
                self.issues[idx].process_group = Some((*pgid, *start_time));
                Ok(Applied { issue: Some(issue.clone()), from: None, to: None })
            }
            Body::Issue { issue, event, to, evidence } => {
                let idx = *self
                    .index
                    .get(issue)
                    .ok_or_else(|| Divergence::UnknownIssue { seq, issue: issue.clone() })?;
                let rules = self.start.rules;
                let view = &mut self.issues[idx];
                let from = view.state.clone();
                let computed =
                    machine::transition(&from, event, &rules).map_err(|source| Divergence::Illegal { seq, source })?;
                if &computed != to {
                    return Err(Divergence::Mismatch {
                        seq,
                        issue: issue.clone(),
                        recorded: format!("{to:?}"),
                        computed: format!("{computed:?}"),
                    });
                }
                match event {
                    Event::WorktreeIntent { path, branch, base } => {
                        view.worktree = Some(WorktreeView {
                            path: path.clone(),
                            branch: branch.clone(),
                            base: base.clone(),
                            intended: true,
                            ..Default::default()
                        });
                    }
                    Event::WorktreeCreated { path, branch, base } => {
                        let wt = view.worktree.get_or_insert_with(Default::default);
                        wt.path = path.clone();
                        wt.branch = branch.clone();
                        wt.base = base.clone();
                        wt.created = true;
                    }
                    Event::WorktreeRemoved { .. } => {
                        if let Some(wt) = &mut view.worktree {
                            wt.removed = true;
                            wt.kept = None;
                        }
                    }
                    Event::WorktreeKept { reason, .. } => {
                        if let Some(wt) = &mut view.worktree {
                            wt.kept = Some(reason.clone());
                        }
                    }
                    Event::PhaseStarted { .. } => view.attempts += 1,
                    Event::ReviewFinished { .. } => {
                        view.last_review = evidence.as_ref().and_then(|e| e.output.clone());
                    }
                    Event::Interrupted => view.interruptions += 1,
                    Event::SessionStarted { session, .. } => view.session = Some(session.clone()),
                    Event::GuardChecked { ok: false, .. } => view.guard.checks_failed += 1,
                    Event::GuardViolation { .. } => view.guard.violations += 1,
                    Event::CommandDecided { allowed: true, .. } => view.guard.allowed += 1,
                    Event::CommandDecided { tool, argv, allowed: false, rule, .. } => {
                        view.guard.refused += 1;
                        if view.guard.refused_commands.len() < GuardTally::SHOWN {
                            view.guard.refused_commands.push(format!("{tool} {} [{rule}]", argv.join(" ")));
                        }
                    }
                    _ => {}
                }
                if let (Some(c), Some(wt)) = (evidence.as_ref().and_then(|e| e.commit.as_ref()), view.worktree.as_mut()) {
                    wt.commit = Some(c.clone());
                }
                if let Some(t) = evidence.as_ref().and_then(|e| e.tokens) {
                    view.tokens += t.total();
                }
                if computed != from {
                    view.session = None;
                    view.attempts = u32::from(matches!(event, Event::PhaseStarted { .. }));
                }
                view.state = computed;
                Ok(Applied { issue: Some(issue.clone()), from: Some(from), to: Some(view.state.clone()) })
            }
        }
    }
}
