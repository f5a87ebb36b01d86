//! The JSON-lines stream of `claude -p --output-format stream-json --verbose`, as typed events.
//!
//! Invariants (as for [`super::codex_events`]): parsing never fails a phase. Unknown line types
//! become [`Event::Unknown`] (they stay in the raw log) and a line that is not JSON is noted, not
//! acted on. Shapes are those of Claude Code 2.1.x (`/work/shared/notes` facts in the module docs
//! of [`super::claude`]): a `system`/`init` line with the session id first, `assistant` and `user`
//! turns, and one `result` line last that carries the structured reply, the usage and the cost.
//!
//! Token accounting: Anthropic's `input_tokens` excludes cache reads and cache writes, while
//! [`Tokens::input`] (codex's meaning) counts every prompt token; so `input` here is the sum of the
//! three and `cached_input` the cache reads.

use serde_json::Value;

use super::jsonl::{brief, parse_or_note, str_of};

use super::Tokens;

/// The last line of a run: what the engine gets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultLine {
    /// `success`, `error_max_turns`, `error_during_execution`, … (not a verdict: see `is_error`).
    pub subtype: String,
    pub is_error: bool,
    /// The model's last text (with a structured reply, the reply again as a string).
    pub result: String,
    pub session_id: Option<String>,
    /// The StructuredOutput tool's input, when the model called it.
    pub structured_output: Option<Value>,
    pub usage: Option<Tokens>,
    pub total_cost_usd: Option<f64>,
    /// `tool_name: detail` for each call a permission rule or the hook refused.
    pub permission_denials: Vec<String>,
    pub num_turns: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `system`/`init`: the session exists.
    Init {
        session_id: String,
    },
    /// An assistant turn; the names of the tools it called.
    Assistant {
        tools: Vec<String>,
    },
    /// A tool result handed back to the model.
    ToolResult,
    /// Any other `system` subtype (hooks, compaction, …).
    System {
        subtype: String,
    },
    Result(Box<ResultLine>),
    Unknown {
        kind: String,
    },
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `usage` of a result line (or of one message).
pub fn tokens_of(usage: &Value) -> Tokens {
    let cache_read = u64_of(usage, "cache_read_input_tokens");
    Tokens {
        input: u64_of(usage, "input_tokens")
            .saturating_add(cache_read)
            .saturating_add(u64_of(usage, "cache_creation_input_tokens")),
        cached_input: cache_read,
        output: u64_of(usage, "output_tokens"),
        reasoning_output: 0,
    }
}

/// One denial as `Tool: what` (a Bash command, a file path), printable and short.
fn denial(d: &Value) -> String {
    let tool = str_of(d, "tool_name");
    let input = d.get("tool_input").unwrap_or(&Value::Null);
    let what = ["command", "file_path", "notebook_path", "path"]
        .iter()
        .find_map(|k| input.get(k).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| input.to_string());
    crate::text::printable(&format!("{tool}: {what}"), 200)
}

fn result_line(v: &Value) -> ResultLine {
    ResultLine {
        subtype: str_of(v, "subtype"),
        // A result without the flag says nothing good about itself.
        is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(true),
        result: str_of(v, "result"),
        session_id: Some(str_of(v, "session_id")).filter(|s| !s.is_empty()),
        structured_output: v.get("structured_output").filter(|s| !s.is_null()).cloned(),
        usage: v.get("usage").filter(|u| u.is_object()).map(tokens_of),
        total_cost_usd: v.get("total_cost_usd").and_then(Value::as_f64).filter(|c| c.is_finite() && *c >= 0.0),
        permission_denials: v
            .get("permission_denials")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(denial).collect())
            .unwrap_or_default(),
        num_turns: v.get("num_turns").and_then(Value::as_u64),
    }
}

/// Parses one stdout line. `Err` carries the JSON error for a line that is not JSON at all.
pub fn parse_line(line: &str) -> Result<Event, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let kind = str_of(&v, "type");
    Ok(match kind.as_str() {
        "system" => match (str_of(&v, "subtype").as_str(), str_of(&v, "session_id")) {
            ("init", id) if !id.is_empty() => Event::Init { session_id: id },
            ("init", _) => Event::Unknown { kind: "system/init without session_id".into() },
            (sub, _) => Event::System { subtype: sub.to_string() },
        },
        "assistant" => Event::Assistant {
            tools: v
                .pointer("/message/content")
                .and_then(Value::as_array)
                .map(|blocks| {
                    blocks.iter().filter(|b| str_of(b, "type") == "tool_use").map(|b| str_of(b, "name")).collect()
                })
                .unwrap_or_default(),
        },
        "user" => Event::ToolResult,
        "result" => Event::Result(Box::new(result_line(&v))),
        _ => Event::Unknown { kind },
    })
}

/// What a whole stream amounted to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub session_id: Option<String>,
    /// The last `result` line.
    pub result: Option<ResultLine>,
    /// Tool calls the model made, in order.
    pub tools: Vec<String>,
    /// Line types this loop does not know, and lines that were not JSON.
    pub unknown: Vec<String>,
}

impl Summary {
    pub fn absorb(&mut self, line: &str) -> Option<Event> {
        let ev = parse_or_note(line, &mut self.unknown, parse_line)?;
        match &ev {
            Event::Init { session_id } => self.session_id = Some(session_id.clone()),
            Event::Assistant { tools } => self.tools.extend(tools.iter().cloned()),
            Event::Result(r) => {
                if self.session_id.is_none() {
                    self.session_id = r.session_id.clone();
                }
                self.result = Some((**r).clone());
            }
            Event::Unknown { kind } => self.unknown.push(format!("line {}", brief(kind))),
            Event::ToolResult | Event::System { .. } => {}
        }
        Some(ev)
    }

