//! `loop man [--out DIR]`: the manual pages (roff), from the clap definition the binary parses
//! with: `loop.1` on stdout, or one page per subcommand (`loop-run.1`, …) written into DIR.

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{Cli, CliError, ExitCode};

#[derive(Args, Debug)]
#[command(after_help = "Read it now: loop man | man -l -\nInstall: loop man --out ~/.local/share/man/man1")]
pub struct ManArgs {
    /// Write loop.1 and a page per subcommand into this directory (created if missing; an
    /// existing page of the same name is replaced, never through a symlink) instead of printing loop.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: ManArgs) -> Result<ExitCode, CliError> {
    let cmd = Cli::command();
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page).map_err(|e| CliError::io(std::path::Path::new("-"), e))?;
        crate::out::stdout(&String::from_utf8_lossy(&page));
        return Ok(ExitCode::Ok);
    };
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
    let mut pages = vec![("loop.1".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("loop-{}", sub.get_name());
        pages.push((format!("{name}.1"), sub.clone().name(name)));
    }
    for (file, page_cmd) in pages {
        let mut page = Vec::new();
        let path = dir.join(&file);
        clap_mangen::Man::new(page_cmd).render(&mut page).map_err(|e| CliError::io(&path, e))?;
        crate::safefs::write(&dir, std::path::Path::new(&file), &page)
            .map_err(|source| CliError::Fs { context: path.display().to_string(), source })?;
        crate::out!("{}\n", path.display());
    }
    Ok(ExitCode::Ok)
}
