//! `loop runs`: the runs recorded in this repository, oldest first by start time, with a header,
//! the start time, how long each ran (first to last record) and its state. The text shows whole
//! ids (a lone run's shortest unique prefix is a meaningless `2026`); `--json` carries both.

use clap::Args;
use serde_json::json;

use super::{CliError, ExitCode, RepoArgs};
use crate::render;
use crate::runs::shortest_prefixes;

#[derive(Args, Debug)]
#[command(after_help = "Any command that takes a RUN accepts a unique prefix of its id (`prefix` in --json).")]
pub struct RunsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// One JSON array on stdout: run_id, prefix, milestone, state, started_at, last_record_at,
    /// duration_secs, summary (or error).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunsArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let all = state.list_all()?;
    let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    let prefixes = shortest_prefixes(&ids, 4);
    let style = if args.json { render::style::Style::PLAIN } else { render::style::Style::stdout() };
    // (start, id, JSON row, the summary as the text shows it)
    let mut rows = Vec::new();
    for ((id, kind), prefix) in all.iter().zip(&prefixes) {
        let live = state.is_locked(id);
        if *kind == crate::runs::RunKind::Empty {
            let what = if live { "starting" } else { "killed before its first record; `loop clean` removes it" };
            let row = json!({"run_id": id, "prefix": prefix, "state": if live { "running" } else { "empty" }, "summary": what});
            rows.push((None, id.clone(), row, None));
            continue;
        }
        let (started, row, styled) = match state.view(id).map_err(CliError::from).and_then(|r| Ok(r?)) {
            Ok(view) => (
                Some(view.started_at),
                json!({
                    "run_id": id,
                    "prefix": prefix,
                    "milestone": view.start.milestone,
                    "state": if live { "running" } else if view.finished { "finished" } else { "stopped" },
                    "started_at": view.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "last_record_at": view.last_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "duration_secs": (view.last_at - view.started_at).num_milliseconds().max(0) as f64 / 1000.0,
                    "summary": summary_with_cost(&view, render::style::Style::PLAIN),
                    "cost_usd": render::run_cost(&view).0,
                }),
                Some(summary_with_cost(&view, style)),
            ),
            Err(e) => {
                let started = state.started_at(id);
                let at = started.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                (
                    started,
                    json!({"run_id": id, "prefix": prefix, "state": "unreadable", "error": e.to_string(), "started_at": at}),
                    None,
                )
            }
        };
        rows.push((started, id.clone(), row, styled));
    }
    // By start time (nanoseconds), known once per run above; ids only break ties, e.g. two runs
    // under a fixed clock. (An empty run has no start: it sorts first.)
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    if args.json {
        println!("{}", serde_json::Value::Array(rows.into_iter().map(|(_, _, r, _)| r).collect()));
        return Ok(ExitCode::Ok);
    }
    if rows.is_empty() {
        println!("no runs yet in {}", state.root.display());
        return Ok(ExitCode::Ok);
    }
    let width = rows.iter().map(|r| r.2["run_id"].as_str().unwrap_or("").len()).max().unwrap_or(0).max(3);
    let ms_width = rows.iter().map(|r| r.2["milestone"].as_str().unwrap_or("-").len()).max().unwrap_or(0).max(9);
    let header = format!(
        "{:<width$}  {:<10} {:<ms_width$}  {:<20} {:>9}  SUMMARY",
        "RUN", "STATE", "MILESTONE", "STARTED", "DURATION"
    );
    println!("{}", style.bold(&header));
    for (_, _, r, styled) in &rows {
        let started = r["started_at"].as_str().map(|s| s.replace('T', " ").trim_end_matches('Z').to_string());
        let state = r["state"].as_str().unwrap_or("");
        let summary = styled.clone().or_else(|| r["summary"].as_str().or(r["error"].as_str()).map(String::from));
        println!(
            "{:<width$}  {} {:<ms_width$}  {:<20} {:>9}  {}",
            r["run_id"].as_str().unwrap_or(""),
            style.state(state, &format!("{state:<10}")),
            r["milestone"].as_str().unwrap_or("-"),
            started.as_deref().unwrap_or("-"),
            r["duration_secs"].as_f64().map(render::duration).unwrap_or_else(|| "-".into()),
            summary.unwrap_or_default()
        );
    }
    Ok(ExitCode::Ok)
}

/// The outcome counts, and the run's cost when it has one to show: `1 Done; cost $0.0123`.
fn summary_with_cost(view: &crate::journal::view::RunView, style: render::style::Style) -> String {
    let summary = render::summary_styled(view, style);
    if !view.shows_cost() {
        return summary;
    }
    match render::run_cost(view) {
        (Some(c), _) => format!("{summary}; cost {}", render::usd(c)),
        (None, known) if known > 0.0 => format!("{summary}; cost at least {}", render::usd(known)),
        (None, _) => format!("{summary}; cost unknown"),
    }
}
