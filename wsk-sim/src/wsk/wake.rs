//! Waking the provider threads: one eventfd per thread; a socket belongs to the thread its
//! owner index picks.

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
