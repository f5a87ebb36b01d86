//! In-process engine tests: a fake workspace (directories, no git), an in-memory journal
//! store and the simulated agent, so a whole run takes milliseconds. The integration tests
//! (`tests/`) keep the real binary and real git.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::driver::runs_after_stop;
use super::hooks::{After, Before, Hooks};
use super::*;
use crate::agent::sim::{SimAgent, SimScript};
use crate::agent::{AgentError, PhaseReply, PhaseRequest, Signal};
use crate::journal::{AgentSpec, Body, Entry, Fact, Journal, MemStore, PlannedIssue, RunStart, Store, StoreError};
use crate::machine::{Command, Event, Phase, Reason, Rules, Stage, StageKind, State};
use crate::workspace::{Checked, MergeOutcome, Removal, WorkspaceError};

// ---------------------------------------------------------------------------------------------
// Fakes

/// A journal store shared between a run and its resume (a `MemStore` behind a lock), that
/// can be told to fail every append after the first `ok` ones.
#[derive(Clone, Default)]
struct SharedStore {
    mem: Arc<Mutex<MemStore>>,
    ok: Option<usize>,
    appends: Arc<AtomicUsize>,
}

impl Store for SharedStore {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let n = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if self.ok.is_some_and(|ok| n > ok) {
            return Err(StoreError::Io {
                path: "journal".into(),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        self.mem.lock().unwrap().append(records)
    }

    fn scan(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        self.mem.lock().unwrap().scan(f)
    }
}

/// Worktrees as plain directories, commits as counters: just enough for the engine and the
/// simulated agent (which writes files into the worktree).
#[derive(Default)]
struct FakeWorkspace {
    branches: Mutex<HashMap<String, String>>,
    commits: AtomicUsize,
    /// Worktree creation fails with this I/O error kind (an environment failure).
    fail_create: Option<i32>,
    /// Every merge of bases conflicts in this file.
    conflict_in: Option<&'static str>,
}

impl Workspace for FakeWorkspace {
    fn head_commit(&self) -> Result<String, WorkspaceError> {
        Ok("0".repeat(40))
    }

    fn branch_tip(&self, branch: &str) -> Result<Option<String>, WorkspaceError> {
        Ok(self.branches.lock().unwrap().get(branch).cloned())
    }

    fn create(
        &self,
        path: &Path,
        branch: &str,
        base: &str,
        _adopt: bool,
        _reuse: bool,
    ) -> Result<Vec<String>, WorkspaceError> {
        if let Some(errno) = self.fail_create {
            let source = std::io::Error::from_raw_os_error(errno);
            return Err(WorkspaceError::Io { what: path.display().to_string(), source });
        }
        std::fs::create_dir_all(path)
            .map_err(|source| WorkspaceError::Io { what: path.display().to_string(), source })?;
        self.branches.lock().unwrap().insert(branch.to_string(), base.to_string());
        Ok(Vec::new())
    }

    fn merge(
        &self,
        worktree: &Path,
        parents: &[String],
        _union: &[String],
        _message: &str,
        _date: Option<&str>,
    ) -> Result<MergeOutcome, WorkspaceError> {
        if let Some(file) = self.conflict_in {
            return Ok(MergeOutcome::Conflict { parent: parents[0].clone(), files: vec![file.to_string()] });
        }
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let commit = format!("{n:040x}");
        let name = worktree.file_name().unwrap().to_string_lossy().to_string();
        let mut branches = self.branches.lock().unwrap();
        if let Some(tip) = branches.iter_mut().find(|(b, _)| b.ends_with(&format!("/{name}"))).map(|(_, t)| t) {
            *tip = commit.clone();
        }
        Ok(MergeOutcome::Merged { commit, repairs: Vec::new() })
    }

    fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool, WorkspaceError> {
        Ok(ancestor == commit)
    }

    fn check(&self, _: &Path, _: &str, _: &str, _: bool) -> Result<Checked, WorkspaceError> {
        Ok(Checked::default())
    }

    fn commit_all(
        &self,
        worktree: &Path,
        _message: &str,
        _date: Option<&str>,
    ) -> Result<Option<String>, WorkspaceError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let commit = format!("{n:040x}");
        // The branch of a worktree is the one it was created on: find it by the path's name.
        let name = worktree.file_name().unwrap().to_string_lossy().to_string();
        let mut branches = self.branches.lock().unwrap();
        if let Some(tip) = branches.iter_mut().find(|(b, _)| b.ends_with(&format!("/{name}"))).map(|(_, t)| t) {
            *tip = commit.clone();
        }
        Ok(Some(commit))
    }

    fn remove(&self, path: &Path, _branch: &str) -> Result<Removal, WorkspaceError> {
        std::fs::remove_dir_all(path)
            .map_err(|source| WorkspaceError::Io { what: path.display().to_string(), source })?;
        Ok(Removal::Removed)
    }

    fn has_identity(&self, _: &Path) -> Result<bool, WorkspaceError> {
        Ok(true)
    }

    fn tree_of(&self, commit: &str) -> Result<String, WorkspaceError> {
        Ok(format!("tree-of-{commit}"))
    }

    fn add_scratch(&self, path: &Path, _commit: &str) -> Result<(), WorkspaceError> {
        let _ = std::fs::remove_dir_all(path);
        std::fs::create_dir_all(path).map_err(|source| WorkspaceError::Io { what: path.display().to_string(), source })
    }

    fn remove_scratch(&self, path: &Path) -> Result<(), WorkspaceError> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(WorkspaceError::Io { what: path.display().to_string(), source: e })
            }
            _ => Ok(()),
        }
    }
}

/// The simulated agent, which requests a stop (as Ctrl-C would) when it is asked to run
/// `phase` of `issue`, and then reports the phase interrupted.
struct Interrupting {
    sim: SimAgent,
    at: (String, Phase),
    cancel: Cancel,
}

impl Agent for Interrupting {
    fn name(&self) -> &str {
        "interrupting"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        if (req.issue.id.as_str(), req.phase) == (self.at.0.as_str(), self.at.1) && !self.cancel.is_requested() {
            self.cancel.request(libc::SIGTERM);
            return Err(AgentError::Interrupted { phase: req.phase });
        }
        self.sim.run(req, signal)
    }
}

/// The simulated agent behind an API that blips: the first `fails` phase runs end in a
/// transient error (a 429 in codex's words) in session `t1`; the requests are kept.
struct Blipping {
    sim: SimAgent,
    fails: AtomicUsize,
    seen: Mutex<Vec<(Phase, Option<String>)>>,
}

