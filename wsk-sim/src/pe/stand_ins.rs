//! What an image's imports bind to: the sim's ntoskrnl.exe / HAL.dll / NETIO.SYS.
//!
//! Each line is one export, by the DLL that exports it on Windows. A function's address is
//! wsk-sys's extern declaration of it (wsk-sim defines every one as `#[no_mangle] extern
//! "win64"`, so the declaration resolves to the sim's stand-in whatever module holds it);
//! a variable would be bound to the address of the sim's variable, as the kernel binds data
//! imports (the driver imports none since it builds its SIDs itself); the C runtime routines
//! bind to this module's Microsoft-convention versions ([`super::crt`]). A new import of the
//! driver is one more name here (a test checks that every import wsk-sys declares has its
//! line). The same table answers MmGetSystemRoutineAddress, so routines the driver only looks
//! up at run time (ExAllocatePool2) are lines too; a routine newer than the run's
//! `windows_build` is missing for both ([`StandIn::since_build`]).

use super::crt;

/// One export the sim provides to images.
#[derive(Debug, Clone, Copy)]
pub struct StandIn {
    pub dll: &'static str,
    pub name: &'static str,
    pub address: usize,
    /// A variable (bound to its address), not a function.
    pub data: bool,
    /// The first Windows build that exports it (0: every build the sim stands in for).
    pub since_build: u32,
}

/// Exports newer than the driver's minimum Windows (10 1809, build 17763), with the first
/// build that has them (from each routine's Microsoft page, docs/windows-versions.md).
pub const NEWER_THAN_MINIMUM: &[(&str, u32)] =
    &[("ExAllocatePool2", wsk_sys::EX_ALLOCATE_POOL2_SINCE_BUILD)];

/// Lines for routines wsk-sys does not import but looks up at run time (wsk-sys's
/// `runtime` module): the table's only names beyond wsk-sys's imports.
pub const LOOKED_UP: &[&str] = &["ExAllocatePool2"];

macro_rules! address {
    ($name:ident) => {
        wsk_sys::$name as *const () as usize
    };
    ($name:ident, $addr:expr) => {
        $addr as usize
    };
}

macro_rules! block {
    ($v:ident, $dll:literal, $data:expr, { $($name:ident $(= $addr:expr)?),* $(,)? }) => {
        $($v.push(StandIn {
            dll: $dll,
            name: stringify!($name),
            address: address!($name $(, $addr)?),
            data: $data,
            since_build: NEWER_THAN_MINIMUM
                .iter()
                .find(|n| n.0 == stringify!($name))
                .map_or(0, |n| n.1),
        });)*
    };
}

macro_rules! stand_ins {
    ($($dll:literal $($kind:ident)? { $($body:tt)* })*) => {
        /// Every export the sim provides, by DLL.
        #[allow(clippy::vec_init_then_push)] // one push per line of the table
        pub fn table() -> Vec<StandIn> {
            let mut v = Vec::new();
            $(block!(v, $dll, stringify!($($kind)?) == "data", { $($body)* });)*
            v
        }
    };
}

stand_ins! {
    "ntoskrnl.exe" {
        ExAllocatePool2, ExAllocatePoolWithTag, ExFreePoolWithTag, MmGetSystemRoutineAddress,
        IoAllocateIrp, IoFreeIrp, IoReuseIrp, IoInitializeIrp, IofCompleteRequest, IoCancelIrp,
        IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool, MmMapLockedPagesSpecifyCache,
        KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock, KeAcquireSpinLockAtDpcLevel,
        KeReleaseSpinLockFromDpcLevel,
        KeInitializeEvent, KeSetEvent, KeClearEvent, KeWaitForSingleObject,
        KeDelayExecutionThread,
        KeGetCurrentProcessorNumberEx, KeQueryActiveProcessorCountEx,
        KeInitializeTimer, KeInitializeTimerEx, KeSetTimer, KeSetTimerEx, KeCancelTimer,
        KeInitializeDpc, KeInsertQueueDpc,
        ExInitializeRundownProtection, ExAcquireRundownProtection, ExReleaseRundownProtection,
        ExWaitForRundownProtectionRelease, ExReInitializeRundownProtection, ExRundownCompleted,
        IoAllocateWorkItem, IoQueueWorkItem, IoFreeWorkItem,
        PsCreateSystemThread, PsTerminateSystemThread,
        ObReferenceObjectByHandle, ObfDereferenceObject, ObOpenObjectByPointer, ZwClose, ZwWaitForSingleObject,
        ZwOpenKey, ZwQueryValueKey, RtlInitUnicodeString,
        IoCreateDevice, IoDeleteDevice, IoCreateSymbolicLink, IoDeleteSymbolicLink,
        RtlCreateSecurityDescriptor, RtlSetDaclSecurityDescriptor, RtlCreateAcl,
        RtlAddAccessAllowedAce, RtlLengthSid, ZwSetSecurityObject,
        DbgPrintEx, KeBugCheckEx,
        memcpy = crt::memcpy as *const (),
        memmove = crt::memmove as *const (),
        memset = crt::memset as *const (),
        memcmp = crt::memcmp as *const (),
    }
    "HAL.dll" {
        KeQueryPerformanceCounter,
    }
    "NETIO.SYS" {
        WskRegister, WskDeregister, WskCaptureProviderNPI, WskReleaseProviderNPI,
        WskQueryProviderCharacteristics,
    }
}

