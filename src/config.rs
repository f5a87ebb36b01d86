//! `loop.toml` at the repo root: optional settings for runs and the codex agent.
//!
//! Invariants: every key is optional and unknown keys are errors (a misspelt key must not be
//! silently ignored); errors name the file and line. Flags and environment override the file;
//! the merged result is recorded in the journal, so `loop resume` never re-reads this file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const FILE_NAME: &str = "loop.toml";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub codex: CodexConfig,
    #[serde(default)]
    pub prompts: PromptsConfig,
    #[serde(default)]
    pub guard: GuardTable,
}

/// `[guard]`: the team's command policy (docs in README "Safety"). Flags override it:
/// `--allow-dirty` turns `allow_dirty` on, `--no-guard` turns `checks` and `shims` off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardTable {
    /// Before/after-phase checks (default true).
    pub checks: Option<bool>,
    /// Start phases on a dirty main checkout (default false; recorded when used).
    pub allow_dirty: Option<bool>,
    /// git/gt shims in the agent's login shell (default true).
    pub shims: Option<bool>,
    /// Command prefixes to allow, e.g. `"gt submit --stack"`; checked after `deny`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Command prefixes to refuse, e.g. `"git stash drop"`; checked first.
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seconds one agent phase may take.
    /// Signed like every TOML integer, so a value beyond i64 is a parse error with its line.
    pub phase_timeout: Option<i64>,
    pub max_fix_cycles: Option<u32>,
    pub max_tokens_per_issue: Option<i64>,
    /// Append each review to docs/projects/<project>/reviews/REVIEW-<milestone>.md (default true).
    pub review_doc: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodexConfig {
    /// The codex binary (default `codex` on PATH; `LOOP_CODEX_BIN` overrides).
    pub bin: Option<String>,
    pub model: Option<String>,
    /// `codex exec -p PROFILE`.
    pub profile: Option<String>,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Extra `-c key=value` overrides, passed in order.
    #[serde(default)]
    pub config: Vec<String>,
    /// How many times an unusable final message is asked again via `codex exec resume` (default 1).
    pub retries: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub dev: Option<String>,
    pub review: Option<String>,
    pub fix: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PromptsConfig {
    /// A directory whose `<name>.md` files replace the built-in templates (relative to the repo).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Reads `<repo>/loop.toml`; a missing file is the empty config.
pub fn load(repo: &Path) -> Result<LoopConfig, ConfigError> {
    let path = repo.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LoopConfig::default()),
        Err(source) => Err(ConfigError::Io { path: path.display().to_string(), source }),
    }
}

pub fn parse(text: &str, path: &Path) -> Result<LoopConfig, ConfigError> {
    let cfg: LoopConfig = toml::from_str(text).map_err(|e: toml::de::Error| {
        // An error at the very end (after the last newline) is reported on the last line.
        let last = text.lines().count().max(1);
        let line = e.span().map_or(1, |s| {
            text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
        });
        let line = line.min(last);
        // toml's own message repeats the location and quotes the source; keep only its reason.
        ConfigError::Parse { path: path.display().to_string(), line, message: e.message().trim().to_string() }
    })?;
    check_guard(&cfg.guard, text, path)?;
    Ok(cfg)
}

/// A `[guard]` pattern names git or gt and at least one command word: a bare `gt` would
/// allow (or refuse) every Graphite command, which is never what a team means.
fn check_guard(g: &GuardTable, text: &str, path: &Path) -> Result<(), ConfigError> {
    for (key, pats) in [("allow", &g.allow), ("deny", &g.deny)] {
        for pat in pats {
            let words: Vec<&str> = pat.split_whitespace().collect();
            if matches!(words.as_slice(), ["git" | "gt", _, ..]) {
                continue;
            }
            // The line of the first occurrence of the quoted pattern (1 if it cannot be found).
            let line = text
                .lines()
                .position(|l| l.contains(&format!("\"{pat}\"")) || l.contains(&format!("'{pat}'")))
                .map_or(1, |i| i + 1);
            let shown: String = pat.chars().take(80).flat_map(char::escape_default).collect();
            return Err(ConfigError::Parse {
                path: path.display().to_string(),
                line,
                message: format!(
                    "[guard] {key} pattern \"{shown}\" must start with `git` or `gt` and a command, e.g. \"gt submit --stack\""
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses() {
        let text = r#"
[run]
phase_timeout = 600
max_tokens_per_issue = 100000
review_doc = false

[codex]
bin = "/opt/codex"
model = "gpt-5.5"
config = ["model_reasoning_effort=\"high\""]
retries = 2
[codex.sandbox]
review = "workspace-write"

[prompts]
dir = "team-prompts"
"#;
        let c = parse(text, Path::new("loop.toml")).unwrap();
        assert_eq!(c.run.phase_timeout, Some(600));
        assert_eq!(c.codex.sandbox.review.as_deref(), Some("workspace-write"));
        assert_eq!(c.codex.config.len(), 1);
        assert_eq!(c.prompts.dir.as_deref(), Some(Path::new("team-prompts")));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse("[codex]\nmodel = \"x\"\nmodle = \"y\"\n", Path::new("/r/loop.toml")).unwrap_err().to_string();
        assert!(err.starts_with("/r/loop.toml:3: unknown field `modle`"), "{err}");
    }

    #[test]
    fn guard_table_parses_and_bad_patterns_name_their_line() {
        let c = parse("[guard]\nallow_dirty = true\ndeny = [\"git stash drop\"]\nallow = [\"gt submit --stack\"]\n", Path::new("l.toml")).unwrap();
        assert_eq!(c.guard.allow_dirty, Some(true));
        assert_eq!(c.guard.deny, ["git stash drop"]);
        assert_eq!(c.guard.allow, ["gt submit --stack"]);
        let err = parse("[guard]\nchecks = true\nallow = [\n  \"gt\",\n]\n", Path::new("l.toml")).unwrap_err().to_string();
        assert!(err.starts_with("l.toml:4: [guard] allow pattern \"gt\" must start"), "{err}");
        let err = parse("[guard]\ndeny = ['rm -rf']\n", Path::new("l.toml")).unwrap_err().to_string();
        assert!(err.starts_with("l.toml:2: [guard] deny pattern \"rm -rf\""), "{err}");
        let err = parse("[guard]\nshim = false\n", Path::new("l.toml")).unwrap_err().to_string();
        assert!(err.starts_with("l.toml:2: unknown field `shim`"), "{err}");
    }

    #[test]
    fn missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), LoopConfig::default());
    }
}
