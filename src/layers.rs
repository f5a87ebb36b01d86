//! The crate's shape, checked: every `crate::` path in `src/` is an arrow from the module that
//! writes it to the top-level module it names, and every arrow must be in [`ALLOWED`].
//!
//! Data flows one way: docs → plan → engine ⇄ machine; engine → journal, agent, workspace, guard;
//! render and cli on top; [`crate::vocab`] and the small utilities at the bottom. A new arrow is a
//! design decision: add it to the table in the same change, or move the code instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules at the bottom that may be used from anywhere; they import nothing of the crate but
/// each other as listed in [`ALLOWED`].
const FLOOR: &[&str] = &["vocab", "text", "clock", "blame", "out"];

/// `(module, modules it may use besides FLOOR)`. A module absent from this table may use only
/// the floor.
const ALLOWED: &[(&str, &[&str])] = &[
    ("vocab", &[]),
    ("text", &[]),
    ("clock", &[]),
    ("blame", &[]),
    ("out", &[]),
    ("safefs", &[]),
    ("proc", &[]),
    ("verify", &["proc", "safefs"]),
    ("machine", &[]),
    ("docs", &[]),
    ("workspace", &["safefs", "proc"]),
    ("stack", &["proc", "workspace"]),
    ("prompts", &["machine"]),
    // config resolves the codex agent's settings (file < env < flag), and shows each setting's
    // default (pre-flight's free-disk minimum among them).
    ("config", &["agent", "machine", "preflight", "verify"]),
    ("plan", &["docs", "workspace"]),
    // pre-flight asks git, codex and gt before a run writes anything.
    ("preflight", &["proc"]),
    ("journal", &["machine", "safefs"]),
    ("runs", &["journal", "machine", "safefs", "workspace"]),
    ("reviewdoc", &["agent", "safefs", "workspace"]),
    ("agent", &["machine", "proc", "prompts", "safefs", "workspace"]),
    ("guard", &["config", "machine", "proc", "safefs", "stack", "workspace"]),
    (
        "engine",
        &[
            "agent",
            "guard",
            "journal",
            "machine",
            "plan",
            "proc",
            "reviewdoc",
            "runs",
            "safefs",
            "stack",
            "verify",
            "workspace",
        ],
    ),
    // render shows config's effective settings (`loop config`) and reads agents' replies with
    // the agent's own types (a review's required actions).
    ("render", &["agent", "config", "journal", "machine", "plan"]),
    ("bench", &["docs", "engine", "journal", "machine", "plan", "runs", "agent", "workspace"]),
    // Restate is another driver of the same machine: beside the engine, above it (a job is
    // carried out with the engine's own steps), never below anything the engine uses.
    ("restate", &["engine", "journal", "machine", "proc", "vocab"]),
];

/// Modules above everything (the UI and the binary): they may use any module.
const TOP: &[&str] = &["cli", "main", "lib", "layers"];

fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path below src").as_os_str().to_string_lossy().to_string();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// The top-level modules that `crate::` paths in `code` name (comments skipped). A file's
/// `#[cfg(test)] mod tests` (at its end, by convention) is not part of the shape: tests may
/// borrow any fixture, e.g. `bench::generate`.
fn targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = &rest[..i];
            let after = &rest[i + "crate::".len()..];
            rest = after;
            if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = after.strip_prefix('{') {
                // `use crate::{a::b, c};` on one line; multi-line groups are not used in this crate
                // and would fail the test below as an unparsed group.
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                // `crate::outln!` and friends are `#[macro_export]`ed from `out`.
                let macro_call = after[name.len()..].starts_with('!');
                if macro_call {
                    out.insert("out".to_string());
                } else if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn arrows() -> BTreeMap<String, BTreeSet<(String, String)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src).expect("below src");
                let from = module_of(rel);
                let code = std::fs::read_to_string(&path).expect("read source");
                for to in targets(&code) {
                    if to != from {
                        out.entry(from.clone()).or_default().insert((to, rel.display().to_string()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_arrow_between_modules_is_allowed() {
    let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, tos) in arrows() {
        if TOP.contains(&from.as_str()) {
            continue;
        }
        let allowed = table.get(from.as_str()).copied().unwrap_or(&[]);
        for (to, file) in tos {
            let floor_ok = FLOOR.contains(&to.as_str()) && !(FLOOR.contains(&from.as_str()) && from != "out");
            if !(floor_ok || allowed.contains(&to.as_str())) {
                wrong.push(format!("src/{file}: {from} → {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "arrows outside the layer table (src/layers.rs):\n{}", wrong.join("\n"));
}

#[test]
fn the_table_has_no_cycles() {
    // Depth-first over the table: a module reached again while on the path is a cycle.
    fn visit<'a>(
        m: &'a str,
        table: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        assert!(!path.contains(&m), "cycle in the layer table: {} → {m}", path.join(" → "));
        path.push(m);
        for next in table.get(m).copied().unwrap_or(&[]) {
            visit(next, table, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut done = BTreeSet::new();
    for m in table.keys() {
        visit(m, &table, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths() {
    let t = targets(
        "use crate::{journal::Record, machine};\nlet x = crate::agent::Tokens::default(); // crate::cli\n$crate::out::x
crate::eoutln!(\"x\")",
    );
    assert_eq!(t.into_iter().collect::<Vec<_>>(), ["agent", "journal", "machine", "out"]);
}
