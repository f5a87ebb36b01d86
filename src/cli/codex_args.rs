//! The codex and Claude Code agents' flags. How they merge with `loop.toml` and the environment is
//! [`crate::config::resolve_codex`]'s business.

use clap::Args;

use crate::config::CodexFlags;

#[derive(Args, Debug, Clone, Default)]
pub struct CodexArgs {
    /// The codex binary [env: LOOP_CODEX_BIN] [default: `codex` on PATH, or `[codex] bin` in loop.toml].
    #[arg(long, value_name = "PATH")]
    pub codex_bin: Option<String>,
    /// The Claude Code binary [env: LOOP_CLAUDE_BIN] [default: `claude` on PATH, or `[claude] bin` in loop.toml].
    #[arg(long, value_name = "PATH")]
    pub claude_bin: Option<String>,
    /// The model the agent uses (`codex exec -m`, `claude --model`).
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
    /// How often an unusable final message is asked again (`codex exec resume`, `claude --resume`) [default: 1].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
}

impl CodexArgs {
    pub fn flags(&self) -> CodexFlags {
        CodexFlags {
            bin: self.codex_bin.clone(),
            model: self.model.clone(),
            profile: self.codex_profile.clone(),
            sandbox: self.sandbox.clone(),
            config: self.codex_config.clone(),
            retries: self.retries,
        }
    }
}
