//! The seeded schedule: every random choice of the sim comes from here, so a seed replays
//! a run's choices (thread interleavings aside).

use std::collections::VecDeque;
use std::sync::Mutex;

use wsk_sys::NTSTATUS;

use crate::config::Call;

struct Schedule {
    state: u64,
    one_shot: VecDeque<(Call, NTSTATUS)>,
    /// Pool tags whose next ExAllocatePool2 fails (one entry per failure).
    alloc_tags: VecDeque<u32>,
    /// Calls left unfinished from now on ([`leave_unfinished`]), besides
    /// `Config::unfinished_calls`.
    unfinished: Vec<Call>,
    /// WskSendTo / WskSendMessages requests stay pending ([`hold_datagram_sends`]).
    hold_sends: bool,
}

static SCHEDULE: Mutex<Schedule> = Mutex::new(Schedule {
    state: 1,
    one_shot: VecDeque::new(),
    alloc_tags: VecDeque::new(),
    unfinished: Vec::new(),
    hold_sends: false,
});

fn lock() -> std::sync::MutexGuard<'static, Schedule> {
    SCHEDULE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn reset(seed: u64) {
    let mut s = lock();
    s.state = seed ^ 0x9E37_79B9_7F4A_7C15;
    s.one_shot.clear();
    s.alloc_tags.clear();
    s.unfinished.clear();
    s.hold_sends = false;
}

/// splitmix64: small, good enough for schedules, no dependency.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn random() -> u64 {
    next(&mut lock().state)
}

/// True with probability `p`.
pub(crate) fn chance(p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    if p >= 1.0 {
        return true;
    }
    (random() >> 11) as f64 / (1u64 << 53) as f64 <= p
}

/// Uniform in `lo..=hi`.
pub(crate) fn range(lo: usize, hi: usize) -> usize {
    if hi <= lo {
        return lo;
    }
    lo + (random() % ((hi - lo + 1) as u64)) as usize
}

/// Makes the next `count` calls of `call` fail with `status` (deterministic, for tests).
pub fn fail_next(call: Call, status: NTSTATUS, count: usize) {
    let mut s = lock();
    for _ in 0..count {
        s.one_shot.push_back((call, status));
    }
}

/// From now on (until the next load) every call of `calls` made with an IRP breaks W11 as
/// `Config::unfinished_calls` does: a test loads the driver with an honest provider (its
/// services open) and then turns the fault on for the calls it is about. An empty slice turns
/// it off again.
pub fn leave_unfinished(calls: &[Call]) {
    lock().unfinished = calls.to_vec();
}

/// Whether `call`, given `irp`, returns a failure and leaves the IRP alone (W11 broken on
/// purpose): `Config::unfinished_calls` or [`leave_unfinished`].
pub(crate) fn unfinished(call: Call, irp: wsk_sys::PIRP) -> bool {
    !irp.is_null()
        && (lock().unfinished.contains(&call)
            || crate::kernel::state::config()
                .unfinished_calls
                .contains(&call))
}

/// From now on (until the next load, or `false`) every WskSendTo and WskSendMessages stays
/// pending: nothing is sent, the IRP completes only when it is cancelled (IoCancelIrp, W76) or
/// its socket is closed (W70). A provider that holds sends back, for as long as it likes (the
/// docs bound it nowhere). Turned off, held sends go out at their socket's next poll.
pub fn hold_datagram_sends(on: bool) {
    lock().hold_sends = on;
}

/// Whether datagram sends are held ([`hold_datagram_sends`]).
pub(crate) fn datagram_sends_held() -> bool {
    lock().hold_sends
}

/// The next `count` pool allocations (ExAllocatePool2 or ExAllocatePoolWithTag) with pool tag
/// `tag` fail (return NULL), whatever
/// else is allocated meanwhile: to fail one particular block of the code under test.
pub fn fail_next_alloc_tagged(tag: u32, count: usize) {
    let mut s = lock();
    for _ in 0..count {
        s.alloc_tags.push_back(tag);
    }
}

/// Whether a pool allocation with `tag` must fail by [`fail_next_alloc_tagged`].
pub(crate) fn tagged_alloc_failure(tag: u32) -> bool {
    let mut s = lock();
    if let Some(pos) = s.alloc_tags.iter().position(|&t| t == tag) {
        s.alloc_tags.remove(pos);
        true
    } else {
        false
    }
}

/// Whether this call must fail, and with which status: a one-shot injection first, then
/// the configured random failures.
pub(crate) fn injected_failure(call: Call) -> Option<NTSTATUS> {
    {
        let mut s = lock();
        if let Some(pos) = s.one_shot.iter().position(|(c, _)| *c == call) {
            return s.one_shot.remove(pos).map(|(_, st)| st);
        }
    }
    let cfg = crate::kernel::state::config();
    if cfg.fail_calls.contains(&call) && chance(cfg.fail_rate) {
        return Some(cfg.fail_status);
    }
    if matches!(
        call,
        Call::ExAllocatePool2 | Call::IoAllocateIrp | Call::IoAllocateMdl
    ) && chance(cfg.alloc_fail_rate)
    {
        return Some(wsk_sys::STATUS_INSUFFICIENT_RESOURCES);
    }
    None
}
