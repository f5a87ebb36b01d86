//! Colour for people, never for programs: the one place that decides whether a stream gets ANSI
//! colour and what each kind of text looks like (states, headers, secondary text, warnings).
//!
//! Invariants:
//! - Whether a stream is coloured is decided per stream ([`Stream::Stdout`], [`Stream::Stderr`]):
//!   `--color always` colours, `--color never` does not; `auto` (the default) colours only a
//!   terminal, and not when `NO_COLOR` is set to anything non-empty or `TERM=dumb`
//!   (<https://no-color.org>: an explicit `--color always` wins over `NO_COLOR`).
//! - A [`Style`] that is off returns its text unchanged, byte for byte; JSON output never goes
//!   through a style.
//! - Only whole, already escaped strings are painted: text from docs or agents is escaped first
//!   (see [`crate::text`]), so the only escape sequences in output are the ones added here.
//!
//! Commands take `Style::stdout()` or `Style::stderr()` for the stream they write and hand it to
//! the renderers; [`tone`] says how a state name is coloured, for any table that shows states.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU8, Ordering};

/// `--color`: when output is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` or `TERM=dumb` says otherwise.
    #[default]
    Auto,
    Always,
    Never,
}

/// The process's choice, set once from the command line before any output.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Records `--color` for every later [`Style::stdout`] and [`Style::stderr`].
pub fn set_choice(c: ColorChoice) {
    CHOICE.store(
        match c {
            ColorChoice::Auto => 0,
            ColorChoice::Always => 1,
            ColorChoice::Never => 2,
        },
        Ordering::Relaxed,
    );
}

/// The choice [`set_choice`] recorded (`Auto` when none was).
pub fn choice() -> ColorChoice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => ColorChoice::Always,
        2 => ColorChoice::Never,
        _ => ColorChoice::Auto,
    }
}

/// The two streams loop writes to people; each is judged on its own (`loop run 2>log` keeps a
/// coloured stdout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Whether to colour: the rule in the module docs, from its inputs alone (no process state), so
/// it is tested directly.
pub fn decide(choice: ColorChoice, is_terminal: bool, no_color: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && no_color.is_none_or(OsStr::is_empty) && term.is_none_or(|t| t != OsStr::new("dumb"))
        }
    }
}

/// How a kind of text looks. `Plain` is never painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Done, passed, ok: green.
    Good,
    /// Capped, stopped, a warning: yellow.
    Warn,
    /// Failed, Blocked, refused, an error: red.
    Bad,
    /// Running (Dev, Review, Fix, Verify…): cyan.
    Active,
    /// Secondary text (paths, timestamps, Pending): dim.
    Dim,
    /// Headers and names: bold.
    Strong,
    Plain,
}

impl Tone {
    /// The SGR parameters of this tone, or None for plain text.
    fn sgr(self) -> Option<&'static str> {
        match self {
            Tone::Good => Some("32"),
            Tone::Warn => Some("33"),
            Tone::Bad => Some("31"),
            Tone::Active => Some("36"),
            Tone::Dim => Some("2"),
            Tone::Strong => Some("1"),
            Tone::Plain => None,
        }
    }
}

/// The tone of an issue state (`Done`, `Capped`, `Fix`, …, as [`crate::machine::Stage::name`]
/// gives it, or shown with details such as `Fix(2)`) or of a run state (`finished`, `running`,
/// `stopped`, `unreadable`, `empty`).
pub fn tone(state: &str) -> Tone {
    let name = state.split(['(', ' ']).next().unwrap_or(state);
    match name {
        "Done" | "finished" | "ok" => Tone::Good,
        "Capped" | "stopped" | "empty" | "interrupted" => Tone::Warn,
        "Failed" | "Blocked" | "unreadable" | "FAILED" => Tone::Bad,
        "Pending" => Tone::Dim,
        "WorktreeReady" | "Dev" | "Review" | "Fix" | "Verify" | "running" | "starting" => Tone::Active,
        _ => Tone::Plain,
    }
}

