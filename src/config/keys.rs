//! Every `loop.toml` key, what it does, and where its effective value came from.
//!
//! [`KEYS`] is the one list of the keys loop knows, with a line on each: `loop config` shows each
//! key's effective value beside its source ([`effective`]), and `loop init` writes the commented
//! `loop.toml` from it ([`commented_toml`]), each value rendered from the defaults [`effective`]
//! computes, so neither can drift from what a run would really use.
//!
//! Invariants: the values come from the same resolution `loop run` uses ([`super::resolve_run`],
//! [`super::resolve_codex`], [`super::resolve_claude`]); this module only says which layer
//! decided each one (flag > environment > file > default). A test holds [`KEYS`] against the
//! fields the parser accepts, so a new key without a line here fails.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::{ConfigError, EnvSettings, LoopConfig, RunFlags};
use crate::machine::Phase;

/// One key of `loop.toml`: its dotted path, an example for keys that are unset by default, and
/// one line on what it does.
pub struct Key {
    pub key: &'static str,
    /// Shown (commented out) for a key whose default is "unset"; keys with a default show it.
    pub example: Option<&'static str>,
    pub doc: &'static str,
}

const fn k(key: &'static str, doc: &'static str) -> Key {
    Key { key, example: None, doc }
}

const fn ex(key: &'static str, example: &'static str, doc: &'static str) -> Key {
    Key { key, example: Some(example), doc }
}

/// Every key of `loop.toml` but `[prices."MODEL"]` (a table per model, see [`PRICES_EXAMPLE`]),
/// in the order `loop config` and `loop init` show them.
pub const KEYS: &[Key] = &[
    k("run.phase_timeout", "seconds one agent phase may take; then its whole process group is killed"),
    k("run.max_fix_cycles", "review → fix rounds before an issue ends Capped"),
    ex("run.max_tokens_per_issue", "400000", "tokens one issue may use, then it ends Capped (default: unlimited)"),
    k("run.review_doc", "append each review to docs/projects/<project>/reviews/<milestone>/<issue>.md"),
    k("run.min_free_disk_mb", "pre-flight: free MiB needed on the state dir's file system (0: no check)"),
    ex("run.max_cost_usd_per_issue", "2.5", "USD one issue may spend, then it ends Capped (default: unlimited)"),
    ex("run.max_cost_usd_per_run", "20.0", "USD the run may spend, then no phase starts (default: unlimited)"),
    k("run.stall_timeout_secs", "no event from the agent this long: the phase is killed as stalled (0: never)"),
    k("run.retries", "retries of a phase after a transient API error or a stall"),
    k("run.retry_base_secs", "wait before retry n: min(retry_cap_secs, retry_base_secs × 2ⁿ)"),
    k("run.retry_cap_secs", "the longest wait between retries"),
    k("agents.dev", "the agent of the dev phase: codex, claude or sim"),
    k("agents.review", "the agent of the review phase (a second model family is a real second opinion)"),
    k("agents.fix", "the agent of the fix phase"),
    k("codex.bin", "the codex binary; a relative path is relative to the repo"),
    ex("codex.model", "\"gpt-5.5\"", "codex exec -m (default: codex's own)"),
    ex("codex.profile", "\"team\"", "codex exec -p, a profile in ~/.codex/config.toml (default: none)"),
    ex("codex.config", "['model_reasoning_effort=\"high\"']", "extra `-c key=value` overrides, in order"),
    k("codex.retries", "re-asks (codex exec resume) for a reply that is not valid JSON"),
    k("codex.sandbox.dev", "read-only | workspace-write | danger-full-access"),
    k("codex.sandbox.review", "the review only reads"),
    k("codex.sandbox.fix", "the sandbox of fix phases"),
    k("claude.bin", "the claude binary; a relative path is relative to the repo"),
    ex("claude.model", "\"sonnet\"", "claude --model (default: Claude Code's own)"),
    ex("claude.args", "[\"--max-turns\", \"60\"]", "extra arguments after loop's own, in order"),
    k("claude.retries", "re-asks (claude --resume) for a reply that is not valid JSON"),
    ex("prompts.dir", "\"tools/loop-prompts\"", "<name>.md here replaces the built-in template of that name"),
    k("guard.checks", "before/after-phase checks of the main checkout and other branches (--no-guard: off)"),
    k("guard.allow_dirty", "start phases on a main checkout with uncommitted changes (recorded)"),
    k("guard.shims", "git and gt shims in the agent's shell, enforcing allow/deny"),
    ex("guard.allow", "[\"gt submit --stack\"]", "command prefixes to allow (checked after deny)"),
    ex("guard.deny", "[\"git stash drop\"]", "command prefixes to refuse (checked first)"),
    ex(
        "verify.commands",
        "[\"cargo test -q\"]",
        "loop's own checks after dev and each fix; each line runs with `sh -c`, as CI systems do",
    ),
    ex("verify.setup", "[\"cargo fetch\"]", "installs, once per worktree, also with `sh -c`"),
    k("verify.timeout", "seconds per command; then its process group is killed and the check fails"),
    k("verify.lockfiles", "files whose content decides whether setup must run again"),
    k("verify.count_preexisting", "a check that fails on the base commit too counts against the issue"),
];

