//! System threads, work items, kernel handles and object references.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use wsk_sys::{
    ACCESS_MASK, BOOLEAN, HANDLE, KPROCESSOR_MODE, LONG_PTR, NTSTATUS, OBJECT_HANDLE_INFORMATION,
    PACCESS_STATE, PCLIENT_ID, PDEVICE_OBJECT, PHANDLE, PIO_WORKITEM, PIO_WORKITEM_ROUTINE,
    PKSTART_ROUTINE, PLARGE_INTEGER, POBJECT_ATTRIBUTES, POBJECT_TYPE, PVOID,
    STATUS_INVALID_HANDLE, STATUS_SUCCESS, ULONG, WORK_QUEUE_TYPE,
};

/// What a kernel handle refers to.
#[derive(Clone, Debug)]
pub(crate) enum Handle {
    Thread(usize),
    Key(String),
    Device(usize),
}

#[derive(Default)]
struct Objects {
    next: usize,
    handles: HashMap<usize, Handle>,
    /// Thread objects: references (handles count separately) and whether it ran to the end.
    threads: HashMap<usize, (usize, bool)>,
    work_items: HashMap<usize, bool>,
}

static OBJECTS: Mutex<Option<Objects>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Objects) -> R) -> R {
    let mut g: MutexGuard<'_, _> = OBJECTS.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(|| Objects {
        next: 0x100,
        ..Objects::default()
    }))
}

pub(crate) fn new_handle(h: Handle) -> HANDLE {
    with(|o| {
        o.next += 4;
        let v = o.next;
        o.handles.insert(v, h);
        v as HANDLE
    })
}

pub(crate) fn lookup(h: HANDLE) -> Option<Handle> {
    with(|o| o.handles.get(&(h as usize)).cloned())
}

pub(crate) fn open_handles() -> Vec<String> {
    with(|o| {
        o.handles
            .iter()
            .map(|(k, v)| format!("handle {k:#x} -> {v:?}"))
            .collect()
    })
}

pub(crate) fn leaked() -> Vec<String> {
    with(|o| {
        let mut v: Vec<String> = o
            .threads
            .iter()
            .filter(|(_, (refs, _))| *refs > 0)
            .map(|(k, (refs, done))| {
                format!("thread object {k:#x}: {refs} reference(s), exited={done}")
            })
            .collect();
        v.extend(
            o.work_items
                .keys()
                .map(|k| format!("work item {k:#x} not freed")),
        );
        v
    })
}

pub(crate) fn reset() {
    with(|o| {
        o.handles.clear();
        o.threads.retain(|_, (_, done)| !*done);
        o.work_items.clear();
    });
}

/// Thread objects are dispatcher objects (waitable) that live as long as references do;
/// their memory is leaked deliberately so a late wait never touches freed memory.
fn new_thread_object() -> usize {
    let obj = Box::leak(Box::new([0u64; 8]))
        .as_mut_ptr()
        .cast::<std::ffi::c_void>();
    // SAFETY: 64 bytes of fresh storage.
    unsafe { crate::kernel::sync::init_header(obj, crate::kernel::sync::OBJ_THREAD, false) };
    obj as usize
}

/// `PsCreateSystemThread`: PASSIVE_LEVEL; the routine starts at PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn PsCreateSystemThread(
    ThreadHandle: PHANDLE,
    DesiredAccess: ULONG,
    ObjectAttributes: POBJECT_ATTRIBUTES,
    ProcessHandle: HANDLE,
    ClientId: PCLIENT_ID,
    StartRoutine: PKSTART_ROUTINE,
    StartContext: PVOID,
) -> NTSTATUS {
    let _ = (DesiredAccess, ObjectAttributes, ProcessHandle, ClientId);
    crate::kernel::irql::require_passive("PsCreateSystemThread");
    if let Some(st) =
        crate::kernel::schedule::injected_failure(crate::config::Call::PsCreateSystemThread)
    {
        return st;
    }
    let Some(routine) = StartRoutine else {
        crate::kernel::state::violation("PsCreateSystemThread with a NULL StartRoutine");
        return wsk_sys::STATUS_INVALID_PARAMETER;
    };
    let obj = new_thread_object();
    with(|o| o.threads.insert(obj, (1, false)));
    // SAFETY: the caller passes HANDLE storage.
    unsafe { ThreadHandle.write(new_handle(Handle::Thread(obj))) };
    let ctx = StartContext as usize;
    std::thread::Builder::new()
        .name("wsk-sim-system-thread".into())
        .spawn(move || {
            CURRENT_THREAD_OBJECT.with(|c| c.set(obj));
            // SAFETY: calling the driver's thread routine with its context.
            unsafe { routine(ctx as PVOID) };
            thread_exited(obj);
        })
        .expect("spawn system thread");
    STATUS_SUCCESS
}

