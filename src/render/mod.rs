//! Turning records and views into text and JSON. A live run, `status` and `replay` all render
//! through these functions, so what a user saw live is what replay shows later.
//!
//! Views with more to them have a file each: [`progress`] (a run's live lines), [`replay`]
//! (replay's verdict and JSON), [`dryrun`] (what `run --dry-run` shows), [`style`] (colour).

pub mod dryrun;
pub mod history;
pub mod logs;
pub mod progress;
pub mod replay;
pub mod report;
pub mod start;
pub mod style;

use std::path::Path;

use serde_json::{json, Value};

use crate::journal::view::{Applied, GuardTally, RunView};
use crate::journal::{Body, Fact, Record};
use crate::machine::{Event, Stage};
pub use crate::text::{escape, escape_lines, printable};
use crate::vocab::LandOutcome;

/// A state as shown to people: `Review`, `Fix(2)`, `Capped(2)`.
pub fn state_short(s: &Stage) -> String {
    match s {
        Stage::Fix { cycle } => format!("Fix({cycle})"),
        Stage::Review { fix_cycles } if *fix_cycles > 0 => format!("Review(after {fix_cycles} fix)"),
        other => other.name().to_string(),
    }
}

/// A commit as people read it: its first seven hex digits.
fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

use crate::vocab::format_micro_usd;

fn event_detail(e: &Event) -> String {
    match e {
        Event::DependencyNotDone { dependency, dependency_state } => format!("{dependency} ended {dependency_state}"),
        Event::WorktreeIntent { branch, .. } => format!("branch {branch}"),
        Event::WorktreeCreated { path, .. } => path.clone(),
        Event::WorktreeFailed { reason } => reason.clone(),
        Event::PhaseStarted { phase, attempt } => {
            if *attempt > 1 {
                format!("{phase} (attempt {attempt})")
            } else {
                phase.to_string()
            }
        }
        Event::SessionStarted { phase, session } => format!("{phase} session {session}"),
        Event::BudgetExceeded { used, limit } => format!("{used} tokens used, limit {limit}"),
        Event::WorkFinished { phase, status } => format!("{phase} {}", json!(status).as_str().unwrap_or("?")),
        Event::ReviewFinished { verdict } => json!(verdict).as_str().unwrap_or("?").to_string(),
        Event::PhaseFailed { phase, reason } => format!("{phase}: {reason}"),
        Event::WorktreeRemoved { path } => path.clone(),
        Event::WorktreeKept { reason, .. } => reason.clone(),
        Event::GuardCheckFailed { phase, details } => format!("{phase} FAILED: {}", details.join("; ")),
        Event::GuardViolation { phase, changes } => format!("{phase}: {}", changes.join("; ")),
        Event::StackTrackFailed { parent, error } => format!("tracking on {parent} failed: {error}"),
        Event::BasesMerged { commit } => format!("merged into {}", short(commit)),
        Event::MergeConflict { parent, files } => format!("merging {parent} conflicted in {}", files.join(", ")),
        Event::VerifyFinished { failures } if failures.is_empty() => "checks passed".to_string(),
        Event::VerifyFinished { failures } => {
            // Each failure carries its output tail: the timeline shows its first line.
            let first: Vec<&str> = failures.iter().map(|f| f.lines().next().unwrap_or("")).collect();
            format!("{} check(s) failed: {}", failures.len(), first.join("; "))
        }
        Event::CarriedOver { run, branch, tip } => format!("Done in run {run}: {branch} at {}", short(tip)),
        Event::Reopened { extra_fix_cycles } => format!("reopened with {extra_fix_cycles} more fix cycle(s)"),
        Event::CostExceeded { used_micro_usd, limit_micro_usd } => {
            format!("{} used, limit {}", format_micro_usd(*used_micro_usd), format_micro_usd(*limit_micro_usd))
        }
        Event::RunBudgetSpent { used_micro_usd, limit_micro_usd } => {
            format!("the run spent {}, limit {}", format_micro_usd(*used_micro_usd), format_micro_usd(*limit_micro_usd))
        }
    }
}

