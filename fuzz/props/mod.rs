//! The properties every fuzz target checks, shared by the libFuzzer targets (fuzz/fuzz_targets/)
//! and by `cargo test` (tests/props/fuzz_props.rs replays fuzz/corpus/ through them on stable), so the
//! checked-in corpus is a regression suite even where libFuzzer never runs.
//!
//! A property fails by panicking with the reason; each must hold for *every* input, so it states
//! what loop promises about bad input: no panic, one-line errors that point into the input, and
//! no silently wrong result.
//!
//! Adding a parser: write `props/<name>.rs` with `pub fn check(data: &[u8])`, add it to
//! [`TARGETS`], and add a three-line `fuzz_targets/<name>.rs` plus its `[[bin]]` in Cargo.toml.

mod agent_output;
mod claude;
mod codex;
mod config;
mod docs;
mod journal;
mod plan;
mod sim_scenario;

/// A target's name (also its corpus directory under fuzz/corpus/) and its property.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("issue_doc", docs::issue_doc),
    ("milestone_doc", docs::milestone_doc),
    ("issue_map", docs::issue_map),
    ("plan", plan::check),
    ("journal_record", journal::record),
    ("journal_export", journal::export_file),
    ("journal_log", journal::log_file),
    ("agent_output", agent_output::check),
    ("sim_scenario", sim_scenario::check),
    ("codex_event", codex::event),
    ("codex_stream", codex::stream),
    ("claude_event", claude::event),
    ("claude_stream", claude::stream),
    ("loop_toml", config::check),
];

/// Runs the named target's property on one input.
pub fn check(target: &str, data: &[u8]) {
    match TARGETS.iter().find(|(name, _)| *name == target) {
        Some((_, f)) => f(data),
        None => panic!("no fuzz target named {target}"),
    }
}

/// `journal_export` over every byte of a verified file instead of a sample: for `cargo test`.
#[cfg_attr(fuzzing, expect(dead_code, reason = "libFuzzer runs the sampled variant"))]
pub fn journal_export_exhaustive(data: &[u8]) {
    journal::export_file_with(data, usize::MAX);
}

/// An error message must be one non-empty line: loop prints it as `loop: error: <line>`.
pub(crate) fn one_line(msg: &str) {
    assert!(!msg.trim().is_empty(), "empty error message");
    assert!(!msg.contains('\n') && !msg.contains('\r'), "error message spans lines: {msg:?}");
}

/// The `N` of a message of the form `{path}:N: ...`, asserting the form.
pub(crate) fn line_of(msg: &str, path: &str) -> usize {
    let rest = msg
        .strip_prefix(path)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("error does not start with '{path}:': {msg:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(
        !digits.is_empty() && rest[digits.len()..].starts_with(": "),
        "error does not name a line of {path}: {msg:?}"
    );
    digits.parse().expect("digits")
}

/// How many lines an editor shows for `text` (a final newline opens no new line).
pub(crate) fn line_count(text: &str) -> usize {
    text.lines().count().max(1)
}
