//! Agent outputs: the two schemas, validation, and the typed results the engine decides on.
//!
//! Invariant: an output is accepted only if it parses as JSON *and* validates against its
//! phase's schema; nothing is guessed from a reply that does not. (codex does not enforce
//! `--output-schema`, so this check is the only one.)

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::machine::{Phase, Verdict, WorkStatus};

pub const DEV_SCHEMA: &str = include_str!("../../schemas/dev.schema.json");
pub const REVIEW_SCHEMA: &str = include_str!("../../schemas/review.schema.json");

/// The schema text for a phase (dev and fix share one).
pub fn schema_text(phase: Phase) -> &'static str {
    match phase {
        Phase::Dev | Phase::Fix => DEV_SCHEMA,
        Phase::Review => REVIEW_SCHEMA,
    }
}

pub fn schema_file_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Dev | Phase::Fix => "dev.schema.json",
        Phase::Review => "review.schema.json",
    }
}

fn validator(phase: Phase) -> &'static jsonschema::Validator {
    static DEV: OnceLock<jsonschema::Validator> = OnceLock::new();
    static REVIEW: OnceLock<jsonschema::Validator> = OnceLock::new();
    let (cell, text) = match phase {
        Phase::Dev | Phase::Fix => (&DEV, DEV_SCHEMA),
        Phase::Review => (&REVIEW, REVIEW_SCHEMA),
    };
    cell.get_or_init(|| {
        let schema: Value = serde_json::from_str(text).expect("built-in schema is JSON");
        jsonschema::validator_for(&schema).expect("built-in schema is a valid JSON Schema")
    })
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutputError {
    #[error("the {phase} agent's final message is not JSON ({detail}); it began: {start:?}")]
    NotJson { phase: Phase, detail: String, start: String },
    #[error("the {phase} agent's output breaks {schema}: {}", .errors.join("; "))]
    Schema { phase: Phase, schema: &'static str, errors: Vec<String> },
    #[error("the {phase} agent sent no final message")]
    Empty { phase: Phase },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TestRun {
    pub command: String,
    pub status: String,
    pub notes: String,
}

/// A validated dev or fix result.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WorkOutput {
    pub status: WorkStatus,
    pub branch: String,
    pub worktree: Option<String>,
    pub stack_branches: Vec<String>,
    pub draft_prs: Vec<String>,
    pub tests_run: Vec<TestRun>,
    pub docs_updated: Vec<String>,
    pub deferred: Vec<String>,
    pub open_questions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Finding {
    pub severity: String,
    pub title: String,
    pub details: String,
    pub evidence: Vec<String>,
}

/// A validated review result.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ReviewOutput {
    pub status: Verdict,
    pub summary: String,
    pub issues: Vec<Finding>,
    pub required_actions: Vec<String>,
    pub followups: Vec<String>,
    pub review_doc_path: Option<String>,
    pub review_entry_written: bool,
    pub confidence: String,
}

/// Parses and validates a final message against the phase's schema.
pub fn validate(phase: Phase, text: &str) -> Result<Value, OutputError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(OutputError::Empty { phase });
    }
    let value: Value = serde_json::from_str(trimmed).map_err(|e| OutputError::NotJson {
        phase,
        detail: e.to_string(),
        start: trimmed.chars().take(60).collect(),
    })?;
    let errors: Vec<String> = validator(phase)
        .iter_errors(&value)
        .take(8)
        .map(|e| {
            let at = e.instance_path().to_string();
            // The message quotes the reply's own keys and values (fuzz: `agent_output`).
            crate::text::printable(&format!("{}: {e}", if at.is_empty() { "/" } else { &at }), 300)
        })
        .collect();
    if !errors.is_empty() {
        return Err(OutputError::Schema { phase, schema: schema_file_name(phase), errors });
    }
    Ok(value)
}

pub fn parse_work(phase: Phase, text: &str) -> Result<WorkOutput, OutputError> {
    let v = validate(phase, text)?;
    serde_json::from_value(v).map_err(|e| OutputError::Schema {
        phase,
        schema: schema_file_name(phase),
        errors: vec![e.to_string()],
    })
}

pub fn parse_review(text: &str) -> Result<ReviewOutput, OutputError> {
    let v = validate(Phase::Review, text)?;
    serde_json::from_value(v).map_err(|e| OutputError::Schema {
        phase: Phase::Review,
        schema: schema_file_name(Phase::Review),
        errors: vec![e.to_string()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_review_parses() {
        let text = r#"{"status":"changes_required","summary":"s","issues":[{"severity":"high","title":"t","details":"d","evidence":["a.rs:1"]}],
            "required_actions":["fix a"],"followups":[],"review_doc_path":null,"review_entry_written":false,"confidence":"high"}"#;
        let r = parse_review(text).unwrap();
        assert_eq!(r.status, Verdict::ChangesRequired);
        assert_eq!(r.required_actions, ["fix a"]);
    }

    #[test]
    fn not_json_and_schema_breaks_are_told_apart() {
        assert!(matches!(validate(Phase::Dev, "not json"), Err(OutputError::NotJson { .. })));
        let err = validate(Phase::Review, r#"{"status":"maybe"}"#).unwrap_err();
        let OutputError::Schema { errors, .. } = &err else { panic!("{err:?}") };
        assert!(errors.iter().any(|e| e.contains("status") || e.contains("required")), "{errors:?}");
        assert!(matches!(validate(Phase::Fix, "  "), Err(OutputError::Empty { .. })));
    }
}
