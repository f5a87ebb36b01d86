//! Test support: a scripted mock of the Anthropic Messages API on 127.0.0.1 for the real Claude
//! Code CLI, and a repo set up to run `loop --agent claude` against it.
//!
//! The mock speaks just enough HTTP/1.1 for claude 2.1.x: one request per connection
//! (`connection: close`); `HEAD /` is 200 (claude's reachability probe); `POST
//! /v1/messages/count_tokens` answers a fixed count; `POST /v1/messages` is answered by the test's
//! handler with an SSE stream (message_start, content_block_start/delta/stop per block,
//! message_delta, message_stop), an HTTP error status (with `retry-after`), or silence. Only
//! `/v1/messages` bodies are kept in [`Mock::requests`].

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::codex::{repo as codex_repo, Repo};
use super::http;

/// One content block of the model's turn.
pub enum Block {
    Text(String),
    /// `tool_use` of a tool by name with its input.
    Tool(String, Value),
}

/// How the mock answers one `/v1/messages` request.
pub enum Reply {
    /// `200 text/event-stream`: one assistant message of these blocks.
    Message(Vec<Block>),
    /// An HTTP error status (`error.type`, message), with `retry-after: 0` and
    /// `x-should-retry: false`, so claude's own client gives up at once and loop's retry (not
    /// claude's hidden one) is what the test sees.
    Status(u16, &'static str, String),
    /// Never answer; hold the connection open.
    Hang,
}

type Handler = dyn Fn(usize, &Value) -> Reply + Send + Sync;

pub struct Mock {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Value>>>,
    /// Requests that are being answered with [`Reply::Hang`] right now (or were).
    pub hung: Arc<AtomicUsize>,
}

impl Mock {
    /// Starts the mock; `handler(n, body)` decides the reply to the n-th messages request (0-based).
    pub fn start(handler: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Mock {
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let hung: Arc<AtomicUsize> = Arc::default();
        let (reqs, h) = (requests.clone(), hung.clone());
        let port = http::serve_loopback(move |req| serve(req, &reqs, &handler, &h));
        Mock { port, requests, hung }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn request(&self, n: usize) -> Value {
        self.requests.lock().unwrap()[n].clone()
    }

    pub fn all(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(req: http::Request, reqs: &Mutex<Vec<Value>>, handler: &Handler, hung: &AtomicUsize) {
    let mut out = req.out;
    match (req.method.as_str(), req.path.as_str()) {
        ("HEAD", _) => return http::respond(&mut out, 200, "text/plain", "", ""),
        ("POST", "/v1/messages/count_tokens") => {
            return http::respond(&mut out, 200, "application/json", "", r#"{"input_tokens": 1000}"#)
        }
        ("POST", "/v1/messages") => {}
        _ => {
            return http::respond(
                &mut out,
                404,
                "application/json",
                "",
                r#"{"type":"error","error":{"type":"not_found_error","message":"mock"}}"#,
            )
        }
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let n = {
        let mut r = reqs.lock().unwrap();
        r.push(body.clone());
        r.len() - 1
    };
    match handler(n, &body) {
        Reply::Message(blocks) => http::respond_sse(&mut out, &sse(n, &blocks)),
        Reply::Status(code, kind, message) => {
            let body = json!({"type": "error", "error": {"type": kind, "message": message}}).to_string();
            http::respond(&mut out, code, "application/json", "retry-after: 0\r\nx-should-retry: false\r\n", &body)
        }
        Reply::Hang => {
            hung.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(600));
        }
    }
}

/// The SSE events of one assistant message.
fn sse(n: usize, blocks: &[Block]) -> String {
    let mut ev = vec![json!({"type": "message_start", "message": {"id": format!("msg_{n}"), "type": "message",
        "role": "assistant", "model": "claude-mock", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 100, "cache_read_input_tokens": 50, "cache_creation_input_tokens": 0, "output_tokens": 1}}})];
    let mut stop = "end_turn";
    for (i, b) in blocks.iter().enumerate() {
        match b {
            Block::Text(t) => {
                ev.push(
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
                ev.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}}));
            }
            Block::Tool(name, input) => {
                stop = "tool_use";
                ev.push(json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use",
                    "id": format!("toolu_{n}_{i}"), "name": name, "input": {}}}));
                ev.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta",
                    "partial_json": input.to_string()}}));
            }
        }
        ev.push(json!({"type": "content_block_stop", "index": i}));
    }
    ev.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": 20}}));
    ev.push(json!({"type": "message_stop"}));
    ev.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect()
}

/// A Bash call the agent runs.
pub fn bash(cmd: &str) -> Reply {
    Reply::Message(vec![Block::Tool("Bash".into(), json!({"command": cmd, "description": "mock step"}))])
}

