//! The CLI's one error type and the exit codes it maps to.
//!
//! Invariants: every command — `replay`, the git/gt shim and the Claude hook included — ends in
//! `Result<ExitCode, CliError>`; only [`CliError::exit_code`] decides which code an error gets,
//! and only [`finish`] writes an error to stderr. Exit codes have names ([`ExitCode`]) and README's
//! table lists exactly these (a test reads it).

use std::path::Path;

use crate::agent::SpecError;
use crate::config::ConfigError;
use crate::docs::DocError;
use crate::engine::EngineError;
use crate::guard::shim::ShimError;
use crate::journal::replay::ReplayError;
use crate::journal::view::Divergence;
use crate::journal::JournalError;
use crate::plan::PlanError;
use crate::preflight::PreflightError;
use crate::runs::RunsError;
use crate::workspace::WorkspaceError;

/// How `loop` exits; documented in README.md ("Exit codes").
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// Every issue Done, or a command that did what was asked.
    Ok = 0,
    /// An error: git failed, I/O, loop's own trouble during a run; a shim refused a command.
    Error = 1,
    /// Bad input: docs, flags, loop.toml, scenario, unknown run. Also the Claude hook's "block"
    /// (Claude Code reads exit 2 from a PreToolUse hook as a refusal).
    BadInput = 2,
    /// The run finished with some issues Capped, Blocked or Failed.
    NotAllDone = 3,
    /// The journal is corrupt.
    Corrupt = 4,
    /// Journal and code disagree.
    Diverged = 5,
    /// The run or its milestone is locked by another loop process.
    Locked = 6,
    /// A shim found the real git/gt but could not execute it (as a shell reports it).
    CannotExecute = 126,
    /// A shim could not find the real git/gt (as a shell reports it).
    CommandNotFound = 127,
    /// Stopped by SIGHUP: 128 + the signal, as a shell reports it.
    Hangup = 129,
    /// Stopped by SIGINT (Ctrl-C).
    Interrupted = 130,
    /// Stopped by SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// Every exit code, in README's order of codes.
    pub const ALL: [ExitCode; 12] = [
        ExitCode::Ok,
        ExitCode::Error,
        ExitCode::BadInput,
        ExitCode::NotAllDone,
        ExitCode::Corrupt,
        ExitCode::Diverged,
        ExitCode::Locked,
        ExitCode::CannotExecute,
        ExitCode::CommandNotFound,
        ExitCode::Hangup,
        ExitCode::Interrupted,
        ExitCode::Terminated,
    ];

    /// Claude Code's PreToolUse protocol: exit 2 blocks the tool call.
    pub const HOOK_BLOCKS: ExitCode = ExitCode::BadInput;

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The named code for a number, if it is one of loop's.
    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The exit code of a run stopped by `signal` (SIGINT when unknown).
    pub fn for_signal(signal: Option<i32>) -> ExitCode {
        match signal {
            Some(libc::SIGTERM) => ExitCode::Terminated,
            Some(libc::SIGHUP) => ExitCode::Hangup,
            _ => ExitCode::Interrupted,
        }
    }

    /// The code `run` exited with (or would have), told from the run's journal alone, for a
    /// reader that did not drive it (`watch`). `interrupted_by` is the reason of the run's last
    /// `run_interrupted` not followed by a resume: a signal's name, or loop's own trouble (exit 1).
    /// A run whose process died without recording its end (SIGKILL) is an error too.
    pub fn of_journaled_run(view: &crate::journal::view::RunView, interrupted_by: Option<&str>) -> ExitCode {
        if view.interrupted {
            return match interrupted_by.and_then(|r| r.strip_prefix("interrupted by ")) {
                Some("SIGTERM") => ExitCode::Terminated,
                Some("SIGHUP") => ExitCode::Hangup,
                Some(_) => ExitCode::Interrupted,
                None => ExitCode::Error,
            };
        }
        if view.issues.iter().all(|i| matches!(i.state.stage, crate::machine::Stage::Done { .. })) {
            ExitCode::Ok
        } else if view.finished || view.all_terminal() {
            ExitCode::NotAllDone
        } else {
            ExitCode::Error
        }
    }

    /// A run stopped by a signal (resume continues it).
    pub fn is_interrupted(self) -> bool {
        matches!(self, ExitCode::Interrupted | ExitCode::Terminated | ExitCode::Hangup)
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

use crate::engine::land::LandError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Docs(#[from] DocError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Runs(#[from] RunsError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// Boxed: the engine's errors are large, and every command returns this type.
    #[error("{0}")]
    Engine(Box<EngineError>),
    #[error("{0}")]
    Workspace(#[from] WorkspaceError),
    /// The agent named by the flags or the journal cannot be built (bad scenario, settings).
    #[error("{0}")]
    Agent(#[from] SpecError),
    #[error("journal and code disagree at {0}")]
    Diverged(Box<Divergence>),
    /// `loop replay` found the journal corrupt or diverging.
    #[error("{0}")]
    Replay(Box<ReplayError>),
    /// The git/gt shim or the Claude hook did not let a command through.
    #[error("{0}")]
    Shim(#[from] ShimError),
    #[error("{0}")]
    Usage(String),
    /// Pre-flight found problems before anything was written (one line each).
    #[error("{0}")]
    Preflight(#[from] PreflightError),
    /// `loop land` could not start or finish (not the land's outcome: that is exit 3).
    #[error("{0}")]
    Land(Box<crate::engine::land::LandError>),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A write below a root that met a symlink or failed (`crate::safefs`).
    #[error("{context}: {source}")]
    Fs { context: String, source: crate::safefs::SafeFsError },
    /// A self-check of loop's own failed (the demo's replay did not agree with its run).
    #[error("{0}")]
    Check(String),
    /// The command already told the user (in its JSON output or in its own words); the inner
    /// error only decides the exit code.
    #[error("{0}")]
    Reported(Box<CliError>),
    /// Talking to Restate failed, or a worker could not start (feature `restate`).
    #[error("{0}")]
    Remote(String),
}

// The large errors are boxed: every command returns this type, and clippy's size limit keeps
// the happy path cheap.
impl From<EngineError> for CliError {
    fn from(e: EngineError) -> CliError {
        CliError::Engine(Box::new(e))
    }
}

impl From<Divergence> for CliError {
    fn from(d: Divergence) -> CliError {
        CliError::Diverged(Box::new(d))
    }
}

impl From<ReplayError> for CliError {
    fn from(e: ReplayError) -> CliError {
        CliError::Replay(Box::new(e))
    }
}

impl CliError {
    pub fn io(path: &Path, source: std::io::Error) -> CliError {
        CliError::Io { path: path.display().to_string(), source }
    }

    /// This error, marked as already shown to the user.
    pub fn reported(self) -> CliError {
        CliError::Reported(Box::new(self))
    }

    /// The one mapping from error kinds to exit codes.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Docs(_)
            | CliError::Plan(_)
            | CliError::Config(_)
            | CliError::Agent(_)
            | CliError::Usage(_)
            | CliError::Preflight(_) => ExitCode::BadInput,
            CliError::Runs(e) => runs_code(e),
            CliError::Journal(j) => journal_code(j),
            CliError::Engine(e) => engine_code(e),
            CliError::Workspace(WorkspaceError::NotARepo(_)) => ExitCode::BadInput,
            CliError::Workspace(_) => ExitCode::Error,
            CliError::Diverged(_) => ExitCode::Diverged,
            CliError::Replay(r) if matches!(**r, ReplayError::Nondeterminism(_)) => ExitCode::Diverged,
            // Replay reports any journal it cannot read through as corrupt, I/O included: it
            // is what `replay` is asked to judge.
            CliError::Replay(_) => ExitCode::Corrupt,
            CliError::Shim(e) => shim_code(e),
            CliError::Io { .. } | CliError::Fs { .. } | CliError::Check(_) => ExitCode::Error,
            CliError::Reported(inner) => inner.exit_code(),
            CliError::Land(e) => land_code(e),
            // The server, the network or a worker's clone: loop's environment, not the run's.
            CliError::Remote(_) => ExitCode::Error,
        }
    }

    /// What `loop` writes to stderr for this error, or None when the command already did.
    pub fn report(&self) -> Option<String> {
        match self {
            CliError::Reported(_) => None,
            // The agent reads these: the guard's own words, as the tool's refusal.
            CliError::Shim(e) => Some(e.to_string()),
            CliError::Replay(f) => Some(format!("loop: replay failed: {f}")),
            // One line per problem: a failed start names all of them at once.
            CliError::Preflight(p) => {
                let mut lines: Vec<String> = p
                    .problems
                    .iter()
                    .map(|x| format!("loop: error: {}", crate::render::printable(&x.to_string(), usize::MAX)))
                    .collect();
                lines.push(format!(
                    "loop: pre-flight found {} problem(s); nothing was written (no journal, worktree or branch)",
                    p.problems.len()
                ));
                Some(lines.join("\n"))
            }
            other => {
                let msg = other.to_string();
                let one_line = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
                // Errors quote docs, agents and git; none of that may drive the terminal.
                Some(format!("loop: error: {}", crate::render::printable(&one_line, usize::MAX)))
            }
        }
    }
}

fn runs_code(e: &RunsError) -> ExitCode {
    match e {
        RunsError::NoSuchRun(_) | RunsError::Ambiguous { .. } => ExitCode::BadInput,
        RunsError::Locked { .. } | RunsError::MilestoneBusy { .. } => ExitCode::Locked,
        RunsError::Journal(j) => journal_code(j),
        RunsError::GitDir(_) | RunsError::Io { .. } => ExitCode::Error,
    }
}

fn journal_code(j: &JournalError) -> ExitCode {
    match j {
        JournalError::Corrupt { .. }
        | JournalError::Damaged { .. }
        | JournalError::Missing { .. }
        | JournalError::File { .. }
        | JournalError::Empty => ExitCode::Corrupt,
        // A journal that cannot be written or read is an I/O error, never corruption.
        JournalError::Store(_) | JournalError::AppendFailed(_) => ExitCode::Error,
    }
}

fn engine_code(e: &EngineError) -> ExitCode {
    match e {
        EngineError::Journal(j) => journal_code(j),
        EngineError::Divergence(_) => ExitCode::Diverged,
        // loop's own troubles stop the run as interrupted; the error itself is exit 1.
        EngineError::Environment { .. }
        | EngineError::Append(_)
        | EngineError::Illegal(_)
        | EngineError::WriterGone
        | EngineError::Unsupported(_)
        | EngineError::Workspace { .. } => ExitCode::Error,
    }
}

fn land_code(e: &LandError) -> ExitCode {
    match e {
        LandError::NotFinished { .. }
        | LandError::NothingDone { .. }
        | LandError::Onto { .. }
        | LandError::BranchTaken { .. }
        | LandError::BranchGone { .. } => ExitCode::BadInput,
        LandError::Workspace(_) | LandError::Verify(_) => ExitCode::Error,
        LandError::Engine(e) => engine_code(e),
    }
}

fn shim_code(e: &ShimError) -> ExitCode {
    match e {
        ShimError::NoContext { .. } | ShimError::Refused { .. } => ExitCode::Error,
        ShimError::RealNotFound { .. } => ExitCode::CommandNotFound,
        ShimError::Exec { .. } => ExitCode::CannotExecute,
        ShimError::HookInput | ShimError::HookNotJson(_) | ShimError::HookRefused(_) => ExitCode::HOOK_BLOCKS,
    }
}

/// Ends a command: writes its error (if any) to stderr and returns the code to exit with.
pub fn finish(result: Result<ExitCode, CliError>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(line) = e.report() {
                crate::eoutln!("{line}");
            }
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::journal::StoreError;
    use crate::machine::{Event, Rules, State, Verdict};

    fn io() -> std::io::Error {
        std::io::Error::other("disk on fire")
    }
    fn store() -> StoreError {
        StoreError::Io { path: PathBuf::from("/s"), source: io() }
    }
    fn illegal() -> crate::machine::IllegalTransition {
        crate::machine::transition(
            &State::PENDING,
            &Event::ReviewFinished { verdict: Verdict::Pass },
            &Rules::default(),
        )
        .unwrap_err()
    }
    fn divergence() -> Divergence {
        Divergence::NoStart { seq: 3 }
    }
    /// Every kind of JournalError with the code it gets wherever it travels.
    fn journal_errors() -> Vec<(JournalError, ExitCode)> {
        vec![
            (JournalError::Store(store()), ExitCode::Error),
            (JournalError::AppendFailed("x".into()), ExitCode::Error),
            (JournalError::Damaged { file: "f".into(), seq: 1, reason: "r".into() }, ExitCode::Corrupt),
            (JournalError::Missing { run: "r".into(), file: "f".into() }, ExitCode::Corrupt),
            (JournalError::Corrupt { seq: 1, reason: "r".into() }, ExitCode::Corrupt),
            (JournalError::File { path: "p".into(), reason: "r".into() }, ExitCode::Corrupt),
            (JournalError::Empty, ExitCode::Corrupt),
        ]
    }

    #[test]
    fn exit_codes_keep_their_numbers() {
        let numbers: Vec<(ExitCode, i32)> = ExitCode::ALL.iter().map(|c| (*c, c.code())).collect();
        assert_eq!(
            numbers,
            [
                (ExitCode::Ok, 0),
                (ExitCode::Error, 1),
                (ExitCode::BadInput, 2),
                (ExitCode::NotAllDone, 3),
                (ExitCode::Corrupt, 4),
                (ExitCode::Diverged, 5),
                (ExitCode::Locked, 6),
                (ExitCode::CannotExecute, 126),
                (ExitCode::CommandNotFound, 127),
                (ExitCode::Hangup, 129),
                (ExitCode::Interrupted, 130),
                (ExitCode::Terminated, 143),
            ]
        );
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code()), Some(c));
            assert_eq!(i32::from(c), c as i32);
        }
        assert_eq!(ExitCode::from_code(7), None);
        assert_eq!(ExitCode::for_signal(Some(libc::SIGTERM)), ExitCode::Terminated);
        assert_eq!(ExitCode::for_signal(Some(libc::SIGHUP)), ExitCode::Hangup);
        assert_eq!(ExitCode::for_signal(Some(libc::SIGINT)), ExitCode::Interrupted);
        assert_eq!(ExitCode::for_signal(None), ExitCode::Interrupted);
        let stopped: Vec<ExitCode> = ExitCode::ALL.into_iter().filter(|c| c.is_interrupted()).collect();
        assert_eq!(stopped, [ExitCode::Hangup, ExitCode::Interrupted, ExitCode::Terminated]);
    }

    #[test]
    fn every_error_kind_maps_to_its_named_code() {
        let mut cases: Vec<(CliError, ExitCode)> = vec![
            (DocError::NoFrontMatter { path: "d.md".into() }.into(), ExitCode::BadInput),
            (PlanError::UnknownMilestone { milestone: "M".into(), known: vec![] }.into(), ExitCode::BadInput),
            (ConfigError::Invalid("x".into()).into(), ExitCode::BadInput),
            (ConfigError::Parse { path: "l".into(), line: 1, message: "m".into() }.into(), ExitCode::BadInput),
            (SpecError::Unknown("gemini".into()).into(), ExitCode::BadInput),
            (SpecError::NoCodexSettings.into(), ExitCode::BadInput),
            (SpecError::NoClaudeSettings.into(), ExitCode::BadInput),
            (CliError::Usage("u".into()), ExitCode::BadInput),
            (
                PreflightError { problems: vec![crate::preflight::Problem::GtMissing("gone".into())] }.into(),
                ExitCode::BadInput,
            ),
            (RunsError::NoSuchRun("r".into()).into(), ExitCode::BadInput),
            (RunsError::Ambiguous { prefix: "r".into(), matches: vec![] }.into(), ExitCode::BadInput),
            (RunsError::Locked { run: "r".into(), pid: None }.into(), ExitCode::Locked),
            (
                RunsError::MilestoneBusy { milestone: "M".into(), holder: "h".into(), pid: None, state_dir: None }
                    .into(),
                ExitCode::Locked,
            ),
            (RunsError::GitDir("g".into()).into(), ExitCode::Error),
            (RunsError::Io { path: "p".into(), source: io() }.into(), ExitCode::Error),
            (EngineError::Divergence(Box::new(divergence())).into(), ExitCode::Diverged),
            (EngineError::Illegal(illegal()).into(), ExitCode::Error),
            (EngineError::WriterGone.into(), ExitCode::Error),
            (EngineError::Append("a".into()).into(), ExitCode::Error),
            (
                EngineError::Environment { run_id: "r".into(), issue: "i".into(), cause: "c".into() }.into(),
                ExitCode::Error,
            ),
            (
                EngineError::Workspace { issue: "i".into(), source: WorkspaceError::NotARepo("/x".into()) }.into(),
                ExitCode::Error,
            ),
            (WorkspaceError::NotARepo("/x".into()).into(), ExitCode::BadInput),
            (WorkspaceError::PathTaken { path: "p".into() }.into(), ExitCode::Error),
            (divergence().into(), ExitCode::Diverged),
            (ReplayError::Nondeterminism(divergence()).into(), ExitCode::Diverged),
            (ShimError::NoContext { command: "git x".into(), reason: "r".into() }.into(), ExitCode::Error),
            (
                ShimError::Refused { command: "git x".into(), rule: "r".into(), message: "m".into() }.into(),
                ExitCode::Error,
            ),
            (ShimError::RealNotFound { tool: "gt" }.into(), ExitCode::CommandNotFound),
            (ShimError::Exec { path: "/bin/git".into(), source: io() }.into(), ExitCode::CannotExecute),
            (ShimError::HookInput.into(), ExitCode::HOOK_BLOCKS),
            (ShimError::HookRefused(vec!["a".into()]).into(), ExitCode::HOOK_BLOCKS),
            (CliError::io(std::path::Path::new("/p"), io()), ExitCode::Error),
            (
                CliError::Fs { context: "c".into(), source: crate::safefs::SafeFsError::NotAFile { path: "p".into() } },
                ExitCode::Error,
            ),
            (CliError::Check("c".into()), ExitCode::Error),
            (CliError::Usage("u".into()).reported(), ExitCode::BadInput),
            (CliError::from(ReplayError::Nondeterminism(divergence())).reported(), ExitCode::Diverged),
        ];
        for (j, code) in journal_errors() {
            cases.push((j.into(), code));
        }
        for (j, code) in journal_errors() {
            cases.push((RunsError::Journal(j).into(), code));
        }
        for (j, code) in journal_errors() {
            cases.push((EngineError::Journal(j).into(), code));
        }
        // Whatever kept replay from reading the journal, replay calls it corrupt.
        for (j, _) in journal_errors() {
            cases.push((ReplayError::Corrupt(j).into(), ExitCode::Corrupt));
        }
        for (e, want) in &cases {
            assert_eq!(e.exit_code(), *want, "{e:?}");
        }
        assert_eq!(finish(Ok(ExitCode::NotAllDone)), ExitCode::NotAllDone);
        assert_eq!(finish(Err(CliError::Usage("u".into()).reported())), ExitCode::BadInput);
        assert_eq!(ExitCode::HOOK_BLOCKS.code(), 2, "Claude Code blocks a tool call on exit 2");
    }

    #[test]
    fn reports_keep_each_commands_words() {
        assert_eq!(CliError::Usage("two\n  lines".into()).report().unwrap(), "loop: error: two lines");
        assert_eq!(CliError::Usage("esc \u{1b}[2J".into()).report().unwrap(), "loop: error: esc \\u{1b}[2J");
        let f = ReplayError::Nondeterminism(divergence());
        assert_eq!(
            CliError::from(f).report().unwrap(),
            "loop: replay failed: journal and code disagree at record 3: the first record is not run_started"
        );
        let refused = CliError::Shim(ShimError::RealNotFound { tool: "gt" });
        assert_eq!(refused.report().unwrap(), "loop guard: the real gt was not found");
        assert_eq!(CliError::Usage("u".into()).reported().report(), None);
        let p = PreflightError {
            problems: vec![
                crate::preflight::Problem::GtMissing("gone".into()),
                crate::preflight::Problem::Status("esc \u{1b}[2J".into()),
            ],
        };
        assert_eq!(
            CliError::from(p).report().unwrap(),
            "loop: error: --stack graphite needs gt: gone\nloop: error: main checkout status: esc \\u{1b}[2J\n\
             loop: pre-flight found 2 problem(s); nothing was written (no journal, worktree or branch)"
        );
    }

    /// README's exit-code table lists exactly the codes of [`ExitCode`].
    #[test]
    fn readme_table_lists_every_exit_code() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = readme.split("### Exit codes").nth(1).expect("README has an exit code section");
        let rows: Vec<i32> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.trim_start_matches('|').split('|').next()?.trim().parse().ok())
            .collect();
        let mut want: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        let mut got = rows.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "README's exit code table: {rows:?}");
    }
}
