//! Agents: what runs a phase in an issue's worktree and returns its final message.
//!
//! The engine validates every reply against the phase's schema ([`output`]), whoever produced it,
//! so the simulated agent and the real one are held to the same contract.

pub mod claude;
pub mod claude_events;
pub mod codex;
pub mod codex_events;
pub mod common;
pub mod failure;
mod jsonl;
pub mod output;
pub mod sim;

use std::path::PathBuf;

use std::time::Duration;

use crate::machine::Phase;
pub use crate::vocab::Tokens;
use crate::vocab::{AgentSpec, PlannedIssue};

/// Everything an agent is told about a phase: explicit inputs, nothing to infer.
#[derive(Clone, Debug)]
pub struct PhaseRequest {
    pub run_id: String,
    pub milestone: String,
    pub issue: PlannedIssue,
    pub phase: Phase,
    /// For fix: the fix cycle (1-based). For review: fixes done so far. For dev: 0.
    pub cycle: u32,
    pub attempt: u32,
    pub worktree: PathBuf,
    /// The previous review's raw output (fix phases); after a failed verification, loop's own
    /// `{"required_actions": [failures]}`.
    pub last_review: Option<String>,
    /// loop's verification of the commit under review, one line per command (review phases;
    /// None when the issue has no verification commands).
    pub verification: Option<String>,
    /// A session the agent started for this phase before an interruption, to continue.
    pub resume_session: Option<String>,
    pub timeout: Duration,
    /// The agent is stopped when it prints no event (stdout line) for this long
    /// ([`crate::proc::Cmd::stall_timeout`]); None: only `timeout` applies.
    pub stall_timeout: Option<Duration>,
    /// Environment the agent's process and shell must get (the guard's shims: HOME, PATH,
    /// LOOP_GUARD_CTX, GIT_CONFIG_GLOBAL, CODEX_HOME). Empty when no guard is active.
    pub env: Vec<(String, String)>,
}

#[cfg(test)]
impl PhaseRequest {
    /// Phase `phase` of issue ORB-1 (run R, milestone M1, worktree `/w`) after a review that
    /// asked for `last_review`: the agents' unit tests vary only what they check.
    pub(crate) fn sample(phase: Phase, last_review: &str) -> PhaseRequest {
        PhaseRequest {
            run_id: "R".into(),
            milestone: "M1".into(),
            issue: PlannedIssue {
                id: "ORB-1".into(),
                title: "t".into(),
                doc: "docs/projects/p/issues/ORB-1.md".into(),
                blocked_by: vec![],
                branch: "loop/M1/ORB-1".into(),
                worktree: "/w".into(),
                verify: Vec::new(),
            },
            phase,
            cycle: 1,
            attempt: 1,
            worktree: "/w".into(),
            last_review: Some(last_review.into()),
            verification: None,
            resume_session: None,
            timeout: Duration::from_secs(5),
            stall_timeout: None,
            env: Vec::new(),
        }
    }
}

/// What an agent reports while a phase runs; the engine journals it at once.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// The agent's session (codex thread) exists: journaled so resume can continue it.
    SessionStarted { session: String },
}

/// A finished phase.
#[derive(Clone, Debug, Default)]
pub struct PhaseReply {
    /// The final message, verbatim; the engine validates it.
    pub output: String,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub session: Option<String>,
    pub tokens: Option<Tokens>,
    /// What else is worth journaling.
    pub note: Option<String>,
    /// What the phase cost in USD, when the agent reports it (Claude Code's `total_cost_usd`);
    /// otherwise the engine prices the tokens from `[prices]`.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the {phase} agent exited with {status}: {stderr}")]
    Crashed { phase: Phase, status: String, exit_code: Option<i32>, stderr: String },
    #[error("the {phase} agent timed out after {secs}s; its process group was killed")]
    TimedOut { phase: Phase, secs: u64 },
    #[error("the {phase} agent was interrupted")]
    Interrupted { phase: Phase },
    #[error("the {phase} agent could not run: {source}")]
    Setup {
        phase: Phase,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file of loop's own around the agent (logs, schema; the simulated agent's work) failed.
    #[error("the {phase} agent could not run: {what}: {source}")]
    Io {
        phase: Phase,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The agent printed nothing for the stall timeout; its process group was killed. Retried
    /// like a transient error (a dead network looks like this), then the phase fails.
    #[error("the {phase} agent stalled: no event for {secs}s; its process group was killed")]
    Stalled { phase: Phase, secs: f64 },
    /// A blip the CLI reported in its own words ([`failure::Kind::Transient`]: rate limit, 5xx,
    /// dropped stream); the engine retries the phase with backoff, continuing `session`. Worded
    /// like [`AgentError::Crashed`]: after the last retry this is the phase's failure.
    #[error("the {phase} agent exited with {status}: {message}")]
    Transient { phase: Phase, status: String, message: String, session: Option<String> },
}

impl AgentError {
    /// Whether the environment (not the agent's work) failed: then the phase is retried at resume.
    pub fn blame(&self) -> crate::blame::Blame {
        use crate::blame::Blame;
        match self {
            AgentError::Io { source, .. } => Blame::of_io(source),
            AgentError::Setup { source, .. } => match source.downcast_ref::<crate::proc::ProcError>() {
                Some(crate::proc::ProcError::Spawn { source, .. }) => Blame::of_io(source),
                _ => Blame::Issue,
            },
            AgentError::Crashed { .. }
            | AgentError::TimedOut { .. }
            | AgentError::Interrupted { .. }
            | AgentError::Stalled { .. }
            | AgentError::Transient { .. } => Blame::Issue,
        }
    }

