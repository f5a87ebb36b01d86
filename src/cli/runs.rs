//! `loop runs`: the runs recorded in this repository, ids shown by shortest unique prefix.

use clap::Args;
use serde_json::json;

use super::{CliError, ExitCode, RepoArgs};
use crate::render;
use crate::runs::shortest_prefixes;

#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RunsArgs) -> Result<ExitCode, CliError> {
    let state = args.repo.state()?;
    let all = state.list_all()?;
    let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    let prefixes = shortest_prefixes(&ids, 4);
    let mut rows = Vec::new();
    for ((id, kind), prefix) in all.iter().zip(&prefixes) {
        let live = state.is_locked(id);
        if *kind == crate::runs::RunKind::Empty {
            let what = if live { "starting" } else { "killed before its first record; `loop clean` removes it" };
            rows.push(json!({"run_id": id, "prefix": prefix, "state": if live { "running" } else { "empty" }, "summary": what}));
            continue;
        }
        let row = match state.view(id).map_err(CliError::from).and_then(|r| Ok(r?)) {
            Ok(view) => json!({
                "run_id": id,
                "prefix": prefix,
                "milestone": view.start.milestone,
                "state": if live { "running" } else if view.finished { "finished" } else { "stopped" },
                "summary": summary_with_cost(&view),
                "cost_usd": render::run_cost(&view).0,
            }),
            Err(e) => json!({"run_id": id, "prefix": prefix, "state": "unreadable", "error": e.to_string()}),
        };
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::Ok);
    }
    if rows.is_empty() {
        println!("no runs yet in {}", state.root.display());
    }
    for r in &rows {
        let prefix = r["prefix"].as_str().unwrap_or("");
        let id = r["run_id"].as_str().unwrap_or("");
        println!(
            "{prefix}{}  {:<10} {:<12} {}",
            &id[prefix.len()..].chars().map(|_| ' ').collect::<String>(),
            r["state"].as_str().unwrap_or(""),
            r["milestone"].as_str().unwrap_or("-"),
            r["summary"].as_str().or(r["error"].as_str()).unwrap_or("")
        );
    }
    Ok(ExitCode::Ok)
}

/// The outcome counts, and the run's cost when it has one to show: `1 Done; cost $0.0123`.
fn summary_with_cost(view: &crate::journal::view::RunView) -> String {
    let summary = render::summary(view);
    if !view.shows_cost() {
        return summary;
    }
    match render::run_cost(view) {
        (Some(c), _) => format!("{summary}; cost {}", render::usd(c)),
        (None, known) if known > 0.0 => format!("{summary}; cost at least {}", render::usd(known)),
        (None, _) => format!("{summary}; cost unknown"),
    }
}