/// The `[prices."MODEL"]` example `loop init` writes (commented out): USD per million tokens.
pub const PRICES_EXAMPLE: &str = "\
# [prices.\"gpt-5.5\"]    # USD per million tokens, to price agents that report only tokens
# input = 1.25
# cached_input = 0.125  # default: the input price
# output = 10.0
";

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Source {
    /// A command-line flag (its name).
    Flag {
        flag: String,
    },
    /// An environment variable (its name).
    Env {
        env: String,
    },
    /// `loop.toml`, the line of the key (or of its table).
    File {
        file: PathBuf,
        line: usize,
    },
    Default,
}

/// One effective setting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setting {
    pub key: String,
    /// `null`: unset (no limit, or the agent's own default).
    pub value: Value,
    #[serde(flatten)]
    pub source: Source,
}

/// What [`effective`] works from: the layers, as `loop run` reads them.
pub struct Layers<'a> {
    pub file: &'a LoopConfig,
    /// The file's text and path, for line numbers (None: there is no file).
    pub text: Option<(&'a str, &'a Path)>,
    pub env: &'a EnvSettings,
    pub flags: &'a RunFlags,
    /// `--allow-dirty`, `--no-guard`.
    pub allow_dirty: bool,
    pub no_guard: bool,
    pub repo: &'a Path,
}

