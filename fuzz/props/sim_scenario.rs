//! `--sim-scenario` files.

use devloop::agent::sim::parse_scenario;

use super::one_line;

const SOURCE: &str = "scenario.json";
const IDS: &[&str] = &["ORB-1", "ORB-2", "a b", "../x"];
const WORK: &[&str] = &["pass", "failed", "deferred", "crash", "hang", "garbage", "invalid"];
const REVIEW: &[&str] = &["pass", "changes_required", "blocked", "crash", "hang", "garbage", "invalid"];

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_scenario(&text, SOURCE, IDS) {
        Err(e) => {
            let msg = e.to_string();
            one_line(&msg);
            assert!(msg.starts_with(&format!("{SOURCE}: ")), "does not name the file: {msg}");
        }
        Ok(map) => {
            for (issue, script) in &map {
                assert!(IDS.contains(&issue.as_str()), "accepted unknown issue {issue:?}");
                for v in script.dev.iter().chain(&script.fix) {
                    assert!(WORK.contains(&v.as_str()), "accepted work outcome {v:?}");
                }
                for v in &script.reviews {
                    assert!(REVIEW.contains(&v.as_str()), "accepted review outcome {v:?}");
                }
            }
        }
    }
}
