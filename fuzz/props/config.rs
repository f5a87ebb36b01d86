//! `loop.toml` (`config::parse`).

use std::path::Path;

use devloop::config::parse;

use super::{line_count, line_of, one_line};

const PATH: &str = "loop.toml";

/// Every key `LoopConfig` knows, as table paths.
const KNOWN: &[&str] = &[
    "run",
    "run.phase_timeout",
    "run.max_fix_cycles",
    "run.max_tokens_per_issue",
    "run.review_doc",
    "codex",
    "codex.bin",
    "codex.model",
    "codex.profile",
    "codex.sandbox",
    "codex.sandbox.dev",
    "codex.sandbox.review",
    "codex.sandbox.fix",
    "codex.config",
    "codex.retries",
    "claude",
    "claude.bin",
    "claude.model",
    "claude.args",
    "claude.retries",
    "prompts",
    "prompts.dir",
];

fn keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in t {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if let toml::Value::Table(sub) = v {
            keys(&path, sub, out);
        }
        out.push(path);
    }
}

/// Errors are one `loop.toml:N: ` line with N inside the file; an accepted file re-parses to the
/// same value, holds only known keys, and an unknown key added to it is rejected at its line.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse(&text, Path::new(PATH)) {
        Err(e) => {
            let msg = e.to_string();
            one_line(&msg);
            let line = line_of(&msg, PATH);
            assert!(
                (1..=line_count(&text)).contains(&line),
                "line {line} outside the file's {} lines: {msg}",
                line_count(&text)
            );
        }
        Ok(c) => {
            assert_eq!(parse(&text, Path::new(PATH)).ok().as_ref(), Some(&c), "re-parse differs");
            let table: toml::Table = toml::from_str(&text).expect("loop.toml accepted but not a TOML table");
            let mut all = Vec::new();
            keys("", &table, &mut all);
            for k in &all {
                assert!(KNOWN.contains(&k.as_str()), "unknown key {k:?} accepted");
            }
            let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let bad = format!("zz_unknown = 1\n{body}");
            let msg = parse(&bad, Path::new(PATH)).expect_err("unknown key accepted").to_string();
            assert!(msg.starts_with("loop.toml:1: ") && msg.contains("zz_unknown"), "{msg}");
        }
    }
}
