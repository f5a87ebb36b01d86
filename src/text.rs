//! Text hygiene for anything that quotes outside input (docs, agents, git, records): one line,
//! bounded, control characters escaped, so nothing read can steer a terminal or a log reader.
//!
//! Invariant: imports nothing of the crate; every layer may use it.

/// `msg` as one printable line of at most `max_chars` characters (plus `…`): control characters
/// are escaped. For messages that quote outside input (an agent's keys, a record's strings).
pub fn printable(msg: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for c in msg.chars().take(max_chars) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if msg.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// `text` with every control character escaped (`\u{1b}`), so text from docs, agents and git
/// cannot move the cursor, retitle or clear a terminal. For one-line output.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    escape_except(text, &[])
}

/// [`escape`] for multi-line output: newlines and tabs stay, every other control is escaped.
pub fn escape_lines(text: &str) -> std::borrow::Cow<'_, str> {
    escape_except(text, &['\n', '\t'])
}

fn escape_except<'a>(text: &'a str, keep: &[char]) -> std::borrow::Cow<'a, str> {
    let bad = |c: char| c.is_control() && !keep.contains(&c);
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