impl Agent for Blipping {
    fn name(&self) -> &str {
        "blipping"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        self.seen.lock().unwrap().push((req.phase, req.resume_session.clone()));
        if self.fails.load(Ordering::SeqCst) > 0 {
            self.fails.fetch_sub(1, Ordering::SeqCst);
            return Err(AgentError::Transient {
                phase: req.phase,
                status: "exit code 1".into(),
                message: "exceeded retry limit, last status: 429 Too Many Requests".into(),
                session: Some("t1".into()),
            });
        }
        self.sim.run(req, signal)
    }
}

/// Counts the phases running at once, for the `--jobs` bound.
struct Counting {
    sim: SimAgent,
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Agent for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let reply = self.sim.run(req, signal);
        self.now.fetch_sub(1, Ordering::SeqCst);
        reply
    }
}

// ---------------------------------------------------------------------------------------------
// A run

struct Run {
    dir: tempfile::TempDir,
    store: SharedStore,
    rules: Rules,
    issues: Vec<PlannedIssue>,
    verify: crate::vocab::VerifySpec,
    resilience: crate::vocab::Resilience,
}

impl Run {
    /// Issues as `(id, blocked_by)`, in plan order.
    fn new(issues: &[(&str, &[&str])]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let issues = issues
            .iter()
            .map(|(id, deps)| PlannedIssue {
                id: (*id).into(),
                title: format!("issue {id}"),
                doc: format!("docs/projects/p/issues/{id}.md"),
                blocked_by: deps.iter().map(|d| (*d).into()).collect(),
                branch: format!("loop/M/{id}").into(),
                worktree: dir.path().join(id).display().to_string(),
                verify: Vec::new(),
            })
            .collect();
        Run {
            dir,
            store: SharedStore::default(),
            rules: Rules::default(),
            issues,
            verify: Default::default(),
            resilience: Default::default(),
        }
    }

    fn start(&self) -> RunStart {
        RunStart {
            tool_version: "test".into(),
            milestone: "M".into(),
            repo: self.dir.path().display().to_string(),
            base_commit: "0".repeat(40),
            rules: self.rules,
            agent: AgentSpec { kind: "sim".into(), scenario: None, settings: None },
            phase_timeout_secs: 60,
            max_tokens_per_issue: None,
            review_doc: false,
            issues: self.issues.clone(),
            guard: None,
            verify: self.verify.clone(),
            earlier: Default::default(),
            resilience: Box::new(self.resilience),
            spend: None,
        }
    }

    fn clock() -> Clock {
        Clock::fixed("2026-01-01T00:00:00Z".parse().unwrap())
    }

    fn recorder(&self) -> Recorder {
        let journal = Journal::create(Box::new(self.store.clone()), "run", Run::clock());
        Recorder::start(journal, self.start(), &mut Silent).unwrap()
    }

    fn reopen(&self) -> Recorder {
        let (journal, records) = Journal::reopen(Box::new(self.store.clone()), Run::clock()).unwrap();
        Recorder::open(journal, &records).unwrap()
    }

    fn drive(
        &self,
        recorder: Recorder,
        agent: &dyn Agent,
        ws: &dyn Workspace,
        settings: Settings,
        hooks: &[&dyn Hooks],
    ) -> Result<(Outcome, RunView), EngineError> {
        let mut silent = Silent;
        let mut engine = Engine::new(recorder, agent, ws, &mut silent, settings);
        for h in hooks {
            engine = engine.hook(*h);
        }
        engine.drive()
    }

    fn drive_sim(&self, scenario: &[(&str, SimScript)], jobs: usize) -> Result<(Outcome, RunView), EngineError> {
        let agent = sim(scenario);
        self.drive(self.recorder(), &agent, &FakeWorkspace::default(), settings(jobs), &[])
    }

    /// Every record, one line each: `A phase_started`, `run_finished`…
    fn lines(&self) -> Vec<String> {
        let records = crate::journal::read_all(&self.store).unwrap();
        records.iter().map(|r| line(&r.content.body)).collect()
    }

    /// The records of one issue, by event name.
    fn events_of(&self, id: &str) -> Vec<String> {
        let prefix = format!("{id} ");
        self.lines().into_iter().filter_map(|l| l.strip_prefix(&prefix).map(String::from)).collect()
    }
}

fn line(body: &Body) -> String {
    match body {
        Body::RunStarted(_) => "run_started".into(),
        Body::Issue { issue, event, .. } => format!("{issue} {}", event.name()),
        Body::Audit { issue, fact, .. } => format!("{issue} {}", fact.name()),
        Body::RunResumed => "run_resumed".into(),
        Body::RunInterrupted { reason } => format!("run_interrupted: {reason}"),
        Body::RunFinished => "run_finished".into(),
        Body::WorktreeRepaired { issue, .. } => format!("{issue} worktree_repaired"),
        Body::ProcessGroup { issue, .. } => format!("{issue} process_group"),
        Body::Landed(l) => format!("landed {}", l.branch),
    }
}

fn stage<'v>(view: &'v RunView, id: &str) -> Option<&'v Stage> {
    view.state_of(id).map(|s| &s.stage)
}

fn sim(scenario: &[(&str, SimScript)]) -> SimAgent {
    SimAgent::new(scenario.iter().map(|(id, s)| (id.to_string(), s.clone())).collect::<BTreeMap<_, _>>())
}

fn script(dev: &str, reviews: &[&str]) -> SimScript {
    SimScript {
        dev: Some(dev.into()),
        fix: None,
        reviews: reviews.iter().map(|r| r.to_string()).collect(),
        delay_ms: None,
    }
}