fn fact_detail(f: &Fact) -> String {
    match f {
        Fact::GuardChecked { phase, details } => format!("{phase} ok: {}", details.join("; ")),
        Fact::CommandDecided { tool, argv, allowed, rule, .. } => {
            format!("{} `{tool} {}` [{rule}]", if *allowed { "allowed" } else { "REFUSED" }, argv.join(" "))
        }
        Fact::StackTracked { parent } => format!("tracked on {parent}"),
        Fact::StackSubmitted { ok, detail } => format!("{}: {detail}", if *ok { "submitted" } else { "submit failed" }),
        Fact::Interrupted => String::new(),
        Fact::PhaseAgent { phase, kind, model } => match model {
            Some(m) => format!("{phase} runs {kind} ({m})"),
            None => format!("{phase} runs {kind}"),
        },
        Fact::CheckRan(run) => {
            // No duration here: timelines are compared across runs (`replay --json` has it).
            let mut s = format!("{} `{}` {}", run.kind.as_str(), run.command, run.status());
            if !run.passed() {
                if let Some(last) = run.tail.lines().last() {
                    s.push_str(&format!(": {}", printable(last, 200)));
                }
            }
            s
        }
        Fact::BaselineChecked { base, failing, unusable, .. } => {
            let short = &base[..base.len().min(12)];
            match (unusable, failing.is_empty()) {
                (Some(why), _) => format!("base {short}: {why}; no failure counts as pre-existing"),
                (None, true) => format!("base {short}: every check passes"),
                (None, false) => format!("base {short}: already failing: {}", failing.join(", ")),
            }
        }
        Fact::SetupChecked { lockfiles, ran, passed } => {
            let short = &lockfiles[..lockfiles.len().min(12)];
            match (ran, passed) {
                (false, _) => format!("setup skipped (lockfiles {short})"),
                (true, true) => format!("setup passed (lockfiles {short})"),
                (true, false) => format!("setup FAILED (lockfiles {short})"),
            }
        }
        Fact::AgentRetried { phase, retry, error, delay_ms, session } => {
            let cont = session.as_deref().map(|s| format!(", continuing session {s}")).unwrap_or_default();
            format!("{phase} retry {retry} in {}s{cont}: {}", *delay_ms as f64 / 1000.0, printable(error, 300))
        }
        Fact::HarnessCommands { phase, count, .. } => {
            format!("{phase}: {count} git command(s) of codex's own harness (not the agent's)")
        }
    }
}

/// `{"variant": {fields}}` (serde's external tagging) as `{tag: "variant", fields...}`, the
/// internally tagged shape the JSON output has always had.
fn tagged(v: Value, tag: &str) -> Value {
    match v {
        Value::String(name) => json!({ tag: name }),
        Value::Object(m) if m.len() == 1 => {
            let (name, inner) = m.into_iter().next().expect("one entry");
            let mut fields = match inner {
                Value::Object(fields) => fields,
                other => {
                    let mut f = serde_json::Map::new();
                    f.insert("value".into(), other);
                    f
                }
            };
            fields.insert(tag.into(), Value::String(name));
            Value::Object(fields)
        }
        other => other,
    }
}

fn event_json(e: &Event) -> Value {
    match e {
        // Format 1 called these `guard_checked`/`stack_tracked` with the outcome inside.
        Event::GuardCheckFailed { phase, details } => {
            json!({"event": e.name(), "phase": phase, "ok": false, "details": details})
        }
        Event::StackTrackFailed { parent, error } => json!({"event": e.name(), "parent": parent, "error": error}),
        other => tagged(json!(other), "event"),
    }
}

fn fact_json(f: &Fact) -> Value {
    let mut v = tagged(json!(f), "event");
    match f {
        Fact::GuardChecked { .. } => v["ok"] = json!(true),
        Fact::StackTracked { .. } => v["error"] = Value::Null,
        _ => {}
    }
    v
}

fn stage_json(s: &Stage) -> Value {
    let mut v = tagged(json!(s), "state");
    if let Some(r) = s.reason() {
        v["reason"] = json!(r.to_string());
    }
    v
}

/// A record's body as JSON: `kind` names the record, `event` the event or audit fact inside
/// (with the names and fields format 1 used), `to` the stage decided.
pub fn body_json(body: &Body) -> Value {
    match body {
        Body::Issue { issue, event, to, commands, evidence } => json!({
            "kind": "issue",
            "issue": issue,
            "event": event_json(event),
            "to": stage_json(to),
            "commands": commands,
            "evidence": evidence,
        }),
        Body::Audit { issue, fact, evidence } => json!({
            "kind": "audit",
            "issue": issue,
            "event": fact_json(fact),
            "evidence": evidence,
        }),
        other => tagged(json!(other), "kind"),
    }
}