    /// What the claude driver makes of a whole stdout, split exactly as
    /// [`crate::proc::run_streaming`] does.
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

/// Whether a failed run is worth trying again unchanged: the API was rate limited, overloaded or
/// had a server error, or the connection failed. Claude Code reports these in the result's text
/// (`API Error: 529 {...overloaded_error...}`, `API Error: Request rate limited`, …); a failure of
/// the work itself (max turns, a refused tool, a bad request, no credit, no login) is not.
pub fn transient(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let permanent = ["invalid api key", "authentication", "401", "403", "credit balance", "invalid_request", "400 "];
    if permanent.iter().any(|p| t.contains(p)) {
        return false;
    }
    let status = |code: &str| {
        t.match_indices(code).any(|(i, _)| {
            let before = t[..i].chars().next_back();
            let after = t[i + code.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    ["429", "500", "502", "503", "504", "529"].iter().any(|c| status(c))
        || [
            "overloaded",
            "rate limit",
            "rate_limit",
            "too many requests",
            "internal server error",
            "service unavailable",
            "bad gateway",
            "gateway timeout",
            "connection error",
            "econnreset",
            "econnrefused",
            "etimedout",
            "socket hang up",
            "request timed out",
        ]
        .iter()
        .any(|w| t.contains(w))
}

/// [`transient`] for a result line: only an error result can be, judged by its text.
pub fn transient_result(r: &ResultLine) -> bool {
    r.is_error && transient(&r.result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from Claude Code 2.1.328 (stream-json, a loopback Messages mock that asked for one
    /// Bash call, then called StructuredOutput).
    const RECORDED: &str = include_str!("../../tests/fixtures/claude/recorded-2.1.328-dev.jsonl");

    #[test]
    fn recorded_stream_of_the_real_cli_parses() {
        let s = Summary::of(RECORDED);
        let id = s.session_id.clone().expect("init carries the session");
        let r = s.result.as_ref().expect("a result line");
        assert_eq!(r.session_id.as_deref(), Some(id.as_str()));
        assert!(!r.is_error && r.subtype == "success", "{r:?}");
        assert_eq!(r.structured_output.as_ref().and_then(|v| v.get("status")), Some(&Value::from("pass")));
        assert!(s.tools.contains(&"Bash".to_string()) && s.tools.contains(&"StructuredOutput".to_string()), "{s:?}");
        let u = r.usage.expect("usage");
        assert!(u.input > 0 && u.output > 0, "{u:?}");
        assert!(r.total_cost_usd.is_some_and(|c| c > 0.0), "{r:?}");
        assert!(s.unknown.is_empty(), "{:?}", s.unknown);
    }

    #[test]
    fn result_fields_and_denials() {
        let line = r#"{"type":"result","subtype":"success","is_error":false,"result":"x","session_id":"S",
            "total_cost_usd":0.25,"num_turns":3,
            "usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":7},
            "permission_denials":[{"tool_name":"Bash","tool_use_id":"t","tool_input":{"command":"gt sync"}},
                                  {"tool_name":"Write","tool_input":{"file_path":"/etc/x","content":"y"}}]}"#
            .replace('\n', " ");
        let Ok(Event::Result(r)) = parse_line(&line) else { panic!() };
        assert_eq!(r.usage, Some(Tokens { input: 115, cached_input: 100, output: 7, reasoning_output: 0 }));
        assert_eq!(r.total_cost_usd, Some(0.25));
        assert_eq!(r.permission_denials, ["Bash: gt sync", "Write: /etc/x"]);
        assert_eq!(r.structured_output, None);
        assert_eq!(r.num_turns, Some(3));
    }

    #[test]
    fn unknown_and_broken_lines_are_kept_not_fatal() {
        let s = Summary::of("not json\n{\"type\":\"stream_event\"}\n{\"type\":\"system\",\"subtype\":\"init\"}\n");
        assert_eq!(s.unknown, ["non-JSON line: not json", "line stream_event", "line system/init without session_id"]);
        assert_eq!(s.session_id, None);
        // A result that does not say whether it failed is taken as failed.
        let Ok(Event::Result(r)) = parse_line(r#"{"type":"result"}"#) else { panic!() };
        assert!(r.is_error);
    }

    #[test]
    fn transient_errors_are_told_from_permanent_ones() {
        for t in [
            "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
            "API Error: 429 rate limited",
            "API Error: Request rate limited. Retrying later",
            "API Error: 500 Internal Server Error",
            "API Error (Connection error.)",
            "API Error: 503 Service Unavailable",
        ] {
            assert!(transient(t), "{t}");
        }
        for t in [
            "Invalid API key · Please run /login",
            "API Error: 400 {\"error\":{\"type\":\"invalid_request_error\"}}",
            "Credit balance is too low",
            "Reached max turns (5)",
            "",
            "wrote 4290 lines",
            "error code 15290",
        ] {
            assert!(!transient(t), "{t}");
        }
        let r = ResultLine { is_error: false, result: "API Error: 529 overloaded".into(), ..Default::default() };
        assert!(!transient_result(&r), "a successful result is never retried");
    }
}
