//! `loop report`'s page: one self-contained HTML file drawn from a [`RunHistory`]: the run's
//! totals, the DAG by plan waves, a timeline of every issue's phases, and each issue's details.
//!
//! Invariants:
//! - Self-contained: inline CSS and inline SVG, no script, no font, image or stylesheet from
//!   anywhere; the page opens offline and asks nothing of the network.
//! - Every string that came from the journal (ids, titles, summaries, argv, paths) passes
//!   through [`esc`] before it reaches the page, in text and in attributes alike.
//! - Pure: the same history gives the same bytes (positions are computed here, from the plan's
//!   waves and the records' times; nothing depends on the clock or the machine).

use std::fmt::Write as _;

use super::history::{Outcome, PhaseKind, PhaseRun, RunHistory};
use crate::vocab::DiffStat;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The CSS class of an end state's colour.
fn state_class(state: &str) -> &'static str {
    match state {
        "Done" => "done",
        "Capped" => "capped",
        "Blocked" => "blocked",
        "Failed" => "failed",
        "Pending" => "pending",
        _ => "running",
    }
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

fn secs(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        super::duration(ms as f64 / 1000.0)
    }
}

fn diffstat(d: &DiffStat) -> String {
    format!(
        "{} file{} <span class=\"ins\">+{}</span> <span class=\"del\">−{}</span>",
        d.files,
        if d.files == 1 { "" } else { "s" },
        d.insertions,
        d.deletions
    )
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cost(usd: f64, unpriced: u32) -> String {
    match (usd > 0.0, unpriced) {
        (_, 0) => super::usd(usd),
        (false, n) => format!("unknown ({n} unpriced phase{})", if n == 1 { "" } else { "s" }),
        (true, n) => format!("≥ {} ({n} unpriced)", super::usd(usd)),
    }
}

const CSS: &str = r#"
:root{--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--panel:#f6f8fa;--done:#1a7f37;--capped:#9a6700;
--blocked:#6e7781;--failed:#cf222e;--pending:#8c959f;--running:#0969da;--dev:#0969da;--review:#8250df;--fix:#bc4c00;
--verify:#1b7c83;--ins:#1a7f37;--del:#cf222e}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--panel:#151b23;
--done:#3fb950;--capped:#d29922;--blocked:#9198a1;--failed:#f85149;--pending:#6e7681;--running:#4493f8;--dev:#4493f8;
--review:#ab7df8;--fix:#db6d28;--verify:#39c5cf;--ins:#3fb950;--del:#f85149}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:32px 28px 64px}
h1{font-size:26px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:18px;margin:40px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:0}
h4{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);margin:18px 0 6px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.sub{color:var(--muted);margin:0}
.sub span+span:before{content:" · "}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-top:24px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin-top:12px}
.badge{display:inline-block;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;color:#fff;
white-space:nowrap;vertical-align:middle}
.badge.done{background:var(--done)}.badge.capped{background:var(--capped)}.badge.blocked{background:var(--blocked)}
.badge.failed{background:var(--failed)}.badge.pending{background:var(--pending)}.badge.running{background:var(--running)}
.badge.pass{background:var(--done)}.badge.changes_required{background:var(--capped)}.badge.blockedv{background:var(--failed)}
.figure{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px;overflow-x:auto}
svg{display:block;font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif}
svg text{fill:var(--fg)}
svg .muted{fill:var(--muted)}
svg .edge{stroke:var(--muted);fill:none;stroke-width:1.5}
svg .edge.base{stroke-dasharray:4 4;opacity:.7}
svg .node rect{stroke-width:2;fill:var(--bg)}
svg .node.done rect{stroke:var(--done)}svg .node.capped rect{stroke:var(--capped)}svg .node.blocked rect{stroke:var(--blocked)}
svg .node.failed rect{stroke:var(--failed)}svg .node.pending rect{stroke:var(--pending)}svg .node.running rect{stroke:var(--running)}
svg .node .band{stroke:none}
svg .node.done .band{fill:var(--done)}svg .node.capped .band{fill:var(--capped)}svg .node.blocked .band{fill:var(--blocked)}
svg .node.failed .band{fill:var(--failed)}svg .node.pending .band{fill:var(--pending)}svg .node.running .band{fill:var(--running)}
svg .root rect{fill:var(--panel);stroke:var(--line)}
svg .grid{stroke:var(--line);stroke-width:1}
svg .bar.dev{fill:var(--dev)}svg .bar.review{fill:var(--review)}svg .bar.fix{fill:var(--fix)}svg .bar.verify{fill:var(--verify)}
svg .bar.bad{stroke:var(--failed);stroke-width:2}
svg .retry{fill:var(--capped)}svg .interrupt{stroke:var(--failed);stroke-width:2.5}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:12.5px;color:var(--muted);margin:8px 4px 0}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:5px;vertical-align:-2px}
.issue{border:1px solid var(--line);border-radius:10px;margin:16px 0;overflow:hidden}
.issue>header{display:flex;gap:12px;align-items:center;padding:12px 16px;background:var(--panel);border-bottom:1px solid var(--line);flex-wrap:wrap}
.issue>header .title{color:var(--muted)}
.issue .body{padding:4px 16px 16px}
.issue.done{border-left:4px solid var(--done)}.issue.capped{border-left:4px solid var(--capped)}
.issue.blocked{border-left:4px solid var(--blocked)}.issue.failed{border-left:4px solid var(--failed)}
.issue.pending{border-left:4px solid var(--pending)}.issue.running{border-left:4px solid var(--running)}
.why{margin:12px 0 0;padding:8px 12px;border-radius:6px;background:var(--panel);border:1px solid var(--line)}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ins{color:var(--ins)}.del{color:var(--del)}
.bad{color:var(--failed);font-weight:600}
.review{border-left:3px solid var(--line);padding:2px 0 2px 12px;margin:10px 0}
.review ul{margin:4px 0 0;padding-left:20px}
pre{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 10px;overflow-x:auto;
font-size:12px;white-space:pre-wrap;word-break:break-word;margin:6px 0}
details summary{cursor:pointer;color:var(--muted)}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13.5px;margin-top:12px}
.kv dt{color:var(--muted)}.kv dd{margin:0;word-break:break-all}
footer{margin-top:48px;color:var(--muted);font-size:12.5px}
"#;