/// One timeline line for a record, safe for a terminal: records quote agents and docs.
pub fn timeline_line(rec: &Record, applied: &Applied) -> String {
    let line = timeline_text(rec, applied);
    match escape(&line) {
        std::borrow::Cow::Borrowed(_) => line,
        std::borrow::Cow::Owned(safe) => safe,
    }
}

fn timeline_text(rec: &Record, applied: &Applied) -> String {
    let c = &rec.content;
    let head = format!("#{:<4} {}", c.seq, c.time.format("%H:%M:%S"));
    match &c.body {
        Body::RunStarted(s) => format!(
            "{head} run {} started: milestone {}, {} issue(s), agent {}",
            c.run_id,
            s.milestone,
            s.issues.len(),
            s.agent.kind
        ),
        Body::RunResumed => format!("{head} run resumed"),
        Body::RunInterrupted { reason } => format!("{head} run interrupted ({reason})"),
        Body::RunFinished => format!("{head} run finished"),
        Body::Landed(l) => {
            let merged = l.merged.iter().filter(|m| !matches!(m.outcome, LandOutcome::Conflict { .. })).count();
            let checks = if l.checks.is_empty() {
                "no checks".to_string()
            } else if l.verified() {
                format!("{} check(s) passed", l.checks.len())
            } else {
                format!("{} of {} check(s) failed", l.checks.iter().filter(|c| !c.passed()).count(), l.checks.len())
            };
            format!(
                "{head} landed {} of {} Done branch(es) on {} at {} ({checks})",
                merged,
                l.merged.len(),
                l.branch,
                short(&l.commit)
            )
        }
        Body::WorktreeRepaired { issue, repairs, .. } => {
            format!("{head} {issue:<12} worktree_repaired {}", printable(&repairs.join("; "), 400))
        }
        Body::ProcessGroup { issue, phase, pgid, .. } => {
            format!("{head} {issue:<12} {phase} agent runs as process group {pgid}")
        }
        Body::Audit { issue, fact, .. } => {
            let detail = fact_detail(fact);
            let detail = if detail.is_empty() { String::new() } else { format!(" {detail}") };
            format!("{head} {issue:<12} {}{detail}", fact.name())
        }
        Body::Issue { issue, event, .. } => {
            let (from, to) = (applied.from.as_ref(), applied.to.as_ref());
            let change = match (from, to) {
                (Some(f), Some(t)) if f != t => format!("  {} → {}", state_short(f), state_short(t)),
                _ => String::new(),
            };
            let detail = event_detail(event);
            let detail = if detail.is_empty() { String::new() } else { format!(" {detail}") };
            format!("{head} {issue:<12} {}{detail}{change}", event.name())
        }
    }
}

/// The JSON form of a record with what it did, for `replay --json` and `--json-events`.
pub fn record_json(rec: &Record, applied: &Applied) -> Value {
    let c = &rec.content;
    json!({
        "seq": c.seq,
        "time": c.time.to_rfc3339(),
        "run_id": c.run_id,
        "hash": rec.hash.hex(),
        "body": body_json(&c.body),
        "from": applied.from.as_ref().map(|s| s.name()),
        "to": applied.to.as_ref().map(|s| s.name()),
    })
}

