//! The Claude Code agent: one `claude -p` per phase, in the issue's worktree.
//!
//! `claude -p PROMPT --output-format stream-json --verbose --json-schema SCHEMA --settings FILE
//! --permission-mode acceptEdits --allowedTools Bash [--disallowedTools …] [--model M] [extra]
//! [--resume SESSION]`, run from the worktree (Claude Code has no `--cwd`).
//!
//! Invariants:
//! - claude runs from an argument vector with stdin null, in its own process group, with the
//!   phase's deadline ([`crate::proc`]); expiry kills the group and the phase fails as timed out.
//! - The `system`/`init` line's session id is signalled the moment it is read, so the engine
//!   journals it before anything else; a later `loop resume` continues that session
//!   (`--resume SESSION`) instead of starting the phase over.
//! - Claude Code's state lives in a loop-owned `CLAUDE_CONFIG_DIR` per run
//!   (`<logs>/<run>/claude-config`): the user's `~/.claude` is never read or written, and a resumed
//!   run finds its sessions there. `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` keeps it from
//!   phoning home for anything but the model.
//! - The reply is the result line's `structured_output` (the `--json-schema` StructuredOutput
//!   tool), serialized and validated like codex's; a run is judged by `is_error` and the exit code,
//!   never by `subtype` (an API failure ends `subtype: success, is_error: true`). A result without
//!   a usable reply is asked for again with `--resume` at most `retries` times.
//! - Every invocation's raw stdout is kept under `<logs>/<run>/<issue>/`, stderr beside it; logs
//!   and the settings file are written through [`crate::safefs`], never through a symlink.
//!
//! Guarding. The loop-owned settings file (`--settings`) installs a PreToolUse hook for
//! `Bash|Edit|Write|NotebookEdit` that runs this very binary as `loop hook claude`
//! ([`crate::guard::shim::hook_claude`]): git/gt invocations are classified by the same policy as
//! the shims, file edits are refused outside the worktree and in review phases, and every decision
//! is journaled. Exit 2 from a hook blocks the call whatever the permission mode. Review phases
//! also get `--disallowedTools Edit Write NotebookEdit`, so a review cannot write even if the hook
//! were gone.
//!
//! Permission mode: `acceptEdits` with `--allowedTools Bash`. The phase must edit files and run
//! commands without a human to approve them; `bypassPermissions` (and
//! `--dangerously-skip-permissions`) refuse to start as root unless `IS_SANDBOX=1`, which loop will
//! not claim; `dontAsk` denies whatever is not listed, so every tool a phase may need would have to
//! be enumerated; `acceptEdits` allows file edits (inside the working directory) and reads, and
//! `--allowedTools Bash` the shell, and nothing else (web fetches, MCP tools stay denied and show
//! in `permission_denials`, which go to the phase's note). Measured with 2.1.328 as root.
//!
//! Deliberately not done: there is no OS sandbox around Claude Code (unlike codex's), so the
//! after-phase checks and the hook are what guard the repository; the journal says so through
//! the run's recorded sandbox settings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::claude_events::{self, Event, ResultLine, Summary};
use super::common::{self, continue_message, retry_message};
use super::output;
use super::{tail, Agent, AgentError, PhaseReply, PhaseRequest, Signal};
use crate::machine::Phase;
use crate::proc::{self, Cmd};
use crate::prompts;
use crate::safefs;
use crate::workspace::sanitize;

pub const DEFAULT_BIN: &str = "claude";
pub const VERSION: &str = "2.1.328";
pub const INSTALL_HINT: &str =
    "install it with `npm install -g @anthropic-ai/claude-code@2.1.328`, and give it an API key \
(ANTHROPIC_API_KEY) or a token from `claude setup-token` (CLAUDE_CODE_OAUTH_TOKEN); or point LOOP_CLAUDE_BIN or \
`[claude] bin` in loop.toml at the binary";

