//! Work the control path hands to the driver's system thread.
//!
//! An IOCTL runs in the calling process's context, and WskSocket / WskSocketConnect with
//! OwningProcess NULL give the new socket to the current process (W26: NULL means the current
//! process): a service added at run time, or a load job's sockets, would belong to
//! echoload.exe (its security context and lifetime), not to the System process like the
//! sockets made at start-up. So the control path does not create sockets itself: it posts the
//! request here and the start-up thread (a system thread, in the System process, the driver's
//! housekeeper) carries it out between two housekeeping ticks and posts the result back.
//!
//! One request at a time: the control path is serialised (`Driver::control_busy`). The wait is
//! bounded (C38: waits reached from user requests are bounded); a request given up on is still
//! carried out (it is owned by the mailbox, not by the waiting thread), and its result, tagged
//! with its sequence number, is never taken for a later one.
//!
//! The control lock stays held for as long as the system thread works on a request: a caller that gives up hands the lock over to the system thread, which releases
//! it when the request is done. So unload, which takes the control lock for good before it
//! closes anything, never runs beside a reconfiguration, nor does any other control request.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use control::config::Config;
use control::ioctl::LoadJob;
use wsk_sys::{
    Executive, KeInitializeEvent, KeSetEvent, KeWaitForSingleObject, KernelMode,
    SynchronizationEvent, FALSE, KEVENT, LARGE_INTEGER, NTSTATUS, STATUS_DEVICE_NOT_READY,
};

use crate::driver::Driver;
use crate::kernel::lock::SpinLock;
use crate::kernel::time;
use crate::load;

/// What the system thread does for the control path. Held in the mailbox (driver block,
/// non-paged), never on a stack: the size difference of the variants costs nothing.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Request {
    Reconfigure(Config),
    LoadStart(LoadJob),
}

struct Slot {
    seq: u32,
    request: Option<Request>,
    result: Option<(u32, Result<u32, NTSTATUS>)>,
}

/// Whose the request in the mailbox is (`Mailbox::state`).
const IDLE: u32 = 0;
/// Posted or being carried out, its caller waiting (the caller holds the control lock).
const WORKING: u32 = 1;
/// Its caller gave up: the control lock is the system thread's, released when it is done.
const ABANDONED: u32 = 2;

/// What [`call`] returns besides the result: whether the control lock went to the system
/// thread with an abandoned request (then the caller must not release it).
pub(crate) struct Answer {
    pub(crate) result: Result<u32, NTSTATUS>,
    pub(crate) lock_handed_over: bool,
}

pub(crate) struct Mailbox {
    slot: SpinLock<Slot>,
    /// IDLE, WORKING or ABANDONED: the hand-over of the control lock.
    state: AtomicU32,
    /// How long the control path waits (WAIT_MS; host tests shorten it).
    wait_ms: AtomicU64,
    /// Wakes the system thread at once (it also wakes every housekeeping tick).
    posted: KEVENT,
    /// Wakes the control path when a result is posted.
    answered: KEVENT,
}

/// How long the control path waits for the system thread (its own work is bounded by the
/// disconnect timeouts it applies).
const WAIT_MS: u64 = 60_000;
/// STATUS_IO_TIMEOUT: the request was given up on.
const STATUS_IO_TIMEOUT: NTSTATUS = 0xC000_00B5_u32 as NTSTATUS;

impl Mailbox {
    /// Initialises the events in place. PASSIVE_LEVEL (Driver::create).
    ///
    /// # Safety
    /// `m` points to the mailbox at its final address.
    pub(crate) unsafe fn init(m: *mut Mailbox) {
        // SAFETY: per the caller; the events stay in the driver block for its lifetime.
        unsafe {
            core::ptr::write(core::ptr::addr_of_mut!((*m).state), AtomicU32::new(IDLE));
            core::ptr::write(
                core::ptr::addr_of_mut!((*m).wait_ms),
                AtomicU64::new(WAIT_MS),
            );
            core::ptr::write(
                core::ptr::addr_of_mut!((*m).slot),
                SpinLock::new(Slot {
                    seq: 0,
                    request: None,
                    result: None,
                }),
            );
            KeInitializeEvent(
                core::ptr::addr_of_mut!((*m).posted),
                SynchronizationEvent,
                FALSE,
            );
            KeInitializeEvent(
                core::ptr::addr_of_mut!((*m).answered),
                SynchronizationEvent,
                FALSE,
            );
        }
    }

    /// Sets how long the control path waits for the system thread (host tests).
    pub(crate) fn set_wait_ms(&self, ms: u64) {
        self.wait_ms.store(ms, Ordering::SeqCst);
    }

