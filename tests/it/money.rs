//! #13 money and mixed backends through the real binary: a run whose phases run on different
//! agents (the simulated one and the REAL codex against the loopback mock) journals each
//! phase's backend and keeps it on retry after loop.toml changed; codex's tokens are priced
//! from `[prices]`; a cost budget caps an issue; the run budget blocks issues not started.

use crate::support::codex::*;
use crate::support::exit;
use serde_json::Value;

const M: &str = "M1";

fn issue_state(status: &Value, id: &str) -> Value {
    status["issues"].as_array().unwrap().iter().find(|i| i["id"] == id).cloned().unwrap()
}

/// Replaces loop.toml (committed: the guard wants a clean main checkout).
fn write_loop_toml(r: &Repo, text: &str) {
    std::fs::write(r.path.join("loop.toml"), text).unwrap();
    r.git(&r.path, &["commit", "-q", "-am", "loop.toml changed"]);
}

/// The backend journaled before each phase: `(phase, kind)`.
fn phase_agents(records: &[Value]) -> Vec<(String, String)> {
    events(records, "phase_agent")
        .iter()
        .map(|r| {
            let e = &r["body"]["event"];
            (e["phase"].as_str().unwrap().to_string(), e["kind"].as_str().unwrap().to_string())
        })
        .collect()
}

/// loop.toml with a price for codex's model: `run` goes into `[run]`, `rest` after the prices.
/// One codex response costs (100 input × 1.25 + 20 output × 10) / 1e6 USD at these prices.
fn priced(run: &str, rest: &str) -> String {
    format!(
        "[codex]\nmodel = \"gpt-5.5\"\n[run]\nphase_timeout = 120\n{run}\
         [prices.\"gpt-5.5\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10\n{rest}"
    )
}
const ONE_RESPONSE_USD: f64 = 0.000325;