/// The permission mode every phase runs in (see the module docs for why).
pub const PERMISSION_MODE: &str = "acceptEdits";
/// The tools the PreToolUse hook sees (a regex over tool names).
pub const HOOK_MATCHER: &str = "Bash|Edit|Write|NotebookEdit";
pub use crate::vocab::{CLAUDE_PHASE_ENV as PHASE_ENV, CLAUDE_WORKTREE_ENV as WORKTREE_ENV};
/// The tools a review may not use.
pub const REVIEW_DENIED: [&str; 3] = ["Edit", "Write", "NotebookEdit"];

/// Everything the Claude Code agent needs, recorded as JSON in the run's `AgentSpec.settings` so
/// a resumed run drives claude exactly as the first one did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeSettings {
    pub bin: String,
    pub model: Option<String>,
    /// Extra arguments, in order, after loop's own.
    pub args: Vec<String>,
    /// Re-asks for an unusable reply (via `--resume`).
    pub retries: u32,
    /// `<state>/logs`; streams go to `<logs>/<run>/<issue>/`.
    pub logs_root: String,
    /// The user's prompt templates, overriding the built-in ones by name.
    pub prompts_dir: Option<String>,
    /// The loop binary the hook runs (`<exe> hook claude`); the running loop when None.
    pub hook_exe: Option<String>,
}

impl ClaudeSettings {
    pub fn new(logs_root: &Path) -> ClaudeSettings {
        ClaudeSettings {
            bin: DEFAULT_BIN.into(),
            model: None,
            args: Vec::new(),
            retries: 1,
            logs_root: logs_root.display().to_string(),
            prompts_dir: None,
            hook_exe: None,
        }
    }
}

/// Is the binary there? `Err` is a message that says how to install it.
pub fn check_installed(bin: &str) -> Result<PathBuf, String> {
    common::check_installed(bin, "claude", INSTALL_HINT)
}

/// Quotes a word for the `sh -c` Claude Code runs a hook command with.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The loop-owned `--settings` file: the PreToolUse hook, and nothing else of the user's.
pub fn settings_json(hook_exe: &str) -> String {
    let command = format!("{} hook claude", sh_quote(hook_exe));
    let v = serde_json::json!({
        "hooks": {"PreToolUse": [{"matcher": HOOK_MATCHER, "hooks": [{"type": "command", "command": command}]}]},
    });
    serde_json::to_string_pretty(&v).expect("settings encode")
}

pub struct ClaudeAgent {
    pub settings: ClaudeSettings,
}

/// What one claude invocation came to.
struct Invocation {
    summary: Summary,
    out: proc::Output,
    log: PathBuf,
}

impl ClaudeAgent {
    pub fn new(settings: ClaudeSettings) -> ClaudeAgent {
        ClaudeAgent { settings }
    }

    fn run_dir(&self, req: &PhaseRequest) -> PathBuf {
        Path::new(&self.settings.logs_root).join(sanitize(&req.run_id))
    }

    /// `<logs>/<run>/<issue>/`.
    pub fn log_dir(&self, req: &PhaseRequest) -> PathBuf {
        self.run_dir(req).join(sanitize(&req.issue.id))
    }

    /// `CLAUDE_CONFIG_DIR`: claude's sessions and state for this run.
    pub fn config_dir(&self, req: &PhaseRequest) -> PathBuf {
        self.run_dir(req).join("claude-config")
    }

    pub fn settings_path(&self, req: &PhaseRequest) -> PathBuf {
        self.run_dir(req).join("claude-settings.json")
    }