fn settings(jobs: usize) -> Settings {
    Settings::new(jobs, Run::clock(), Cancel::new())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Behaviour

/// An issue's events on the happy path: dev, one review that approves, the worktree removed.
const HAPPY: [&str; 7] = [
    "worktree_intent",
    "worktree_created",
    "phase_started",
    "work_finished",
    "phase_started",
    "review_finished",
    "worktree_removed",
];

#[test]
fn happy_path_runs_each_issue_through_dev_and_review_and_removes_its_worktree() {
    let run = Run::new(&[("A", &[]), ("B", &["A"])]);
    let (outcome, view) = run.drive_sim(&[], 1).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    for id in ["A", "B"] {
        assert_eq!(stage(&view, id), Some(&Stage::Done { fix_cycles: 0 }));
        assert_eq!(run.events_of(id), strs(&HAPPY));
        assert!(!run.dir.path().join(id).exists(), "{id}'s worktree is removed");
    }
    let lines = run.lines();
    assert_eq!((lines.first().unwrap().as_str(), lines.last().unwrap().as_str()), ("run_started", "run_finished"));
    // B has one dependency: it branches from A's work, the tip of A's branch.
    let base_b = view.issue("B").unwrap().worktree().unwrap().base.clone();
    assert_ne!(base_b, "0".repeat(40), "B builds on A's last commit, not the run's base");
}

#[test]
fn an_issue_with_several_dependencies_starts_from_the_first_and_merges_the_others() {
    let run = Run::new(&[("A", &[]), ("B", &["A"]), ("C", &["A"]), ("D", &["C", "B"])]);
    let (outcome, view) = run.drive_sim(&[], 1).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(stage(&view, "D"), Some(&Stage::Done { fix_cycles: 0 }));
    let events = run.events_of("D");
    assert_eq!(&events[..4], strs(&["worktree_intent", "worktree_created", "bases_merged", "phase_started"]));
    let records = crate::journal::read_all(&run.store).unwrap();
    let of_d = |name: &str| {
        records.iter().find_map(|r| match &r.content.body {
            Body::Issue { issue, event, evidence, .. } if issue.as_str() == "D" && event.name() == name => {
                Some((event.clone(), evidence.clone()))
            }
            _ => None,
        })
    };
    // blocked_by is in plan order: C first, so D starts from C's tip and merges B's.
    let Some((Event::WorktreeIntent { base, merge, .. }, _)) = of_d("worktree_intent") else { panic!("no intent") };
    let tip = |id: &str| {
        records.iter().rev().find_map(|r| match &r.content.body {
            Body::Issue { issue, evidence: Some(e), .. } if issue.as_str() == id => e.commit.clone(),
            _ => None,
        })
    };
    assert_eq!(Some(base), tip("C"));
    assert_eq!(merge, vec![tip("B").unwrap()]);
    let Some((Event::BasesMerged { commit }, Some(evidence))) = of_d("bases_merged") else { panic!("no merge") };
    assert_eq!(evidence.commit.as_deref(), Some(commit.as_str()), "the merge is the commit the branch must hold");
    assert_eq!(evidence.note.as_deref(), Some("merged loop/M/B"));
}

#[test]
fn a_merge_conflict_blocks_the_issue_and_its_dependants_and_keeps_the_worktree() {
    let run = Run::new(&[("A", &[]), ("B", &[]), ("C", &["A", "B"]), ("D", &["C"])]);
    let ws = FakeWorkspace { conflict_in: Some("shared.txt"), ..Default::default() };
    let (outcome, view) = run.drive(run.recorder(), &sim(&[]), &ws, settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    let Some(Stage::Blocked { reason: Reason::MergeConflict { parent, files }, .. }) = stage(&view, "C") else {
        panic!("{:?}", stage(&view, "C"))
    };
    assert_eq!((parent.as_str(), files.as_slice()), ("loop/M/B", &["shared.txt".to_string()][..]));
    assert_eq!(run.events_of("C"), strs(&["worktree_intent", "worktree_created", "merge_conflict", "worktree_kept"]));
    assert!(run.dir.path().join("C").exists(), "kept for inspection");
    assert_eq!(run.events_of("D"), strs(&["dependency_not_done"]));
}

#[test]
fn a_review_asking_for_changes_runs_a_fix_cycle_then_reviews_again() {
    let run = Run::new(&[("A", &[])]);
    let (_, view) = run.drive_sim(&[("A", script("pass", &["changes_required", "pass"]))], 1).unwrap();
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 1 }));
    let finished: Vec<String> = run.events_of("A").into_iter().filter(|e| e.ends_with("_finished")).collect();
    assert_eq!(finished, strs(&["work_finished", "review_finished", "work_finished", "review_finished"]));
}

#[test]
fn changes_required_past_the_fix_cycle_limit_caps_the_issue() {
    let mut run = Run::new(&[("A", &[])]);
    run.rules = Rules::with_max_fix_cycles(1);
    let (outcome, view) = run.drive_sim(&[("A", script("pass", &["changes_required"; 3]))], 1).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert!(matches!(stage(&view, "A"), Some(Stage::Capped { fix_cycles: 1, .. })), "{:?}", stage(&view, "A"));
    assert_eq!(run.events_of("A").last().unwrap(), "worktree_removed", "a Capped issue's worktree is removed too");
}

#[test]
fn an_issue_whose_dependency_failed_is_blocked_without_a_worktree() {
    let run = Run::new(&[("A", &[]), ("B", &["A"]), ("C", &[])]);
    let (outcome, view) = run.drive_sim(&[("A", script("failed", &[]))], 1).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert!(matches!(stage(&view, "A"), Some(Stage::Failed { .. })));
    assert!(matches!(stage(&view, "B"), Some(Stage::Blocked { .. })));
    assert_eq!(stage(&view, "C"), Some(&Stage::Done { fix_cycles: 0 }), "an independent issue still runs");
    assert_eq!(run.events_of("B"), strs(&["dependency_not_done"]));
    assert_eq!(run.events_of("A").last().unwrap(), "worktree_kept", "a Failed issue's worktree is kept for inspection");
    assert!(run.dir.path().join("A").exists());
}

