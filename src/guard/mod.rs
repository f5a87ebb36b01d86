//! Guardrails around agent phases, in layers (README "Safety"):
//! prevent (the agent's sandbox, settings in [`SandboxSettings`]), detect (snapshots before and
//! after every phase, [`snapshot`]), intercept (git/gt shims and the Claude Code hook, both
//! running the pure classifier in [`policy`]).
//!
//! Invariants:
//! - Every guard decision is journaled as an issue event; nothing is reverted silently.
//! - The engine calls this module at two points per phase ([`Guard::before_phase`],
//!   [`Guard::after_phase`], through its hooks) and never interprets snapshots itself.
//! - Graphite stacking is not the guard's job: [`Guard::stack`] hands it to [`crate::stack`].

pub mod policy;
pub mod shim;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::machine::Entry;
use crate::machine::{Event, Phase};
use crate::stack::{Gt, StackMode};
use crate::vocab::Fact;
use crate::vocab::PlannedIssue;
pub use crate::vocab::{GuardConfig, GuardSpec, SandboxSettings};

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Fs(#[from] crate::safefs::SafeFsError),
}

pub fn io(path: &Path) -> impl Fn(std::io::Error) -> GuardError + '_ {
    move |source| GuardError::Io { path: path.display().to_string(), source }
}

/// The guard flags of `loop run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GuardArgs {
    /// Start phases even if the main checkout has uncommitted changes (recorded in the journal).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Make each issue's branch a Graphite stack on its dependency's branch (needs `gt`,
    /// LOOP_GT_BIN overrides which).
    #[arg(long, value_enum, default_value_t = StackMode::None)]
    pub stack: StackMode,
    /// Submit each Done issue's stack as draft PRs (`gt submit --draft`); needs --stack graphite.
    #[arg(long, value_enum, default_value_t = crate::stack::SubmitMode::Never, requires = "stack")]
    pub submit: crate::stack::SubmitMode,
    /// Turn off the before/after-phase checks and the shims (the sandbox still applies).
    #[arg(long)]
    pub no_guard: bool,
}

impl GuardArgs {
    /// The run's guard: loop.toml's `[guard]` first, these flags over it. `logs` is the run's
    /// log dir (known once the run id is).
    pub fn spec(&self, file: &crate::config::GuardTable, sandbox: SandboxSettings, logs: &Path) -> GuardSpec {
        let d = GuardConfig::default();
        let mut config = GuardConfig {
            checks: file.checks.unwrap_or(d.checks),
            allow_dirty: self.allow_dirty || file.allow_dirty.unwrap_or(d.allow_dirty),
            shims: file.shims.unwrap_or(d.shims),
            allow: file.allow.clone(),
            deny: file.deny.clone(),
            sandbox,
        };
        if self.no_guard {
            config.checks = false;
            config.shims = false;
        }
        GuardSpec { config, stack: self.stack, submit: self.submit, logs: logs.display().to_string() }
    }
}

/// What the engine needs to guard one run.
pub struct Guard {
    pub cfg: GuardConfig,
    pub repo: PathBuf,
    /// The run's log dir: shim homes and decision files live under `guard/`.
    pub logs: PathBuf,
    pub trunk: String,
    pub stack: StackMode,
    pub submit: crate::stack::SubmitMode,
    pub gt: Option<Gt>,
    pub timeout: Duration,
    /// `(branch, worktree)` of every issue in the run when issues run concurrently; empty with
    /// `--jobs 1`, where any change to another issue's branch or worktree is a violation.
    pub siblings: Vec<(String, String)>,
    /// The repository's common git dir, asked once (None: each snapshot asks git).
    pub common: Option<PathBuf>,
    /// Where loop's verification makes scratch worktrees while issues run concurrently (set
    /// with `siblings`): they come and go during other issues' phases by design.
    pub scratch: Option<PathBuf>,
}

/// What `before_phase` found.
pub struct Before {
    /// Journal this: a passed check is an audit fact, a failed one fails the phase.
    pub entry: Entry,
    /// Compare against this after the phase; `None` when the check failed.
    pub snapshot: Option<snapshot::Snapshot>,
    /// The agent's environment for the shims (empty without shims).
    pub env: Vec<(String, String)>,
    /// Relays the shims' decisions while the phase runs; hand it back to [`Guard::after_phase`].
    pub relay: Option<shim::Relay>,
}

