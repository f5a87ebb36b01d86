//! Paths are host-local: a run's records name the submitting clone's paths (its repo root, the
//! worktrees and logs under its state dir). A worker carries a job out in its own clone, so it
//! reads the records with the submitter's repo root replaced by its own, and writes its records
//! back with its own root replaced by the submitter's: the mirror then reads as a local run's.
//!
//! Invariant: only whole path prefixes are replaced (the root followed by `/`, or the root
//! alone), so `/a/repo` never rewrites `/a/repo2`.

use serde_json::Value;

use super::Entry;

/// `entries` with every path under `from` moved under `to`.
pub fn remap(entries: Vec<Entry>, from: &str, to: &str) -> Result<Vec<Entry>, String> {
    remap_value(entries, from, to)
}

/// Any serializable value (records, a command) with every path under `from` moved under `to`.
pub fn remap_value<T: serde::Serialize + serde::de::DeserializeOwned>(v: T, from: &str, to: &str) -> Result<T, String> {
    if from == to {
        return Ok(v);
    }
    let mut value = serde_json::to_value(&v).map_err(|e| format!("encoding records: {e}"))?;
    walk(&mut value, from, to);
    serde_json::from_value(value).map_err(|e| format!("decoding records after moving their paths: {e}"))
}

fn walk(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.contains(from) => *s = replace_root(s, from, to),
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, from, to)),
        Value::Object(map) => map.values_mut().for_each(|i| walk(i, from, to)),
        _ => {}
    }
}

/// Replaces each occurrence of the path `from` that ends at a path boundary.
pub fn replace_root(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(from) {
        let after = &rest[at + from.len()..];
        let boundary =
            after.is_empty() || !after.starts_with(|c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
        out.push_str(&rest[..at]);
        out.push_str(if boundary { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_roots_move() {
        assert_eq!(replace_root("/a/repo/.loop/x", "/a/repo", "/b/w1"), "/b/w1/.loop/x");
        assert_eq!(replace_root("/a/repo", "/a/repo", "/b/w1"), "/b/w1");
        assert_eq!(replace_root("/a/repo2/x and /a/repo: y", "/a/repo", "/b"), "/a/repo2/x and /b: y");
    }
}
