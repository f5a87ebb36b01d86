//! Agents' final messages against the dev/fix and review schemas.

use devloop::agent::output::{self, OutputError};
use devloop::machine::Phase;

use super::one_line;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for phase in [Phase::Dev, Phase::Fix, Phase::Review] {
        let valid = output::validate(phase, &text);
        if let Err(e) = &valid {
            error_ok(e);
        }
        // Schema and typed result agree: whatever validates also parses, and nothing else does.
        let typed = match phase {
            Phase::Review => output::parse_review(&text).map(|_| ()),
            _ => output::parse_work(phase, &text).map(|_| ()),
        };
        assert_eq!(valid.is_ok(), typed.is_ok(), "{phase}: schema says {valid:?}, typed parse says {typed:?}");
    }
}

fn error_ok(e: &OutputError) {
    let msg = e.to_string();
    one_line(&msg);
    if let OutputError::NotJson { start, .. } = e {
        // The quoted start of a bad reply keeps messages short however large the reply.
        assert!(start.chars().count() <= 60, "quoted start too long");
    }
}
