//! The JSON-lines stream of `codex exec --json`: one line (`codex_event`) and a whole stdout
//! (`codex_stream`). Reference values are read straight from `serde_json::Value`, so a typed
//! event that disagrees with the line it came from, or a summary that yields a final message,
//! thread id or token count the stream never carried, fails.

use devloop::agent::codex_events::{parse_line, Event, Item, Summary};
use devloop::agent::Tokens;
use serde_json::{json, Value};

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `turn.completed`'s usage as codex writes it: an object of unsigned counts (absent = 0).
/// Anything else is no usage at all, counted as zeros.
fn usage_of(v: &Value) -> Tokens {
    let Some(u) = v.get("usage").and_then(Value::as_object) else { return Tokens::default() };
    let mut t = Tokens::default();
    for (key, slot) in [
        ("input_tokens", &mut t.input),
        ("cached_input_tokens", &mut t.cached_input),
        ("output_tokens", &mut t.output),
        ("reasoning_output_tokens", &mut t.reasoning_output),
    ] {
        match u.get(key) {
            None => {}
            Some(n) => match n.as_u64() {
                Some(n) => *slot = n,
                None => return Tokens::default(),
            },
        }
    }
    t
}

fn check_item(item: &Item, v: &Value) {
    let kind = str_at(v, "type").unwrap_or_default();
    match (kind, item) {
        ("agent_message", Item::AgentMessage { text }) => {
            assert_eq!(text, str_at(v, "text").unwrap_or_default(), "agent_message text changed")
        }
        ("command_execution", Item::CommandExecution { command, exit_code, .. }) => {
            assert_eq!(command, str_at(v, "command").unwrap_or_default());
            assert_eq!(*exit_code, v.get("exit_code").and_then(Value::as_i64));
        }
        ("file_change", Item::FileChange { .. }) | ("reasoning", Item::Reasoning) => {}
        ("error", Item::Error { message }) => assert_eq!(message, str_at(v, "message").unwrap_or_default()),
        (k, Item::Other { kind }) => {
            assert!(!["agent_message", "command_execution", "file_change", "reasoning", "error"].contains(&k));
            assert_eq!(kind, k, "unknown item reported under another type");
        }
        (k, other) => panic!("item of type {k:?} parsed as {other:?}"),
    }
}

/// One line: never fatal; non-JSON is the only error; a known type parses to its typed event
/// with the line's own values, an unknown one to `Unknown`/`Other` under its type; and the
/// summary notes everything it does not act on.
pub fn event(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let line = line.trim_end_matches(['\n', '\r']);
    let parsed = parse_line(line);
    let value: Result<Value, _> = serde_json::from_str(line);
    let mut summary = Summary::default();
    let absorbed = summary.absorb(line);
    match (&parsed, &value) {
        (Err(e), Err(_)) => {
            super::one_line(e);
            assert_eq!(absorbed, None);
            if !line.trim().is_empty() {
                assert!(summary.unknown.iter().any(|u| u.starts_with("non-JSON line")), "{summary:?}");
            }
        }
        (Ok(ev), Ok(v)) => {
            assert_eq!(absorbed.as_ref(), Some(ev));
            let kind = str_at(v, "type").unwrap_or_default();
            let item = v.get("item").unwrap_or(&Value::Null);
            match (kind, ev) {
                ("thread.started", Event::ThreadStarted { thread_id }) => {
                    assert_eq!(Some(thread_id.as_str()), str_at(v, "thread_id"), "invented thread id");
                    assert_eq!(summary.thread_id.as_ref(), Some(thread_id));
                }
                ("turn.started", Event::TurnStarted) => {}
                ("turn.completed", Event::TurnCompleted { usage }) => {
                    assert_eq!(*usage, usage_of(v), "token counts differ from the line's usage");
                }
                ("turn.failed", Event::TurnFailed { .. }) | ("error", Event::Error { .. }) => {}
                ("item.started", Event::ItemStarted(i))
                | ("item.updated", Event::ItemUpdated(i))
                | ("item.completed", Event::ItemCompleted(i)) => check_item(i, item),
                ("thread.started", Event::Unknown { kind }) => {
                    assert_eq!(str_at(v, "thread_id").unwrap_or_default(), "", "thread id dropped");
                    assert!(summary.unknown.contains(&format!("event {kind}")) && summary.thread_id.is_none());
                }
                (k, Event::Unknown { kind }) => {
                    assert_eq!(kind, k, "unknown event reported under another type");
                    let noted: String = k.chars().take(80).flat_map(char::escape_debug).collect();
                    assert_eq!(summary.unknown, [format!("event {noted}")], "unknown type not noted, escaped");
                }
                (k, other) => panic!("event of type {k:?} parsed as {other:?}"),
            }
        }
        (p, v) => panic!("parse_line and serde_json disagree on {line:?}: {p:?} vs {v:?}"),
    }

    // Known shapes built around the input's text parse to exactly that text.
    let s = line.to_string();
    let thread = json!({"type": "thread.started", "thread_id": s}).to_string();
    if !s.is_empty() {
        assert_eq!(parse_line(&thread), Ok(Event::ThreadStarted { thread_id: s.clone() }));
    }
    let msg = json!({"type": "item.completed", "item": {"id": "item_9", "type": "agent_message", "text": s}});
    assert_eq!(parse_line(&msg.to_string()), Ok(Event::ItemCompleted(Item::AgentMessage { text: s.clone() })));
    let n = |i: usize| data.get(i).map_or(0, |&b| u64::from(b) << (i % 7 * 8));
    let usage = Tokens { input: n(0), cached_input: n(1), output: n(2), reasoning_output: n(3) };
    let done = json!({"type": "turn.completed", "usage": {"input_tokens": usage.input,
        "cached_input_tokens": usage.cached_input, "output_tokens": usage.output,
        "reasoning_output_tokens": usage.reasoning_output}});
    assert_eq!(parse_line(&done.to_string()), Ok(Event::TurnCompleted { usage }));
}

