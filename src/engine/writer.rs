//! The journal writer of a drive: one thread owns the journal; issue drivers send it requests
//! through a [`Handle`] and wait for their durable acknowledgement.
//!
//! Invariants:
//! - Each request waits for its own acknowledgement, so one issue's events are never reordered;
//!   requests from different issues that arrive together are committed as one group (one fsync).
//! - An event sent with [`Handle::event_then_start`] whose transition emits `start_phase` is
//!   committed in one group with that phase's `phase_started`: the driver would journal it next
//!   with nothing in between (it sends so only when no hook, budget or stop request could come
//!   between them), and acts on neither before both are durable; it is answered with the
//!   state and commands after `phase_started`.
//! - A transition is decided against the folded view plus the earlier members of its group, and
//!   applied to the shared view only after the group is durable.
//! - Lock order: the view, then the observer (the writer holds both while it applies a group;
//!   anyone else who needs both takes them in the same order).
//! - After a failed append nothing more is appended (the store's tail is unknown): every later
//!   request gets [`EngineError::Append`].

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::{EngineError, Observer, Silent};
use crate::journal::view::RunView;
use crate::journal::{Body, Evidence, Fact, Journal};
use crate::machine::{self, Command, Event, State};

/// An issue's state after an event, and the commands the machine emitted with it.
pub(super) type Decided = (State, Vec<Command>);

pub(super) type Reply = mpsc::Sender<Result<Decided, EngineError>>;

/// A request to the journal writer.
pub(super) enum WriteReq {
    /// `start_next`: see [`Handle::event_then_start`].
    Issue {
        issue: String,
        event: Event,
        evidence: Option<Evidence>,
        start_next: bool,
        reply: Reply,
    },
    Run {
        body: Body,
        reply: Reply,
    },
}

/// The single owner of the journal: decides each transition against the folded view, appends
/// the group durably, applies it to the shared view, and only then acknowledges.
pub(super) struct Writer<'o> {
    pub(super) journal: Journal,
    pub(super) view: Arc<Mutex<RunView>>,
    pub(super) observer: Arc<Mutex<&'o mut dyn Observer>>,
    /// Set by a failed append: the store's tail is unknown, so nothing more is appended.
    pub(super) failed: Option<String>,
}

