//! The review doc: loop (not the agent) appends each validated review's result to
//! `docs/projects/<project>/reviews/<milestone>/<issue>.md` in the issue's worktree.
//!
//! Invariants:
//! - The format is stable: one section per review, opened by a marker line
//!   `<!-- loop-review run=R issue=I review=N -->` and an `## I — review N: status` heading, then
//!   run, fix cycles, confidence, summary, findings (severity, title, details, evidence), required
//!   actions and follow-ups, always in that order.
//! - Writing is idempotent per (run, issue, review): a review re-run after a crash replaces its own
//!   section instead of adding a second one.
//! - Only this module writes the file; the engine commits it with loop's own commit.
//! - One file per issue ([`doc_path`]): no two issues' branches write the same file, so merging
//!   the Done branches of a milestone in any order has no conflict in loop's files.
//! - Each write is one atomic read + rewrite through [`crate::safefs`]: no symlink below the
//!   worktree is followed, and no half file remains. A file found empty or without its header
//!   (a failed write of an older loop left one) gets the header again.

use std::path::Path;

use crate::agent::output::ReviewOutput;

#[derive(Debug, thiserror::Error)]
pub enum ReviewDocError {
    #[error("review doc {path}: {source}")]
    Fs { path: String, source: crate::safefs::SafeFsError },
}

impl ReviewDocError {
    /// The doc's path led through a symlink: the worktree tried to steer loop's write outside.
    pub fn is_symlink(&self) -> bool {
        matches!(self, ReviewDocError::Fs { source, .. } if source.is_symlink())
    }
}

fn header(milestone: &str, issue: &str) -> String {
    format!(
        "# Reviews: {milestone} / {issue}\n\nAppended by loop after each review, one section per review. \
Keep the `loop-review` marker lines: loop finds its entries by them.\n"
    )
}

impl ReviewDocError {
    /// The doc is loop's own file: a full disk or an I/O error writing it is the environment's.
    pub fn blame(&self) -> crate::blame::Blame {
        match self {
            ReviewDocError::Fs { source, .. } => source.blame(),
        }
    }
}

pub use crate::vocab::review_doc_path as doc_path;

/// One review's identity in the doc.
pub struct Entry<'a> {
    pub run_id: &'a str,
    pub issue: &'a str,
    /// 1-based review number (fix cycles before it + 1).
    pub review: u32,
    pub fix_cycles: u32,
    pub result: &'a ReviewOutput,
}

