//! The machine's `verify` command: loop runs the verification commands itself on the work of dev
//! or of a fix ([`crate::verify`] runs them), and answers with `verify_finished`.
//!
//! Steps: the baseline (the checks on the issue's base commit, once per distinct base tree in a
//! run, in a loop-owned detached worktree under the state dir, removed after), the setup (once
//! per lockfile hash in a run, or skipped by `--skip-setup`), then every check in the worktree.
//!
//! Invariants:
//! - Every command run is journaled as a `check_ran` fact (command, exit code or why not,
//!   duration, tail, hash of the whole output, log path, pre-existing) before the verdict, and
//!   the baseline and setup as `baseline_checked` / `setup_checked`, which are the run's caches:
//!   a resumed run reads them from the journal, so nothing is cached outside it.
//! - Fail closed: a check that fails, cannot start or times out is a failure of the issue, unless
//!   it fails on the base too (pre-existing) and `count_preexisting` is off. A base that cannot be
//!   checked makes no failure pre-existing. A failed setup fails the verification.
//! - loop's own trouble (a log that cannot be written, git failing for its environment) stops the
//!   run as the environment's failure; resume verifies again from the start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::driver::IssueDriver;
use super::{EngineError, Step};
use crate::journal::{Fact, PlannedIssue};
use crate::machine::Event;
use crate::verify::{self, CheckKind, CheckRun, Logs, VerifyError};
use crate::vocab::VerifySpec;
use crate::workspace::{sanitize, WorkspaceError};

/// Where verification keeps its logs and scratch worktrees, and the flags of this process
/// (not journaled: `--skip-setup` may differ between a run and its resume).
#[derive(Clone, Debug)]
pub struct VerifyEnv {
    /// The logs root (`<state>/logs`); each issue's logs go to `<run>/<issue>/` below it.
    pub logs_root: PathBuf,
    /// Where baseline worktrees are made (`<state>/verify`), each removed after use.
    pub scratch_root: PathBuf,
    /// `--skip-setup`: never run the setup commands.
    pub skip_setup: bool,
}

impl Default for VerifyEnv {
    fn default() -> VerifyEnv {
        let tmp = std::env::temp_dir().join("loop-verify");
        VerifyEnv { logs_root: tmp.join("logs"), scratch_root: tmp.join("scratch"), skip_setup: false }
    }
}

/// How a verification step ended early.
enum Halt {
    Stop,
    Engine(EngineError),
}

impl From<EngineError> for Halt {
    fn from(e: EngineError) -> Halt {
        Halt::Engine(e)
    }
}