impl Guard {
    pub fn new(repo: &Path, logs: &Path, cfg: GuardConfig, stack: StackMode) -> Guard {
        let timeout = Duration::from_secs(60);
        let trunk = snapshot::current_branch(repo, timeout).unwrap_or_else(|| "main".into());
        // gt is a node CLI that runs git itself: on a loaded machine one call has been seen to take
        // most of a minute, so it gets more room than loop's own git reads (LOOP_GT_TIMEOUT_SECS).
        let gt = (stack == StackMode::Graphite).then(|| Gt::from_env(Duration::from_secs(300)));
        let submit = crate::stack::SubmitMode::Never;
        let common = snapshot::common_dir(repo, timeout).ok();
        Guard {
            cfg,
            repo: repo.to_path_buf(),
            logs: logs.to_path_buf(),
            trunk,
            stack,
            submit,
            gt,
            timeout,
            siblings: Vec::new(),
            common,
            scratch: None,
        }
    }

    /// The guard of a journaled run (None when its checks are off).
    pub fn from_spec(spec: &GuardSpec, repo: &Path) -> Option<Guard> {
        if !spec.config.checks && spec.stack == StackMode::None {
            return None;
        }
        let mut g = Guard::new(repo, Path::new(&spec.logs), spec.config.clone(), spec.stack);
        g.submit = spec.submit;
        Some(g)
    }

    /// The decisions file the shims of this issue append to.
    pub fn decisions_file(&self, issue: &str) -> PathBuf {
        self.logs.join("guard").join(crate::workspace::sanitize(issue)).join("decisions.jsonl")
    }

    /// Before a phase: the main checkout is clean (or `allow_dirty`, recorded), the worktree
    /// exists, is registered to this repository and is on the issue's branch.
    /// `issues`: the run's issues in plan order (for the issue's stack of branches).
    pub fn before_phase(
        &self,
        planned: &PlannedIssue,
        worktree: &Path,
        phase: Phase,
        issues: &[PlannedIssue],
    ) -> Before {
        let mut details = Vec::new();
        let mut ok = true;
        if !self.cfg.checks {
            let entry =
                Entry::Audit(Fact::GuardChecked { phase, details: vec!["guard checks off (--no-guard)".into()] });
            return Before { entry, snapshot: None, env: Vec::new(), relay: None };
        }
        let siblings = self.siblings_of(planned);
        let own = snapshot::Own::new(&planned.branch, worktree, &siblings).with_scratch(self.scratch.as_deref());
        let snap = snapshot::take(&self.repo, self.gt.as_ref(), self.timeout, &own, self.common.as_deref());
        // The snapshot holds the main checkout's status already: one `git status` of a large
        // checkout, not two.
        let main = match &snap {
            Ok(s) if s.status.contains_key(&s.main) => Ok(s.status[&s.main].clone()),
            _ => snapshot::main_status(&self.repo, self.timeout),
        };
        match main {
            Ok(lines) if lines.is_empty() => details.push("main checkout clean".to_string()),
            Ok(lines) if self.cfg.allow_dirty => details.push(format!(
                "main checkout has {} change(s); allowed by allow_dirty (--allow-dirty or loop.toml [guard])",
                lines.len()
            )),
            Ok(lines) => {
                ok = false;
                details.push(format!(
                    "main checkout is not clean ({}); commit or stash, or pass --allow-dirty",
                    lines.iter().take(5).map(|l| l.trim()).collect::<Vec<_>>().join(", ")
                ));
            }
            Err(e) => {
                ok = false;
                details.push(format!("main checkout status: {e}"));
            }
        }
        match &snap {
            Ok(s) => {
                let wt = std::fs::canonicalize(worktree).unwrap_or_else(|_| worktree.to_path_buf());
                match s.worktrees.get(&wt.display().to_string()) {
                    None => {
                        ok = false;
                        details.push(format!("worktree {} is missing or not registered", worktree.display()));
                    }
                    Some(on) if *on != format!("branch {}", planned.branch) => {
                        ok = false;
                        details.push(format!(
                            "worktree {} has {on}, expected branch {}",
                            worktree.display(),
                            planned.branch
                        ));
                    }
                    Some(_) => details.push(format!("worktree on {}", planned.branch)),
                }
                if let Some(w) = self.cfg.sandbox.warning() {
                    details.push(w);
                }
            }
            Err(e) => {
                ok = false;
                details.push(format!("snapshot: {e}"));
            }
        }
        let mut env = Vec::new();
        let mut relay = None;
        if ok && self.cfg.shims {
            match self.prepare_shims(planned, issues, snap.as_ref().ok()) {
                Ok((s, r)) => {
                    details.push(format!("shims in {} (HOME {})", s.bin_dir.display(), s.home.display()));
                    env = s.env;
                    match r {
                        Ok(r) => relay = Some(r),
                        Err(e) => details.push(format!(
                            "no decisions FIFO ({e}): decisions made inside a sandbox will not be journaled"
                        )),
                    }
                }
                Err(e) => {
                    ok = false;
                    details.push(format!("shims: {e}"));
                }
            }
        }
        let snapshot = if ok { snap.ok() } else { None };
        let entry = match ok {
            true => Entry::Audit(Fact::GuardChecked { phase, details }),
            false => Entry::Machine(Event::GuardCheckFailed { phase, details }),
        };
        Before { entry, snapshot, env, relay }
    }

