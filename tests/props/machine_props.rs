//! Property tests of the state machine against a small reference model.
//!
//! The model is written differently on purpose (a flat record of stage, counters, worktree
//! fields and the reason as English text, with legality as an explicit list per stage, and its
//! own idea of the next step), so a shared mistake is unlikely. It covers the whole state the
//! machine keeps (stage, fix cycles, reason, worktree lifecycle and pending merges, attempts,
//! session, retries' extra cycles) and every command it emits. Where a retry resumes is kept as
//! its own field, written down when the issue ends (the machine derives it from the reason).

use devloop::machine::{
    resume, transition, transition_in_place, Command, Event, Life, Phase, Rules, StageKind, State, Verdict, WorkStatus,
};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Pending,
    Ready,
    Dev,
    Review,
    Fix,
    Done,
    Capped,
    Blocked,
    Failed,
    Verify,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Wt {
    None,
    Intended,
    Created,
    Removed,
    Kept(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    stage: Stage,
    fixes: u32,
    why: Option<String>,
    wt: Wt,
    /// path, branch, base of the worktree, once one was named.
    place: Option<(String, String, String)>,
    attempts: u32,
    session: Option<String>,
    /// Commits to merge once the worktree exists, and whether the branch is reused.
    merge: Vec<String>,
    reuse: bool,
    extra: u32,
    /// Where `retry` goes (stage and fix count), written when the issue ends.
    retry_at: Option<(Stage, u32)>,
}

impl Model {
    fn new() -> Model {
        Model {
            stage: Stage::Pending,
            fixes: 0,
            why: None,
            wt: Wt::None,
            place: None,
            attempts: 0,
            session: None,
            merge: vec![],
            reuse: false,
            extra: 0,
            retry_at: None,
        }
    }

    fn terminal(&self) -> bool {
        matches!(self.stage, Stage::Done | Stage::Capped | Stage::Blocked | Stage::Failed)
    }

    fn phase(&self) -> Option<Phase> {
        match self.stage {
            Stage::Dev => Some(Phase::Dev),
            Stage::Review => Some(Phase::Review),
            Stage::Fix => Some(Phase::Fix),
            _ => None,
        }
    }

    fn kind(&self) -> StageKind {
        match self.stage {
            Stage::Pending => StageKind::Pending,
            Stage::Ready => StageKind::WorktreeReady,
            Stage::Dev => StageKind::Dev,
            Stage::Review => StageKind::Review,
            Stage::Fix => StageKind::Fix,
            Stage::Done => StageKind::Done,
            Stage::Capped => StageKind::Capped,
            Stage::Blocked => StageKind::Blocked,
            Stage::Failed => StageKind::Failed,
            Stage::Verify => StageKind::Verify,
        }
    }

    /// Ends the issue in `stage`, noting where a retry would pick it up.
    fn end(self, stage: Stage, why: String, retry: (Stage, u32)) -> Model {
        let mut m = self.go(stage, Some(why));
        m.retry_at = Some(retry);
        m
    }

    /// Where a retry of a failed step goes when nothing more specific is known.
    fn again(&self) -> (Stage, u32) {
        if self.fixes == 0 {
            (Stage::Dev, 0)
        } else {
            (Stage::Fix, self.fixes)
        }
    }

    /// Moves to `stage`; a different stage forgets attempts and session.
    fn go(mut self, stage: Stage, why: Option<String>) -> Model {
        if stage != self.stage {
            self.attempts = 0;
            self.session = None;
        }
        self.stage = stage;
        self.why = why;
        self
    }

    /// What the driver must do when it finds the issue like this.
    fn todo(&self) -> Vec<Command> {
        let (path, branch, base) = self.place.clone().unwrap_or_default();
        if self.wt == Wt::Intended && !self.terminal() {
            return vec![Command::CreateWorktree { path, branch, base, adopt: true, reuse: self.reuse }];
        }
        if self.stage == Stage::Pending {
            return vec![Command::Prepare];
        }
        if self.stage == Stage::Ready {
            if !self.merge.is_empty() {
                return vec![Command::MergeBases { path, parents: self.merge.clone() }];
            }
            return vec![Command::StartPhase { phase: Phase::Dev, attempt: 1 }];
        }
        if self.stage == Stage::Verify {
            return vec![Command::Verify { path, cycle: self.fixes }];
        }
        if let Some(phase) = self.phase() {
            return vec![Command::StartPhase { phase, attempt: self.attempts + 1 }];
        }
        if self.wt != Wt::Created {
            return vec![Command::Finish];
        }
        if matches!(self.stage, Stage::Done | Stage::Capped) {
            vec![Command::RemoveWorktree { path, branch }]
        } else {
            vec![Command::KeepWorktree { path, ended: self.kind() }]
        }
    }
}

/// Micro-dollars as reasons show them: `$1.2345`.
fn usd(micros: u64) -> String {
    format!("${}.{:04}", micros / 1_000_000, (micros % 1_000_000) / 100)
}

/// The model's step: None when the event is illegal.
fn model_step(m: &Model, e: &Event, cap: u32, verify: bool) -> Option<(Model, Vec<Command>)> {
    use Stage::*;
    let m = m.clone();
    let base_cap = cap;
    let cap = cap + m.extra;
    let in_phase = |p: &Phase| m.phase() == Some(*p);
    let fail = |m: Model, why: String, retry: (Stage, u32)| Some(m.end(Failed, why, retry));
    let wt_there = m.wt != Wt::Intended;
    let next = match e {
        Event::DependencyNotDone { dependency, dependency_state } if m.stage == Pending => {
            let why = format!("dependency {dependency} ended {}", dependency_state.name());
            Some(m.end(Blocked, why, (Ready, 0)))
        }
        Event::WorktreeIntent { path, branch, base, merge, reuse } if m.stage == Pending => {
            let mut m = m;
            m.wt = Wt::Intended;
            m.place = Some((path.clone(), branch.clone(), base.clone()));
            m.merge = merge.clone();
            m.reuse = *reuse;
            let cmd = Command::CreateWorktree {
                path: path.clone(),
                branch: branch.clone(),
                base: base.clone(),
                adopt: false,
                reuse: *reuse,
            };
            return Some((m, vec![cmd]));
        }
        Event::WorktreeCreated { path, branch, base } if m.stage == Pending => {
            let same_place = m.place.as_ref().is_some_and(|(p, _, _)| p == path);
            let mut m = m.go(Ready, None);
            if !same_place {
                m.merge = vec![];
                m.reuse = false;
            }
            m.wt = Wt::Created;
            m.place = Some((path.clone(), branch.clone(), base.clone()));
            Some(m)
        }
        Event::WorktreeCreated { .. } if !m.terminal() && m.wt == Wt::Intended => {
            let mut m = m;
            m.wt = Wt::Created;
            Some(m)
        }
        Event::WorktreeFailed { reason } if m.stage == Pending => fail(m, reason.clone(), (Ready, 0)),
        Event::StackTrackFailed { parent, error } if m.stage == Ready => {
            fail(m, format!("gt track -p {parent}: {error}"), (Ready, 0))
        }
        Event::BasesMerged { commit } if m.stage == Ready && m.wt != Wt::Intended && !m.merge.is_empty() => {
            let mut m = m;
            m.merge.clear();
            if let Some(place) = m.place.as_mut() {
                place.2 = commit.clone();
            }
            Some(m)
        }
        Event::MergeConflict { parent, files } if m.stage == Ready && m.wt != Wt::Intended && !m.merge.is_empty() => {
            Some(m.end(Blocked, format!("merging {parent} conflicted in {}", files.join(", ")), (Ready, 0)))
        }
        Event::CarriedOver { .. } if m.stage == Pending && m.wt == Wt::None => Some(m.go(Done, None)),
        Event::Reopened { extra_fix_cycles } if matches!(m.stage, Capped | Failed | Blocked) => {
            let mut m = m;
            m.extra += extra_fix_cycles;
            let (stage, fixes) = match m.wt {
                Wt::None | Wt::Intended => (Pending, 0),
                _ => m.retry_at.expect("an ended issue knows where a retry goes"),
            };
            match m.wt {
                Wt::Removed => {
                    m.wt = Wt::Intended;
                    m.reuse = true;
                }
                Wt::Kept(_) => m.wt = Wt::Created,
                _ => {}
            }
            let mut m = m.go(stage, None);
            m.fixes = fixes;
            m.retry_at = None;
            if fixes > base_cap + m.extra {
                m.extra = fixes - base_cap;
            }
            Some(m)
        }
        Event::PhaseStarted { phase, .. }
            if wt_there && (m.stage == Ready && *phase == Phase::Dev && m.merge.is_empty() || in_phase(phase)) =>
        {
            let mut m = if m.stage == Ready { m.go(Dev, None) } else { m };
            m.attempts += 1;
            let cycle = if m.stage == Dev { 0 } else { m.fixes };
            let cmd =
                Command::RunPhase { phase: *phase, cycle, attempt: m.attempts, resume_session: m.session.clone() };
            return Some((m, vec![cmd]));
        }
        Event::SessionStarted { phase, session } if in_phase(phase) => {
            let mut m = m;
            m.session = Some(session.clone());
            return Some((m, vec![]));
        }
        Event::BudgetExceeded { used, limit } if matches!(m.stage, Ready | Dev | Review | Fix | Verify) => {
            let next = (Fix, m.fixes + 1);
            Some(m.end(Capped, format!("token budget exceeded: {used} used, limit {limit}"), next))
        }
        // A cost budget stops the issue between steps; a retry goes on where it stopped.
        Event::CostExceeded { used_micro_usd, limit_micro_usd }
            if matches!(m.stage, Ready | Dev | Review | Fix | Verify) =>
        {
            let next = (m.stage, m.fixes);
            let why = format!("cost budget exceeded: {} used, limit {}", usd(*used_micro_usd), usd(*limit_micro_usd));
            Some(m.end(Capped, why, next))
        }
        Event::RunBudgetSpent { used_micro_usd, limit_micro_usd } if m.stage == Pending => {
            let why = format!("run cost budget spent: {} used, limit {}", usd(*used_micro_usd), usd(*limit_micro_usd));
            Some(m.end(Blocked, why, (Ready, 0)))
        }
        Event::RunBudgetSpent { used_micro_usd, limit_micro_usd } if matches!(m.stage, Ready | Dev | Review | Fix) => {
            let next = (m.stage, m.fixes);
            let why = format!("run cost budget spent: {} used, limit {}", usd(*used_micro_usd), usd(*limit_micro_usd));
            Some(m.end(Capped, why, next))
        }
        Event::WorkFinished { phase, status } if in_phase(phase) && *phase != Phase::Review => {
            let who = if *phase == Phase::Dev { String::new() } else { format!(" in cycle {}", m.fixes) };
            let here = (m.stage, m.fixes);
            match (status, phase) {
                (WorkStatus::Pass, _) => Some(m.go(if verify { Verify } else { Review }, None)),
                (WorkStatus::Failed, Phase::Dev) => fail(m, "dev agent reported failed".into(), here),
                (WorkStatus::Failed, _) => fail(m, format!("fix agent reported failed{who}"), here),
                (WorkStatus::Deferred, Phase::Dev) => Some(m.end(Blocked, "dev agent deferred the issue".into(), here)),
                (WorkStatus::Deferred, _) => Some(m.end(Blocked, format!("fix agent deferred{who}"), here)),
            }
        }
        Event::VerifyFinished { failures } if m.stage == Verify && wt_there => {
            if failures.is_empty() {
                Some(m.go(Review, None))
            } else if m.fixes >= cap {
                let next = (Fix, m.fixes + 1);
                Some(m.end(Capped, format!("checks still failing after {cap} fix cycles"), next))
            } else {
                let mut m = m.go(Fix, None);
                m.fixes += 1;
                Some(m)
            }
        }
        Event::ReviewFinished { verdict } if m.stage == Review => match verdict {
            Verdict::Pass => Some(m.go(Done, None)),
            Verdict::Blocked => {
                let next = (Fix, m.fixes + 1);
                Some(m.end(Blocked, "review said blocked".into(), next))
            }
            Verdict::ChangesRequired if m.fixes >= cap => {
                let next = (Fix, m.fixes + 1);
                Some(m.end(Capped, format!("changes still required after {cap} fix cycles"), next))
            }
            Verdict::ChangesRequired => {
                let mut m = m.go(Fix, None);
                m.fixes += 1;
                Some(m)
            }
        },
        Event::PhaseFailed { phase, reason } if in_phase(phase) => {
            let here = (m.stage, m.fixes);
            fail(m, reason.clone(), here)
        }
        Event::GuardCheckFailed { phase, details } if in_phase(phase) => {
            let again = m.again();
            fail(m, format!("guard: {}", details.join("; ")), again)
        }
        Event::GuardViolation { phase, changes } if in_phase(phase) => {
            let again = m.again();
            fail(m, format!("guard: the agent changed things outside its worktree: {}", changes.join("; ")), again)
        }
        Event::WorktreeRemoved { .. } if m.terminal() => {
            let mut m = m;
            if matches!(m.wt, Wt::Created | Wt::Kept(_)) {
                m.wt = Wt::Removed;
            }
            Some(m)
        }
        Event::WorktreeKept { reason, .. } if m.terminal() => {
            let mut m = m;
            if m.wt == Wt::Created {
                m.wt = Wt::Kept(reason.clone());
            }
            Some(m)
        }
        _ => None,
    }?;
    let todo = next.todo();
    Some((next, todo))
}

/// The machine's whole state, in the model's terms.
fn as_model(s: &State) -> Model {
    let stage = match s.stage.kind() {
        StageKind::Pending => Stage::Pending,
        StageKind::WorktreeReady => Stage::Ready,
        StageKind::Dev => Stage::Dev,
        StageKind::Review => Stage::Review,
        StageKind::Fix => Stage::Fix,
        StageKind::Done => Stage::Done,
        StageKind::Capped => Stage::Capped,
        StageKind::Blocked => Stage::Blocked,
        StageKind::Failed => Stage::Failed,
        StageKind::Verify => Stage::Verify,
    };
    let wt = match s.worktree.as_ref().map(|w| &w.life) {
        None => Wt::None,
        Some(Life::Intended) => Wt::Intended,
        Some(Life::Created) => Wt::Created,
        Some(Life::Removed) => Wt::Removed,
        Some(Life::Kept { reason }) => Wt::Kept(reason.clone()),
    };
    Model {
        stage,
        fixes: s.stage.fix_cycles(),
        why: s.reason().map(|r| r.to_string()),
        wt,
        place: s.worktree.as_ref().map(|w| (w.path.clone(), w.branch.clone(), w.base.clone())),
        attempts: s.attempts,
        session: s.session.clone(),
        merge: s.worktree.as_ref().map(|w| w.merge.clone()).unwrap_or_default(),
        reuse: s.worktree.as_ref().is_some_and(|w| w.reuse),
        extra: s.extra_fix_cycles,
        retry_at: None,
    }
}

/// The model without the field the machine does not keep (it derives it from the reason).
fn comparable(m: &Model) -> Model {
    Model { retry_at: None, ..m.clone() }
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![Just(Phase::Dev), Just(Phase::Review), Just(Phase::Fix)]
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![Just("x".to_string()), Just("y".to_string()), Just("z; w".to_string())]
}

fn kind() -> impl Strategy<Value = StageKind> {
    proptest::sample::select(StageKind::ALL.to_vec())
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (word(), kind()).prop_map(|(dependency, dependency_state)| Event::DependencyNotDone { dependency, dependency_state }),
        1 => (word(), word(), word(), proptest::collection::vec(word(), 0..3), any::<bool>())
            .prop_map(|(path, branch, base, merge, reuse)| Event::WorktreeIntent { path, branch, base, merge, reuse }),
        1 => (word(), word(), word()).prop_map(|(path, branch, base)| Event::WorktreeCreated { path, branch, base }),
        1 => word().prop_map(|reason| Event::WorktreeFailed { reason }),
        1 => (word(), word()).prop_map(|(parent, error)| Event::StackTrackFailed { parent, error }),
        2 => (phase(), 1u32..4).prop_map(|(phase, attempt)| Event::PhaseStarted { phase, attempt }),
        1 => (phase(), word()).prop_map(|(phase, session)| Event::SessionStarted { phase, session }),
        1 => (0u64..20, 0u64..20).prop_map(|(used, limit)| Event::BudgetExceeded { used, limit }),
        1 => (0u64..3_000_000, 0u64..3_000_000).prop_map(|(used_micro_usd, limit_micro_usd)| Event::CostExceeded { used_micro_usd, limit_micro_usd }),
        1 => (0u64..3_000_000, 0u64..3_000_000).prop_map(|(used_micro_usd, limit_micro_usd)| Event::RunBudgetSpent { used_micro_usd, limit_micro_usd }),
        3 => (phase(), prop_oneof![3 => Just(WorkStatus::Pass), 1 => Just(WorkStatus::Failed), 1 => Just(WorkStatus::Deferred)])
            .prop_map(|(phase, status)| Event::WorkFinished { phase, status }),
        3 => prop_oneof![2 => Just(Verdict::ChangesRequired), 1 => Just(Verdict::Pass), 1 => Just(Verdict::Blocked)]
            .prop_map(|verdict| Event::ReviewFinished { verdict }),
        1 => (phase(), word()).prop_map(|(phase, reason)| Event::PhaseFailed { phase, reason }),
        1 => (phase(), proptest::collection::vec(word(), 0..3)).prop_map(|(phase, details)| Event::GuardCheckFailed { phase, details }),
        1 => (phase(), proptest::collection::vec(word(), 1..3)).prop_map(|(phase, changes)| Event::GuardViolation { phase, changes }),
        1 => word().prop_map(|path| Event::WorktreeRemoved { path }),
        1 => (word(), word()).prop_map(|(path, reason)| Event::WorktreeKept { path, reason }),
        1 => word().prop_map(|commit| Event::BasesMerged { commit }),
        1 => (word(), proptest::collection::vec(word(), 1..3)).prop_map(|(parent, files)| Event::MergeConflict { parent, files }),
        2 => proptest::collection::vec(word(), 0..2).prop_map(|failures| Event::VerifyFinished { failures }),
        1 => (word(), word(), word()).prop_map(|(run, branch, tip)| Event::CarriedOver { run, branch, tip }),
        2 => (0u32..3).prop_map(|extra_fix_cycles| Event::Reopened { extra_fix_cycles }),
    ]
}

