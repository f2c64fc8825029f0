//! Unkind races armed for the duration of one client callback (`accept-race`,
//! `disconnect-race`): at the callback's first kernel call where the race can start (its
//! `check` says so), another thread carries out the racing event while the callback's own
//! thread waits, bounded, for it, as if the other processor had been faster. The callback
//! is provably still running then (it is inside a kernel call).

use std::cell::RefCell;
use std::sync::mpsc;
use std::time::Duration;

/// What starts the race: run on the callback's thread at each of its kernel calls until it
/// returns `Some(work)`; `work` then runs on another thread.
pub(crate) type Check = Box<dyn FnMut() -> Option<Box<dyn FnOnce() + Send>>>;

struct Armed {
    check: Check,
    wait: Duration,
}

thread_local! {
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
}

/// Arms a race for the callback about to run on this thread.
pub(crate) fn arm(check: Check, wait: Duration) {
    ARMED.with(|a| *a.borrow_mut() = Some(Armed { check, wait }));
}

/// The callback returned: the race is off. Returns its check if it never fired (the
/// caller decides whether the event must still be delivered).
pub(crate) fn disarm() -> Option<Check> {
    ARMED.with(|a| a.borrow_mut().take()).map(|a| a.check)
}

/// Runs `work` on a new sim thread and waits up to `wait` for it to finish (it may block
/// on a lock this thread holds: then this thread goes on and the work finishes later).
pub(crate) fn run_elsewhere(work: Box<dyn FnOnce() + Send>, wait: Duration) {
    let (tx, rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("wsk-sim-race".into())
        .spawn(move || {
            crate::kernel::state::sim_thread_main(move || {
                work();
                let _ = tx.send(());
            });
        });
    if spawned.is_ok() {
        let _ = rx.recv_timeout(wait);
    }
}

/// The kernel's per-call hook (installed at init): fires this thread's armed race once its
/// check says it can start.
pub(crate) fn on_kernel_call(_call: &str) {
    // Take the race out while it runs: the work's own kernel calls (on this thread, none;
    // but the check may call into the kernel) must not fire it again.
    let Some(mut armed) = ARMED.with(|a| a.borrow_mut().take()) else {
        return;
    };
    match (armed.check)() {
        Some(work) => run_elsewhere(work, armed.wait),
        None => ARMED.with(|a| *a.borrow_mut() = Some(armed)),
    }
}