    /// A path under the logs root as (root, path below it), for [`safefs`].
    fn below_logs<'p>(&'p self, path: &'p Path) -> (&'p Path, &'p Path) {
        let root = Path::new(&self.settings.logs_root);
        (root, path.strip_prefix(root).unwrap_or(path))
    }

    pub fn prompt(&self, req: &PhaseRequest) -> Result<String, prompts::PromptError> {
        common::prompt(req, self.settings.prompts_dir.as_deref())
    }

    /// `claude -p MESSAGE ...` with every loop flag; `session` continues that session.
    pub fn cmd(&self, req: &PhaseRequest, message: &str, session: Option<&str>) -> Cmd {
        let s = &self.settings;
        let mut cmd = Cmd::new(&s.bin)
            .arg("-p")
            .arg(message)
            .args(["--output-format", "stream-json", "--verbose", "--json-schema"])
            .arg(output::schema_text(req.phase).trim())
            .arg("--settings")
            .arg(self.settings_path(req))
            .args(["--permission-mode", PERMISSION_MODE, "--allowedTools", "Bash"])
            .supervised();
        if req.phase == Phase::Review {
            cmd = cmd.arg("--disallowedTools").args(REVIEW_DENIED);
        }
        if let Some(m) = &s.model {
            cmd = cmd.args(["--model", m]);
        }
        cmd = cmd.args(&s.args);
        if let Some(id) = session {
            cmd = cmd.args(["--resume", id]);
        }
        // The guard's environment (HOME with the shims first on PATH, LOOP_GUARD_CTX) first, then
        // what only claude and its hook need.
        for (k, v) in &req.env {
            cmd = cmd.env(k, v);
        }
        cmd.env("CLAUDE_CONFIG_DIR", self.config_dir(req))
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env(PHASE_ENV, req.phase.to_string())
            .env(WORKTREE_ENV, &req.worktree)
            .cwd(&req.worktree)
    }

    /// Runs one claude invocation, logging its stream to `<stem>.jsonl` and `<stem>.stderr`.
    /// Only loop's own failures (spawn, logs, timeout, interrupt) are errors here; what claude
    /// said is judged by the caller.
    fn invoke(
        &self,
        req: &PhaseRequest,
        cmd: Cmd,
        stem: &str,
        deadline: Instant,
        signal: &mut dyn FnMut(Signal),
    ) -> Result<Invocation, AgentError> {
        let log_path = self.log_dir(req).join(format!("{stem}.jsonl"));
        let spec = common::LogSpec {
            tool: "claude",
            install_hint: INSTALL_HINT,
            logs_root: Path::new(&self.settings.logs_root),
        };
        let mut summary = Summary::default();
        let out = common::run_logged(req, &spec, cmd, &log_path, deadline, &mut |line| {
            if let Some(Event::Init { session_id }) = summary.absorb(line) {
                signal(Signal::SessionStarted { session: session_id });
            }
        })?;
        Ok(Invocation { summary, out, log: log_path })
    }

    /// A run that failed, in claude's own words: the error result's text, else stderr.
    fn failure(phase: Phase, inv: &Invocation) -> AgentError {
        let said = inv.summary.result.as_ref().filter(|r| r.is_error).map(|r| {
            let text = crate::text::printable(r.result.trim(), 400);
            if text.is_empty() {
                format!("claude reported an error ({})", r.subtype)
            } else {
                text
            }
        });
        let why = said.unwrap_or_else(|| {
            let t = tail(&inv.out.stderr_text(), 3);
            if t.is_empty() {
                "no result line and nothing on stderr".to_string()
            } else {
                t
            }
        });
        // A blip (429, overload, 5xx, a dropped connection) is retried by the engine in the same
        // session; anything the shared classifier calls permanent (auth, unknown model) is not.
        let permanent = super::failure::classify([why.as_str()]) == super::failure::Kind::Permanent;
        if !permanent && transient(&why) {
            return AgentError::Transient {
                phase,
                status: inv.out.describe(),
                message: format!("{why} (log: {})", inv.log.display()),
                session: inv.summary.session_id.clone(),
            };
        }
        AgentError::Crashed {
            phase,
            status: inv.out.describe(),
            exit_code: inv.out.code,
            stderr: format!("{why} (log: {})", inv.log.display()),
        }
    }

    fn failed(inv: &Invocation) -> bool {
        inv.out.code != Some(0) || inv.summary.result.as_ref().is_none_or(|r| r.is_error)
    }

    /// Makes the log dir and the settings file; renders the prompt.
    fn prepare(&self, req: &PhaseRequest) -> Result<String, AgentError> {
        let phase = req.phase;
        let root = Path::new(&self.settings.logs_root);
        std::fs::create_dir_all(root).map_err(|source| AgentError::Io {
            phase,
            what: format!("creating {}", root.display()),
            source,
        })?;
        for dir in [self.log_dir(req), self.config_dir(req)] {
            let (_, rel) = self.below_logs(&dir);
            safefs::open_dir(root, rel, true).map_err(|e| common::fs_err(phase, "creating a dir".into(), e))?;
        }
        let exe = match &self.settings.hook_exe {
            Some(e) => e.clone(),
            None => std::env::current_exe()
                .map_err(|source| AgentError::Io { phase, what: "finding loop's own binary".into(), source })?
                .display()
                .to_string(),
        };
        let path = self.settings_path(req);
        let (_, rel) = self.below_logs(&path);
        let text = settings_json(&exe);
        if safefs::read(root, rel).ok().flatten().as_deref() != Some(text.as_bytes()) {
            safefs::write(root, rel, text.as_bytes())
                .map_err(|e| common::fs_err(phase, "writing the settings file".into(), e))?;
        }
        self.prompt(req).map_err(|e| AgentError::Setup { phase, source: Box::new(e) })
    }
}

