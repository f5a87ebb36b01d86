//! Test support: a scripted mock of the model API (the OpenAI Responses streaming endpoint) on
//! 127.0.0.1, isolated codex homes, temporary repos with issue docs, and a runner for the real
//! `loop` binary.
//!
//! The mock speaks just enough HTTP/1.1 for codex: one request per connection
//! (`connection: close`), a JSON body with content-length, and either an SSE stream, an error
//! status, or silence (the connection is held open and never answered).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{http, TestEnvironment};

/// How the mock answers one request.
pub enum Reply {
    /// `200 text/event-stream` with these events (each `{"type": ...}`), then close.
    Sse(Vec<Value>),
    /// An HTTP error status with a JSON error body.
    Status(u16, String),
    /// Never answer; hold the connection open.
    Hang,
}

type Handler = dyn Fn(usize, &Value) -> Reply + Send + Sync;

pub struct Mock {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl Mock {
    /// Starts the mock; `handler(n, body)` decides the reply to the n-th request (0-based).
    pub fn start(handler: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Mock {
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let reqs = requests.clone();
        let port = http::serve_loopback(move |req| serve(req, &reqs, &handler));
        Mock { port, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn request(&self, n: usize) -> Value {
        self.requests.lock().unwrap()[n].clone()
    }
}

fn serve(req: http::Request, reqs: &Mutex<Vec<Value>>, handler: &Handler) {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let n = {
        let mut r = reqs.lock().unwrap();
        r.push(body.clone());
        r.len() - 1
    };
    let mut out = req.out;
    match handler(n, &body) {
        Reply::Sse(events) => {
            let text: String = events
                .iter()
                .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("message")))
                .collect();
            http::respond_sse(&mut out, &text)
        }
        Reply::Status(code, message) => {
            let body = json!({"error": {"message": message, "type": "server_error", "code": null}}).to_string();
            http::respond(&mut out, code, "application/json", "", &body)
        }
        Reply::Hang => {
            std::thread::sleep(Duration::from_secs(600));
        }
    }
}

fn completed(id: &str) -> Value {
    json!({"type": "response.completed", "response": {"id": id, "usage": {
        "input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120}}})
}

/// A final assistant message.
pub fn message(text: &str) -> Reply {
    Reply::Sse(vec![
        json!({"type": "response.output_item.done", "item": {"type": "message", "role": "assistant", "id": "msg_1",
            "content": [{"type": "output_text", "text": text}]}}),
        completed("resp_msg"),
    ])
}

/// A shell command the agent runs (codex's `exec_command` tool).
pub fn shell(call_id: &str, cmd: &str) -> Reply {
    Reply::Sse(vec![
        json!({"type": "response.output_item.done", "item": {"type": "function_call", "call_id": call_id,
            "name": "exec_command", "arguments": json!({"cmd": cmd}).to_string()}}),
        completed("resp_shell"),
    ])
}

/// A patch the agent applies (codex's `apply_patch` tool).
pub fn patch(call_id: &str, patch: &str) -> Reply {
    Reply::Sse(vec![
        json!({"type": "response.output_item.done", "item": {"type": "custom_tool_call", "call_id": call_id,
            "name": "apply_patch", "input": patch}}),
        completed("resp_patch"),
    ])
}

/// Every text of the request's input messages with this role, in order.
pub fn texts(body: &Value, role: &str) -> Vec<String> {
    body["input"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["type"] == "message" && i["role"] == role)
                .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
                .filter_map(|c| c["text"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The request's whole input, as text (for "does it contain ..." checks).
pub fn input_text(body: &Value) -> String {
    body["input"].to_string()
}

/// The type of the last input item (`function_call_output` after a tool ran).
pub fn last_item_type(body: &Value) -> String {
    body["input"].as_array().and_then(|a| a.last()).and_then(|i| i["type"].as_str()).unwrap_or("").to_string()
}

/// The real codex binary for tests: `LOOP_TEST_CODEX_BIN` (set by scripts/test.sh). On CI its
/// absence is a failure, never a skip.
pub fn codex_bin() -> Option<PathBuf> {
    match std::env::var_os("LOOP_TEST_CODEX_BIN") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false) {
                panic!("LOOP_TEST_CODEX_BIN is unset on CI: run the tests through scripts/test.sh");
            }
            eprintln!("skipping: LOOP_TEST_CODEX_BIN is unset (scripts/test.sh sets it)");
            None
        }
    }
}

/// A git repo `<root>/repo` with a milestone's issue docs, plus an isolated CODEX_HOME
/// (`<root>/codex-home`), in a [`TestEnvironment`] of its own.
pub struct Repo {
    pub env: Arc<TestEnvironment>,
    pub path: PathBuf,
    pub codex_home: PathBuf,
    pub codex: Option<PathBuf>,
}

/// `issues`: (id, title, blocked_by).
pub fn repo(milestone: &str, issues: &[(&str, &str, &[&str])]) -> Repo {
    let env = TestEnvironment::new();
    let path = env.root().join("repo");
    let codex_home = env.root().join("codex-home");
    std::fs::create_dir_all(path.join("docs/projects/orbit/issues")).unwrap();
    std::fs::create_dir_all(path.join("docs/projects/orbit/milestones")).unwrap();
    std::fs::create_dir_all(&codex_home).unwrap();
    let mut map = String::from("| ID | Title | Blocked by |\n|----|-------|------------|\n");
    for (id, title, deps) in issues {
        let deps_list = deps.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        std::fs::write(
            path.join(format!("docs/projects/orbit/issues/{id}.md")),
            format!(
                "---\nid: {id}\ntitle: {title}\nmilestone: {milestone}\nblocked_by: [{deps_list}]\n---\n\n# {id}: {title}\n\n## Acceptance\n- [ ] it works\n"
            ),
        )
        .unwrap();
        map.push_str(&format!(
            "| [{id}](../issues/{id}.md) | {title} | {} |\n",
            if deps.is_empty() { "—".to_string() } else { deps_list }
        ));
    }
    std::fs::write(
        path.join(format!("docs/projects/orbit/milestones/{milestone}.md")),
        format!("---\nid: {milestone}\ntitle: test milestone\n---\n\n# {milestone}\n\n## Issue Map\n\n{map}"),
    )
    .unwrap();
    std::fs::write(path.join("README.md"), "# orbit\n").unwrap();
    env.git(&path, &["init", "-q", "-b", "main"]);
    env.git(&path, &["add", "-A"]);
    env.git(&path, &["commit", "-q", "-m", "init"]);
    Repo { env, path, codex_home, codex: None }
}

impl Repo {
    /// Points codex (through CODEX_HOME) at the mock; nothing leaves 127.0.0.1.
    pub fn use_mock(&mut self, mock: &Mock, codex: PathBuf) {
        std::fs::write(
            self.codex_home.join("config.toml"),
            format!(
                r#"model_provider = "mock"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
apps = false

[model_providers.mock]
name = "mock"
base_url = "http://127.0.0.1:{}/v1"
env_key = "MOCK_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 10000
"#,
                mock.port
            ),
        )
        .unwrap();
        // loop.toml at the repo root, as a team would have it.
        std::fs::write(
            self.path.join("loop.toml"),
            "[codex]\nmodel = \"gpt-5.5\"\n\n[run]\nphase_timeout = 120\n\
             # Transient errors are retried after 0.05 s, 0.1 s, …: tests wait for no real backoff.\n\
             retry_base_secs = 0.05\nretry_cap_secs = 0.2\n",
        )
        .unwrap();
        self.git(&self.path, &["add", "loop.toml"]);
        self.git(&self.path, &["commit", "-q", "-m", "loop.toml"]);
        // Logged in, as a team's codex is (loop's pre-flight asks `codex login status`); the key
        // is stored in this test's CODEX_HOME and never sent: the mock provider reads MOCK_KEY.
        let mut login = self.env.command(&codex);
        login
            .args(["login", "--with-api-key"])
            .env("CODEX_HOME", &self.codex_home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = login.spawn().expect("codex login");
        child.stdin.take().expect("stdin").write_all(b"sk-test-not-a-key\n").expect("write the key");
        let out = child.wait_with_output().expect("codex login");
        assert!(out.status.success(), "codex login --with-api-key: {}", String::from_utf8_lossy(&out.stderr));
        self.codex = Some(codex);
    }

    /// `git -C dir ARGS` in this repo's environment; panics unless it succeeds.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.env.git(dir, args)
    }

    /// `loop ARGS --repo <repo>` with codex's home and the mock's key; the codex of
    /// [`Repo::use_mock`], if any, as `LOOP_CODEX_BIN`.
    pub fn loop_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.loop_cmd(&self.path);
        c.args(args).arg("--repo").arg(&self.path).env("CODEX_HOME", &self.codex_home).env("MOCK_KEY", "test-key");
        if let Some(b) = &self.codex {
            c.env("LOOP_CODEX_BIN", b);
        }
        c
    }

    pub fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut c = self.loop_cmd(args);
        c.envs(extra_env.iter().copied());
        c.output().expect("run loop")
    }

    pub fn status(&self) -> Value {
        let out = self.run(&["status", "--json"], &[]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}: {}", show(&out)))
    }

    /// Every journal record of the newest run, as JSON (`loop replay --json`).
    pub fn records(&self, run: &str) -> Vec<Value> {
        let out = self.run(&["replay", run, "--json"], &[]);
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("replay --json: {e}: {}", show(&out)));
        assert_eq!(v["verified"], true, "{v}");
        v["timeline"].as_array().cloned().unwrap_or_default()
    }

    /// Processes whose environment names this repo's CODEX_HOME (codex and its children).
    pub fn codex_processes(&self) -> Vec<u32> {
        super::processes_with_env(&format!("CODEX_HOME={}", self.codex_home.display()))
    }

    pub fn wait_no_codex(&self, limit: Duration) -> bool {
        super::wait_no_processes_with_env(&format!("CODEX_HOME={}", self.codex_home.display()), limit)
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A valid dev/fix reply.
pub fn work_reply(status: &str, branch: &str, test_cmd: &str) -> String {
    json!({"status": status, "branch": branch, "worktree": null, "stack_branches": [], "draft_prs": [],
        "tests_run": [{"command": test_cmd, "status": "pass", "notes": ""}], "docs_updated": [], "deferred": [],
        "open_questions": []})
    .to_string()
}

/// A valid review reply.
pub fn review_reply(status: &str, actions: &[&str]) -> String {
    let issues: Vec<Value> = actions
        .iter()
        .map(|a| json!({"severity": "high", "title": format!("needs: {a}"), "details": "found in review", "evidence": ["hello.txt:1"]}))
        .collect();
    json!({"status": status, "summary": format!("review says {status}"), "issues": issues, "required_actions": actions,
        "followups": [], "review_doc_path": null, "review_entry_written": false, "confidence": "high"})
    .to_string()
}

/// Which loop prompt a model request carries: "dev", "review", "fix" (or "?").
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

/// The journal records (from `replay --json`) whose issue event is `kind`.
pub fn events(records: &[Value], kind: &str) -> Vec<Value> {
    records.iter().filter(|r| r["body"]["event"]["event"] == kind).cloned().collect()
}
