//! Kernel dispatcher objects, IRQL, spin locks, DPCs, timers, rundown (wdm.h, x64).

use crate::ntdef::{
    KAFFINITY, LIST_ENTRY, LONG, PVOID, SINGLE_LIST_ENTRY, UCHAR, ULARGE_INTEGER, ULONG, ULONG_PTR,
    USHORT,
};

/// `KIRQL`: <https://learn.microsoft.com/windows-hardware/drivers/kernel/managing-hardware-priorities>
pub type KIRQL = UCHAR;
pub type PKIRQL = *mut KIRQL;
pub const PASSIVE_LEVEL: KIRQL = 0;
pub const LOW_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;
pub const CMCI_LEVEL: KIRQL = 5;
pub const CLOCK_LEVEL: KIRQL = 13;
pub const IPI_LEVEL: KIRQL = 14;
pub const POWER_LEVEL: KIRQL = 14;
pub const PROFILE_LEVEL: KIRQL = 15;
pub const HIGH_LEVEL: KIRQL = 15;

/// `KSPIN_LOCK`: <https://learn.microsoft.com/windows-hardware/drivers/kernel/introduction-to-spin-locks>
pub type KSPIN_LOCK = ULONG_PTR;
pub type PKSPIN_LOCK = *mut KSPIN_LOCK;

/// `KPROCESSOR_MODE` (`MODE` enum, stored as a CCHAR).
pub type KPROCESSOR_MODE = i8;
pub const KernelMode: KPROCESSOR_MODE = 0;
pub const UserMode: KPROCESSOR_MODE = 1;

/// `EVENT_TYPE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-keinitializeevent>
pub type EVENT_TYPE = i32;
pub const NotificationEvent: EVENT_TYPE = 0;
pub const SynchronizationEvent: EVENT_TYPE = 1;

/// `TIMER_TYPE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-keinitializetimerex>
pub type TIMER_TYPE = i32;
pub const NotificationTimer: TIMER_TYPE = 0;
pub const SynchronizationTimer: TIMER_TYPE = 1;

/// `KWAIT_REASON`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kewaitforsingleobject>
pub type KWAIT_REASON = i32;
pub const Executive: KWAIT_REASON = 0;
pub const UserRequest: KWAIT_REASON = 6;

/// The first 4 bytes of `DISPATCHER_HEADER`, as the kernel sees them: either a lock word
/// or the object's Type/Signalling/Size/Reserved1 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DISPATCHER_HEADER_TYPE {
    pub Type: UCHAR,
    pub Signalling: UCHAR,
    pub Size: UCHAR,
    pub Reserved1: UCHAR,
}

/// Anonymous first union of `DISPATCHER_HEADER` (`Lock`, `LockNV`, and several
/// type-specific byte views; only the two needed ones are spelled out).
#[repr(C)]
#[derive(Clone, Copy)]
pub union DISPATCHER_HEADER_0 {
    pub Lock: LONG,
    pub LockNV: LONG,
    pub s: DISPATCHER_HEADER_TYPE,
}

/// `DISPATCHER_HEADER` (x64: 24 bytes). Opaque to drivers: initialise the object with
/// KeInitializeEvent / KeInitializeTimer, never by hand.
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_kevent> (embedded)
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DISPATCHER_HEADER {
    pub Anonymous: DISPATCHER_HEADER_0,
    pub SignalState: LONG,
    pub WaitListHead: LIST_ENTRY,
}

/// `KEVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_kevent>
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KEVENT {
    pub Header: DISPATCHER_HEADER,
}
pub type PKEVENT = *mut KEVENT;
pub type PRKEVENT = *mut KEVENT;

/// `PKDEFERRED_ROUTINE` (KDEFERRED_ROUTINE):
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-kdeferred_routine>
pub type PKDEFERRED_ROUTINE = Option<
    unsafe extern "win64" fn(
        Dpc: *mut KDPC,
        DeferredContext: PVOID,
        SystemArgument1: PVOID,
        SystemArgument2: PVOID,
    ),
>;

/// The `Type`/`Importance`/`Number` view of `KDPC`'s first union.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KDPC_TARGET {
    pub Type: UCHAR,
    pub Importance: UCHAR,
    pub Number: USHORT,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union KDPC_0 {
    pub TargetInfoAsUlong: ULONG,
    pub s: KDPC_TARGET,
}

