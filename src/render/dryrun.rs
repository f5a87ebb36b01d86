//! What `loop run --dry-run` shows: the plan, names, guard, and for codex the exact argv and
//! rendered prompt of each phase. The CLI gathers a [`DryRun`]; this turns it into text.

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
    pub issues: Vec<DryRunIssue>,
    /// Pre-flight's problems, one line each (empty: a run would start).
    pub preflight: Vec<String>,
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
    /// The command line, the prompt as its last argument.
    pub argv: String,
    pub prompt: String,
}

/// The dry run's text, escaped for a terminal (prompts quote titles from the docs).
pub fn text(d: &DryRun) -> String {
    let mut out = String::new();
    out.push_str("dry run: nothing is written (no journal, worktree, branch, commit or log)\n");
    out.push_str(&format!(
        "milestone {}: {} issue(s), agent {}, base {}\nrun id would be {}\n",
        d.milestone,
        d.issues.len(),
        d.agent,
        d.base,
        d.run_id
    ));
    out.push_str(&format!(
        "phase timeout {}s, max fix cycles {}, token budget per issue {}, review doc {}\n",
        d.phase_timeout_secs,
        d.max_fix_cycles,
        d.max_tokens_per_issue.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
        if d.review_doc { "on" } else { "off" }
    ));
    if let Some(c) = &d.costs {
        out.push_str(&format!("{c}\n"));
    }
    if let Some(g) = &d.guard {
        out.push_str(&format!("{g}\n"));
    }
    match &d.codex {
        // The agent's binary (codex or claude).
        Some(Ok(path)) => out.push_str(&format!("{}: {path}\n", d.agent)),
        Some(Err(msg)) => out.push_str(&format!("warning: {msg}\n")),
        None => {}
    }
    if d.preflight.is_empty() {
        out.push_str("pre-flight: ok\n");
    } else {
        out.push_str(&format!("pre-flight: {} problem(s); `loop run` would not start:\n", d.preflight.len()));
        for p in &d.preflight {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    for i in &d.issues {
        let issue = &i.issue;
        out.push_str(&format!("\n== {}: {}\n", issue.id, issue.title));
        out.push_str(&format!("doc       {}\nbranch    {}\nworktree  {}\n", issue.doc, issue.branch, issue.worktree));
        let deps = if issue.blocked_by.is_empty() { "-".to_string() } else { issue.blocked_by.join(", ") };
        out.push_str(&format!("blocked by {deps}\nbase      {}\n", i.base));
        if let Some(doc) = &i.review_doc {
            out.push_str(&format!("review doc {doc}\n"));
        }
        let Some(phases) = &i.phases else {
            out.push_str("(the simulated agent runs no command)\n");
            continue;
        };
        for p in phases {
            out.push_str(&format!("\n-- {}: argv (prompt = {}, shown below)\n", p.label, p.template));
            // The prompt is the last argument; show it once, below, rather than quoted inline.
            let mut argv = p.argv.clone();
            if let Some(cut) = argv.rfind(" -- ") {
                argv.truncate(cut);
                argv.push_str(" -- <prompt>");
            }
            out.push_str(&format!("{argv}\n(cwd {}, stdin null, timeout {}s)\n", issue.worktree, d.phase_timeout_secs));
            out.push_str(&format!("-- {}: prompt\n{}\n", p.label, p.prompt.trim_end()));
        }
    }
    super::escape_lines(&out).into_owned()
}
