//! Property tests of the state machine against a small reference model.
//!
//! The model is written differently on purpose (a flat "stage" plus counters, with legality as an
//! explicit list per stage), so a shared mistake is unlikely.

use devloop::machine::{transition, Event, Phase, Rules, State, Verdict, WorkStatus};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Model {
    stage: Stage,
    fixes: u32,
}

/// The model's step: None when the event is illegal.
fn model_step(m: Model, e: &Event, cap: u32) -> Option<Model> {
    use Stage::*;
    let to = |stage| Some(Model { stage, ..m });
    let terminal = matches!(m.stage, Done | Capped | Blocked | Failed);
    match e {
        Event::Interrupted => (!terminal).then_some(m),
        Event::WorktreeRemoved { .. } | Event::WorktreeKept { .. } => terminal.then_some(m),
        Event::DependencyNotDone { .. } => (m.stage == Pending).then_some(Model { stage: Blocked, fixes: 0 }),
        Event::WorktreeIntent { .. } => (m.stage == Pending).then_some(m),
        Event::WorktreeCreated { .. } => (m.stage == Pending).then_some(Model { stage: Ready, fixes: 0 }),
        Event::WorktreeFailed { .. } => (m.stage == Pending).then_some(Model { stage: Failed, fixes: 0 }),
        Event::PhaseStarted { phase, .. } => match (m.stage, phase) {
            (Ready, Phase::Dev) | (Dev, Phase::Dev) => to(Dev),
            (Review, Phase::Review) => to(Review),
            (Fix, Phase::Fix) => to(Fix),
            _ => None,
        },
        Event::SessionStarted { phase, .. } => match (m.stage, phase) {
            (Dev, Phase::Dev) | (Review, Phase::Review) | (Fix, Phase::Fix) => Some(m),
            _ => None,
        },
        Event::BudgetExceeded { .. } => matches!(m.stage, Ready | Dev | Review | Fix).then_some(Model { stage: Capped, ..m }),
        Event::WorkFinished { phase, status } => {
            let ok = matches!((m.stage, phase), (Dev, Phase::Dev) | (Fix, Phase::Fix));
            if !ok {
                return None;
            }
            match status {
                WorkStatus::Pass => to(Review),
                WorkStatus::Failed => to(Failed),
                WorkStatus::Deferred => to(Blocked),
            }
        }
        Event::ReviewFinished { verdict } => {
            if m.stage != Review {
                return None;
            }
            match verdict {
                Verdict::Pass => to(Done),
                Verdict::Blocked => to(Blocked),
                Verdict::ChangesRequired if m.fixes >= cap => to(Capped),
                Verdict::ChangesRequired => Some(Model { stage: Fix, fixes: m.fixes + 1 }),
            }
        }
        Event::PhaseFailed { phase, .. } | Event::GuardViolation { phase, .. } => match (m.stage, phase) {
            (Dev, Phase::Dev) | (Review, Phase::Review) | (Fix, Phase::Fix) => to(Failed),
            _ => None,
        },
        Event::GuardChecked { phase, ok, .. } => match (m.stage, phase) {
            (Dev, Phase::Dev) | (Review, Phase::Review) | (Fix, Phase::Fix) => {
                if *ok {
                    Some(m)
                } else {
                    to(Failed)
                }
            }
            _ => None,
        },
        Event::CommandDecided { phase, .. } => match (m.stage, phase) {
            (Dev, Phase::Dev) | (Review, Phase::Review) | (Fix, Phase::Fix) => Some(m),
            _ => None,
        },
        Event::StackTracked { error, .. } => match (m.stage, error) {
            (Ready, None) => Some(m),
            (Ready, Some(_)) => Some(Model { stage: Failed, fixes: 0 }),
            _ => None,
        },
        Event::StackSubmitted { .. } => (m.stage == Done).then_some(m),
    }
}

/// Fix cycles entered so far, as the model counts them.
fn model_fix_cycles(m: Model) -> u32 {
    m.fixes
}

fn stage_of(s: &State) -> Stage {
    match s {
        State::Pending => Stage::Pending,
        State::WorktreeReady => Stage::Ready,
        State::Dev => Stage::Dev,
        State::Review { .. } => Stage::Review,
        State::Fix { .. } => Stage::Fix,
        State::Done { .. } => Stage::Done,
        State::Capped { .. } => Stage::Capped,
        State::Blocked { .. } => Stage::Blocked,
        State::Failed { .. } => Stage::Failed,
    }
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![Just(Phase::Dev), Just(Phase::Review), Just(Phase::Fix)]
}

