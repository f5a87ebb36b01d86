//! Property tests of the state machine against a small reference model.
//!
//! The model is written differently on purpose (a flat record of stage, counters, worktree
//! fields and the reason as English text, with legality as an explicit list per stage, and its
//! own idea of the next step), so a shared mistake is unlikely. It covers the whole state the
//! machine keeps (stage, fix cycles, reason, worktree lifecycle, attempts, session) and every
//! command it emits.

use devloop::machine::{resume, transition, Command, Event, Life, Phase, Rules, StageKind, State, Verdict, WorkStatus};
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
}

impl Model {
    fn new() -> Model {
        Model { stage: Stage::Pending, fixes: 0, why: None, wt: Wt::None, place: None, attempts: 0, session: None }
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
        if self.stage == Stage::Pending {
            return match self.wt {
                Wt::Intended => vec![Command::CreateWorktree { path, branch, base, adopt: true }],
                _ => vec![Command::Prepare],
            };
        }
        if self.stage == Stage::Ready {
            return vec![Command::StartPhase { phase: Phase::Dev, attempt: 1 }];
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

/// The model's step: None when the event is illegal.
fn model_step(m: &Model, e: &Event, cap: u32) -> Option<(Model, Vec<Command>)> {
    use Stage::*;
    let m = m.clone();
    let in_phase = |p: &Phase| m.phase() == Some(*p);
    let fail = |m: Model, why: String| Some(m.go(Failed, Some(why)));
    let next = match e {
        Event::DependencyNotDone { dependency, dependency_state } if m.stage == Pending => {
            Some(m.go(Blocked, Some(format!("dependency {dependency} ended {}", dependency_state.name()))))
        }
        Event::WorktreeIntent { path, branch, base } if m.stage == Pending => {
            let mut m = m;
            m.wt = Wt::Intended;
            m.place = Some((path.clone(), branch.clone(), base.clone()));
            let cmd = Command::CreateWorktree {
                path: path.clone(),
                branch: branch.clone(),
                base: base.clone(),
                adopt: false,
            };
            return Some((m, vec![cmd]));
        }
        Event::WorktreeCreated { path, branch, base } if m.stage == Pending => {
            let mut m = m.go(Ready, None);
            m.wt = Wt::Created;
            m.place = Some((path.clone(), branch.clone(), base.clone()));
            Some(m)
        }
        Event::WorktreeFailed { reason } if m.stage == Pending => fail(m, reason.clone()),
        Event::StackTrackFailed { parent, error } if m.stage == Ready => {
            fail(m, format!("gt track -p {parent}: {error}"))
        }
        Event::PhaseStarted { phase, .. } if m.stage == Ready && *phase == Phase::Dev || in_phase(phase) => {
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
        Event::BudgetExceeded { used, limit } if matches!(m.stage, Ready | Dev | Review | Fix) => {
            Some(m.go(Capped, Some(format!("token budget exceeded: {used} used, limit {limit}"))))
        }
        Event::WorkFinished { phase, status } if in_phase(phase) && *phase != Phase::Review => {
            let who = if *phase == Phase::Dev { String::new() } else { format!(" in cycle {}", m.fixes) };
            match (status, phase) {
                (WorkStatus::Pass, _) => Some(m.go(Review, None)),
                (WorkStatus::Failed, Phase::Dev) => fail(m, "dev agent reported failed".into()),
                (WorkStatus::Failed, _) => fail(m, format!("fix agent reported failed{who}")),
                (WorkStatus::Deferred, Phase::Dev) => Some(m.go(Blocked, Some("dev agent deferred the issue".into()))),
                (WorkStatus::Deferred, _) => Some(m.go(Blocked, Some(format!("fix agent deferred{who}")))),
            }
        }
        Event::ReviewFinished { verdict } if m.stage == Review => match verdict {
            Verdict::Pass => Some(m.go(Done, None)),
            Verdict::Blocked => Some(m.go(Blocked, Some("review said blocked".into()))),
            Verdict::ChangesRequired if m.fixes >= cap => {
                Some(m.go(Capped, Some(format!("changes still required after {cap} fix cycles"))))
            }
            Verdict::ChangesRequired => {
                let mut m = m.go(Fix, None);
                m.fixes += 1;
                Some(m)
            }
        },
        Event::PhaseFailed { phase, reason } if in_phase(phase) => fail(m, reason.clone()),
        Event::GuardCheckFailed { phase, details } if in_phase(phase) => {
            fail(m, format!("guard: {}", details.join("; ")))
        }
        Event::GuardViolation { phase, changes } if in_phase(phase) => {
            fail(m, format!("guard: the agent changed things outside its worktree: {}", changes.join("; ")))
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
    }
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
        1 => (word(), word(), word()).prop_map(|(path, branch, base)| Event::WorktreeIntent { path, branch, base }),
        1 => (word(), word(), word()).prop_map(|(path, branch, base)| Event::WorktreeCreated { path, branch, base }),
        1 => word().prop_map(|reason| Event::WorktreeFailed { reason }),
        1 => (word(), word()).prop_map(|(parent, error)| Event::StackTrackFailed { parent, error }),
        2 => (phase(), 1u32..4).prop_map(|(phase, attempt)| Event::PhaseStarted { phase, attempt }),
        1 => (phase(), word()).prop_map(|(phase, session)| Event::SessionStarted { phase, session }),
        1 => (0u64..20, 0u64..20).prop_map(|(used, limit)| Event::BudgetExceeded { used, limit }),
        3 => (phase(), prop_oneof![3 => Just(WorkStatus::Pass), 1 => Just(WorkStatus::Failed), 1 => Just(WorkStatus::Deferred)])
            .prop_map(|(phase, status)| Event::WorkFinished { phase, status }),
        3 => prop_oneof![2 => Just(Verdict::ChangesRequired), 1 => Just(Verdict::Pass), 1 => Just(Verdict::Blocked)]
            .prop_map(|verdict| Event::ReviewFinished { verdict }),
        1 => (phase(), word()).prop_map(|(phase, reason)| Event::PhaseFailed { phase, reason }),
        1 => (phase(), proptest::collection::vec(word(), 0..3)).prop_map(|(phase, details)| Event::GuardCheckFailed { phase, details }),
        1 => (phase(), proptest::collection::vec(word(), 1..3)).prop_map(|(phase, changes)| Event::GuardViolation { phase, changes }),
        1 => word().prop_map(|path| Event::WorktreeRemoved { path }),
        1 => (word(), word()).prop_map(|(path, reason)| Event::WorktreeKept { path, reason }),
    ]
}

/// A legal run, driven by the model so that long sequences get deep into fix cycles.
fn legal_path(cap: u32, choices: &[u8]) -> Vec<Event> {
    let mut m = Model::new();
    let mut out = Vec::new();
    let candidates = |m: &Model| -> Vec<Event> {
        use Stage::*;
        match m.stage {
            Pending => vec![
                Event::WorktreeIntent { path: "p".into(), branch: "b".into(), base: "c".into() },
                Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() },
            ],
            Ready => vec![Event::PhaseStarted { phase: Phase::Dev, attempt: 1 }],
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
            _ => vec![],
        }
    };
    for &c in choices {
        let cands = candidates(&m);
        if cands.is_empty() {
            break;
        }
        let e = cands[c as usize % cands.len()].clone();
        m = model_step(&m, &e, cap).expect("candidates are legal").0;
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
    fn machine_matches_model(cap in 0u32..4, events in proptest::collection::vec(event(), 0..40)) {
        let rules = Rules { max_fix_cycles: cap };
        let mut state = State::PENDING;
        let mut model = Model::new();
        for e in &events {
            let got = transition(&state, e, &rules);
            let want = model_step(&model, e, cap);
            match (got, want) {
                (Ok((s, cmds)), Some((m, want_cmds))) => {
                    prop_assert_eq!(as_model(&s), m.clone(), "event {:?} from {:?}", e, state);
                    prop_assert_eq!(&cmds, &want_cmds, "commands after {:?} from {:?}", e, state);
                    prop_assert!(s.fix_cycles() <= cap);
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

    /// Legal runs that keep asking for changes end Capped after exactly `cap` fixes, and
    /// terminal states accept nothing but worktree bookkeeping, after which the driver is done.
    #[test]
    fn legal_runs_respect_the_cap(cap in 0u32..4, choices in proptest::collection::vec(any::<u8>(), 0..80)) {
        let rules = Rules { max_fix_cycles: cap };
        let mut state = State::PENDING;
        let mut last = Vec::new();
        for e in legal_path(cap, &choices) {
            let (s, cmds) = transition(&state, &e, &rules).expect("legal path");
            prop_assert!(s.fix_cycles() <= cap);
            state = s;
            last = cmds;
        }
        if state.stage.kind() == StageKind::Capped {
            prop_assert_eq!(state.fix_cycles(), cap);
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
