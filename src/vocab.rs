//! The vocabulary floor: the run's inputs and the types every layer shares (the rules, the planned
//! issues, the agent and guard specs, token counts, and newtypes for ids and branch names).
//!
//! Invariants:
//! - This module imports nothing of the crate, so every other module may depend on it and it can
//!   never be part of an import cycle (`tests/layers.rs` checks the crate's arrows).
//! - Everything here is plain data with serde derives; these types are journaled inside
//!   `run_started`, so a change to their encoding is a journal format change.

use serde::{Deserialize, Serialize};

/// How many fix cycles an issue may use before it ends `Capped`.
pub const DEFAULT_MAX_FIX_CYCLES: u32 = 2;

/// The rules a run was started with; recorded in the journal so replay uses the same ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub max_fix_cycles: u32,
    /// Whether loop verifies this issue's work (it has verification commands) before review. Not
    /// recorded: derived per issue from the recorded run start ([`RunStart::rules_for`]).
    #[serde(skip)]
    pub verify: bool,
}

impl Rules {
    pub fn with_max_fix_cycles(max_fix_cycles: u32) -> Rules {
        Rules { max_fix_cycles, ..Rules::default() }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules { max_fix_cycles: DEFAULT_MAX_FIX_CYCLES, verify: false }
    }
}

/// The `[verify]` table of `loop.toml`: loop's own checks of an issue's work. The command lines
/// are the user's own and run with `sh -c`, as CI systems run theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySpec {
    /// Checks run after dev and after each fix, in every issue's worktree.
    pub commands: Vec<String>,
    /// Installs run once per worktree before the checks (skipped when the lockfiles match a
    /// setup that passed in this run).
    pub setup: Vec<String>,
    /// Seconds one command may run (0: the default).
    #[serde(alias = "timeout")]
    pub timeout_secs: u64,
    /// Files whose hash decides whether setup must run again (empty: the usual lockfiles).
    pub lockfiles: Vec<String>,
    /// A check that fails on the issue's base commit too counts against the issue (default:
    /// it is reported as pre-existing and does not).
    pub count_preexisting: bool,
}

/// The run's fixed inputs, recorded once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStart {
    pub tool_version: String,
    pub milestone: String,
    pub repo: String,
    /// The commit issues without dependencies branch from.
    pub base_commit: String,
    pub rules: Rules,
    pub agent: AgentSpec,
    pub phase_timeout_secs: u64,
    /// Tokens one issue may use before it ends Capped.
    pub max_tokens_per_issue: Option<u64>,
    /// loop appends each review to the milestone's review doc (absent in older journals: off).
    #[serde(default)]
    pub review_doc: bool,
    /// Issues in plan order.
    pub issues: Vec<PlannedIssue>,
    /// Guardrails (absent in journals written before they existed: no guard).
    #[serde(default)]
    pub guard: Option<GuardSpec>,
    /// loop's own checks for every issue (absent in older journals: none).
    #[serde(default)]
    pub verify: VerifySpec,
    /// What earlier runs of the milestone leave to this one (absent in older journals: nothing).
    /// Boxed: `run_started` is the one large record, and most runs have nothing here.
    #[serde(default)]
    pub earlier: Box<EarlierRuns>,
    /// Stall timeout and transient-error retries (absent in older journals: neither, as then).
    /// Boxed like `earlier`, to keep `run_started` from growing every record's size.
    #[serde(default)]
    pub resilience: Box<Resilience>,
    /// The backend of each phase, the price table and the cost budgets (#13). Absent in older
    /// journals and in runs that set none of them: every phase runs `agent`, costs are only
    /// what the agents report, no cost budget. One optional field, written only when set, so a
    /// run without it encodes exactly as before (positional msgpack: only the last field may
    /// be left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<Box<SpendSpec>>,
}

/// How a run survives an agent that goes quiet or an API that blips (README "When the agent
/// stalls or the API blips"). Recorded in `run_started`, so `resume` keeps the same.
/// Milliseconds, so tests can run with short waits; loop.toml takes seconds (fractions allowed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resilience {
    /// A phase whose agent prints no event this long is killed as stalled (0: never).
    pub stall_timeout_ms: u64,
    /// How many times a phase is retried after a transient error or a stall (0: never).
    pub retries: u32,
    /// The wait before retry n (0-based) is min(cap, base × 2ⁿ).
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
}

