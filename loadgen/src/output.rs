//! Writing results to stdout without ever panicking: when stdout is closed (`echoload run ... |
//! head -1`, `| true`) further output is dropped and the program ends normally (`println!`
//! would panic with "failed printing to stdout").

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `s` to stdout and flushes; errors (a closed pipe) silence all later output.
pub fn print(s: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out
        .write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// [`print`] with a newline.
pub fn println(s: &str) {
    print(&format!("{s}\n"));
}

/// Whether stdout was found closed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}