impl IssueDriver<'_> {
    /// `verify`: baseline, setup, checks; journals each command and then `verify_finished`.
    pub(super) fn verify(&self, planned: &PlannedIssue, path: String, cycle: u32) -> Result<Step, EngineError> {
        match self.verify_steps(planned, Path::new(&path), cycle) {
            Ok(failures) => {
                self.event(&planned.id, Event::VerifyFinished { failures }, None)?;
                Ok(Step::Continue)
            }
            Err(Halt::Stop) => Ok(Step::Stop),
            Err(Halt::Engine(e)) => Err(e),
        }
    }

    fn verify_steps(&self, planned: &PlannedIssue, worktree: &Path, cycle: u32) -> Result<Vec<String>, Halt> {
        let id = planned.id.as_str();
        let (spec, run_id, base) = {
            let view = self.handle().view();
            let base = view.state_of(id).and_then(|s| s.worktree.as_ref()).map(|w| w.base.clone());
            (view.start.verify.clone(), view.run_id.clone(), base)
        };
        let commands: Vec<String> = planned.verify.iter().chain(spec.commands.iter()).cloned().collect();
        let timeout = timeout_of(&spec);
        let env = &self.parts.verify;
        let dir = PathBuf::from(sanitize(&run_id)).join(sanitize(id));
        let label = if cycle == 0 { "dev".to_string() } else { format!("fix-{cycle}") };
        let logs = Logs { root: env.logs_root.clone(), dir: dir.clone(), label };

        let baseline = match (&base, spec.count_preexisting) {
            (Some(base), false) => self.baseline(planned, &spec, &commands, base, &dir)?,
            _ => None,
        };
        if let Some(failed) = self.setup(planned, &spec, worktree, &logs)? {
            return Ok(vec![verify::failure_text(&failed)]);
        }
        let mut failures = Vec::new();
        for (n, line) in commands.iter().enumerate() {
            let mut run = self.run_one(id, worktree, line, CheckKind::Check, &logs, n, timeout)?;
            run.pre_existing = !run.passed() && baseline.as_ref().is_some_and(|failing| failing.contains(line));
            if !run.passed() && (!run.pre_existing || spec.count_preexisting) {
                failures.push(verify::failure_text(&run));
            }
            self.audit(id, Fact::CheckRan(run), None)?;
        }
        Ok(failures)
    }

    /// Runs one command; loop's own trouble stops the run, an interruption stops the issue.
    #[expect(clippy::too_many_arguments, reason = "one command's whole context, passed once")]
    fn run_one(
        &self,
        id: &str,
        dir: &Path,
        line: &str,
        kind: CheckKind,
        logs: &Logs,
        n: usize,
        timeout: Duration,
    ) -> Result<CheckRun, Halt> {
        verify::run_one(dir, line, kind, logs, n, timeout).map_err(|e| self.halt(id, e))
    }

    fn halt(&self, id: &str, e: VerifyError) -> Halt {
        match e {
            VerifyError::Interrupted => match self.audit(id, Fact::Interrupted, None) {
                Ok(()) => Halt::Stop,
                Err(e) => Halt::Engine(e),
            },
            // Whatever the OS said (a full disk, or a symlink planted in loop's own logs dir),
            // the trouble is loop's state, not the issue's work: the run stops, resume retries.
            e => Halt::Engine(self.stop_for_environment(id, e.to_string(), None)),
        }
    }

    fn workspace_halt(&self, id: &str, what: &str, e: WorkspaceError) -> Halt {
        Halt::Engine(self.stop_for_environment(id, format!("{what}: {e}"), None))
    }

    /// The setup commands, unless skipped; the failed setup command when setup failed.
    fn setup(
        &self,
        planned: &PlannedIssue,
        spec: &VerifySpec,
        worktree: &Path,
        logs: &Logs,
    ) -> Result<Option<CheckRun>, Halt> {
        if spec.setup.is_empty() {
            return Ok(None);
        }
        let id = planned.id.as_str();
        let lockfiles = verify::lockfiles_hash(worktree, &lockfile_names(spec));
        let done = self.handle().view().setups_passed.contains(&lockfiles);
        if done || self.parts.verify.skip_setup {
            self.audit(id, Fact::SetupChecked { lockfiles, ran: false, passed: false }, None)?;
            return Ok(None);
        }
        let runs = self.setup_runs(id, spec, worktree, logs)?;
        let failed = runs.iter().find(|r| !r.passed()).cloned();
        for run in runs {
            self.audit(id, Fact::CheckRan(run), None)?;
        }
        self.audit(id, Fact::SetupChecked { lockfiles, ran: true, passed: failed.is_none() }, None)?;
        Ok(failed)
    }

    fn setup_runs(&self, id: &str, spec: &VerifySpec, dir: &Path, logs: &Logs) -> Result<Vec<CheckRun>, Halt> {
        verify::run_setup(dir, &spec.setup, logs, timeout_of(spec)).map_err(|e| self.halt(id, e))
    }

    /// The commands failing on the base commit (None: the base could not be checked). Checked
    /// once per base tree in a run: a concurrent issue on the same base waits for it.
    fn baseline(
        &self,
        planned: &PlannedIssue,
        spec: &VerifySpec,
        commands: &[String],
        base: &str,
        dir: &Path,
    ) -> Result<Option<Vec<String>>, Halt> {
        let id = planned.id.as_str();
        let ws = self.parts.workspace;
        let tree = ws.tree_of(base).map_err(|e| self.workspace_halt(id, "reading the base's tree", e))?;
        let _one_at_a_time = self.parts.baseline.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = self.handle().view().baselines.get(&tree) {
            return Ok(known.clone());
        }
        let short: String = tree.chars().take(12).collect();
        let run_id = self.handle().view().run_id.clone();
        let scratch = self.parts.verify.scratch_root.join(sanitize(&run_id)).join(format!("base-{short}"));
        ws.add_scratch(&scratch, base).map_err(|e| self.workspace_halt(id, "checking out the base", e))?;
        let logs =
            Logs { root: self.parts.verify.logs_root.clone(), dir: dir.to_path_buf(), label: format!("base-{short}") };
        let result = self.baseline_in(id, spec, commands, &scratch, &logs);
        let removed = ws.remove_scratch(&scratch);
        // The run's scratch dir goes too once empty (an error just means it is not).
        if let Some(run_dir) = scratch.parent() {
            let _ = std::fs::remove_dir(run_dir);
        }
        let (failing, unusable) = result?;
        removed.map_err(|e| self.workspace_halt(id, "removing the base's checkout", e))?;
        let fact = Fact::BaselineChecked {
            base: base.to_string(),
            tree,
            failing: failing.clone(),
            unusable: unusable.clone(),
        };
        self.audit(id, fact, None)?;
        Ok(unusable.is_none().then_some(failing))
    }

    fn baseline_in(
        &self,
        id: &str,
        spec: &VerifySpec,
        commands: &[String],
        scratch: &Path,
        logs: &Logs,
    ) -> Result<(Vec<String>, Option<String>), Halt> {
        let timeout = timeout_of(spec);
        if !spec.setup.is_empty() && !self.parts.verify.skip_setup {
            let runs = self.setup_runs(id, spec, scratch, logs)?;
            let failed = runs.iter().find(|r| !r.passed()).map(|r| format!("setup `{}` {}", r.command, r.status()));
            for run in runs {
                self.audit(id, Fact::CheckRan(CheckRun { kind: CheckKind::Baseline, ..run }), None)?;
            }
            if let Some(why) = failed {
                return Ok((Vec::new(), Some(why)));
            }
        }
        let mut failing = Vec::new();
        for (n, line) in commands.iter().enumerate() {
            let run = self.run_one(id, scratch, line, CheckKind::Baseline, logs, n, timeout)?;
            if !run.passed() {
                failing.push(line.clone());
            }
            self.audit(id, Fact::CheckRan(run), None)?;
        }
        Ok((failing, None))
    }
}

fn timeout_of(spec: &VerifySpec) -> Duration {
    Duration::from_secs(if spec.timeout_secs == 0 { verify::DEFAULT_TIMEOUT_SECS } else { spec.timeout_secs })
}

fn lockfile_names(spec: &VerifySpec) -> Vec<String> {
    if spec.lockfiles.is_empty() {
        verify::DEFAULT_LOCKFILES.iter().map(|s| s.to_string()).collect()
    } else {
        spec.lockfiles.clone()
    }
}