impl Resilience {
    pub const DEFAULT_STALL_TIMEOUT_SECS: u64 = 300;
    pub const DEFAULT_RETRIES: u32 = 4;
    pub const DEFAULT_RETRY_BASE_SECS: u64 = 10;
    pub const DEFAULT_RETRY_CAP_SECS: u64 = 300;

    /// What a new run gets when nothing says otherwise.
    pub fn defaults() -> Resilience {
        Resilience {
            stall_timeout_ms: Self::DEFAULT_STALL_TIMEOUT_SECS * 1000,
            retries: Self::DEFAULT_RETRIES,
            retry_base_ms: Self::DEFAULT_RETRY_BASE_SECS * 1000,
            retry_cap_ms: Self::DEFAULT_RETRY_CAP_SECS * 1000,
        }
    }

    /// The stall timeout, None when off.
    pub fn stall_timeout(&self) -> Option<std::time::Duration> {
        (self.stall_timeout_ms > 0).then(|| std::time::Duration::from_millis(self.stall_timeout_ms))
    }

    /// The wait before retry `n` (0 for the first retry): min(cap, base × 2ⁿ), never overflowing.
    pub fn delay(&self, n: u32) -> std::time::Duration {
        let factor = 1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX);
        std::time::Duration::from_millis(self.retry_base_ms.saturating_mul(factor).min(self.retry_cap_ms))
    }
}

impl RunStart {
    /// The rules the machine applies to one issue: the run's, plus whether it has checks.
    /// (A linear search: callers that hold an index use [`RunStart::rules_of`].)
    pub fn rules_for(&self, issue: &str) -> Rules {
        match self.issues.iter().find(|p| p.id.as_str() == issue) {
            Some(p) => self.rules_of(p),
            None => self.rules,
        }
    }

    /// The agent that runs `phase`: the recorded per-phase choice, else the run's agent.
    pub fn agent_for(&self, phase: Phase) -> &AgentSpec {
        match self.spend.as_ref().and_then(|s| s.agents.as_ref()) {
            Some(a) => a.get(phase),
            None => &self.agent,
        }
    }

    /// The price table recorded for the run (empty when none was given).
    pub fn prices(&self) -> &Prices {
        static NONE: Prices = Prices::new();
        self.spend.as_ref().map_or(&NONE, |s| &s.prices)
    }

    /// USD one issue may spend (since its last reopen) before it ends Capped.
    pub fn max_cost_usd_per_issue(&self) -> Option<f64> {
        self.spend.as_ref().and_then(|s| s.max_cost_usd_per_issue)
    }

    /// USD the run's issues may spend (each since its last reopen) before no phase starts any more.
    pub fn max_cost_usd_per_run(&self) -> Option<f64> {
        self.spend.as_ref().and_then(|s| s.max_cost_usd_per_run)
    }

    /// The rules for one planned issue of this run.
    pub fn rules_of(&self, planned: &PlannedIssue) -> Rules {
        Rules { verify: !planned.verify.is_empty() || !self.verify.commands.is_empty(), ..self.rules }
    }
}

/// A run's #13 settings: backend per phase, prices, cost budgets (see [`RunStart::spend`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendSpec {
    /// One agent per phase (None: every phase runs the run's `agent`).
    #[serde(default)]
    pub agents: Option<PhaseAgents>,
    /// USD per million tokens by model, to price phases whose agent reports no cost (codex).
    #[serde(default)]
    pub prices: Prices,
    #[serde(default)]
    pub max_cost_usd_per_issue: Option<f64>,
    #[serde(default)]
    pub max_cost_usd_per_run: Option<f64>,
}

impl SpendSpec {
    /// None when nothing is set, so the run start stays as it was before #13.
    pub fn or_none(self) -> Option<Box<SpendSpec>> {
        (self != SpendSpec::default()).then(|| Box::new(self))
    }
}

/// The agent of each phase, as recorded: resume and retry build these, never the current config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseAgents {
    pub dev: AgentSpec,
    pub review: AgentSpec,
    pub fix: AgentSpec,
}

