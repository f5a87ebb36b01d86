//! `loop init`: a starting point in an existing git repository — a project's docs folders with a
//! sample milestone and two sample issues, and a commented `loop.toml` holding every setting.
//!
//! Invariants: it writes nothing unless it can write everything — every target is checked first
//! (an existing file of any kind, a symlink on the way), then written; no file is ever
//! overwritten; every write goes through [`crate::safefs`] (no symlink is followed). The
//! scaffold passes loop's own doc checks, so `loop plan` and `loop run` work on it as made.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{CliError, ExitCode};
use crate::config::FILE_NAME;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  loop init --project shop   # docs/projects/shop/{issues,milestones,reviews}, loop.toml\n  \
git add docs loop.toml && git commit -m \"loop: sample docs\"\n  loop plan -m M1\n  loop run -m M1 --dry-run"
)]
pub struct InitArgs {
    /// The project's name: docs/projects/NAME/ [default: the repository directory's name, made a valid id].
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    /// The repository (any directory inside it).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// `{"project", "repo", "milestone", "files": [...], "next": [...]}` on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The sample milestone's id.
pub const MILESTONE: &str = "M1";

/// A project name made from any text: ASCII letters, digits, `-` and `_`, lowercased; runs of
/// anything else become one `-`. Empty (or nothing usable) gives `project`.
pub fn project_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(40).collect();
    match out.trim_end_matches('-') {
        "" => "project".to_string(),
        s => s.to_string(),
    }
}

/// A name given with `--project` must already be one [`project_name`] would keep as it is.
fn check_project(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "--project {}: a project name is letters, digits, '.', '_' and '-' (not first), at most 64, e.g. {}",
            crate::text::printable(name, 80),
            project_name(name)
        )))
    }
}

/// The issue id prefix of a project: its letters and digits, upper case, at most 8 (`ISSUE` when
/// it has none).
fn prefix(project: &str) -> String {
    let p: String = project.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>().to_uppercase();
    if p.is_empty() {
        "ISSUE".into()
    } else {
        p
    }
}

/// Every file of the scaffold: `(path relative to the repo, text, what it is)`.
pub fn scaffold(project: &str) -> Vec<(PathBuf, String, &'static str)> {
    let p = prefix(project);
    let (a, b) = (format!("{p}-1"), format!("{p}-2"));
    let dir = Path::new("docs/projects").join(project);
    let milestone = format!(
        "---\nid: {MILESTONE}\ntitle: First milestone\n---\n\n# {MILESTONE}: First milestone\n\n\
         What this milestone delivers, in a sentence or two. `loop run -m {MILESTONE}` runs its issues in\n\
         dependency order, each in a git worktree of its own: dev, then review, then fixes.\n\n\
         ## Issue Map\n\n\
         The map is checked against the issue docs: its \"Blocked by\" column must say what their\n\
         `blocked_by` says.\n\n\
         | ID | Title | Blocked by |\n|----|-------|------------|\n\
         | [{a}](../issues/{a}.md) | Write the first piece | — |\n\
         | [{b}](../issues/{b}.md) | Build on the first piece | {a} |\n"
    );
    let issue_a = format!(
        "---\nid: {a}                   # unique across the repository\ntitle: Write the first piece\n\
         milestone: {MILESTONE}\n\
         # verify: [\"cargo test -q\"]   # checks loop runs itself (`sh -c`) after dev and each fix\n---\n\n\
         # {a}: Write the first piece\n\n\
         What the agent should build, as you would write it for a colleague: the goal, the constraints,\n\
         what \"done\" means and how to check it. The dev agent reads this doc; the reviewer holds the\n\
         work against it.\n"
    );
    let issue_b = format!(
        "---\nid: {b}\ntitle: Build on the first piece\nmilestone: {MILESTONE}\n\
         blocked_by: [{a}]            # starts from {a}'s branch once {a} is Done\n---\n\n\
         # {b}: Build on the first piece\n\n\
         An issue that needs another one first: loop runs it after {a} ends Done, on a branch that\n\
         starts from {a}'s work. If {a} does not end Done, {b} ends Blocked without starting.\n"
    );
    let reviews = format!(
        "# Reviews\n\nloop appends each review of an issue to `{MILESTONE}/<issue>.md` here, on the issue's branch\n\
         (`[run] review_doc = false` in loop.toml turns this off).\n"
    );
    vec![
        (dir.join("milestones").join(format!("{MILESTONE}.md")), milestone, "a milestone with an Issue Map"),
        (dir.join("issues").join(format!("{a}.md")), issue_a, "a sample issue"),
        (dir.join("issues").join(format!("{b}.md")), issue_b, "a sample issue, blocked by the first"),
        (dir.join("reviews").join("README.md"), reviews, "where loop writes reviews"),
        (PathBuf::from(FILE_NAME), crate::config::keys::commented_toml(), "every setting, commented out"),
    ]
}

