//! `loop.toml` at the repo root: optional settings for runs and the codex and Claude Code agents.
//!
//! Also where a run's settings are resolved: [`resolve_run`] merges the file, the environment
//! ([`EnvSettings`]) and the flags ([`RunFlags`]) into [`RunSettings`].
//!
//! Invariants: every key is optional and unknown keys are errors (a misspelt key must not be
//! silently ignored); errors name the file and line. Precedence is default < file < environment <
//! flag, for every setting, in one function; the merged result is recorded in the journal, so
//! `loop resume` never re-reads this file or the environment for a run's course (its pre-flight
//! reads `[run] min_free_disk_mb` again: that guards the machine, not the run).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::agent::claude::ClaudeSettings;
use crate::agent::codex::{CodexSettings, SANDBOXES};
use crate::machine::Phase;
use crate::vocab::{Rules, SandboxSettings};

pub mod keys;

pub const FILE_NAME: &str = "loop.toml";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub codex: CodexConfig,
    #[serde(default)]
    pub claude: ClaudeConfig,
    #[serde(default)]
    pub prompts: PromptsConfig,
    #[serde(default)]
    pub guard: GuardTable,
    #[serde(default)]
    pub verify: VerifyTable,
    /// `[agents]`: the backend of each phase (README "Mixed backends").
    #[serde(default)]
    pub agents: AgentsTable,
    /// `[prices."MODEL"]`: USD per million tokens, to price phases whose agent reports no cost.
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, PriceTable>,
}

/// `[agents]`: which agent runs each phase; an unset phase runs the run's agent.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentsTable {
    pub dev: Option<String>,
    pub review: Option<String>,
    pub fix: Option<String>,
}

/// One `[prices."MODEL"]` table, USD per million tokens (`cached_input` defaults to `input`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub input: f64,
    pub cached_input: Option<f64>,
    pub output: f64,
}

/// `[verify]`: the commands loop itself runs (`sh -c`) after dev and each fix (README
/// "Verification"). An issue's front matter `verify: [...]` adds its own.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyTable {
    /// Checks, run in order in the worktree; every one must pass (a pre-existing failure aside).
    #[serde(default)]
    pub commands: Vec<String>,
    /// Installs, run once per worktree before the checks (skipped when the lockfiles' hash
    /// matches a setup that passed in this run).
    #[serde(default)]
    pub setup: Vec<String>,
    /// Seconds one command may take (default 600).
    pub timeout: Option<i64>,
    /// Files whose content decides whether setup must run again (default: the usual lockfiles).
    pub lockfiles: Option<Vec<String>>,
    /// A check that fails on the base commit too counts against the issue (default false).
    pub count_preexisting: Option<bool>,
}

/// `[guard]`: the team's command policy (docs in README "Safety"). Flags override it:
/// `--allow-dirty` turns `allow_dirty` on, `--no-guard` turns `checks` and `shims` off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardTable {
    /// Before/after-phase checks (default true).
    pub checks: Option<bool>,
    /// Start phases on a dirty main checkout (default false; recorded when used).
    pub allow_dirty: Option<bool>,
    /// git/gt shims in the agent's login shell (default true).
    pub shims: Option<bool>,
    /// Command prefixes to allow, e.g. `"gt submit --stack"`; checked after `deny`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Command prefixes to refuse, e.g. `"git stash drop"`; checked first.
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seconds one agent phase may take.
    /// Signed like every TOML integer, so a value beyond i64 is a parse error with its line.
    pub phase_timeout: Option<i64>,
    pub max_fix_cycles: Option<u32>,
    pub max_tokens_per_issue: Option<i64>,
    /// Append each review to docs/projects/<project>/reviews/<milestone>/<issue>.md (default true).
    pub review_doc: Option<bool>,
    /// Pre-flight refuses to start a run with less free space (MiB) on the state dir's file
    /// system (default [`crate::preflight::DEFAULT_MIN_FREE_DISK_MB`]; 0 turns the check off).
    pub min_free_disk_mb: Option<u64>,
    /// USD one issue may spend (since its last reopen) before it ends Capped.
    pub max_cost_usd_per_issue: Option<f64>,
    /// USD the run may spend before no issue starts a phase any more.
    pub max_cost_usd_per_run: Option<f64>,
    /// Seconds without an event from the agent before its phase is killed as stalled (default
    /// 300; 0 turns it off; fractions allowed).
    pub stall_timeout_secs: Option<f64>,
    /// Retries of a phase after a transient error or a stall (default 4).
    pub retries: Option<u32>,
    /// The first retry's wait in seconds (default 10); it doubles per retry up to `retry_cap_secs`.
    pub retry_base_secs: Option<f64>,
    /// The longest wait between retries in seconds (default 300).
    pub retry_cap_secs: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodexConfig {
    /// The codex binary (default `codex` on PATH; `LOOP_CODEX_BIN` overrides).
    pub bin: Option<String>,
    pub model: Option<String>,
    /// `codex exec -p PROFILE`.
    pub profile: Option<String>,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Extra `-c key=value` overrides, passed in order.
    #[serde(default)]
    pub config: Vec<String>,
    /// How many times an unusable final message is asked again via `codex exec resume` (default 1).
    pub retries: Option<u32>,
}

/// `[claude]`: the Claude Code agent (README "Claude Code").
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaudeConfig {
    /// The claude binary (default `claude` on PATH; `LOOP_CLAUDE_BIN` overrides).
    pub bin: Option<String>,
    /// `claude --model`.
    pub model: Option<String>,
    /// Extra arguments passed after loop's own, in order (e.g. `["--max-turns", "60"]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// How many times an unusable reply is asked again via `claude --resume` (default 1).
    pub retries: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub dev: Option<String>,
    pub review: Option<String>,
    pub fix: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromptsConfig {
    /// A directory whose `<name>.md` files replace the built-in templates (relative to the repo).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A setting out of range or malformed, from whichever source it came (the message says).
    #[error("{0}")]
    Invalid(String),
}

/// Reads `<repo>/loop.toml`; a missing file is the empty config.
pub fn load(repo: &Path) -> Result<LoopConfig, ConfigError> {
    let path = repo.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LoopConfig::default()),
        Err(source) => Err(ConfigError::Io { path: path.display().to_string(), source }),
    }
}