/// The reply text of a result line: its structured output as JSON, or "" when there is none.
pub fn reply_text(r: Option<&ResultLine>) -> String {
    r.and_then(|r| r.structured_output.as_ref()).map(|v| v.to_string()).unwrap_or_default()
}

impl Agent for ClaudeAgent {
    fn name(&self) -> &str {
        "claude"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        let start = Instant::now();
        let deadline = start + req.timeout;
        let phase = req.phase;
        let prompt = self.prepare(req)?;
        let stem = common::log_stem(req);
        let mut notes = Vec::new();
        let mut inv = match &req.resume_session {
            Some(session) => {
                let cmd = self.cmd(req, &continue_message(&prompt), Some(session));
                let mut reopened = false;
                let mut watch = |s: Signal| {
                    reopened = true;
                    signal(s)
                };
                let inv = self.invoke(req, cmd, &format!("{stem}-resume"), deadline, &mut watch)?;
                if Self::failed(&inv) && !reopened {
                    // The session never reached claude's store (it died before writing it):
                    // nothing to continue, so the phase starts over rather than failing on a
                    // technicality. A session that reopened and then failed is a real failure.
                    notes.push(format!(
                        "could not continue claude session {session} ({}); started the phase afresh",
                        Self::failure(phase, &inv)
                    ));
                    self.invoke(req, self.cmd(req, &prompt, None), &stem, deadline, signal)?
                } else {
                    notes.push(format!("continued claude session {session} of an interrupted attempt"));
                    inv
                }
            }
            None => self.invoke(req, self.cmd(req, &prompt, None), &stem, deadline, signal)?,
        };
        // A result's usage counts its own invocation only, so a phase's tokens are the sum; its
        // total_cost_usd is the session's so far (measured with 2.1.328: a `--resume` reports
        // the first run's cost plus its own), so the last one is the phase's.
        let mut tokens: Option<super::Tokens> = None;
        let mut cost: Option<f64> = None;
        let mut denials: Vec<String> = Vec::new();
        let mut retries = 0;
        loop {
            if let Some(r) = &inv.summary.result {
                if let Some(u) = r.usage {
                    let t = tokens.get_or_insert_with(Default::default);
                    t.input += u.input;
                    t.cached_input += u.cached_input;
                    t.output += u.output;
                }
                cost = r.total_cost_usd.or(cost);
                denials.extend(r.permission_denials.iter().cloned());
            }
            if Self::failed(&inv) {
                return Err(Self::failure(phase, &inv));
            }
            let text = reply_text(inv.summary.result.as_ref());
            let Err(e) = output::validate(phase, &text) else { break };
            let Some(session) = inv.summary.session_id.clone() else { break };
            if retries >= self.settings.retries {
                notes.push(format!("reply still unusable after {retries} retry(ies): {e}"));
                break;
            }
            retries += 1;
            notes.push(format!("reply unusable ({e}); asked again via `claude --resume {session}`"));
            let cmd = self.cmd(req, &retry_message(&e), Some(&session));
            inv = self.invoke(req, cmd, &format!("{stem}-retry{retries}"), deadline, signal)?;
        }
        if !denials.is_empty() {
            notes.push(format!("claude denied {} tool call(s): {}", denials.len(), denials.join("; ")));
        }
        if !inv.summary.unknown.is_empty() {
            notes.push(format!("ignored unknown stream entries: {}", inv.summary.unknown.join(", ")));
        }
        Ok(PhaseReply {
            output: reply_text(inv.summary.result.as_ref()),
            exit_code: inv.out.code,
            duration: start.elapsed(),
            session: inv.summary.session_id.clone(),
            tokens,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            cost_usd: cost,
        })
    }
}