#[test]
fn an_interrupted_run_journals_it_and_resume_reruns_only_the_unfinished_phase() {
    let run = Run::new(&[("A", &[]), ("B", &[])]);
    let cancel = Cancel::new();
    let agent = Interrupting { sim: sim(&[]), at: ("A".into(), Phase::Review), cancel: cancel.clone() };
    let ws = FakeWorkspace::default();
    let (outcome, view) = run.drive(run.recorder(), &agent, &ws, Settings::new(1, Run::clock(), cancel), &[]).unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert_eq!(stage(&view, "A"), Some(&Stage::Review { fix_cycles: 0 }));
    assert_eq!(stage(&view, "B"), Some(&Stage::Pending), "nothing new starts after a stop request");
    assert_eq!(run.lines().last().unwrap(), "run_interrupted: interrupted by SIGTERM");
    assert_eq!(run.events_of("A").last().unwrap(), "interrupted");

    let mut recorder = run.reopen();
    recorder.resumed(&mut Silent).unwrap();
    let (outcome, view) = run.drive(recorder, &sim(&[]), &ws, settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert!(view.all_terminal() && stage(&view, "A") == Some(&Stage::Done { fix_cycles: 0 }));
    let a = run.events_of("A");
    assert_eq!(a.iter().filter(|e| *e == "work_finished").count(), 1, "dev is not run again: {a:?}");
    let records = crate::journal::read_all(&run.store).unwrap();
    let attempts: Vec<u32> = records
        .iter()
        .filter_map(|r| match &r.content.body {
            Body::Issue { issue, event: Event::PhaseStarted { phase: Phase::Review, attempt }, .. } if issue == "A" => {
                Some(*attempt)
            }
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2], "the interrupted review runs again as attempt 2");
}

#[test]
fn jobs_one_runs_issues_one_after_another_in_plan_order() {
    let run = Run::new(&[("A", &[]), ("B", &[]), ("C", &["A"]), ("D", &[])]);
    let agent = Counting { sim: sim(&[]), now: AtomicUsize::new(0), max: AtomicUsize::new(0) };
    run.drive(run.recorder(), &agent, &FakeWorkspace::default(), settings(1), &[]).unwrap();
    let issue_order: Vec<String> =
        run.lines().iter().filter_map(|l| l.strip_suffix(" worktree_intent").map(String::from)).collect();
    assert_eq!(issue_order, strs(&["A", "B", "C", "D"]));
    // Each issue's records are contiguous: one issue at a time.
    let owners: Vec<String> =
        run.lines().iter().filter_map(|l| l.split_once(' ').map(|(i, _)| i.to_string())).collect();
    let mut runs = owners.clone();
    runs.dedup();
    assert_eq!(runs, strs(&["A", "B", "C", "D"]), "{owners:?}");
    assert_eq!(agent.max.load(Ordering::SeqCst), 1);
}

#[test]
fn jobs_bounds_concurrency_and_a_dependant_waits_for_its_dependencies() {
    let names: Vec<String> = (0..6).map(|i| format!("I{i}")).collect();
    let mut issues: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let deps = ["I0", "I1"];
    issues.push(("Z", &deps));
    let run = Run::new(&issues);
    let agent = Counting { sim: sim(&[]), now: AtomicUsize::new(0), max: AtomicUsize::new(0) };
    let (outcome, view) = run.drive(run.recorder(), &agent, &FakeWorkspace::default(), settings(3), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert!(view.issues.iter().all(|i| i.state.stage == Stage::Done { fix_cycles: 0 }));
    let max = agent.max.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "at most --jobs phases at once, saw {max}");
    let lines = run.lines();
    let pos = |l: &str| lines.iter().position(|x| x == l).unwrap_or_else(|| panic!("{l} in {lines:?}"));
    for dep in deps {
        assert!(pos(&format!("{dep} worktree_removed")) < pos("Z worktree_intent"), "Z starts after {dep} ended");
    }
}

#[test]
fn an_event_and_the_phase_started_it_leads_to_are_one_append_with_the_same_records() {
    let run = Run::new(&[("A", &[])]);
    run.drive_sim(&[], 1).unwrap();
    let per_issue = strs(&HAPPY);
    assert_eq!(run.events_of("A"), per_issue);
    // worktree_created + phase_started dev, work_finished + phase_started review.
    let records = run.lines().len();
    assert_eq!(run.store.appends.load(Ordering::SeqCst), records - 2, "{:?}", run.lines());

    // A run cost budget is checked before each phase starts: nothing is grouped then.
    let run = Run::new(&[("A", &[])]);
    let spend = crate::vocab::SpendSpec { max_cost_usd_per_run: Some(1000.0), ..Default::default() };
    run.drive(run.recorder_with(spend), &sim(&[]), &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert_eq!(run.events_of("A"), per_issue);
    assert_eq!(run.store.appends.load(Ordering::SeqCst), run.lines().len());
}

#[test]
fn a_failed_append_stops_the_run_and_nothing_is_appended_after_it() {
    let mut run = Run::new(&[("A", &[]), ("B", &[])]);
    run.store.ok = Some(4);
    let err = run.drive_sim(&[], 2).unwrap_err();
    assert!(matches!(&err, EngineError::Append(msg) if msg.contains("No space left on device")), "{err}");
    assert_eq!(run.store.appends.load(Ordering::SeqCst), 5, "four appends, one failed, none after it");
    let lines = run.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("run_") && l != "run_started"),
        "the run is neither finished nor closed: {lines:?}"
    );
}

#[test]
fn an_environment_failure_interrupts_the_issue_and_the_run_for_resume() {
    let run = Run::new(&[("A", &[])]);
    let ws = FakeWorkspace { fail_create: Some(libc::ENOSPC), ..Default::default() };
    let err = run.drive(run.recorder(), &sim(&[]), &ws, settings(1), &[]).unwrap_err();
    assert!(matches!(&err, EngineError::Environment { issue, .. } if issue == "A"), "{err}");
    assert_eq!(run.events_of("A"), strs(&["worktree_intent", "interrupted"]));
    assert!(run.lines().last().unwrap().starts_with("run_interrupted: A: worktree:"));
    // Resume on a healthy disk adopts the journaled intent and finishes.
    let (outcome, view) = run.drive(run.reopen(), &sim(&[]), &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 0 }));
}

// ---------------------------------------------------------------------------------------------
// Hooks

/// Records which hook points were called, refuses the phases it is told to, and gives the
/// agent an environment variable.
#[derive(Default)]
struct Probe {
    calls: Mutex<Vec<String>>,
    refuse: Option<Phase>,
}

struct ProbeAfter<'p>(&'p Probe, Phase);

impl After for ProbeAfter<'_> {
    fn after_phase(self: Box<Self>) -> (Vec<Entry>, Option<Event>) {
        self.0.calls.lock().unwrap().push(format!("after {}", self.1));
        (Vec::new(), None)
    }
}

impl Hooks for Probe {
    fn worktree_created(&self, planned: &PlannedIssue, _: &RunView) -> Vec<Entry> {
        self.calls.lock().unwrap().push(format!("created {}", planned.id));
        Vec::new()
    }

    fn before_phase(&self, planned: &PlannedIssue, _: &Path, phase: Phase, _: &RunView) -> Option<Before<'_>> {
        self.calls.lock().unwrap().push(format!("before {phase}"));
        let ok = self.refuse != Some(phase);
        let details = vec![format!("probe for {}", planned.id)];
        let entry = match ok {
            true => Entry::Audit(Fact::GuardChecked { phase, details }),
            false => Entry::Machine(Event::GuardCheckFailed { phase, details }),
        };
        let after = ok.then(|| Box::new(ProbeAfter(self, phase)) as Box<dyn After + '_>);
        Some(Before { entry, proceed: ok, env: vec![("PROBE".into(), "1".into())], after })
    }

    fn issue_done(&self, planned: &PlannedIssue, state: &State, _: &Path) -> Vec<Entry> {
        self.calls.lock().unwrap().push(format!("done {} {}", planned.id, state.name()));
        Vec::new()
    }
}

/// Checks that the hooks' environment reaches the agent.
struct EnvCheck(SimAgent);

impl Agent for EnvCheck {
    fn name(&self) -> &str {
        "env-check"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        assert!(req.env.contains(&("PROBE".into(), "1".into())), "the hook's env reaches the agent: {:?}", req.env);
        self.0.run(req, signal)
    }
}