/// The effective value of every key in [`KEYS`] (and each `[prices."MODEL"]` the file has), with
/// its source. Errors are those `loop run` would give for the same layers.
pub fn effective(l: &Layers) -> Result<Vec<Setting>, ConfigError> {
    let logs = Path::new("");
    let run = super::resolve_run(l.file, l.env, l.flags, l.repo, logs)?;
    let codex = super::resolve_codex(l.file, l.env, &l.flags.codex, l.repo, logs)?;
    let claude = super::resolve_claude(l.file, l.env, l.flags, l.repo, logs);
    let lines = l.text.map(|(t, _)| key_lines(t)).unwrap_or_default();
    let f = l.file;
    let fl = l.flags;
    let env = l.env;
    let secs = |ms: u64| json!(ms as f64 / 1000.0);
    let guard_default = crate::vocab::GuardConfig::default();
    let mut out = Vec::new();
    for key in KEYS {
        // (value, flag given, env given, file has it)
        let (value, flag, envv, in_file): (Value, Option<String>, Option<&str>, bool) = match key.key {
            "run.phase_timeout" => (
                json!(run.phase_timeout_secs),
                fl.phase_timeout.map(|_| "--phase-timeout".into()),
                None,
                f.run.phase_timeout.is_some(),
            ),
            "run.max_fix_cycles" => (
                json!(run.rules.max_fix_cycles),
                fl.max_fix_cycles.map(|_| "--max-fix-cycles".into()),
                None,
                f.run.max_fix_cycles.is_some(),
            ),
            "run.max_tokens_per_issue" => (
                json!(run.max_tokens_per_issue),
                fl.max_tokens_per_issue.map(|_| "--max-tokens-per-issue".into()),
                None,
                f.run.max_tokens_per_issue.is_some(),
            ),
            "run.review_doc" => (
                json!(run.review_doc),
                fl.no_review_doc.then(|| "--no-review-doc".into()),
                None,
                f.run.review_doc.is_some(),
            ),
            "run.min_free_disk_mb" => (
                json!(f.run.min_free_disk_mb.unwrap_or(crate::preflight::DEFAULT_MIN_FREE_DISK_MB)),
                None,
                None,
                f.run.min_free_disk_mb.is_some(),
            ),
            "run.max_cost_usd_per_issue" => (
                json!(run.max_cost_usd_per_issue),
                fl.max_cost_usd_per_issue.map(|_| "--max-cost-per-issue".into()),
                None,
                f.run.max_cost_usd_per_issue.is_some(),
            ),
            "run.max_cost_usd_per_run" => (
                json!(run.max_cost_usd_per_run),
                fl.max_cost_usd_per_run.map(|_| "--max-cost-per-run".into()),
                None,
                f.run.max_cost_usd_per_run.is_some(),
            ),
            "run.stall_timeout_secs" => (
                secs(run.resilience.stall_timeout_ms),
                fl.stall_timeout.map(|_| "--stall-timeout".into()),
                None,
                f.run.stall_timeout_secs.is_some(),
            ),
            "run.retries" => (
                json!(run.resilience.retries),
                fl.retries.map(|_| "--agent-retries".into()),
                None,
                f.run.retries.is_some(),
            ),
            "run.retry_base_secs" => (secs(run.resilience.retry_base_ms), None, None, f.run.retry_base_secs.is_some()),
            "run.retry_cap_secs" => (secs(run.resilience.retry_cap_ms), None, None, f.run.retry_cap_secs.is_some()),
            "agents.dev" | "agents.review" | "agents.fix" => {
                let (phase, in_file) = match key.key {
                    "agents.dev" => (Phase::Dev, f.agents.dev.is_some()),
                    "agents.review" => (Phase::Review, f.agents.review.is_some()),
                    _ => (Phase::Fix, f.agents.fix.is_some()),
                };
                let for_phase =
                    fl.agent_for.iter().any(|s| s.split_once('=').is_some_and(|(p, _)| p == phase.as_str()));
                let flag = if for_phase {
                    Some("--agent-for".to_string())
                } else if fl.sim_scenario {
                    Some("--sim-scenario".to_string())
                } else {
                    fl.agent.as_ref().map(|_| "--agent".to_string())
                };
                (json!(run.phase_agent(phase)), flag, env.agent.as_ref().map(|_| "LOOP_AGENT"), in_file)
            }
            "codex.bin" => (
                json!(codex.bin),
                fl.codex.bin.as_ref().map(|_| "--codex-bin".into()),
                env.codex_bin.as_ref().map(|_| "LOOP_CODEX_BIN"),
                f.codex.bin.is_some(),
            ),
            "codex.model" => {
                (json!(codex.model), fl.codex.model.as_ref().map(|_| "--model".into()), None, f.codex.model.is_some())
            }
            "codex.profile" => (
                json!(codex.profile),
                fl.codex.profile.as_ref().map(|_| "--codex-profile".into()),
                None,
                f.codex.profile.is_some(),
            ),
            "codex.config" => (
                json!(codex.config),
                (!fl.codex.config.is_empty()).then(|| "--codex-config".into()),
                None,
                !f.codex.config.is_empty(),
            ),
            "codex.retries" => {
                (json!(codex.retries), fl.codex.retries.map(|_| "--retries".into()), None, f.codex.retries.is_some())
            }
            "codex.sandbox.dev" | "codex.sandbox.review" | "codex.sandbox.fix" => {
                let (phase, value, in_file) = match key.key {
                    "codex.sandbox.dev" => (Phase::Dev, &codex.sandbox_dev, f.codex.sandbox.dev.is_some()),
                    "codex.sandbox.review" => (Phase::Review, &codex.sandbox_review, f.codex.sandbox.review.is_some()),
                    _ => (Phase::Fix, &codex.sandbox_fix, f.codex.sandbox.fix.is_some()),
                };
                let flag = fl
                    .codex
                    .sandbox
                    .iter()
                    .any(|s| s.split_once('=').is_some_and(|(p, _)| p == phase.as_str()))
                    .then(|| "--sandbox".to_string());
                (json!(value), flag, None, in_file)
            }
            "claude.bin" => (
                json!(claude.bin),
                fl.claude_bin.as_ref().map(|_| "--claude-bin".into()),
                env.claude_bin.as_ref().map(|_| "LOOP_CLAUDE_BIN"),
                f.claude.bin.is_some(),
            ),
            "claude.model" => {
                (json!(claude.model), fl.codex.model.as_ref().map(|_| "--model".into()), None, f.claude.model.is_some())
            }
            "claude.args" => (json!(claude.args), None, None, !f.claude.args.is_empty()),
            "claude.retries" => {
                (json!(claude.retries), fl.codex.retries.map(|_| "--retries".into()), None, f.claude.retries.is_some())
            }
            "prompts.dir" => (json!(codex.prompts_dir), None, None, f.prompts.dir.is_some()),
            "guard.checks" => (
                json!(!l.no_guard && f.guard.checks.unwrap_or(guard_default.checks)),
                l.no_guard.then(|| "--no-guard".into()),
                None,
                f.guard.checks.is_some(),
            ),
            "guard.allow_dirty" => (
                json!(l.allow_dirty || f.guard.allow_dirty.unwrap_or(guard_default.allow_dirty)),
                l.allow_dirty.then(|| "--allow-dirty".into()),
                None,
                f.guard.allow_dirty.is_some(),
            ),
            "guard.shims" => (
                json!(!l.no_guard && f.guard.shims.unwrap_or(guard_default.shims)),
                l.no_guard.then(|| "--no-guard".into()),
                None,
                f.guard.shims.is_some(),
            ),
            "guard.allow" => (json!(f.guard.allow), None, None, !f.guard.allow.is_empty()),
            "guard.deny" => (json!(f.guard.deny), None, None, !f.guard.deny.is_empty()),
            "verify.commands" => (json!(run.verify.commands), None, None, !f.verify.commands.is_empty()),
            "verify.setup" => (json!(run.verify.setup), None, None, !f.verify.setup.is_empty()),
            "verify.timeout" => (json!(run.verify.timeout_secs), None, None, f.verify.timeout.is_some()),
            // An empty list in the run's record means "the usual lockfiles".
            "verify.lockfiles" => (
                match &f.verify.lockfiles {
                    Some(l) => json!(l),
                    None => json!(crate::verify::DEFAULT_LOCKFILES),
                },
                None,
                None,
                f.verify.lockfiles.is_some(),
            ),
            "verify.count_preexisting" => {
                (json!(run.verify.count_preexisting), None, None, f.verify.count_preexisting.is_some())
            }
            other => unreachable!("KEYS names {other} but effective() does not resolve it"),
        };
        let source = match (flag, envv) {
            (Some(flag), _) => Source::Flag { flag },
            (None, Some(e)) => Source::Env { env: e.to_string() },
            (None, None) if in_file => file_source(l, &lines, key.key),
            (None, None) => Source::Default,
        };
        out.push(Setting { key: key.key.to_string(), value, source });
    }
    for (model, p) in &run.prices {
        let key = format!("prices.{}", toml_key(model));
        let value = json!({"input": p.input, "cached_input": p.cached_input, "output": p.output});
        let source = file_source(l, &lines, &key);
        out.push(Setting { key, value, source });
    }
    Ok(out)
}

