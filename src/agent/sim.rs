//! The simulated agent: does real work in the worktree (writes and commits files) and answers
//! with outputs of exactly the real agent's shape, scripted by a scenario. It lets the whole loop
//! run with no model and no network, and lets tests force every outcome, crashes and hangs included.
//!
//! Invariant: its behaviour depends only on the request and the scenario, so a phase re-run
//! after a crash does the same thing again (idempotent file contents, commit only if changed).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::{Agent, AgentError, PhaseReply, PhaseRequest, Signal};
use crate::machine::Phase;
use crate::proc::{self, Cmd};
use crate::workspace::sanitize;

/// What one issue's phases do, from `--sim-scenario`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimScript {
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub fix: Option<String>,
    #[serde(default)]
    pub reviews: Vec<String>,
    /// Each phase of the issue takes this long (a `sleep` child in the worktree, stopped like
    /// an agent) before it answers: long phases for tests that kill things mid-phase, and for
    /// benchmarks with phases of a given length.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

const WORK_OUTCOMES: &[&str] = &["pass", "failed", "deferred", "crash", "hang", "garbage", "invalid"];
const REVIEW_OUTCOMES: &[&str] = &["pass", "changes_required", "blocked", "crash", "hang", "garbage", "invalid"];

/// Test-only misbehaviour for the guard's tests: `"dev": "rogue:ref"` makes the simulated agent
/// do a forbidden thing (then answer `pass`), so the after-phase check must catch it:
/// `ref` creates refs/heads/rogue, `worktree` adds a worktree, `main-write` writes a file in
/// the main checkout. `"dev": "shell:CMD"` runs `bash -lc CMD` in the worktree with the
/// guard's environment (its shims), as a real agent's shell would.
const ROGUE_ACTIONS: &[&str] = &["ref", "worktree", "main-write"];

