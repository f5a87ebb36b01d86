//! Output to stdout and stderr that survives its reader going away (`loop … | head`).
//!
//! Rust ignores SIGPIPE, so writing to a closed pipe fails with EPIPE, and `println!` turns that
//! into a panic (exit 101). Two rules, chosen so that a closed pipe never costs a journal write:
//! - Commands that write no state (`plan`, `replay`, `status`, `runs`, `export`) get SIGPIPE's
//!   default back ([`die_on_closed_pipe`]) and end like `cat` does: quietly, by the signal,
//!   with nothing half-done, because they journal nothing.
//! - Commands that drive or change a run (`run`, `resume`, `demo`, `clean`, …) keep ignoring
//!   SIGPIPE and print through the macros below, which drop output to a closed stream. A run is
//!   not killed between a decision and its record; it goes on to its end or its Ctrl-C and
//!   journals that, since the journal, not the terminal, is the record.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout and flushes it; once a write failed, drops everything after it.
pub fn stdout(text: &str) {
    if write_to(&mut std::io::stdout().lock(), text, &STDOUT_GONE) {
        return;
    }
    // A closed pipe is the reader's choice; any other failure (a full disk under `> file`)
    // loses output the user asked for, so it is said once.
    stderr("loop: cannot write to stdout any more; further output is dropped\n");
}

/// Writes `text` to stderr; once a write failed, drops everything after it.
pub fn stderr(text: &str) {
    let _ = write_to(&mut std::io::stderr().lock(), text, &STDERR_GONE);
}

/// False when this write failed for a reason other than a closed pipe.
fn write_to(w: &mut dyn Write, text: &str, gone: &AtomicBool) -> bool {
    if gone.load(Ordering::Relaxed) {
        return true;
    }
    match w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        Ok(()) => true,
        Err(e) => {
            gone.store(true, Ordering::Relaxed);
            e.kind() == std::io::ErrorKind::BrokenPipe
        }
    }
}

/// For commands that write no state: a closed stdout ends the process quietly, as it does `cat`.
pub fn die_on_closed_pipe() {
    // SAFETY: restores the default disposition of one signal; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `print!` that never panics; see the module docs.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::stdout(&format!($($t)*)) };
}

/// `println!` that never panics; see the module docs.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::out::stdout(&format!("{}\n", format_args!($($t)*))) };
}

/// `eprint!` that never panics; see the module docs.
#[macro_export]
macro_rules! eout {
    ($($t:tt)*) => { $crate::out::stderr(&format!($($t)*)) };
}

/// `eprintln!` that never panics; see the module docs.
#[macro_export]
macro_rules! eoutln {
    ($($t:tt)*) => { $crate::out::stderr(&format!("{}\n", format_args!($($t)*))) };
}