/// What the stream carried, line by line as the driver splits it.
#[derive(Default)]
struct Seen {
    threads: Vec<String>,
    messages: Vec<String>,
    usages: Vec<Tokens>,
}

fn seen(stdout: &[u8]) -> Seen {
    let mut s = Seen::default();
    for raw in stdout.split_inclusive(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(raw);
        let Ok(v) = serde_json::from_str::<Value>(line.trim_end_matches(['\n', '\r'])) else { continue };
        match str_at(&v, "type") {
            Some("thread.started") => {
                s.threads.extend(str_at(&v, "thread_id").filter(|t| !t.is_empty()).map(str::to_string))
            }
            Some("turn.completed") => s.usages.push(usage_of(&v)),
            Some("item.completed") => {
                let item = v.get("item").unwrap_or(&Value::Null);
                if str_at(item, "type") == Some("agent_message") {
                    s.messages.push(str_at(item, "text").unwrap_or_default().to_string());
                }
            }
            _ => {}
        }
    }
    s
}

/// A whole stdout: the final message is the text of the last completed `agent_message` (never
/// a started/updated one, never a concatenation), the thread id the last one a `thread.started`
/// carried, the usage the last `turn.completed`'s; CRLF line ends change nothing.
pub fn stream(data: &[u8]) {
    let s = Summary::of_stdout(data);
    let want = seen(data);
    assert_eq!(s.final_message.as_ref(), want.messages.last(), "final message is not the last agent_message");
    if let Some(t) = &s.thread_id {
        assert!(want.threads.contains(t), "thread id {t:?} never started in the stream");
    }
    assert_eq!(s.thread_id.as_ref(), want.threads.last(), "thread id is not the last thread.started");
    assert_eq!(s.usage.as_ref(), want.usages.last(), "usage is not the last turn.completed's");
    for u in &s.unknown {
        assert!(!u.chars().any(char::is_control), "unknown note has control characters: {u:?}");
        assert!(u.chars().count() <= 20 + 80 * 10, "unknown note unbounded: {} chars", u.len());
    }

    let crlf: Vec<u8> = data.iter().flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] }).collect();
    assert_eq!(Summary::of_stdout(&crlf), s, "CRLF line ends changed the summary");
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.contains('\r') {
            assert_eq!(Summary::of(text), s, "Summary::of and the driver's line split disagree");
        }
    }
}