/// The whole page.
pub fn html(h: &RunHistory) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>loop report · {} · {}</title><style>{CSS}</style></head><body><main>",
        esc(&h.milestone),
        esc(&h.run_id)
    );
    header(&mut o, h);
    o.push_str("<h2 id=\"dag\">Dependency graph</h2>");
    dag(&mut o, h);
    o.push_str("<h2 id=\"timeline\">Timeline</h2>");
    timeline(&mut o, h);
    o.push_str("<h2 id=\"issues\">Issues</h2>");
    for (i, issue) in h.issues.iter().enumerate() {
        issue_details(&mut o, h, i, issue);
    }
    let _ = writeln!(
        o,
        "<footer>Made by <code>loop report</code> from the journal of run <code>{}</code> ({} records). \
Replay it with <code>loop replay {}</code>.</footer></main></body></html>",
        esc(&h.run_id),
        h.records,
        esc(&h.run_id)
    );
    o
}

fn header(o: &mut String, h: &RunHistory) {
    let state = if h.finished {
        "<span class=\"badge done\">finished</span>"
    } else if h.stops.last().is_some_and(|s| s.kind == "interrupted") {
        "<span class=\"badge failed\">interrupted</span>"
    } else {
        "<span class=\"badge running\">not finished</span>"
    };
    let _ = write!(
        o,
        "<h1>{} <span class=\"sub\" style=\"font-weight:400\">run report</span> {state}</h1>\
<p class=\"sub\"><span>run <code>{}</code></span><span>agent {}</span><span>started {}</span><span>repo <code>{}</code></span></p>",
        esc(&h.milestone),
        esc(&h.run_id),
        esc(&h.agent),
        h.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        esc(&h.repo),
    );
    let t = &h.totals;
    let card = |o: &mut String, k: &str, v: String| {
        let _ = write!(o, "<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div></div>");
    };
    o.push_str("<div class=\"cards\">");
    card(o, "Duration", secs(h.duration_ms));
    card(o, "Issues", h.issues.len().to_string());
    card(o, "Phases", t.phases.to_string());
    card(o, "Tokens", thousands(t.tokens));
    card(o, "Cost", cost(t.cost_usd, t.unpriced_phases));
    card(
        o,
        "Commits",
        format!("{} <span class=\"sub\" style=\"font-size:13px\">{}</span>", t.commits, diffstat(&t.diffstat)),
    );
    if t.retries + t.interruptions > 0 {
        card(o, "Retries · interruptions", format!("{} · {}", t.retries, t.interruptions));
    }
    o.push_str("</div><div class=\"chips\" id=\"by-state\">");
    for (state, n) in &t.by_state {
        let _ = write!(o, "<span class=\"badge {}\">{n} {}</span>", state_class(state), esc(state));
    }
    o.push_str("</div>");
    for s in &h.stops {
        let _ = write!(
            o,
            "<p class=\"sub\">{} {} at {}{}</p>",
            if s.kind == "interrupted" { "⏸" } else { "▶" },
            s.kind,
            s.at.format("%H:%M:%S"),
            s.reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default()
        );
    }
}

