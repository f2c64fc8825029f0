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

use core::sync::atomic::Ordering;

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

pub(crate) struct Mailbox {
    slot: SpinLock<Slot>,
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
/// PASSIVE_LEVEL, with the control lock held.
pub(crate) fn call(d: &Driver, request: &Request) -> Result<u32, NTSTATUS> {
    let m = &d.mailbox;
    let seq = {
        let mut s = m.slot.lock();
        s.seq = s.seq.wrapping_add(1);
        // Replaces a request the thread never took: plain data (no drop work under the lock).
        s.request = Some(request.clone());
        s.result = None;
        s.seq
    };
    // SAFETY: the event lives in the driver block.
    unsafe { KeSetEvent(m.posted_ptr(), 0, FALSE) };
    let start = time::now();
    let limit = WAIT_MS * d.perf_freq / 1000;
    loop {
        if let Some((done, r)) = m.slot.lock().result {
            if done == seq {
                return r;
            }
        }
        if time::now().saturating_sub(start) >= limit {
            crate::kernel::log::log_err!("control request {seq} timed out in the system thread");
            return Err(STATUS_IO_TIMEOUT);
        }
        if d.hk_stop.load(Ordering::SeqCst) {
            return Err(STATUS_DEVICE_NOT_READY);
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
    let result = if !d.captured || d.stopping.load(Ordering::SeqCst) {
        Err(STATUS_DEVICE_NOT_READY)
    } else {
        match request {
            // SAFETY: captured provider, PASSIVE_LEVEL, the control lock is held by the caller
            // waiting for this result.
            Request::Reconfigure(new) => unsafe { d.reconfigure(&new) }.map(|()| 0),
            // SAFETY: as above.
            Request::LoadStart(job) => unsafe { load::start(d, &job) },
        }
    };
    d.mailbox.slot.lock().result = Some((seq, result));
    // SAFETY: the event lives in the driver block.
    unsafe { KeSetEvent(d.mailbox.answered_ptr(), 0, FALSE) };
}