pub fn parse(text: &str, path: &Path) -> Result<LoopConfig, ConfigError> {
    let cfg: LoopConfig = toml::from_str(text).map_err(|e: toml::de::Error| {
        // An error at the very end (after the last newline) is reported on the last line.
        let last = text.lines().count().max(1);
        let line = e
            .span()
            .map_or(1, |s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1);
        let line = line.min(last);
        // toml's own message repeats the location and quotes the source; keep only its reason.
        ConfigError::Parse { path: path.display().to_string(), line, message: e.message().trim().to_string() }
    })?;
    check_guard(&cfg.guard, text, path)?;
    Ok(cfg)
}

/// A `[guard]` pattern names git or gt and at least one command word: a bare `gt` would
/// allow (or refuse) every Graphite command, which is never what a team means.
fn check_guard(g: &GuardTable, text: &str, path: &Path) -> Result<(), ConfigError> {
    for (key, pats) in [("allow", &g.allow), ("deny", &g.deny)] {
        for pat in pats {
            let words: Vec<&str> = pat.split_whitespace().collect();
            if matches!(words.as_slice(), ["git" | "gt", _, ..]) {
                continue;
            }
            // The line of the first occurrence of the quoted pattern (1 if it cannot be found).
            let line = text
                .lines()
                .position(|l| l.contains(&format!("\"{pat}\"")) || l.contains(&format!("'{pat}'")))
                .map_or(1, |i| i + 1);
            let shown: String = pat.chars().take(80).flat_map(char::escape_default).collect();
            return Err(ConfigError::Parse {
                path: path.display().to_string(),
                line,
                message: format!(
                    "[guard] {key} pattern \"{shown}\" must start with `git` or `gt` and a command, e.g. \"gt submit --stack\""
                ),
            });
        }
    }
    Ok(())
}

/// The longest phase timeout accepted: a deadline must stay representable.
pub const MAX_PHASE_TIMEOUT: u64 = 30 * 24 * 3600;
/// The phase timeout when neither flag nor file sets one.
pub const DEFAULT_PHASE_TIMEOUT: u64 = 1800;
/// Every agent a run can name.
pub const AGENTS: [&str; 3] = ["claude", "codex", "sim"];

/// The settings `loop run` reads from the environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvSettings {
    /// `LOOP_AGENT`.
    pub agent: Option<String>,
    /// `LOOP_CODEX_BIN`.
    pub codex_bin: Option<String>,
    /// `LOOP_CLAUDE_BIN`.
    pub claude_bin: Option<String>,
}

impl EnvSettings {
    /// Reads the process environment (an empty variable counts as unset).
    pub fn from_process() -> EnvSettings {
        EnvSettings::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> EnvSettings {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        EnvSettings { agent: get("LOOP_AGENT"), codex_bin: get("LOOP_CODEX_BIN"), claude_bin: get("LOOP_CLAUDE_BIN") }
    }
}

/// The codex settings given as flags (None or empty: not given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CodexFlags {
    pub bin: Option<String>,
    pub model: Option<String>,
    pub profile: Option<String>,
    /// `PHASE=MODE`, in order.
    pub sandbox: Vec<String>,
    /// `KEY=VALUE`, after the file's.
    pub config: Vec<String>,
    pub retries: Option<u32>,
}

/// The run settings given as flags (None: not given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFlags {
    pub agent: Option<String>,
    /// A scenario file was given: it implies the simulated agent.
    pub sim_scenario: bool,
    pub max_fix_cycles: Option<u32>,
    pub phase_timeout: Option<u64>,
    pub max_tokens_per_issue: Option<u64>,
    pub no_review_doc: bool,
    /// Also read by the claude agent: `model` and `retries`.
    pub codex: CodexFlags,
    /// `--claude-bin`.
    pub claude_bin: Option<String>,
    /// `--agent-for PHASE=KIND`, in order (a later one for the same phase wins).
    pub agent_for: Vec<String>,
    pub max_cost_usd_per_issue: Option<f64>,
    pub max_cost_usd_per_run: Option<f64>,
    /// `--stall-timeout SECS`.
    pub stall_timeout: Option<f64>,
    /// `--agent-retries N`.
    pub retries: Option<u32>,
}

/// A run's settings after the merge, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSettings {
    /// `codex` or `sim`.
    pub agent: String,
    pub rules: Rules,
    pub phase_timeout_secs: u64,
    pub max_tokens_per_issue: Option<u64>,
    pub review_doc: bool,
    /// Present when the agent is codex.
    pub codex: Option<CodexSettings>,
    /// Present when the agent is claude.
    pub claude: Option<ClaudeSettings>,
    /// `[verify]`, checked.
    pub verify: crate::vocab::VerifySpec,
    /// The agent kind of each phase (dev, review, fix); all `agent` unless `[agents]` or
    /// `--agent-for` said otherwise.
    pub phase_agents: [String; 3],
    /// `[prices]`, checked.
    pub prices: crate::vocab::Prices,
    pub max_cost_usd_per_issue: Option<f64>,
    pub max_cost_usd_per_run: Option<f64>,
    /// Stall timeout and retries (`[run]`, `--stall-timeout`, `--retries`).
    pub resilience: crate::vocab::Resilience,
}