impl Writer<'_> {
    pub(super) fn serve(mut self, rx: mpsc::Receiver<WriteReq>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            self.commit(batch);
        }
    }

    pub(super) fn commit(&mut self, batch: Vec<WriteReq>) {
        if let Some(why) = &self.failed {
            for req in batch {
                let (WriteReq::Issue { reply, .. } | WriteReq::Run { reply, .. }) = req;
                let _ = reply.send(Err(EngineError::Append(why.clone())));
            }
            return;
        }
        let pending = self.decide(batch);
        if pending.is_empty() {
            return;
        }
        let bodies: Vec<Body> = pending.iter().map(|(b, _, _)| b.clone()).collect();
        match self.journal.append_group(bodies) {
            Ok(records) => {
                let mut view = lock(&self.view);
                let mut observer = lock(&self.observer);
                // A record answered with the one after it (an event and its `phase_started`)
                // passes a failure to apply it on to that answer.
                let mut carried: Option<EngineError> = None;
                for (rec, (_, reply, to)) in records.iter().zip(pending) {
                    let result = view.apply(rec).map_err(EngineError::from);
                    if let Ok(applied) = &result {
                        observer.record(rec, applied, &view);
                    }
                    let result = match carried.take() {
                        Some(e) => Err(e),
                        None => result.map(|_| to),
                    };
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(result);
                        }
                        None => carried = result.err(),
                    }
                }
            }
            Err(e) => {
                // Every member of the group failed the same way: an I/O error, not corruption.
                let msg = e.to_string();
                for reply in pending.into_iter().filter_map(|(_, reply, _)| reply) {
                    let _ = reply.send(Err(EngineError::Append(msg.clone())));
                }
                self.failed = Some(msg);
            }
        }
    }

    /// Decides every transition of the group, against the view plus the earlier members of the
    /// group; an illegal one is answered at once and left out. A member answered by the one
    /// after it (an event followed by its `phase_started`) has no reply of its own.
    fn decide(&self, batch: Vec<WriteReq>) -> Vec<(Body, Option<Reply>, Decided)> {
        let mut pending = Vec::new();
        let mut scratch: HashMap<String, State> = HashMap::new();
        for req in batch {
            match req {
                WriteReq::Issue { issue, event, evidence, start_next, reply } => {
                    let (known, rules) = {
                        let view = lock(&self.view);
                        (view.state_of(&issue).cloned(), view.rules_for(&issue))
                    };
                    let from = scratch.get(&issue).cloned().or(known).unwrap_or(State::PENDING);
                    match machine::transition(&from, &event, &rules) {
                        Ok((to, commands)) => {
                            scratch.insert(issue.clone(), to.clone());
                            // What the driver would journal next, with nothing in between.
                            let next = match commands.first() {
                                Some(&Command::StartPhase { phase, attempt }) if start_next => {
                                    let started = Event::PhaseStarted { phase, attempt };
                                    machine::transition(&to, &started, &rules).ok().map(|d| (started, d))
                                }
                                _ => None,
                            };
                            let body = Body::Issue {
                                issue: issue.clone(),
                                event,
                                to: to.stage.clone(),
                                commands: Some(commands.clone()),
                                evidence,
                            };
                            let Some((started, (to2, commands2))) = next else {
                                pending.push((body, Some(reply), (to, commands)));
                                continue;
                            };
                            pending.push((body, None, (to, commands)));
                            scratch.insert(issue.clone(), to2.clone());
                            let body = Body::Issue {
                                issue,
                                event: started,
                                to: to2.stage.clone(),
                                commands: Some(commands2.clone()),
                                evidence: None,
                            };
                            pending.push((body, Some(reply), (to2, commands2)));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
                WriteReq::Run { body, reply } => pending.push((body, Some(reply), (State::PENDING, Vec::new()))),
            }
        }
        pending
    }
}

pub(super) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking worker must not wedge the run: the data under the lock stays consistent
    // because every update is a complete fold step.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle to the writer, cheap to clone into each worker.
#[derive(Clone)]
pub(super) struct Handle {
    pub(super) tx: mpsc::Sender<WriteReq>,
    pub(super) view: Arc<Mutex<RunView>>,
    /// Set when one issue stopped the run (environment, journal): the others stop at their next
    /// step, after the phase in flight, whose work is worth keeping.
    pub(super) halt: Arc<AtomicBool>,
}

impl Handle {
    pub(super) fn event(&self, issue: &str, event: Event, evidence: Option<Evidence>) -> Result<Decided, EngineError> {
        self.send_event(issue, event, evidence, false)
    }

    /// Like [`Handle::event`], but when the event's transition emits `start_phase`, its
    /// `phase_started` is journaled in the same group (one sync, not two) and the answer is the
    /// state and commands after it. Only for a caller that would journal `phase_started` next
    /// with nothing in between: no hook to run, no budget to check, no stop requested.
    pub(super) fn event_then_start(
        &self,
        issue: &str,
        event: Event,
        evidence: Option<Evidence>,
    ) -> Result<Decided, EngineError> {
        self.send_event(issue, event, evidence, true)
    }

    fn send_event(
        &self,
        issue: &str,
        event: Event,
        evidence: Option<Evidence>,
        start_next: bool,
    ) -> Result<Decided, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(WriteReq::Issue { issue: issue.to_string(), event, evidence, start_next, reply })
            .map_err(|_| EngineError::WriterGone)?;
        rx.recv().map_err(|_| EngineError::WriterGone)?
    }

    pub(super) fn run_record(&self, body: Body) -> Result<(), EngineError> {
        let (reply, rx) = mpsc::channel();
        self.tx.send(WriteReq::Run { body, reply }).map_err(|_| EngineError::WriterGone)?;
        rx.recv().map_err(|_| EngineError::WriterGone)?.map(|_| ())
    }

    /// Journals an audit fact about an issue (no machine event).
    pub(super) fn audit(&self, issue: &str, fact: Fact, evidence: Option<Evidence>) -> Result<(), EngineError> {
        self.run_record(Body::Audit { issue: issue.to_string(), fact, evidence })
    }

    pub(super) fn view(&self) -> std::sync::MutexGuard<'_, RunView> {
        lock(&self.view)
    }
}

