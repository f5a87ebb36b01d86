//! What the codex and Claude Code stream readers share: both CLIs print one JSON object per line,
//! and a line loop cannot read is kept as a short, escaped note rather than failing the phase
//! (the reply, not the stream, decides a phase).

use serde_json::Value;

/// The string at `key`, or empty when it is missing or not a string.
pub(crate) fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// At most 80 characters of stream text for a note, control characters escaped: the notes end up
/// in one-line journal entries and on the terminal.
pub(crate) fn brief(text: &str) -> String {
    text.chars().take(80).flat_map(char::escape_debug).collect()
}

/// Parses one stream line with `parse`: `None` for a blank line, and for a line that is not JSON,
/// which is noted in `unknown`.
pub(crate) fn parse_or_note<E>(
    line: &str,
    unknown: &mut Vec<String>,
    parse: fn(&str) -> Result<E, String>,
) -> Option<E> {
    if line.trim().is_empty() {
        return None;
    }
    match parse(line) {
        Ok(ev) => Some(ev),
        Err(_) => {
            unknown.push(format!("non-JSON line: {}", brief(line)));
            None
        }
    }
}
