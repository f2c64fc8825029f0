//! Ends a blocking receive from another thread, so the single-flow ping-pong can block in
//! `recv` with no timeout of its own.
//!
//! A receive timeout (SO_RCVTIMEO) makes the kernel arm and cancel a timer on every wait; on
//! this project's 2-core VM that was ~0.1–0.15 µs of a ~11 µs loopback round trip, the
//! difference between echoload and `sockperf ping-pong` (which blocks in `recvfrom` with no
//! timeout and ends its run with a SIGALRM). Here a watchdog thread sleeps until the
//! outstanding request's deadline (so it wakes about once per timeout, ~5 times a second by
//! default, not on a fixed tick: sockperf's client has no thread that wakes at all) and,
//! only when a reply is overdue, interrupts the receiving thread with a signal whose handler
//! does nothing (installed without SA_RESTART, so the receive returns EINTR and the caller
//! resends or ends).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::Clock;

/// SIGURG: ignored by default and only ever sent for TCP out-of-band data to a process that
/// asked for it with F_SETOWN (echoload never does), so a no-op handler changes nothing else.
const SIG: libc::c_int = libc::SIGURG;

/// `since` value while no request is outstanding.
pub(crate) const IDLE: u64 = u64::MAX;

extern "C" fn on_signal(_: libc::c_int) {}

/// Installs the no-op handler once; false when the process already handles SIGURG itself
/// (then the caller keeps SO_RCVTIMEO).
fn install() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: `old` and `sa` are plain C structs, valid when zeroed, and live across the
        // calls; the handler is an `extern "C"` function that touches nothing
        // (async-signal-safe).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(SIG, std::ptr::null(), &raw mut old) != 0
                || (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN)
            {
                return false;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = 0;
            libc::sigemptyset(&raw mut sa.sa_mask);
            libc::sigaction(SIG, &raw const sa, std::ptr::null_mut()) == 0
        }
    })
}

/// Runs `body` on this thread with a watchdog: `body` stores the clock time (ns) at which it
/// sent its outstanding request in the `AtomicU64` it gets (or [`IDLE`]); once that is
/// `timeout` old, this thread gets a signal (repeated every tick while it stays overdue), so a
/// blocking receive returns `Interrupted`. `None` (and `body` not run) when the handler
/// cannot be installed.
/// A pthread_t the watchdog may hold: an integer on glibc, a pointer on musl.
#[derive(Clone, Copy)]
struct ThreadId(libc::pthread_t);

impl ThreadId {
    fn get(self) -> libc::pthread_t {
        self.0
    }
}

// SAFETY: a pthread_t is an opaque handle; the watchdog only passes it to pthread_kill while
// the thread it names is alive (see `guarded`).
unsafe impl Sync for ThreadId {}
// SAFETY: as above.
unsafe impl Send for ThreadId {}

/// Runs `body` on this thread with a watchdog: `body` stores the clock time (ns) at which it
/// sent its outstanding request in the `AtomicU64` it gets (or [`IDLE`]); once that is
/// `timeout` old, this thread gets a signal (repeated every `timeout / 4` while it stays
/// overdue), so a blocking receive returns `Interrupted`. `None` (and `body` not run) when the
/// handler cannot be installed.
pub(crate) fn guarded<R>(
    clock: &Clock,
    timeout: Duration,
    body: impl FnOnce(&AtomicU64) -> R,
) -> Option<R> {
    watched(clock, timeout, body).map(|(r, _wakes)| r)
}

/// How long the watchdog sleeps, at `now`, with the outstanding request sent at `since`
/// ([`IDLE`]: none): until that request's deadline, or a whole timeout when none is out, so
/// a steady ping-pong wakes it about once per timeout (not once per round trip, nor on a
/// fixed tick). `None`: the request is overdue now.
fn sleep_for(since: u64, now: u64, timeout_ns: u64) -> Option<u64> {
    if since == IDLE {
        return Some(timeout_ns);
    }
    let due = since.saturating_add(timeout_ns);
    (now < due).then(|| due - now)
}