impl PhaseAgents {
    pub fn get(&self, phase: Phase) -> &AgentSpec {
        match phase {
            Phase::Dev => &self.dev,
            Phase::Review => &self.review,
            Phase::Fix => &self.fix,
        }
    }

    /// Whether every phase runs the same agent.
    pub fn uniform(&self) -> bool {
        self.dev == self.review && self.review == self.fix
    }
}

/// Model name → its price.
pub type Prices = std::collections::BTreeMap<String, Price>;

/// What a model costs, in USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    /// Input tokens served from the provider's cache (counted inside `input` by codex).
    pub cached_input: f64,
    pub output: f64,
}

impl Price {
    /// What `tokens` cost at this price. Cached input is part of the input count (as codex and
    /// the OpenAI API report it), so only the uncached rest is charged the full input price;
    /// reasoning tokens are part of the output count.
    pub fn cost_usd(&self, t: &Tokens) -> f64 {
        let cached = t.cached_input.min(t.input);
        let uncached = t.input - cached;
        (uncached as f64 * self.input + cached as f64 * self.cached_input + t.output as f64 * self.output) / 1e6
    }
}

/// Micro-dollars (millionths of a USD): how costs travel in machine events and reasons, which
/// must compare exactly.
pub fn to_micro_usd(usd: f64) -> u64 {
    (usd.max(0.0) * 1e6).round() as u64
}

/// `$1.2345` for a micro-dollar amount (4 decimals: a phase often costs under a cent).
pub fn format_micro_usd(micros: u64) -> String {
    format!("${}.{:04}", micros / 1_000_000, (micros % 1_000_000) / 100)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub kind: String,
    /// The simulated agent's scenario, verbatim, so resume behaves exactly as the first run.
    pub scenario: Option<String>,
    /// The agent's settings as JSON (binary, model, sandbox, overrides), for resume.
    pub settings: Option<String>,
}

impl AgentSpec {
    /// The model the settings name (their `model` key), if any: what its tokens are priced by.
    pub fn model(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.settings.as_deref()?).ok()?;
        v.get("model")?.as_str().map(String::from)
    }

    /// `codex (gpt-5.5)`: for dry runs and the journal.
    pub fn describe(&self) -> String {
        match self.model() {
            Some(m) => format!("{} ({m})", self.kind),
            None => self.kind.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedIssue {
    pub id: IssueId,
    pub title: String,
    /// Path of the issue doc relative to the repo root.
    pub doc: String,
    pub blocked_by: Vec<IssueId>,
    pub branch: BranchName,
    /// Absolute path of the issue's worktree.
    pub worktree: String,
    /// The issue's own verification command lines (front matter `verify`), run before the run's.
    #[serde(default)]
    pub verify: Vec<String>,
}

/// What earlier runs of the milestone leave to a new run (`loop run` computes it from their
/// journals; see `cli::rerun`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierRuns {
    /// Issues Done earlier with their branch still at the recorded tip: journaled
    /// `carried_over` when the run starts, never run again.
    pub carried_over: Vec<CarriedIssue>,
    /// loop's own branches from earlier runs of the milestone: checked out as they are
    /// (`worktree_intent` with `reuse`), never created.
    pub reusable_branches: Vec<String>,
}

/// An issue Done in an earlier run of the milestone whose branch is still where that run left
/// it: the new run records it as Done (`carried_over`) instead of running it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedIssue {
    pub issue: IssueId,
    /// The run that did the work.
    pub run: String,
    /// The branch holding the work.
    pub branch: String,
    /// The commit that run recorded as the branch's tip.
    pub tip: String,
}

/// What one commit changed, as `git commit` sums it up (renames detected; binary files count as
/// changed files with no lines). Journaled with each commit loop makes of an agent's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffStat {
    pub files: u32,
    pub insertions: u64,
    pub deletions: u64,
}

/// Token usage as the agent reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning_output: u64,
}

impl Tokens {
    pub fn total(&self) -> u64 {
        self.input + self.output
    }
}

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

/// The guard settings a run was started with, journaled in `run_started` so resume guards
/// the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardSpec {
    pub config: GuardConfig,
    pub stack: StackMode,
    pub submit: SubmitMode,
    /// The run's log dir (shim homes, decision files).
    pub logs: String,
}