/// `{"run_id", "issues": [{"id", "state", "fix_cycles", ...}]}`: `status --json` and the end of
/// `run --json`.
pub fn status_json(view: &RunView, repo: Option<&Path>) -> Value {
    let issues: Vec<Value> = view
        .issues
        .iter()
        .map(|i| {
            let wt = i.worktree().map(|w| {
                json!({
                    "path": w.path,
                    "branch": w.branch,
                    "exists": Path::new(&w.path).exists(),
                    "removed": w.removed(),
                    "kept": w.kept(),
                })
            });
            json!({
                "id": i.id,
                "state": i.state.name(),
                "fix_cycles": i.state.fix_cycles(),
                "reason": i.state.reason().map(|r| r.to_string()),
                "tokens": i.tokens,
                "cost_usd": i.known_cost_usd(),
                "cost_known_usd": i.cost_usd,
                "unpriced_phases": i.unpriced_phases,
                "branch": i.worktree().map(|w| w.branch.clone()).or_else(|| i.carried.as_ref().map(|c| c.branch.clone())),
                "worktree": wt,
                "required_actions": outstanding_actions(i),
                "verification": i.verification.iter().map(|c| json!({
                    "command": c.command,
                    "status": c.status(),
                    "passed": c.passed(),
                    "pre_existing": c.pre_existing,
                    "exit_code": c.exit_code,
                    "duration_ms": c.duration_ms,
                    "output_hash": c.output_hash,
                    "log": c.log,
                })).collect::<Vec<_>>(),
                "carried_over": i.carried.as_ref().map(|c| json!({"run": c.run, "branch": c.branch, "tip": c.tip})),
                "guard": {
                    "checks_failed": i.guard.checks_failed,
                    "violations": i.guard.violations,
                    "commands_allowed": i.guard.allowed,
                    "commands_refused": i.guard.refused,
                    "refused": i.guard.refused_commands,
                },
            })
        })
        .collect();
    let mut v = json!({
        "run_id": view.run_id,
        "milestone": view.start.milestone,
        "finished": view.finished,
        "interrupted": view.interrupted,
        "records": view.records,
        "tokens": view.issues.iter().map(|i| i.tokens).sum::<u64>(),
        "cost_usd": run_cost(view).0,
        "cost_known_usd": run_cost(view).1,
        "max_cost_usd_per_issue": view.start.max_cost_usd_per_issue(),
        "max_cost_usd_per_run": view.start.max_cost_usd_per_run(),
        "issues": issues,
    });
    if let Some(r) = repo {
        v["repo"] = json!(r.display().to_string());
    }
    v
}

/// `status --json`'s times, from the run's history: the run's and each issue's start, end and
/// duration, and each phase's (`kind`, `label`, `attempt`, `started_at`, `ended_at`,
/// `duration_ms`, `outcome`).
pub fn add_times(v: &mut Value, h: &history::RunHistory) {
    v["started_at"] = json!(h.started_at);
    v["ended_at"] = json!(h.ended_at);
    v["duration_ms"] = json!(h.duration_ms);
    let Some(issues) = v["issues"].as_array_mut() else { return };
    for issue in issues {
        let Some(ih) = h.issues.iter().find(|i| issue["id"] == i.id.as_str()) else { continue };
        issue["started_at"] = json!(ih.first_at);
        issue["ended_at"] = json!(ih.last_at);
        issue["duration_ms"] = json!(issue_duration(ih).map(|s| (s * 1000.0).round() as u64));
        issue["phases"] = ih
            .phases
            .iter()
            .map(|p| {
                json!({
                    "kind": p.kind.as_str(),
                    "label": p.label,
                    "attempt": p.attempt,
                    "started_at": p.started_at,
                    "ended_at": p.ended_at,
                    "duration_ms": p.duration_ms,
                    "outcome": p.outcome.as_str(),
                })
            })
            .collect();
    }
}

/// The run's cost: `(total when every phase's is known, the sum of the known ones)`.
pub fn run_cost(view: &RunView) -> (Option<f64>, f64) {
    let known: f64 = view.issues.iter().map(|i| i.cost_usd).sum();
    let complete = view.issues.iter().all(|i| i.unpriced_phases == 0);
    (complete.then_some(known), known)
}

/// `$0.0123` (4 decimals: a phase often costs under a cent).
pub fn usd(v: f64) -> String {
    format!("${v:.4}")
}

/// An issue's cost for the status table: known, or how much of it is unknown.
fn cost_note(i: &crate::journal::view::IssueView) -> Option<String> {
    match (i.priced_phases, i.unpriced_phases) {
        (0, 0) => None,
        (_, 0) => Some(format!("cost {}", usd(i.cost_usd))),
        (0, n) => Some(format!("cost unknown ({n} phase(s) with no price)")),
        (_, n) => Some(format!("cost at least {} ({n} phase(s) with no price)", usd(i.cost_usd))),
    }
}

/// Counts of terminal outcomes: "3 Done, 1 Capped".
pub fn summary(view: &RunView) -> String {
    summary_styled(view, style::Style::PLAIN)
}

