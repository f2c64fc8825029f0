//! Spin locks, dispatcher objects (events, and the thread/timer objects built on the same
//! header), waits with timeouts, and rundown protection.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wsk_sys::{
    BOOLEAN, DISPATCH_LEVEL, EVENT_TYPE, KEVENT, KIRQL, KPRIORITY, KPROCESSOR_MODE, KWAIT_REASON,
    LONG, NTSTATUS, PEX_RUNDOWN_REF, PKEVENT, PKSPIN_LOCK, PLARGE_INTEGER, PVOID, STATUS_SUCCESS,
    STATUS_TIMEOUT,
};

// ---------------------------------------------------------------------------------------
// Spin locks

fn thread_token() -> usize {
    thread_local!(static TOKEN: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    });
    TOKEN.with(|t| *t)
}

/// # Safety
/// `lock` points to a live KSPIN_LOCK.
unsafe fn spin_acquire(lock: PKSPIN_LOCK, call: &str) {
    if lock.is_null() {
        crate::kernel::state::violation(format!("{call}(NULL)"));
        return;
    }
    // SAFETY: KSPIN_LOCK is a pointer-sized integer; callers pass a live, aligned one.
    let word = unsafe { AtomicUsize::from_ptr(lock.cast::<usize>()) };
    let me = thread_token();
    if word.load(Ordering::Relaxed) == me {
        crate::kernel::state::violation(format!(
            "{call}: spin lock {lock:p} already held by this thread (deadlock)"
        ));
        return;
    }
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins.is_multiple_of(64) {
            // A host thread holding the lock may be descheduled; a kernel CPU at DISPATCH
            // would not be, so yielding does not change what the driver can observe.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// # Safety
/// `lock` points to a live KSPIN_LOCK.
unsafe fn spin_release(lock: PKSPIN_LOCK, call: &str) {
    if lock.is_null() {
        crate::kernel::state::violation(format!("{call}(NULL)"));
        return;
    }
    // SAFETY: as in spin_acquire.
    let word = unsafe { AtomicUsize::from_ptr(lock.cast::<usize>()) };
    let me = thread_token();
    if word
        .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        crate::kernel::state::violation(format!(
            "{call}: spin lock {lock:p} is not held by this thread"
        ));
    }
}

/// `KeAcquireSpinLockRaiseToDpc`.
#[no_mangle]
pub unsafe extern "win64" fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL {
    crate::kernel::preempt::entry("KeAcquireSpinLockRaiseToDpc");
    crate::kernel::irql::require_dispatch_or_below("KeAcquireSpinLockRaiseToDpc");
    let old = crate::kernel::irql::current();
    crate::kernel::irql::set(DISPATCH_LEVEL);
    // SAFETY: the caller passes a live spin lock (kernel contract).
    unsafe { spin_acquire(SpinLock, "KeAcquireSpinLockRaiseToDpc") };
    old
}

/// `KeReleaseSpinLock`.
#[no_mangle]
pub unsafe extern "win64" fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL) {
    crate::kernel::preempt::entry("KeReleaseSpinLock");
    if crate::kernel::irql::current() != DISPATCH_LEVEL {
        crate::kernel::state::violation(format!(
            "KeReleaseSpinLock at IRQL {} (a held spin lock means DISPATCH_LEVEL)",
            crate::kernel::irql::current()
        ));
    }
    // SAFETY: the caller passes a live spin lock (kernel contract).
    unsafe { spin_release(SpinLock, "KeReleaseSpinLock") };
    if NewIrql > DISPATCH_LEVEL {
        crate::kernel::state::violation(format!(
            "KeReleaseSpinLock(NewIrql={NewIrql}) above DISPATCH_LEVEL"
        ));
    }
    crate::kernel::irql::set(NewIrql.min(DISPATCH_LEVEL));
    // Back at PASSIVE_LEVEL, the thread may lose its processor right away.
    crate::kernel::preempt::exit();
}

