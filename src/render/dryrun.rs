//! What `loop run --dry-run` shows. The CLI gathers a [`DryRun`]; this turns it into text.
//!
//! Invariants: whatever would stop a real run (a missing agent CLI, pre-flight's problems) comes
//! first, before the plan; each phase's command is one line with its prompt shown as
//! `<prompt: N lines, SOURCE>`; the rendered prompts appear only in the verbose form. Text from
//! docs is escaped before it is painted, so the only escape sequences are the style's.

use super::style::Style;
use crate::journal::PlannedIssue;

/// Everything a dry run found out, ready to show.
pub struct DryRun {
    pub milestone: String,
    pub agent: String,
    /// Cost budgets and priced models, when the run sets any.
    pub costs: Option<String>,
    /// The base commit, or why there is none.
    pub base: String,
    pub run_id: String,
    pub phase_timeout_secs: u64,
    pub max_fix_cycles: u32,
    pub max_tokens_per_issue: Option<u64>,
    pub review_doc: bool,
    /// The guard's one-paragraph description, when a guard is on.
    pub guard: Option<String>,
    /// For codex and claude: where its binary is, or why it cannot be used.
    pub codex: Option<Result<String, String>>,
    /// The plan's waves: issues in one wave may run at once.
    pub waves: Vec<Vec<String>>,
    pub issues: Vec<DryRunIssue>,
    /// Pre-flight's problems, one line each (empty: a run would start).
    pub preflight: Vec<String>,
}