fn file_source(l: &Layers, lines: &[(String, usize)], key: &str) -> Source {
    let file = l.text.map(|(_, p)| p.to_path_buf()).unwrap_or_default();
    let want = unquote(key);
    // The key's own line, else its table's (an inline table or a dotted key elsewhere).
    let line = lines
        .iter()
        .find(|(k, _)| *k == want)
        .or_else(|| lines.iter().find(|(k, _)| want.starts_with(&format!("{k}."))))
        .map_or(1, |(_, n)| *n);
    Source::File { file, line }
}

/// A TOML key for `name`: bare when it can be, quoted otherwise.
fn toml_key(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        name.to_string()
    } else {
        serde_json::to_string(name).expect("a string serializes")
    }
}

fn unquote(key: &str) -> String {
    key.chars().filter(|c| *c != '"' && *c != '\'' && !c.is_whitespace()).collect()
}

/// `(dotted key, line)` of each table header and each `key = ` line of a TOML text, quotes and
/// spaces removed from the key. Lines inside a multi-line array are skipped.
fn key_lines(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut table = String::new();
    let mut depth = 0i32;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_strings_and_comment(raw);
        let t = line.trim();
        if depth > 0 {
            depth += bracket_balance(t);
            continue;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let name = rest.trim_start_matches('[').split(']').next().unwrap_or("");
            // The name keeps its quoted parts: take it from the raw line.
            let raw_name = raw.trim().trim_start_matches('[').split(']').next().unwrap_or(name);
            table = unquote(raw_name);
            out.push((table.clone(), i + 1));
        } else if let Some((k, v)) = t.split_once('=') {
            let raw_key = raw.split_once('=').map_or(k, |(rk, _)| rk);
            let key = unquote(raw_key);
            let full = if table.is_empty() { key } else { format!("{table}.{key}") };
            out.push((full, i + 1));
            depth = bracket_balance(v).max(0);
        }
    }
    out
}

