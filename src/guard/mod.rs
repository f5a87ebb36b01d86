//! Guardrails around agent phases, in layers (README "Safety"):
//! prevent (the agent's sandbox, settings in [`SandboxSettings`]), detect (snapshots before and
//! after every phase, [`snapshot`]), intercept (git/gt shims and the Claude Code hook, both
//! running the pure classifier in [`policy`]).
//!
//! Invariants:
//! - Every guard decision is journaled as an issue event; nothing is reverted silently.
//! - The engine calls this module at two points per phase ([`Guard::before_phase`],
//!   [`Guard::after_phase`]) and never interprets snapshots itself.

pub mod policy;
pub mod shim;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::journal::view::RunView;
use crate::journal::PlannedIssue;
use crate::machine::{Event, Phase};
use crate::stack::{Gt, StackMode};

/// The `[guard]` table of `loop.toml`; every field has a default, so an empty table (or none)
/// is the default policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Run the before/after phase checks (the detection layer).
    pub checks: bool,
    /// Start phases even when the main checkout has uncommitted changes (recorded).
    pub allow_dirty: bool,
    /// Put git/gt shims on the agent's PATH through a loop-owned HOME.
    pub shims: bool,
    /// Extra allowed command prefixes, e.g. `"gt submit"`; checked after `deny`.
    pub allow: Vec<String>,
    /// Extra refused command prefixes, e.g. `"git stash drop"`; checked first.
    pub deny: Vec<String>,
    pub sandbox: SandboxSettings,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            checks: true,
            allow_dirty: false,
            shims: true,
            allow: Vec::new(),
            deny: Vec::new(),
            sandbox: SandboxSettings::default(),
        }
    }
}

/// What the codex driver passes to `codex exec` (the prevention layer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Sandbox of dev and fix phases.
    pub work: String,
    /// Sandbox of review phases.
    pub review: String,
    /// `sandbox_workspace_write.exclude_slash_tmp`: /tmp is otherwise writable, and repos
    /// under /tmp would be wide open.
    pub exclude_slash_tmp: bool,
    /// `sandbox_workspace_write.exclude_tmpdir_env_var`: the same for $TMPDIR.
    pub exclude_tmpdir_env_var: bool,
    pub network_access: bool,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            work: "workspace-write".into(),
            review: "read-only".into(),
            exclude_slash_tmp: true,
            exclude_tmpdir_env_var: true,
            network_access: false,
        }
    }
}

impl SandboxSettings {
    /// The settings a run's agent really uses: dev and fix share `work` (the more open of the
    /// two, so the warning errs loud), review has its own.
    pub fn from_modes(dev: &str, fix: &str, review: &str) -> SandboxSettings {
        let rank = |m: &str| match m {
            "read-only" => 0,
            "workspace-write" => 1,
            _ => 2,
        };
        let work = if rank(fix) > rank(dev) { fix } else { dev };
        SandboxSettings { work: work.into(), review: review.into(), ..Default::default() }
    }

    /// A loud warning when no sandbox protects the repository (only detection holds then).
    pub fn warning(&self) -> Option<String> {
        let open = [&self.work, &self.review].into_iter().any(|m| m == "danger-full-access");
        open.then(|| {
            "WARNING: sandbox = \"danger-full-access\": the agent can change anything; only loop's \
             before/after-phase checks (refs, worktrees, Graphite metadata, checkouts) will catch it, \
             after the fact"
                .to_string()
        })
    }
}

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

/// The guard settings a run was started with, journaled in `run_started` so resume guards
/// the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardSpec {
    pub config: GuardConfig,
    pub stack: StackMode,
    pub submit: crate::stack::SubmitMode,
    /// The run's log dir (shim homes, decision files).
    pub logs: String,
}

impl GuardSpec {
    /// One line for `--dry-run`: what will be checked, intercepted and sandboxed.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let on = |b: bool| if b { "on" } else { "off" };
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ") };
        let mut line = format!(
            "guard: checks {}, shims {}, allow_dirty {}; sandbox dev/fix {}, review {}; allow {}; deny {}; stack {}",
            on(c.checks),
            on(c.shims),
            on(c.allow_dirty),
            c.sandbox.work,
            c.sandbox.review,
            list(&c.allow),
            list(&c.deny),
            match self.stack {
                StackMode::None => "none",
                StackMode::Graphite => "graphite",
            }
        );
        if self.submit == crate::stack::SubmitMode::Draft {
            line.push_str(", submit draft");
        }
        if let Some(w) = c.sandbox.warning() {
            line.push_str(&format!("\n{w}"));
        }
        line
    }
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
}