/// The address bound to `dll!name` (DLL names compare case-insensitively, as Windows does).
pub fn lookup(table: &[StandIn], dll: &str, name: &str) -> Option<usize> {
    find(table, dll, name).map(|s| s.address)
}

/// The stand-in for `dll!name`.
pub fn find<'a>(table: &'a [StandIn], dll: &str, name: &str) -> Option<&'a StandIn> {
    table
        .iter()
        .find(|s| s.dll.eq_ignore_ascii_case(dll) && s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every function and variable wsk-sys imports (read from its source, by the DLL its
    /// `link(name = ...)` names) has a stand-in line, and no line names something wsk-sys
    /// does not import: the table cannot fall behind the driver's imports unnoticed.
    #[test]
    fn table_covers_every_wsk_sys_import() {
        let src = include_str!("../../../wsk-sys/src/imports.rs");
        let mut declared = Vec::new();
        let mut dll = String::new();
        for line in src.lines() {
            let l = line.trim();
            if let Some(i) = l.find("link(name = \"") {
                let rest = &l[i + 13..];
                dll = rest[..rest.find('"').unwrap()].to_string();
            }
            for kw in ["pub fn ", "pub static "] {
                if let Some(rest) = l.strip_prefix(kw) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    declared.push((dll.clone(), name));
                }
            }
        }
        assert!(declared.len() > 40, "parsed too few imports: {declared:?}");
        let table = table();
        let missing: Vec<String> = declared
            .iter()
            .filter(|(d, n)| lookup(&table, d, n).is_none())
            .map(|(d, n)| format!("{d}!{n}"))
            .collect();
        assert!(
            missing.is_empty(),
            "imports without a stand-in: {missing:?}"
        );
        let extra: Vec<String> = table
            .iter()
            .filter(|s| {
                !declared
                    .iter()
                    .any(|(d, n)| d.eq_ignore_ascii_case(s.dll) && n == s.name)
                    && !LOOKED_UP.contains(&s.name)
            })
            .map(|s| format!("{}!{}", s.dll, s.name))
            .collect();
        assert!(
            extra.is_empty(),
            "stand-ins wsk-sys does not import: {extra:?}"
        );
        for s in &table {
            assert_ne!(s.address, 0, "{}!{} has no address", s.dll, s.name);
            assert!(
                !s.data,
                "{}!{}: the driver imports no variable",
                s.dll, s.name
            );
        }
        // What is only looked up is declared in wsk-sys's runtime module, not imported.
        let runtime = include_str!("../../../wsk-sys/src/runtime.rs");
        for name in LOOKED_UP {
            assert!(lookup(&table, "ntoskrnl.exe", name).is_some(), "{name}");
            assert!(
                runtime.contains(&format!("pub fn {name}(")),
                "{name} is not in wsk-sys/src/runtime.rs"
            );
            assert!(
                !declared.iter().any(|(_, n)| n == name),
                "{name} is imported"
            );
        }
        assert!(NEWER_THAN_MINIMUM
            .iter()
            .all(|(n, b)| *b > 17763 && LOOKED_UP.contains(n)));
    }
}
