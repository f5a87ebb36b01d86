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
//!   which the chain reader reports.
//! - Audit facts never reach the machine; they only move tallies.

use std::collections::HashMap;

use serde::Serialize;

use super::record::{Body, Evidence, Fact, Record, RunStart};
use crate::machine::{self, Command, Event, IllegalTransition, Stage, State, Worktree};

#[derive(Clone, Debug, Serialize)]
pub struct IssueView {
    pub id: String,
    pub state: State,
    /// The latest review's raw output (the fix agent's input).
    pub last_review: Option<String>,
    pub interruptions: u32,
    /// Tokens used by all of this issue's phases.
    pub tokens: u64,
    pub guard: GuardTally,
    /// The last commit journaled for this issue (evidence of a phase): what its branch must hold.
    #[serde(skip)]
    pub commit: Option<String>,
    /// The last process group recorded for this issue's phases: `(pgid, start_time)`.
    #[serde(skip)]
    pub process_group: Option<(i32, u64)>,
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
        }
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
    #[error("record {seq}: issue {issue}: journal says {recorded:?}, code decides {computed:?}")]
    Mismatch { seq: u64, issue: String, recorded: Stage, computed: Stage },
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
                state: State::PENDING,
                last_review: None,
                interruptions: 0,
                tokens: 0,
                guard: GuardTally::default(),
                commit: None,
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

    fn index_of(&self, seq: u64, issue: &str) -> Result<usize, Divergence> {
        self.index.get(issue).copied().ok_or_else(|| Divergence::UnknownIssue { seq, issue: issue.to_string() })
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
                self.index_of(seq, issue)?;
                Ok(Applied { issue: Some(issue.clone()), from: None, to: None })
            }
            Body::ProcessGroup { issue, pgid, start_time, .. } => {
                let idx = self.index_of(seq, issue)?;
                self.issues[idx].process_group = Some((*pgid, *start_time));
                Ok(Applied { issue: Some(issue.clone()), from: None, to: None })
            }
            Body::Audit { issue, fact, evidence } => {
                let idx = self.index_of(seq, issue)?;
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
                    Fact::GuardChecked { .. } | Fact::StackTracked { .. } | Fact::StackSubmitted { .. } => {}
                }
                view.absorb(evidence.as_ref());
                Ok(Applied { issue: Some(issue.clone()), from: None, to: None })
            }
            Body::Issue { issue, event, to, commands, evidence } => {
                let idx = self.index_of(seq, issue)?;
                let rules = self.start.rules;
                let view = &mut self.issues[idx];
                let (next, computed) =
                    machine::transition(&view.state, event, &rules).map_err(|source| Divergence::Illegal { seq, source })?;
                if !next.stage.agrees_with(to) {
                    return Err(Divergence::Mismatch {
                        seq,
                        issue: issue.clone(),
                        recorded: to.clone(),
                        computed: next.stage,
                    });
                }
                if let Some(recorded) = commands.as_ref().filter(|c| **c != computed) {
                    return Err(Divergence::Commands { seq, issue: issue.clone(), recorded: recorded.clone(), computed });
                }
                match event {
                    Event::ReviewFinished { .. } => {
                        view.last_review = evidence.as_ref().and_then(|e| e.output.clone());
                    }
                    Event::GuardCheckFailed { .. } => view.guard.checks_failed += 1,
                    Event::GuardViolation { .. } => view.guard.violations += 1,
                    _ => {}
                }
                view.absorb(evidence.as_ref());
                let from = std::mem::replace(&mut view.state, next).stage;
                Ok(Applied { issue: Some(issue.clone()), from: Some(from), to: Some(view.state.stage.clone()) })
            }
        }
    }
}
