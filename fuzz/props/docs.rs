//! Issue and milestone docs: front matter, body, Issue Map tables.

use std::path::Path;

use devloop::docs::{self, Dep, IssueDoc};
use devloop::workspace::sanitize;

use super::{line_count, line_of, one_line};

const ISSUE: &str = "docs/projects/p/issues/x.md";
const MILESTONE: &str = "docs/projects/p/milestones/M1.md";

/// An id that survived parsing is safe to print and to turn into a branch or directory name.
fn id_ok(id: &str, lines: usize, line: usize) {
    assert!(!id.is_empty() && id == id.trim(), "id not trimmed: {id:?}");
    assert!(!id.chars().any(char::is_control), "control character in id {id:?}");
    assert!((1..=lines).contains(&line), "line {line} outside 1..={lines} for {id:?}");
    let s = sanitize(id);
    assert!(
        !s.is_empty()
            && !s.contains("..")
            && !s.starts_with(['.', '-'])
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "sanitize({id:?}) = {s:?} is not a safe path component / branch name"
    );
}

fn deps_ok(deps: &[Dep], lines: usize) {
    for d in deps {
        id_ok(&d.id, lines, d.line);
    }
}

/// Every message names the file and a line that exists (or the one just past the end, for
/// "ended too early").
fn error_ok(msg: &str, path: &str, text: &str) {
    one_line(msg);
    let n = line_of(msg, path);
    let max = line_count(text) + 1;
    assert!((1..=max).contains(&n), "line {n} outside 1..={max}: {msg}");
}

fn issue_result(text: &str) -> Result<IssueDoc, String> {
    docs::parse_issue(text, Path::new(ISSUE), "p").map_err(|e| e.to_string())
}

/// Compares what the planner uses, ignoring `title` (free text, where YAML line folding may
/// legitimately differ between line-end styles).
fn skeleton(d: &IssueDoc) -> impl PartialEq + std::fmt::Debug {
    (d.id.clone(), d.line, d.milestone.clone(), d.milestone_line, d.blocked_by.clone(), d.blocking.clone())
}

pub fn issue_doc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let r = issue_result(&text);
    let lines = line_count(&text);
    match &r {
        Err(msg) => error_ok(msg, ISSUE, &text),
        Ok(doc) => {
            id_ok(&doc.id, lines, doc.line);
            if let Some(m) = &doc.milestone {
                id_ok(m, lines, doc.milestone_line.expect("a milestone has a line"));
            }
            deps_ok(&doc.blocked_by, lines);
            deps_ok(&doc.blocking, lines);
            // The body is free text: appending to it changes nothing.
            let longer = issue_result(&format!("{text}\nappended body line\n"));
            assert_eq!(longer.as_ref().ok(), Some(doc), "appending to the body changed the doc");
            // Windows line ends mean the same doc.
            if !text.contains('\r') {
                let crlf = issue_result(&text.replace('\n', "\r\n"));
                match &crlf {
                    Ok(d) => assert_eq!(skeleton(d), skeleton(doc), "CRLF changed the doc"),
                    Err(e) => panic!("CRLF version fails: {e}"),
                }
            }
        }
    }
    // A byte order mark is invisible: same doc, same error, same line.
    if !text.starts_with('\u{feff}') {
        assert_eq!(issue_result(&format!("\u{feff}{text}")), r, "a BOM changed the result");
    }
}

pub fn milestone_doc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = line_count(&text);
    match docs::parse_milestone(&text, Path::new(MILESTONE), "p") {
        Err(e) => error_ok(&e.to_string(), MILESTONE, &text),
        Ok(m) => {
            assert!(!m.id.is_empty() && !m.id.chars().any(char::is_control), "bad milestone id {:?}", m.id);
            let body_lines: Vec<&str> = text.strip_prefix('\u{feff}').unwrap_or(&text).lines().collect();
            for d in &m.issue_map {
                id_ok(&d.id, lines, d.line);
                let row = body_lines.get(d.line - 1).unwrap_or(&"");
                assert!(row.contains('|'), "Issue Map entry {d:?} points at a non-table line {row:?}");
            }
        }
    }
}

pub fn issue_map(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    let deps = docs::parse_issue_map(&body, 1);
    let rows: Vec<&str> = body.lines().collect();
    for d in &deps {
        assert!(!d.id.is_empty() && d.id == d.id.trim(), "bad id {d:?}");
        let row = rows.get(d.line.wrapping_sub(1)).unwrap_or_else(|| panic!("{d:?} past the end"));
        assert!(row.contains('|'), "{d:?} points at a non-table line {row:?}");
    }
    // Text above the map moves every entry down by its lines, and changes nothing else.
    let shifted = docs::parse_issue_map(&format!("intro\n\n{body}"), 5);
    let expected: Vec<Dep> = deps.iter().map(|d| Dep { id: d.id.clone(), line: d.line + 6 }).collect();
    assert_eq!(shifted, expected, "a preamble changed the Issue Map");
}
