//! `loop prompts`: the dev-auto-* templates — list them, print one, or install them where Codex
//! (`$CODEX_HOME/prompts/`) and Claude Code (`~/.claude/commands/`) look for prompts.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, ExitCode, RepoArgs};
use crate::prompts::{self, BUILTIN};
use crate::safefs;

fn refused(source: safefs::SafeFsError) -> CliError {
    CliError::Fs { context: "prompts install refused, nothing was written".into(), source }
}

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
        /// One JSON array on stdout: name, phase, source.
        #[arg(long)]
        json: bool,
    },
    /// Print a template as loop would use it (before its inputs are filled in).
    Show {
        name: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Write the templates to $CODEX_HOME/prompts/ and ~/.claude/commands/, for running a phase
    /// by hand (`/dev-auto-parallel ISSUE_ID`): the inputs loop fills in become the command's
    /// arguments or say where to look. A file there that differs is not replaced without --force.
    Install {
        /// Replace installed files that differ from what loop would write (edited copies).
        #[arg(long)]
        force: bool,
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
    let cfg = crate::config::load(&root)?;
    Ok(cfg.prompts.dir.map(|d| root.join(d)))
}

pub fn run(args: PromptsArgs) -> Result<ExitCode, CliError> {
    let (PromptsCommand::List { repo, .. } | PromptsCommand::Show { repo, .. } | PromptsCommand::Install { repo, .. }) =
        &args.command;
    let dir = user_dir(repo)?;
    let load = |name: &str| prompts::load(name, dir.as_deref()).map_err(|e| CliError::Usage(e.to_string()));
    match args.command {
        PromptsCommand::List { json, .. } => {
            let mut rows = Vec::new();
            for (name, _, phase) in BUILTIN {
                let t = load(name)?;
                if json {
                    rows.push(serde_json::json!({"name": name, "phase": phase.as_str(), "source": t.source}));
                } else {
                    crate::outln!("{name:<24} {:<7} {}", phase.as_str(), t.source);
                }
            }
            if json {
                crate::outln!("{}", serde_json::Value::Array(rows));
            }
        }
        PromptsCommand::Show { name, .. } => crate::out!("{}", load(&name)?.text),
        PromptsCommand::Install { codex_home, claude_dir, force, .. } => {
            let texts = BUILTIN
                .iter()
                .map(|(name, _, phase)| {
                    let schema = crate::agent::output::schema_file_name(*phase);
                    let text = prompts::render_for_install(&load(name)?, *phase, schema)
                        .map_err(|e| CliError::Usage(e.to_string()))?;
                    Ok((*name, text))
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            // Every target is checked before anything is written: a symlink in one, or an
            // edited copy without --force, refuses the whole install, so no half-installed set
            // is left either.
            let targets = prompts::install_targets(codex_home, claude_dir);
            let mut edited = Vec::new();
            for (root, below) in &targets {
                for (name, text) in &texts {
                    let rel = below.join(format!("{name}.md"));
                    safefs::check(root, &rel).map_err(refused)?;
                    match safefs::read(root, &rel).map_err(refused)? {
                        Some(old) if old != text.as_bytes() && !force => edited.push(root.join(&rel)),
                        _ => {}
                    }
                }
            }
            if !edited.is_empty() {
                let list: Vec<String> = edited.iter().map(|p| p.display().to_string()).collect();
                return Err(CliError::Usage(format!(
                    "prompts install: {} differ from what loop would write (edited?); nothing was written. \
                     Keep your edits by moving them to loop.toml's [prompts] dir, or replace them with --force: {}",
                    if list.len() == 1 { "this file" } else { "these files" },
                    list.join(", ")
                )));
            }
            for (root, below) in targets {
                std::fs::create_dir_all(&root).map_err(|e| CliError::io(&root, e))?;
                let failed = |source| CliError::Fs { context: "prompts install".into(), source };
                let dir = safefs::open_dir(&root, &below, true).map_err(failed)?;
                for (name, text) in &texts {
                    let file = format!("{name}.md");
                    let path = root.join(&below).join(&file);
                    if dir.read(file.as_ref()).map_err(failed)?.as_deref() == Some(text.as_bytes()) {
                        crate::outln!("unchanged {}", path.display());
                        continue;
                    }
                    dir.write_with(file.as_ref(), |f| f.write_all(text.as_bytes())).map_err(failed)?;
                    crate::outln!("wrote {}", path.display());
                }
            }
        }
    }
    Ok(ExitCode::Ok)
}