/// The line with the contents of its strings blanked and its comment cut (for bracket counting).
fn strip_strings_and_comment(line: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None if c == '#' => break,
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

fn bracket_balance(s: &str) -> i32 {
    s.chars().map(|c| (c == '[') as i32 - (c == ']') as i32).sum()
}

/// A JSON value as TOML (strings, numbers, booleans and arrays of them).
pub fn toml_value(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("[{}]", items.iter().map(toml_value).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            format!(
                "{{ {} }}",
                m.iter().map(|(k, v)| format!("{k} = {}", toml_value(v))).collect::<Vec<_>>().join(", ")
            )
        }
        // JSON's string escapes are TOML's (`\uXXXX` included); numbers and booleans read the same.
        other => other.to_string(),
    }
}

/// The commented `loop.toml` `loop init` writes: every key, commented out with its default (or an
/// example, for a key unset by default) and one line on what it does.
pub fn commented_toml() -> String {
    let none = LoopConfig::default();
    let layers = Layers {
        file: &none,
        text: None,
        env: &EnvSettings::default(),
        flags: &RunFlags::default(),
        allow_dirty: false,
        no_guard: false,
        repo: Path::new(""),
    };
    let defaults = effective(&layers).expect("the defaults resolve");
    let mut out = String::from(
        "# loop.toml: settings for `loop run`. Every key is optional; an unknown key is an error naming its line.\n\
         # Each line below is commented out and shows the default (or an example, where the default is unset).\n\
         # Precedence: default < this file < environment (LOOP_AGENT, LOOP_CODEX_BIN, LOOP_CLAUDE_BIN) < flags.\n\
         # `loop config` shows the value each key has and where it came from.\n",
    );
    let mut table = "";
    for (key, setting) in KEYS.iter().zip(&defaults) {
        let (t, name) = key.key.rsplit_once('.').expect("every key is in a table");
        if t != table {
            out.push_str(&format!("\n[{t}]\n"));
            table = t;
        }
        // An unset or empty default says nothing: show an example, and say the default.
        let empty = setting.value.as_array().is_some_and(|a| a.is_empty());
        let (value, note) = match (&setting.value, key.example) {
            (Value::Null, Some(e)) => (e.to_string(), ""),
            (_, Some(e)) if empty => (e.to_string(), " (default: none)"),
            (v, _) => (toml_value(v), ""),
        };
        let line = format!("# {name} = {value}");
        let pad = 36usize.saturating_sub(line.chars().count()).max(1);
        out.push_str(&format!("{line}{}# {}{note}\n", " ".repeat(pad), key.doc));
    }
    out.push('\n');
    out.push_str(PRICES_EXAMPLE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file with every commented-out setting line uncommented.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_commented_file_parses_as_is_and_uncommented_sets_every_key() {
        let text = commented_toml();
        assert_eq!(super::super::parse(&text, Path::new("loop.toml")).unwrap(), LoopConfig::default());
        let open = uncommented(&text);
        let cfg = super::super::parse(&open, Path::new("loop.toml")).unwrap_or_else(|e| panic!("{e}\n{open}"));
        let layers = Layers {
            file: &cfg,
            text: Some((&open, Path::new("loop.toml"))),
            env: &EnvSettings::default(),
            flags: &RunFlags::default(),
            allow_dirty: false,
            no_guard: false,
            repo: Path::new("/repo"),
        };
        let got = effective(&layers).unwrap();
        // Every key came from the file, from the line that sets it.
        for s in &got {
            let Source::File { line, .. } = &s.source else { panic!("{} is not from the file: {:?}", s.key, s.source) };
            let name = s.key.rsplit('.').next().unwrap();
            let at = open.lines().nth(line - 1).unwrap();
            assert!(at.starts_with(name) || s.key.starts_with("prices."), "{}: line {line} is {at:?}", s.key);
        }
        assert_eq!(got.len(), KEYS.len() + 1, "the prices example is a key too");
    }

    /// The keys the parser accepts in a table, read from its own "expected one of" message.
    fn accepted(table: &str) -> Vec<String> {
        let text = format!("{table}\nzz_not_a_key = 1\n");
        let err = super::super::parse(&text, Path::new("l.toml")).unwrap_err().to_string();
        let list = err.split("expected one of").nth(1).or_else(|| err.split("expected").nth(1)).unwrap_or("");
        list.split('`').skip(1).step_by(2).map(String::from).collect()
    }

    #[test]
    fn every_key_the_parser_knows_has_a_line() {
        let tables: &[(&str, &str)] = &[
            ("run", "[run]"),
            ("codex", "[codex]"),
            ("codex.sandbox", "[codex.sandbox]"),
            ("claude", "[claude]"),
            ("prompts", "[prompts]"),
            ("guard", "[guard]"),
            ("verify", "[verify]"),
            ("agents", "[agents]"),
        ];
        let mut checked = 0;
        for (name, header) in tables {
            let keys = accepted(header);
            assert!(!keys.is_empty(), "no key list for {header}");
            for key in keys {
                let full = format!("{name}.{key}");
                // A sub-table is listed by its own keys.
                if tables.iter().any(|(t, _)| *t == full) {
                    continue;
                }
                assert!(KEYS.iter().any(|k| k.key == full), "{full} has no entry in KEYS");
                checked += 1;
            }
        }
        assert_eq!(checked, KEYS.len(), "KEYS holds a key the parser does not accept");
        let top = accepted("");
        for t in top {
            assert!(t == "prices" || tables.iter().any(|(n, _)| *n == t), "table [{t}] is not covered");
        }
        let price = accepted("[prices.m]\ninput = 1\noutput = 1");
        assert_eq!(price, ["input", "cached_input", "output"]);
        assert!(PRICES_EXAMPLE.contains("cached_input"));
    }

    #[test]
    fn lines_are_found_for_keys_tables_and_multi_line_arrays() {
        let text = "# c\n[run]\nphase_timeout = 5 # x\n[verify]\ncommands = [\n  \"a = [\",\n]\ntimeout = 3\n\
                    [prices.\"gpt-5.5\"]\ninput = 1\n";
        let lines = key_lines(text);
        let at = |k: &str| lines.iter().find(|(n, _)| n == k).map(|(_, l)| *l);
        assert_eq!(at("run.phase_timeout"), Some(3));
        assert_eq!(at("verify.commands"), Some(5));
        assert_eq!(at("verify.timeout"), Some(8));
        assert_eq!(at("prices.gpt-5.5"), Some(9));
        assert_eq!(lines.len(), 7, "{lines:?}");
    }
}