impl RunSettings {
    /// The sandbox the agent will really run each phase in, for the guard to record.
    pub fn sandbox(&self) -> SandboxSettings {
        // Each phase's own: codex's sandbox where codex runs it; Claude Code has no OS sandbox,
        // only its permission mode (and reviews without the edit tools); the simulated agent
        // runs in no sandbox at all. The journal says which.
        let claude = format!("claude:{}", crate::agent::claude::PERMISSION_MODE);
        let mode = |phase: Phase| match (&self.codex, self.phase_agent(phase)) {
            (Some(c), "codex") => c.sandbox(phase).to_string(),
            (_, "claude") if phase == Phase::Review => format!("{claude}:no-edit-tools"),
            (_, "claude") => claude.clone(),
            _ => "none".to_string(),
        };
        SandboxSettings::from_modes(&mode(Phase::Dev), &mode(Phase::Fix), &mode(Phase::Review))
    }

    /// The agent kind that runs `phase`.
    pub fn phase_agent(&self, phase: Phase) -> &str {
        &self.phase_agents[phase_index(phase)]
    }

    /// Whether the phases run different agents (then the run records one per phase).
    pub fn mixed(&self) -> bool {
        self.phase_agents.iter().any(|k| *k != self.agent)
    }
}

const PHASES: [Phase; 3] = [Phase::Dev, Phase::Review, Phase::Fix];

fn phase_index(phase: Phase) -> usize {
    match phase {
        Phase::Dev => 0,
        Phase::Review => 1,
        Phase::Fix => 2,
    }
}

fn parse_phase(name: &str) -> Option<Phase> {
    PHASES.into_iter().find(|p| p.as_str() == name)
}

/// Each phase's agent: `--agent-for` > `--agent` (or a scenario) > `LOOP_AGENT` > `[agents]` >
/// codex. `all`: the `--agent`/environment level, when given.
fn resolve_phase_agents(file: &AgentsTable, all: Option<&str>, flags: &RunFlags) -> Result<[String; 3], ConfigError> {
    let known = |kind: &str, from: &str| -> Result<String, ConfigError> {
        if AGENTS.contains(&kind) {
            Ok(kind.to_string())
        } else {
            Err(ConfigError::Invalid(format!("{from}: {kind:?} is not an agent ({})", AGENTS.join(", "))))
        }
    };
    let mut out: [String; 3] = Default::default();
    for (phase, v) in [(Phase::Dev, &file.dev), (Phase::Review, &file.review), (Phase::Fix, &file.fix)] {
        out[phase_index(phase)] = match (all, v) {
            (Some(a), _) => a.to_string(),
            (None, Some(k)) => known(k, &format!("{FILE_NAME}: [agents] {phase}"))?,
            (None, None) => "codex".to_string(),
        };
    }
    for spec in &flags.agent_for {
        let (phase, kind) = spec.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("--agent-for {spec}: expected PHASE=KIND, e.g. review=codex"))
        })?;
        let phase = parse_phase(phase).ok_or_else(|| {
            ConfigError::Invalid(format!("--agent-for {spec}: unknown phase {phase:?} (dev, review, fix)"))
        })?;
        out[phase_index(phase)] = known(kind, &format!("--agent-for {spec}"))?;
    }
    Ok(out)
}

/// `[prices]` as the run records it: every number finite and not negative.
pub fn prices(file: &std::collections::BTreeMap<String, PriceTable>) -> Result<crate::vocab::Prices, ConfigError> {
    let mut out = crate::vocab::Prices::new();
    for (model, t) in file {
        let cached = t.cached_input.unwrap_or(t.input);
        for (key, v) in [("input", t.input), ("cached_input", cached), ("output", t.output)] {
            if !v.is_finite() || v < 0.0 {
                return Err(ConfigError::Invalid(format!(
                    "{FILE_NAME}: [prices.{model:?}] {key} must be a number of USD per million tokens, at least 0 ({v})"
                )));
            }
        }
        out.insert(model.clone(), crate::vocab::Price { input: t.input, cached_input: cached, output: t.output });
    }
    Ok(out)
}

/// A cost budget from the flag or the file: finite and not negative.
fn cost_budget(flag: Option<f64>, file: Option<f64>, name: &str) -> Result<Option<f64>, ConfigError> {
    let (v, from) = match (flag, file) {
        (Some(v), _) => (v, format!("--{}", name.replace("_usd", "").replace('_', "-"))),
        (None, Some(v)) => (v, format!("{FILE_NAME}: [run] {name}")),
        (None, None) => return Ok(None),
    };
    if !v.is_finite() || v < 0.0 {
        return Err(ConfigError::Invalid(format!("{from} must be an amount of USD, at least 0 ({v})")));
    }
    Ok(Some(v))
}

