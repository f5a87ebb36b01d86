//! Live progress of a run on stderr (and `--json-events` on stdout): what a user watches while
//! `run`, `resume` and `demo` drive. Records are shown through the same functions `replay` uses,
//! so what was seen live is what replay shows later.

use std::io::Write;
use std::time::Instant;

use crate::journal::view::{Applied, RunView};
use crate::journal::Record;

/// Prints each record as it becomes durable: on a terminal, one live line per running issue
/// (phase, fix cycle, elapsed, tokens) under the permanent lines of finished issues, plus a
/// summary line; otherwise plain timestamped lines (logs, CI).
pub struct Progress {
    pub quiet: bool,
    pub json_events: bool,
    pub start: Instant,
    live: Option<Live>,
    /// Colour for stderr (see [`super::style`]).
    style: super::style::Style,
}

struct Live {
    /// Lines drawn last time, to move back over them.
    drawn: usize,
    /// issue → when its current phase started.
    since: std::collections::BTreeMap<String, Instant>,
}

impl Progress {
    pub fn new(quiet: bool, json_events: bool) -> Progress {
        use std::io::IsTerminal;
        let live = (!quiet && std::io::stderr().is_terminal() && std::env::var_os("LOOP_PLAIN_PROGRESS").is_none())
            .then(|| Live { drawn: 0, since: Default::default() });
        Progress { quiet, json_events, start: Instant::now(), live, style: super::style::Style::stderr() }
    }

    fn redraw(&mut self, view: &RunView, permanent: Option<String>) {
        let Some(live) = &mut self.live else { return };
        let style = self.style;
        let mut err = std::io::stderr().lock();
        // Move up over the previous live block and clear it.
        for _ in 0..live.drawn {
            let _ = write!(err, "\x1b[1A\x1b[2K");
        }
        if let Some(line) = permanent {
            let _ = writeln!(err, "{line}");
        }
        let (mut done, mut running, mut waiting, mut blocked) = (0, 0, 0, 0);
        let mut lines = Vec::new();
        for i in &view.issues {
            match &i.state.stage {
                crate::machine::Stage::Done { .. } => done += 1,
                crate::machine::Stage::Capped { .. }
                | crate::machine::Stage::Blocked { .. }
                | crate::machine::Stage::Failed { .. } => blocked += 1,
                crate::machine::Stage::Pending if !live.since.contains_key(&i.id) => waiting += 1,
                s => {
                    running += 1;
                    let since = live.since.get(&i.id).map(|t| t.elapsed().as_secs()).unwrap_or(0);
                    let tokens = if i.tokens > 0 { format!("  {} tokens", i.tokens) } else { String::new() };
                    let shown = super::state_short(s);
                    let state = style.state(&shown, &format!("{shown:<22}"));
                    lines.push(format!("  {:<14} {state} {:>4}s{tokens}", i.id, since));
                }
            }
        }
        let count = |n: usize, tone: super::style::Tone, what: &str| match n {
            0 => format!("{n} {what}"),
            _ => style.paint(tone, &format!("{n} {what}")),
        };
        lines.push(format!(
            "  {} · {} · {} · {}  {}",
            count(done, super::style::Tone::Good, "done"),
            count(running, super::style::Tone::Active, "running"),
            count(waiting, super::style::Tone::Plain, "waiting"),
            count(blocked, super::style::Tone::Bad, "capped/blocked/failed"),
            style.dim(&format!("[{:.0}s]", self.start.elapsed().as_secs_f64()))
        ));
        for l in &lines {
            let _ = writeln!(err, "{l}");
        }
        live.drawn = lines.len();
        let _ = err.flush();
    }
}

// The engine's `Observer` is implemented in `cli::run` (render does not depend on the engine).
impl Progress {
    /// Shows a record that has just become durable.
    pub fn record(&mut self, rec: &Record, applied: &Applied, view: &RunView) {
        self.record_made(rec, applied, view, std::time::Duration::ZERO);
    }

    /// Shows a record made `ago` before now (`watch` catching up with a run it attached to
    /// late): its elapsed time and its issue's phase clock start when it was made.
    pub fn record_made(&mut self, rec: &Record, applied: &Applied, view: &RunView, ago: std::time::Duration) {
        let ago = ago.min(self.start.elapsed());
        if self.json_events {
            let line = super::record_json(rec, applied);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if self.quiet {
            return;
        }
        let line = format!(
            "{} {}",
            self.style.dim(&format!("[{:>7.2}s]", (self.start.elapsed() - ago).as_secs_f64())),
            self.style.timeline(&super::timeline_line(rec, applied))
        );
        let Some(live) = &mut self.live else {
            crate::eoutln!("{line}");
            return;
        };
        // Live mode keeps the screen short: state changes and run-level records become
        // permanent lines; bookkeeping (phase attempts, sessions, guard checks) only updates the
        // live block.
        let changed = applied.from != applied.to;
        if let Some(id) = &applied.issue {
            if changed {
                live.since.insert(id.clone(), Instant::now() - ago);
            }
        }
        let permanent = (applied.issue.is_none() || changed).then_some(line);
        self.redraw(view, permanent);
    }

    /// Redraws the live block (elapsed times move on between records).
    pub fn tick(&mut self, view: &RunView) {
        if !self.quiet && self.live.is_some() {
            self.redraw(view, None);
        }
    }
}