/// What `before_phase` found.
pub struct Before {
    /// Journal this (it is `guard_checked`, ok or not).
    pub event: Event,
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
        let gt = (stack == StackMode::Graphite).then(|| Gt::from_env(timeout));
        let submit = crate::stack::SubmitMode::Never;
        let common = snapshot::common_dir(repo, timeout).ok();
        Guard { cfg, repo: repo.to_path_buf(), logs: logs.to_path_buf(), trunk, stack, submit, gt, timeout, siblings: Vec::new(), common }
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
    pub fn before_phase(&self, planned: &PlannedIssue, worktree: &Path, phase: Phase, view: &RunView) -> Before {
        let mut details = Vec::new();
        let mut ok = true;
        if !self.cfg.checks {
            let event = Event::GuardChecked { phase, ok, details: vec!["guard checks off (--no-guard)".into()] };
            return Before { event, snapshot: None, env: Vec::new(), relay: None };
        }
        let siblings = self.siblings_of(planned);
        let own = snapshot::Own::new(&planned.branch, worktree, &siblings);
        let snap = snapshot::take(&self.repo, self.gt.as_ref(), self.timeout, &own, self.common.as_deref());
        // The snapshot holds the main checkout's status already: one `git status` of a large
        // checkout, not two.
        let main = match &snap {
            Ok(s) if s.status.contains_key(&s.main) => Ok(s.status[&s.main].clone()),
            _ => snapshot::main_status(&self.repo, self.timeout),
        };
        match main {
            Ok(lines) if lines.is_empty() => details.push("main checkout clean".to_string()),
            Ok(lines) if self.cfg.allow_dirty => {
                details.push(format!("main checkout has {} change(s); allowed by allow_dirty (--allow-dirty or loop.toml [guard])", lines.len()))
            }
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
                        details.push(format!("worktree {} has {on}, expected branch {}", worktree.display(), planned.branch));
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
            match self.prepare_shims(planned, view, snap.as_ref().ok()) {
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
        Before { event: Event::GuardChecked { phase, ok, details }, snapshot, env, relay }
    }

    /// The other issues of a concurrent run (see [`Guard::siblings`]).
    fn siblings_of(&self, planned: &PlannedIssue) -> Vec<(String, String)> {
        self.siblings.iter().filter(|(b, _)| *b != planned.branch).cloned().collect()
    }

    /// The issue's stack: its branch and the branches of every issue it depends on.
    pub fn stack_of(planned: &PlannedIssue, view: &RunView) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo: Vec<&str> = planned.blocked_by.iter().map(String::as_str).collect();
        while let Some(dep) = todo.pop() {
            if let Some(p) = view.start.issues.iter().find(|p| p.id == dep) {
                if !out.contains(&p.branch) {
                    out.push(p.branch.clone());
                    todo.extend(p.blocked_by.iter().map(String::as_str));
                }
            }
        }
        out
    }

    /// The policy context of one issue, without the (per-invocation) current branch.
    pub fn policy_context(&self, planned: &PlannedIssue, view: &RunView, snap: Option<&snapshot::Snapshot>) -> policy::PolicyContext {
        let aliases = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".config/graphite/aliases"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| policy::parse_gt_aliases(&t))
            .unwrap_or_else(policy::default_gt_aliases);
        policy::PolicyContext {
            branch: planned.branch.clone(),
            stack: Self::stack_of(planned, view),
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
        view: &RunView,
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
            issue: planned.id.clone(),
            real_git,
            real_gt,
            bin_dir,
            decisions: file.clone(),
            fifo: Some(fifo.clone()),
            policy: self.policy_context(planned, view, snap),
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

    /// `--stack graphite`: track the new branch on its dependency's branch (or trunk).
    pub fn after_worktree_created(&self, planned: &PlannedIssue, view: &RunView) -> Option<Event> {
        let gt = self.gt.as_ref()?;
        let parent = match planned.blocked_by.as_slice() {
            [dep] => view.start.issues.iter().find(|p| &p.id == dep).map(|p| p.branch.clone()),
            _ => None,
        }
        .unwrap_or_else(|| self.trunk.clone());
        let wt = view.issue(&planned.id).and_then(|i| i.worktree.as_ref()).map(|w| PathBuf::from(&w.path))?;
        let result = gt.ensure_init(&self.repo, &self.trunk).and_then(|_| gt.track(&wt, &parent));
        Some(Event::StackTracked { parent, error: result.err().map(|e| e.to_string()) })
    }

    /// `--stack graphite`: the agent's work is committed through gt (`gt modify --commit
    /// --all`); None without a stack, when loop commits with git itself.
    pub fn stack_commit(
        &self,
        worktree: &Path,
        message: &str,
        date: Option<&str>,
        ws: &dyn crate::workspace::Workspace,
    ) -> Option<Result<Option<String>, crate::workspace::WorkspaceError>> {
        let gt = self.gt.as_ref()?;
        Some(ws.has_identity(worktree).and_then(|id| gt.commit_all(worktree, message, date, id)))
    }

    /// `--submit draft` at Done.
    pub fn at_done(&self, _planned: &PlannedIssue, worktree: &Path) -> Option<Event> {
        if self.submit != crate::stack::SubmitMode::Draft {
            return None;
        }
        let gt = self.gt.as_ref()?;
        Some(match gt.submit_draft(worktree) {
            Ok(out) => Event::StackSubmitted { ok: true, detail: out.lines().last().unwrap_or("").trim().to_string() },
            Err(e) => Event::StackSubmitted { ok: false, detail: e.to_string() },
        })
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
    ) -> (Vec<Event>, Option<Event>) {
        if let Some(r) = relay {
            r.finish();
        }
        let decisions = shim::take_decisions(&self.decisions_file(&planned.id), phase);
        let siblings = self.siblings_of(planned);
        let own = snapshot::Own::new(&planned.branch, worktree, &siblings);
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
        let c = GuardArgs { allow_dirty: true, ..Default::default() }.spec(&file, SandboxSettings::default(), logs).config;
        assert!(c.checks && c.allow_dirty && !c.shims);
        assert_eq!((c.allow.as_slice(), c.deny.as_slice()), (&file.allow[..], &file.deny[..]));
        let c = GuardArgs { no_guard: true, ..Default::default() }.spec(&file, SandboxSettings::default(), logs).config;
        assert!(!c.checks && !c.shims);
        let d = GuardArgs::default().spec(&Default::default(), SandboxSettings::default(), logs).config;
        assert_eq!(d, GuardConfig::default());
    }
}