    /// Whether the engine retries the phase after a backoff (`[run] retries`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AgentError::Stalled { .. } | AgentError::Transient { .. })
    }

    /// The session a retry continues, when the failed attempt left one.
    pub fn session(&self) -> Option<&str> {
        match self {
            AgentError::Transient { session, .. } => session.as_deref(),
            _ => None,
        }
    }
}

/// Runs phases. Implementations must honour `req.timeout` and [`crate::proc::is_cancelled`].
pub trait Agent: Send + Sync {
    fn name(&self) -> &str;
    /// Runs one phase in `req.worktree`. `signal` must be called as soon as a session exists.
    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError>;
}

/// The last few lines of a stream, for one-line error messages.
pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

/// Why a run's recorded agent cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Scenario(#[from] sim::ScenarioError),
    #[error("the run recorded no codex settings")]
    NoCodexSettings,
    #[error("the run's recorded codex settings do not parse: {0}")]
    CodexSettings(serde_json::Error),
    #[error("this loop does not know agent '{0}'")]
    Unknown(String),
    #[error("the run recorded no claude settings")]
    NoClaudeSettings,
    #[error("the run's recorded claude settings do not parse: {0}")]
    ClaudeSettings(serde_json::Error),
}

/// Builds the agent a run was recorded with. `ids` are the run's issues (a scenario may name
/// no other); `source` names the scenario in errors.
pub fn from_spec(spec: &AgentSpec, ids: &[&str], source: &str) -> Result<Box<dyn Agent>, SpecError> {
    match spec.kind.as_str() {
        "sim" => {
            let scenario = match &spec.scenario {
                Some(text) => sim::parse_scenario(text, source, ids)?,
                None => Default::default(),
            };
            Ok(Box::new(sim::SimAgent::new(scenario)))
        }
        "codex" => {
            let text = spec.settings.as_deref().ok_or(SpecError::NoCodexSettings)?;
            let settings: codex::CodexSettings = serde_json::from_str(text).map_err(SpecError::CodexSettings)?;
            Ok(Box::new(codex::CodexAgent::new(settings)))
        }
        "claude" => {
            let text = spec.settings.as_deref().ok_or(SpecError::NoClaudeSettings)?;
            let settings: claude::ClaudeSettings = serde_json::from_str(text).map_err(SpecError::ClaudeSettings)?;
            Ok(Box::new(claude::ClaudeAgent::new(settings)))
        }
        other => Err(SpecError::Unknown(other.to_string())),
    }
}

/// A run's agents, one per phase, built from what its run start recorded (never the current
/// config: resume and retry run each phase on the backend it started with). Phases recorded
/// with the same spec share one agent.
pub struct PhaseAgentSet {
    agents: Vec<(AgentSpec, Box<dyn Agent>)>,
    /// Index into `agents` for dev, review, fix.
    by_phase: [usize; 3],
}

impl PhaseAgentSet {
    pub fn from_start(start: &crate::vocab::RunStart, ids: &[&str], source: &str) -> Result<PhaseAgentSet, SpecError> {
        let specs = [Phase::Dev, Phase::Review, Phase::Fix].map(|p| start.agent_for(p));
        PhaseAgentSet::from_specs(specs, ids, source)
    }

    /// The agents of dev, review and fix from their specs.
    pub fn from_specs(specs: [&AgentSpec; 3], ids: &[&str], source: &str) -> Result<PhaseAgentSet, SpecError> {
        let mut agents: Vec<(AgentSpec, Box<dyn Agent>)> = Vec::new();
        let mut by_phase = [0; 3];
        for (i, spec) in specs.into_iter().enumerate() {
            by_phase[i] = match agents.iter().position(|(s, _)| s == spec) {
                Some(at) => at,
                None => {
                    agents.push((spec.clone(), from_spec(spec, ids, source)?));
                    agents.len() - 1
                }
            };
        }
        Ok(PhaseAgentSet { agents, by_phase })
    }

    pub fn get(&self, phase: Phase) -> &dyn Agent {
        let i = match phase {
            Phase::Dev => 0,
            Phase::Review => 1,
            Phase::Fix => 2,
        };
        self.agents[self.by_phase[i]].1.as_ref()
    }
}