const NODE_W: f64 = 190.0;
const NODE_H: f64 = 58.0;
const COL_GAP: f64 = 80.0;
const ROW_GAP: f64 = 22.0;
const PAD: f64 = 16.0;

/// The DAG, left to right by plan wave, with the run's base commit as the root on the left.
fn dag(o: &mut String, h: &RunHistory) {
    let waves = h.issues.iter().map(|i| i.wave).max().map_or(0, |w| w + 1) as usize;
    let mut rows = vec![0usize; waves];
    let mut pos = Vec::with_capacity(h.issues.len());
    for i in &h.issues {
        let w = i.wave as usize;
        pos.push((w, rows[w]));
        rows[w] += 1;
    }
    let max_rows = rows.iter().copied().max().unwrap_or(1).max(1);
    let height = PAD * 2.0 + max_rows as f64 * (NODE_H + ROW_GAP) - ROW_GAP + 22.0;
    let root_w = 130.0;
    let x0 = PAD + root_w + COL_GAP;
    let width = x0 + waves as f64 * (NODE_W + COL_GAP) - COL_GAP + PAD;
    // Each wave's column is centred vertically.
    let xy = |(w, r): (usize, usize)| -> (f64, f64) {
        let offset = (max_rows - rows[w]) as f64 * (NODE_H + ROW_GAP) / 2.0;
        (x0 + w as f64 * (NODE_W + COL_GAP), PAD + 22.0 + offset + r as f64 * (NODE_H + ROW_GAP))
    };
    let _ = write!(
        o,
        "<div class=\"figure\"><svg id=\"dag-svg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"dependency graph\">\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
<path d=\"M0,0 L10,5 L0,10 z\" class=\"muted\" style=\"fill:var(--muted)\"/></marker></defs>"
    );
    for w in 0..waves {
        let (x, _) = xy((w, 0));
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"muted\" font-size=\"11\" text-anchor=\"middle\">WAVE {}</text>",
            x + NODE_W / 2.0,
            PAD + 8.0,
            w + 1
        );
    }
    let ry = PAD + 22.0 + (max_rows as f64 * (NODE_H + ROW_GAP) - ROW_GAP) / 2.0 - NODE_H / 2.0;
    let _ = write!(
        o,
        "<g class=\"root\"><rect x=\"{PAD}\" y=\"{ry:.1}\" width=\"{root_w}\" height=\"{NODE_H}\" rx=\"8\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" class=\"muted\">base</text>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" class=\"mono\" font-weight=\"600\">{}</text></g>",
        PAD + 12.0,
        ry + 22.0,
        PAD + 12.0,
        ry + 42.0,
        esc(short(&h.base_commit))
    );
    let index: std::collections::HashMap<&str, usize> =
        h.issues.iter().enumerate().map(|(i, x)| (x.id.as_str(), i)).collect();
    for (i, issue) in h.issues.iter().enumerate() {
        let (x, y) = xy(pos[i]);
        let ty = y + NODE_H / 2.0;
        if issue.blocked_by.is_empty() {
            let (sx, sy) = (PAD + root_w, ry + NODE_H / 2.0);
            let _ = write!(
                o,
                "<path class=\"edge base\" d=\"M{sx:.1},{sy:.1} C{:.1},{sy:.1} {:.1},{ty:.1} {:.1},{ty:.1}\" marker-end=\"url(#arrow)\"/>",
                sx + COL_GAP / 2.0,
                x - COL_GAP / 2.0,
                x - 2.0
            );
        }
        for dep in &issue.blocked_by {
            let Some(&j) = index.get(dep.as_str()) else { continue };
            let (dx, dy) = xy(pos[j]);
            let (sx, sy) = (dx + NODE_W, dy + NODE_H / 2.0);
            let _ = write!(
                o,
                "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"M{sx:.1},{sy:.1} C{:.1},{sy:.1} {:.1},{ty:.1} {:.1},{ty:.1}\" marker-end=\"url(#arrow)\"/>",
                esc(dep),
                esc(&issue.id),
                sx + COL_GAP / 2.0,
                x - COL_GAP / 2.0,
                x - 2.0
            );
        }
    }
    for (i, issue) in h.issues.iter().enumerate() {
        let (x, y) = xy(pos[i]);
        let class = state_class(&issue.state);
        let base = match (&issue.base, issue.blocked_by.is_empty()) {
            (Some(b), _) => format!("from {}", short(b)),
            (None, _) => "not started".to_string(),
        };
        let _ = write!(
            o,
            "<g class=\"node {class}\" data-issue=\"{}\" data-state=\"{}\"><title>{}: {} ({})</title>\
<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"8\"/>\
<rect class=\"band\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"6\" height=\"{NODE_H}\" rx=\"3\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" font-weight=\"600\">{}</text>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" font-weight=\"600\" style=\"fill:var(--{class})\">{}</text>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" class=\"muted\">{}</text></g>",
            esc(&issue.id),
            esc(&issue.state),
            esc(&issue.id),
            esc(&issue.title),
            esc(&issue.state_short),
            x + 16.0,
            y + 24.0,
            esc(&clip(&issue.id, 16)),
            x + NODE_W - 10.0,
            y + 24.0,
            esc(&issue.state_short),
            x + 16.0,
            y + 44.0,
            esc(&clip(&base, 28)),
        );
    }
    o.push_str("</svg></div>");
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