/// `KeAcquireSpinLockAtDpcLevel`: the caller must already be at DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK) {
    crate::kernel::preempt::entry("KeAcquireSpinLockAtDpcLevel");
    if crate::kernel::irql::current() < DISPATCH_LEVEL {
        crate::kernel::state::violation(format!(
            "KeAcquireSpinLockAtDpcLevel at IRQL {} (requires DISPATCH_LEVEL)",
            crate::kernel::irql::current()
        ));
    }
    // SAFETY: the caller passes a live spin lock (kernel contract).
    unsafe { spin_acquire(SpinLock, "KeAcquireSpinLockAtDpcLevel") };
}

/// `KeReleaseSpinLockFromDpcLevel`.
#[no_mangle]
pub unsafe extern "win64" fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK) {
    crate::kernel::preempt::entry("KeReleaseSpinLockFromDpcLevel");
    if crate::kernel::irql::current() < DISPATCH_LEVEL {
        crate::kernel::state::violation(format!(
            "KeReleaseSpinLockFromDpcLevel at IRQL {} (requires DISPATCH_LEVEL)",
            crate::kernel::irql::current()
        ));
    }
    // SAFETY: the caller passes a live spin lock (kernel contract).
    unsafe { spin_release(SpinLock, "KeReleaseSpinLockFromDpcLevel") };
}

// ---------------------------------------------------------------------------------------
// Dispatcher objects. The header's SignalState is the truth; one process-wide mutex and
// condition variable stand in for the dispatcher lock and wait lists.

static DISPATCHER: Mutex<()> = Mutex::new(());
static SIGNALED: Condvar = Condvar::new();

pub(crate) fn dispatcher() -> MutexGuard<'static, ()> {
    DISPATCHER.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) const OBJ_NOTIFICATION_EVENT: u8 = 0;
pub(crate) const OBJ_SYNCHRONIZATION_EVENT: u8 = 1;
pub(crate) const OBJ_THREAD: u8 = 6;
pub(crate) const OBJ_TIMER_NOTIFICATION: u8 = 8;
pub(crate) const OBJ_TIMER_SYNCHRONIZATION: u8 = 9;

/// # Safety
/// `obj` points to a live dispatcher header.
unsafe fn header_type(obj: PVOID) -> u8 {
    // SAFETY: byte 0 of DISPATCHER_HEADER is Type.
    unsafe { obj.cast::<u8>().read_volatile() }
}

/// # Safety
/// `obj` points to a live dispatcher header.
unsafe fn signal_state<'a>(obj: PVOID) -> &'a AtomicI32 {
    // SAFETY: SignalState is the aligned LONG at offset 4 of DISPATCHER_HEADER.
    unsafe { AtomicI32::from_ptr(obj.cast::<u8>().add(4).cast::<i32>()) }
}

/// Initialises a dispatcher header of `ty` with a signal state.
///
/// # Safety
/// `obj` points to at least 24 writable bytes.
pub(crate) unsafe fn init_header(obj: PVOID, ty: u8, signaled: bool) {
    let _g = dispatcher();
    // SAFETY: per the function contract; the header is Type,Signalling,Size,Reserved,
    // SignalState, WaitListHead (24 bytes on x64).
    unsafe {
        std::ptr::write_bytes(obj.cast::<u8>(), 0, 24);
        obj.cast::<u8>().write(ty);
        obj.cast::<u8>().add(2).write(6); // Size in DWORDs, as the kernel stores it
        signal_state(obj).store(i32::from(signaled), Ordering::SeqCst);
        // An empty wait list points at itself, as KeInitializeEvent leaves it.
        let head = obj.cast::<u8>().add(8).cast::<usize>();
        head.write(head as usize);
        head.add(1).write(head as usize);
    }
}

/// Sets a dispatcher object's signal state and wakes waiters. Returns the previous state.
///
/// # Safety
/// `obj` points to a live dispatcher header.
pub(crate) unsafe fn signal(obj: PVOID, value: i32) -> i32 {
    let _g = dispatcher();
    // SAFETY: per the function contract.
    let prev = unsafe { signal_state(obj) }.swap(value, Ordering::SeqCst);
    SIGNALED.notify_all();
    prev
}