/// Drives the journal writer exactly as a parallel run does, with `writers` threads each
/// appending `per_writer` records for its own issue (the audit fact `interrupted`), and
/// returns how long it took. Used by `loop bench`.
pub fn bench_group_commit(
    journal: Journal,
    view: RunView,
    writers: usize,
    per_writer: usize,
) -> Result<Duration, EngineError> {
    let ids: Vec<String> = view.start.issues.iter().take(writers).map(|p| p.id.to_string()).collect();
    let shared = Arc::new(Mutex::new(view));
    let mut silent = Silent;
    let observer: Arc<Mutex<&mut dyn Observer>> = Arc::new(Mutex::new(&mut silent));
    let (tx, rx) = mpsc::channel::<WriteReq>();
    let writer = Writer { journal, view: shared.clone(), observer, failed: None };
    let start = std::time::Instant::now();
    std::thread::scope(|scope| -> Result<(), EngineError> {
        let handle = Handle { tx, view: shared.clone(), halt: Arc::new(AtomicBool::new(false)) };
        scope.spawn(move || writer.serve(rx));
        let workers: Vec<_> = ids
            .iter()
            .map(|id| {
                let h = handle.clone();
                scope.spawn(move || -> Result<(), EngineError> {
                    for _ in 0..per_writer {
                        h.audit(id, Fact::Interrupted, None)?;
                    }
                    Ok(())
                })
            })
            .collect();
        drop(handle);
        for w in workers {
            w.join().map_err(|_| EngineError::WriterGone)??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{AgentSpec, PlannedIssue, RunStart, StoreError};
    use crate::machine::Rules;

    /// Takes the first `ok` appends, then fails every one with ENOSPC, counting the attempts.
    struct FullDisk {
        ok: usize,
        attempts: Arc<Mutex<usize>>,
    }

    impl crate::journal::Store for FullDisk {
        fn append(&mut self, _: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
            let mut n = lock(&self.attempts);
            *n += 1;
            if *n <= self.ok {
                return Ok(());
            }
            Err(StoreError::Io { path: "journal".into(), source: std::io::Error::from_raw_os_error(libc::ENOSPC) })
        }
        fn scan(&self, _: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn issue_req(id: &str) -> (WriteReq, mpsc::Receiver<Result<Decided, EngineError>>) {
        let (reply, rx) = mpsc::channel();
        let body = Body::Audit { issue: id.into(), fact: Fact::Interrupted, evidence: None };
        (WriteReq::Run { body, reply }, rx)
    }

    #[test]
    fn a_failed_group_append_is_an_io_error_for_every_member_and_nothing_is_appended_after() {
        let attempts = Arc::new(Mutex::new(0));
        let store = FullDisk { ok: 1, attempts: attempts.clone() };
        let mut journal =
            Journal::create(Box::new(store), "r", crate::clock::Clock::fixed("2026-01-01T00:00:00Z".parse().unwrap()));
        let issues = ["A", "B"].map(|id| PlannedIssue {
            id: id.into(),
            title: id.into(),
            doc: format!("docs/projects/p/issues/{id}.md"),
            blocked_by: vec![],
            branch: format!("loop/M/{id}").into(),
            worktree: format!("/w/{id}"),
            verify: Vec::new(),
        });
        let first = journal
            .append(Body::RunStarted(RunStart {
                tool_version: "t".into(),
                milestone: "M".into(),
                repo: "/repo".into(),
                base_commit: "0".repeat(40),
                rules: Rules::default(),
                agent: AgentSpec { kind: "sim".into(), scenario: None, settings: None },
                phase_timeout_secs: 60,
                max_tokens_per_issue: None,
                review_doc: false,
                issues: issues.to_vec(),
                guard: None,
                verify: Default::default(),
                earlier: Default::default(),
                resilience: Default::default(),
                spend: None,
            }))
            .unwrap();
        let view = Arc::new(Mutex::new(RunView::new(&first).unwrap()));
        let mut silent = Silent;
        let observer: Arc<Mutex<&mut dyn Observer>> = Arc::new(Mutex::new(&mut silent));
        let mut writer = Writer { journal, view: view.clone(), observer, failed: None };

        let (a, a_rx) = issue_req("A");
        let (b, b_rx) = issue_req("B");
        writer.commit(vec![a, b]);
        for rx in [a_rx, b_rx] {
            match rx.recv().unwrap() {
                Err(EngineError::Append(msg)) => assert!(msg.contains("No space left on device"), "{msg}"),
                other => panic!("a failed append must be an I/O error for every member, got {other:?}"),
            }
        }
        // The store's tail is unknown after a failed write: nothing more goes to it.
        let (c, c_rx) = issue_req("A");
        writer.commit(vec![c]);
        assert!(matches!(c_rx.recv().unwrap(), Err(EngineError::Append(_))));
        assert_eq!(*lock(&attempts), 2, "one successful append, one failed, none after");
        assert_eq!(lock(&view).records, 1, "nothing was applied");
    }
}