const LABEL_W: f64 = 150.0;
const ROW_H: f64 = 34.0;
const BAR_H: f64 = 18.0;
const AXIS_H: f64 = 28.0;
const PLOT_W: f64 = 940.0;

/// One row per issue, its phases as bars over wall-clock time. When the journal's clock did
/// not move (a fixed test clock), phases are placed one after another in journal order instead.
fn timeline(o: &mut String, h: &RunHistory) {
    let t0 = h.started_at;
    let span = h.duration_ms;
    let by_time = span > 0;
    // Ordinal fallback: the n-th phase of the run (by start time, then plan order) is slot n.
    let mut order: Vec<(usize, usize)> =
        h.issues.iter().enumerate().flat_map(|(i, x)| (0..x.phases.len()).map(move |p| (i, p))).collect();
    order.sort_by_key(|&(i, p)| h.issues[i].phases[p].started_at);
    let slots = order.len().max(1) as f64;
    let slot_of = |i: usize, p: usize| order.iter().position(|&x| x == (i, p)).unwrap_or(0) as f64;
    let ms = |t: chrono::DateTime<chrono::Utc>| (t - t0).num_milliseconds().max(0) as f64;
    let x_of = |v: f64| LABEL_W + v / span.max(1) as f64 * PLOT_W;
    let width = LABEL_W + PLOT_W + PAD;
    let height = AXIS_H + h.issues.len() as f64 * ROW_H + 8.0;
    let _ = write!(
        o,
        "<div class=\"figure\"><svg id=\"timeline-svg\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"timeline\">"
    );
    // Axis: five ticks over the run's duration (or the phase order).
    for k in 0..=4 {
        let x = LABEL_W + PLOT_W * k as f64 / 4.0;
        let label = if by_time { secs(span * k / 4) } else { format!("#{}", (slots * k as f64 / 4.0).round() as u64) };
        let anchor = if k == 4 {
            "end"
        } else if k == 0 {
            "start"
        } else {
            "middle"
        };
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{height:.1}\"/>\
<text x=\"{x:.1}\" y=\"14\" font-size=\"11\" class=\"muted\" text-anchor=\"{anchor}\">{label}</text>",
            AXIS_H - 8.0
        );
    }
    for (i, issue) in h.issues.iter().enumerate() {
        let y = AXIS_H + i as f64 * ROW_H;
        let _ = write!(
            o,
            "<g class=\"row\" data-issue=\"{}\"><text x=\"0\" y=\"{:.1}\" font-size=\"13\" font-weight=\"600\">{}</text>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" style=\"fill:var(--{})\">{}</text>",
            esc(&issue.id),
            y + ROW_H / 2.0 + 4.0,
            esc(&clip(&issue.id, 12)),
            LABEL_W - 10.0,
            y + ROW_H / 2.0 + 4.0,
            state_class(&issue.state),
            esc(&issue.state_short)
        );
        for (p, ph) in issue.phases.iter().enumerate() {
            let (x1, x2) = if by_time {
                (x_of(ms(ph.started_at)), x_of(ms(ph.ended_at)))
            } else {
                let s = slot_of(i, p);
                (LABEL_W + s / slots * PLOT_W, LABEL_W + (s + 1.0) / slots * PLOT_W)
            };
            // A bar of a few milliseconds still shows; gaps keep neighbours apart.
            let w = (x2 - x1 - 1.0).max(3.0);
            let bad = matches!(ph.outcome, Outcome::Failed | Outcome::Guard | Outcome::Budget | Outcome::Interrupted);
            let _ = write!(
                o,
                "<rect class=\"bar {}{}\" data-start=\"{}\" data-phase=\"{}\" x=\"{x1:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{BAR_H}\" rx=\"3\">\
<title>{} {} · {} · {}{}</title></rect>",
                ph.kind.as_str(),
                if bad { " bad" } else { "" },
                ph.started_at.timestamp_millis(),
                esc(&ph.label),
                y + (ROW_H - BAR_H) / 2.0,
                esc(&issue.id),
                esc(&ph.label),
                secs(ph.duration_ms),
                ph.outcome.as_str(),
                ph.detail.as_deref().map(|d| format!(" · {}", esc(&clip(d, 200)))).unwrap_or_default()
            );
            if ph.retries > 0 {
                let cx = x1 + w / 2.0;
                let ty = y + (ROW_H - BAR_H) / 2.0 - 1.0;
                let _ = write!(
                    o,
                    "<path class=\"retry\" d=\"M{:.1},{:.1} L{:.1},{:.1} L{cx:.1},{ty:.1} z\"><title>{} retr{}</title></path>",
                    cx - 5.0,
                    ty - 8.0,
                    cx + 5.0,
                    ty - 8.0,
                    ph.retries,
                    if ph.retries == 1 { "y" } else { "ies" }
                );
            }
            if ph.outcome == Outcome::Interrupted {
                let xe = x1 + w;
                let _ = write!(
                    o,
                    "<line class=\"interrupt\" x1=\"{xe:.1}\" y1=\"{:.1}\" x2=\"{xe:.1}\" y2=\"{:.1}\"><title>interrupted</title></line>",
                    y + 4.0,
                    y + ROW_H - 4.0
                );
            }
        }
        o.push_str("</g>");
    }
    o.push_str("</svg>");
    o.push_str(
        "<div class=\"legend\"><span><i style=\"background:var(--dev)\"></i>dev</span>\
<span><i style=\"background:var(--review)\"></i>review</span><span><i style=\"background:var(--fix)\"></i>fix</span>\
<span><i style=\"background:var(--verify)\"></i>verification</span>\
<span><i style=\"background:var(--capped)\"></i>▼ retry</span><span><i style=\"background:var(--failed)\"></i>| interrupted / failed</span>",
    );
    if !by_time {
        o.push_str("<span>the journal's clock did not move: phases in journal order</span>");
    }
    o.push_str("</div></div>");
}