/// Merges file < environment < flags into a run's settings. `repo` anchors relative paths of
/// the file; `logs_root` is where codex writes its streams.
pub fn resolve_run(
    file: &LoopConfig,
    env: &EnvSettings,
    flags: &RunFlags,
    repo: &Path,
    logs_root: &Path,
) -> Result<RunSettings, ConfigError> {
    let max_fix_cycles =
        flags.max_fix_cycles.or(file.run.max_fix_cycles).unwrap_or(crate::vocab::DEFAULT_MAX_FIX_CYCLES);
    let from_toml = |key: &str, v: Option<i64>| -> Result<Option<u64>, ConfigError> {
        v.map(|n| {
            u64::try_from(n)
                .map_err(|_| ConfigError::Invalid(format!("{FILE_NAME}: [run] {key} must not be negative ({n})")))
        })
        .transpose()
    };
    let phase_timeout =
        flags.phase_timeout.or(from_toml("phase_timeout", file.run.phase_timeout)?).unwrap_or(DEFAULT_PHASE_TIMEOUT);
    if phase_timeout > MAX_PHASE_TIMEOUT {
        return Err(ConfigError::Invalid(format!(
            "phase timeout {phase_timeout}s is over the limit of {MAX_PHASE_TIMEOUT}s (30 days)"
        )));
    }
    let max_tokens = flags.max_tokens_per_issue.or(from_toml("max_tokens_per_issue", file.run.max_tokens_per_issue)?);
    if max_fix_cycles > 100 {
        return Err(ConfigError::Invalid("--max-fix-cycles must be at most 100".into()));
    }
    if phase_timeout == 0 {
        return Err(ConfigError::Invalid("--phase-timeout must be at least 1 second".into()));
    }
    let all = match (&flags.agent, &env.agent) {
        // A scenario only means something to the simulated agent; scripts written when sim was
        // the default keep working.
        _ if flags.sim_scenario => Some("sim".to_string()),
        (Some(a), _) => Some(a.clone()),
        (None, Some(a)) if AGENTS.contains(&a.as_str()) => Some(a.clone()),
        (None, Some(a)) => {
            return Err(ConfigError::Invalid(format!("LOOP_AGENT={a:?}: not an agent ({})", AGENTS.join(", "))))
        }
        (None, None) => None,
    };
    let phase_agents = resolve_phase_agents(&file.agents, all.as_deref(), flags)?;
    // The run's agent (recorded as before #13): dev's.
    let agent = phase_agents[0].clone();
    let codex = match phase_agents.iter().any(|k| k == "codex") {
        true => Some(resolve_codex(file, env, &flags.codex, repo, logs_root)?),
        false => None,
    };
    let claude = match phase_agents.iter().any(|k| k == "claude") {
        true => Some(resolve_claude(file, env, flags, repo, logs_root)),
        false => None,
    };
    Ok(RunSettings {
        agent,
        rules: Rules::with_max_fix_cycles(max_fix_cycles),
        phase_timeout_secs: phase_timeout,
        max_tokens_per_issue: max_tokens,
        review_doc: !flags.no_review_doc && file.run.review_doc.unwrap_or(true),
        codex,
        claude,
        verify: verify_spec(&file.verify)?,
        phase_agents,
        prices: prices(&file.prices)?,
        max_cost_usd_per_issue: cost_budget(
            flags.max_cost_usd_per_issue,
            file.run.max_cost_usd_per_issue,
            "max_cost_usd_per_issue",
        )?,
        max_cost_usd_per_run: cost_budget(
            flags.max_cost_usd_per_run,
            file.run.max_cost_usd_per_run,
            "max_cost_usd_per_run",
        )?,
        resilience: resilience(&file.run, flags)?,
    })
}

/// `[run] stall_timeout_secs`, `retries`, `retry_base_secs`, `retry_cap_secs` and their flags,
/// as milliseconds (README "When the agent stalls or the API blips").
fn resilience(run: &RunConfig, flags: &RunFlags) -> Result<crate::vocab::Resilience, ConfigError> {
    use crate::vocab::Resilience as R;
    let ms = |what: &str, v: Option<f64>, default: u64| -> Result<u64, ConfigError> {
        match v {
            None => Ok(default * 1000),
            Some(s) if !s.is_finite() || s < 0.0 => {
                Err(ConfigError::Invalid(format!("{what} must be a number of seconds, not negative ({s})")))
            }
            Some(s) if s > MAX_PHASE_TIMEOUT as f64 => {
                Err(ConfigError::Invalid(format!("{what} {s}s is over the limit of {MAX_PHASE_TIMEOUT}s (30 days)")))
            }
            Some(s) => Ok((s * 1000.0).round() as u64),
        }
    };
    let (stall_what, stall) = match flags.stall_timeout {
        Some(s) => ("--stall-timeout", Some(s)),
        None => ("loop.toml: [run] stall_timeout_secs", run.stall_timeout_secs),
    };
    let retries = flags.retries.or(run.retries).unwrap_or(R::DEFAULT_RETRIES);
    if retries > 100 {
        return Err(ConfigError::Invalid(format!("retries must be at most 100 ({retries})")));
    }
    Ok(R {
        stall_timeout_ms: ms(stall_what, stall, R::DEFAULT_STALL_TIMEOUT_SECS)?,
        retries,
        retry_base_ms: ms("loop.toml: [run] retry_base_secs", run.retry_base_secs, R::DEFAULT_RETRY_BASE_SECS)?,
        retry_cap_ms: ms("loop.toml: [run] retry_cap_secs", run.retry_cap_secs, R::DEFAULT_RETRY_CAP_SECS)?,
    })
}

/// `[verify]` as the run records it (in `run_started`, so resume verifies the same way).
pub fn verify_spec(t: &VerifyTable) -> Result<crate::vocab::VerifySpec, ConfigError> {
    let timeout_secs = match t.timeout {
        None => crate::verify::DEFAULT_TIMEOUT_SECS,
        Some(n) if n < 1 => {
            return Err(ConfigError::Invalid(format!("{FILE_NAME}: [verify] timeout must be at least 1 second ({n})")))
        }
        Some(n) if n as u64 > MAX_PHASE_TIMEOUT => {
            return Err(ConfigError::Invalid(format!(
                "{FILE_NAME}: [verify] timeout {n}s is over the limit of {MAX_PHASE_TIMEOUT}s (30 days)"
            )))
        }
        Some(n) => n as u64,
    };
    for (key, list) in [("commands", &t.commands), ("setup", &t.setup)] {
        if list.iter().any(|c| c.trim().is_empty()) {
            return Err(ConfigError::Invalid(format!("{FILE_NAME}: [verify] {key} holds an empty command")));
        }
    }
    Ok(crate::vocab::VerifySpec {
        commands: t.commands.clone(),
        setup: t.setup.clone(),
        timeout_secs,
        lockfiles: t.lockfiles.clone().unwrap_or_default(),
        count_preexisting: t.count_preexisting.unwrap_or(false),
    })
}

fn check_sandbox(mode: &str, from: &str) -> Result<String, ConfigError> {
    if SANDBOXES.contains(&mode) {
        Ok(mode.to_string())
    } else {
        Err(ConfigError::Invalid(format!("{from}: sandbox {mode:?} is not one of {}", SANDBOXES.join(", "))))
    }
}

