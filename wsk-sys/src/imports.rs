//! Functions (and one variable) the driver imports, by DLL.
//!
//! On `target_os = "windows"` each block is `raw-dylib` + `+verbatim`, so rustc writes the
//! import entries itself and no WDK import library is needed. Elsewhere the same
//! declarations are plain `extern "win64"` symbols that `wsk-sim` defines (raw-dylib is
//! an error off Windows, E0455). Every kernel import and callback type is `extern "win64"`
//! (the Microsoft x64 convention) on every OS: on Windows x64 it is what "system" means,
//! and on Linux it lets wsk-sim call, and be called by, the host-built driver and the
//! shipped PE image alike ("system" there would mean System V).
//!
//! Each item's doc page is under <https://learn.microsoft.com/windows-hardware/drivers/ddi/>
//! (wdm/nf-wdm-<name>, ntddk/nf-ntddk-<name>, ntifs/nf-ntifs-<name>, wsk/nf-wsk-<name>).

use crate::io::{PDEVICE_OBJECT, PDRIVER_OBJECT, PIO_WORKITEM, PIO_WORKITEM_ROUTINE, PIRP, PMDL};
use crate::ke::{
    EVENT_TYPE, KEY_VALUE_INFORMATION_CLASS, KIRQL, KPROCESSOR_MODE, KWAIT_REASON,
    MEMORY_CACHING_TYPE, PACCESS_STATE, PEX_RUNDOWN_REF, PKDEFERRED_ROUTINE, PKSPIN_LOCK,
    PKSTART_ROUTINE, PKTIMER, POBJECT_HANDLE_INFORMATION, POBJECT_TYPE, POOL_TYPE, PRKDPC,
    PRKEVENT, TIMER_TYPE, WORK_QUEUE_TYPE,
};
use crate::ntdef::{
    ACCESS_MASK, BOOLEAN, CCHAR, DEVICE_TYPE, HANDLE, KPRIORITY, LARGE_INTEGER, LONG, LONG_PTR,
    NTSTATUS, PCLIENT_ID, PCWSTR, PHANDLE, PLARGE_INTEGER, POBJECT_ATTRIBUTES, PPROCESSOR_NUMBER,
    PULONG, PUNICODE_STRING, PVOID, SECURITY_INFORMATION, SIZE_T, ULONG, ULONG_PTR, USHORT,
};
use crate::se::{PACL, PSECURITY_DESCRIPTOR, PSID};
use crate::wsk::{
    PWSK_CLIENT_NPI, PWSK_PROVIDER_CHARACTERISTICS, PWSK_PROVIDER_NPI, PWSK_REGISTRATION,
};

