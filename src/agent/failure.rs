//! What kind of failure an agent CLI reported, from its own words: a pure function over the
//! error texts (codex's `error` / `turn.failed` messages, the tail of its stderr), so every
//! driver classifies the same way and the rules are unit-tested on texts the real CLIs print.
//!
//! Invariants:
//! - [`Kind::Permanent`] wins over [`Kind::Transient`]: a text naming both a 401 and a retry is
//!   not retried (retrying cannot log anyone in).
//! - Only [`Kind::Transient`] is retried by the engine; [`Kind::Unknown`] fails the phase at once,
//!   as every failure did before retries existed (a retry must be earned by a known blip).
//!
//! Texts seen from codex 0.169.0 (`exec --json`, the model API answering with the status shown;
//! `request_max_retries = 0`):
//! - 429: `exceeded retry limit, last status: 429 Too Many Requests`
//! - 500: `We’re currently experiencing high demand, which may cause temporary errors.`
//! - 503: `unexpected status 503 Service Unavailable: <body>, url: <url>`
//! - cut stream: `stream disconnected before completion: stream closed before response.completed`
//! - no network: stderr `Reconnecting... 2/5 (…)` then one of the above
//! - 401: `unexpected status 401 Unauthorized: <body>, url: <url>`
//! - 404 (unknown model on some providers): `unexpected status 404 Not Found: …`
//! - 400 (bad request, e.g. a model the provider refuses): the provider's JSON error body verbatim,
//!   no status: [`Kind::Unknown`], failed at once

/// How a failure should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A blip (rate limit, server error, dropped stream, network): worth retrying after a wait.
    Transient,
    /// Retrying cannot help (auth, unknown model, bad flags): fail at once with the CLI's words.
    Permanent,
    /// Not recognised: fail at once, as before.
    Unknown,
}

/// Words that mean retrying cannot help. Lowercase; matched against lowercased text.
const PERMANENT: &[&str] = &[
    "unauthorized",
    "forbidden",
    "not logged in",
    "invalid api key",
    "incorrect api key",
    "invalid_api_key",
    "authentication",
    "model_not_found",
    "unknown model",
    "does not exist",
    "unexpected argument",
    "unrecognized option",
    "invalid value for",
    "missing environment variable",
];

/// Words that mean a blip.
const TRANSIENT: &[&str] = &[
    "too many requests",
    "rate limit",
    "rate_limit",
    "high demand",
    "overloaded",
    "internal server error",
    "bad gateway",
    "service unavailable",
    "gateway timeout",
    "stream disconnected",
    "stream closed before",
    "reconnecting...",
    "connection reset",
    "connection refused",
    "connection closed",
    "error sending request",
    "timed out waiting",
    "idle timeout",
    "temporarily unavailable",
    "api_error",
];

/// HTTP statuses named in a text: a 3-digit word after "status" or before a reason phrase
/// ("429 Too Many Requests").
fn statuses(lower: &str) -> Vec<u16> {
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let Ok(n) = w.parse::<u16>() else { continue };
        if w.len() != 3 || !(400..600).contains(&n) {
            continue;
        }
        let after_status = i > 0 && matches!(words[i - 1], "status" | "http");
        // The first word of an HTTP reason phrase.
        let before_reason = words.get(i + 1).is_some_and(|next| {
            matches!(
                *next,
                "bad" | "unauthorized" | "forbidden" | "not" | "too" | "internal" | "service" | "gateway" | "request"
            )
        });
        if after_status || before_reason {
            out.push(n);
        }
    }
    out
}

/// Classifies a failure from every text the CLI gave about it.
pub fn classify<'a>(texts: impl IntoIterator<Item = &'a str>) -> Kind {
    let lower: String = texts.into_iter().map(str::to_lowercase).collect::<Vec<_>>().join("\n");
    let codes = statuses(&lower);
    let permanent_code = codes.iter().any(|c| matches!(c, 400..=404 | 422));
    if permanent_code || PERMANENT.iter().any(|w| lower.contains(w)) {
        return Kind::Permanent;
    }
    let transient_code = codes.iter().any(|c| *c == 408 || *c == 409 || *c == 429 || *c >= 500);
    if transient_code || TRANSIENT.iter().any(|w| lower.contains(w)) {
        return Kind::Transient;
    }
    Kind::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_codex_texts_classify() {
        let transient = [
            "exceeded retry limit, last status: 429 Too Many Requests",
            "We’re currently experiencing high demand, which may cause temporary errors.",
            "unexpected status 503 Service Unavailable: mock says 503, url: http://127.0.0.1:18434/v1/responses",
            "unexpected status 500 Internal Server Error: model overloaded",
            "stream disconnected before completion: stream closed before response.completed",
            "Reconnecting... 2/5 (stream disconnected before completion: error sending request for url)",
        ];
        for t in transient {
            assert_eq!(classify([t]), Kind::Transient, "{t}");
        }
        let permanent = [
            "unexpected status 401 Unauthorized: mock says 401, url: http://127.0.0.1:18432/v1/responses",
            "unexpected status 404 Not Found: mock says 404, url: http://127.0.0.1:18435/v1/responses",
            "Not logged in",
            "error: unexpected argument '--full-auto' found",
            "The model `gpt-9` does not exist or you do not have access to it.",
        ];
        for t in permanent {
            assert_eq!(classify([t]), Kind::Permanent, "{t}");
        }
    }

    #[test]
    fn permanent_wins_and_unknown_is_not_retried() {
        assert_eq!(classify(["Reconnecting... 1/5", "unexpected status 401 Unauthorized"]), Kind::Permanent);
        assert_eq!(classify(["the agent exited with exit code 1", "no message on stdout or stderr"]), Kind::Unknown);
        // codex passes a 400's JSON body on without the status: not known as a blip, so not retried.
        let body_400 = r#"{"error": {"message": "mock says 400", "type": "server_error", "code": null}}"#;
        assert_eq!(classify([body_400]), Kind::Unknown);
        // Numbers that are not statuses: a thread id, a count, an exit code.
        assert_eq!(classify(["thread 01a23c03-500a, 429 files, exit code 503"]), Kind::Unknown);
    }

    #[test]
    fn statuses_are_found_only_where_they_are_statuses() {
        assert_eq!(statuses("last status: 429 too many requests"), [429]);
        assert_eq!(statuses("http 502 bad gateway"), [502]);
        assert_eq!(statuses("wrote 500 lines"), Vec::<u16>::new());
    }
}