fn sandbox_mut(s: &mut CodexSettings, phase: Phase) -> &mut String {
    match phase {
        Phase::Dev => &mut s.sandbox_dev,
        Phase::Review => &mut s.sandbox_review,
        Phase::Fix => &mut s.sandbox_fix,
    }
}

/// A binary named in loop.toml: a relative path means relative to the repo, not to wherever loop
/// was started.
fn file_bin(repo: &Path, b: &str) -> String {
    if b.contains('/') && Path::new(b).is_relative() {
        repo.join(b).display().to_string()
    } else {
        b.to_string()
    }
}

/// The [`ClaudeSettings`] a run records: file < environment < flags, per setting (`--model` and
/// `--retries` are shared with codex).
pub fn resolve_claude(
    file: &LoopConfig,
    env: &EnvSettings,
    flags: &RunFlags,
    repo: &Path,
    logs_root: &Path,
) -> ClaudeSettings {
    let c = &file.claude;
    let mut s = ClaudeSettings::new(logs_root);
    match (flags.claude_bin.as_ref().or(env.claude_bin.as_ref()), &c.bin) {
        (Some(b), _) => s.bin = b.clone(),
        (None, Some(b)) => s.bin = file_bin(repo, b),
        (None, None) => {}
    }
    s.model = flags.codex.model.clone().or_else(|| c.model.clone());
    s.args = c.args.clone();
    s.retries = flags.codex.retries.or(c.retries).unwrap_or(1);
    s.prompts_dir = file.prompts.dir.as_ref().map(|d| repo.join(d).display().to_string());
    s
}

