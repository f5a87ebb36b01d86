//! The real agent: one `codex exec --json` per phase, in the issue's worktree.
//!
//! Invariants:
//! - codex runs from an argument vector with stdin null, in its own process group, with the
//!   phase's deadline ([`crate::proc`]); expiry kills the group and the phase fails as timed out.
//! - `thread.started` is signalled the moment it is read, so the engine journals the thread id
//!   before anything else happens; a later `loop resume` continues that thread
//!   (`codex exec resume <id>`) instead of starting the phase over.
//! - codex does not enforce `--output-schema`, so the final message is validated here; an unusable
//!   one is asked for again through `exec resume` at most `retries` times, then returned as is for
//!   the engine to fail the phase on. Nothing is guessed from it.
//! - Every invocation's raw stdout is kept verbatim under `<logs>/<run>/<issue>/`, stderr beside it;
//!   logs and schema files are written through [`crate::safefs`], never through a symlink below `<logs>`.
//! - Dev and fix run in `workspace-write` with /tmp and $TMPDIR excluded from the writable roots
//!   (otherwise a repo under /tmp would be writable outside the worktree); review is read-only.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::codex_events::{Event, Summary};
use super::common::{self, continue_message, retry_message};
use super::output;
use super::{failure, tail, Agent, AgentError, PhaseReply, PhaseRequest, Signal};
use crate::machine::Phase;
use crate::proc::{self, Cmd};
use crate::prompts;
use crate::safefs;
use crate::workspace::sanitize;

pub const DEFAULT_BIN: &str = "codex";
pub const INSTALL_HINT: &str =
    "install it with `npm install -g @openai/codex@0.169.0` (or `brew install codex`), then log in with `codex login`; \
or point LOOP_CODEX_BIN or `[codex] bin` in loop.toml at the binary";

/// Everything the codex agent needs, recorded as JSON in the run's `AgentSpec.settings` so a
/// resumed run drives codex exactly as the first one did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodexSettings {
    pub bin: String,
    pub model: Option<String>,
    pub profile: Option<String>,
    pub sandbox_dev: String,
    pub sandbox_review: String,
    pub sandbox_fix: String,
    /// Extra `-c key=value` overrides, in order.
    pub config: Vec<String>,
    /// Re-asks for an unusable final message (via `exec resume`).
    pub retries: u32,
    /// `<state>/logs`; streams go to `<logs>/<run>/<issue>/`.
    pub logs_root: String,
    /// The user's prompt templates, overriding the built-in ones by name.
    pub prompts_dir: Option<String>,
}

impl CodexSettings {
    pub fn new(logs_root: &Path) -> CodexSettings {
        CodexSettings {
            bin: DEFAULT_BIN.into(),
            model: None,
            profile: None,
            sandbox_dev: "workspace-write".into(),
            sandbox_review: "read-only".into(),
            sandbox_fix: "workspace-write".into(),
            config: Vec::new(),
            retries: 1,
            logs_root: logs_root.display().to_string(),
            prompts_dir: None,
        }
    }

    pub fn sandbox(&self, phase: Phase) -> &str {
        match phase {
            Phase::Dev => &self.sandbox_dev,
            Phase::Review => &self.sandbox_review,
            Phase::Fix => &self.sandbox_fix,
        }
    }
}

pub const SANDBOXES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];

/// Is the binary there? `Err` is a message that says how to install it.
pub fn check_installed(bin: &str) -> Result<PathBuf, String> {
    common::check_installed(bin, "codex", INSTALL_HINT)
}

pub struct CodexAgent {
    pub settings: CodexSettings,
}

impl CodexAgent {
    pub fn new(settings: CodexSettings) -> CodexAgent {
        CodexAgent { settings }
    }

    /// `<logs>/<run>/<issue>/`.
    pub fn log_dir(&self, req: &PhaseRequest) -> PathBuf {
        Path::new(&self.settings.logs_root).join(sanitize(&req.run_id)).join(sanitize(&req.issue.id))
    }

