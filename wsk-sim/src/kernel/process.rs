//! The process a thread runs in: the System process for DriverEntry, DriverUnload, system
//! threads, work items and the provider's threads; the calling user process for an IRP a
//! test sends to a dispatch routine (as for a DeviceIoControl from user mode).

use std::cell::Cell;

use wsk_sys::PEPROCESS;

/// Stand-ins for the two EPROCESS objects a driver can meet (opaque to it).
#[repr(align(16))]
struct Process {
    _opaque: [u8; 64],
}
static SYSTEM: Process = Process { _opaque: [0; 64] };
static USER: Process = Process { _opaque: [0; 64] };

fn system() -> PEPROCESS {
    std::ptr::from_ref(&SYSTEM).cast_mut().cast()
}

fn user() -> PEPROCESS {
    std::ptr::from_ref(&USER).cast_mut().cast()
}

thread_local! {
    static IN_USER_PROCESS: Cell<bool> = const { Cell::new(false) };
}

/// The exported `PsInitialSystemProcess` (ntddk.h: `extern PEPROCESS PsInitialSystemProcess`);
/// set by `init`.
#[no_mangle]
pub static mut PsInitialSystemProcess: PEPROCESS = std::ptr::null_mut();

/// Sets the exported data (once per process, before driver code runs).
pub(crate) fn init_exports() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: written once, before any driver code runs in this process.
        unsafe { PsInitialSystemProcess = system() };
    });
}

/// Runs `f` in the user process's context on this thread.
pub(crate) fn in_user_process<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_USER_PROCESS.with(|c| c.replace(true));
    let r = f();
    IN_USER_PROCESS.with(|c| c.set(was));
    r
}

/// Whether this thread runs in a user process's context now.
pub(crate) fn is_user_process() -> bool {
    IN_USER_PROCESS.with(Cell::get)
}

/// `IoGetCurrentProcess` (PsGetCurrentProcess): the process of the calling thread.
#[no_mangle]
pub unsafe extern "win64" fn IoGetCurrentProcess() -> PEPROCESS {
    if is_user_process() {
        user()
    } else {
        system()
    }
}