/// Timeout of a kernel wait: None = infinite.
///
/// # Safety
/// `timeout` is NULL or points to a LARGE_INTEGER.
pub(crate) unsafe fn timeout_of(timeout: PLARGE_INTEGER) -> Option<Duration> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: per the function contract.
    let t = unsafe { (*timeout).QuadPart };
    if t <= 0 {
        // Relative, in 100 ns units.
        Some(Duration::from_nanos(t.unsigned_abs().saturating_mul(100)))
    } else {
        // Absolute system time (100 ns since 1601-01-01).
        let now = system_time_100ns();
        Some(Duration::from_nanos((t - now).max(0) as u64 * 100))
    }
}

pub(crate) fn system_time_100ns() -> i64 {
    const EPOCH_DIFF_100NS: i64 = 116_444_736_000_000_000;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    EPOCH_DIFF_100NS + (since_unix.as_nanos() / 100) as i64
}

/// Waits until `obj` is signaled or `timeout` passes.
///
/// # Safety
/// `obj` points to a live dispatcher header for the whole wait.
pub(crate) unsafe fn wait_object(obj: PVOID, timeout: Option<Duration>, call: &str) -> NTSTATUS {
    let start = Instant::now();
    let watchdog = Duration::from_millis(crate::kernel::state::config().watchdog_ms);
    let mut warned = false;
    let mut g = dispatcher();
    loop {
        // SAFETY: per the function contract.
        let (ty, st) = unsafe { (header_type(obj), signal_state(obj)) };
        if st.load(Ordering::SeqCst) > 0 {
            if ty == OBJ_SYNCHRONIZATION_EVENT || ty == OBJ_TIMER_SYNCHRONIZATION {
                st.store(0, Ordering::SeqCst);
            }
            return STATUS_SUCCESS;
        }
        let elapsed = start.elapsed();
        let limit = match timeout {
            Some(t) if elapsed >= t => return STATUS_TIMEOUT,
            Some(t) => t.saturating_sub(elapsed),
            None => {
                if elapsed >= watchdog && !warned {
                    warned = true;
                    drop(g);
                    crate::kernel::state::violation(format!(
                        "{call}({obj:p}) waited over {} ms without a timeout: probable deadlock",
                        watchdog.as_millis()
                    ));
                    g = dispatcher();
                }
                Duration::from_millis(50)
            }
        };
        g = SIGNALED
            .wait_timeout(g, limit.min(Duration::from_millis(50)))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// `KeInitializeEvent`.
#[no_mangle]
pub unsafe extern "win64" fn KeInitializeEvent(Event: PKEVENT, Type: EVENT_TYPE, State: BOOLEAN) {
    let ty = if Type == wsk_sys::SynchronizationEvent {
        OBJ_SYNCHRONIZATION_EVENT
    } else {
        OBJ_NOTIFICATION_EVENT
    };
    const _: () = assert!(std::mem::size_of::<KEVENT>() == 24);
    // SAFETY: the caller passes KEVENT storage (24 bytes).
    unsafe { init_header(Event.cast(), ty, State != 0) };
}

/// `KeSetEvent`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn KeSetEvent(
    Event: PKEVENT,
    Increment: KPRIORITY,
    Wait: BOOLEAN,
) -> LONG {
    crate::kernel::preempt::entry("KeSetEvent");
    let _ = (Increment, Wait);
    crate::kernel::irql::require_dispatch_or_below("KeSetEvent");
    // SAFETY: the caller passes an initialised KEVENT.
    let prev = unsafe { signal(Event.cast(), 1) };
    // The woken thread may run before the caller's next instruction: a PASSIVE caller can be
    // descheduled right after the signal took effect.
    crate::kernel::preempt::exit();
    prev
}

/// `KeClearEvent`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn KeClearEvent(Event: PKEVENT) {
    crate::kernel::preempt::entry("KeClearEvent");
    crate::kernel::irql::require_dispatch_or_below("KeClearEvent");
    // SAFETY: the caller passes an initialised KEVENT.
    unsafe { signal(Event.cast(), 0) };
}