    /// A path under the logs root as (root, path below it), for [`safefs`].
    fn below_logs<'p>(&'p self, path: &'p Path) -> (&'p Path, &'p Path) {
        let root = Path::new(&self.settings.logs_root);
        (root, path.strip_prefix(root).unwrap_or(path))
    }

    pub fn schema_path(&self, req: &PhaseRequest) -> PathBuf {
        Path::new(&self.settings.logs_root)
            .join(sanitize(&req.run_id))
            .join("schemas")
            .join(output::schema_file_name(req.phase))
    }

    /// The phase's prompt, rendered from its template with explicit inputs.
    pub fn prompt(&self, req: &PhaseRequest) -> Result<String, prompts::PromptError> {
        common::prompt(req, self.settings.prompts_dir.as_deref())
    }

    /// The argv shared by fresh and resumed invocations: everything up to the subcommand.
    fn base(&self, req: &PhaseRequest) -> Cmd {
        let s = &self.settings;
        let sandbox = s.sandbox(req.phase);
        let mut cmd =
            Cmd::new(&s.bin).arg("exec").arg("--json").arg("-C").arg(&req.worktree).args(["-s", sandbox]).supervised();
        if let Some(m) = &s.model {
            cmd = cmd.args(["-m", m]);
        }
        if let Some(p) = &s.profile {
            cmd = cmd.args(["-p", p]);
        }
        if sandbox == "workspace-write" {
            cmd = cmd.args([
                "-c",
                "sandbox_workspace_write.exclude_slash_tmp=true",
                "-c",
                "sandbox_workspace_write.exclude_tmpdir_env_var=true",
            ]);
        }
        for c in &s.config {
            cmd = cmd.args(["-c", c]);
        }
        // The guard's environment: a loop-owned HOME whose profile puts the git/gt shims first
        // in the agent's login shell (see guard::shim).
        for (k, v) in &req.env {
            cmd = cmd.env(k, v);
        }
        cmd.cwd(&req.worktree)
    }

    /// `codex exec ... --output-schema F -- PROMPT`.
    pub fn fresh_cmd(&self, req: &PhaseRequest, prompt: &str) -> Cmd {
        self.base(req).arg("--output-schema").arg(self.schema_path(req)).arg("--").arg(prompt)
    }

    /// `codex exec ... resume --output-schema F THREAD -- MESSAGE`.
    pub fn resume_cmd(&self, req: &PhaseRequest, thread: &str, message: &str) -> Cmd {
        self.base(req)
            .arg("resume")
            .arg("--output-schema")
            .arg(self.schema_path(req))
            .arg(thread)
            .arg("--")
            .arg(message)
    }

    /// Runs one codex invocation, logging its stream to `<stem>.jsonl` and `<stem>.stderr`.
    fn invoke(
        &self,
        req: &PhaseRequest,
        cmd: Cmd,
        stem: &str,
        deadline: Instant,
        signal: &mut dyn FnMut(Signal),
    ) -> Result<(Summary, proc::Output), AgentError> {
        let phase = req.phase;
        let dir = self.log_dir(req);
        // A retry after a transient error runs the same stem again: keep every attempt's log.
        let stem = (1..)
            .map(|n| if n == 1 { stem.to_string() } else { format!("{stem}-{n}") })
            .find(|s| std::fs::symlink_metadata(dir.join(format!("{s}.jsonl"))).is_err())
            .expect("some name is free");
        let log_path = dir.join(format!("{stem}.jsonl"));
        let spec = common::LogSpec {
            tool: "codex",
            install_hint: INSTALL_HINT,
            logs_root: Path::new(&self.settings.logs_root),
        };
        let mut summary = Summary::default();
        let out = common::run_logged(req, &spec, cmd, &log_path, deadline, &mut |line| {
            if let Some(Event::ThreadStarted { thread_id }) = summary.absorb(line) {
                signal(Signal::SessionStarted { session: thread_id });
            }
        })?;
        if out.code != Some(0) {
            let why = if summary.errors.is_empty() {
                let t = tail(&out.stderr_text(), 3);
                if t.is_empty() {
                    "no message on stdout or stderr".to_string()
                } else {
                    t
                }
            } else {
                summary.errors.join("; ")
            };
            // codex's own words decide: its JSON errors first, then stderr (where "Reconnecting...
            // n/5" goes).
            let stderr_text = out.stderr_text();
            let texts = summary.errors.iter().map(String::as_str).chain([stderr_text.as_str()]);
            if failure::classify(texts) == failure::Kind::Transient {
                return Err(AgentError::Transient {
                    phase,
                    status: out.describe(),
                    message: format!("{why} (log: {})", log_path.display()),
                    session: summary.thread_id.clone(),
                });
            }
            return Err(AgentError::Crashed {
                phase,
                status: out.describe(),
                exit_code: out.code,
                stderr: format!("{why} (log: {})", log_path.display()),
            });
        }
        Ok((summary, out))
    }

    fn prepare(&self, req: &PhaseRequest) -> Result<String, AgentError> {
        let phase = req.phase;
        let root = Path::new(&self.settings.logs_root);
        std::fs::create_dir_all(root).map_err(|source| AgentError::Io {
            phase,
            what: format!("creating {}", root.display()),
            source,
        })?;
        let dir = self.log_dir(req);
        let (_, rel) = self.below_logs(&dir);
        safefs::open_dir(root, rel, true).map_err(|e| common::fs_err(phase, "creating the log dir".into(), e))?;
        let schema = self.schema_path(req);
        let (_, rel) = self.below_logs(&schema);
        safefs::write(root, rel, output::schema_text(phase).as_bytes())
            .map_err(|e| common::fs_err(phase, "writing the schema file".into(), e))?;
        self.prompt(req).map_err(|e| AgentError::Setup { phase, source: Box::new(e) })
    }
}

