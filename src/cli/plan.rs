//! `loop plan`: a milestone's dependency order and waves, as text, JSON, dot or mermaid.

use clap::{Args, ValueEnum};

use super::{CliError, ExitCode, RepoArgs};
use crate::{docs, plan};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Dot,
    Mermaid,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The milestone (optional when the docs name exactly one).
    #[arg(long, short)]
    pub milestone: Option<String>,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(args: PlanArgs) -> Result<ExitCode, CliError> {
    let repo = args
        .repo
        .repo_root()
        .or_else(|_| std::path::absolute(&args.repo.repo).map_err(|e| CliError::io(&args.repo.repo, e)))?;
    let docs = docs::load(&repo)?;
    let milestone = plan::choose_milestone(&docs, args.milestone.as_deref())?;
    let plan = plan::build(&docs, &milestone)?;
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Text => print!("{}", crate::render::style::Style::stdout().plan(&plan.to_text(&head_label(&repo)))),
        Format::Json => println!("{}", plan.to_json(&head_label(&repo))),
        Format::Dot => print!("{}", plan.to_dot()),
        Format::Mermaid => print!("{}", plan.to_mermaid()),
    }
    Ok(ExitCode::Ok)
}

/// The commit a run would start from, as `main@abc1234` (`HEAD@…` when detached), or why there
/// is none. Read-only.
pub(super) fn head_label(repo: &std::path::Path) -> String {
    let t = std::time::Duration::from_secs(30);
    let git = |args: &[&str]| crate::workspace::git_ok(repo, args, t);
    match git(&["rev-parse", "--verify", "--short=7", "HEAD^{commit}"]) {
        Ok(short) => {
            let name = git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|_| "HEAD".into());
            format!("{name}@{short}")
        }
        Err(e) => format!("(no base commit: {e})"),
    }
}
