//! What `loop config` and `loop init` print: the effective settings with their sources, and
//! what a scaffold made and what to run next.

use std::path::Path;

use serde_json::Value;

use crate::config::keys::{toml_value, Setting, Source};

/// A setting's value as `loop config` shows it: TOML, or `unset`.
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "unset".to_string(),
        other => toml_value(other),
    }
}

/// Where a setting came from, in a few words: `default`, `loop.toml:3`, `env LOOP_CODEX_BIN`,
/// `flag --model`. A file is named relative to `repo` where it can be.
fn source_text(s: &Source, repo: &Path) -> String {
    match s {
        Source::Default => "default".to_string(),
        Source::Flag { flag } => format!("flag {flag}"),
        Source::Env { env } => format!("env {env}"),
        Source::File { file, line } => format!("{}:{line}", file.strip_prefix(repo).unwrap_or(file).display()),
    }
}

/// `key = value  (source)`, one setting a line, keys and values aligned. `file`: loop.toml's path
/// and whether it exists, for the heading line.
pub fn config_text(settings: &[Setting], repo: &Path, file: &Path, exists: bool) -> String {
    let rows: Vec<(String, String, String)> = settings
        .iter()
        .map(|s| {
            let value = crate::text::printable(&value_text(&s.value), 200);
            (s.key.clone(), value, source_text(&s.source, repo))
        })
        .collect();
    let kw = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    // A long value (a list of commands) would push every source far right: cap the column.
    let vw = rows.iter().map(|r| r.1.chars().count()).filter(|&n| n <= 32).max().unwrap_or(0);
    let mut out = match exists {
        true => format!(
            "# {} (precedence: default < file < env < flag)\n",
            crate::text::printable(&file.display().to_string(), usize::MAX)
        ),
        false => format!(
            "# no {} (precedence: default < file < env < flag; `loop init` writes a commented one)\n",
            crate::text::printable(&file.display().to_string(), usize::MAX)
        ),
    };
    for (k, v, s) in rows {
        out.push_str(&format!("{k:<kw$} = {v:<vw$}  ({s})\n"));
    }
    out
}

/// What `loop init` made (paths relative to the repo) and the commands to run next.
pub fn init_text(project: &str, repo: &Path, made: &[(String, &str)], next: &[String]) -> String {
    let mut out = format!(
        "loop init: project {} in {}\n",
        crate::text::printable(project, usize::MAX),
        crate::text::printable(&repo.display().to_string(), usize::MAX)
    );
    let w = made.iter().map(|(p, _)| p.chars().count()).max().unwrap_or(0);
    for (path, what) in made {
        out.push_str(&format!("  made {path:<w$}  {what}\n"));
    }
    out.push_str("next:\n");
    for n in next {
        out.push_str(&format!("  {n}\n"));
    }
    out
}