#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "win64" {
    // Pool. ExAllocatePool2 (Windows 10 2004+) is not imported: it is looked up at run time
    // ([`crate::runtime`]); this is the fallback where it is missing (1809 / Server 2019).
    /// Deprecated from Windows 10 2004 in favour of ExAllocatePool2; the block is not zeroed.
    pub fn ExAllocatePoolWithTag(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    /// PASSIVE_LEVEL. The address of a routine ntoskrnl.exe or HAL.dll exports, or NULL.
    pub fn MmGetSystemRoutineAddress(SystemRoutineName: PUNICODE_STRING) -> PVOID;

    // IRPs.
    pub fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> PIRP;
    pub fn IoFreeIrp(Irp: PIRP);
    pub fn IoReuseIrp(Irp: PIRP, Iostatus: NTSTATUS);
    pub fn IoInitializeIrp(Irp: PIRP, PacketSize: USHORT, StackSize: CCHAR);
    /// Called through the `IoCompleteRequest` macro ([`crate::IoCompleteRequest`]).
    pub fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);
    pub fn IoCancelIrp(Irp: PIRP) -> BOOLEAN;

    // MDLs.
    pub fn IoAllocateMdl(
        VirtualAddress: PVOID,
        Length: ULONG,
        SecondaryBuffer: BOOLEAN,
        ChargeQuota: BOOLEAN,
        Irp: PIRP,
    ) -> PMDL;
    pub fn IoFreeMdl(Mdl: PMDL);
    pub fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL);
    pub fn MmMapLockedPagesSpecifyCache(
        MemoryDescriptorList: PMDL,
        AccessMode: KPROCESSOR_MODE,
        CacheType: MEMORY_CACHING_TYPE,
        RequestedAddress: PVOID,
        BugCheckOnFailure: ULONG,
        Priority: ULONG,
    ) -> PVOID;

    // Spin locks (real exports on x64; KeInitializeSpinLock is not: see crate::inline).
    pub fn KeAcquireSpinLockRaiseToDpc(SpinLock: PKSPIN_LOCK) -> KIRQL;
    pub fn KeReleaseSpinLock(SpinLock: PKSPIN_LOCK, NewIrql: KIRQL);
    pub fn KeAcquireSpinLockAtDpcLevel(SpinLock: PKSPIN_LOCK);
    pub fn KeReleaseSpinLockFromDpcLevel(SpinLock: PKSPIN_LOCK);

    // Events and waits.
    pub fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN);
    pub fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
    pub fn KeClearEvent(Event: PRKEVENT);
    pub fn KeWaitForSingleObject(
        Object: PVOID,
        WaitReason: KWAIT_REASON,
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
    ) -> NTSTATUS;
    pub fn KeDelayExecutionThread(
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Interval: PLARGE_INTEGER,
    ) -> NTSTATUS;

    // Processors.
    pub fn KeGetCurrentProcessorNumberEx(ProcNumber: PPROCESSOR_NUMBER) -> ULONG;
    pub fn KeQueryActiveProcessorCountEx(GroupNumber: USHORT) -> ULONG;

    // Timers and DPCs.
    pub fn KeInitializeTimer(Timer: PKTIMER);
    pub fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE);
    pub fn KeSetTimer(Timer: PKTIMER, DueTime: LARGE_INTEGER, Dpc: PRKDPC) -> BOOLEAN;
    pub fn KeSetTimerEx(
        Timer: PKTIMER,
        DueTime: LARGE_INTEGER,
        Period: LONG,
        Dpc: PRKDPC,
    ) -> BOOLEAN;
    pub fn KeCancelTimer(Timer: PKTIMER) -> BOOLEAN;
    pub fn KeInitializeDpc(
        Dpc: PRKDPC,
        DeferredRoutine: PKDEFERRED_ROUTINE,
        DeferredContext: PVOID,
    );
    pub fn KeInsertQueueDpc(Dpc: PRKDPC, SystemArgument1: PVOID, SystemArgument2: PVOID)
        -> BOOLEAN;

    // Rundown protection.
    pub fn ExInitializeRundownProtection(RunRef: PEX_RUNDOWN_REF);
    pub fn ExAcquireRundownProtection(RunRef: PEX_RUNDOWN_REF) -> BOOLEAN;
    pub fn ExReleaseRundownProtection(RunRef: PEX_RUNDOWN_REF);
    pub fn ExWaitForRundownProtectionRelease(RunRef: PEX_RUNDOWN_REF);
    pub fn ExReInitializeRundownProtection(RunRef: PEX_RUNDOWN_REF);
    pub fn ExRundownCompleted(RunRef: PEX_RUNDOWN_REF);

    // Work items and system threads.
    pub fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PIO_WORKITEM;
    pub fn IoQueueWorkItem(
        IoWorkItem: PIO_WORKITEM,
        WorkerRoutine: PIO_WORKITEM_ROUTINE,
        QueueType: WORK_QUEUE_TYPE,
        Context: PVOID,
    );
    pub fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM);
    pub fn PsCreateSystemThread(
        ThreadHandle: PHANDLE,
        DesiredAccess: ULONG,
        ObjectAttributes: POBJECT_ATTRIBUTES,
        ProcessHandle: HANDLE,
        ClientId: PCLIENT_ID,
        StartRoutine: PKSTART_ROUTINE,
        StartContext: PVOID,
    ) -> NTSTATUS;
    pub fn PsTerminateSystemThread(ExitStatus: NTSTATUS) -> NTSTATUS;

    // Objects and handles.
    pub fn ObReferenceObjectByHandle(
        Handle: HANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectType: POBJECT_TYPE,
        AccessMode: KPROCESSOR_MODE,
        Object: *mut PVOID,
        HandleInformation: POBJECT_HANDLE_INFORMATION,
    ) -> NTSTATUS;
    /// Called through the `ObDereferenceObject` macro ([`crate::ObDereferenceObject`]).
    pub fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR;
    pub fn ObOpenObjectByPointer(
        Object: PVOID,
        HandleAttributes: ULONG,
        PassedAccessState: PACCESS_STATE,
        DesiredAccess: ACCESS_MASK,
        ObjectType: POBJECT_TYPE,
        AccessMode: KPROCESSOR_MODE,
        Handle: PHANDLE,
    ) -> NTSTATUS;
    pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
    /// Waits on the object a handle refers to (a thread handle: until the thread has ended).
    pub fn ZwWaitForSingleObject(
        Handle: HANDLE,
        Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
    ) -> NTSTATUS;

    // Registry.
    pub fn ZwOpenKey(
        KeyHandle: PHANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectAttributes: POBJECT_ATTRIBUTES,
    ) -> NTSTATUS;
    pub fn ZwQueryValueKey(
        KeyHandle: HANDLE,
        ValueName: PUNICODE_STRING,
        KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
        KeyValueInformation: PVOID,
        Length: ULONG,
        ResultLength: PULONG,
    ) -> NTSTATUS;
    pub fn RtlInitUnicodeString(DestinationString: PUNICODE_STRING, SourceString: PCWSTR);

    // Control device.
    pub fn IoCreateDevice(
        DriverObject: PDRIVER_OBJECT,
        DeviceExtensionSize: ULONG,
        DeviceName: PUNICODE_STRING,
        DeviceType: DEVICE_TYPE,
        DeviceCharacteristics: ULONG,
        Exclusive: BOOLEAN,
        DeviceObject: *mut PDEVICE_OBJECT,
    ) -> NTSTATUS;
    pub fn IoDeleteDevice(DeviceObject: PDEVICE_OBJECT);
    pub fn IoCreateSymbolicLink(
        SymbolicLinkName: PUNICODE_STRING,
        DeviceName: PUNICODE_STRING,
    ) -> NTSTATUS;
    pub fn IoDeleteSymbolicLink(SymbolicLinkName: PUNICODE_STRING) -> NTSTATUS;

    // Security (IoCreateDeviceSecure is in the static wdmsec.lib, so the DACL is built here).
    pub fn RtlCreateSecurityDescriptor(
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
        Revision: ULONG,
    ) -> NTSTATUS;
    pub fn RtlSetDaclSecurityDescriptor(
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
        DaclPresent: BOOLEAN,
        Dacl: PACL,
        DaclDefaulted: BOOLEAN,
    ) -> NTSTATUS;
    pub fn RtlCreateAcl(Acl: PACL, AclLength: ULONG, AclRevision: ULONG) -> NTSTATUS;
    pub fn RtlAddAccessAllowedAce(
        Acl: PACL,
        AceRevision: ULONG,
        AccessMask: ACCESS_MASK,
        Sid: PSID,
    ) -> NTSTATUS;
    pub fn RtlLengthSid(Sid: PSID) -> ULONG;
    pub fn ZwSetSecurityObject(
        Handle: HANDLE,
        SecurityInformation: SECURITY_INFORMATION,
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
    ) -> NTSTATUS;
    // No SeExports: the two SIDs the control device needs are built locally (a data import
    // ties the image to one kernel's layout of SE_EXPORTS; Wine exports it as a code stub).

    /// C-variadic in C (`DbgPrintEx(ComponentId, Level, Format, ...)`). Declared with one
    /// fixed argument: always call it as `(id, level, "%s\0", text_nul_terminated)`; the
    /// x64 calling sequence is the same, and wsk-sim can define it in stable Rust.
    pub fn DbgPrintEx(
        ComponentId: ULONG,
        Level: ULONG,
        Format: *const u8,
        Arg: *const u8,
    ) -> NTSTATUS;

    /// Stops the system with a stop code and four parameters; never returns
    /// (DECLSPEC_NORETURN in wdm.h).
    pub fn KeBugCheckEx(
        BugCheckCode: ULONG,
        BugCheckParameter1: ULONG_PTR,
        BugCheckParameter2: ULONG_PTR,
        BugCheckParameter3: ULONG_PTR,
        BugCheckParameter4: ULONG_PTR,
    ) -> !;
}