#[test]
fn hooks_are_called_around_every_phase_and_their_events_are_journaled() {
    let run = Run::new(&[("A", &[])]);
    let probe = Probe::default();
    let (_, view) =
        run.drive(run.recorder(), &EnvCheck(sim(&[])), &FakeWorkspace::default(), settings(1), &[&probe]).unwrap();
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 0 }));
    assert_eq!(
        *probe.calls.lock().unwrap(),
        strs(&["created A", "before dev", "after dev", "before review", "after review", "done A Done"])
    );
    assert_eq!(run.events_of("A").iter().filter(|e| *e == "guard_checked").count(), 2);
}

#[test]
fn a_hook_refusing_a_phase_ends_it_without_running_the_agent() {
    let run = Run::new(&[("A", &[])]);
    let probe = Probe { refuse: Some(Phase::Review), ..Default::default() };
    let (_, view) = run.drive(run.recorder(), &sim(&[]), &FakeWorkspace::default(), settings(1), &[&probe]).unwrap();
    assert!(matches!(stage(&view, "A"), Some(Stage::Failed { .. })));
    let a = run.events_of("A");
    assert_eq!(a[a.len() - 3..], strs(&["phase_started", "guard_checked", "worktree_kept"]), "{a:?}");
    assert!(!probe.calls.lock().unwrap().contains(&"after review".to_string()));
}

#[test]
fn a_verification_log_that_cannot_be_written_stops_the_run_and_resume_verifies_again() {
    let mut run = Run::new(&[("A", &[])]);
    run.verify.commands = strs(&["test -f loop-sim/A.md"]);
    let ws = FakeWorkspace::default();
    // The logs root lies below a regular file: every log open fails, as on a broken disk.
    let blocker = run.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let env = |logs: std::path::PathBuf| VerifyEnv {
        logs_root: logs,
        scratch_root: run.dir.path().join("scratch"),
        skip_setup: false,
    };
    let broken = settings(1).with_verify(env(blocker.join("logs")));
    let err = run.drive(run.recorder(), &sim(&[]), &ws, broken, &[]).unwrap_err();
    assert!(matches!(err, EngineError::Environment { .. }), "{err}");
    assert_eq!(run.events_of("A").last().unwrap(), "interrupted", "not the issue's failure");
    assert!(!run.events_of("A").contains(&"verify_finished".to_string()));

    let mut recorder = run.reopen();
    recorder.resumed(&mut Silent).unwrap();
    let good = settings(1).with_verify(env(run.dir.path().join("logs")));
    let (outcome, view) = run.drive(recorder, &sim(&[]), &ws, good, &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 0 }));
    let a = run.events_of("A");
    assert_eq!(a.iter().filter(|e| *e == "verify_finished").count(), 1, "{a:?}");
    let at = |name: &str| a.iter().position(|e| e == name).unwrap();
    assert!(at("verify_finished") < at("review_finished"), "review after the verification: {a:?}");
    // The base checkout was removed after the baseline.
    assert!(!run.dir.path().join("scratch").join("run").exists());
    let checks = view.issue("A").unwrap().verification.clone();
    assert_eq!(checks.len(), 1);
    assert!(checks[0].passed(), "{checks:?}");
}

// ---------------------------------------------------------------------------------------------
// The driver's seam

#[test]
fn a_stop_request_lets_an_ended_issue_finish_its_worktree_but_starts_nothing() {
    let path = "/w".to_string();
    assert!(runs_after_stop(&Command::RemoveWorktree { path: path.clone(), branch: "b".into() }));
    assert!(runs_after_stop(&Command::KeepWorktree { path: path.clone(), ended: StageKind::Failed }));
    assert!(runs_after_stop(&Command::Finish));
    assert!(!runs_after_stop(&Command::Prepare));
    assert!(!runs_after_stop(&Command::CreateWorktree {
        path,
        branch: "b".into(),
        base: "c".into(),
        adopt: true,
        reuse: false
    }));
    assert!(!runs_after_stop(&Command::StartPhase { phase: Phase::Dev, attempt: 1 }));
    assert!(!runs_after_stop(&Command::RunPhase { phase: Phase::Dev, cycle: 0, attempt: 1, resume_session: None }));
}

#[test]
fn a_process_cancel_token_and_an_own_token_are_independent() {
    let own = Cancel::new();
    own.request(libc::SIGHUP);
    own.request(libc::SIGINT);
    assert_eq!(own.signal(), Some(libc::SIGHUP), "the first request wins");
    assert!(!Cancel::new().is_requested());
    assert!(!Cancel::process().is_requested(), "an own token does not cancel the process");
}

// ---------------------------------------------------------------------------------------------
// Retry

/// The simulated agent, reporting `per_phase` tokens for every phase.
struct Spending {
    sim: SimAgent,
    per_phase: u64,
}

impl Agent for Spending {
    fn name(&self) -> &str {
        "spending"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        let mut reply = self.sim.run(req, signal)?;
        reply.tokens = Some(crate::vocab::Tokens { input: self.per_phase, ..Default::default() });
        Ok(reply)
    }
}