/// `KeResetEvent`.
#[no_mangle]
pub unsafe extern "win64" fn KeResetEvent(Event: PKEVENT) -> LONG {
    crate::kernel::preempt::entry("KeResetEvent");
    crate::kernel::irql::require_dispatch_or_below("KeResetEvent");
    // SAFETY: the caller passes an initialised KEVENT.
    unsafe { signal(Event.cast(), 0) }
}

/// `KeReadStateEvent`.
#[no_mangle]
pub unsafe extern "win64" fn KeReadStateEvent(Event: PKEVENT) -> LONG {
    // SAFETY: the caller passes an initialised KEVENT.
    unsafe { signal_state(Event.cast()) }.load(Ordering::SeqCst)
}

/// `KeWaitForSingleObject`: a wait that may block (NULL or non-zero timeout) needs
/// IRQL <= APC_LEVEL; a zero timeout (a poll) is allowed up to DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn KeWaitForSingleObject(
    Object: PVOID,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    crate::kernel::preempt::entry("KeWaitForSingleObject");
    let _ = (WaitReason, WaitMode, Alertable);
    // SAFETY: Timeout is NULL or a LARGE_INTEGER (kernel contract).
    let t = unsafe { timeout_of(Timeout) };
    if t == Some(Duration::ZERO) {
        crate::kernel::irql::require_dispatch_or_below("KeWaitForSingleObject(Timeout=0)");
    } else {
        crate::kernel::irql::require_below_dispatch("KeWaitForSingleObject");
    }
    // SAFETY: the caller passes a live dispatcher object.
    unsafe { wait_object(Object, t, "KeWaitForSingleObject") }
}

/// `KeDelayExecutionThread`: IRQL <= APC_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn KeDelayExecutionThread(
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Interval: PLARGE_INTEGER,
) -> NTSTATUS {
    crate::kernel::preempt::entry("KeDelayExecutionThread");
    let _ = (WaitMode, Alertable);
    crate::kernel::irql::require_below_dispatch("KeDelayExecutionThread");
    // SAFETY: Interval points to a LARGE_INTEGER (kernel contract).
    let mut t = unsafe { timeout_of(Interval) }.unwrap_or(Duration::ZERO);
    let g = crate::kernel::state::config().delay_granularity_us;
    if g > 0 {
        t = Duration::from_micros((t.as_micros() as u64).div_ceil(g).max(1) * g);
    }
    std::thread::sleep(t);
    STATUS_SUCCESS
}

// ---------------------------------------------------------------------------------------
// Rundown protection. Count word: bit 0 = rundown active, references in the upper bits.

/// # Safety
/// `r` points to a live EX_RUNDOWN_REF.
unsafe fn rundown_word<'a>(r: PEX_RUNDOWN_REF) -> &'a AtomicUsize {
    // SAFETY: EX_RUNDOWN_REF is one aligned pointer-sized word.
    unsafe { AtomicUsize::from_ptr(r.cast::<usize>()) }
}

/// `ExInitializeRundownProtection`.
#[no_mangle]
pub unsafe extern "win64" fn ExInitializeRundownProtection(RunRef: PEX_RUNDOWN_REF) {
    // SAFETY: the caller passes EX_RUNDOWN_REF storage.
    unsafe { rundown_word(RunRef) }.store(0, Ordering::SeqCst);
}

/// `ExReInitializeRundownProtection`: only after the rundown completed.
#[no_mangle]
pub unsafe extern "win64" fn ExReInitializeRundownProtection(RunRef: PEX_RUNDOWN_REF) {
    // SAFETY: the caller passes a live EX_RUNDOWN_REF.
    let w = unsafe { rundown_word(RunRef) };
    if w.load(Ordering::SeqCst) != 1 {
        crate::kernel::state::violation(format!(
            "ExReInitializeRundownProtection({RunRef:p}) before the rundown completed"
        ));
    }
    w.store(0, Ordering::SeqCst);
}