fn event() -> impl Strategy<Value = Event> {
    let s = || Just(String::from("x"));
    prop_oneof![
        s().prop_map(|d| Event::DependencyNotDone { dependency: d, dependency_state: "Failed".into() }),
        s().prop_map(|p| Event::WorktreeIntent { path: p.clone(), branch: p.clone(), base: p }),
        s().prop_map(|p| Event::WorktreeCreated { path: p.clone(), branch: p.clone(), base: p }),
        s().prop_map(|reason| Event::WorktreeFailed { reason }),
        (phase(), 1u32..4).prop_map(|(phase, attempt)| Event::PhaseStarted { phase, attempt }),
        phase().prop_map(|phase| Event::SessionStarted { phase, session: "t".into() }),
        Just(Event::BudgetExceeded { used: 10, limit: 5 }),
        (prop_oneof![Just(Phase::Dev), Just(Phase::Fix), Just(Phase::Review)],
         prop_oneof![3 => Just(WorkStatus::Pass), 1 => Just(WorkStatus::Failed), 1 => Just(WorkStatus::Deferred)])
            .prop_map(|(phase, status)| Event::WorkFinished { phase, status }),
        prop_oneof![2 => Just(Verdict::ChangesRequired), 1 => Just(Verdict::Pass), 1 => Just(Verdict::Blocked)]
            .prop_map(|verdict| Event::ReviewFinished { verdict }),
        phase().prop_map(|phase| Event::PhaseFailed { phase, reason: "r".into() }),
        Just(Event::Interrupted),
        s().prop_map(|path| Event::WorktreeRemoved { path }),
        s().prop_map(|path| Event::WorktreeKept { path, reason: "r".into() }),
        (phase(), any::<bool>()).prop_map(|(phase, ok)| Event::GuardChecked { phase, ok, details: vec![] }),
        phase().prop_map(|phase| Event::GuardViolation { phase, changes: vec!["c".into()] }),
        (phase(), any::<bool>()).prop_map(|(phase, allowed)| Event::CommandDecided {
            phase,
            tool: "gt".into(),
            argv: vec![],
            allowed,
            rule: "r".into()
        }),
        proptest::option::of(s()).prop_map(|error| Event::StackTracked { parent: "main".into(), error }),
        any::<bool>().prop_map(|ok| Event::StackSubmitted { ok, detail: String::new() }),
    ]
}

/// A legal run, driven by the model so that long sequences get deep into fix cycles.
fn legal_path(cap: u32, choices: &[u8]) -> Vec<Event> {
    let mut m = Model { stage: Stage::Pending, fixes: 0 };
    let mut out = Vec::new();
    let candidates = |m: Model| -> Vec<Event> {
        use Stage::*;
        match m.stage {
            Pending => vec![
                Event::WorktreeIntent { path: "p".into(), branch: "b".into(), base: "c".into() },
                Event::WorktreeCreated { path: "p".into(), branch: "b".into(), base: "c".into() },
            ],
            Ready => vec![Event::PhaseStarted { phase: Phase::Dev, attempt: 1 }, Event::Interrupted],
            Dev => vec![
                Event::WorkFinished { phase: Phase::Dev, status: WorkStatus::Pass },
                Event::PhaseStarted { phase: Phase::Dev, attempt: 2 },
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
            ],
            _ => vec![],
        }
    };
    for &c in choices {
        let cands = candidates(m);
        if cands.is_empty() {
            break;
        }
        let e = cands[c as usize % cands.len()].clone();
        m = model_step(m, &e, cap).expect("candidates are legal");
        out.push(e);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any event sequence: the machine accepts exactly what the model accepts, lands in the same
    /// stage with the same fix count, and never exceeds the cap.
    #[test]
    fn machine_matches_model(cap in 0u32..4, events in proptest::collection::vec(event(), 0..40)) {
        let rules = Rules { max_fix_cycles: cap };
        let mut state = State::Pending;
        let mut model = Model { stage: Stage::Pending, fixes: 0 };
        for e in &events {
            let got = transition(&state, e, &rules);
            let want = model_step(model, e, cap);
            match (got, want) {
                (Ok(s), Some(m)) => {
                    prop_assert_eq!(stage_of(&s), m.stage, "event {:?} from {:?}", e, state);
                    prop_assert_eq!(s.fix_cycles(), model_fix_cycles(m));
                    prop_assert!(s.fix_cycles() <= cap);
                    state = s;
                    model = m;
                }
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "event {:?} in {:?}: machine {:?}, model {:?}", e, &state, got, want),
            }
        }
    }

    /// Legal runs that keep asking for changes end Capped after exactly `cap` fixes, and
    /// terminal states accept nothing but worktree bookkeeping.
    #[test]
    fn legal_runs_respect_the_cap(cap in 0u32..4, choices in proptest::collection::vec(any::<u8>(), 0..80)) {
        let rules = Rules { max_fix_cycles: cap };
        let mut state = State::Pending;
        for e in legal_path(cap, &choices) {
            state = transition(&state, &e, &rules).expect("legal path");
            prop_assert!(state.fix_cycles() <= cap);
        }
        if let State::Capped { fix_cycles, .. } = &state {
            prop_assert_eq!(*fix_cycles, cap);
        }
        if state.is_terminal() {
            prop_assert!(transition(&state, &Event::Interrupted, &rules).is_err());
            let pass = Event::ReviewFinished { verdict: Verdict::Pass };
            prop_assert!(transition(&state, &pass, &rules).is_err());
        }
    }
}