/// Whether a failed phase's words say it is worth running again unchanged (rate limits, overload,
/// server errors, connection failures); see [`claude_events::transient`].
pub fn transient(err_text: &str) -> bool {
    claude_events::transient(err_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(phase: Phase) -> PhaseRequest {
        PhaseRequest {
            env: vec![("HOME".into(), "/h".into())],
            ..PhaseRequest::sample(phase, r#"{"required_actions":["do a"]}"#)
        }
    }

    #[test]
    fn argv_per_phase() {
        let mut s = ClaudeSettings::new(Path::new("/s/logs"));
        s.model = Some("claude-opus-5-5".into());
        s.args = vec!["--max-turns".into(), "40".into()];
        let agent = ClaudeAgent::new(s);
        let dev = agent.cmd(&req(Phase::Dev), "P", None).display();
        assert!(dev.starts_with("claude -p P --output-format stream-json --verbose --json-schema '{"), "{dev}");
        assert!(
            dev.ends_with(
                "' --settings /s/logs/R/claude-settings.json --permission-mode acceptEdits --allowedTools Bash \
--model claude-opus-5-5 --max-turns 40"
            ),
            "{dev}"
        );
        let review = agent.cmd(&req(Phase::Review), "again", Some("S-1")).display();
        assert!(
            review.ends_with(
                "--allowedTools Bash --disallowedTools Edit Write NotebookEdit --model claude-opus-5-5 --max-turns 40 \
--resume S-1"
            ),
            "{review}"
        );
        assert!(review.contains("\"verdict\"") || review.contains("changes_required"), "review schema: {review}");
    }

    #[test]
    fn settings_run_this_loop_as_the_hook() {
        let v: serde_json::Value = serde_json::from_str(&settings_json("/opt/it's/loop")).unwrap();
        let hook = &v["hooks"]["PreToolUse"][0];
        assert_eq!(hook["matcher"], HOOK_MATCHER);
        assert_eq!(hook["hooks"][0]["command"], "'/opt/it'\\''s/loop' hook claude");
    }

    #[test]
    fn the_reply_is_the_structured_output() {
        let r = ResultLine { structured_output: Some(serde_json::json!({"status": "pass"})), ..Default::default() };
        assert_eq!(reply_text(Some(&r)), r#"{"status":"pass"}"#);
        assert_eq!(reply_text(Some(&ResultLine::default())), "");
        assert_eq!(reply_text(None), "");
    }
}
