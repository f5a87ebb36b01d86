//! The inputs of a run as `run` and `demo` hand them to [`super::run::start`] and `run --dry-run`
//! shows them: settings already resolved ([`crate::config::resolve_run`]) and checked.

use std::path::PathBuf;

use crate::runs::StateDir;
use crate::vocab::{AgentSpec, Rules};

/// Everything needed to start a run, already resolved and checked.
pub struct RunInputs {
    pub repo: PathBuf,
    pub state: StateDir,
    pub milestone: Option<String>,
    pub agent: AgentSpec,
    /// How to name the scenario in errors (its file path).
    pub scenario_source: String,
    pub rules: Rules,
    pub phase_timeout_secs: u64,
    pub max_tokens_per_issue: Option<u64>,
    pub review_doc: bool,
    /// Only these issues (empty: the whole milestone).
    pub issues: Vec<String>,
    pub jobs: usize,
    /// loop's own checks for every issue (`[verify]`).
    pub verify: crate::vocab::VerifySpec,
    /// `--skip-setup`: never run `[verify] setup`.
    pub skip_setup: bool,
    /// Guardrails (README "Safety"); `None` runs unguarded.
    pub guard: Option<GuardInputs>,
    /// `--fresh`: new branch names, nothing carried over from earlier runs of the milestone.
    pub fresh: bool,
    /// Stall timeout and transient-error retries.
    pub resilience: crate::vocab::Resilience,
    /// The agent per phase, prices and cost budgets (None: one agent, no prices, no cost budget).
    pub spend: Option<Box<crate::vocab::SpendSpec>>,
}

impl RunInputs {
    /// The spec of each phase's agent (dev, review, fix).
    pub fn phase_specs(&self) -> [&AgentSpec; 3] {
        match self.spend.as_ref().and_then(|s| s.agents.as_ref()) {
            Some(a) => [&a.dev, &a.review, &a.fix],
            None => [&self.agent; 3],
        }
    }
}

/// What a run's guard is built from: the flags, loop.toml's `[guard]`, and the sandbox the
/// agent will really run in.
#[derive(Clone, Debug, Default)]
pub struct GuardInputs {
    pub args: crate::guard::GuardArgs,
    pub file: crate::config::GuardTable,
    pub sandbox: crate::vocab::SandboxSettings,
}