pub fn run(args: InitArgs) -> Result<ExitCode, CliError> {
    let dir = std::path::absolute(&args.repo).map_err(|e| CliError::io(&args.repo, e))?;
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("--repo {}: no such directory", args.repo.display())));
    }
    let repo = crate::workspace::GitWorkspace::toplevel(&dir).map_err(|_| {
        CliError::Usage(format!(
            "{} is not inside a git repository: loop runs issues on git branches and worktrees; \
             run `git init` (and make a first commit) there first",
            dir.display()
        ))
    })?;
    let project = match &args.project {
        Some(p) => {
            check_project(p)?;
            p.clone()
        }
        None => project_name(&repo.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
    };
    let files = scaffold(&project);
    // Everything is checked before anything is written: a refusal leaves the repo as it was.
    let mut existing = Vec::new();
    for (rel, _, _) in &files {
        crate::safefs::check(&repo, rel).map_err(|e| CliError::Fs { context: "loop init".into(), source: e })?;
        if std::fs::symlink_metadata(repo.join(rel)).is_ok() {
            existing.push(rel.display().to_string());
        }
    }
    if !existing.is_empty() {
        return Err(CliError::Usage(format!(
            "loop init never overwrites a file, and these exist already: {}; nothing was written",
            existing.join(", ")
        )));
    }
    for (rel, text, _) in &files {
        crate::safefs::write(&repo, rel, text.as_bytes())
            .map_err(|e| CliError::Fs { context: "loop init".into(), source: e })?;
    }
    let next = vec![
        format!("git add docs/projects/{project} {FILE_NAME} && git commit -m \"loop: project {project}\"   # loop runs committed docs"),
        format!("loop plan -m {MILESTONE}"),
        format!("loop run -m {MILESTONE} --dry-run"),
        format!("loop run -m {MILESTONE} --agent sim   # the simulated agent: the whole loop, no model"),
        format!("loop run -m {MILESTONE}"),
    ];
    let made: Vec<(String, &str)> = files.iter().map(|(rel, _, what)| (rel.display().to_string(), *what)).collect();
    if args.json {
        let v = json!({
            "project": project,
            "repo": repo.display().to_string(),
            "milestone": MILESTONE,
            "files": made.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "next": next,
        });
        crate::outln!("{v}");
    } else {
        crate::out!("{}", crate::render::start::init_text(&project, &repo, &made, &next));
    }
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_made_valid() {
        assert_eq!(project_name("My App"), "my-app");
        assert_eq!(project_name("--x__y..z--"), "x__y-z");
        assert_eq!(project_name("日本"), "project");
        assert_eq!(project_name(""), "project");
        for n in ["My App", "a.b", "x"] {
            assert!(check_project(&project_name(n)).is_ok(), "{n}");
        }
        assert!(check_project("../x").is_err());
        assert!(check_project("a/b").is_err());
        assert!(check_project(".hidden").is_err());
        assert_eq!(prefix("my-app"), "MYAPP");
        assert_eq!(prefix("--"), "ISSUE");
    }

    /// The sample docs load, plan, and say what the map says.
    #[test]
    fn the_scaffold_passes_the_doc_checks() {
        let d = tempfile::tempdir().unwrap();
        for (rel, text, _) in scaffold("shop") {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let docs = crate::docs::load(d.path()).unwrap();
        assert_eq!(docs.milestone_ids(), [MILESTONE]);
        let plan = crate::plan::build(&docs, MILESTONE).unwrap();
        let order: Vec<&str> = plan.order.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, ["SHOP-1", "SHOP-2"]);
        assert_eq!(docs.issue("SHOP-2").unwrap().blocked_by[0].id, "SHOP-1");
    }
}