#[test]
fn a_reopened_issue_capped_by_its_budget_counts_tokens_afresh_and_goes_on() {
    let run = Run::new(&[("A", &[])]);
    let mut start = run.start();
    start.max_tokens_per_issue = Some(100);
    let journal = Journal::create(Box::new(run.store.clone()), "run", Run::clock());
    let recorder = Recorder::start(journal, start, &mut Silent).unwrap();
    let agent = Spending { sim: sim(&[("A", script("pass", &["changes_required", "pass", "pass"]))]), per_phase: 60 };
    let ws = FakeWorkspace::default();
    let (_, view) = run.drive(recorder, &agent, &ws, settings(1), &[]).unwrap();
    // Dev (60) and the first review (120 in all) pass the limit of 100.
    assert!(
        matches!(stage(&view, "A"), Some(Stage::Capped { reason: crate::machine::Reason::BudgetExceeded { .. }, .. })),
        "{:?}",
        stage(&view, "A")
    );
    assert!(view.finished);

    let mut recorder = run.reopen();
    recorder.issue_events(vec![("A".into(), Event::Reopened { extra_fix_cycles: 1 })], &mut Silent).unwrap();
    assert!(!recorder.view().finished, "a reopened issue has work left");
    assert_eq!(
        (recorder.view().issue("A").unwrap().budget_tokens, recorder.view().issue("A").unwrap().tokens),
        (0, 120)
    );
    let (outcome, view) = run.drive(recorder, &agent, &ws, settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    // The fix and the review after it used 120 more, under the limit counted since the reopen.
    assert!(matches!(stage(&view, "A"), Some(Stage::Done { .. })), "{:?}", stage(&view, "A"));
    assert_eq!(view.issue("A").unwrap().tokens, 240);
    assert!(view.finished);
    let a = run.events_of("A");
    assert_eq!(a.iter().filter(|e| *e == "reopened").count(), 1, "{a:?}");
    assert_eq!(run.lines().iter().filter(|l| *l == "run_finished").count(), 2);
}

/// Every way the simulated agent can end an issue short of Done, reopened (with the issue it
/// blocked) and driven again with an agent that passes everything: the issue resumes where the
/// machine says (`machine::reopen_stage`) and both end Done, on the same worktree path.
#[test]
fn every_way_an_issue_ends_short_of_done_can_be_reopened_and_driven_to_done() {
    let fix = |fix: &str, reviews: &[&str]| SimScript { fix: Some(fix.into()), ..script("pass", reviews) };
    // (script of A, A's end, A's fix cycles when Done after the retry)
    let cases: Vec<(SimScript, &str, u32)> = vec![
        (script("failed", &[]), "Failed", 0),
        (script("deferred", &[]), "Blocked", 0),
        (script("crash", &[]), "Failed", 0),
        (script("pass", &["garbage"]), "Failed", 0),
        (script("pass", &["blocked"]), "Blocked", 1),
        (script("pass", &["changes_required", "changes_required"]), "Capped", 2),
        (fix("failed", &["changes_required"]), "Failed", 1),
        (fix("deferred", &["changes_required"]), "Blocked", 1),
        (fix("crash", &["changes_required"]), "Failed", 1),
    ];
    for (n, (a, ended, cycles)) in cases.into_iter().enumerate() {
        let mut run = Run::new(&[("A", &[]), ("B", &["A"])]);
        run.rules = Rules::with_max_fix_cycles(1);
        let ws = FakeWorkspace::default();
        let (_, view) = run.drive(run.recorder(), &sim(&[("A", a)]), &ws, settings(1), &[]).unwrap();
        assert_eq!(stage(&view, "A").unwrap().name(), ended, "case {n}");
        assert_eq!(stage(&view, "B").unwrap().name(), "Blocked", "case {n}");

        let mut recorder = run.reopen();
        let reopen = |id: &str, extra| (id.to_string(), Event::Reopened { extra_fix_cycles: extra });
        recorder.issue_events(vec![reopen("A", 1), reopen("B", 0)], &mut Silent).unwrap();
        assert_eq!(stage(recorder.view(), "B"), Some(&Stage::Pending), "case {n}: B never started");
        let (outcome, view) = run.drive(recorder, &sim(&[]), &ws, settings(1), &[]).unwrap();
        assert_eq!(outcome, Outcome::Finished, "case {n}");
        assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: cycles }), "case {n}");
        assert_eq!(stage(&view, "B"), Some(&Stage::Done { fix_cycles: 0 }), "case {n}");
        let a = view.issue("A").unwrap().worktree().unwrap();
        assert_eq!((a.path.as_str(), a.removed()), (run.dir.path().join("A").to_str().unwrap(), true), "case {n}");
        assert_eq!(run.lines().iter().filter(|l| *l == "run_finished").count(), 2, "case {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Money: a backend per phase, prices, cost budgets

/// The simulated agent with a price tag: each phase reports `cost` USD (None: only tokens, as
/// codex does) and `tokens`; it remembers the phases it ran.
struct Costing {
    sim: SimAgent,
    cost: Option<f64>,
    tokens: crate::vocab::Tokens,
    ran: Mutex<Vec<Phase>>,
}

impl Costing {
    fn new(sim: SimAgent, cost: Option<f64>) -> Costing {
        Costing {
            sim,
            cost,
            tokens: crate::vocab::Tokens { input: 10, ..Default::default() },
            ran: Mutex::new(Vec::new()),
        }
    }

    fn ran(&self) -> Vec<Phase> {
        self.ran.lock().unwrap().clone()
    }
}

impl Agent for Costing {
    fn name(&self) -> &str {
        "costing"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        self.ran.lock().unwrap().push(req.phase);
        let mut reply = self.sim.run(req, signal)?;
        reply.tokens = Some(self.tokens);
        reply.cost_usd = self.cost;
        Ok(reply)
    }
}

impl Run {
    fn recorder_with(&self, spend: crate::vocab::SpendSpec) -> Recorder {
        let mut start = self.start();
        start.spend = spend.or_none();
        let journal = Journal::create(Box::new(self.store.clone()), "run", Run::clock());
        Recorder::start(journal, start, &mut Silent).unwrap()
    }

    /// The cost each phase of `id` recorded in its evidence, in journal order.
    fn costs_of(&self, id: &str) -> Vec<Option<f64>> {
        let records = crate::journal::read_all(&self.store).unwrap();
        records
            .iter()
            .filter_map(|r| match &r.content.body {
                Body::Issue { issue, evidence: Some(e), .. } if issue == id && e.output.is_some() => Some(e.cost_usd),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn an_issue_over_its_cost_budget_ends_capped_and_a_retry_counts_afresh() {
    let run = Run::new(&[("A", &[])]);
    let spend = crate::vocab::SpendSpec { max_cost_usd_per_issue: Some(1.0), ..Default::default() };
    let agent = Costing::new(sim(&[("A", script("pass", &["changes_required", "pass", "pass"]))]), Some(0.4));
    let ws = FakeWorkspace::default();
    let (_, view) = run.drive(run.recorder_with(spend), &agent, &ws, settings(1), &[]).unwrap();
    // dev 0.4, review 0.8, fix 1.2: over the limit of 1.0 after the fix, before review 2.
    let capped = Reason::CostExceeded { used_micro_usd: 1_200_000, limit_micro_usd: 1_000_000, at: StageKind::Review };
    assert_eq!(stage(&view, "A"), Some(&Stage::Capped { fix_cycles: 1, reason: capped.clone() }));
    assert_eq!(capped.to_string(), "cost budget exceeded: $1.2000 used, limit $1.0000");
    assert_eq!(run.costs_of("A"), [Some(0.4), Some(0.4), Some(0.4)]);
    assert!(run.events_of("A").contains(&"cost_exceeded".to_string()));
    let a = view.issue("A").unwrap();
    assert!((a.cost_usd - 1.2).abs() < 1e-9 && a.known_cost_usd().is_some());

    // A retry gets its budget again and goes on where the budget stopped it: review 2 passes.
    let mut recorder = run.reopen();
    recorder.issue_events(vec![("A".into(), Event::Reopened { extra_fix_cycles: 1 })], &mut Silent).unwrap();
    assert_eq!(recorder.view().issue("A").unwrap().budget_cost_usd, 0.0);
    let (_, view) = run.drive(recorder, &agent, &ws, settings(1), &[]).unwrap();
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 1 }));
    assert_eq!(agent.ran(), [Phase::Dev, Phase::Review, Phase::Fix, Phase::Review]);
}

#[test]
fn a_spent_run_budget_starts_no_phase_the_running_issue_is_capped_and_the_rest_blocked() {
    let run = Run::new(&[("A", &[]), ("B", &[]), ("C", &["A"])]);
    let spend = crate::vocab::SpendSpec { max_cost_usd_per_run: Some(0.9), ..Default::default() };
    let scenario = [("A", script("pass", &["changes_required", "pass"])), ("B", script("pass", &["pass"]))];
    let agent = Costing::new(sim(&scenario), Some(0.5));
    let (outcome, view) =
        run.drive(run.recorder_with(spend), &agent, &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    // A's dev and review ran (1.0 spent); its fix never starts.
    let spent = |at| Reason::RunBudgetSpent { used_micro_usd: 1_000_000, limit_micro_usd: 900_000, at };
    assert_eq!(stage(&view, "A"), Some(&Stage::Capped { fix_cycles: 1, reason: spent(StageKind::Fix) }));
    // B never started: Blocked, without a worktree; C is blocked by A.
    assert_eq!(stage(&view, "B"), Some(&Stage::Blocked { fix_cycles: 0, reason: spent(StageKind::Pending) }));
    assert!(view.state_of("B").unwrap().worktree.is_none());
    assert!(matches!(stage(&view, "C"), Some(Stage::Blocked { reason: Reason::DependencyNotDone { .. }, .. })));
    assert_eq!(agent.ran(), [Phase::Dev, Phase::Review]);
    assert_eq!(run.events_of("B"), ["run_budget_spent"]);
    assert!((view.budget_cost_usd() - 1.0).abs() < 1e-9);

    // Retrying both takes A's spend out of the count: A goes on at its fix (0.5) and review
    // (1.0 again), after which B still finds the budget spent.
    let mut recorder = run.reopen();
    let reopen = |id: &str| (id.to_string(), Event::Reopened { extra_fix_cycles: 0 });
    recorder.issue_events(vec![reopen("A"), reopen("B")], &mut Silent).unwrap();
    let (_, view) = run.drive(recorder, &agent, &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 1 }));
    assert_eq!(agent.ran(), [Phase::Dev, Phase::Review, Phase::Fix, Phase::Review]);
    assert!(matches!(stage(&view, "B"), Some(Stage::Blocked { reason: Reason::RunBudgetSpent { .. }, .. })));
}

#[test]
fn a_phase_without_a_reported_cost_is_priced_by_its_model_or_stays_unknown() {
    let run = Run::new(&[("A", &[])]);
    let priced = AgentSpec { kind: "codex".into(), scenario: None, settings: Some(r#"{"model":"m-1"}"#.into()) };
    let unpriced = AgentSpec { kind: "codex".into(), scenario: None, settings: Some(r#"{"model":"m-2"}"#.into()) };
    let mut prices = crate::vocab::Prices::new();
    prices.insert("m-1".into(), crate::vocab::Price { input: 2.0, cached_input: 1.0, output: 10.0 });
    let spend = crate::vocab::SpendSpec {
        agents: Some(crate::vocab::PhaseAgents { dev: priced.clone(), review: unpriced, fix: priced }),
        prices,
        ..Default::default()
    };
    let mut agent = Costing::new(sim(&[("A", script("pass", &["pass"]))]), None);
    agent.tokens = crate::vocab::Tokens { input: 1000, cached_input: 400, output: 100, reasoning_output: 50 };
    let (_, view) = run.drive(run.recorder_with(spend), &agent, &FakeWorkspace::default(), settings(1), &[]).unwrap();
    // dev: (600 × 2 + 400 × 1 + 100 × 10) / 1e6; review's model has no price.
    let costs = run.costs_of("A");
    assert_eq!(costs.len(), 2);
    assert!((costs[0].unwrap() - 0.0026).abs() < 1e-12, "{costs:?}");
    assert_eq!(costs[1], None);
    let a = view.issue("A").unwrap();
    assert_eq!((a.priced_phases, a.unpriced_phases, a.known_cost_usd()), (1, 1, None));
    // The run records an agent per phase: each phase's backend is journaled before it runs.
    let records = crate::journal::read_all(&run.store).unwrap();
    let chosen: Vec<(Phase, String, Option<String>)> = records
        .iter()
        .filter_map(|r| match &r.content.body {
            Body::Audit { fact: Fact::PhaseAgent { phase, kind, model }, .. } => {
                Some((*phase, kind.clone(), model.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        chosen,
        [(Phase::Dev, "codex".into(), Some("m-1".into())), (Phase::Review, "codex".into(), Some("m-2".into()))]
    );
}

#[test]
fn each_phase_runs_on_its_own_agent() {
    let run = Run::new(&[("A", &[])]);
    let scenario = [("A", script("pass", &["changes_required", "pass"]))];
    let (dev, review, fix) =
        (Costing::new(sim(&scenario), None), Costing::new(sim(&scenario), None), Costing::new(sim(&scenario), None));
    let ws = FakeWorkspace::default();
    let mut silent = Silent;
    let engine = Engine::new(run.recorder(), &dev, &ws, &mut silent, settings(1))
        .phase_agent(Phase::Review, &review)
        .phase_agent(Phase::Fix, &fix);
    let (_, view) = engine.drive().unwrap();
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 1 }));
    assert_eq!((dev.ran(), review.ran(), fix.ran()), (vec![Phase::Dev], vec![Phase::Review; 2], vec![Phase::Fix]));
    // A run that records one agent journals no per-phase choice (its records are as before #13).
    assert!(!run.lines().iter().any(|l| l.ends_with("phase_agent")));
}

fn blipping(fails: usize) -> Blipping {
    Blipping { sim: sim(&[]), fails: AtomicUsize::new(fails), seen: Mutex::new(Vec::new()) }
}

fn retried(run: &Run) -> Vec<(u32, u64, Option<String>)> {
    crate::journal::read_all(&run.store)
        .unwrap()
        .iter()
        .filter_map(|r| match &r.content.body {
            Body::Audit { fact: Fact::AgentRetried { retry, delay_ms, session, .. }, .. } => {
                Some((*retry, *delay_ms, session.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn transient_errors_are_retried_with_backoff_in_the_same_session_each_journaled() {
    let mut run = Run::new(&[("A", &[])]);
    run.resilience = crate::vocab::Resilience { stall_timeout_ms: 0, retries: 3, retry_base_ms: 1, retry_cap_ms: 3 };
    let agent = blipping(3);
    let (outcome, view) = run.drive(run.recorder(), &agent, &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(stage(&view, "A"), Some(&Stage::Done { fix_cycles: 0 }));
    let t1 = Some("t1".to_string());
    assert_eq!(retried(&run), [(1, 1, t1.clone()), (2, 2, t1.clone()), (3, 3, t1.clone())], "min(cap, base × 2ⁿ)");
    let seen = agent.seen.lock().unwrap().clone();
    assert_eq!(seen[..4], [(Phase::Dev, None), (Phase::Dev, t1.clone()), (Phase::Dev, t1.clone()), (Phase::Dev, t1)]);
    assert_eq!(view.issue("A").unwrap().agent_retries, 3);
    // The count starts again for the next phase.
    assert_eq!(view.issue("A").unwrap().phase_retries, 0);
}

#[test]
fn after_the_last_retry_the_phase_fails_with_the_clis_words() {
    let mut run = Run::new(&[("A", &[])]);
    run.resilience = crate::vocab::Resilience { stall_timeout_ms: 0, retries: 2, retry_base_ms: 0, retry_cap_ms: 0 };
    let (outcome, view) =
        run.drive(run.recorder(), &blipping(10), &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    let stage = &view.state_of("A").unwrap().stage;
    assert_eq!(stage.kind(), StageKind::Failed, "{stage:?}");
    let reason = stage.reason().unwrap().to_string();
    assert!(
        reason.contains(
            "the dev agent exited with exit code 1: exceeded retry limit, last status: 429 Too Many Requests"
        ),
        "{reason}"
    );
    assert_eq!(retried(&run).len(), 2);
    // Without retries configured (older journals), the first blip fails the phase as before.
    let run = Run::new(&[("A", &[])]);
    run.drive(run.recorder(), &blipping(1), &FakeWorkspace::default(), settings(1), &[]).unwrap();
    assert!(retried(&run).is_empty());
}

#[test]
fn ctrl_c_during_the_backoff_stops_at_once_and_resume_goes_on_counting() {
    let mut run = Run::new(&[("A", &[])]);
    run.resilience =
        crate::vocab::Resilience { stall_timeout_ms: 0, retries: 1, retry_base_ms: 60_000, retry_cap_ms: 60_000 };
    let cancel = Cancel::new();
    let stopper = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            cancel.request(libc::SIGINT);
        })
    };
    let t = std::time::Instant::now();
    let agent = blipping(1);
    let ws = FakeWorkspace::default();
    let (outcome, _) = run.drive(run.recorder(), &agent, &ws, Settings::new(1, Run::clock(), cancel), &[]).unwrap();
    stopper.join().unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "the 60 s wait was not cut short: {:?}", t.elapsed());
    assert_eq!(retried(&run), [(1, 60_000, Some("t1".into()))], "journaled before the wait");
    assert_eq!(run.events_of("A").last().unwrap(), "interrupted");

    // resume: the retry already used counts.
    let mut recorder = run.reopen();
    recorder.resumed(&mut Silent).unwrap();
    assert_eq!(recorder.view().issue("A").unwrap().phase_retries, 1);
    // The one retry allowed is used: the next blip fails the phase at once.
    let agent = blipping(1);
    let (outcome, view) = run.drive(recorder, &agent, &ws, settings(1), &[]).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(view.state_of("A").unwrap().stage.kind(), StageKind::Failed);
    assert_eq!(retried(&run).len(), 1, "no retry left after resume: {:?}", retried(&run));
}

/// Keeps the bodies of the records an engine journals.
struct Bodies(Vec<Body>);

impl Observer for Bodies {
    fn record(&mut self, rec: &crate::journal::Record, _: &crate::journal::view::Applied, _: &RunView) {
        self.0.push(rec.content.body.clone());
    }
}

/// The first command the latest issue record of `bodies` emitted.
fn emitted(bodies: &[Body]) -> Command {
    bodies
        .iter()
        .rev()
        .find_map(|b| match b {
            Body::Issue { commands: Some(c), .. } if !c.is_empty() => Some(c[0].clone()),
            _ => None,
        })
        .expect("a command was emitted")
}

#[test]
fn a_far_driver_s_job_goes_on_with_the_short_commands_the_machine_asks_for_next() {
    let run = Run::new(&[("A", &[])]);
    let ws = FakeWorkspace::default();
    let agent = sim(&[]);
    let short = |c: &Command| !matches!(c, Command::RunPhase { .. } | Command::Verify { .. } | Command::Finish);
    let none = |_: &Command| false;
    let mut bodies = vec![Body::RunStarted(run.start())];
    // One job as a worker carries it out: the run's records so far folded in memory.
    let mut job = |command: Command, more: &dyn Fn(&Command) -> bool| {
        let recorder = remote::seeded("run", Run::clock(), bodies.clone()).unwrap();
        let mut seen = Bodies(Vec::new());
        let done =
            Engine::new(recorder, &agent, &ws, &mut seen, settings(1)).perform("A", command, Vec::new(), more).unwrap();
        bodies.extend(seen.0.iter().cloned());
        let lines: Vec<String> = seen.0.iter().map(line).collect();
        let chained: Vec<(String, u64)> = done.chained.iter().map(|(c, at)| (format!("{c:?}"), *at)).collect();
        (done.outcome, lines, chained, bodies.clone())
    };
    // `prepare` goes on with the worktree and the licence to start dev, and stops before the
    // phase: each command taken after the records its predecessor journaled.
    let (outcome, lines, chained, so_far) = job(Command::Prepare, &short);
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(lines, strs(&["A worktree_intent", "A worktree_created", "A phase_started"]));
    assert_eq!(chained.len(), 2, "{chained:?}");
    assert!(chained[0].0.starts_with("CreateWorktree") && chained[0].1 == 1, "{chained:?}");
    assert!(chained[1].0.starts_with("StartPhase") && chained[1].1 == 2, "{chained:?}");
    // Dev, then the licence for review; the review itself is the next job's.
    let dev = emitted(&so_far);
    assert!(matches!(dev, Command::RunPhase { phase: Phase::Dev, .. }), "{dev:?}");
    let (_, lines, chained, so_far) = job(dev, &short);
    assert_eq!(lines.last().map(String::as_str), Some("A phase_started"), "{lines:?}");
    assert!(lines.contains(&"A work_finished".to_string()), "{lines:?}");
    assert_eq!(chained.len(), 1, "{chained:?}");
    assert_eq!(chained[0].1 as usize, lines.len() - 1, "the licence follows the phase's records");
    // A driver that does not let it go on gets exactly its own command carried out.
    let review = emitted(&so_far);
    let (_, lines, chained, so_far) = job(review, &none);
    assert_eq!(lines.last().map(String::as_str), Some("A review_finished"), "{lines:?}");
    assert!(chained.is_empty());
    let (_, lines, chained, _) = job(emitted(&so_far), &short);
    assert_eq!(lines, strs(&["A worktree_removed"]));
    assert!(chained.is_empty(), "Finish is the far driver's own: {chained:?}");
}
