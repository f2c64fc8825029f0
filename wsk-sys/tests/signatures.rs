//! Every imported function that windows-sys also declares has the same number of
//! parameters and the same size and alignment for each parameter and the return value
//! (a wrong arity does not compile). The signatures are read at compile time only: the
//! fn pointers exist inside `const` blocks, so nothing links against the kernel symbols.
//! DbgPrintEx is left out on purpose: C-variadic in windows-sys, fixed-arity here.
#![cfg(target_arch = "x86_64")]

use core::mem::{align_of, size_of};

/// Up to 8 (size, align) pairs for the parameters (unused slots 0), then the return's size.
type Shape = ([(usize, usize); 8], usize);

// Ours are `extern "win64"` on every OS, windows-sys's `extern "system"`: on Linux those are
// different conventions, so each arity has one shape function per spelling.
macro_rules! sig_fns {
    ($($name:ident $sys:ident: $($p:ident)*;)*) => { $(
        #[allow(non_snake_case, unused_mut, unused_assignments)]
        const fn $name<$($p,)* R>(_f: unsafe extern "win64" fn($($p),*) -> R) -> Shape {
            let mut params = [(0usize, 0usize); 8];
            let mut i = 0;
            $( params[i] = (size_of::<$p>(), align_of::<$p>()); i += 1; )*
            (params, size_of::<R>())
        }
        #[allow(non_snake_case, unused_mut, unused_assignments)]
        const fn $sys<$($p,)* R>(_f: unsafe extern "system" fn($($p),*) -> R) -> Shape {
            let mut params = [(0usize, 0usize); 8];
            let mut i = 0;
            $( params[i] = (size_of::<$p>(), align_of::<$p>()); i += 1; )*
            (params, size_of::<R>())
        }
    )* };
}

sig_fns! {
    sig1 sys1: A;
    sig2 sys2: A B;
    sig3 sys3: A B C;
    sig4 sys4: A B C D;
    sig5 sys5: A B C D E;
    sig6 sys6: A B C D E F;
    sig7 sys7: A B C D E F G;
}

/// The windows-sys twin of each ours-shape function.
macro_rules! sys_of {
    (sig1) => {
        sys1
    };
    (sig2) => {
        sys2
    };
    (sig3) => {
        sys3
    };
    (sig4) => {
        sys4
    };
    (sig5) => {
        sys5
    };
    (sig6) => {
        sys6
    };
    (sig7) => {
        sys7
    };
}

macro_rules! same_sig {
    ($sig:ident, $name:ident, $theirs:path) => {
        assert_eq!(
            const { $sig(wsk_sys::$name) },
            const { sys_of!($sig)($theirs) },
            "signature of {} differs from windows-sys",
            stringify!($name)
        );
    };
}