thread_local!(static CURRENT_THREAD_OBJECT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

fn thread_exited(obj: usize) {
    with(|o| {
        if let Some(t) = o.threads.get_mut(&obj) {
            t.1 = true;
        }
    });
    // SAFETY: thread objects are never freed.
    unsafe { crate::kernel::sync::signal(obj as PVOID, 1) };
}

/// `PsTerminateSystemThread`: the host thread cannot be unwound through the driver's
/// `extern "win64"` frames, so it signals the thread object and parks for good.
#[no_mangle]
pub unsafe extern "win64" fn PsTerminateSystemThread(ExitStatus: NTSTATUS) -> NTSTATUS {
    let _ = ExitStatus;
    crate::kernel::irql::require_passive("PsTerminateSystemThread");
    let obj = CURRENT_THREAD_OBJECT.with(std::cell::Cell::get);
    if obj != 0 {
        thread_exited(obj);
    }
    loop {
        std::thread::park();
    }
}

/// `ObReferenceObjectByHandle` (thread and device handles).
#[no_mangle]
pub unsafe extern "win64" fn ObReferenceObjectByHandle(
    Handle: HANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectType: POBJECT_TYPE,
    AccessMode: KPROCESSOR_MODE,
    Object: *mut PVOID,
    HandleInformation: *mut OBJECT_HANDLE_INFORMATION,
) -> NTSTATUS {
    let _ = (DesiredAccess, ObjectType, AccessMode, HandleInformation);
    crate::kernel::irql::require_passive("ObReferenceObjectByHandle");
    if let Some(st) =
        crate::kernel::schedule::injected_failure(crate::config::Call::ObReferenceObjectByHandle)
    {
        return st;
    }
    match lookup(Handle) {
        Some(self::Handle::Thread(obj)) => {
            with(|o| o.threads.entry(obj).or_insert((0, false)).0 += 1);
            // SAFETY: the caller passes PVOID storage.
            unsafe { Object.write(obj as PVOID) };
            STATUS_SUCCESS
        }
        Some(self::Handle::Device(dev)) => {
            // SAFETY: the caller passes PVOID storage.
            unsafe { Object.write(dev as PVOID) };
            STATUS_SUCCESS
        }
        _ => STATUS_INVALID_HANDLE,
    }
}

/// `ObfDereferenceObject` (ObDereferenceObject).
#[no_mangle]
pub unsafe extern "win64" fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR {
    crate::kernel::irql::require_dispatch_or_below("ObDereferenceObject");
    let r = with(|o| match o.threads.get_mut(&(Object as usize)) {
        Some(t) if t.0 > 0 => {
            t.0 -= 1;
            let left = t.0;
            if left == 0 && t.1 {
                o.threads.remove(&(Object as usize));
            }
            Some(left as LONG_PTR)
        }
        Some(_) => None,
        None => Some(1),
    });
    r.unwrap_or_else(|| {
        crate::kernel::state::violation(format!(
            "ObDereferenceObject({Object:p}): reference count already zero"
        ));
        0
    })
}

/// `ZwClose`: PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn ZwClose(Handle: HANDLE) -> NTSTATUS {
    crate::kernel::irql::require_passive("ZwClose");
    let h = with(|o| o.handles.remove(&(Handle as usize)));
    match h {
        Some(self::Handle::Thread(obj)) => {
            // SAFETY: calling our own export.
            unsafe { ObfDereferenceObject(obj as PVOID) };
            STATUS_SUCCESS
        }
        Some(_) => STATUS_SUCCESS,
        None => {
            crate::kernel::state::violation(format!("ZwClose({Handle:p}): not an open handle"));
            STATUS_INVALID_HANDLE
        }
    }
}

/// `ZwWaitForSingleObject`: PASSIVE_LEVEL; waits on a thread handle's object (signalled once
/// the thread has ended: PsTerminateSystemThread or the return of its routine).
#[no_mangle]
pub unsafe extern "win64" fn ZwWaitForSingleObject(
    Handle: HANDLE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    crate::kernel::preempt::entry("ZwWaitForSingleObject");
    let _ = Alertable;
    crate::kernel::irql::require_passive("ZwWaitForSingleObject");
    match lookup(Handle) {
        Some(self::Handle::Thread(obj)) => {
            // SAFETY: thread objects are never freed; Timeout NULL or a LARGE_INTEGER.
            unsafe {
                let t = crate::kernel::sync::timeout_of(Timeout);
                crate::kernel::sync::wait_object(obj as PVOID, t, "ZwWaitForSingleObject")
            }
        }
        _ => {
            crate::kernel::state::violation(format!(
                "ZwWaitForSingleObject({Handle:p}): not an open thread handle"
            ));
            STATUS_INVALID_HANDLE
        }
    }
}

