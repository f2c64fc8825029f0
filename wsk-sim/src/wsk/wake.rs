//! Waking the provider threads: one eventfd per thread; a socket belongs to the thread its
//! owner index picks. Or, for a call that makes a socket's events due again, serving the
//! socket right on the calling thread.

use std::sync::OnceLock;

/// Provider threads.
pub(crate) const THREADS: usize = 2;

static WAKE_FDS: OnceLock<Vec<i32>> = OnceLock::new();

/// Creates the eventfds and starts `spawn(index, fd)` for each thread, once per process.
pub(crate) fn start_once(spawn: impl Fn(usize, i32)) {
    WAKE_FDS.get_or_init(|| {
        let mut v = Vec::new();
        for i in 0..THREADS {
            // SAFETY: plain eventfd creation.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            assert!(fd >= 0, "eventfd failed");
            v.push(fd);
            spawn(i, fd);
        }
        v
    });
}

/// Wakes the provider thread that owns sockets with this owner index.
pub(crate) fn wake(owner: usize) {
    if let Some(fds) = WAKE_FDS.get() {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(fds[owner % THREADS], (&raw const one).cast(), 8) };
    }
}

/// The provider threads' pass over one socket, installed when they start.
static SERVICE: OnceLock<fn(usize)> = OnceLock::new();

/// Installs the per-socket pass (once per process).
pub(crate) fn set_service(service: fn(usize)) {
    let _ = SERVICE.set(service);
}

/// A call made socket `ws`'s events due again (a zero-length WskReceive, a WskRelease):
/// with `Config::inline_callback_rate` the socket is served on the calling thread, inside
/// the call, so its callbacks may run before the call returns, as Windows may run them;
/// otherwise its provider thread is woken.
pub(crate) fn resume(owner: usize, ws: usize) {
    let rate = crate::kernel::state::config().inline_callback_rate;
    if rate > 0.0 && crate::kernel::schedule::chance(rate) {
        if let Some(service) = SERVICE.get() {
            service(ws);
            return;
        }
    }
    wake(owner);
}

/// Serves socket `ws` on the calling thread now (plans and runs what is due: completions,
/// one callback at a time), as a provider thread would.
pub(crate) fn serve_now(ws: usize) {
    if let Some(service) = SERVICE.get() {
        service(ws);
    }
}
