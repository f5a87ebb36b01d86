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
    toml::from_str(text).map_err(|e: toml::de::Error| {
        // An error at the very end (after the last newline) is reported on the last line.
        let last = text.lines().count().max(1);
        let line = e.span().map_or(1, |s| {
            text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
        });
        let line = line.min(last);
        // toml's own message repeats the location and quotes the source; keep only its reason.
        ConfigError::Parse { path: path.display().to_string(), line, message: e.message().trim().to_string() }
    })
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
    fn missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), LoopConfig::default());
    }
}