impl DryRun {
    /// What would stop a real run, each once: the agent CLI's absence (also one of pre-flight's
    /// problems when pre-flight checked it) and pre-flight's problems.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(Err(msg)) = &self.codex {
            out.push(msg.clone());
        }
        for p in &self.preflight {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

pub struct DryRunIssue {
    pub issue: PlannedIssue,
    /// Where its branch would start, in words (`main@abc1234`, a branch, `merge of A + B`).
    pub base: String,
    /// Where its reviews would be appended.
    pub review_doc: Option<String>,
    /// The phases as the agent would run them; None for the simulated agent (no command).
    pub phases: Option<Vec<DryRunPhase>>,
}

pub struct DryRunPhase {
    /// `dev`, `review 1`, `fix cycle 1`.
    pub label: String,
    /// The prompt template's name.
    pub template: &'static str,
    /// The command line, with the prompt shown as `<prompt: N lines, SOURCE>`.
    pub argv: String,
    pub prompt: String,
    /// Where the prompt's template comes from: the user's file, or the built-in template's name.
    pub prompt_source: String,
}

impl DryRunPhase {
    /// What stands for the prompt in [`DryRunPhase::argv`]: `<prompt: 42 lines, dev-auto-parallel>`,
    /// or the template file's path when the user's copy is used.
    pub fn prompt_label(prompt: &str, source: &str) -> String {
        format!("<prompt: {} lines, {source}>", prompt.lines().count())
    }
}

/// `run --dry-run --json`: the same facts as the text, the prompts only when `verbose`.
pub fn json(d: &DryRun, verbose: bool) -> serde_json::Value {
    let issues: Vec<serde_json::Value> = d
        .issues
        .iter()
        .map(|i| {
            let phases: Vec<serde_json::Value> = i
                .phases
                .iter()
                .flatten()
                .map(|p| {
                    let mut v = serde_json::json!({
                        "label": p.label,
                        "template": p.template,
                        "prompt_source": p.prompt_source,
                        "prompt_lines": p.prompt.lines().count(),
                        "argv": p.argv,
                    });
                    if verbose {
                        v["prompt"] = serde_json::json!(p.prompt);
                    }
                    v
                })
                .collect();
            serde_json::json!({
                "id": i.issue.id,
                "title": i.issue.title,
                "blocked_by": i.issue.blocked_by,
                "base": i.base,
                "branch": i.issue.branch,
                "worktree": i.issue.worktree,
                "review_doc": i.review_doc,
                "phases": phases,
            })
        })
        .collect();
    serde_json::json!({
        "dry_run": true,
        "would_start": d.warnings().is_empty(),
        "warnings": d.warnings(),
        "preflight": d.preflight,
        "milestone": d.milestone,
        "run_id": d.run_id,
        "agent": d.agent,
        "agent_bin": d.codex.as_ref().and_then(|r| r.as_ref().ok()),
        "base": d.base,
        "phase_timeout_secs": d.phase_timeout_secs,
        "max_fix_cycles": d.max_fix_cycles,
        "max_tokens_per_issue": d.max_tokens_per_issue,
        "review_doc": d.review_doc,
        "guard": d.guard,
        "costs": d.costs,
        "waves": d.waves,
        "issues": issues,
    })
}

/// The dry run's text: compact, or with every rendered prompt when `verbose`.
pub fn text(d: &DryRun, verbose: bool, style: Style) -> String {
    // Lines are escaped one by one before they are painted (docs and agents may quote anything).
    let mut lines: Vec<String> = Vec::new();
    let esc = |s: &str| super::escape_lines(s).into_owned();
    let warnings = d.warnings();
    for w in &warnings {
        lines.push(format!("{} {}", style.bad("warning:"), esc(w)));
    }
    if !warnings.is_empty() {
        lines.push(style.bad(&format!("`loop run` would not start: {} problem(s) above", warnings.len())));
        lines.push(String::new());
    }
    lines.push(style.dim("dry run: nothing is written (no journal, worktree, branch, commit or log)"));
    lines.push(style.bold(&esc(&format!(
        "milestone {}: {} issue(s) in {} wave(s), agent {}, base {}",
        d.milestone,
        d.issues.len(),
        d.waves.len(),
        d.agent,
        d.base
    ))));
    lines.push(format!("run id would be {}", d.run_id));
    lines.push(format!(
        "phase timeout {}s, max fix cycles {}, token budget per issue {}, review doc {}",
        d.phase_timeout_secs,
        d.max_fix_cycles,
        d.max_tokens_per_issue.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
        if d.review_doc { "on" } else { "off" }
    ));
    if let Some(c) = &d.costs {
        lines.push(esc(c));
    }
    if let Some(g) = &d.guard {
        lines.push(esc(g));
    }
    if let Some(Ok(path)) = &d.codex {
        lines.push(esc(&format!("{}: {path}", d.agent)));
    }
    if warnings.is_empty() {
        lines.push(format!("pre-flight: {}", style.good("ok")));
    }
    for (k, wave) in d.waves.iter().enumerate() {
        lines.push(format!("{} {}", style.bold(&format!("wave {}:", k + 1)), esc(&wave.join(", "))));
    }
    let shows_commands = d.issues.iter().any(|i| i.phases.is_some());
    if !shows_commands {
        lines.push(style.dim("(the simulated agent runs no command)"));
    }
    for i in &d.issues {
        let issue = &i.issue;
        let wave = d.waves.iter().position(|w| w.iter().any(|id| issue.id == *id)).map(|k| k + 1).unwrap_or(0);
        let after = match issue.blocked_by.is_empty() {
            true => String::new(),
            false => format!(", after {}", issue.blocked_by.join(", ")),
        };
        lines.push(String::new());
        lines.push(format!(
            "{}{}",
            style.bold(&esc(&format!("== {}: {}", issue.id, issue.title))),
            style.dim(&esc(&format!("  (wave {wave}{after})")))
        ));
        lines.push(format!("base      {}", esc(&i.base)));
        lines.push(format!("branch    {}", esc(issue.branch.as_ref())));
        lines.push(format!("worktree  {}", esc(&issue.worktree)));
        if let Some(doc) = &i.review_doc {
            lines.push(format!("review doc {}", esc(doc)));
        }
        for p in i.phases.iter().flatten() {
            lines.push(format!("{:<9} {}", p.label, esc(&p.argv)));
        }
        if verbose {
            for p in i.phases.iter().flatten() {
                lines.push(style.bold(&format!("-- {}: prompt ({})", p.label, p.template)));
                lines.push(esc(p.prompt.trim_end()));
            }
        }
    }
    if shows_commands {
        lines.push(String::new());
        let mut note = format!(
            "each command runs in its issue's worktree with stdin closed and a {}s timeout",
            d.phase_timeout_secs
        );
        if !verbose {
            note.push_str("; --verbose shows the prompts");
        }
        lines.push(style.dim(&note));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}