/// A Write of a file.
pub fn write(path: &str, content: &str) -> Reply {
    Reply::Message(vec![Block::Tool("Write".into(), json!({"file_path": path, "content": content}))])
}

/// The reply, through the StructuredOutput tool `--json-schema` adds (ends the run at once).
pub fn structured(reply_json: &str) -> Reply {
    let v: Value = serde_json::from_str(reply_json).expect("a JSON reply");
    Reply::Message(vec![Block::Tool("StructuredOutput".into(), v)])
}

/// Plain text and end of turn: no structured output.
pub fn text(t: &str) -> Reply {
    Reply::Message(vec![Block::Text(t.into())])
}

/// Every text of the request's messages with this role, in order (tool results included).
pub fn texts(body: &Value, role: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten().filter(|m| m["role"] == role) {
        match &m["content"] {
            Value::String(s) => out.push(s.clone()),
            Value::Array(blocks) => {
                for b in blocks {
                    if let Some(t) = b["text"].as_str() {
                        out.push(t.to_string());
                    } else if b["type"] == "tool_result" {
                        out.push(b["content"].to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether the last user turn hands back a tool's result (the model asked for a tool before).
pub fn after_tool(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

/// The results of the tools the model called, as text, in order.
pub fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect()
}

/// Which loop prompt a request carries: "dev", "review", "fix" (or "?").
pub fn phase_of(body: &Value) -> &'static str {
    let t = texts(body, "user").join("\n");
    if t.contains("# dev-auto-fix-review") {
        "fix"
    } else if t.contains("# dev-auto-review-linear") {
        "review"
    } else if t.contains("# dev-auto-parallel") {
        "dev"
    } else {
        "?"
    }
}

/// The issue a request's prompt is about (`**ORB-n**`), or "".
pub fn issue_of(body: &Value) -> String {
    let t = texts(body, "user").join("\n");
    (1..10).map(|n| format!("ORB-{n}")).find(|id| t.contains(&format!("**{id}**"))).unwrap_or_default()
}

/// The real claude binary for tests: `LOOP_TEST_CLAUDE_BIN` (set by scripts/test.sh). On CI its
/// absence is a failure, never a skip.
pub fn claude_bin() -> Option<PathBuf> {
    match std::env::var_os("LOOP_TEST_CLAUDE_BIN") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false) {
                panic!("LOOP_TEST_CLAUDE_BIN is unset on CI: run the tests through scripts/test.sh");
            }
            eprintln!("skipping: LOOP_TEST_CLAUDE_BIN is unset (scripts/test.sh sets it)");
            None
        }
    }
}

/// A repo (see [`super::codex::repo`]) whose loop.toml says `[claude]`, driven against `mock`.
pub struct ClaudeRepo {
    pub repo: Repo,
    pub claude: PathBuf,
    pub base_url: String,
}

pub fn claude_repo(mock: &Mock, claude: PathBuf, issues: &[(&str, &str, &[&str])]) -> ClaudeRepo {
    let r = codex_repo("M1", issues);
    std::fs::write(
        r.path.join("loop.toml"),
        "[claude]\nretries = 1\n\n[run]\nphase_timeout = 120\nretry_base_secs = 0.05\nretry_cap_secs = 0.2\n",
    )
    .unwrap();
    r.git(&r.path, &["add", "loop.toml"]);
    r.git(&r.path, &["commit", "-q", "-m", "loop.toml"]);
    ClaudeRepo { repo: r, claude, base_url: mock.url() }
}

impl ClaudeRepo {
    /// `loop ARGS --repo <repo>` with the claude of this repo (`LOOP_CLAUDE_BIN`), the mock's URL
    /// and a dummy key; nothing leaves 127.0.0.1.
    pub fn loop_cmd(&self, args: &[&str]) -> Command {
        // The codex repo's command: its CODEX_HOME, and its codex when a test mixes backends.
        let mut c = self.repo.loop_cmd(args);
        c.env("LOOP_AGENT", "claude")
            .env("LOOP_CLAUDE_BIN", &self.claude)
            .env("ANTHROPIC_BASE_URL", &self.base_url)
            .env("ANTHROPIC_API_KEY", "test");
        c
    }

    pub fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut c = self.loop_cmd(args);
        c.envs(extra_env.iter().copied());
        c.output().expect("run loop")
    }

    /// Processes (not loop) whose environment names this repo's mock URL: claude and its tools.
    pub fn claude_processes(&self) -> Vec<u32> {
        super::processes_with_env(&format!("ANTHROPIC_BASE_URL={}", self.base_url))
    }

    pub fn wait_no_claude(&self, limit: Duration) -> bool {
        super::wait_no_processes_with_env(&format!("ANTHROPIC_BASE_URL={}", self.base_url), limit)
    }
}