/// The [`CodexSettings`] a run records: file < environment < flags, per setting.
pub fn resolve_codex(
    file: &LoopConfig,
    env: &EnvSettings,
    flags: &CodexFlags,
    repo: &Path,
    logs_root: &Path,
) -> Result<CodexSettings, ConfigError> {
    let c = &file.codex;
    let mut s = CodexSettings::new(logs_root);
    match (flags.bin.as_ref().or(env.codex_bin.as_ref()), &c.bin) {
        (Some(b), _) => s.bin = b.clone(),
        // A relative path in loop.toml means relative to the repo, not to wherever loop was started.
        (None, Some(b)) if b.contains('/') && Path::new(b).is_relative() => s.bin = repo.join(b).display().to_string(),
        (None, Some(b)) => s.bin = b.clone(),
        (None, None) => {}
    }
    s.model = flags.model.clone().or_else(|| c.model.clone());
    s.profile = flags.profile.clone().or_else(|| c.profile.clone());
    for (phase, v) in [(Phase::Dev, &c.sandbox.dev), (Phase::Review, &c.sandbox.review), (Phase::Fix, &c.sandbox.fix)] {
        if let Some(mode) = v {
            *sandbox_mut(&mut s, phase) = check_sandbox(mode, &format!("{FILE_NAME} [codex.sandbox] {phase}"))?;
        }
    }
    for spec in &flags.sandbox {
        let (phase, mode) = spec.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("--sandbox {spec}: expected PHASE=MODE, e.g. review=read-only"))
        })?;
        let phase = match phase {
            "dev" => Phase::Dev,
            "review" => Phase::Review,
            "fix" => Phase::Fix,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "--sandbox {spec}: unknown phase {other:?} (dev, review, fix)"
                )))
            }
        };
        *sandbox_mut(&mut s, phase) = check_sandbox(mode, &format!("--sandbox {spec}"))?;
    }
    for kv in c.config.iter().chain(&flags.config) {
        if !kv.contains('=') {
            return Err(ConfigError::Invalid(format!("codex config override {kv:?}: expected KEY=VALUE")));
        }
    }
    s.config = c.config.iter().chain(&flags.config).cloned().collect();
    s.retries = flags.retries.or(c.retries).unwrap_or(1);
    s.prompts_dir = file.prompts.dir.as_ref().map(|d| repo.join(d).display().to_string());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_table_resolves_and_bad_values_are_named() {
        let text = "[verify]\ncommands = [\"cargo test -q\"]\nsetup = [\"cargo fetch\"]\ntimeout = 30\n";
        let spec = verify_spec(&parse(text, Path::new("loop.toml")).unwrap().verify).unwrap();
        assert_eq!(
            (spec.commands, spec.setup, spec.timeout_secs),
            (vec!["cargo test -q".to_string()], vec!["cargo fetch".to_string()], 30)
        );
        assert!(!spec.count_preexisting);
        let spec = verify_spec(&VerifyTable::default()).unwrap();
        assert_eq!(spec.timeout_secs, crate::verify::DEFAULT_TIMEOUT_SECS);
        let err = parse("[verify]\ncommand = []\n", Path::new("loop.toml")).unwrap_err().to_string();
        assert!(err.starts_with("loop.toml:2:"), "{err}");
        let zero = VerifyTable { timeout: Some(0), ..Default::default() };
        assert!(verify_spec(&zero).unwrap_err().to_string().contains("at least 1 second"));
        let empty = VerifyTable { commands: vec![" ".into()], ..Default::default() };
        assert!(verify_spec(&empty).is_err());
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
[run]
phase_timeout = 600
max_tokens_per_issue = 100000
review_doc = false

[codex]
bin = "/opt/codex"
model = "gpt-5.5"
config = ["model_reasoning_effort=\"high\""]
retries = 2
[codex.sandbox]
review = "workspace-write"

[prompts]
dir = "team-prompts"
"#;
        let c = parse(text, Path::new("loop.toml")).unwrap();
        assert_eq!(c.run.phase_timeout, Some(600));
        assert_eq!(c.codex.sandbox.review.as_deref(), Some("workspace-write"));
        assert_eq!(c.codex.config.len(), 1);
        assert_eq!(c.prompts.dir.as_deref(), Some(Path::new("team-prompts")));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse("[codex]\nmodel = \"x\"\nmodle = \"y\"\n", Path::new("/r/loop.toml")).unwrap_err().to_string();
        assert!(err.starts_with("/r/loop.toml:3: unknown field `modle`"), "{err}");
    }

    #[test]
    fn guard_table_parses_and_bad_patterns_name_their_line() {
        let c = parse(
            "[guard]\nallow_dirty = true\ndeny = [\"git stash drop\"]\nallow = [\"gt submit --stack\"]\n",
            Path::new("l.toml"),
        )
        .unwrap();
        assert_eq!(c.guard.allow_dirty, Some(true));
        assert_eq!(c.guard.deny, ["git stash drop"]);
        assert_eq!(c.guard.allow, ["gt submit --stack"]);
        let err =
            parse("[guard]\nchecks = true\nallow = [\n  \"gt\",\n]\n", Path::new("l.toml")).unwrap_err().to_string();
        assert!(err.starts_with("l.toml:4: [guard] allow pattern \"gt\" must start"), "{err}");
        let err = parse("[guard]\ndeny = ['rm -rf']\n", Path::new("l.toml")).unwrap_err().to_string();
        assert!(err.starts_with("l.toml:2: [guard] deny pattern \"rm -rf\""), "{err}");
        let err = parse("[guard]\nshim = false\n", Path::new("l.toml")).unwrap_err().to_string();
        assert!(err.starts_with("l.toml:2: unknown field `shim`"), "{err}");
    }

    #[test]
    fn min_free_disk_is_a_run_key_and_never_negative() {
        let c = parse("[run]\nmin_free_disk_mb = 0\n", Path::new("loop.toml")).unwrap();
        assert_eq!(c.run.min_free_disk_mb, Some(0));
        let err = parse("[run]\nmin_free_disk_mb = -5\n", Path::new("loop.toml")).unwrap_err().to_string();
        assert!(err.starts_with("loop.toml:2: "), "{err}");
    }

    #[test]
    fn missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), LoopConfig::default());
    }

    /// A loop.toml that sets every run and codex setting, for the merge tests.
    fn file() -> LoopConfig {
        parse(
            "[run]\nphase_timeout = 600\nmax_fix_cycles = 3\nmax_tokens_per_issue = 100\nreview_doc = false\n\
             [codex]\nbin = \"tools/codex\"\nmodel = \"file-model\"\nretries = 2\nconfig = [\"a=1\"]\n\
             [codex.sandbox]\nreview = \"workspace-write\"\n",
            Path::new("loop.toml"),
        )
        .unwrap()
    }

    fn resolve(file: &LoopConfig, env: &EnvSettings, flags: &RunFlags) -> Result<RunSettings, ConfigError> {
        resolve_run(file, env, flags, Path::new("/repo"), Path::new("/state/logs"))
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let s = resolve(&LoopConfig::default(), &EnvSettings::default(), &RunFlags::default()).unwrap();
        assert_eq!(s.agent, "codex");
        assert_eq!(s.rules.max_fix_cycles, crate::vocab::DEFAULT_MAX_FIX_CYCLES);
        assert_eq!(s.phase_timeout_secs, DEFAULT_PHASE_TIMEOUT);
        assert_eq!(s.max_tokens_per_issue, None);
        assert!(s.review_doc);
        let c = s.codex.unwrap();
        assert_eq!(c, CodexSettings::new(Path::new("/state/logs")));
    }

    #[test]
    fn stall_and_retry_settings_merge_file_and_flags() {
        use crate::vocab::Resilience;
        let s = resolve(&LoopConfig::default(), &EnvSettings::default(), &RunFlags::default()).unwrap();
        assert_eq!(s.resilience, Resilience::defaults());
        let file = parse(
            "[run]\nstall_timeout_secs = 2.5\nretries = 2\nretry_base_secs = 0.05\nretry_cap_secs = 1\n",
            Path::new("loop.toml"),
        )
        .unwrap();
        let s = resolve(&file, &EnvSettings::default(), &RunFlags::default()).unwrap();
        let want = Resilience { stall_timeout_ms: 2500, retries: 2, retry_base_ms: 50, retry_cap_ms: 1000 };
        assert_eq!(s.resilience, want);
        let flags = RunFlags { stall_timeout: Some(0.0), retries: Some(0), ..Default::default() };
        let s = resolve(&file, &EnvSettings::default(), &flags).unwrap();
        assert_eq!(s.resilience, Resilience { stall_timeout_ms: 0, retries: 0, ..want });
        let bad = RunFlags { stall_timeout: Some(-1.0), ..Default::default() };
        let err = resolve(&file, &EnvSettings::default(), &bad).unwrap_err().to_string();
        assert_eq!(err, "--stall-timeout must be a number of seconds, not negative (-1)");
    }

    #[test]
    fn file_is_used_when_env_and_flags_are_silent() {
        let s = resolve(&file(), &EnvSettings::default(), &RunFlags::default()).unwrap();
        assert_eq!((s.phase_timeout_secs, s.rules.max_fix_cycles, s.max_tokens_per_issue), (600, 3, Some(100)));
        assert!(!s.review_doc);
        let c = s.codex.unwrap();
        // A relative path in the file is the repo's.
        assert_eq!(c.bin, "/repo/tools/codex");
        assert_eq!(
            (c.model.as_deref(), c.retries, c.config.as_slice()),
            (Some("file-model"), 2, &["a=1".to_string()][..])
        );
        assert_eq!((c.sandbox_dev.as_str(), c.sandbox_review.as_str()), ("workspace-write", "workspace-write"));
    }

    #[test]
    fn env_beats_file_and_flag_beats_env() {
        let env =
            EnvSettings { agent: Some("codex".into()), codex_bin: Some("env/codex".into()), ..Default::default() };
        // env over file; a relative path from the environment is the caller's, not the repo's.
        let s = resolve(&file(), &env, &RunFlags::default()).unwrap();
        assert_eq!(s.codex.unwrap().bin, "env/codex");
        // flag over env.
        let flags = RunFlags {
            codex: CodexFlags { bin: Some("/flag/codex".into()), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(resolve(&file(), &env, &flags).unwrap().codex.unwrap().bin, "/flag/codex");

        let env = EnvSettings { agent: Some("sim".into()), ..Default::default() };
        assert_eq!(resolve(&file(), &env, &RunFlags::default()).unwrap().agent, "sim");
        let flags = RunFlags { agent: Some("codex".into()), ..Default::default() };
        assert_eq!(resolve(&file(), &env, &flags).unwrap().agent, "codex");
        // A scenario file means the simulated agent, whatever else is said.
        let flags = RunFlags { agent: Some("codex".into()), sim_scenario: true, ..Default::default() };
        let s = resolve(&file(), &EnvSettings::default(), &flags).unwrap();
        assert_eq!((s.agent.as_str(), s.codex), ("sim", None));
    }

    #[test]
    fn flags_beat_file_for_every_run_setting() {
        let flags = RunFlags {
            max_fix_cycles: Some(7),
            phase_timeout: Some(42),
            max_tokens_per_issue: Some(9),
            codex: CodexFlags {
                model: Some("flag-model".into()),
                profile: Some("p".into()),
                sandbox: vec!["review=read-only".into(), "dev=danger-full-access".into()],
                config: vec!["b=2".into()],
                retries: Some(0),
                bin: None,
            },
            ..Default::default()
        };
        let s = resolve(&file(), &EnvSettings::default(), &flags).unwrap();
        assert_eq!((s.phase_timeout_secs, s.rules.max_fix_cycles, s.max_tokens_per_issue), (42, 7, Some(9)));
        let c = s.codex.unwrap();
        assert_eq!((c.model.as_deref(), c.profile.as_deref(), c.retries), (Some("flag-model"), Some("p"), 0));
        assert_eq!((c.sandbox_dev.as_str(), c.sandbox_review.as_str()), ("danger-full-access", "read-only"));
        // Overrides add up, the file's first.
        assert_eq!(c.config, ["a=1", "b=2"]);
        let flags = RunFlags { no_review_doc: true, ..Default::default() };
        assert!(!resolve(&LoopConfig::default(), &EnvSettings::default(), &flags).unwrap().review_doc);
    }

    #[test]
    fn claude_settings_merge_file_environment_and_flags() {
        let file = parse(
            "[claude]\nbin = \"tools/claude\"\nmodel = \"file-model\"\nargs = [\"--max-turns\", \"9\"]\nretries = 3\n",
            Path::new("/r/loop.toml"),
        )
        .unwrap();
        let flags = RunFlags { agent: Some("claude".into()), ..Default::default() };
        let s =
            resolve_run(&file, &EnvSettings::default(), &flags, Path::new("/repo"), Path::new("/state/logs")).unwrap();
        assert_eq!((s.agent.as_str(), s.codex.is_none()), ("claude", true));
        let c = s.claude.clone().unwrap();
        assert_eq!((c.bin.as_str(), c.model.as_deref(), c.retries), ("/repo/tools/claude", Some("file-model"), 3));
        assert_eq!(c.args, ["--max-turns", "9"]);
        assert_eq!(c.logs_root, "/state/logs");
        assert_eq!(s.sandbox().review, "claude:acceptEdits:no-edit-tools");
        let env = EnvSettings::from_lookup(|k| (k == "LOOP_CLAUDE_BIN" || k == "LOOP_AGENT").then(|| "claude".into()));
        let s = resolve_run(&file, &env, &RunFlags::default(), Path::new("/repo"), Path::new("/l")).unwrap();
        assert_eq!((s.agent.as_str(), s.claude.unwrap().bin.as_str()), ("claude", "claude"));
        let flags = RunFlags {
            agent: Some("claude".into()),
            claude_bin: Some("/flag/claude".into()),
            codex: CodexFlags { model: Some("flag-model".into()), retries: Some(0), ..Default::default() },
            ..Default::default()
        };
        let c = resolve_run(&file, &env, &flags, Path::new("/repo"), Path::new("/l")).unwrap().claude.unwrap();
        assert_eq!((c.bin.as_str(), c.model.as_deref(), c.retries), ("/flag/claude", Some("flag-model"), 0));
        assert!(parse("[claude]\nmodle = \"x\"\n", Path::new("loop.toml"))
            .unwrap_err()
            .to_string()
            .starts_with("loop.toml:2:"));
    }

    #[test]
    fn empty_environment_variables_are_unset() {
        let env = EnvSettings::from_lookup(|k| (k == "LOOP_AGENT").then(String::new));
        assert_eq!(env, EnvSettings::default());
        let env = EnvSettings::from_lookup(|k| Some(format!("v-{k}")));
        assert_eq!(env.agent.as_deref(), Some("v-LOOP_AGENT"));
        assert_eq!(env.codex_bin.as_deref(), Some("v-LOOP_CODEX_BIN"));
    }

    #[test]
    fn bad_settings_say_where_they_came_from() {
        let err =
            |file: &LoopConfig, env: &EnvSettings, flags: &RunFlags| resolve(file, env, flags).unwrap_err().to_string();
        let none = EnvSettings::default();
        let neg = parse("[run]\nphase_timeout = -1\n", Path::new("loop.toml")).unwrap();
        assert_eq!(err(&neg, &none, &RunFlags::default()), "loop.toml: [run] phase_timeout must not be negative (-1)");
        let env = EnvSettings { agent: Some("gemini".into()), ..Default::default() };
        assert!(
            err(&LoopConfig::default(), &env, &RunFlags::default()).starts_with("LOOP_AGENT=\"gemini\": not an agent")
        );
        let flags = RunFlags { phase_timeout: Some(0), ..Default::default() };
        assert_eq!(err(&LoopConfig::default(), &none, &flags), "--phase-timeout must be at least 1 second");
        let flags = RunFlags { max_fix_cycles: Some(101), ..Default::default() };
        assert_eq!(err(&LoopConfig::default(), &none, &flags), "--max-fix-cycles must be at most 100");
        let flags = RunFlags {
            codex: CodexFlags { sandbox: vec!["lint=read-only".into()], ..Default::default() },
            ..Default::default()
        };
        assert!(err(&LoopConfig::default(), &none, &flags).contains("unknown phase \"lint\""));
    }

    #[test]
    fn agents_prices_and_cost_budgets_parse_and_resolve() {
        let text = "[run]\nmax_cost_usd_per_issue = 2\nmax_cost_usd_per_run = 10.5\n\
                    [agents]\ndev = \"sim\"\nreview = \"codex\"\n\
                    [prices.\"gpt-5.5\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10\n\
                    [prices.cheap]\ninput = 0\noutput = 0.5\n";
        let file = parse(text, Path::new("loop.toml")).unwrap();
        let s = resolve(&file, &EnvSettings::default(), &RunFlags::default()).unwrap();
        // An unset phase runs the default agent.
        assert_eq!(s.phase_agents, ["sim", "codex", "codex"]);
        assert!(s.mixed() && s.codex.is_some());
        assert_eq!((s.max_cost_usd_per_issue, s.max_cost_usd_per_run), (Some(2.0), Some(10.5)));
        let p = s.prices["gpt-5.5"];
        assert_eq!((p.input, p.cached_input, p.output), (1.25, 0.125, 10.0));
        // cached_input defaults to input.
        assert_eq!(s.prices["cheap"].cached_input, 0.0);
        // The simulated dev phase runs unsandboxed; review in codex's review sandbox.
        assert_eq!((s.sandbox().work.as_str(), s.sandbox().review.as_str()), ("none", "read-only"));
    }

    #[test]
    fn agent_for_beats_agent_which_beats_env_which_beats_the_file() {
        let file = parse("[agents]\nreview = \"sim\"\n", Path::new("loop.toml")).unwrap();
        let none = EnvSettings::default();
        assert_eq!(resolve(&file, &none, &RunFlags::default()).unwrap().phase_agents, ["codex", "sim", "codex"]);
        let env = EnvSettings { agent: Some("codex".into()), codex_bin: None, claude_bin: None };
        let s = resolve(&file, &env, &RunFlags::default()).unwrap();
        assert_eq!((s.phase_agents.clone(), s.mixed()), (["codex", "codex", "codex"].map(String::from), false));
        let flags = RunFlags {
            agent: Some("sim".into()),
            agent_for: vec!["fix=codex".into(), "review=codex".into(), "fix=sim".into()],
            ..Default::default()
        };
        let s = resolve(&file, &env, &flags).unwrap();
        assert_eq!(s.phase_agents, ["sim", "codex", "sim"]);
        assert_eq!(s.agent, "sim");
        // A scenario means sim for every phase --agent-for does not name.
        let flags = RunFlags { sim_scenario: true, agent_for: vec!["review=codex".into()], ..Default::default() };
        assert_eq!(resolve(&file, &none, &flags).unwrap().phase_agents, ["sim", "codex", "sim"]);
        let flags = RunFlags { max_cost_usd_per_issue: Some(0.5), ..Default::default() };
        let file = parse("[run]\nmax_cost_usd_per_issue = 3\n", Path::new("loop.toml")).unwrap();
        assert_eq!(resolve(&file, &none, &flags).unwrap().max_cost_usd_per_issue, Some(0.5));
    }

    #[test]
    fn bad_agents_prices_and_budgets_name_their_key() {
        let none = EnvSettings::default();
        let err = |text: &str, flags: &RunFlags| {
            let file = parse(text, Path::new("loop.toml")).unwrap();
            resolve(&file, &none, flags).unwrap_err().to_string()
        };
        let no = RunFlags::default();
        assert_eq!(
            err("[agents]\nreview = \"gpt\"\n", &no),
            format!("loop.toml: [agents] review: \"gpt\" is not an agent ({})", AGENTS.join(", "))
        );
        assert_eq!(
            err("[prices.\"gpt-5.5\"]\ninput = -1\noutput = 2\n", &no),
            "loop.toml: [prices.\"gpt-5.5\"] input must be a number of USD per million tokens, at least 0 (-1)"
        );
        assert!(err("[prices.m]\ninput = 1\ncached_input = -0.5\noutput = 2\n", &no).contains("cached_input"));
        assert_eq!(
            err("[run]\nmax_cost_usd_per_run = -2\n", &no),
            "loop.toml: [run] max_cost_usd_per_run must be an amount of USD, at least 0 (-2)"
        );
        let flags = RunFlags { max_cost_usd_per_issue: Some(f64::NAN), ..Default::default() };
        assert!(err("", &flags).starts_with("--max-cost-per-issue must be an amount of USD"), "{}", err("", &flags));
        let flags = RunFlags { agent_for: vec!["lint=sim".into()], ..Default::default() };
        assert!(err("", &flags).contains("unknown phase \"lint\""));
        let flags = RunFlags { agent_for: vec!["review".into()], ..Default::default() };
        assert!(err("", &flags).contains("expected PHASE=KIND"));
        let flags = RunFlags { agent_for: vec!["review=gpt".into()], ..Default::default() };
        assert!(err("", &flags).starts_with("--agent-for review=gpt: \"gpt\" is not an agent"));
        // Unknown keys and a missing price are parse errors with their line.
        let e = parse("[prices.m]\ninput = 1\n", Path::new("loop.toml")).unwrap_err().to_string();
        assert!(e.contains("missing field `output`"), "{e}");
        let e = parse("[agents]\nlint = \"sim\"\n", Path::new("loop.toml")).unwrap_err().to_string();
        assert!(e.starts_with("loop.toml:2: unknown field `lint`"), "{e}");
    }
}
