//! The flags that set a run's settings, shared by `loop run` and `loop config` (which shows what
//! they would make of the settings). How they merge with `loop.toml` and the environment is
//! [`crate::config::resolve_run`]'s business.

use std::path::PathBuf;

use clap::Args;

use crate::config::RunFlags;

#[derive(Args, Debug, Clone, Default)]
pub struct SettingArgs {
    /// Which agent runs the phases [env: LOOP_AGENT] [default: codex, or loop.toml [agents]].
    #[arg(long, value_parser = crate::config::AGENTS)]
    pub agent: Option<String>,
    /// The agent of one phase, e.g. `review=codex` (repeatable; beats --agent for that phase).
    #[arg(long = "agent-for", value_name = "PHASE=KIND")]
    pub agent_for: Vec<String>,
    /// USD one issue may spend (since its last retry); over it the issue ends Capped [default: unlimited, or loop.toml].
    #[arg(long = "max-cost-per-issue", value_name = "USD")]
    pub max_cost_per_issue: Option<f64>,
    /// USD the run may spend; once spent no phase starts (issues not started end Blocked) [default: unlimited, or loop.toml].
    #[arg(long = "max-cost-per-run", value_name = "USD")]
    pub max_cost_per_run: Option<f64>,
    #[command(flatten)]
    pub codex: super::codex_args::CodexArgs,
    /// JSON file scripting the simulated agent (implies --agent sim): {"ISSUE": {"dev": "pass", "reviews": ["changes_required", "pass"]}}.
    #[arg(long, value_name = "FILE")]
    pub sim_scenario: Option<PathBuf>,
    /// Fix cycles allowed before an issue ends Capped [default: 2, or loop.toml].
    #[arg(long)]
    pub max_fix_cycles: Option<u32>,
    /// Seconds one agent phase may take before its process group is killed [default: 1800, or loop.toml].
    #[arg(long, value_name = "SECS")]
    pub phase_timeout: Option<u64>,
    /// Seconds without an event from the agent before its phase is killed as stalled; 0: never
    /// [default: 300, or loop.toml [run] stall_timeout_secs].
    #[arg(long, value_name = "SECS")]
    pub stall_timeout: Option<f64>,
    /// Retries of a phase after a transient API error or a stall [default: 4, or loop.toml [run] retries].
    /// (`--retries` is codex's re-asks for an unusable reply.)
    #[arg(long, value_name = "N")]
    pub agent_retries: Option<u32>,
    /// Tokens one issue may use; over it the issue ends Capped [default: unlimited, or loop.toml].
    #[arg(long, value_name = "N")]
    pub max_tokens_per_issue: Option<u64>,
    /// Do not append reviews to docs/projects/<project>/reviews/<milestone>/<issue>.md.
    #[arg(long)]
    pub no_review_doc: bool,
}

impl SettingArgs {
    /// The flags as [`crate::config::resolve_run`] takes them.
    pub fn flags(&self) -> RunFlags {
        RunFlags {
            agent: self.agent.clone(),
            sim_scenario: self.sim_scenario.is_some(),
            max_fix_cycles: self.max_fix_cycles,
            phase_timeout: self.phase_timeout,
            max_tokens_per_issue: self.max_tokens_per_issue,
            no_review_doc: self.no_review_doc,
            codex: self.codex.flags(),
            stall_timeout: self.stall_timeout,
            retries: self.agent_retries,
            claude_bin: self.codex.claude_bin.clone(),
            agent_for: self.agent_for.clone(),
            max_cost_usd_per_issue: self.max_cost_per_issue,
            max_cost_usd_per_run: self.max_cost_per_run,
        }
    }
}
