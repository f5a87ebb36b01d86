//! The JSON-lines stream of `claude -p --output-format stream-json --verbose`: one line
//! (`claude_event`) and a whole stdout (`claude_stream`). Reference values are read straight from
//! `serde_json::Value`, so a reply, session id, verdict or cost the stream never carried fails.

use devloop::agent::claude_events::{parse_line, transient, Event, Summary};
use serde_json::{json, Value};

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// One line: never fatal; non-JSON is the only error; a result line's verdict, reply and cost are
/// the line's own (a missing or non-boolean `is_error` is an error, never a success); the
/// transient classifier takes any text.
pub fn event(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let line = line.trim_end_matches(['\n', '\r']);
    let _ = transient(line);
    let parsed = parse_line(line);
    let value: Result<Value, _> = serde_json::from_str(line);
    let mut summary = Summary::default();
    let absorbed = summary.absorb(line);
    match (&parsed, &value) {
        (Err(e), Err(_)) => {
            super::one_line(e);
            assert_eq!(absorbed, None);
        }
        (Ok(ev), Ok(v)) => {
            assert_eq!(absorbed.as_ref(), Some(ev));
            match (str_at(v, "type").unwrap_or_default(), ev) {
                ("system", Event::Init { session_id }) => {
                    assert_eq!(str_at(v, "subtype"), Some("init"));
                    assert_eq!(Some(session_id.as_str()), str_at(v, "session_id"), "invented session id");
                    assert!(!session_id.is_empty());
                }
                ("result", Event::Result(r)) => {
                    assert_eq!(r.is_error, v.get("is_error").and_then(Value::as_bool).unwrap_or(true), "verdict");
                    assert_eq!(r.structured_output.as_ref(), v.get("structured_output").filter(|s| !s.is_null()));
                    if let Some(c) = r.total_cost_usd {
                        assert!(
                            c.is_finite() && c >= 0.0 && Some(c) == v.get("total_cost_usd").and_then(Value::as_f64)
                        );
                    }
                    for d in &r.permission_denials {
                        super::one_line(d);
                    }
                }
                ("system", Event::System { .. } | Event::Unknown { .. })
                | ("assistant", Event::Assistant { .. })
                | ("user", Event::ToolResult) => {}
                (k, Event::Unknown { kind }) => assert_eq!(kind, k, "unknown line reported under another type"),
                (k, other) => panic!("line of type {k:?} parsed as {other:?}"),
            }
        }
        (p, v) => panic!("parse_line and serde_json disagree on {line:?}: {p:?} vs {v:?}"),
    }
    // Known shapes built around the input's text carry exactly that text.
    let s = line.to_string();
    if !s.is_empty() {
        let init = json!({"type": "system", "subtype": "init", "session_id": s}).to_string();
        assert_eq!(parse_line(&init), Ok(Event::Init { session_id: s.clone() }));
    }
    let result = json!({"type": "result", "is_error": false, "structured_output": {"text": s}}).to_string();
    let Ok(Event::Result(r)) = parse_line(&result) else { panic!("a result line") };
    assert_eq!(r.structured_output, Some(json!({"text": s})));
}

/// A whole stdout: the session is the last `system/init`'s (else the first result's), the result
/// the last result line; notes are printable and bounded; CRLF line ends change nothing.
pub fn stream(data: &[u8]) {
    let s = Summary::of_stdout(data);
    let (mut inits, mut results) = (Vec::new(), Vec::new());
    for raw in data.split_inclusive(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(raw);
        let Ok(v) = serde_json::from_str::<Value>(line.trim_end_matches(['\n', '\r'])) else { continue };
        match (str_at(&v, "type"), str_at(&v, "subtype")) {
            (Some("system"), Some("init")) => {
                inits.extend(str_at(&v, "session_id").filter(|i| !i.is_empty()).map(str::to_string))
            }
            (Some("result"), _) => results.push(v.clone()),
            _ => {}
        }
    }
    let first_result_session = results.iter().find_map(|r| str_at(r, "session_id").filter(|i| !i.is_empty()));
    let want = inits.last().map(String::as_str).or(first_result_session);
    assert_eq!(s.session_id.as_deref(), want, "session id not the stream's");
    assert_eq!(s.result.is_some(), !results.is_empty());
    if let (Some(r), Some(v)) = (&s.result, results.last()) {
        assert_eq!(r.structured_output.as_ref(), v.get("structured_output").filter(|x| !x.is_null()));
    }
    for u in &s.unknown {
        assert!(!u.chars().any(char::is_control), "unknown note has control characters: {u:?}");
        assert!(u.chars().count() <= 20 + 80 * 10, "unknown note unbounded: {} chars", u.len());
    }
    let crlf: Vec<u8> = data.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }).collect();
    assert_eq!(Summary::of_stdout(&crlf), s, "CRLF line ends changed the summary");
}