/// Paints text for one stream, or (when off) passes it through unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Never colours: for JSON, files and tests.
    pub const PLAIN: Style = Style { on: false };

    /// Colours when `on`.
    pub fn new(on: bool) -> Style {
        Style { on }
    }

    /// For what is written to stdout, by [`choice`] and the environment.
    pub fn stdout() -> Style {
        Style::for_stream(Stream::Stdout)
    }

    /// For what is written to stderr (progress, warnings, the end of a run).
    pub fn stderr() -> Style {
        Style::for_stream(Stream::Stderr)
    }

    pub fn for_stream(stream: Stream) -> Style {
        use std::io::IsTerminal;
        let is_terminal = match stream {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        };
        let (no_color, term) = (std::env::var_os("NO_COLOR"), std::env::var_os("TERM"));
        Style::new(decide(choice(), is_terminal, no_color.as_deref(), term.as_deref()))
    }

    /// Whether this style adds colour.
    pub fn is_on(self) -> bool {
        self.on
    }

    /// `text` in `tone`; unchanged when off, plain or empty.
    pub fn paint(self, tone: Tone, text: &str) -> String {
        match tone.sgr() {
            Some(sgr) if self.on && !text.is_empty() => format!("\x1b[{sgr}m{text}\x1b[0m"),
            _ => text.to_string(),
        }
    }

    /// `text` (a state, possibly padded) in its state's tone; see [`tone`].
    pub fn state(self, name: &str, text: &str) -> String {
        self.paint(tone(name), text)
    }

    pub fn bold(self, text: &str) -> String {
        self.paint(Tone::Strong, text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint(Tone::Dim, text)
    }

    pub fn good(self, text: &str) -> String {
        self.paint(Tone::Good, text)
    }

    pub fn warn(self, text: &str) -> String {
        self.paint(Tone::Warn, text)
    }

    pub fn bad(self, text: &str) -> String {
        self.paint(Tone::Bad, text)
    }

    /// Counts such as `3 Done, 1 Capped` with each state in its tone.
    pub fn counts(self, counts: &[(&str, usize)]) -> String {
        counts.iter().map(|(k, c)| self.state(k, &format!("{c} {k}"))).collect::<Vec<_>>().join(", ")
    }

    /// A timeline line (see [`super::timeline_line`]): its state change `A → B`, when it ends in
    /// one, in the new state's tone; its `#seq time` head dim.
    pub fn timeline(self, line: &str) -> String {
        if !self.on {
            return line.to_string();
        }
        // The head is `#seq` and the time, whatever padding is between them.
        let head_end = line.strip_prefix('#').map(|after| {
            let time = after.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
            let time_len = time.find(' ').unwrap_or(time.len());
            line.len() - time.len() + time_len
        });
        let (head, rest) = line.split_at(head_end.unwrap_or(0));
        let rest = match rest.rfind(" → ") {
            Some(at) => {
                let to = &rest[at + " → ".len()..];
                format!("{}{}{}", &rest[..at], self.dim(" → "), self.state(to, to))
            }
            None => rest.to_string(),
        };
        format!("{}{rest}", self.dim(head))
    }

    /// `loop plan`'s text with its headings bold and each issue's base dim. The plan's own
    /// layout (see [`crate::plan::Plan::to_text`]) is kept; only whole lines are painted.
    pub fn plan(self, text: &str) -> String {
        if !self.on {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 64);
        for line in text.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            let painted = if body.starts_with("Milestone ") || (!body.starts_with(' ') && body.ends_with(':')) {
                self.bold(body)
            } else if body.trim_start().starts_with("base ") {
                self.dim(body)
            } else {
                body.to_string()
            };
            out.push_str(&painted);
            out.push_str(&line[body.len()..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn auto_colours_only_a_terminal_without_no_color_or_a_dumb_term() {
        use ColorChoice::*;
        assert!(decide(Auto, true, None, os("xterm-256color")));
        assert!(decide(Auto, true, None, None));
        assert!(!decide(Auto, false, None, os("xterm")), "piped");
        assert!(!decide(Auto, true, os("1"), os("xterm")), "NO_COLOR=1");
        assert!(decide(Auto, true, os(""), os("xterm")), "an empty NO_COLOR is unset");
        assert!(!decide(Auto, true, None, os("dumb")));
        assert!(decide(Always, false, os("1"), os("dumb")), "--color always wins");
        assert!(!decide(Never, true, None, os("xterm")));
    }

    #[test]
    fn an_off_style_changes_nothing() {
        let s = Style::PLAIN;
        for t in [Tone::Good, Tone::Warn, Tone::Bad, Tone::Active, Tone::Dim, Tone::Strong] {
            assert_eq!(s.paint(t, "x"), "x");
        }
        let line = "#7    12:00:03 ORB-1        review_finished pass  Review → Done";
        assert_eq!(s.timeline(line), line);
        assert_eq!(s.plan("Milestone M\n  base x\n"), "Milestone M\n  base x\n");
        assert_eq!(s.counts(&[("Done", 2)]), "2 Done");
    }

    #[test]
    fn states_take_their_tones() {
        let s = Style::new(true);
        assert_eq!(s.state("Done", "Done  "), "\x1b[32mDone  \x1b[0m");
        assert_eq!(s.state("Capped", "Capped"), "\x1b[33mCapped\x1b[0m");
        assert_eq!(tone("Failed"), Tone::Bad);
        assert_eq!(tone("Blocked"), Tone::Bad);
        assert_eq!(tone("Fix(2)"), Tone::Active);
        assert_eq!(tone("Review(after 1 fix)"), Tone::Active);
        assert_eq!(tone("Pending"), Tone::Dim);
        assert_eq!(s.paint(Tone::Plain, "x"), "x");
        assert_eq!(s.bold(""), "", "nothing to paint");
        assert_eq!(s.counts(&[("Done", 2), ("Capped", 1)]), "\x1b[32m2 Done\x1b[0m, \x1b[33m1 Capped\x1b[0m");
    }

    #[test]
    fn a_timeline_line_keeps_its_text_and_colours_its_new_state() {
        let s = Style::new(true);
        let line = "#7    12:00:03 ORB-1        review_finished pass  Review → Done";
        let painted = s.timeline(line);
        assert!(painted.ends_with("\x1b[2m → \x1b[0m\x1b[32mDone\x1b[0m"), "{painted:?}");
        assert!(painted.starts_with("\x1b[2m#7    12:00:03\x1b[0m ORB-1"), "{painted:?}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut it = s.split('\x1b');
            out.push_str(it.next().unwrap());
            for part in it {
                out.push_str(&part[part.find('m').unwrap() + 1..]);
            }
            out
        };
        assert_eq!(strip(&painted), line);
        assert_eq!(strip(&s.timeline("#1    12:00:00 run r started")), "#1    12:00:00 run r started");
        assert!(s.timeline("#79   12:00:00 run finished").starts_with("\x1b[2m#79   12:00:00\x1b[0m run"));
        assert_eq!(s.timeline("no head → Done"), "no head\x1b[2m → \x1b[0m\x1b[32mDone\x1b[0m");
    }
}