    /// The other issues of a concurrent run (see [`Guard::siblings`]).
    fn siblings_of(&self, planned: &PlannedIssue) -> Vec<(String, String)> {
        self.siblings.iter().filter(|(b, _)| b != planned.branch.as_str()).cloned().collect()
    }

    /// The issue's stack: its branch and the branches of every issue it depends on.
    pub fn stack_of(planned: &PlannedIssue, issues: &[PlannedIssue]) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo: Vec<&str> = planned.blocked_by.iter().map(crate::vocab::IssueId::as_str).collect();
        while let Some(dep) = todo.pop() {
            if let Some(p) = issues.iter().find(|p| p.id == dep) {
                if !out.iter().any(|b| p.branch == *b) {
                    out.push(p.branch.to_string());
                    todo.extend(p.blocked_by.iter().map(crate::vocab::IssueId::as_str));
                }
            }
        }
        out
    }

    /// The policy context of one issue, without the (per-invocation) current branch.
    pub fn policy_context(
        &self,
        planned: &PlannedIssue,
        issues: &[PlannedIssue],
        snap: Option<&snapshot::Snapshot>,
    ) -> policy::PolicyContext {
        let aliases = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".config/graphite/aliases"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| policy::parse_gt_aliases(&t))
            .unwrap_or_else(policy::default_gt_aliases);
        policy::PolicyContext {
            branch: planned.branch.to_string(),
            stack: Self::stack_of(planned, issues),
            trunk: self.trunk.clone(),
            current_branch: None,
            branches: snap
                .map(|s| s.refs.keys().filter_map(|r| r.strip_prefix("refs/heads/")).map(String::from).collect())
                .unwrap_or_default(),
            gt_aliases: aliases,
        }
    }

    fn prepare_shims(
        &self,
        planned: &PlannedIssue,
        issues: &[PlannedIssue],
        snap: Option<&snapshot::Snapshot>,
    ) -> Result<(shim::ShimEnv, Result<shim::Relay, GuardError>), GuardError> {
        let file = self.decisions_file(&planned.id);
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| self.logs.clone());
        let fifo = dir.join("decisions.fifo");
        let bin_dir = dir.join("bin");
        let real_git = shim::which("git", Some(&bin_dir)).unwrap_or_else(|| PathBuf::from("/usr/bin/git"));
        let real_gt = match &self.gt {
            Some(g) if g.bin.is_absolute() => Some(g.bin.clone()),
            Some(g) => shim::which(&g.bin.display().to_string(), Some(&bin_dir)),
            None => shim::which("gt", Some(&bin_dir)),
        };
        let ctx = shim::ShimContext {
            issue: planned.id.to_string(),
            real_git,
            real_gt,
            bin_dir,
            decisions: file.clone(),
            fifo: Some(fifo.clone()),
            policy: self.policy_context(planned, issues, snap),
            config: self.cfg.clone(),
        };
        let exe = std::env::current_exe().map_err(io(Path::new("current_exe")))?;
        std::fs::create_dir_all(&self.logs).map_err(io(&self.logs))?;
        crate::safefs::open_dir(&self.logs, dir.strip_prefix(&self.logs).unwrap_or(&dir), true)?;
        let user_home = std::env::var_os("HOME").map(PathBuf::from);
        let env = shim::prepare(&dir, ctx, &exe, user_home.as_deref())?;
        // Without a FIFO (a file system that has none) the shims still work; their decisions
        // then only reach the journal when they can write the decisions file themselves.
        Ok((env, shim::Relay::start(&fifo, &file)))
    }

    /// The run's Graphite stack (`--stack graphite`), which the engine drives through its own
    /// hooks; the guard keeps `gt` only to snapshot Graphite's metadata.
    pub fn stack(&self) -> Option<crate::stack::Stack> {
        let gt = self.gt.clone()?;
        Some(crate::stack::Stack { gt, repo: self.repo.clone(), trunk: self.trunk.clone(), submit: self.submit })
    }

    /// After a phase: the shims' decisions (to journal first), then a `guard_violation` if
    /// anything outside the issue's branch and worktree changed.
    pub fn after_phase(
        &self,
        planned: &PlannedIssue,
        worktree: &Path,
        phase: Phase,
        before: &snapshot::Snapshot,
        relay: Option<shim::Relay>,
    ) -> (Vec<Fact>, Option<Event>) {
        if let Some(r) = relay {
            r.finish();
        }
        let decisions = shim::take_decisions(&self.decisions_file(&planned.id), phase);
        let siblings = self.siblings_of(planned);
        let own = snapshot::Own::new(&planned.branch, worktree, &siblings).with_scratch(self.scratch.as_deref());
        let violation = match snapshot::take(&self.repo, self.gt.as_ref(), self.timeout, &own, self.common.as_deref()) {
            Ok(after) => {
                let changes = snapshot::foreign_changes(before, &after, &own);
                (!changes.is_empty()).then_some(Event::GuardViolation { phase, changes })
            }
            Err(e) => Some(Event::GuardViolation { phase, changes: vec![format!("after-phase snapshot failed: {e}")] }),
        };
        (decisions, violation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_access_in_any_phase_warns() {
        let safe = SandboxSettings::from_modes("workspace-write", "workspace-write", "read-only");
        assert_eq!((safe.work.as_str(), safe.review.as_str()), ("workspace-write", "read-only"));
        assert!(safe.warning().is_none());
        for (dev, fix, review) in [
            ("danger-full-access", "workspace-write", "read-only"),
            ("workspace-write", "danger-full-access", "read-only"),
            ("read-only", "read-only", "danger-full-access"),
        ] {
            let s = SandboxSettings::from_modes(dev, fix, review);
            assert!(s.warning().unwrap().contains("danger-full-access"), "{dev} {fix} {review}");
        }
    }

    #[test]
    fn flags_override_the_guard_table() {
        let file = crate::config::GuardTable {
            checks: Some(true),
            allow_dirty: Some(false),
            shims: Some(false),
            allow: vec!["gt submit --stack".into()],
            deny: vec!["git stash drop".into()],
        };
        let logs = Path::new("/l");
        let c =
            GuardArgs { allow_dirty: true, ..Default::default() }.spec(&file, SandboxSettings::default(), logs).config;
        assert!(c.checks && c.allow_dirty && !c.shims);
        assert_eq!((c.allow.as_slice(), c.deny.as_slice()), (&file.allow[..], &file.deny[..]));
        let c = GuardArgs { no_guard: true, ..Default::default() }.spec(&file, SandboxSettings::default(), logs).config;
        assert!(!c.checks && !c.shims);
        let d = GuardArgs::default().spec(&Default::default(), SandboxSettings::default(), logs).config;
        assert_eq!(d, GuardConfig::default());
    }
}
