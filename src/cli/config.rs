//! `loop config`: the settings a `loop run` here would use, and where each came from (flag,
//! environment, `loop.toml` with its line, default). Read-only: it reads loop.toml and the
//! environment and writes nothing.
//!
//! It takes the same setting flags as `run` (one shared struct, [`super::setting_args`]), so
//! `loop config --model X` shows what `loop run --model X` would do; values come from the same
//! resolution `run` uses ([`crate::config::keys::effective`]).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, ExitCode};
use crate::config::keys::{effective, Layers, Setting, Source};
use crate::config::{EnvSettings, FILE_NAME};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  loop config                      every setting: value and source\n  \
loop config --model gpt-5.5      what `loop run --model gpt-5.5` would use\n  \
loop config --json | jq -r '.[] | select(.source != \"default\") | .key'")]
pub struct ConfigArgs {
    /// The repository (any directory inside it); its loop.toml is read.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Where loop keeps journals, worktrees and logs [env: LOOP_STATE_DIR] [default: <repo>/.loop]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// `[{"key", "value", "source": "flag|env|file|default", "flag"?, "env"?, "file"?, "line"?}]` on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub settings: super::setting_args::SettingArgs,
    #[command(flatten)]
    pub guard: crate::guard::GuardArgs,
}

pub fn run(args: ConfigArgs) -> Result<ExitCode, CliError> {
    let dir = std::path::absolute(&args.repo).map_err(|e| CliError::io(&args.repo, e))?;
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("--repo {}: no such directory", args.repo.display())));
    }
    // Outside a git repository `run` would refuse, but the settings still read: show them.
    let repo = crate::workspace::GitWorkspace::toplevel(&dir).unwrap_or(dir);
    let path = repo.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CliError::io(&path, e)),
    };
    let file = match &text {
        Some(t) => crate::config::parse(t, &path)?,
        None => Default::default(),
    };
    let env = EnvSettings::from_process();
    let flags = args.settings.flags();
    let layers = Layers {
        file: &file,
        text: text.as_deref().map(|t| (t, path.as_path())),
        env: &env,
        flags: &flags,
        allow_dirty: args.guard.allow_dirty,
        no_guard: args.guard.no_guard,
        repo: &repo,
    };
    let mut settings = effective(&layers)?;
    settings.push(state_dir(&args, &repo)?);
    if args.json {
        crate::outln!("{}", serde_json::to_string(&settings).expect("settings serialize"));
    } else {
        crate::out!("{}", crate::render::start::config_text(&settings, &repo, &path, text.is_some()));
    }
    Ok(ExitCode::Ok)
}

/// Where the state lives: `--state-dir`, else `LOOP_STATE_DIR`, else `<repo>/.loop` (as
/// [`super::RepoArgs::state`] decides it; read here so the source can be told).
fn state_dir(args: &ConfigArgs, repo: &std::path::Path) -> Result<Setting, CliError> {
    let env = std::env::var_os("LOOP_STATE_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    let (dir, source) = match (&args.state_dir, env) {
        (Some(d), _) => (d.clone(), Source::Flag { flag: "--state-dir".into() }),
        (None, Some(d)) => (d, Source::Env { env: "LOOP_STATE_DIR".into() }),
        (None, None) => (repo.join(".loop"), Source::Default),
    };
    let dir = std::path::absolute(&dir).map_err(|e| CliError::io(&dir, e))?;
    Ok(Setting { key: "state_dir".into(), value: serde_json::json!(dir.display().to_string()), source })
}
