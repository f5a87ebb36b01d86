//! `loop completions SHELL`: the shell completion script, from the same clap definition the
//! binary parses with, so it can never describe flags the binary does not have.

use clap::{Args, CommandFactory, ValueEnum};

use super::{Cli, CliError, ExitCode};

#[derive(Args, Debug)]
#[command(after_help = "Install, for example:\n  \
    bash: loop completions bash > ~/.local/share/bash-completion/completions/loop\n  \
    zsh:  loop completions zsh > \"${fpath[1]}/_loop\"\n  \
    fish: loop completions fish > ~/.config/fish/completions/loop.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(args: CompletionsArgs) -> Result<ExitCode, CliError> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "loop", &mut out);
    crate::out::stdout(&String::from_utf8_lossy(&out));
    Ok(ExitCode::Ok)
}