fn issue_details(o: &mut String, h: &RunHistory, _n: usize, i: &super::history::IssueHistory) {
    let class = state_class(&i.state);
    let _ = write!(
        o,
        "<section class=\"issue {class}\" id=\"issue-{}\" data-issue=\"{}\" data-state=\"{}\"><header>\
<h3>{}</h3><span class=\"badge {class}\">{}</span><span class=\"title\">{}</span></header><div class=\"body\">",
        esc(&crate::vocab::sanitize(&i.id)),
        esc(&i.id),
        esc(&i.state),
        esc(&i.id),
        esc(&i.state_short),
        esc(&i.title)
    );
    if let Some(r) = &i.reason {
        let _ = write!(o, "<p class=\"why\"><strong>Why {}:</strong> {}</p>", esc(&i.state), esc(r));
    }
    if let Some(run) = &i.carried_from {
        let _ = write!(o, "<p class=\"why\">Done in an earlier run, <code>{}</code>; carried over.</p>", esc(run));
    }
    o.push_str("<dl class=\"kv\">");
    let kv = |o: &mut String, k: &str, v: String| {
        let _ = write!(o, "<dt>{k}</dt><dd>{v}</dd>");
    };
    kv(o, "branch", format!("<code>{}</code>", esc(&i.branch)));
    if let Some(b) = &i.base {
        kv(o, "started from", format!("<code>{}</code>", esc(b)));
    }
    if !i.blocked_by.is_empty() {
        kv(
            o,
            "blocked by",
            i.blocked_by.iter().map(|d| format!("<code>{}</code>", esc(d))).collect::<Vec<_>>().join(", "),
        );
    }
    if !i.merged.is_empty() {
        kv(
            o,
            "merged in",
            i.merged.iter().map(|d| format!("<code>{}</code>", esc(short(d)))).collect::<Vec<_>>().join(", "),
        );
    }
    if let (Some(a), Some(b)) = (i.first_at, i.last_at) {
        kv(
            o,
            "time",
            format!(
                "{} – {} ({})",
                a.format("%H:%M:%S"),
                b.format("%H:%M:%S"),
                secs((b - a).num_milliseconds().max(0) as u64)
            ),
        );
    }
    kv(o, "tokens · cost", format!("{} · {}", thousands(i.tokens), cost(i.cost_usd, i.unpriced_phases)));
    if let Some(k) = &i.worktree_kept {
        kv(o, "worktree kept", esc(k));
    }
    o.push_str("</dl>");

    if !i.phases.is_empty() {
        o.push_str(
            "<h4>Phases</h4><table><thead><tr><th>phase</th><th>agent</th><th>started</th><th class=\"num\">took</th>\
<th>outcome</th><th class=\"num\">tokens</th><th class=\"num\">cost</th><th>commit</th></tr></thead><tbody>",
        );
        for p in &i.phases {
            phase_row(o, h, p);
        }
        o.push_str("</tbody></table>");
        let logs: Vec<&str> = i.phases.iter().filter_map(|p| p.log.as_deref()).collect();
        if !logs.is_empty() {
            let _ = write!(
                o,
                "<details><summary>raw agent logs ({}; below the state dir)</summary><pre>{}</pre></details>",
                logs.len(),
                esc(&logs.join("\n"))
            );
        }
    }
    if !i.reviews.is_empty() {
        o.push_str("<h4>Reviews</h4>");
        for r in &i.reviews {
            let verdict =
                serde_json::to_value(r.verdict).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let vclass = if verdict == "blocked" { "blockedv".to_string() } else { verdict.clone() };
            let _ = write!(
                o,
                "<div class=\"review\"><strong>Review {}</strong> <span class=\"badge {}\">{}</span> <span class=\"sub\" style=\"display:inline\">{}</span>",
                r.number,
                esc(&vclass),
                esc(&verdict.replace('_', " ")),
                r.confidence.as_deref().map(|c| format!("confidence {}", esc(c))).unwrap_or_default()
            );
            if let Some(s) = &r.summary {
                let _ = write!(o, "<p style=\"margin:4px 0\">{}</p>", esc(s));
            }
            if !r.required_actions.is_empty() {
                o.push_str("<div><em>Required actions</em><ul>");
                for a in &r.required_actions {
                    let _ = write!(o, "<li>{}</li>", esc(a));
                }
                o.push_str("</ul></div>");
            }
            if !r.findings.is_empty() {
                o.push_str("<div><em>Findings</em><ul>");
                for f in &r.findings {
                    let _ = write!(o, "<li>{}</li>", esc(f));
                }
                o.push_str("</ul></div>");
            }
            o.push_str("</div>");
        }
    }
    if !i.checks.is_empty() {
        o.push_str(
            "<h4>Verification</h4><table><thead><tr><th>kind</th><th>command</th><th>result</th><th class=\"num\">took</th></tr></thead><tbody>",
        );
        for c in &i.checks {
            let _ = write!(
                o,
                "<tr><td>{}</td><td><code>{}</code>{}</td><td class=\"{}\">{}</td><td class=\"num\">{}</td></tr>",
                c.kind.as_str(),
                esc(&c.command),
                if c.tail.trim().is_empty() {
                    String::new()
                } else {
                    format!(
                        "<details><summary>output (log <code>{}</code>)</summary><pre>{}</pre></details>",
                        esc(&c.log),
                        esc(&c.tail)
                    )
                },
                if c.passed { "" } else { "bad" },
                esc(&c.status),
                secs(c.duration_ms)
            );
        }
        o.push_str("</tbody></table>");
    }
    if !i.commits.is_empty() {
        o.push_str("<h4>Commits</h4><table><tbody>");
        for c in &i.commits {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(short(&c.commit)),
                esc(&c.what),
                c.diffstat
                    .as_ref()
                    .map(diffstat)
                    .unwrap_or_else(|| "<span class=\"sub\">no diffstat recorded</span>".into())
            );
        }
        o.push_str("</tbody></table>");
    }
    if !i.guard.is_empty() {
        let bad: Vec<_> = i.guard.iter().filter(|g| g.bad).collect();
        let ok = i.guard.len() - bad.len();
        let _ = write!(o, "<h4>Guard</h4><p style=\"margin:0\">{ok} passed check(s) or allowed command(s)");
        if bad.is_empty() {
            o.push_str(", nothing refused.</p>");
        } else {
            let _ = write!(o, ", <span class=\"bad\">{} problem(s)</span>:</p><ul>", bad.len());
            for g in bad {
                let _ = write!(
                    o,
                    "<li><span class=\"bad\">{}</span> {} <code>{}</code></li>",
                    g.kind,
                    g.phase.map(|p| p.as_str()).unwrap_or(""),
                    esc(&g.detail)
                );
            }
            o.push_str("</ul>");
        }
        o.push_str("<details><summary>every decision</summary><table><tbody>");
        for g in &i.guard {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td><code>{}</code></td></tr>",
                g.at.format("%H:%M:%S"),
                g.phase.map(|p| p.as_str()).unwrap_or(""),
                if g.bad { "bad" } else { "" },
                g.kind,
                esc(&g.detail)
            );
        }
        o.push_str("</tbody></table></details>");
    }
    if !i.retries.is_empty() || !i.interruptions.is_empty() {
        o.push_str("<h4>Retries and interruptions</h4><ul>");
        for r in &i.retries {
            let _ = write!(
                o,
                "<li>{} {} retry {} after {}: {}</li>",
                r.at.format("%H:%M:%S"),
                r.phase,
                r.retry,
                secs(r.delay_ms),
                esc(&r.error)
            );
        }
        for x in &i.interruptions {
            let _ = write!(
                o,
                "<li class=\"bad\">{} interrupted{}</li>",
                x.at.format("%H:%M:%S"),
                x.reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default()
            );
        }
        o.push_str("</ul>");
    }
    o.push_str("</div></section>");
}