fn misbehave(req: &PhaseRequest, what: &str) -> Result<(), String> {
    let t = req.timeout;
    let wt = &req.worktree;
    let git =
        |args: &[&str]| -> Result<String, String> { crate::workspace::git_ok(wt, args, t).map_err(|e| e.to_string()) };
    if let Some(cmd) = what.strip_prefix("shell:") {
        let mut c = Cmd::new("bash").args(["-lc", cmd]).cwd(wt).timeout(t).supervised();
        for (k, v) in &req.env {
            c = c.env(k, v);
        }
        let out = proc::run(&c).map_err(|e| e.to_string())?;
        crate::eoutln!("sim shell `{cmd}`: {} {}", out.describe(), out.stderr_text().trim());
        return Ok(());
    }
    match what {
        "rogue:ref" => git(&["update-ref", "refs/heads/rogue", "HEAD"]).map(|_| ()),
        "rogue:worktree" => {
            let target = format!("{}-rogue", wt.display());
            git(&["worktree", "add", "--detach", &target, "HEAD"]).map(|_| ())
        }
        "rogue:main-write" => {
            let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
            let main = std::path::Path::new(&common).parent().ok_or("no main checkout")?.to_path_buf();
            std::fs::write(main.join("ROGUE.txt"), "written by a rogue agent\n").map_err(|e| e.to_string())
        }
        other => Err(format!("unknown misbehaviour {other}")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{source_name}: not a valid scenario: {detail}")]
    Parse { source_name: String, detail: String },
    #[error("{source_name}: issue {issue}: {field} is {value:?}; expected one of {allowed}")]
    Value { source_name: String, issue: String, field: String, value: String, allowed: String },
    #[error("{source_name}: names issue {issue}, which is not in this milestone")]
    UnknownIssue { source_name: String, issue: String },
}

/// Parses and checks a scenario against the run's issue ids.
pub fn parse_scenario(
    text: &str,
    source_name: &str,
    issue_ids: &[&str],
) -> Result<BTreeMap<String, SimScript>, ScenarioError> {
    let map: BTreeMap<String, SimScript> = serde_json::from_str(text)
        // serde's message quotes unknown keys verbatim (fuzz: `sim_scenario`).
        .map_err(|e| ScenarioError::Parse {
            source_name: source_name.into(),
            detail: crate::text::printable(&e.to_string(), 300),
        })?;
    for (issue, script) in &map {
        if !issue_ids.contains(&issue.as_str()) {
            return Err(ScenarioError::UnknownIssue {
                source_name: source_name.into(),
                issue: crate::text::printable(issue, 100),
            });
        }
        let check = |field: &str, v: &str, allowed: &[&str]| {
            let rogue = field != "reviews"
                && (ROGUE_ACTIONS.iter().any(|a| v.strip_prefix("rogue:") == Some(a)) || v.starts_with("shell:"));
            if allowed.contains(&v) || rogue {
                Ok(())
            } else {
                Err(ScenarioError::Value {
                    source_name: source_name.into(),
                    issue: crate::text::printable(issue, 100),
                    field: field.into(),
                    value: v.into(),
                    allowed: allowed.join("|"),
                })
            }
        };
        if let Some(d) = &script.dev {
            check("dev", d, WORK_OUTCOMES)?;
        }
        if let Some(f) = &script.fix {
            check("fix", f, WORK_OUTCOMES)?;
        }
        for r in &script.reviews {
            check("reviews", r, REVIEW_OUTCOMES)?;
        }
    }
    Ok(map)
}

pub struct SimAgent {
    scenario: BTreeMap<String, SimScript>,
}

impl SimAgent {
    pub fn new(scenario: BTreeMap<String, SimScript>) -> SimAgent {
        SimAgent { scenario }
    }

    fn outcome(&self, req: &PhaseRequest) -> String {
        let script = self.scenario.get(req.issue.id.as_str()).cloned().unwrap_or_default();
        match req.phase {
            Phase::Dev => script.dev.unwrap_or_else(|| "pass".into()),
            Phase::Fix => script.fix.unwrap_or_else(|| "pass".into()),
            Phase::Review => script.reviews.get(req.cycle as usize).cloned().unwrap_or_else(|| "pass".into()),
        }
    }

    fn work(&self, req: &PhaseRequest) -> Result<(), AgentError> {
        let phase = req.phase;
        let dir = req.worktree.join("loop-sim");
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::Io {
            phase,
            what: dir.display().to_string(),
            source,
        })?;
        let name = sanitize(&req.issue.id);
        let (file, text) = match req.phase {
            Phase::Dev => (
                dir.join(format!("{name}.md")),
                format!("# {}\n\n{}\n\nImplemented by the simulated dev agent.\n", req.issue.id, req.issue.title),
            ),
            _ => {
                let actions = req
                    .last_review
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                    .and_then(|v| v.get("required_actions").cloned())
                    .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                    .unwrap_or_default();
                let mut text = String::new();
                for c in 1..=req.cycle {
                    text.push_str(&format!("fix cycle {c}\n"));
                }
                for a in actions {
                    text.push_str(&format!("- addressed: {a}\n"));
                }
                (dir.join(format!("{name}.fixes")), text)
            }
        };
        std::fs::write(&file, text).map_err(|source| AgentError::Io { phase, what: file.display().to_string(), source })
    }
}

impl Agent for SimAgent {
    fn name(&self) -> &str {
        "sim"
    }

    fn run(&self, req: &PhaseRequest, _signal: &mut dyn FnMut(Signal)) -> Result<PhaseReply, AgentError> {
        let start = Instant::now();
        let delay = self.scenario.get(req.issue.id.as_str()).and_then(|s| s.delay_ms).unwrap_or(0);
        if delay > 0 {
            let secs = format!("{}.{:03}", delay / 1000, delay % 1000);
            let out = proc::run(&Cmd::new("sleep").arg(secs).cwd(&req.worktree).timeout(req.timeout).supervised())
                .map_err(|e| AgentError::Setup { phase: req.phase, source: Box::new(e) })?;
            if out.cancelled {
                return Err(AgentError::Interrupted { phase: req.phase });
            }
        }
        let mut outcome = self.outcome(req);
        if outcome.starts_with("rogue:") || outcome.starts_with("shell:") {
            misbehave(req, &outcome).map_err(|e| AgentError::Crashed {
                phase: req.phase,
                status: "exit code 1".into(),
                exit_code: Some(1),
                stderr: e,
            })?;
            // A shell stopped by a signal did not finish: the phase is interrupted, not passed.
            if proc::is_cancelled() {
                return Err(AgentError::Interrupted { phase: req.phase });
            }
            outcome = "pass".into();
        }
        let phase = req.phase;
        match outcome.as_str() {
            "crash" => {
                return Err(AgentError::Crashed {
                    phase,
                    status: "exit code 3".into(),
                    exit_code: Some(3),
                    stderr: "simulated crash".into(),
                })
            }
            "hang" => {
                // In the worktree, as a real agent would be: a survivor there is what tests look for.
                let out =
                    proc::run(&Cmd::new("sleep").arg("3600").cwd(&req.worktree).timeout(req.timeout).supervised())
                        .map_err(|e| AgentError::Setup { phase, source: Box::new(e) })?;
                if out.cancelled {
                    return Err(AgentError::Interrupted { phase });
                }
                return Err(AgentError::TimedOut { phase, secs: req.timeout.as_secs() });
            }
            "garbage" => {
                return Ok(PhaseReply {
                    output: "I could not decide; here is some prose instead of JSON.".into(),
                    exit_code: Some(0),
                    duration: start.elapsed(),
                    ..Default::default()
                })
            }
            "invalid" => {
                return Ok(PhaseReply {
                    output: json!({"status": "perhaps"}).to_string(),
                    exit_code: Some(0),
                    duration: start.elapsed(),
                    ..Default::default()
                })
            }
            _ => {}
        }
        let output = match phase {
            Phase::Dev | Phase::Fix => {
                if outcome == "pass" {
                    self.work(req)?;
                }
                let reply = json!({
                    "status": outcome,
                    "branch": req.issue.branch,
                    "worktree": req.worktree.display().to_string(),
                    "stack_branches": [],
                    "draft_prs": [],
                    "tests_run": [{"command": "true", "status": "pass", "notes": "simulated"}],
                    "docs_updated": [],
                    "deferred": if outcome == "deferred" { vec!["simulated deferral"] } else { vec![] },
                    "open_questions": [],
                });
                return Ok(PhaseReply {
                    output: reply.to_string(),
                    exit_code: Some(0),
                    duration: start.elapsed(),
                    ..Default::default()
                });
            }
            Phase::Review => {
                let changes = outcome == "changes_required";
                json!({
                    "status": outcome,
                    "summary": format!("simulated review {} of {}", req.cycle + 1, req.issue.id),
                    "issues": if changes {
                        vec![json!({"severity": "medium", "title": "simulated finding", "details": format!("cycle {}", req.cycle), "evidence": [format!("loop-sim/{}.md:1", sanitize(&req.issue.id))]})]
                    } else { vec![] },
                    "required_actions": if changes { vec![format!("address finding of review {}", req.cycle + 1)] } else { vec![] },
                    "followups": [],
                    "review_doc_path": null,
                    "review_entry_written": false,
                    "confidence": "high",
                })
            }
        };
        Ok(PhaseReply {
            output: output.to_string(),
            exit_code: Some(0),
            duration: start.elapsed(),
            ..Default::default()
        })
    }
}