impl GuardSpec {
    /// One line for `--dry-run`: what will be checked, intercepted and sandboxed.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let on = |b: bool| if b { "on" } else { "off" };
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
            }
        };
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
        if self.submit == SubmitMode::Draft {
            line.push_str(", submit draft");
        }
        if let Some(w) = c.sandbox.warning() {
            line.push_str(&format!("\n{w}"));
        }
        line
    }
}

/// How issue branches relate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StackMode {
    /// Plain git branches.
    #[default]
    None,
    /// Graphite stacks via `gt`.
    Graphite,
}

/// When to submit a finished issue's stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SubmitMode {
    #[default]
    Never,
    /// `gt submit --draft --no-interactive` when the issue is Done.
    Draft,
}

/// Turns an issue or milestone id into a safe branch component and directory name.
///
/// Keeps `[A-Za-z0-9._-]`, maps everything else to `-`, never yields `.`/`..`, a leading `-` or
/// `.`, or a `.lock` suffix. When anything had to change, a short hash of the original id is
/// appended, so two ids that had to change never collide. An id that is already safe keeps its
/// name (journals name those branches), so it can equal another id's tamed name (`a b` and
/// `a-b-c95e5a48`); `plan::build` refuses such a pair.
pub fn sanitize(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let trimmed = s.trim_matches(|c| c == '-' || c == '.').to_string();
    let mut out: String = trimmed.chars().take(60).collect();
    if out.ends_with(".lock") {
        out.push('-');
    }
    if out != id || out.is_empty() {
        let h = blake3::hash(id.as_bytes()).to_hex();
        let tag = &h.as_str()[..8];
        out = if out.is_empty() { format!("id-{tag}") } else { format!("{out}-{tag}") };
    }
    out
}

/// The review doc for an issue doc `docs/projects/<project>/issues/X.md`, relative to the repo:
/// `docs/projects/<project>/reviews/<milestone>/<issue>.md` (a sibling `reviews/` of the issue
/// dir). One file per issue: every issue's branch writes only its own, so merging all the Done
/// branches of a milestone, in any order, never conflicts in them. (Before #12 it was one
/// `REVIEW-<milestone>.md` for all; old journals keep that path only as text in their evidence.)
pub fn review_doc_path(issue_doc: &str, milestone: &str, issue: &str) -> String {
    let project_dir = std::path::Path::new(issue_doc)
        .parent()
        .and_then(std::path::Path::parent)
        .filter(|p| !p.as_os_str().is_empty());
    let base = project_dir.map(|p| p.to_path_buf()).unwrap_or_else(|| std::path::Path::new("docs").to_path_buf());
    base.join("reviews").join(sanitize(milestone)).join(format!("{}.md", sanitize(issue))).display().to_string()
}

/// An agent phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Dev,
    Review,
    Fix,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dev => "dev",
            Phase::Review => "review",
            Phase::Fix => "fix",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the journal keeps for the record about an issue without it moving the machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    /// The guard's before-phase check passed (a failed one is the machine event
    /// `GuardCheckFailed`); `details` says what was allowed (`allow_dirty`, checks off).
    GuardChecked { phase: Phase, details: Vec<String> },
    /// A git/gt shim or the Claude Code hook classified a command the agent ran.
    CommandDecided { phase: Phase, tool: String, argv: Vec<String>, allowed: bool, rule: String },
    /// `gt track` of the new worktree's branch onto its parent worked (`--stack graphite`).
    StackTracked { parent: String },
    /// `gt submit --draft` at Done (`--submit draft`); a failure is reported, the issue stays Done.
    StackSubmitted { ok: bool, detail: String },
    /// Ctrl-C, a stop request or loop's own trouble stopped the issue; resume runs the
    /// unfinished step again. The evidence carries the cause and the tokens spent.
    Interrupted,
    /// loop ran one verification command (a setup step, a check, or a check on the base).
    CheckRan(CheckRun),
    /// The checks ran on a base commit (in a loop-owned detached worktree): `failing` are the
    /// commands that fail there already. The run's cache of baselines, keyed by `tree`.
    /// `unusable`: why the base could not be checked (its setup failed…); then no failure
    /// counts as pre-existing.
    BaselineChecked { base: String, tree: String, failing: Vec<String>, unusable: Option<String> },
    /// The setup commands for a worktree whose lockfiles hash to `lockfiles`: `ran` false when
    /// they were skipped (a setup with that hash passed in this run, or `--skip-setup`).
    SetupChecked { lockfiles: String, ran: bool, passed: bool },
    /// The backend about to run a phase (`kind`, and the model when the settings name one);
    /// journaled before each phase of a run that records an agent per phase.
    PhaseAgent { phase: Phase, kind: String, model: Option<String> },
    /// A phase's agent failed with a transient error or stalled, and loop will run it again
    /// after `delay_ms` (journaled before the wait, so `resume` knows how many were used).
    /// `retry` counts from 1; `session` is what the retry continues.
    AgentRetried { phase: Phase, retry: u32, error: String, delay_ms: u64, session: Option<String> },
    /// codex's own harness ran git through the shim for its context (not the agent's decision;
    /// see [`crate::guard::shim::is_harness_git`]): counted, not listed with the agent's commands.
    HarnessCommands { phase: Phase, count: u32, sample: Vec<String> },
}

