//! The engine's journal service outside a drive: the records the CLI needs written before or
//! after the engine drives (a new run's `run_started`, a resume's `run_resumed`, `loop
//! clean`'s removals, `loop retry`'s reopenings). With the drive's [`super::writer`], it makes
//! the engine the journal's only writer.
//!
//! Invariants:
//! - The view is always the fold of exactly the journal's records: each record is applied
//!   right after it is durable.
//! - Issue events are decided by the machine here too ([`machine::transition`]); nobody
//!   appends a state the machine did not compute.

use super::{EngineError, Observer};
use crate::journal::view::{Applied, Divergence, RunView};
use crate::journal::{Body, Journal, Record, RunStart};
use crate::machine::{self, Event, State};

/// A journal and its folded view, ready to be driven ([`super::Engine::new`]) or amended.
pub struct Recorder {
    journal: Journal,
    view: RunView,
}

impl Recorder {
    /// Journals `run_started` as the first record of a new (empty) journal.
    pub fn start(mut journal: Journal, start: RunStart, observer: &mut dyn Observer) -> Result<Recorder, EngineError> {
        let first = journal.append(Body::RunStarted(start))?;
        let view = RunView::new(&first)?;
        observer.record(&first, &Applied { issue: None, from: None, to: None }, &view);
        Ok(Recorder { journal, view })
    }

    /// Journals `run_started` at `time` as the first record of a new (empty) journal: the first
    /// record of a mirror, as the run's own engine recorded it.
    pub fn start_at(
        mut journal: Journal,
        time: chrono::DateTime<chrono::Utc>,
        start: RunStart,
        observer: &mut dyn Observer,
    ) -> Result<Recorder, EngineError> {
        let first = journal.append_group_at(vec![(time, Body::RunStarted(start))])?.pop().expect("one record");
        let view = RunView::new(&first)?;
        observer.record(&first, &Applied { issue: None, from: None, to: None }, &view);
        Ok(Recorder { journal, view })
    }

    /// Appends records another engine decided (a mirror), each at its own time, and folds them:
    /// a record the fold refuses stops the mirror there ("journal and code disagree").
    pub fn mirror(
        &mut self,
        entries: Vec<(chrono::DateTime<chrono::Utc>, Body)>,
        observer: &mut dyn Observer,
    ) -> Result<usize, EngineError> {
        let n = entries.len();
        for rec in self.journal.append_group_at(entries)? {
            let applied = self.view.apply(&rec)?;
            observer.record(&rec, &applied, &self.view);
        }
        Ok(n)
    }

    /// How many records the journal holds (the next record's sequence number).
    pub fn records(&self) -> u64 {
        self.journal.next_seq()
    }

    /// Continues a journal whose verified records are `records` (from [`Journal::reopen`]).
    /// Only the fold can fail here: a journal that does not fold is "journal and code disagree".
    pub fn open(journal: Journal, records: &[Record]) -> Result<Recorder, Box<Divergence>> {
        Ok(Recorder { journal, view: RunView::fold(records).map_err(Box::new)? })
    }

    /// Continues a journal already folded into `view` (from [`Journal::reopen_view`], which
    /// keeps no records).
    pub fn from_view(journal: Journal, view: RunView) -> Recorder {
        Recorder { journal, view }
    }

    pub fn view(&self) -> &RunView {
        &self.view
    }

    /// Journals `run_resumed`.
    pub fn resumed(&mut self, observer: &mut dyn Observer) -> Result<(), EngineError> {
        let rec = self.append(Body::RunResumed)?;
        let applied = self.view.apply(&rec)?;
        observer.record(&rec, &applied, &self.view);
        Ok(())
    }

    /// Journals an issue event outside a drive (`loop clean`'s `worktree_removed`), with the
    /// state the machine decides; returns that state.
    pub fn issue_event(&mut self, issue: &str, event: Event) -> Result<State, EngineError> {
        let mut states = self.issue_events(vec![(issue.to_string(), event)], &mut super::Silent)?;
        Ok(states.pop().expect("one event in, one state out"))
    }

    /// Journals several issue events as one group (one durable append: `loop retry`'s
    /// `reopened` events land together or, after a crash mid-way, not at all), each decided by
    /// the machine against the states before it, and shows them to `observer`. Nothing is
    /// appended if any of them is illegal.
    pub fn issue_events(
        &mut self,
        events: Vec<(String, Event)>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<State>, EngineError> {
        let mut scratch: Vec<(String, State)> = Vec::new();
        let mut bodies = Vec::with_capacity(events.len());
        for (issue, event) in events {
            let from = scratch
                .iter()
                .rev()
                .find(|(i, _)| *i == issue)
                .map(|(_, s)| s.clone())
                .or_else(|| self.view.state_of(&issue).cloned())
                .unwrap_or(State::PENDING);
            let (to, commands) = machine::transition(&from, &event, &self.view.rules_for(&issue))?;
            bodies.push(Body::Issue {
                issue: issue.clone(),
                event,
                to: to.stage.clone(),
                commands: Some(commands),
                evidence: None,
            });
            scratch.push((issue, to));
        }
        let records = self.journal.append_group(bodies)?;
        for rec in &records {
            let applied = self.view.apply(rec)?;
            observer.record(rec, &applied, &self.view);
        }
        Ok(scratch.into_iter().map(|(_, s)| s).collect())
    }

    /// Journals a landing (`loop land`): the branches merged and the checks run.
    pub fn landed(&mut self, landing: crate::vocab::Landing) -> Result<(), EngineError> {
        let rec = self.append(Body::Landed(landing))?;
        self.view.apply(&rec)?;
        Ok(())
    }

    fn append(&mut self, body: Body) -> Result<Record, EngineError> {
        Ok(self.journal.append(body)?)
    }

    pub(super) fn into_parts(self) -> (Journal, RunView) {
        (self.journal, self.view)
    }
}