    fn posted_ptr(&self) -> *mut KEVENT {
        core::ptr::addr_of!(self.posted).cast_mut()
    }

    fn answered_ptr(&self) -> *mut KEVENT {
        core::ptr::addr_of!(self.answered).cast_mut()
    }

    /// The system thread's wait between housekeeping ticks: returns after `ms` or as soon as a
    /// request is posted. PASSIVE_LEVEL (start-up thread).
    pub(crate) fn wait_posted(&self, ms: u64) {
        let mut t = LARGE_INTEGER {
            QuadPart: -((ms as i64) * 10_000),
        };
        // SAFETY: PASSIVE_LEVEL; the event lives in the driver block.
        unsafe {
            KeWaitForSingleObject(
                self.posted_ptr().cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut t,
            );
        }
    }
}

/// Control path: hands `request` to the system thread and waits (bounded) for its result.
/// PASSIVE_LEVEL, with the control lock held. If the wait runs out the request is abandoned
/// to the system thread together with the control lock (`lock_handed_over`).
pub(crate) fn call(d: &Driver, request: &Request) -> Answer {
    let m = &d.mailbox;
    let answer = |result| Answer {
        result,
        lock_handed_over: false,
    };
    let seq = {
        let mut s = m.slot.lock();
        s.seq = s.seq.wrapping_add(1);
        // Replaces a request the thread never took: plain data (no drop work under the lock).
        s.request = Some(request.clone());
        s.result = None;
        // Under the slot lock: the system thread takes the request under it too.
        m.state.store(WORKING, Ordering::SeqCst);
        s.seq
    };
    // SAFETY: the event lives in the driver block.
    unsafe { KeSetEvent(m.posted_ptr(), 0, FALSE) };
    let start = time::now();
    let limit = m.wait_ms.load(Ordering::SeqCst) * d.dp.perf_freq / 1000;
    loop {
        if let Some((done, r)) = m.slot.lock().result {
            if done == seq {
                return answer(r);
            }
        }
        if time::now().saturating_sub(start) >= limit
            && m.state
                .compare_exchange(WORKING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // (The exchange fails only if the thread has just finished: its result is being
            // posted, the next turn takes it.)
            crate::kernel::log::log_err!(
                "control request {seq} timed out; the system thread finishes it holding the control lock"
            );
            return Answer {
                result: Err(STATUS_IO_TIMEOUT),
                lock_handed_over: true,
            };
        }
        if d.hk_stop.load(Ordering::SeqCst) {
            // The housekeeper has ended: nobody will take the request.
            m.state.store(IDLE, Ordering::SeqCst);
            return answer(Err(STATUS_DEVICE_NOT_READY));
        }
        let mut t = LARGE_INTEGER {
            QuadPart: -100 * 10_000,
        };
        // SAFETY: PASSIVE_LEVEL; the event lives in the driver block.
        unsafe {
            KeWaitForSingleObject(
                m.answered_ptr().cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut t,
            );
        }
    }
}

/// System thread: carries out a posted request, if any, and posts its result. PASSIVE_LEVEL
/// (start-up thread, in the System process).
pub(crate) fn run_posted(d: &mut Driver) {
    let posted = {
        let mut s = d.mailbox.slot.lock();
        s.request.take().map(|r| (s.seq, r))
    };
    let Some((seq, request)) = posted else {
        return;
    };
    let result = if !d.captured || d.dp.stopping.load(Ordering::SeqCst) {
        Err(STATUS_DEVICE_NOT_READY)
    } else {
        match request {
            // SAFETY: captured provider, PASSIVE_LEVEL, the control lock is held by the caller
            // waiting for this result.
            Request::Reconfigure(new) => unsafe { d.reconfigure(&new) }.map(|()| 0),
            // SAFETY: as above.
            Request::LoadStart(job) => unsafe { load::start(&d.dp, &job) },
        }
    };
    // Done: the request leaves the mailbox before its result is posted, so a caller that
    // sees WORKING when its wait runs out can still hand the lock over safely.
    let prev = d.mailbox.state.swap(IDLE, Ordering::SeqCst);
    d.mailbox.slot.lock().result = Some((seq, result));
    // SAFETY: the event lives in the driver block.
    unsafe { KeSetEvent(d.mailbox.answered_ptr(), 0, FALSE) };
    if prev == ABANDONED {
        // Its caller gave up and left the control lock to this thread (see `call`).
        d.control_busy.store(false, Ordering::SeqCst);
    }
}