/// `KDPC` (x64: 64 bytes). Opaque: initialise with KeInitializeDpc.
/// <https://learn.microsoft.com/windows-hardware/drivers/kernel/introduction-to-dpc-objects>
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KDPC {
    pub Anonymous: KDPC_0,
    pub DpcListEntry: SINGLE_LIST_ENTRY,
    pub ProcessorHistory: KAFFINITY,
    pub DeferredRoutine: PKDEFERRED_ROUTINE,
    pub DeferredContext: PVOID,
    pub SystemArgument1: PVOID,
    pub SystemArgument2: PVOID,
    pub DpcData: PVOID,
}
pub type PKDPC = *mut KDPC;
pub type PRKDPC = *mut KDPC;

/// `KTIMER` (x64: 64 bytes). Opaque: initialise with KeInitializeTimer(Ex).
/// <https://learn.microsoft.com/windows-hardware/drivers/kernel/timer-objects-and-dpcs>
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KTIMER {
    pub Header: DISPATCHER_HEADER,
    pub DueTime: ULARGE_INTEGER,
    pub TimerListEntry: LIST_ENTRY,
    pub Dpc: PKDPC,
    pub Processor: ULONG,
    pub Period: ULONG,
}
pub type PKTIMER = *mut KTIMER;

/// `EX_RUNDOWN_REF` (x64: 8 bytes). Opaque: use the Ex*RundownProtection routines.
/// <https://learn.microsoft.com/windows-hardware/drivers/kernel/run-down-protection>
#[repr(C)]
#[derive(Clone, Copy)]
pub union EX_RUNDOWN_REF {
    pub Count: ULONG_PTR,
    pub Ptr: PVOID,
}
pub type PEX_RUNDOWN_REF = *mut EX_RUNDOWN_REF;

impl EX_RUNDOWN_REF {
    /// The state ExInitializeRundownProtection produces (a zero count), for static
    /// initialisers; still call ExInitializeRundownProtection before use.
    pub const fn zeroed() -> Self {
        EX_RUNDOWN_REF { Count: 0 }
    }
}

