//! `loop logs` listing: one line per file of an issue's raw logs, in the order the phases ran.

use std::path::Path;

/// One file as listed: phase, attempt, what it is, size in bytes, path.
pub struct Row<'a> {
    pub phase: &'a str,
    pub attempt: &'a str,
    pub what: &'a str,
    pub bytes: u64,
    pub path: &'a Path,
}

/// The listing, or one line saying there is none (and why that can be normal).
pub fn text(run: &str, issue: &str, dir: &Path, rows: &[Row<'_>]) -> String {
    let issue = crate::text::escape(issue);
    if rows.is_empty() {
        return format!(
            "no logs for {issue} in run {run} under {} (the simulated agent writes none; verification writes one per command)\n",
            dir.display()
        );
    }
    let w = rows.iter().map(|r| r.phase.len()).max().unwrap_or(5).max(5);
    let a = rows.iter().map(|r| r.attempt.len()).max().unwrap_or(7).max(7);
    let k = rows.iter().map(|r| r.what.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<w$}  {:<a$}  {:<k$}  {:>9}  PATH\n", "PHASE", "ATTEMPT", "WHAT", "BYTES");
    for r in rows {
        out.push_str(&format!(
            "{:<w$}  {:<a$}  {:<k$}  {:>9}  {}\n",
            r.phase,
            r.attempt,
            r.what,
            r.bytes,
            crate::text::escape(&r.path.display().to_string())
        ));
    }
    out
}