/// Thread objects made by PsCreateSystemThread whose thread has not ended yet.
pub(crate) fn threads_running() -> usize {
    with(|o| o.threads.values().filter(|(_, done)| !*done).count())
}

/// `ObOpenObjectByPointer`: a kernel handle to a device object (for ZwSetSecurityObject).
#[no_mangle]
pub unsafe extern "win64" fn ObOpenObjectByPointer(
    Object: PVOID,
    HandleAttributes: ULONG,
    PassedAccessState: PACCESS_STATE,
    DesiredAccess: ACCESS_MASK,
    ObjectType: POBJECT_TYPE,
    AccessMode: KPROCESSOR_MODE,
    Handle: PHANDLE,
) -> NTSTATUS {
    let _ = (
        HandleAttributes,
        PassedAccessState,
        DesiredAccess,
        ObjectType,
        AccessMode,
    );
    crate::kernel::irql::require_passive("ObOpenObjectByPointer");
    // SAFETY: the caller passes HANDLE storage.
    unsafe { Handle.write(new_handle(self::Handle::Device(Object as usize))) };
    STATUS_SUCCESS
}

// ---------------------------------------------------------------------------------------
// Work items: each queued item runs once at PASSIVE_LEVEL on a fresh host thread.

/// `IoAllocateWorkItem`.
#[no_mangle]
pub unsafe extern "win64" fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PIO_WORKITEM {
    crate::kernel::irql::require_dispatch_or_below("IoAllocateWorkItem");
    if crate::kernel::schedule::injected_failure(crate::config::Call::IoAllocateWorkItem).is_some()
    {
        return std::ptr::null_mut();
    }
    let item = Box::into_raw(Box::new((DeviceObject as usize, 0u64))) as usize;
    with(|o| o.work_items.insert(item, false));
    item as PIO_WORKITEM
}

/// `IoQueueWorkItem`: an item may not be queued again before its routine has started.
#[no_mangle]
pub unsafe extern "win64" fn IoQueueWorkItem(
    IoWorkItem: PIO_WORKITEM,
    WorkerRoutine: PIO_WORKITEM_ROUTINE,
    QueueType: WORK_QUEUE_TYPE,
    Context: PVOID,
) {
    crate::kernel::preempt::entry("IoQueueWorkItem");
    let _ = QueueType;
    crate::kernel::irql::require_dispatch_or_below("IoQueueWorkItem");
    let item = IoWorkItem as usize;
    let ok = with(|o| match o.work_items.get_mut(&item) {
        Some(q) if !*q => {
            *q = true;
            Ok(())
        }
        Some(_) => Err("already queued"),
        None => Err("not a live work item"),
    });
    if let Err(e) = ok {
        crate::kernel::state::violation(format!("IoQueueWorkItem({IoWorkItem:p}): {e}"));
        return;
    }
    let Some(routine) = WorkerRoutine else {
        crate::kernel::state::violation("IoQueueWorkItem with a NULL routine");
        return;
    };
    // SAFETY: `item` is a live Box<(usize, u64)> until IoFreeWorkItem.
    let dev = unsafe { (*(item as *const (usize, u64))).0 };
    let ctx = Context as usize;
    crate::kernel::irql::client_code_enter();
    std::thread::Builder::new()
        .name("wsk-sim-work-item".into())
        .spawn(move || {
            with(|o| {
                if let Some(q) = o.work_items.get_mut(&item) {
                    *q = false;
                }
            });
            crate::kernel::irql::run_at(0, "work item", || {
                // SAFETY: the driver's work routine with its device object and context.
                unsafe { routine(dev as PDEVICE_OBJECT, ctx as PVOID) };
            });
            crate::kernel::irql::client_code_leave();
        })
        .expect("spawn work item");
}

/// `IoFreeWorkItem`.
#[no_mangle]
pub unsafe extern "win64" fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM) {
    let item = IoWorkItem as usize;
    let st = with(|o| o.work_items.remove(&item));
    match st {
        Some(false) => {
            // SAFETY: allocated by IoAllocateWorkItem.
            drop(unsafe { Box::from_raw(item as *mut (usize, u64)) });
        }
        Some(true) => {
            with(|o| o.work_items.insert(item, true));
            crate::kernel::state::violation(format!(
                "IoFreeWorkItem({IoWorkItem:p}) while it is queued"
            ));
        }
        None => crate::kernel::state::violation(format!(
            "IoFreeWorkItem({IoWorkItem:p}): not a live work item"
        )),
    }
}
