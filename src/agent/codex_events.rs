//! The JSON-lines stream of `codex exec --json`, as typed events.
//!
//! Invariant: parsing never fails a phase. Unknown event and item types become
//! [`Event::Unknown`] / [`Item::Other`] (they stay in the raw log), and a line that is not JSON is
//! reported to the caller to log, not to act on. Shapes are those of codex 0.169.0.

use serde::Deserialize;
use serde_json::Value;

use super::jsonl::{brief, parse_or_note, str_of};

use super::Tokens;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    ThreadStarted { thread_id: String },
    TurnStarted,
    TurnCompleted { usage: Tokens },
    TurnFailed { message: String },
    Error { message: String },
    ItemStarted(Item),
    ItemUpdated(Item),
    ItemCompleted(Item),
    Unknown { kind: String },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    AgentMessage { text: String },
    CommandExecution { command: String, exit_code: Option<i64>, status: String },
    FileChange { paths: Vec<String> },
    Reasoning,
    Error { message: String },
    Other { kind: String },
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    cached_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    reasoning_output_tokens: u64,
}

fn item(v: &Value) -> Item {
    let kind = str_of(v, "type");
    match kind.as_str() {
        "agent_message" => Item::AgentMessage { text: str_of(v, "text") },
        "command_execution" => Item::CommandExecution {
            command: str_of(v, "command"),
            exit_code: v.get("exit_code").and_then(Value::as_i64),
            status: str_of(v, "status"),
        },
        "file_change" => Item::FileChange {
            paths: v
                .get("changes")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|c| str_of(c, "path")).collect())
                .unwrap_or_default(),
        },
        "reasoning" => Item::Reasoning,
        "error" => Item::Error { message: str_of(v, "message") },
        _ => Item::Other { kind },
    }
}

/// Parses one stdout line. `Err` carries the JSON error for a line that is not JSON at all.
pub fn parse_line(line: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let kind = str_of(&v, "type");
    let item_of = || item(v.get("item").unwrap_or(&Value::Null));
    Ok(match kind.as_str() {
        // Without a thread id there is nothing to journal or resume: noted, not acted on.
        "thread.started" => match str_of(&v, "thread_id") {
            id if id.is_empty() => Event::Unknown { kind: "thread.started without thread_id".into() },
            thread_id => Event::ThreadStarted { thread_id },
        },
        "turn.started" => Event::TurnStarted,
        "turn.completed" => {
            let u: Option<RawUsage> = v.get("usage").and_then(|u| serde_json::from_value(u.clone()).ok());
            let usage = u
                .map(|u| Tokens {
                    input: u.input_tokens,
                    cached_input: u.cached_input_tokens,
                    output: u.output_tokens,
                    reasoning_output: u.reasoning_output_tokens,
                })
                .unwrap_or_default();
            Event::TurnCompleted { usage }
        }
        "turn.failed" => {
            Event::TurnFailed { message: v.get("error").map(|e| str_of(e, "message")).unwrap_or_default() }
        }
        "error" => Event::Error { message: str_of(&v, "message") },
        "item.started" => Event::ItemStarted(item_of()),
        "item.updated" => Event::ItemUpdated(item_of()),
        "item.completed" => Event::ItemCompleted(item_of()),
        _ => Event::Unknown { kind },
    })
}

/// What a whole stream amounted to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub thread_id: Option<String>,
    /// The last completed agent_message, verbatim.
    pub final_message: Option<String>,
    /// The last turn.completed usage (cumulative over a resumed thread).
    pub usage: Option<Tokens>,
    /// turn.failed and error messages, in order.
    pub errors: Vec<String>,
    pub commands: Vec<(String, Option<i64>)>,
    pub files_changed: Vec<String>,
    /// Event or item types this loop does not know, and lines that were not JSON.
    pub unknown: Vec<String>,
}