fn marker(e: &Entry) -> String {
    format!("<!-- loop-review run={} issue={} review={} -->", e.run_id, e.issue, e.review)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The section text for one review.
pub fn section(e: &Entry) -> String {
    let r = e.result;
    let status = serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let mut s = format!("{}\n## {} — review {}: {status}\n\n", marker(e), e.issue, e.review);
    s.push_str(&format!("- Run: {}\n", e.run_id));
    s.push_str(&format!("- Fix cycles before this review: {}\n", e.fix_cycles));
    s.push_str(&format!("- Confidence: {}\n", r.confidence));
    s.push_str(&format!("- Summary: {}\n\n### Findings\n", one_line(&r.summary)));
    if r.issues.is_empty() {
        s.push_str("- none\n");
    }
    for f in &r.issues {
        s.push_str(&format!("- **[{}] {}** — {}\n", f.severity, one_line(&f.title), one_line(&f.details)));
        if !f.evidence.is_empty() {
            let ev: Vec<String> = f.evidence.iter().map(|x| format!("`{}`", one_line(x))).collect();
            s.push_str(&format!("  - Evidence: {}\n", ev.join(", ")));
        }
    }
    for (title, items) in [("Required actions", &r.required_actions), ("Follow-ups", &r.followups)] {
        s.push_str(&format!("\n### {title}\n"));
        if items.is_empty() {
            s.push_str("- none\n");
        }
        for a in items.iter() {
            s.push_str(&format!("- {}\n", one_line(a)));
        }
    }
    s
}

/// Appends (or replaces) the entry in `<worktree>/<rel>`; returns the new file text.
pub fn write(worktree: &Path, rel: &str, milestone: &str, e: &Entry) -> Result<String, ReviewDocError> {
    // Each issue's worktree has one writer of its review doc, this one, so a temp of it is what
    // a write killed before its rename (a power cut) left; `git add -A` would commit it.
    let new = crate::safefs::update_with(worktree, Path::new(rel), true, |old| {
        with_entry(&String::from_utf8_lossy(old.unwrap_or_default()), milestone, e).into_bytes()
    })
    .map_err(|source| ReviewDocError::Fs { path: rel.to_string(), source })?;
    Ok(String::from_utf8_lossy(&new).into_owned())
}

/// The doc's text with the entry appended, or its own section replaced.
fn with_entry(existing: &str, milestone: &str, e: &Entry) -> String {
    let head = header(milestone, e.issue);
    let first_line = head.lines().next().unwrap_or_default();
    let existing = if existing.trim().is_empty() {
        head
    } else if !existing.starts_with(first_line) {
        format!("{head}\n{existing}")
    } else {
        existing.to_string()
    };
    let new_section = section(e);
    let m = marker(e);
    match existing.find(&m) {
        Some(at) => {
            let after = at + m.len();
            let end = existing[after..].find("<!-- loop-review ").map(|i| after + i).unwrap_or(existing.len());
            let tail = &existing[end..];
            format!("{}{}{}{}", &existing[..at], new_section, if tail.is_empty() { "" } else { "\n" }, tail)
        }
        None => format!("{}\n{}", existing.trim_end_matches('\n').to_string() + "\n", new_section),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::output::parse_review;

    fn review(status: &str) -> ReviewOutput {
        parse_review(&format!(
            r#"{{"status":"{status}","summary":"looks\nfine","issues":[{{"severity":"high","title":"t","details":"d","evidence":["a.rs:1"]}}],
            "required_actions":["fix a"],"followups":[],"review_doc_path":null,"review_entry_written":false,"confidence":"high"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn path_is_beside_the_issues_dir() {
        assert_eq!(
            doc_path("docs/projects/orbit/issues/ORB-1.md", "M1-core", "ORB-1"),
            "docs/projects/orbit/reviews/M1-core/ORB-1.md"
        );
        assert_eq!(doc_path("ORB-1.md", "M1", "ORB-1"), "docs/reviews/M1/ORB-1.md");
    }

    #[test]
    fn entries_append_in_a_stable_format_and_rewrites_replace() {
        let d = tempfile::tempdir().unwrap();
        let rel = "docs/projects/p/reviews/M/I-1.md";
        let r1 = review("changes_required");
        let e1 = Entry { run_id: "R", issue: "I-1", review: 1, fix_cycles: 0, result: &r1 };
        write(d.path(), rel, "M", &e1).unwrap();
        let r2 = review("pass");
        let e2 = Entry { run_id: "R", issue: "I-1", review: 2, fix_cycles: 1, result: &r2 };
        let text = write(d.path(), rel, "M", &e2).unwrap();
        assert!(text.starts_with("# Reviews: M / I-1\n"));
        assert!(
            text.contains(
                "<!-- loop-review run=R issue=I-1 review=1 -->\n## I-1 — review 1: changes_required\n\n- Run: R\n\
- Fix cycles before this review: 0\n- Confidence: high\n- Summary: looks fine\n\n### Findings\n\
- **[high] t** — d\n  - Evidence: `a.rs:1`\n\n### Required actions\n- fix a\n\n### Follow-ups\n- none\n"
            ),
            "{text}"
        );
        // The same review written again (a re-run after a crash) replaces its own section.
        let again = write(d.path(), rel, "M", &e1).unwrap();
        assert_eq!(again, text);
        assert_eq!(again.matches("<!-- loop-review").count(), 2);
    }

    #[test]
    fn an_empty_or_headless_doc_gets_its_header_again() {
        let d = tempfile::tempdir().unwrap();
        let rel = "docs/projects/p/reviews/M/I-1.md";
        let r = review("pass");
        let e = Entry { run_id: "R", issue: "I-1", review: 1, fix_cycles: 0, result: &r };
        std::fs::create_dir_all(d.path().join("docs/projects/p/reviews/M")).unwrap();
        std::fs::write(d.path().join(rel), "").unwrap();
        let text = write(d.path(), rel, "M", &e).unwrap();
        assert!(text.starts_with("# Reviews: M / I-1\n\nAppended by loop"), "{text}");
        std::fs::write(d.path().join(rel), "stray notes\n").unwrap();
        let text = write(d.path(), rel, "M", &e).unwrap();
        assert!(text.starts_with("# Reviews: M / I-1\n") && text.contains("stray notes\n"), "{text}");
        assert_eq!(text.matches("# Reviews: M / I-1").count(), 1);
    }
}