/// A legal run, driven by the model so that long sequences get deep into fix cycles.
fn legal_path(cap: u32, verify: bool, choices: &[u8]) -> Vec<Event> {
    let mut m = Model::new();
    let mut out = Vec::new();
    let candidates = |m: &Model| -> Vec<Event> {
        use Stage::*;
        match m.stage {
            Pending if m.wt == Wt::Intended => {
                vec![Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() }]
            }
            Pending => vec![
                Event::WorktreeIntent {
                    path: "p".into(),
                    branch: "b".into(),
                    base: "c".into(),
                    merge: vec!["d".into()],
                    reuse: false,
                },
                Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() },
            ],
            _ if m.wt == Wt::Intended && !m.terminal() => {
                vec![Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() }]
            }
            Ready if !m.merge.is_empty() => vec![
                Event::BasesMerged { commit: "m".into() },
                Event::BasesMerged { commit: "m".into() },
                Event::MergeConflict { parent: "d".into(), files: vec!["f".into()] },
            ],
            Ready => vec![Event::PhaseStarted { phase: Phase::Dev, attempt: 1 }],
            Verify => vec![
                Event::VerifyFinished { failures: vec![] },
                Event::VerifyFinished { failures: vec!["check: exit 1".into()] },
            ],
            Dev => vec![
                Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
                Event::PhaseStarted { phase: Phase::Dev, attempt: 2 },
                Event::SessionStarted { phase: Phase::Dev, session: "s".into() },
            ],
            Review => vec![
                Event::ReviewFinished { verdict: Verdict::ChangesRequired },
                Event::ReviewFinished { verdict: Verdict::ChangesRequired },
                Event::ReviewFinished { verdict: Verdict::Pass },
                Event::PhaseStarted { phase: Phase::Review, attempt: 1 },
            ],
            Fix => vec![
                Event::WorkFinished { phase: Phase::Fix, status: WorkStatus::Pass },
                Event::SessionStarted { phase: Phase::Fix, session: "s".into() },
                Event::PhaseStarted { phase: Phase::Fix, attempt: 1 },
            ],
            _ if m.wt == Wt::Created => vec![Event::WorktreeRemoved { path: "p".into() }],
            Capped | Blocked | Failed => {
                vec![Event::Reopened { extra_fix_cycles: 1 }, Event::Reopened { extra_fix_cycles: 0 }]
            }
            _ => vec![],
        }
    };
    for &c in choices {
        let cands = candidates(&m);
        if cands.is_empty() {
            break;
        }
        let e = cands[c as usize % cands.len()].clone();
        m = model_step(&m, &e, cap, verify).expect("candidates are legal").0;
        out.push(e);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any event sequence: the machine accepts exactly what the model accepts, lands in the same
    /// whole state (stage, fix count, reason text, worktree lifecycle, attempts, session),
    /// emits the same commands, never exceeds the cap, and `resume` of any state it reaches is
    /// what the model would do next.
    #[test]
    fn machine_matches_model(
        cap in 0u32..4,
        verify in any::<bool>(),
        events in proptest::collection::vec(event(), 0..40),
    ) {
        let rules = Rules { verify, ..Rules::with_max_fix_cycles(cap) };
        let mut state = State::PENDING;
        let mut model = Model::new();
        for e in &events {
            let got = transition(&state, e, &rules);
            let want = model_step(&model, e, cap, verify);
            match (got, want) {
                (Ok((s, cmds)), Some((m, want_cmds))) => {
                    prop_assert_eq!(as_model(&s), comparable(&m), "event {:?} from {:?}", e, state);
                    prop_assert_eq!(&cmds, &want_cmds, "commands after {:?} from {:?}", e, state);
                    prop_assert!(s.fix_cycles() <= s.fix_limit(&rules));
                    prop_assert_eq!(resume(&s), m.todo());
                    state = s;
                    model = m;
                }
                (Err(err), None) => {
                    prop_assert_eq!(err.state, state.stage.kind());
                    prop_assert_eq!(err.event, e.name());
                }
                (got, want) => prop_assert!(false, "event {:?} in {:?}: machine {:?}, model {:?}", e, &state, got, want),
            }
        }
    }

    /// The in-place step (what replay folds with) is the table itself: on any state it reaches
    /// the state and commands `transition` gives, leaves the state untouched when the event is
    /// illegal, and its undo puts back exactly the state it started from.
    #[test]
    fn the_in_place_step_is_the_step_and_undoes(
        cap in 0u32..4,
        verify in any::<bool>(),
        events in proptest::collection::vec(event(), 0..40),
    ) {
        let rules = Rules { verify, ..Rules::with_max_fix_cycles(cap) };
        let mut state = State::PENDING;
        for e in &events {
            let mut in_place = state.clone();
            match (transition(&state, e, &rules), transition_in_place(&mut in_place, e, &rules)) {
                (Ok((next, cmds)), Ok((cmds_in_place, undo))) => {
                    prop_assert_eq!(&in_place, &next, "event {:?} from {:?}", e, state);
                    prop_assert_eq!(&cmds_in_place, &cmds);
                    prop_assert_eq!(&undo.stage, &state.stage);
                    undo.restore(&mut in_place);
                    prop_assert_eq!(&in_place, &state, "undo of {:?}", e);
                    state = next;
                }
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a, b);
                    prop_assert_eq!(&in_place, &state, "an illegal {:?} changed the state", e);
                }
                (a, b) => prop_assert!(false, "event {:?} in {:?}: {:?} vs {:?}", e, &state, a, b.map(|(c, _)| c)),
            }
        }
    }

    /// Legal runs that keep asking for changes end Capped after exactly `cap` fixes, and
    /// terminal states accept nothing but worktree bookkeeping, after which the driver is done.
    #[test]
    fn legal_runs_respect_the_cap(
        cap in 0u32..4,
        verify in any::<bool>(),
        choices in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let rules = Rules { verify, ..Rules::with_max_fix_cycles(cap) };
        let mut state = State::PENDING;
        let mut last = Vec::new();
        for e in legal_path(cap, verify, &choices) {
            let (s, cmds) = transition(&state, &e, &rules).expect("legal path");
            prop_assert!(s.fix_cycles() <= s.fix_limit(&rules), "{:?}", s);
            state = s;
            last = cmds;
        }
        let capped_by_cycles = matches!(
            state.reason(),
            Some(devloop::machine::Reason::ChangesStillRequired { .. } | devloop::machine::Reason::ChecksStillFailing { .. })
        );
        if capped_by_cycles {
            prop_assert_eq!(state.fix_cycles(), state.fix_limit(&rules));
        }
        if state.is_terminal() {
            let pass = Event::ReviewFinished { verdict: Verdict::Pass };
            prop_assert!(transition(&state, &pass, &rules).is_err());
            let start = Event::PhaseStarted { phase: Phase::Dev, attempt: 1 };
            prop_assert!(transition(&state, &start, &rules).is_err());
            if state.worktree.as_ref().is_some_and(|w| w.removed()) {
                prop_assert_eq!(last, vec![Command::Finish]);
            }
        }
    }
}
