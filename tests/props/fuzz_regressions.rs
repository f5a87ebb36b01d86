//! Crashes the fuzz targets found, each pinned at the level it was fixed. Their inputs are also
//! kept in fuzz/corpus/ (named `crash-*`), which tests/props/fuzz_props.rs replays.

use std::path::Path;

use devloop::docs::{parse_milestone, DocError};
use devloop::journal::record::{open, RecordError};
use devloop::journal::Hash;

/// milestone_doc: an Issue Map cell with a NUL, an escape sequence or a lone CR was taken as an
/// issue id, so "Issue Map names unknown issue" printed the raw control characters (a lone CR
/// even split the message). Now such a cell is an invalid entry at its line.
#[test]
fn issue_map_cells_with_control_characters() {
    for (cell, line) in [("ORB-1\0", 4), ("\u{1b}[2J", 4), ("A\rB", 4)] {
        let text = format!("# Issue Map\n| id |\n|-|\n| {cell} |\n");
        let e = parse_milestone(&text, Path::new("docs/projects/p/milestones/M1.md"), "p")
            .expect_err("control characters in an Issue Map id");
        assert!(matches!(e, DocError::InvalidId { line: l, .. } if l == line), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("docs/projects/p/milestones/M1.md:4: invalid Issue Map entry "), "{msg}");
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
    }
}

/// journal_record: a record whose hash verifies but whose body does not decode reported the
/// decoder's message verbatim, and that message quotes the record's strings, CR LF included,
/// so `loop replay` printed a multi-line error. Now it is escaped and bounded.
#[test]
fn undecodable_record_error_is_one_printable_line() {
    let body = rmp_like_map_with_kind("run_\r\nstart");
    let mut bytes = body.clone();
    bytes.extend_from_slice(&Hash::of(&body).0);
    let e = open(&bytes).expect_err("unknown kind");
    assert!(matches!(e, RecordError::Decode(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("run_\\r\\nstart"), "{msg}");
    assert!(!msg.chars().any(char::is_control), "{msg:?}");

    let long = rmp_like_map_with_kind(&"k".repeat(100_000));
    let mut bytes = long.clone();
    bytes.extend_from_slice(&Hash::of(&long).0);
    let msg = open(&bytes).expect_err("unknown kind").to_string();
    assert!(msg.len() < 600, "{} bytes", msg.len());
}

/// The real record shape up to `body`, whose `kind` is `kind` (msgpack by hand, so the test
/// does not depend on encoder details it is meant to check).
fn rmp_like_map_with_kind(kind: &str) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, v: &str) {
        let n = v.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else {
            out.push(0xdb);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        out.extend_from_slice(v.as_bytes());
    }
    let mut out = vec![0x86];
    s(&mut out, "version");
    out.push(0x01);
    s(&mut out, "run_id");
    s(&mut out, "r1");
    s(&mut out, "seq");
    out.push(0x00);
    s(&mut out, "time");
    s(&mut out, "2026-01-01T00:00:00Z");
    s(&mut out, "prev");
    out.extend_from_slice(&[0xc4, 32]);
    out.extend_from_slice(&[0; 32]);
    s(&mut out, "body");
    out.push(0x81);
    s(&mut out, "kind");
    s(&mut out, kind);
    out
}

/// bad_input (enormous fields): an invalid 5 MB id was quoted whole in its error, making a
/// 5 MB "one-line" message. Now the quote stops after 100 characters.
#[test]
fn invalid_enormous_id_is_quoted_briefly() {
    let text = format!("---\nid: \"{}\\a\"\n---\n", "x".repeat(1 << 20));
    let e = devloop::docs::parse_issue(&text, Path::new("docs/projects/p/issues/a.md"), "p").expect_err("BEL in id");
    let msg = e.to_string();
    assert!(msg.starts_with("docs/projects/p/issues/a.md:2: invalid issue id \"xxx"), "{}", &msg[..80]);
    assert!(msg.len() < 300 && msg.contains('…'), "{} bytes", msg.len());
}

/// issue_doc, milestone_doc: YAML takes a lone CR for a line end, so errors after one named
/// lines past the end of the file (line 47 of an 11-line doc). Now a lone CR in front matter is
/// itself the error, at its own line.
#[test]
fn lone_carriage_return_in_front_matter() {
    let text = "---\nid: A\ntitle: x\r\rbroken: [\n---\nbody\n";
    let e = devloop::docs::parse_issue(text, Path::new("a.md"), "p").expect_err("lone CR");
    assert_eq!(
        e.to_string(),
        "a.md:3: malformed front matter: carriage return (CR) without a line feed; use LF or CRLF line ends"
    );
    let e = parse_milestone("---\r\nid: M1\r\ntitle: a\rb\r\n---\r\n", Path::new("M1.md"), "p").expect_err("lone CR");
    assert!(e.to_string().starts_with("M1.md:3: "), "{e}");
    // CRLF alone is fine, and a CR in the body is the body's business.
    assert!(devloop::docs::parse_issue("---\r\nid: A\r\n---\r\nbody\rtext\n", Path::new("a.md"), "p").is_ok());
}

/// agent_output: schema errors quote unexpected property names, so a reply with a key holding
/// a newline gave a multi-line failure reason. Now every error is escaped and bounded.
#[test]
fn schema_errors_are_printable_and_bounded() {
    use devloop::agent::output::validate;
    use devloop::machine::Phase;
    let huge_key = "k".repeat(1 << 20);
    for text in [r#"{"status":"pass","a\nb":1}"#.to_owned(), format!(r#"{{"{huge_key}":1}}"#)] {
        let msg = validate(Phase::Review, &text).expect_err("breaks the schema").to_string();
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.len() < 8 * 310 + 200, "{} bytes", msg.len());
    }
}

