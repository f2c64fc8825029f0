//! The seeded schedule: every random choice of the sim comes from here, so a seed replays
//! a run's choices (thread interleavings aside).

use std::collections::VecDeque;
use std::sync::Mutex;

use wsk_sys::NTSTATUS;

/// Calls the fault schedule can fail on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    WskCaptureProviderNPI,
    WskSocket,
    WskSocketConnect,
    WskControlClient,
    WskControlSocket,
    WskBind,
    WskListen,
    WskAccept,
    WskConnect,
    WskSend,
    WskReceive,
    WskSendTo,
    WskReceiveFrom,
    WskSendMessages,
    WskDisconnect,
    WskGetLocalAddress,
    WskGetRemoteAddress,
    ExAllocatePool2,
    IoAllocateIrp,
    IoAllocateMdl,
    IoAllocateWorkItem,
    PsCreateSystemThread,
    ObReferenceObjectByHandle,
}

struct Schedule {
    state: u64,
    one_shot: VecDeque<(Call, NTSTATUS)>,
}

static SCHEDULE: Mutex<Schedule> = Mutex::new(Schedule {
    state: 1,
    one_shot: VecDeque::new(),
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

/// Makes the listening and datagram sockets bound to `local` no longer functional, as a failing transport
/// would: pending IRPs complete with STATUS_FILE_FORCED_CLOSED (W15), the host socket is
/// closed (connections reset), and each socket gets one NULL indication if its callback is
/// enabled: WskAcceptEvent with a NULL AcceptSocket (W48, once: G4), WskReceiveFromEvent
/// with a NULL list (W60), WskReceiveEvent with a NULL DataIndication (W52, no disconnect
/// event after it: G7). Returns how many sockets it killed.
pub fn kill_socket(local: std::net::SocketAddr) -> usize {
    crate::wsk::socket::kill(local, None)
}

/// The same for the connection socket `local` <-> `remote` (accepted sockets share the
/// listener's local address, so the peer's address picks one).
pub fn kill_connection(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> usize {
    crate::wsk::socket::kill(local, Some(remote))
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
    let cfg = crate::state::config();
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