#[test]
fn a_mixed_run_journals_each_phase_backend_prices_codex_caps_on_cost_and_retry_keeps_the_record() {
    let Some(codex) = codex_bin() else { return };
    // Only review runs on codex: the first asks for changes, every later one passes.
    let mock = Mock::start(|n, body| match phase_of(body) {
        "review" if n == 0 => message(&review_reply("changes_required", &["add fixed.txt"])),
        "review" => message(&review_reply("pass", &[])),
        other => Reply::Status(400, format!("mock: unexpected {other} request: only review runs on codex")),
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[])]);
    r.use_mock(&mock, codex);
    write_loop_toml(
        &r,
        &priced("max_cost_usd_per_issue = 0.0001\n", "[agents]\ndev = \"sim\"\nreview = \"codex\"\nfix = \"sim\"\n"),
    );
    let dry = r.run(&["run", "--dry-run"], &[]);
    let text = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(text.contains("agent dev sim, review codex (gpt-5.5), fix sim,"), "{}", show(&dry));
    assert!(text.contains("cost budget per issue $0.0001, per run unlimited; priced models: gpt-5.5"), "{text}");

    let out = r.run(&["run", "--json"], &[("LOOP_RUN_ID", "mixed")]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    // The review (codex, priced) asked for changes and cost more than the issue's budget.
    let status = r.status();
    let s = issue_state(&status, "ORB-1");
    assert_eq!(s["state"], "Capped", "{status}");
    assert_eq!(s["reason"], "cost budget exceeded: $0.0003 used, limit $0.0001");
    assert!((s["cost_usd"].as_f64().unwrap() - ONE_RESPONSE_USD).abs() < 1e-12, "{s}");
    assert_eq!(status["max_cost_usd_per_issue"], 0.0001);
    let records = r.records("mixed");
    assert_eq!(phase_agents(&records), [("dev".into(), "sim".into()), ("review".into(), "codex".into())]);
    let review = &events(&records, "review_finished")[0]["body"]["evidence"];
    assert!((review["cost_usd"].as_f64().unwrap() - ONE_RESPONSE_USD).abs() < 1e-12, "{review}");
    assert_eq!(events(&records, "cost_exceeded").len(), 1);

    // loop.toml now says sim everywhere and has no prices: the retry still runs review on codex
    // (the recorded backend) and prices it by the recorded table.
    write_loop_toml(&r, "[run]\nphase_timeout = 120\n[agents]\ndev = \"sim\"\nreview = \"sim\"\nfix = \"sim\"\n");
    let out = r.run(&["retry", "mixed", "ORB-1", "--json"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    assert_eq!(mock.count(), 2, "both reviews ran on codex");
    let records = r.records("mixed");
    let kinds: Vec<(String, String)> = phase_agents(&records);
    assert_eq!(
        kinds,
        [("dev", "sim"), ("review", "codex"), ("fix", "sim"), ("review", "codex")]
            .map(|(p, k)| (p.to_string(), k.to_string()))
    );
    let status = r.status();
    let s = issue_state(&status, "ORB-1");
    assert_eq!(s["state"], "Done", "{status}");
    assert!((status["cost_usd"].as_f64().unwrap() - 2.0 * ONE_RESPONSE_USD).abs() < 1e-12, "{status}");
    let text = String::from_utf8_lossy(&r.run(&["status"], &[]).stdout).to_string();
    let total = format!("${:.4}", 2.0 * ONE_RESPONSE_USD);
    assert!(text.contains(&format!("cost {total}")) && text.contains(&format!("cost: {total} in total")), "{text}");
    let runs = String::from_utf8_lossy(&r.run(&["runs"], &[]).stdout).to_string();
    assert!(runs.contains(&format!("1 Done; cost {total}")), "{runs}");
    // replay re-folds the recorded costs and agrees.
    let out = r.run(&["replay", "mixed"], &[]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
}

#[test]
fn codex_without_a_price_has_an_unknown_cost_and_a_spent_run_budget_blocks_the_rest() {
    let Some(codex) = codex_bin() else { return };
    let mock = Mock::start(|_, body| match phase_of(body) {
        "review" => message(&review_reply("pass", &[])),
        _ => message(&work_reply("pass", "loop/M1/ORB-1", "true")),
    });
    let mut r = repo(M, &[("ORB-1", "Say hello", &[]), ("ORB-2", "Say more", &[])]);
    r.use_mock(&mock, codex);
    // No price for gpt-5.5: the cost is unknown (never 0), and an unknown cost spends no budget.
    let out = r.run(&["run", "--json", "--issue", "ORB-1", "--max-cost-per-run", "5"], &[("LOOP_RUN_ID", "unpriced")]);
    assert_eq!(out.status.code(), Some(exit::OK), "{}", show(&out));
    let status = r.status();
    assert_eq!(issue_state(&status, "ORB-1")["cost_usd"], Value::Null, "{status}");
    assert_eq!(issue_state(&status, "ORB-1")["unpriced_phases"], 2);
    let text = String::from_utf8_lossy(&r.run(&["status", "unpriced"], &[]).stdout).to_string();
    assert!(text.contains("cost unknown (2 phase(s) with no price)"), "{text}");
    assert!(text.contains("cost: unknown (2 phase(s) with no price in [prices])"), "{text}");

    // Priced, with a run budget one phase spends: ORB-1's dev runs, then nothing else starts.
    write_loop_toml(&r, &priced("max_cost_usd_per_run = 0.0003\n", ""));
    let before = mock.count();
    let out = r.run(&["run", "--json", "--fresh"], &[("LOOP_RUN_ID", "budget")]);
    assert_eq!(out.status.code(), Some(exit::NOT_ALL_DONE), "{}", show(&out));
    assert_eq!(mock.count() - before, 1, "only ORB-1's dev ran");
    let out = r.run(&["status", "budget", "--json"], &[]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let spent = "run cost budget spent: $0.0003 used, limit $0.0003";
    let one = issue_state(&status, "ORB-1");
    assert_eq!((one["state"].as_str(), one["reason"].as_str()), (Some("Capped"), Some(spent)), "{status}");
    let two = issue_state(&status, "ORB-2");
    assert_eq!((two["state"].as_str(), two["reason"].as_str()), (Some("Blocked"), Some(spent)), "{status}");
    assert!(two["worktree"].is_null(), "ORB-2 never started: {two}");
}
