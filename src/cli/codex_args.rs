//! The codex agent's flags, and how they merge with `loop.toml` and the environment into the
//! [`CodexSettings`] a run records. Precedence: flag > environment > loop.toml > default.

use std::path::Path;

use clap::Args;

use super::CliError;
use crate::agent::codex::{CodexSettings, SANDBOXES};
use crate::config::LoopConfig;
use crate::machine::Phase;
use crate::runs::StateDir;

#[derive(Args, Debug, Clone, Default)]
pub struct CodexArgs {
    /// The codex binary [default: `codex` on PATH, or `[codex] bin` in loop.toml].
    #[arg(long, env = "LOOP_CODEX_BIN", value_name = "PATH")]
    pub codex_bin: Option<String>,
    /// The model codex uses (`codex exec -m`).
    #[arg(long)]
    pub model: Option<String>,
    /// A codex profile from its config.toml (`codex exec -p`).
    #[arg(long)]
    pub codex_profile: Option<String>,
    /// Sandbox for a phase, e.g. `review=workspace-write` (repeatable) [default: dev and fix
    /// workspace-write, review read-only].
    #[arg(long = "sandbox", value_name = "PHASE=MODE")]
    pub sandbox: Vec<String>,
    /// An extra codex config override passed as `-c KEY=VALUE` (repeatable; after loop.toml's).
    #[arg(long = "codex-config", value_name = "KEY=VALUE")]
    pub codex_config: Vec<String>,
    /// How often an unusable final message is asked again via `codex exec resume` [default: 1].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
}

fn check_sandbox(mode: &str, from: &str) -> Result<String, CliError> {
    if SANDBOXES.contains(&mode) {
        Ok(mode.to_string())
    } else {
        Err(CliError::Usage(format!("{from}: sandbox {mode:?} is not one of {}", SANDBOXES.join(", "))))
    }
}

impl CodexArgs {
    pub fn settings(&self, cfg: &LoopConfig, repo: &Path, state: &StateDir) -> Result<CodexSettings, CliError> {
        let c = &cfg.codex;
        let mut s = CodexSettings::new(&state.root.join("logs"));
        if let Some(b) = self.codex_bin.clone().or_else(|| c.bin.clone()) {
            s.bin = b;
        }
        // A relative path in loop.toml means relative to the repo, not to wherever loop was started.
        if s.bin.contains('/') && Path::new(&s.bin).is_relative() && self.codex_bin.is_none() {
            s.bin = repo.join(&s.bin).display().to_string();
        }
        s.model = self.model.clone().or_else(|| c.model.clone());
        s.profile = self.codex_profile.clone().or_else(|| c.profile.clone());
        let file = crate::config::FILE_NAME;
        for (phase, v) in
            [(Phase::Dev, &c.sandbox.dev), (Phase::Review, &c.sandbox.review), (Phase::Fix, &c.sandbox.fix)]
        {
            if let Some(mode) = v {
                *sandbox_mut(&mut s, phase) = check_sandbox(mode, &format!("{file} [codex.sandbox] {phase}"))?;
            }
        }
        for spec in &self.sandbox {
            let (phase, mode) = spec.split_once('=').ok_or_else(|| {
                CliError::Usage(format!("--sandbox {spec}: expected PHASE=MODE, e.g. review=read-only"))
            })?;
            let phase = match phase {
                "dev" => Phase::Dev,
                "review" => Phase::Review,
                "fix" => Phase::Fix,
                other => {
                    return Err(CliError::Usage(format!(
                        "--sandbox {spec}: unknown phase {other:?} (dev, review, fix)"
                    )))
                }
            };
            *sandbox_mut(&mut s, phase) = check_sandbox(mode, &format!("--sandbox {spec}"))?;
        }
        for kv in c.config.iter().chain(&self.codex_config) {
            if !kv.contains('=') {
                return Err(CliError::Usage(format!("codex config override {kv:?}: expected KEY=VALUE")));
            }
        }
        s.config = c.config.iter().chain(&self.codex_config).cloned().collect();
        s.retries = self.retries.or(c.retries).unwrap_or(1);
        s.prompts_dir = cfg.prompts.dir.as_ref().map(|d| repo.join(d).display().to_string());
        Ok(s)
    }
}

fn sandbox_mut(s: &mut CodexSettings, phase: Phase) -> &mut String {
    match phase {
        Phase::Dev => &mut s.sandbox_dev,
        Phase::Review => &mut s.sandbox_review,
        Phase::Fix => &mut s.sandbox_fix,
    }
}