/// `ExAcquireRundownProtection`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn ExAcquireRundownProtection(RunRef: PEX_RUNDOWN_REF) -> BOOLEAN {
    crate::kernel::preempt::entry("ExAcquireRundownProtection");
    crate::kernel::irql::require_dispatch_or_below("ExAcquireRundownProtection");
    // SAFETY: the caller passes a live EX_RUNDOWN_REF.
    let w = unsafe { rundown_word(RunRef) };
    let mut cur = w.load(Ordering::SeqCst);
    loop {
        if cur & 1 != 0 {
            return 0;
        }
        match w.compare_exchange_weak(cur, cur + 2, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return 1,
            Err(v) => cur = v,
        }
    }
}

/// `ExReleaseRundownProtection`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn ExReleaseRundownProtection(RunRef: PEX_RUNDOWN_REF) {
    crate::kernel::preempt::entry("ExReleaseRundownProtection");
    crate::kernel::irql::require_dispatch_or_below("ExReleaseRundownProtection");
    // SAFETY: the caller passes a live EX_RUNDOWN_REF.
    let w = unsafe { rundown_word(RunRef) };
    let mut cur = w.load(Ordering::SeqCst);
    loop {
        if cur < 2 {
            crate::kernel::state::violation(format!(
                "ExReleaseRundownProtection({RunRef:p}) without a matching acquire"
            ));
            return;
        }
        match w.compare_exchange_weak(cur, cur - 2, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                crate::kernel::preempt::exit();
                return;
            }
            Err(v) => cur = v,
        }
    }
}

/// `ExRundownCompleted`: marks a completed rundown (the count stays "rundown active").
#[no_mangle]
pub unsafe extern "win64" fn ExRundownCompleted(RunRef: PEX_RUNDOWN_REF) {
    // SAFETY: the caller passes a live EX_RUNDOWN_REF.
    let w = unsafe { rundown_word(RunRef) };
    if w.load(Ordering::SeqCst) != 1 {
        crate::kernel::state::violation(format!(
            "ExRundownCompleted({RunRef:p}) before the rundown completed"
        ));
    }
}

/// `ExWaitForRundownProtectionRelease`: IRQL < DISPATCH_LEVEL; blocks new acquires and
/// waits for the held ones.
#[no_mangle]
pub unsafe extern "win64" fn ExWaitForRundownProtectionRelease(RunRef: PEX_RUNDOWN_REF) {
    crate::kernel::irql::require_below_dispatch("ExWaitForRundownProtectionRelease");
    // SAFETY: the caller passes a live EX_RUNDOWN_REF.
    let w = unsafe { rundown_word(RunRef) };
    w.fetch_or(1, Ordering::SeqCst);
    let start = Instant::now();
    let watchdog = Duration::from_millis(crate::kernel::state::config().watchdog_ms);
    let mut warned = false;
    while w.load(Ordering::SeqCst) != 1 {
        if !warned && start.elapsed() > watchdog {
            warned = true;
            crate::kernel::state::violation(format!(
                "ExWaitForRundownProtectionRelease({RunRef:p}) still waiting after {} ms ({} references held): probable leak of a reference",
                watchdog.as_millis(),
                w.load(Ordering::SeqCst) >> 1
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

// ---------------------------------------------------------------------------------------
// Time

static QPC_START: AtomicU64 = AtomicU64::new(0);

fn qpc_base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        QPC_START.store(1, Ordering::Relaxed);
        Instant::now()
    })
}

/// The performance counter runs at 10 MHz, as on current Windows.
pub(crate) const QPC_FREQUENCY: i64 = 10_000_000;

/// `KeQueryPerformanceCounter`.
#[no_mangle]
pub unsafe extern "win64" fn KeQueryPerformanceCounter(
    PerformanceFrequency: PLARGE_INTEGER,
) -> wsk_sys::LARGE_INTEGER {
    crate::kernel::preempt::entry("KeQueryPerformanceCounter");
    if !PerformanceFrequency.is_null() {
        // SAFETY: the caller passes LARGE_INTEGER storage.
        unsafe {
            PerformanceFrequency.write(wsk_sys::LARGE_INTEGER {
                QuadPart: QPC_FREQUENCY,
            });
        };
    }
    let ticks = qpc_base().elapsed().as_nanos() / 100;
    wsk_sys::LARGE_INTEGER {
        QuadPart: ticks as i64,
    }
}