/// What a verification command was run for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `[verify] setup` (installs), before the checks.
    Setup,
    /// A verification command on the issue's work.
    Check,
    /// A verification command on the issue's base commit (is a failure already there?).
    Baseline,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Setup => "setup",
            CheckKind::Check => "check",
            CheckKind::Baseline => "baseline",
        }
    }
}

/// One verification command as loop ran it (`sh -c COMMAND` in a worktree).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRun {
    pub kind: CheckKind,
    pub command: String,
    /// The exit code, when the command exited.
    pub exit_code: Option<i32>,
    /// Why it did not exit by itself: timed out, killed by a signal, could not start.
    pub failure: Option<String>,
    pub duration_ms: u64,
    /// The last lines of the output (stdout and stderr interleaved), at most a few KiB.
    pub tail: String,
    /// blake3 of the whole output, as kept in `log`.
    pub output_hash: String,
    /// Where the whole output is kept.
    pub log: String,
    /// It fails on the issue's base commit too (reported, and by default not held against the issue).
    pub pre_existing: bool,
}

impl CheckRun {
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.exit_code == Some(0)
    }

    /// How it ended, in a few words: `passed`, `failed (exit code 1)`, `failed (timed out after 5s…)`.
    pub fn status(&self) -> String {
        if self.passed() {
            return "passed".into();
        }
        let how = match (&self.failure, self.exit_code) {
            (Some(f), _) => f.clone(),
            (None, Some(c)) => format!("exit code {c}"),
            (None, None) => "no exit code".into(),
        };
        if self.pre_existing {
            format!("pre-existing failure ({how})")
        } else {
            format!("failed ({how})")
        }
    }
}

impl Fact {
    /// The fact's name in timelines and JSON (the event names format 1 used).
    pub fn name(&self) -> &'static str {
        match self {
            Fact::GuardChecked { .. } => "guard_checked",
            Fact::CommandDecided { .. } => "command_decided",
            Fact::StackTracked { .. } => "stack_tracked",
            Fact::StackSubmitted { .. } => "stack_submitted",
            Fact::Interrupted => "interrupted",
            Fact::CheckRan(_) => "check_ran",
            Fact::BaselineChecked { .. } => "baseline_checked",
            Fact::SetupChecked { .. } => "setup_checked",
            Fact::PhaseAgent { .. } => "phase_agent",
            Fact::AgentRetried { .. } => "agent_retried",
            Fact::HarnessCommands { .. } => "harness_commands",
        }
    }
}

/// Newtypes for the names a run is made of. Each is a `String` on the wire
/// (`#[serde(transparent)]`), so adopting one changes no journal byte; in code they keep an issue
/// id from being passed where a branch name is wanted.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

name_type!(
    /// An issue's id as its doc's front matter gives it (`TC-4`).
    IssueId
);
name_type!(
    /// A run's id: `YYYYMMDD-HHMMSS-xxxxxx`, or the test override.
    RunId
);
name_type!(
    /// A git branch name loop made (`loop/<milestone>/<issue>`), without `refs/heads/`.
    BranchName
);