impl Agent for CodexAgent {
    fn name(&self) -> &str {
        "codex"
    }

    fn run(&self, req: &PhaseRequest, signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        let start = Instant::now();
        let deadline = start + req.timeout;
        let prompt = self.prepare(req)?;
        let stem = common::log_stem(req);
        let mut notes = Vec::new();
        let (mut summary, mut out) = match &req.resume_session {
            Some(thread) => {
                let cmd = self.resume_cmd(req, thread, &continue_message(&prompt));
                let mut reopened = false;
                let mut watch = |s: Signal| {
                    reopened = true;
                    signal(s)
                };
                match self.invoke(req, cmd, &format!("{stem}-resume"), deadline, &mut watch) {
                    Ok(r) => {
                        notes.push(format!("continued codex thread {thread} of an interrupted attempt"));
                        r
                    }
                    // codex could not reopen the thread (it never reached codex's session store):
                    // nothing to continue, so the phase starts over rather than failing on a
                    // technicality. A thread that reopened and then failed is a real failure.
                    Err(AgentError::Crashed { stderr, .. }) if !reopened => {
                        notes.push(format!(
                            "could not continue codex thread {thread} ({stderr}); started the phase afresh"
                        ));
                        self.invoke(req, self.fresh_cmd(req, &prompt), &stem, deadline, signal)?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.invoke(req, self.fresh_cmd(req, &prompt), &stem, deadline, signal)?,
        };
        let mut tokens = summary.usage;
        let mut final_message = summary.final_message.clone().unwrap_or_default();
        let mut retries = 0;
        while let Err(e) = output::validate(req.phase, &final_message) {
            let Some(thread) = summary.thread_id.clone() else { break };
            if retries >= self.settings.retries {
                notes.push(format!("final message still unusable after {retries} retry(ies): {e}"));
                break;
            }
            retries += 1;
            notes.push(format!("final message unusable ({e}); asked again via `codex exec resume {thread}`"));
            let cmd = self.resume_cmd(req, &thread, &retry_message(&e));
            let (s, o) = self.invoke(req, cmd, &format!("{stem}-retry{retries}"), deadline, signal)?;
            // turn.completed usage accumulates over a thread: the latest is the phase's total.
            tokens = s.usage.or(tokens);
            final_message = s.final_message.clone().unwrap_or_default();
            summary = s;
            out = o;
        }
        if !summary.unknown.is_empty() {
            notes.push(format!("ignored unknown stream entries: {}", summary.unknown.join(", ")));
        }
        Ok(PhaseReply {
            output: final_message,
            exit_code: out.code,
            duration: start.elapsed(),
            session: summary.thread_id.clone(),
            tokens,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            cost_usd: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(phase: Phase) -> PhaseRequest {
        PhaseRequest::sample(phase, r#"{"required_actions":["do a","do b"]}"#)
    }

    #[test]
    fn argv_per_phase() {
        let mut s = CodexSettings::new(Path::new("/s/logs"));
        s.model = Some("gpt-5.5".into());
        s.config = vec!["a=1".into()];
        let agent = CodexAgent::new(s);
        let dev = agent.fresh_cmd(&req(Phase::Dev), "P").display();
        assert_eq!(
            dev,
            "codex exec --json -C /w -s workspace-write -m gpt-5.5 -c sandbox_workspace_write.exclude_slash_tmp=true \
-c sandbox_workspace_write.exclude_tmpdir_env_var=true -c a=1 --output-schema /s/logs/R/schemas/dev.schema.json -- P"
        );
        let review = agent.resume_cmd(&req(Phase::Review), "T", "again").display();
        assert_eq!(
            review,
            "codex exec --json -C /w -s read-only -m gpt-5.5 -c a=1 resume --output-schema \
/s/logs/R/schemas/review.schema.json T -- again"
        );
    }

    #[test]
    fn fix_prompt_carries_the_required_actions() {
        let agent = CodexAgent::new(CodexSettings::new(Path::new("/s/logs")));
        let p = agent.prompt(&req(Phase::Fix)).unwrap();
        assert!(p.contains("- do a\n- do b"), "{p}");
        assert!(p.contains("docs/projects/p/reviews/M1/") && p.contains("fix cycle 1"), "{p}");
    }
}