/// Opaque kernel objects only ever handled through pointers.
macro_rules! opaque {
    ($($(#[$m:meta])* $name:ident;)*) => {
        $(
            $(#[$m])*
            #[repr(C)]
            pub struct $name {
                _private: [u8; 0],
                _not_send_sync: core::marker::PhantomData<*mut u8>,
            }
        )*
    };
}

opaque! {
    /// `KPROCESS` / `EPROCESS`: opaque.
    KPROCESS;
    /// `KTHREAD` / `ETHREAD`: opaque.
    KTHREAD;
    /// `OBJECT_TYPE`: opaque.
    OBJECT_TYPE;
    /// `ACCESS_STATE`: not used by this crate's callers; opaque.
    ACCESS_STATE;
}

pub type PEPROCESS = *mut KPROCESS;
pub type PKPROCESS = *mut KPROCESS;
pub type PETHREAD = *mut KTHREAD;
pub type PKTHREAD = *mut KTHREAD;
pub type POBJECT_TYPE = *mut OBJECT_TYPE;
pub type PACCESS_STATE = *mut ACCESS_STATE;

/// `KSTART_ROUTINE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-kstart_routine>
pub type PKSTART_ROUTINE = Option<unsafe extern "win64" fn(StartContext: PVOID)>;

/// `OBJECT_HANDLE_INFORMATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OBJECT_HANDLE_INFORMATION {
    pub HandleAttributes: ULONG,
    pub GrantedAccess: crate::ntdef::ACCESS_MASK,
}
pub type POBJECT_HANDLE_INFORMATION = *mut OBJECT_HANDLE_INFORMATION;

// Pool types (ExAllocatePoolWithTag): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ne-wdm-_pool_type>
pub type POOL_TYPE = i32;
/// Executable non-paged pool: what HVCI-compatible drivers must not allocate.
pub const NonPagedPool: POOL_TYPE = 0;
pub const PagedPool: POOL_TYPE = 1;
/// Non-executable non-paged pool (Windows 8 and later).
pub const NonPagedPoolNx: POOL_TYPE = 512;

// Pool (ExAllocatePool2): <https://learn.microsoft.com/windows-hardware/drivers/kernel/pool_flags>
pub const POOL_FLAG_REQUIRED_START: u64 = 0x0000_0000_0000_0001;
pub const POOL_FLAG_USE_QUOTA: u64 = 0x0000_0000_0000_0001;
pub const POOL_FLAG_UNINITIALIZED: u64 = 0x0000_0000_0000_0002;
pub const POOL_FLAG_SESSION: u64 = 0x0000_0000_0000_0004;
pub const POOL_FLAG_CACHE_ALIGNED: u64 = 0x0000_0000_0000_0008;
pub const POOL_FLAG_RESERVED1: u64 = 0x0000_0000_0000_0010;
pub const POOL_FLAG_RAISE_ON_FAILURE: u64 = 0x0000_0000_0000_0020;
pub const POOL_FLAG_NON_PAGED: u64 = 0x0000_0000_0000_0040;
pub const POOL_FLAG_NON_PAGED_EXECUTE: u64 = 0x0000_0000_0000_0080;
pub const POOL_FLAG_PAGED: u64 = 0x0000_0000_0000_0100;
pub const POOL_FLAG_RESERVED2: u64 = 0x0000_0000_0000_0200;
pub const POOL_FLAG_RESERVED3: u64 = 0x0000_0000_0000_0400;
pub const POOL_FLAG_REQUIRED_END: u64 = 0x0000_0000_8000_0000;
pub const POOL_FLAG_OPTIONAL_START: u64 = 0x0000_0001_0000_0000;
pub const POOL_FLAG_SPECIAL_POOL: u64 = 0x0000_0001_0000_0000;
pub const POOL_FLAG_OPTIONAL_END: u64 = 0x8000_0000_0000_0000;

// Debug print filter levels (dpfilter.h): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-dbgprintex>
pub const DPFLTR_IHVNETWORK_ID: ULONG = 80;
pub const DPFLTR_IHVDRIVER_ID: ULONG = 77;
pub const DPFLTR_DEFAULT_ID: ULONG = 101;
pub const DPFLTR_ERROR_LEVEL: ULONG = 0;
pub const DPFLTR_WARNING_LEVEL: ULONG = 1;
pub const DPFLTR_TRACE_LEVEL: ULONG = 2;
pub const DPFLTR_INFO_LEVEL: ULONG = 3;

// Registry (wdm.h): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_key_value_partial_information>
/// `KEY_VALUE_INFORMATION_CLASS`.
pub type KEY_VALUE_INFORMATION_CLASS = i32;
pub const KeyValueBasicInformation: KEY_VALUE_INFORMATION_CLASS = 0;
pub const KeyValueFullInformation: KEY_VALUE_INFORMATION_CLASS = 1;
pub const KeyValuePartialInformation: KEY_VALUE_INFORMATION_CLASS = 2;

/// `KEY_VALUE_PARTIAL_INFORMATION`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_key_value_partial_information>
/// `Data` is a variable-length tail (declared `UCHAR Data[1]`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataLength: ULONG,
    pub Data: [UCHAR; 1],
}
pub type PKEY_VALUE_PARTIAL_INFORMATION = *mut KEY_VALUE_PARTIAL_INFORMATION;

pub const REG_NONE: ULONG = 0;
pub const REG_SZ: ULONG = 1;
pub const REG_EXPAND_SZ: ULONG = 2;
pub const REG_BINARY: ULONG = 3;
pub const REG_DWORD: ULONG = 4;
pub const REG_MULTI_SZ: ULONG = 7;
pub const REG_QWORD: ULONG = 11;

/// `WORK_QUEUE_TYPE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ne-wdm-_work_queue_type>
pub type WORK_QUEUE_TYPE = i32;
pub const CriticalWorkQueue: WORK_QUEUE_TYPE = 0;
pub const DelayedWorkQueue: WORK_QUEUE_TYPE = 1;
pub const HyperCriticalWorkQueue: WORK_QUEUE_TYPE = 2;
pub const NormalWorkQueue: WORK_QUEUE_TYPE = 3;

/// `MEMORY_CACHING_TYPE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ne-wdm-_memory_caching_type>
pub type MEMORY_CACHING_TYPE = i32;
pub const MmNonCached: MEMORY_CACHING_TYPE = 0;
pub const MmCached: MEMORY_CACHING_TYPE = 1;
pub const MmWriteCombined: MEMORY_CACHING_TYPE = 2;

/// `MM_PAGE_PRIORITY` (plus the MdlMapping* flags ORed into it).
pub type MM_PAGE_PRIORITY = u32;
pub const LowPagePriority: MM_PAGE_PRIORITY = 0;
pub const NormalPagePriority: MM_PAGE_PRIORITY = 16;
pub const HighPagePriority: MM_PAGE_PRIORITY = 32;
pub const MdlMappingNoWrite: MM_PAGE_PRIORITY = 0x8000_0000;
pub const MdlMappingNoExecute: MM_PAGE_PRIORITY = 0x4000_0000;