/// [`summary`] with each state in its colour (see [`style::Style::counts`]).
pub fn summary_styled(view: &RunView, style: style::Style) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for i in &view.issues {
        let n = i.state.name();
        match counts.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    style.counts(&counts)
}

/// One issue's guard outcome for the status table, or None when there is nothing to say.
fn guard_note(g: &GuardTally) -> Option<String> {
    let mut parts = Vec::new();
    if g.violations > 0 {
        parts.push(format!("{} guard violation(s)", g.violations));
    }
    if g.refused > 0 {
        let more = if g.refused as usize > g.refused_commands.len() { ", …" } else { "" };
        let shown: Vec<String> = g.refused_commands.iter().map(|c| format!("`{}`", printable(c, 120))).collect();
        parts.push(format!("refused {}{more}", shown.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The run's guard decisions in one line: `guard: 12 commands allowed, 2 refused, 0 violations`.
pub fn guard_summary(view: &RunView) -> Option<String> {
    view.start.guard.as_ref()?;
    let sum = |f: fn(&GuardTally) -> u32| view.issues.iter().map(|i| f(&i.guard)).sum::<u32>();
    Some(format!(
        "guard: {} command(s) allowed, {} refused, {} violation(s), {} failed check(s)",
        sum(|g| g.allowed),
        sum(|g| g.refused),
        sum(|g| g.violations),
        sum(|g| g.checks_failed)
    ))
}

/// What the last review (or the last failed verification) still required of a Capped or
/// Failed issue: the `required_actions` of its last reply in the journal. Empty for other
/// states, and when the reply had none or was not JSON.
pub fn outstanding_actions(i: &crate::journal::view::IssueView) -> Vec<String> {
    if !matches!(i.state.stage, Stage::Capped { .. } | Stage::Failed { .. }) {
        return Vec::new();
    }
    let Some(reply) = i.last_review.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()) else {
        return Vec::new();
    };
    reply["required_actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The human status table.
/// The issue's last verification in a few words: `verified: 2 passed, 1 pre-existing failure`,
/// or the failing commands.
fn verification_note(checks: &[crate::vocab::CheckRun]) -> Option<String> {
    if checks.is_empty() {
        return None;
    }
    let passed = checks.iter().filter(|c| c.passed()).count();
    let pre = checks.iter().filter(|c| !c.passed() && c.pre_existing).count();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.passed() && !c.pre_existing)
        .map(|c| format!("`{}` {}", c.command, c.status()))
        .collect();
    let mut parts = vec![format!("{passed} passed")];
    if pre > 0 {
        parts.push(format!("{pre} pre-existing failure(s)"));
    }
    Some(if failed.is_empty() {
        format!("verified: {}", parts.join(", "))
    } else {
        format!("last verification: {}, failing: {}", parts.join(", "), failed.join(", "))
    })
}

/// The status table without times, in `style` (the end of `run`, `retry` and the demo).
pub fn status_text(view: &RunView, live: bool, style: style::Style) -> String {
    status_text_timed(view, live, None, style)
}

/// How long an issue has taken so far: from its first record to its last (None before it starts).
fn issue_duration(h: &history::IssueHistory) -> Option<f64> {
    Some((h.last_at? - h.first_at?).num_milliseconds().max(0) as f64 / 1000.0)
}

/// The status table; with the run's history, also when it started, how long it and each issue
/// took (a TIME column). `style` colours the header, each state and the summary; padding is done
/// before painting so the columns line up either way.
pub fn status_text_timed(
    view: &RunView,
    live: bool,
    history: Option<&history::RunHistory>,
    style: style::Style,
) -> String {
    let mut out = String::new();
    let phase = if live {
        "in progress (locked by a running loop)"
    } else if view.finished {
        "finished"
    } else if view.interrupted {
        "interrupted — continue with `loop resume`"
    } else {
        "stopped before finishing — continue with `loop resume`"
    };
    let took = history
        .map(|h| {
            format!(
                "  (started {}, {})",
                h.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                duration(h.duration_ms as f64 / 1000.0)
            )
        })
        .unwrap_or_default();
    out.push_str(&format!("run {}  milestone {}  {phase}{took}\n", view.run_id, view.start.milestone));
    let time_of = |id: &str| -> String {
        let h = history.and_then(|h| h.issues.iter().find(|i| i.id == id));
        h.and_then(issue_duration).map(duration).unwrap_or_else(|| "-".into())
    };
    let timed = history.is_some();
    let w = view.issues.iter().map(|i| i.id.len()).max().unwrap_or(5).max(5);
    let branch_of = |i: &crate::journal::view::IssueView| {
        i.worktree().map(|w| w.branch.clone()).or_else(|| i.carried.as_ref().map(|c| c.branch.clone()))
    };
    let b = view.issues.iter().filter_map(|i| branch_of(i).map(|b| b.chars().count())).max().unwrap_or(6).max(6);
    let time_col = |t: &str| if timed { format!(" {t:>7}") } else { String::new() };
    let header =
        format!("{:<w$}  {:<10} {:>3}{}  {:<b$}  {}", "ISSUE", "STATE", "FIX", time_col("TIME"), "BRANCH", "NOTES");
    out.push_str(&format!("{}\n", style.bold(&header)));
    for i in &view.issues {
        let mut notes = Vec::new();
        if let Some(r) = i.state.reason() {
            notes.push(r.to_string());
        }
        if let Some(c) = &i.carried {
            notes.push(format!(
                "carried over from {} ({} at {})",
                c.run,
                c.branch,
                c.tip.chars().take(12).collect::<String>()
            ));
        }
        if i.tokens > 0 {
            notes.push(format!("{} tokens", i.tokens));
        }
        if let Some(c) = cost_note(i).filter(|_| view.shows_cost()) {
            notes.push(c);
        }
        if let Some(g) = guard_note(&i.guard) {
            notes.push(g);
        }
        if let Some(v) = verification_note(&i.verification) {
            notes.push(v);
        }
        if let Some(wt) = i.worktree() {
            if wt.removed() {
                notes.push("worktree removed".into());
            } else if let Some(k) = wt.kept() {
                let exists = if Path::new(&wt.path).exists() { "" } else { " (since deleted)" };
                notes.push(format!("worktree kept at {}{exists}: {k}", wt.path));
            } else if wt.created() {
                let exists = if Path::new(&wt.path).exists() { "" } else { " (missing)" };
                notes.push(format!("worktree {}{exists}", wt.path));
            }
        }
        out.push_str(&format!(
            "{:<w$}  {} {:>3}{}  {:<b$}  {}\n",
            i.id,
            style.state(i.state.name(), &format!("{:<10}", i.state.name())),
            i.state.fix_cycles(),
            time_col(&time_of(&i.id)),
            escape(&branch_of(i).unwrap_or_else(|| "-".into())),
            escape(&notes.join("; "))
        ));
        let actions = outstanding_actions(i);
        if !actions.is_empty() {
            let shown: Vec<String> = actions.iter().map(|a| printable(a, 160)).collect();
            out.push_str(&format!("{:<w$}  {} {}\n", "", style.warn("still required:"), shown.join("; ")));
        }
    }
    out.push_str(&format!("summary: {}\n", summary_styled(view, style)));
    if let Some(g) = guard_summary(view) {
        out.push_str(&format!("{g}\n"));
    }
    let total: u64 = view.issues.iter().map(|i| i.tokens).sum();
    if total > 0 {
        out.push_str(&format!("tokens: {total} in total\n"));
    }
    if view.shows_cost() {
        let unpriced: u32 = view.issues.iter().map(|i| i.unpriced_phases).sum();
        let line = match run_cost(view) {
            (Some(c), _) => format!("cost: {} in total", usd(c)),
            (None, 0.0) => format!("cost: unknown ({unpriced} phase(s) with no price in [prices])"),
            (None, known) => format!("cost: at least {} ({unpriced} phase(s) with no price in [prices])", usd(known)),
        };
        let budget = match view.start.max_cost_usd_per_run() {
            Some(limit) => format!("; run budget {}, {} counted", usd(limit), usd(view.budget_cost_usd())),
            None => String::new(),
        };
        out.push_str(&format!("{line}{budget}\n"));
    }
    out
}

/// A duration for people: `42s`, `3m 05s`, `2h 07m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod duration_tests {
    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(super::duration(0.4), "0s");
        assert_eq!(super::duration(42.0), "42s");
        assert_eq!(super::duration(185.0), "3m 05s");
        assert_eq!(super::duration(7620.0), "2h 07m");
    }
}
