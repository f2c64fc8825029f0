//! KTIMER + KDPC: timers fire their DPC at DISPATCH_LEVEL on the sim's timer thread.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use wsk_sys::{
    BOOLEAN, DISPATCH_LEVEL, KDPC, LARGE_INTEGER, LONG, PKDEFERRED_ROUTINE, PKDPC, PKTIMER, PVOID,
    TIMER_TYPE,
};

struct Armed {
    due: Instant,
    period: Option<Duration>,
    dpc: usize,
    generation: u64,
    /// A DPC queued with KeInsertQueueDpc (keyed by the DPC; no timer object to signal).
    dpc_only: bool,
}

#[derive(Default)]
struct Timers {
    armed: HashMap<usize, Armed>,
    generation: u64,
    /// Timers firing right now (their DPC is running).
    running: usize,
}

static TIMERS: Mutex<Option<Timers>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Option<Timers>> {
    TIMERS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ensure_thread() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("wsk-sim-timer".into())
            .spawn(|| crate::kernel::state::sim_thread_main(timer_thread))
            .expect("spawn timer thread");
    });
}

pub(crate) fn armed_count() -> usize {
    lock().as_ref().map_or(0, |t| t.armed.len())
}

/// Pool memory is being freed: a timer still set inside it would fire into freed memory
/// (Driver Verifier: TIMER_OR_DPC_INVALID). Report it and disarm it.
pub(crate) fn check_freed_range(start: usize, size: usize, call: &str) {
    let hits: Vec<usize> = {
        let mut g = lock();
        let Some(t) = g.as_mut() else { return };
        let hits: Vec<usize> = t
            .armed
            .iter()
            .filter(|(k, a)| {
                let timer = **k & !1;
                (start..start + size).contains(&timer) || (start..start + size).contains(&a.dpc)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in &hits {
            t.armed.remove(k);
        }
        hits
    };
    for k in hits {
        crate::kernel::state::violation(format!(
            "{call} frees memory holding a timer/DPC {:#x} that is still set (TIMER_OR_DPC_INVALID)",
            k & !1
        ));
    }
}

pub(crate) fn reset() {
    let mut g = lock();
    if let Some(t) = g.as_mut() {
        t.armed.clear();
    }
}

fn timer_thread() {
    crate::kernel::state::mark_sim_thread();
    let mut g = lock();
    loop {
        let now = Instant::now();
        let t = g.get_or_insert_with(Timers::default);
        let due: Option<(usize, usize, u64, bool)> = t
            .armed
            .iter()
            .filter(|(_, a)| a.due <= now)
            .min_by_key(|(_, a)| a.due)
            .map(|(k, a)| (*k, a.dpc, a.generation, a.dpc_only));
        if let Some((timer, dpc, generation, dpc_only)) = due {
            let a = t.armed.get_mut(&timer).expect("present");
            if let Some(p) = a.period {
                a.due = now + p;
            } else {
                t.armed.remove(&timer);
            }
            t.running += 1;
            drop(g);
            if !dpc_only {
                // SAFETY: the timer is a live KTIMER (the driver must cancel before freeing).
                unsafe { crate::kernel::sync::signal(timer as PVOID, 1) };
            }
            if dpc != 0 {
                run_dpc(dpc as PKDPC);
            }
            let _ = generation;
            g = lock();
            if let Some(t) = g.as_mut() {
                t.running -= 1;
            }
            continue;
        }
        let next = t.armed.values().map(|a| a.due).min();
        let wait = next.map_or(Duration::from_millis(100), |d| {
            d.saturating_duration_since(now)
        });
        g = WAKE
            .wait_timeout(g, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

fn run_dpc(dpc: PKDPC) {
    // SAFETY: KeInitializeDpc filled these fields; the DPC is live while its timer is set.
    let (routine, ctx, a1, a2) = unsafe {
        (
            (*dpc).DeferredRoutine,
            (*dpc).DeferredContext,
            (*dpc).SystemArgument1,
            (*dpc).SystemArgument2,
        )
    };
    if let Some(r) = routine {
        crate::kernel::irql::run_at(DISPATCH_LEVEL, "DPC routine", || {
            // SAFETY: calling the driver's DPC routine with its own arguments.
            unsafe { r(dpc, ctx, a1, a2) }
        });
    }
}

/// `KeInitializeDpc`.
#[no_mangle]
pub unsafe extern "win64" fn KeInitializeDpc(
    Dpc: PKDPC,
    DeferredRoutine: PKDEFERRED_ROUTINE,
    DeferredContext: PVOID,
) {
    // SAFETY: the caller passes KDPC storage.
    unsafe {
        std::ptr::write_bytes(Dpc.cast::<u8>(), 0, std::mem::size_of::<KDPC>());
        (*Dpc).Anonymous.s.Type = 19; // DpcObject
        (*Dpc).DeferredRoutine = DeferredRoutine;
        (*Dpc).DeferredContext = DeferredContext;
    }
}

/// `KeInitializeTimer`: a notification timer.
#[no_mangle]
pub unsafe extern "win64" fn KeInitializeTimer(Timer: PKTIMER) {
    // SAFETY: the caller passes KTIMER storage.
    unsafe { KeInitializeTimerEx(Timer, wsk_sys::NotificationTimer) };
}

/// `KeInitializeTimerEx`.
#[no_mangle]
pub unsafe extern "win64" fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE) {
    let ty = if Type == wsk_sys::SynchronizationTimer {
        crate::kernel::sync::OBJ_TIMER_SYNCHRONIZATION
    } else {
        crate::kernel::sync::OBJ_TIMER_NOTIFICATION
    };
    // SAFETY: the caller passes KTIMER storage (64 bytes, header first).
    unsafe {
        std::ptr::write_bytes(
            Timer.cast::<u8>(),
            0,
            std::mem::size_of::<wsk_sys::KTIMER>(),
        );
        crate::kernel::sync::init_header(Timer.cast(), ty, false);
    }
}

fn due_from(due: i64) -> Instant {
    let now = Instant::now();
    if due <= 0 {
        now + Duration::from_nanos(due.unsigned_abs().saturating_mul(100))
    } else {
        let delta = due - crate::kernel::sync::system_time_100ns();
        now + Duration::from_nanos(delta.max(0) as u64 * 100)
    }
}

/// `KeSetTimerEx`: TRUE if the timer was already set.
#[no_mangle]
pub unsafe extern "win64" fn KeSetTimerEx(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Period: LONG,
    Dpc: PKDPC,
) -> BOOLEAN {
    crate::kernel::preempt::entry("KeSetTimerEx");
    crate::kernel::irql::require_dispatch_or_below("KeSetTimer");
    ensure_thread();
    // SAFETY: LARGE_INTEGER is a plain 8-byte integer.
    let due = due_from(unsafe { DueTime.QuadPart });
    // SAFETY: the caller passes an initialised KTIMER.
    unsafe { crate::kernel::sync::signal(Timer.cast(), 0) };
    let mut g = lock();
    let t = g.get_or_insert_with(Timers::default);
    t.generation += 1;
    let generation = t.generation;
    let was = t.armed.insert(
        Timer as usize,
        Armed {
            due,
            period: (Period > 0).then(|| Duration::from_millis(Period as u64)),
            dpc: Dpc as usize,
            generation,
            dpc_only: false,
        },
    );
    WAKE.notify_all();
    BOOLEAN::from(was.is_some())
}

/// `KeSetTimer`.
#[no_mangle]
pub unsafe extern "win64" fn KeSetTimer(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Dpc: PKDPC,
) -> BOOLEAN {
    crate::kernel::preempt::entry("KeSetTimer");
    // SAFETY: same contract.
    unsafe { KeSetTimerEx(Timer, DueTime, 0, Dpc) }
}

/// `KeCancelTimer`: TRUE if the timer was set. A DPC already running is not waited for
/// (as in Windows: use KeFlushQueuedDpcs or a rundown for that).
#[no_mangle]
pub unsafe extern "win64" fn KeCancelTimer(Timer: PKTIMER) -> BOOLEAN {
    crate::kernel::preempt::entry("KeCancelTimer");
    crate::kernel::irql::require_dispatch_or_below("KeCancelTimer");
    let mut g = lock();
    let t = g.get_or_insert_with(Timers::default);
    BOOLEAN::from(t.armed.remove(&(Timer as usize)).is_some())
}

/// `KeFlushQueuedDpcs`: waits until no timer DPC is running.
#[no_mangle]
pub unsafe extern "win64" fn KeFlushQueuedDpcs() {
    crate::kernel::irql::require_passive("KeFlushQueuedDpcs");
    for _ in 0..100_000 {
        if lock().as_ref().is_none_or(|t| t.running == 0) {
            return;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// `KeInsertQueueDpc`: runs the DPC soon at DISPATCH_LEVEL on the timer thread. FALSE if it
/// is already queued.
#[no_mangle]
pub unsafe extern "win64" fn KeInsertQueueDpc(
    Dpc: PKDPC,
    SystemArgument1: PVOID,
    SystemArgument2: PVOID,
) -> BOOLEAN {
    crate::kernel::preempt::entry("KeInsertQueueDpc");
    ensure_thread();
    let mut g = lock();
    let t = g.get_or_insert_with(Timers::default);
    // Keys of DPC-only entries are the DPC address with the low bit set (never a KTIMER).
    let key = Dpc as usize | 1;
    if t.armed.contains_key(&key) {
        return 0;
    }
    // SAFETY: the caller passes an initialised KDPC.
    unsafe {
        (*Dpc).SystemArgument1 = SystemArgument1;
        (*Dpc).SystemArgument2 = SystemArgument2;
    }
    t.generation += 1;
    let generation = t.generation;
    t.armed.insert(
        key,
        Armed {
            due: Instant::now(),
            period: None,
            dpc: Dpc as usize,
            generation,
            dpc_only: true,
        },
    );
    WAKE.notify_all();
    1
}
