//! The `dev-auto-*` prompt templates and their rendering.
//!
//! Invariants:
//! - Three templates ship inside the binary (`prompts/*.md`, via `include_str!`); a file of the same
//!   name in the user's prompts dir (`[prompts] dir` in loop.toml) replaces the built-in one.
//! - Rendering is explicit: every `{{name}}` must be one of [`INPUTS`] and every input is given,
//!   so a typo in a user's template fails before any agent runs instead of reaching the model.

use std::path::{Path, PathBuf};

use crate::machine::Phase;

/// (name, built-in text, phase it drives)
pub const BUILTIN: &[(&str, &str, Phase)] = &[
    ("dev-auto-parallel", include_str!("../prompts/dev-auto-parallel.md"), Phase::Dev),
    ("dev-auto-review-linear", include_str!("../prompts/dev-auto-review-linear.md"), Phase::Review),
    ("dev-auto-fix-review", include_str!("../prompts/dev-auto-fix-review.md"), Phase::Fix),
];

/// The placeholders a template may use.
pub const INPUTS: &[&str] = &[
    "run_id",
    "issue_id",
    "issue_title",
    "issue_doc",
    "milestone",
    "branch",
    "worktree",
    "cycle",
    "review_number",
    "required_actions",
    "review_doc",
    "schema",
    "verification",
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("no prompt named '{0}' (known: dev-auto-parallel, dev-auto-review-linear, dev-auto-fix-review)")]
    Unknown(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{source_name}:{line}: unknown placeholder {{{{{name}}}}} (known: {})", INPUTS.join(", "))]
    Placeholder { source_name: String, line: usize, name: String },
}

/// The template name that drives a phase.
pub fn name_for(phase: Phase) -> &'static str {
    BUILTIN.iter().find(|(_, _, p)| *p == phase).map(|(n, _, _)| *n).expect("every phase has a prompt")
}

/// A template's text and where it came from (a path, or "built-in").
#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    pub text: String,
    pub source: String,
}