impl Summary {
    pub fn absorb(&mut self, line: &str) -> Option<Event> {
        let ev = parse_or_note(line, &mut self.unknown, parse_line)?;
        match &ev {
            Event::ThreadStarted { thread_id } => self.thread_id = Some(thread_id.clone()),
            Event::TurnCompleted { usage } => self.usage = Some(*usage),
            Event::TurnFailed { message } | Event::Error { message } if !self.errors.contains(message) => {
                self.errors.push(message.clone())
            }
            Event::ItemCompleted(Item::AgentMessage { text }) => self.final_message = Some(text.clone()),
            Event::ItemCompleted(Item::CommandExecution { command, exit_code, .. }) => {
                self.commands.push((command.clone(), *exit_code))
            }
            Event::ItemCompleted(Item::FileChange { paths }) => self.files_changed.extend(paths.iter().cloned()),
            Event::ItemStarted(Item::Other { kind })
            | Event::ItemUpdated(Item::Other { kind })
            | Event::ItemCompleted(Item::Other { kind }) => self.unknown.push(format!("item {}", brief(kind))),
            Event::Unknown { kind } => self.unknown.push(format!("event {}", brief(kind))),
            _ => {}
        }
        Some(ev)
    }

    /// What the codex driver makes of a whole stdout: split into lines exactly as
    /// [`crate::proc::run_streaming`] does (the last line may lack its `\n`), each absorbed.
    pub fn of_stdout(stdout: &[u8]) -> Summary {
        let mut s = Summary::default();
        for raw in stdout.split_inclusive(|&b| b == b'\n') {
            s.absorb(&crate::proc::line_text(raw));
        }
        s
    }

    pub fn of(stream: &str) -> Summary {
        let mut s = Summary::default();
        for l in stream.lines() {
            s.absorb(l);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = include_str!("../../tests/fixtures/codex/dev-success.jsonl");
    const FAILURE: &str = include_str!("../../tests/fixtures/codex/turn-failed.jsonl");
    const UNKNOWN: &str = include_str!("../../tests/fixtures/codex/unknown-types.jsonl");

    #[test]
    fn success_stream_summarises() {
        let s = Summary::of(SUCCESS);
        assert_eq!(s.thread_id.as_deref(), Some("01a20ffa-1c2d-7e3f-8a9b-0c1d2e3f4a5b"));
        assert!(s.final_message.as_deref().unwrap().starts_with("{\"status\": \"pass\""));
        assert_eq!(s.usage, Some(Tokens { input: 20, cached_input: 0, output: 10, reasoning_output: 0 }));
        assert_eq!(s.commands, [("/bin/bash -lc 'touch hello.txt'".to_string(), Some(0))]);
        assert_eq!(s.files_changed, ["hello.txt"]);
        assert!(s.errors.is_empty() && s.unknown.is_empty(), "{s:?}");
    }

    /// Recorded from codex 0.169.0 (`exec --json`, a mocked model that ran one shell command).
    const RECORDED: &str = include_str!("../../tests/fixtures/codex/recorded-0.169.0-dev.jsonl");

    #[test]
    fn recorded_stream_of_the_real_cli_parses() {
        let s = Summary::of(RECORDED);
        assert_eq!(s.thread_id.as_deref(), Some("01a21024-df2e-72a0-9324-6017e7891bdf"));
        assert_eq!(s.final_message.as_deref(), Some("{\"status\":\"pass\"}"));
        assert_eq!(s.commands.len(), 1);
        assert!(s.commands[0].0.contains("hello.txt") && s.commands[0].1 == Some(0));
        assert_eq!(s.usage, Some(Tokens { input: 200, cached_input: 0, output: 40, reasoning_output: 0 }));
        assert!(s.errors.is_empty() && s.unknown.is_empty(), "{s:?}");
    }

    #[test]
    fn failure_stream_keeps_the_message() {
        let s = Summary::of(FAILURE);
        assert_eq!(s.errors, ["unexpected status 500 Internal Server Error: model overloaded"]);
        assert_eq!(s.final_message, None);
    }

    #[test]
    fn unknown_types_are_kept_not_fatal() {
        let s = Summary::of(UNKNOWN);
        assert_eq!(s.final_message.as_deref(), Some("{}"));
        assert_eq!(
            s.unknown,
            ["event thread.renamed", "item todo_list", "item web_search", "non-JSON line: not json at all"]
        );
        assert_eq!(parse_line(r#"{"type":"x.y","z":1}"#), Ok(Event::Unknown { kind: "x.y".into() }));
    }
}
