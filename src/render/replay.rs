//! What `loop replay` prints besides the timeline: its verdict as text, and everything as JSON.

use serde_json::{json, Value};

use crate::journal::replay::Replayed;

/// `{"run_id", "records", "verified", "error", "timeline", "status"}` for `replay --json`.
pub fn json(replayed: &Replayed, timeline: Vec<Value>) -> Value {
    json!({
        "run_id": replayed.view.as_ref().map(|v| v.run_id.clone()),
        "records": replayed.records,
        "verified": replayed.error.is_none(),
        "error": replayed.error.as_ref().map(|e| e.to_string()),
        "timeline": timeline,
        "status": replayed.view.as_ref().map(|v| super::status_json(v, None)),
    })
}

/// The lines after a verified timeline: `replay ok: …` and the guard's summary.
pub fn verdict_text(replayed: &Replayed, style: super::style::Style) -> String {
    let v = replayed.view.as_ref().expect("a verified journal has a view");
    let mut out = format!(
        "{}: {} records, chain verified; {}\n",
        style.good("replay ok"),
        replayed.records,
        super::summary_styled(v, style)
    );
    if let Some(g) = super::guard_summary(v) {
        out.push_str(&format!("{g}\n"));
    }
    out
}