fn phase_row(o: &mut String, h: &RunHistory, p: &PhaseRun) {
    let kind = p.kind;
    let agent = match (kind, &p.backend) {
        (PhaseKind::Verify, _) => "loop".to_string(),
        (_, Some(b)) => esc(b),
        (_, None) => esc(&h.agent),
    };
    let outcome_class = match p.outcome {
        Outcome::Pass => "",
        Outcome::ChangesRequired | Outcome::Deferred | Outcome::Running => "",
        _ => "bad",
    };
    let _ = write!(
        o,
        "<tr><td><strong style=\"color:var(--{})\">{}</strong>{}</td><td>{agent}</td><td>{}</td><td class=\"num\">{}</td>\
<td class=\"{outcome_class}\">{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        kind.as_str(),
        esc(&p.label),
        if p.attempt > 1 { format!(" <span class=\"sub\" style=\"display:inline\">attempt {}</span>", p.attempt) } else { String::new() },
        p.started_at.format("%H:%M:%S"),
        secs(p.duration_ms),
        p.outcome.as_str(),
        p.detail.as_deref().map(|d| format!("<div class=\"sub\">{}</div>", esc(&clip(d, 400)))).unwrap_or_default(),
        p.tokens.map(|t| thousands(t.total())).unwrap_or_default(),
        p.cost_usd.map(super::usd).unwrap_or_default(),
        match (&p.commit, &p.diffstat) {
            (Some(c), Some(d)) => format!("<code>{}</code> {}", esc(short(c)), diffstat(d)),
            (Some(c), None) => format!("<code>{}</code>", esc(short(c))),
            _ => String::new(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_the_journal_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(esc("bell\u{7}"), "bell\u{fffd}");
    }

    #[test]
    fn the_demo_run_draws_every_issue_with_no_script_and_nothing_remote() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/journals/demo-golden.loopj")).unwrap();
        let store = crate::journal::parse_export(&bytes, "demo-golden.loopj").unwrap();
        let records = crate::journal::read_all(&store).unwrap();
        let page = html(&super::super::history::history(&records).unwrap());
        for id in ["ORB-1", "ORB-2", "ORB-3", "ORB-4", "ORB-5"] {
            assert!(page.contains(&format!("data-issue=\"{id}\" data-state=")), "{id}");
        }
        assert!(!page.contains("<script"));
        // Nothing fetched: no source, no link, no import (the SVG namespace is only a name).
        assert!(!page.contains("src=") && !page.contains("href=\"http") && !page.contains("@import"));
        assert!(!page.contains("https://"));
        assert_eq!(page.matches("<rect class=\"bar ").count(), 16, "one bar per phase");
    }
}
