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
    "run.min_free_disk_mb",
    "run.max_cost_usd_per_issue",
    "run.max_cost_usd_per_run",
    "run.stall_timeout_secs",
    "run.retries",
    "run.retry_base_secs",
    "run.retry_cap_secs",
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
    "guard",
    "guard.checks",
    "guard.allow_dirty",
    "guard.shims",
    "guard.allow",
    "guard.deny",
    "verify",
    "verify.commands",
    "verify.setup",
    "verify.timeout",
    "verify.lockfiles",
    "verify.count_preexisting",
    "agents",
    "agents.dev",
    "agents.review",
    "agents.fix",
    "prices",
];

/// Whether `key` is one `LoopConfig` knows: a fixed path, or anything under `[prices]`, whose
/// table names are the user's model ids (and may hold dots, so a path cannot tell the model from
/// the field; `PriceTable` refuses unknown fields itself).
fn known(key: &str) -> bool {
    KNOWN.contains(&key) || key.starts_with("prices.")
}

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
                assert!(known(k), "unknown key {k:?} accepted");
            }
            let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let bad = format!("zz_unknown = 1\n{body}");
            let msg = parse(&bad, Path::new(PATH)).expect_err("unknown key accepted").to_string();
            assert!(msg.starts_with("loop.toml:1: ") && msg.contains("zz_unknown"), "{msg}");
        }
    }
}