#[test]
fn imports_match_windows_sys_signatures() {
    same_sig!(
        sig1,
        ExAcquireRundownProtection,
        windows_sys::Wdk::System::SystemServices::ExAcquireRundownProtection
    );
    // Looked up at run time: the pointer type the driver calls it through is the declaration's.
    same_sig!(
        sig3,
        ExAllocatePool2,
        windows_sys::Wdk::System::SystemServices::ExAllocatePool2
    );
    let _: wsk_sys::PFN_EX_ALLOCATE_POOL2 = wsk_sys::ExAllocatePool2;
    same_sig!(
        sig3,
        ExAllocatePoolWithTag,
        windows_sys::Wdk::System::SystemServices::ExAllocatePoolWithTag
    );
    same_sig!(
        sig1,
        MmGetSystemRoutineAddress,
        windows_sys::Wdk::System::SystemServices::MmGetSystemRoutineAddress
    );
    same_sig!(
        sig2,
        ExFreePoolWithTag,
        windows_sys::Wdk::System::SystemServices::ExFreePoolWithTag
    );
    same_sig!(
        sig1,
        ExInitializeRundownProtection,
        windows_sys::Wdk::System::SystemServices::ExInitializeRundownProtection
    );
    same_sig!(
        sig1,
        ExReInitializeRundownProtection,
        windows_sys::Wdk::System::SystemServices::ExReInitializeRundownProtection
    );
    same_sig!(
        sig1,
        ExReleaseRundownProtection,
        windows_sys::Wdk::System::SystemServices::ExReleaseRundownProtection
    );
    same_sig!(
        sig1,
        ExRundownCompleted,
        windows_sys::Wdk::System::SystemServices::ExRundownCompleted
    );
    same_sig!(
        sig1,
        ExWaitForRundownProtectionRelease,
        windows_sys::Wdk::System::SystemServices::ExWaitForRundownProtectionRelease
    );
    same_sig!(
        sig2,
        IoAllocateIrp,
        windows_sys::Wdk::System::SystemServices::IoAllocateIrp
    );
    same_sig!(
        sig5,
        IoAllocateMdl,
        windows_sys::Wdk::System::SystemServices::IoAllocateMdl
    );
    same_sig!(
        sig1,
        IoAllocateWorkItem,
        windows_sys::Wdk::System::SystemServices::IoAllocateWorkItem
    );
    same_sig!(
        sig1,
        IoCancelIrp,
        windows_sys::Wdk::System::SystemServices::IoCancelIrp
    );
    same_sig!(
        sig7,
        IoCreateDevice,
        windows_sys::Wdk::System::SystemServices::IoCreateDevice
    );
    same_sig!(
        sig2,
        IoCreateSymbolicLink,
        windows_sys::Wdk::System::SystemServices::IoCreateSymbolicLink
    );
    same_sig!(
        sig1,
        IoDeleteDevice,
        windows_sys::Wdk::System::SystemServices::IoDeleteDevice
    );
    same_sig!(
        sig1,
        IoDeleteSymbolicLink,
        windows_sys::Wdk::System::SystemServices::IoDeleteSymbolicLink
    );
    same_sig!(
        sig1,
        IoFreeIrp,
        windows_sys::Wdk::System::SystemServices::IoFreeIrp
    );
    same_sig!(
        sig1,
        IoFreeMdl,
        windows_sys::Wdk::System::SystemServices::IoFreeMdl
    );
    same_sig!(
        sig1,
        IoFreeWorkItem,
        windows_sys::Wdk::System::SystemServices::IoFreeWorkItem
    );
    same_sig!(
        sig3,
        IoInitializeIrp,
        windows_sys::Wdk::System::SystemServices::IoInitializeIrp
    );
    same_sig!(
        sig4,
        IoQueueWorkItem,
        windows_sys::Wdk::System::SystemServices::IoQueueWorkItem
    );
    same_sig!(
        sig2,
        IoReuseIrp,
        windows_sys::Wdk::System::SystemServices::IoReuseIrp
    );
    same_sig!(
        sig2,
        IofCompleteRequest,
        windows_sys::Wdk::System::SystemServices::IofCompleteRequest
    );
    same_sig!(
        sig1,
        KeCancelTimer,
        windows_sys::Wdk::System::SystemServices::KeCancelTimer
    );
    same_sig!(
        sig1,
        KeClearEvent,
        windows_sys::Wdk::System::SystemServices::KeClearEvent
    );
    same_sig!(
        sig3,
        KeDelayExecutionThread,
        windows_sys::Wdk::System::SystemServices::KeDelayExecutionThread
    );
    same_sig!(
        sig1,
        KeGetCurrentProcessorNumberEx,
        windows_sys::Wdk::System::SystemServices::KeGetCurrentProcessorNumberEx
    );
    same_sig!(
        sig3,
        KeInitializeDpc,
        windows_sys::Wdk::System::SystemServices::KeInitializeDpc
    );
    same_sig!(
        sig3,
        KeInitializeEvent,
        windows_sys::Wdk::System::SystemServices::KeInitializeEvent
    );
    same_sig!(
        sig1,
        KeInitializeTimer,
        windows_sys::Wdk::System::SystemServices::KeInitializeTimer
    );
    same_sig!(
        sig2,
        KeInitializeTimerEx,
        windows_sys::Wdk::System::SystemServices::KeInitializeTimerEx
    );
    same_sig!(
        sig3,
        KeInsertQueueDpc,
        windows_sys::Wdk::System::SystemServices::KeInsertQueueDpc
    );
    same_sig!(
        sig1,
        KeQueryActiveProcessorCountEx,
        windows_sys::Wdk::System::SystemServices::KeQueryActiveProcessorCountEx
    );
    same_sig!(
        sig1,
        KeQueryPerformanceCounter,
        windows_sys::Wdk::System::SystemServices::KeQueryPerformanceCounter
    );
    same_sig!(
        sig3,
        KeSetEvent,
        windows_sys::Wdk::System::SystemServices::KeSetEvent
    );
    same_sig!(
        sig3,
        KeSetTimer,
        windows_sys::Wdk::System::SystemServices::KeSetTimer
    );
    same_sig!(
        sig4,
        KeSetTimerEx,
        windows_sys::Wdk::System::SystemServices::KeSetTimerEx
    );
    same_sig!(
        sig5,
        KeWaitForSingleObject,
        windows_sys::Wdk::System::SystemServices::KeWaitForSingleObject
    );
    same_sig!(
        sig1,
        MmBuildMdlForNonPagedPool,
        windows_sys::Wdk::System::SystemServices::MmBuildMdlForNonPagedPool
    );
    same_sig!(
        sig6,
        MmMapLockedPagesSpecifyCache,
        windows_sys::Wdk::System::SystemServices::MmMapLockedPagesSpecifyCache
    );
    same_sig!(
        sig7,
        ObOpenObjectByPointer,
        windows_sys::Wdk::Storage::FileSystem::ObOpenObjectByPointer
    );
    same_sig!(
        sig6,
        ObReferenceObjectByHandle,
        windows_sys::Wdk::System::SystemServices::ObReferenceObjectByHandle
    );
    same_sig!(
        sig1,
        ObfDereferenceObject,
        windows_sys::Wdk::System::SystemServices::ObfDereferenceObject
    );
    same_sig!(
        sig7,
        PsCreateSystemThread,
        windows_sys::Wdk::System::SystemServices::PsCreateSystemThread
    );
    same_sig!(
        sig1,
        PsTerminateSystemThread,
        windows_sys::Wdk::System::SystemServices::PsTerminateSystemThread
    );
    same_sig!(
        sig4,
        RtlAddAccessAllowedAce,
        windows_sys::Wdk::Storage::FileSystem::RtlAddAccessAllowedAce
    );
    same_sig!(
        sig3,
        RtlCreateAcl,
        windows_sys::Wdk::Storage::FileSystem::RtlCreateAcl
    );
    same_sig!(
        sig2,
        RtlCreateSecurityDescriptor,
        windows_sys::Wdk::System::SystemServices::RtlCreateSecurityDescriptor
    );
    same_sig!(
        sig2,
        RtlInitUnicodeString,
        windows_sys::Win32::System::WindowsProgramming::RtlInitUnicodeString
    );
    same_sig!(
        sig1,
        RtlLengthSid,
        windows_sys::Wdk::Storage::FileSystem::RtlLengthSid
    );
    same_sig!(
        sig4,
        RtlSetDaclSecurityDescriptor,
        windows_sys::Wdk::System::SystemServices::RtlSetDaclSecurityDescriptor
    );
    same_sig!(
        sig1,
        ZwClose,
        windows_sys::Wdk::System::SystemServices::ZwClose
    );
    same_sig!(
        sig3,
        ZwOpenKey,
        windows_sys::Wdk::System::Registry::ZwOpenKey
    );
    same_sig!(
        sig6,
        ZwQueryValueKey,
        windows_sys::Wdk::System::Registry::ZwQueryValueKey
    );
    same_sig!(
        sig3,
        ZwSetSecurityObject,
        windows_sys::Wdk::Storage::FileSystem::ZwSetSecurityObject
    );
}
