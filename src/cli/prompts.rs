//! `loop prompts`: the dev-auto-* templates — list them, print one, or install them where Codex
//! (`$CODEX_HOME/prompts/`) and Claude Code (`~/.claude/commands/`) look for prompts.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, RepoArgs};
use crate::prompts::{self, BUILTIN};

#[derive(Args, Debug)]
pub struct PromptsArgs {
    #[command(subcommand)]
    pub command: PromptsCommand,
}

#[derive(Subcommand, Debug)]
pub enum PromptsCommand {
    /// Name, phase and source (built-in or the loop.toml prompts dir) of each template.
    List {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Print a template as loop would use it (before its inputs are filled in).
    Show {
        name: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Write the templates to $CODEX_HOME/prompts/ and ~/.claude/commands/.
    Install {
        /// Codex's home [default: $CODEX_HOME or ~/.codex]; prompts go to its prompts/ dir.
        #[arg(long, value_name = "DIR")]
        codex_home: Option<PathBuf>,
        /// Claude Code's commands dir [default: ~/.claude/commands].
        #[arg(long, value_name = "DIR")]
        claude_dir: Option<PathBuf>,
        #[command(flatten)]
        repo: RepoArgs,
    },
}

/// The user's template dir from loop.toml, when run inside a repo that has one.
fn user_dir(repo: &RepoArgs) -> Result<Option<PathBuf>, CliError> {
    let Ok(root) = repo.repo_root() else { return Ok(None) };
    let cfg = crate::config::load(&root).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(cfg.prompts.dir.map(|d| root.join(d)))
}

pub fn run(args: PromptsArgs) -> Result<i32, CliError> {
    let (PromptsCommand::List { repo } | PromptsCommand::Show { repo, .. } | PromptsCommand::Install { repo, .. }) =
        &args.command;
    let dir = user_dir(repo)?;
    let load = |name: &str| prompts::load(name, dir.as_deref()).map_err(|e| CliError::Usage(e.to_string()));
    match args.command {
        PromptsCommand::List { .. } => {
            for (name, _, phase) in BUILTIN {
                let t = load(name)?;
                crate::outln!("{name:<24} {:<7} {}", phase.as_str(), t.source);
            }
        }
        PromptsCommand::Show { name, .. } => crate::out!("{}", load(&name)?.text),
        PromptsCommand::Install { codex_home, claude_dir, .. } => {
            for target in prompts::install_targets(codex_home, claude_dir) {
                std::fs::create_dir_all(&target).map_err(|e| CliError::io(&target, e))?;
                for (name, _, _) in BUILTIN {
                    let path = target.join(format!("{name}.md"));
                    std::fs::write(&path, load(name)?.text).map_err(|e| CliError::io(&path, e))?;
                    crate::outln!("wrote {}", path.display());
                }
            }
        }
    }
    Ok(0)
}