// The C runtime routines the prebuilt `core` calls; on Windows ntoskrnl.exe exports them.
// On other targets the host's libc provides them, so they are declared for Windows only.
#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "C" {
    pub fn memcpy(
        dest: *mut core::ffi::c_void,
        src: *const core::ffi::c_void,
        n: usize,
    ) -> *mut core::ffi::c_void;
    pub fn memmove(
        dest: *mut core::ffi::c_void,
        src: *const core::ffi::c_void,
        n: usize,
    ) -> *mut core::ffi::c_void;
    pub fn memset(dest: *mut core::ffi::c_void, c: i32, n: usize) -> *mut core::ffi::c_void;
    pub fn memcmp(a: *const core::ffi::c_void, b: *const core::ffi::c_void, n: usize) -> i32;
}

#[cfg_attr(
    target_os = "windows",
    link(name = "HAL.dll", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "win64" {
    /// Exported by HAL.dll on x64 (forwarded to ntoskrnl on current Windows).
    pub fn KeQueryPerformanceCounter(PerformanceFrequency: PLARGE_INTEGER) -> LARGE_INTEGER;
}

#[cfg_attr(
    target_os = "windows",
    link(name = "NETIO.SYS", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "win64" {
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nf-wsk-wskregister> (PASSIVE_LEVEL)
    pub fn WskRegister(
        WskClientNpi: PWSK_CLIENT_NPI,
        WskRegistration: PWSK_REGISTRATION,
    ) -> NTSTATUS;
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nf-wsk-wskderegister> (PASSIVE_LEVEL;
    /// waits for every capture to be released and every socket closed)
    pub fn WskDeregister(WskRegistration: PWSK_REGISTRATION);
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nf-wsk-wskcaptureprovidernpi>
    /// (PASSIVE_LEVEL unless `WaitTimeout == WSK_NO_WAIT`, then <= DISPATCH_LEVEL)
    pub fn WskCaptureProviderNPI(
        WskRegistration: PWSK_REGISTRATION,
        WaitTimeout: ULONG,
        WskProviderNpi: PWSK_PROVIDER_NPI,
    ) -> NTSTATUS;
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nf-wsk-wskreleaseprovidernpi> (<= DISPATCH_LEVEL)
    pub fn WskReleaseProviderNPI(WskRegistration: PWSK_REGISTRATION);
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nf-wsk-wskqueryprovidercharacteristics>
    pub fn WskQueryProviderCharacteristics(
        WskRegistration: PWSK_REGISTRATION,
        WskProviderCharacteristics: PWSK_PROVIDER_CHARACTERISTICS,
    ) -> NTSTATUS;
}