/// Loads a template: the user's override in `dir` when present, else the built-in one.
pub fn load(name: &str, dir: Option<&Path>) -> Result<Template, PromptError> {
    let builtin = BUILTIN.iter().find(|(n, _, _)| *n == name).ok_or_else(|| PromptError::Unknown(name.into()))?;
    if let Some(d) = dir {
        let p = d.join(format!("{name}.md"));
        match std::fs::read_to_string(&p) {
            Ok(text) => return Ok(Template { name: name.into(), text, source: p.display().to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(PromptError::Io { path: p.display().to_string(), source }),
        }
    }
    Ok(Template { name: name.into(), text: builtin.1.to_string(), source: "built-in".into() })
}

/// Replaces every `{{name}}` with its value; unknown names are errors naming the line.
pub fn render(t: &Template, values: &[(&str, String)]) -> Result<String, PromptError> {
    let mut out = String::with_capacity(t.text.len() + 256);
    let mut rest = t.text.as_str();
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[at..]);
            rest = "";
            break;
        };
        let name = after[..end].trim();
        match values.iter().find(|(k, _)| *k == name) {
            Some((_, v)) if INPUTS.contains(&name) => out.push_str(v),
            _ => {
                let consumed = t.text.len() - rest.len() + at;
                let line = t.text[..consumed].matches('\n').count() + 1;
                return Err(PromptError::Placeholder { source_name: t.source.clone(), line, name: name.to_string() });
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What each input reads in an installed copy of a template, run by hand as `/NAME ISSUE_ID
/// [CYCLE]` in Codex or Claude Code: both CLIs put the command's arguments in `$1`, `$2`. No
/// `{{name}}` is left for the model to puzzle over.
const BY_HAND: &[(&str, &str)] = &[
    ("run_id", "none (run by hand, not by loop)"),
    ("issue_id", "$1"),
    ("issue_title", "see its issue doc"),
    ("issue_doc", "the issue doc whose front matter has `id: $1`, under docs/projects/*/issues/"),
    ("milestone", "named in the issue doc's front matter"),
    ("branch", "the branch checked out in the current directory"),
    ("worktree", "the current directory"),
    ("cycle", "$2"),
    ("review_number", "the next one"),
    ("required_actions", "Read them from the latest review of $1 in its review doc."),
    ("review_doc", "docs/projects/<project>/reviews/<milestone>/$1.md"),
    ("verification", "loop did not verify this commit: run the project's checks yourself."),
];

/// A template as `loop prompts install` writes it: front matter both CLIs read (a description
/// and the argument hint), then the text with every input replaced by what it reads by hand.
/// `schema` names the phase's output schema (the agent layer knows which).
pub fn render_for_install(t: &Template, phase: Phase, schema: &str) -> Result<String, PromptError> {
    let mut values: Vec<(&str, String)> = BY_HAND.iter().map(|(k, v)| (*k, v.to_string())).collect();
    values.push(("schema", schema.to_string()));
    let body = render(t, &values)?;
    let hint = if phase == Phase::Dev { "ISSUE_ID" } else { "ISSUE_ID [CYCLE]" };
    Ok(format!(
        "---\ndescription: loop's {phase} phase for one issue, by hand (loop run drives it headless)\n\
         argument-hint: {hint}\n---\n\n{body}",
        phase = phase.as_str()
    ))
}

/// Where `loop prompts install` writes: Codex's and Claude Code's prompt dirs, each as the root
/// the user named (trusted as given) and the dir below it (walked without following symlinks).
pub fn install_targets(codex_home: Option<PathBuf>, claude_dir: Option<PathBuf>) -> Vec<(PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let codex =
        codex_home.or_else(|| std::env::var_os("CODEX_HOME").map(PathBuf::from)).unwrap_or_else(|| home.join(".codex"));
    let claude = claude_dir.unwrap_or_else(|| home.join(".claude").join("commands"));
    vec![(codex, PathBuf::from("prompts")), (claude, PathBuf::new())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_inputs() -> Vec<(&'static str, String)> {
        INPUTS.iter().map(|k| (*k, format!("<{k}>"))).collect()
    }

    /// #14: installed commands had raw `{{issue_id}}` in them.
    #[test]
    fn installed_templates_have_no_placeholder_left_and_take_the_issue_as_an_argument() {
        for (name, _, phase) in BUILTIN {
            let text = render_for_install(&load(name, None).unwrap(), *phase, "s.json").unwrap();
            assert!(!text.contains("{{"), "{name}: {text}");
            assert!(text.starts_with("---\ndescription: loop's"), "{name}");
            assert!(text.contains("argument-hint: ISSUE_ID"), "{name}");
            assert!(text.contains("**$1**"), "{name}: the issue id is not the first argument");
        }
    }

    #[test]
    fn builtins_render_and_state_the_contract() {
        for (name, _, _) in BUILTIN {
            let t = load(name, None).unwrap();
            let text = render(&t, &all_inputs()).unwrap();
            assert!(!text.contains("{{"), "{name}");
            assert!(text.contains("<issue_id>") && text.contains("<issue_doc>") && text.contains("<schema>"), "{name}");
            for must in ["worktree", "restack", "publish", "JSON"] {
                assert!(text.contains(must), "{name} does not mention {must}");
            }
        }
    }

    #[test]
    fn unknown_placeholder_names_its_line() {
        let t = Template { name: "x".into(), text: "a\nb {{isue_id}}\n".into(), source: "my.md".into() };
        let err = render(&t, &all_inputs()).unwrap_err().to_string();
        assert!(err.starts_with("my.md:2: unknown placeholder {{isue_id}}"), "{err}");
    }

    #[test]
    fn user_dir_overrides_builtin() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("dev-auto-parallel.md"), "mine {{issue_id}}").unwrap();
        let t = load("dev-auto-parallel", Some(d.path())).unwrap();
        assert_eq!(render(&t, &all_inputs()).unwrap(), "mine <issue_id>");
        assert_eq!(load("dev-auto-fix-review", Some(d.path())).unwrap().source, "built-in");
    }
}