/// How one Done branch went into a land branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandOutcome {
    /// Merged now (the land branch moved to `commit`).
    Merged { commit: String },
    /// Its work was in the land branch already.
    AlreadyIn,
    /// Merging it conflicted in these files; it was left out, nothing half-merged.
    Conflict { files: Vec<String> },
}

/// One Done issue's branch in a landing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandedBranch {
    pub issue: String,
    pub branch: String,
    pub tip: String,
    pub outcome: LandOutcome,
}

/// `loop land`: the Done branches merged in plan order into a loop-made branch, and loop's checks
/// run on the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landing {
    /// The loop-made branch (`loop/<milestone>/land`).
    pub branch: String,
    /// The branch it started from, and its commit then.
    pub onto: String,
    pub onto_commit: String,
    /// The land branch's tip at the end.
    pub commit: String,
    pub merged: Vec<LandedBranch>,
    /// Setup and checks run on the land branch (none when nothing is configured).
    pub checks: Vec<CheckRun>,
    /// `--stack graphite --submit draft`: the stacks submitted instead of a land branch.
    #[serde(default)]
    pub submitted: Vec<Submission>,
}

/// One `gt submit --stack --draft` of a landing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The stack's top branch.
    pub branch: String,
    pub ok: bool,
    /// What gt said (its error when it failed).
    pub detail: String,
}

impl Landing {
    /// Every Done branch went in.
    pub fn all_merged(&self) -> bool {
        self.merged.iter().all(|m| !matches!(m.outcome, LandOutcome::Conflict { .. }))
    }

    /// Every check passed (vacuously true without checks).
    pub fn verified(&self) -> bool {
        self.checks.iter().all(CheckRun::passed)
    }

    /// Everything went through: every branch merged, every check and submission passed.
    pub fn clean(&self) -> bool {
        self.all_merged() && self.verified() && self.submitted.iter().all(|s| s.ok)
    }
}

/// Set by the Claude Code driver in claude's environment (which its hooks inherit and the model
/// cannot change): the phase the PreToolUse hook judges file edits by (`dev`, `review`, `fix`).
pub const CLAUDE_PHASE_ENV: &str = "LOOP_GUARD_PHASE";
/// Likewise: the worktree the hook keeps file edits inside.
pub const CLAUDE_WORKTREE_ENV: &str = "LOOP_GUARD_WORKTREE";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let r = Resilience::defaults();
        let secs: Vec<u64> = (0..7).map(|n| r.delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
        // Far out, nothing overflows; a zero base never waits.
        assert_eq!(r.delay(200).as_secs(), 300);
        let fast = Resilience { retry_base_ms: 0, ..r };
        assert_eq!(fast.delay(3), std::time::Duration::ZERO);
        let ms = Resilience { retry_base_ms: 50, retry_cap_ms: 150, ..r };
        assert_eq!((0..4).map(|n| ms.delay(n).as_millis()).collect::<Vec<_>>(), [50, 100, 150, 150]);
        assert_eq!(Resilience::default().stall_timeout(), None, "older journals: no stall timeout");
        assert_eq!(r.stall_timeout(), Some(std::time::Duration::from_secs(300)));
    }

    #[test]
    fn names_are_plain_strings_on_the_wire() {
        let id = IssueId::from("TC-4");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"TC-4\"");
        assert_eq!(rmp_serde::to_vec(&id).unwrap(), rmp_serde::to_vec("TC-4").unwrap());
        let back: BranchName = serde_json::from_str("\"loop/M1/TC-4\"").unwrap();
        assert_eq!(back, "loop/M1/TC-4");
        assert_eq!(format!("{id}"), "TC-4");
    }

    #[test]
    fn review_doc_sits_beside_the_issues_dir() {
        assert_eq!(review_doc_path("docs/projects/p/issues/A.md", "M1", "A"), "docs/projects/p/reviews/M1/A.md");
        assert_eq!(
            review_doc_path("A.md", "M 1", "A/../B"),
            format!("docs/reviews/{}/{}.md", sanitize("M 1"), sanitize("A/../B"))
        );
    }
}