/// sim_scenario: serde's "unknown field" message quotes the key verbatim, so a key with a CR
/// garbled the one-line error. Issue keys are quoted through the same escape.
#[test]
fn scenario_errors_are_printable() {
    use devloop::agent::sim::parse_scenario;
    for text in [r#"{"A": {"\reviews": []}}"#, r#"{"A\rB": {}}"#, r#"{"A": {"dev": "pass"}, "\u001b[2J": {}}"#] {
        let msg = parse_scenario(text, "s.json", &["A"]).expect_err("bad scenario").to_string();
        assert!(msg.starts_with("s.json: "), "{msg}");
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
    }
}

/// codex_event / codex_stream: a `thread.started` without a `thread_id` set the thread id to "",
/// which the driver journals as the session and later passes to `codex exec resume ""`. Now it is
/// noted as unknown and sets no thread id.
#[test]
fn thread_started_without_a_thread_id_sets_no_thread() {
    use devloop::agent::codex_events::{parse_line, Event, Summary};
    for line in [r#"{"type":"thread.started"}"#, r#"{"type":"thread.started","thread_id":""}"#] {
        assert!(matches!(parse_line(line), Ok(Event::Unknown { .. })), "{line}");
        let s = Summary::of_stdout(format!("{line}\n{{\"type\":\"turn.started\"}}").as_bytes());
        assert_eq!(s.thread_id, None);
        assert_eq!(s.unknown, ["event thread.started without thread_id"]);
    }
    let s = Summary::of_stdout(b"{\"type\":\"thread.started\",\"thread_id\":\"t1\"}\n{\"type\":\"thread.started\"}");
    assert_eq!(s.thread_id.as_deref(), Some("t1"));
}

/// codex_stream: an unknown event or item type was noted verbatim, so a type holding newlines or
/// escape sequences made the phase's "ignored unknown stream entries" note span lines. Notes are
/// now escaped and bounded like the non-JSON-line note.
#[test]
fn unknown_stream_types_are_noted_on_one_printable_line() {
    use devloop::agent::codex_events::Summary;
    let long = "k".repeat(10_000);
    let stream = format!(
        "{{\"type\":\"a\\nb\\u001b[2J\"}}\n{{\"type\":\"item.completed\",\"item\":{{\"type\":\"x\\r\\ny\"}}}}\n{{\"type\":\"{long}\"}}\nnot\u{1b} json\n"
    );
    let s = Summary::of_stdout(stream.as_bytes());
    assert_eq!(s.unknown[0], "event a\\nb\\u{1b}[2J");
    assert_eq!(s.unknown[1], "item x\\r\\ny");
    assert_eq!(s.unknown[2], format!("event {}", "k".repeat(80)));
    assert_eq!(s.unknown[3], "non-JSON line: not\\u{1b} json");
}

/// loop_toml: an error toml places at the very end of the file, after its last newline, was
/// reported one line past the end (`loop.toml:7:` for a 6-line file). It is now the last line.
#[test]
fn loop_toml_error_at_eof_is_on_the_last_line() {
    use devloop::config::parse;
    for (text, line) in [("[run]\nphase_timeout\n", 2), ("[run]\n\"\"\"\nx\n", 3), ("[run]\nx =", 2)] {
        let e = parse(text, Path::new("loop.toml")).expect_err(text).to_string();
        assert!(e.starts_with(&format!("loop.toml:{line}: ")), "{text:?}: {e}");
    }
}

/// loop_toml (found by CI's fuzz run): `phase_timeout = 15532559262904483838` fits a u64 but is
/// no TOML integer (they are i64); loop accepted it, and a deadline that far out would overflow
/// the clock. The config now holds TOML's own integer type, so it is an error at its line, and
/// `proc` never adds a timeout to the clock unchecked.
#[test]
fn loop_toml_integer_beyond_i64_is_an_error_at_its_line() {
    use devloop::config::parse;
    let e = parse("[run]\nphase_timeout = 15532559262904483838\n", Path::new("loop.toml"))
        .expect_err("accepted")
        .to_string();
    assert!(e.starts_with("loop.toml:2: "), "{e}");
    let cmd = devloop::proc::Cmd::new("true").timeout(std::time::Duration::from_secs(u64::MAX));
    assert!(devloop::proc::run(&cmd).unwrap().success());
}