/// [`guarded`], also returning how many times the watchdog woke (for the tests).
fn watched<R>(
    clock: &Clock,
    timeout: Duration,
    body: impl FnOnce(&AtomicU64) -> R,
) -> Option<(R, u64)> {
    if !install() {
        return None;
    }
    // SAFETY: pthread_self has no preconditions.
    let me = ThreadId(unsafe { libc::pthread_self() });
    let timeout_ns = timeout.as_nanos() as u64;
    // Once a request is overdue the signal is repeated at this pace: it may have landed just
    // before the thread entered its receive.
    let retry = (timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(50));
    let since = AtomicU64::new(IDLE);
    let done = AtomicBool::new(false);
    Some(std::thread::scope(|s| {
        let dog = s.spawn(|| {
            let mut wakes = 0u64;
            let mut wait = timeout;
            while !done.load(Ordering::Acquire) {
                std::thread::park_timeout(wait);
                if done.load(Ordering::Acquire) {
                    break;
                }
                wakes += 1;
                let t = since.load(Ordering::Relaxed);
                if let Some(ns) = sleep_for(t, clock.now_ns(), timeout_ns) {
                    wait = Duration::from_nanos(ns);
                } else {
                    wait = retry;
                    // SAFETY: `me` is the thread running `body`; it outlives this scope,
                    // which joins this watchdog before returning. A signal arriving after
                    // `body` returned only runs the no-op handler.
                    unsafe {
                        libc::pthread_kill(me.get(), SIG);
                    }
                }
            }
            wakes
        });
        let r = body(&since);
        done.store(true, Ordering::Release);
        dog.thread().unpark();
        let wakes = dog.join().unwrap_or(0);
        (r, wakes)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Instant;

    #[test]
    fn overdue_blocking_receive_is_interrupted() {
        let clock = Clock::new(Instant::now(), 0, u64::MAX);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let begun = Instant::now();
        let r = guarded(&clock, Duration::from_millis(20), |since| {
            since.store(clock.now_ns(), Ordering::Relaxed);
            let mut buf = [0u8; 8];
            // Nothing is ever sent to this socket: only the watchdog can end this receive.
            sock.recv(&mut buf).map_err(|e| e.kind())
        })
        .expect("handler installed");
        assert_eq!(r, Err(std::io::ErrorKind::Interrupted));
        let took = begun.elapsed();
        assert!(took >= Duration::from_millis(20), "woken early: {took:?}");
        assert!(took < Duration::from_secs(2), "woken late: {took:?}");
    }

    #[test]
    fn sleeps_until_the_outstanding_deadline() {
        assert_eq!(sleep_for(IDLE, 5, 100), Some(100));
        assert_eq!(sleep_for(10, 30, 100), Some(80));
        assert_eq!(sleep_for(10, 110, 100), None);
        assert_eq!(sleep_for(10, 500, 100), None);
    }

    /// A steady ping-pong (a new request every millisecond, each answered at once) wakes
    /// the watchdog about once per timeout. It used to wake on a fixed tick of timeout / 4:
    /// 4 wakes per timeout, on the cores the round trips run on.
    #[test]
    fn steady_rounds_wake_the_watchdog_once_per_timeout() {
        let clock = Clock::new(Instant::now(), 0, u64::MAX);
        let timeout = Duration::from_millis(40);
        let begun = Instant::now();
        let ((), wakes) = watched(&clock, timeout, |since| {
            // Bounded in count (and so in time): 400 rounds of about 1 ms.
            for _ in 0..400 {
                since.store(clock.now_ns(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
                since.store(IDLE, Ordering::Relaxed);
            }
        })
        .expect("handler installed");
        let periods = begun.elapsed().as_nanos() / timeout.as_nanos();
        // Once per timeout, with room for sleeps that overshoot; a tick of timeout / 4 gives
        // about 4 per period.
        let bound = 2 * periods as u64 + 2;
        assert!(
            wakes <= bound,
            "{wakes} watchdog wakes over {periods} timeouts (bound {bound})"
        );
    }

    #[test]
    fn idle_body_is_not_interrupted() {
        let clock = Clock::new(Instant::now(), 0, u64::MAX);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let r = guarded(&clock, Duration::from_millis(2), |_since| {
            // IDLE: nothing outstanding, so the watchdog's ticks (1 ms) pass without a signal
            // and only the socket's own timeout ends the receive.
            let mut buf = [0u8; 8];
            sock.recv(&mut buf).map_err(|e| e.kind())
        })
        .expect("handler installed");
        assert!(
            matches!(
                r,
                Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            ),
            "{r:?}"
        );
    }
}
