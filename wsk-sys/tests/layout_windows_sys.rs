//! Layout of every wsk-sys struct that windows-sys also defines, checked against
//! windows-sys (generated from Microsoft's Win32/WDK metadata). Where the two disagree the
//! test says which one the C header supports and asserts the header's value.
#![cfg(target_arch = "x86_64")]

#[macro_use]
mod common;

use windows_sys::Wdk::Foundation as wf;
use windows_sys::Wdk::Storage::FileSystem as wfs;
use windows_sys::Wdk::System::SystemServices as wss;
use windows_sys::Win32::Foundation as w32f;
use windows_sys::Win32::Networking::WinSock as ws;
use windows_sys::Win32::Security as wsec;
use windows_sys::Win32::System::Kernel as wk;
use windows_sys::Win32::System::WindowsProgramming as wwp;
use windows_sys::Win32::System::IO as wio;
use wsk_sys as k;

#[test]
fn basic_types() {
    same_size_align!(k::LIST_ENTRY, wk::LIST_ENTRY);
    same_offsets!(k::LIST_ENTRY, wk::LIST_ENTRY, [Flink, Blink]);
    same_size_align!(k::SINGLE_LIST_ENTRY, wk::SINGLE_LIST_ENTRY);
    same_offsets!(k::SINGLE_LIST_ENTRY, wk::SINGLE_LIST_ENTRY, [Next]);
    same_size_align!(k::UNICODE_STRING, w32f::UNICODE_STRING);
    same_offsets!(
        k::UNICODE_STRING,
        w32f::UNICODE_STRING,
        [Length, MaximumLength, Buffer]
    );
    // windows-sys spells LARGE_INTEGER as a plain i64; the union must match it.
    same_size_align!(k::LARGE_INTEGER, i64);
    same_size_align!(k::ULARGE_INTEGER, u64);
    same_size_align!(k::GUID, windows_sys::core::GUID);
    same_offset!(k::GUID, Data1; windows_sys::core::GUID, data1);
    same_offset!(k::GUID, Data2; windows_sys::core::GUID, data2);
    same_offset!(k::GUID, Data3; windows_sys::core::GUID, data3);
    same_offset!(k::GUID, Data4; windows_sys::core::GUID, data4);
    same_size_align!(k::LUID, w32f::LUID);
    same_offsets!(k::LUID, w32f::LUID, [LowPart, HighPart]);
    same_size_align!(k::OBJECT_ATTRIBUTES, wf::OBJECT_ATTRIBUTES);
    same_offsets!(
        k::OBJECT_ATTRIBUTES,
        wf::OBJECT_ATTRIBUTES,
        [
            Length,
            RootDirectory,
            ObjectName,
            Attributes,
            SecurityDescriptor,
            SecurityQualityOfService
        ]
    );
    same_size_align!(k::CLIENT_ID, wwp::CLIENT_ID);
    same_offsets!(k::CLIENT_ID, wwp::CLIENT_ID, [UniqueProcess, UniqueThread]);
    same_size_align!(k::PROCESSOR_NUMBER, wk::PROCESSOR_NUMBER);
    same_offsets!(
        k::PROCESSOR_NUMBER,
        wk::PROCESSOR_NUMBER,
        [Group, Number, Reserved]
    );
}

#[test]
fn dispatcher_objects() {
    same_size_align!(k::DISPATCHER_HEADER, wf::DISPATCHER_HEADER);
    same_offsets!(
        k::DISPATCHER_HEADER,
        wf::DISPATCHER_HEADER,
        [Anonymous, SignalState, WaitListHead]
    );
    same_size_align!(k::DISPATCHER_HEADER_0, wf::DISPATCHER_HEADER_0);
    same_size_align!(k::KEVENT, wf::KEVENT);
    same_offsets!(k::KEVENT, wf::KEVENT, [Header]);
    same_size_align!(k::KDPC, wf::KDPC);
    same_offsets!(
        k::KDPC,
        wf::KDPC,
        [
            Anonymous,
            DpcListEntry,
            ProcessorHistory,
            DeferredRoutine,
            DeferredContext,
            SystemArgument1,
            SystemArgument2,
            DpcData
        ]
    );
    same_offset!(k::KDPC, Anonymous.s.Type; wf::KDPC, Anonymous.Anonymous.Type);
    same_offset!(k::KDPC, Anonymous.s.Importance; wf::KDPC, Anonymous.Anonymous.Importance);
    same_offset!(k::KDPC, Anonymous.s.Number; wf::KDPC, Anonymous.Anonymous.Number);
    same_size_align!(k::EX_RUNDOWN_REF, wss::EX_RUNDOWN_REF);
    same_offset!(k::EX_RUNDOWN_REF, Count; wss::EX_RUNDOWN_REF, Anonymous.Count);
    same_offset!(k::EX_RUNDOWN_REF, Ptr; wss::EX_RUNDOWN_REF, Anonymous.Ptr);
    same_size_align!(
        k::KEY_VALUE_PARTIAL_INFORMATION,
        wss::KEY_VALUE_PARTIAL_INFORMATION
    );
    same_offsets!(
        k::KEY_VALUE_PARTIAL_INFORMATION,
        wss::KEY_VALUE_PARTIAL_INFORMATION,
        [TitleIndex, Type, DataLength, Data]
    );
    same_size_align!(k::OBJECT_HANDLE_INFORMATION, wss::OBJECT_HANDLE_INFORMATION);
    same_offsets!(
        k::OBJECT_HANDLE_INFORMATION,
        wss::OBJECT_HANDLE_INFORMATION,
        [HandleAttributes, GrantedAccess]
    );
}

/// KTIMER: windows-sys omits `ULONG Processor`, which wdm.h declares for every
/// architecture but x86 (`#if !defined(_X86_)`), between `Dpc` and `Period`. The size is
/// 64 either way (56 + 4 + 4 here; 56 + 4 + 4 tail padding there); drivers never touch
/// the fields, so only the size and the common prefix are compared with windows-sys and
/// the tail is checked by hand.
#[test]
fn ktimer() {
    same_size_align!(k::KTIMER, wss::KTIMER);
    same_offsets!(
        k::KTIMER,
        wss::KTIMER,
        [Header, DueTime, TimerListEntry, Dpc]
    );
    hand_layout!(k::KTIMER, size 64, align 8, { Processor = 56, Period = 60 });
}

#[test]
fn io_status_block_and_mdl() {
    same_size_align!(k::IO_STATUS_BLOCK, wio::IO_STATUS_BLOCK);
    same_offset!(k::IO_STATUS_BLOCK, Status; wio::IO_STATUS_BLOCK, Anonymous.Status);
    same_offsets!(k::IO_STATUS_BLOCK, wio::IO_STATUS_BLOCK, [Information]);
    same_size_align!(k::MDL, wf::MDL);
    same_offsets!(
        k::MDL,
        wf::MDL,
        [
            Next,
            Size,
            MdlFlags,
            Process,
            MappedSystemVa,
            StartVa,
            ByteCount,
            ByteOffset
        ]
    );
    // wdm.h (Windows 10+) names the 4 bytes after MdlFlags; windows-sys leaves them as padding.
    hand_layout!(k::MDL, size 48, align 8, { AllocationProcessorNumber = 12, Reserved = 14 });
}

#[test]
fn irp() {
    same_size_align!(k::IRP, wf::IRP);
    same_offsets!(
        k::IRP,
        wf::IRP,
        [
            Type,
            Size,
            MdlAddress,
            Flags,
            AssociatedIrp,
            ThreadListEntry,
            IoStatus,
            RequestorMode,
            PendingReturned,
            StackCount,
            CurrentLocation,
            Cancel,
            CancelIrql,
            ApcEnvironment,
            AllocationFlags,
            UserEvent,
            Overlay,
            CancelRoutine,
            UserBuffer,
            Tail
        ]
    );
    same_offset!(k::IRP, UserIosb; wf::IRP, Anonymous.UserIosb);
    same_offset!(k::IRP, IoStatus.Status; wf::IRP, IoStatus.Anonymous.Status);
    same_offset!(k::IRP, IoStatus.Information; wf::IRP, IoStatus.Information);
    same_offset!(k::IRP, AssociatedIrp.SystemBuffer; wf::IRP, AssociatedIrp.SystemBuffer);
    same_offset!(k::IRP, AssociatedIrp.MasterIrp; wf::IRP, AssociatedIrp.MasterIrp);
    same_offset!(k::IRP, AssociatedIrp.IrpCount; wf::IRP, AssociatedIrp.IrpCount);
    same_offset!(k::IRP, Overlay.AllocationSize; wf::IRP, Overlay.AllocationSize);
    same_offset!(k::IRP, Tail.Overlay.DriverContext; wf::IRP, Tail.Overlay.Anonymous1.Anonymous.DriverContext);
    same_offset!(k::IRP, Tail.Overlay.Thread; wf::IRP, Tail.Overlay.Thread);
    same_offset!(k::IRP, Tail.Overlay.AuxiliaryBuffer; wf::IRP, Tail.Overlay.AuxiliaryBuffer);
    same_offset!(k::IRP, Tail.Overlay.ListEntry; wf::IRP, Tail.Overlay.Anonymous2.ListEntry);
    same_offset!(
        k::IRP, Tail.Overlay.CurrentStackLocation;
        wf::IRP, Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation
    );
    same_offset!(k::IRP, Tail.Overlay.OriginalFileObject; wf::IRP, Tail.Overlay.OriginalFileObject);
    same_offset!(k::IRP, Tail.Apc; wf::IRP, Tail.Apc);
    same_offset!(k::IRP, Tail.CompletionKey; wf::IRP, Tail.CompletionKey);
    same_size_align!(k::IRP_TAIL, wf::IRP_3);
    same_size_align!(k::IRP_TAIL_OVERLAY, wf::IRP_3_0);
    same_size_align!(k::KAPC, wss::KAPC);
    // As in MDL: wdm.h names the 4 bytes after Size; windows-sys leaves them as padding.
    hand_layout!(k::IRP, size 208, align 8, { AllocationProcessorNumber = 4, Reserved = 6 });
}

#[test]
fn io_stack_location() {
    same_size_align!(k::IO_STACK_LOCATION, wf::IO_STACK_LOCATION);
    same_offsets!(
        k::IO_STACK_LOCATION,
        wf::IO_STACK_LOCATION,
        [
            MajorFunction,
            MinorFunction,
            Flags,
            Control,
            Parameters,
            DeviceObject,
            FileObject,
            CompletionRoutine,
            Context
        ]
    );
    same_size_align!(k::IO_STACK_PARAMETERS, wf::IO_STACK_LOCATION_0);
    same_size_align!(k::IO_STACK_OTHERS, wf::IO_STACK_LOCATION_0_38);
    same_offsets!(
        k::IO_STACK_OTHERS,
        wf::IO_STACK_LOCATION_0_38,
        [Argument1, Argument2, Argument3, Argument4]
    );
    // Members before the first POINTER_ALIGNMENT one agree with windows-sys; the rest do
    // not (see io_stack_location_pointer_alignment below).
    same_offset!(
        k::IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength;
        wf::IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength
    );
    same_offset!(k::IO_STACK_LOCATION, Parameters.Create.SecurityContext; wf::IO_STACK_LOCATION, Parameters.Create.SecurityContext);
    same_offset!(k::IO_STACK_LOCATION, Parameters.Create.Options; wf::IO_STACK_LOCATION, Parameters.Create.Options);
}

/// wdm.h declares, in IO_STACK_LOCATION.Parameters,
///   DeviceIoControl { ULONG OutputBufferLength; ULONG POINTER_ALIGNMENT InputBufferLength;
///                     ULONG POINTER_ALIGNMENT IoControlCode; PVOID Type3InputBuffer; }
///   Read/Write      { ULONG Length; ULONG POINTER_ALIGNMENT Key; ULONG Flags; LARGE_INTEGER ByteOffset; }
///   Create          { PIO_SECURITY_CONTEXT SecurityContext; ULONG Options;
///                     USHORT POINTER_ALIGNMENT FileAttributes; USHORT ShareAccess;
///                     ULONG POINTER_ALIGNMENT EaLength; }
/// with POINTER_ALIGNMENT = DECLSPEC_ALIGN(8) on 64-bit. So on x64 a member marked with it
/// starts on an 8-byte boundary: the IOCTL code is at IO_STACK_LOCATION + 8 + 16 = 0x18,
/// the offset every x64 driver's disassembly reads it from. windows-sys's metadata drops
/// the alignment (InputBufferLength 4, IoControlCode 8, Type3InputBuffer 16); the header wins. The windows-sys
/// values are asserted too, so a windows-sys fix makes this test ask for a re-check.
#[test]
fn io_stack_location_pointer_alignment() {
    hand_layout!(k::IO_STACK_DEVICE_IO_CONTROL, size 32, align 8, {
        OutputBufferLength = 0, InputBufferLength = 8, IoControlCode = 16, Type3InputBuffer = 24,
    });
    hand_layout!(k::IO_STACK_READ_WRITE, size 24, align 8, { Length = 0, Key = 8, Flags = 12, ByteOffset = 16 });
    hand_layout!(k::IO_STACK_CREATE, size 32, align 8, {
        SecurityContext = 0, Options = 8, FileAttributes = 16, ShareAccess = 18, EaLength = 24,
    });
    assert_eq!(
        core::mem::offset_of!(
            k::IO_STACK_LOCATION,
            Parameters.DeviceIoControl.IoControlCode
        ),
        0x18
    );
    assert_eq!(
        core::mem::offset_of!(wf::IO_STACK_LOCATION_0_16, InputBufferLength),
        4
    );
    assert_eq!(
        core::mem::offset_of!(wf::IO_STACK_LOCATION_0_16, IoControlCode),
        8
    );
    assert_eq!(
        core::mem::offset_of!(wf::IO_STACK_LOCATION_0_16, Type3InputBuffer),
        16
    );
    assert_eq!(core::mem::offset_of!(wf::IO_STACK_LOCATION_0_3, Key), 4);
}

#[test]
fn driver_object() {
    same_size_align!(k::DRIVER_OBJECT, wf::DRIVER_OBJECT);
    same_offsets!(
        k::DRIVER_OBJECT,
        wf::DRIVER_OBJECT,
        [
            Type,
            Size,
            DeviceObject,
            Flags,
            DriverStart,
            DriverSize,
            DriverSection,
            DriverExtension,
            DriverName,
            HardwareDatabase,
            FastIoDispatch,
            DriverInit,
            DriverStartIo,
            DriverUnload,
            MajorFunction
        ]
    );
    assert_eq!(core::mem::size_of::<k::DRIVER_OBJECT>(), 336);
}

/// DEVICE_OBJECT: every member offset agrees with windows-sys, but wdm.h declares the
/// struct `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` (16 on x64), so it is 336 bytes
/// with 16-byte alignment, where windows-sys gives 328/8. The header wins.
#[test]
fn device_object() {
    same_offsets!(
        k::DEVICE_OBJECT,
        wf::DEVICE_OBJECT,
        [
            Type,
            Size,
            ReferenceCount,
            DriverObject,
            NextDevice,
            AttachedDevice,
            CurrentIrp,
            Timer,
            Flags,
            Characteristics,
            Vpb,
            DeviceExtension,
            DeviceType,
            StackSize,
            Queue,
            AlignmentRequirement,
            DeviceQueue,
            Dpc,
            ActiveThreadCount,
            SecurityDescriptor,
            DeviceLock,
            SectorSize,
            Spare1,
            DeviceObjectExtension,
            Reserved
        ]
    );
    assert_eq!(core::mem::size_of::<wf::DEVICE_OBJECT>(), 328);
    assert_eq!(core::mem::align_of::<wf::DEVICE_OBJECT>(), 8);
    assert_eq!(core::mem::size_of::<k::DEVICE_OBJECT>(), 336);
    assert_eq!(core::mem::align_of::<k::DEVICE_OBJECT>(), 16);
    same_size_align!(k::DEVICE_OBJECT_QUEUE, wf::DEVICE_OBJECT_0);
    same_size_align!(k::WAIT_CONTEXT_BLOCK, wss::WAIT_CONTEXT_BLOCK);
    same_offsets!(
        k::WAIT_CONTEXT_BLOCK,
        wss::WAIT_CONTEXT_BLOCK,
        [
            DeviceRoutine,
            DeviceContext,
            NumberOfMapRegisters,
            DeviceObject,
            CurrentIrp,
            BufferChainingDpc
        ]
    );
    same_offset!(k::WAIT_CONTEXT_BLOCK, WaitQueueEntry; wss::WAIT_CONTEXT_BLOCK, Anonymous);
    same_size_align!(k::KDEVICE_QUEUE_ENTRY, wss::KDEVICE_QUEUE_ENTRY);
    same_offsets!(
        k::KDEVICE_QUEUE_ENTRY,
        wss::KDEVICE_QUEUE_ENTRY,
        [DeviceListEntry, SortKey, Inserted]
    );
    same_size_align!(k::KDEVICE_QUEUE, wf::KDEVICE_QUEUE);
    same_offsets!(
        k::KDEVICE_QUEUE,
        wf::KDEVICE_QUEUE,
        [Type, Size, DeviceListHead, Lock, Busy]
    );
}

#[test]
fn security() {
    same_size_align!(k::SID, wsec::SID);
    same_offsets!(
        k::SID,
        wsec::SID,
        [
            Revision,
            SubAuthorityCount,
            IdentifierAuthority,
            SubAuthority
        ]
    );
    same_size_align!(k::SID_IDENTIFIER_AUTHORITY, wsec::SID_IDENTIFIER_AUTHORITY);
    same_size_align!(k::ACL, wsec::ACL);
    same_offsets!(
        k::ACL,
        wsec::ACL,
        [AclRevision, Sbz1, AclSize, AceCount, Sbz2]
    );
    same_size_align!(k::ACE_HEADER, wsec::ACE_HEADER);
    same_offsets!(
        k::ACE_HEADER,
        wsec::ACE_HEADER,
        [AceType, AceFlags, AceSize]
    );
    same_size_align!(k::ACCESS_ALLOWED_ACE, wsec::ACCESS_ALLOWED_ACE);
    same_offsets!(
        k::ACCESS_ALLOWED_ACE,
        wsec::ACCESS_ALLOWED_ACE,
        [Header, Mask, SidStart]
    );
    same_size_align!(k::SECURITY_DESCRIPTOR, wsec::SECURITY_DESCRIPTOR);
    same_offsets!(
        k::SECURITY_DESCRIPTOR,
        wsec::SECURITY_DESCRIPTOR,
        [Revision, Sbz1, Control, Owner, Group, Sacl, Dacl]
    );
    assert_eq!(k::SECURITY_DESCRIPTOR_MIN_LENGTH, 40);
    same_size_align!(k::SE_EXPORTS, wfs::SE_EXPORTS);
    same_offsets!(
        k::SE_EXPORTS,
        wfs::SE_EXPORTS,
        [
            SeCreateTokenPrivilege,
            SeAssignPrimaryTokenPrivilege,
            SeLockMemoryPrivilege,
            SeIncreaseQuotaPrivilege,
            SeUnsolicitedInputPrivilege,
            SeTcbPrivilege,
            SeSecurityPrivilege,
            SeTakeOwnershipPrivilege,
            SeLoadDriverPrivilege,
            SeCreatePagefilePrivilege,
            SeIncreaseBasePriorityPrivilege,
            SeSystemProfilePrivilege,
            SeSystemtimePrivilege,
            SeProfileSingleProcessPrivilege,
            SeCreatePermanentPrivilege,
            SeBackupPrivilege,
            SeRestorePrivilege,
            SeShutdownPrivilege,
            SeDebugPrivilege,
            SeAuditPrivilege,
            SeSystemEnvironmentPrivilege,
            SeChangeNotifyPrivilege,
            SeRemoteShutdownPrivilege,
            SeNullSid,
            SeWorldSid,
            SeLocalSid,
            SeCreatorOwnerSid,
            SeCreatorGroupSid,
            SeNtAuthoritySid,
            SeDialupSid,
            SeNetworkSid,
            SeBatchSid,
            SeInteractiveSid,
            SeLocalSystemSid,
            SeAliasAdminsSid,
            SeAliasUsersSid,
            SeAliasGuestsSid,
            SeAliasPowerUsersSid,
            SeAliasAccountOpsSid,
            SeAliasSystemOpsSid,
            SeAliasPrintOpsSid,
            SeAliasBackupOpsSid,
            SeAuthenticatedUsersSid,
            SeRestrictedSid,
            SeAnonymousLogonSid,
            SeUndockPrivilege,
            SeSyncAgentPrivilege,
            SeEnableDelegationPrivilege,
            SeLocalServiceSid,
            SeNetworkServiceSid,
            SeManageVolumePrivilege,
            SeImpersonatePrivilege,
            SeCreateGlobalPrivilege,
            SeTrustedCredManAccessPrivilege,
            SeRelabelPrivilege,
            SeIncreaseWorkingSetPrivilege,
            SeTimeZonePrivilege,
            SeCreateSymbolicLinkPrivilege,
            SeIUserSid,
            SeUntrustedMandatorySid,
            SeLowMandatorySid,
            SeMediumMandatorySid,
            SeHighMandatorySid,
            SeSystemMandatorySid,
            SeOwnerRightsSid,
            SeAllAppPackagesSid,
            SeUserModeDriversSid,
            SeProcTrustWinTcbSid,
            SeTrustedInstallerSid,
            SeDelegateSessionUserImpersonatePrivilege,
            SeAppSiloSid,
            SeAppSiloVolumeRootMinimalCapabilitySid,
            SeAppSiloProfilesRootMinimalCapabilitySid
        ]
    );
}

#[test]
fn socket_addresses() {
    same_size_align!(k::SOCKADDR, ws::SOCKADDR);
    same_offsets!(k::SOCKADDR, ws::SOCKADDR, [sa_family, sa_data]);
    same_size_align!(k::IN_ADDR, ws::IN_ADDR);
    same_offsets!(k::IN_ADDR, ws::IN_ADDR, [S_un]);
    same_offset!(k::IN_ADDR, S_un.S_addr; ws::IN_ADDR, S_un.S_addr);
    same_offset!(k::IN_ADDR, S_un.S_un_b.s_b4; ws::IN_ADDR, S_un.S_un_b.s_b4);
    same_offset!(k::IN_ADDR, S_un.S_un_w.s_w2; ws::IN_ADDR, S_un.S_un_w.s_w2);
    same_size_align!(k::SOCKADDR_IN, ws::SOCKADDR_IN);
    same_offsets!(
        k::SOCKADDR_IN,
        ws::SOCKADDR_IN,
        [sin_family, sin_port, sin_addr, sin_zero]
    );
    same_size_align!(k::IN6_ADDR, ws::IN6_ADDR);
    same_offset!(k::IN6_ADDR, u.Byte; ws::IN6_ADDR, u.Byte);
    same_offset!(k::IN6_ADDR, u.Word; ws::IN6_ADDR, u.Word);
    same_size_align!(k::SOCKADDR_IN6, ws::SOCKADDR_IN6);
    same_offsets!(
        k::SOCKADDR_IN6,
        ws::SOCKADDR_IN6,
        [sin6_family, sin6_port, sin6_flowinfo, sin6_addr]
    );
    same_offset!(k::SOCKADDR_IN6, sin6_scope_id; ws::SOCKADDR_IN6, Anonymous.sin6_scope_id);
    same_size_align!(k::SOCKADDR_STORAGE, ws::SOCKADDR_STORAGE);
    same_offsets!(
        k::SOCKADDR_STORAGE,
        ws::SOCKADDR_STORAGE,
        [ss_family, __ss_pad1, __ss_align, __ss_pad2]
    );
    same_size_align!(k::CMSGHDR, ws::CMSGHDR);
    same_offsets!(k::CMSGHDR, ws::CMSGHDR, [cmsg_len, cmsg_level, cmsg_type]);
    same_size_align!(k::ADDRINFOEXW, ws::ADDRINFOEXW);
    same_offsets!(
        k::ADDRINFOEXW,
        ws::ADDRINFOEXW,
        [
            ai_flags,
            ai_family,
            ai_socktype,
            ai_protocol,
            ai_addrlen,
            ai_canonname,
            ai_addr,
            ai_blob,
            ai_bloblen,
            ai_provider,
            ai_next
        ]
    );
}

/// The named pieces of C's anonymous unions and structs.
#[test]
fn sub_structures() {
    same_size_align!(k::IRP_ASSOCIATED_IRP, wf::IRP_0);
    same_size_align!(k::IRP_OVERLAY, wf::IRP_2);
    same_size_align!(k::IRP_ASYNCHRONOUS_PARAMETERS, wf::IRP_2_0);
    same_offset!(k::IRP_ASYNCHRONOUS_PARAMETERS, UserApcRoutine; wf::IRP_2_0, Anonymous1.UserApcRoutine);
    same_offset!(k::IRP_ASYNCHRONOUS_PARAMETERS, UserApcContext; wf::IRP_2_0, Anonymous2);
    same_size_align!(k::KDPC_0, wf::KDPC_0);
    same_size_align!(k::KDPC_TARGET, wf::KDPC_0_0);
    same_offsets!(k::KDPC_TARGET, wf::KDPC_0_0, [Type, Importance, Number]);
    same_offset!(k::KDPC_0, TargetInfoAsUlong; wf::KDPC_0, TargetInfoAsUlong);
    same_size_align!(k::IN_ADDR_0, ws::IN_ADDR_0);
    same_size_align!(k::IN_ADDR_BYTES, ws::IN_ADDR_0_0);
    same_offsets!(k::IN_ADDR_BYTES, ws::IN_ADDR_0_0, [s_b1, s_b2, s_b3, s_b4]);
    same_size_align!(k::IN_ADDR_WORDS, ws::IN_ADDR_0_1);
    same_offsets!(k::IN_ADDR_WORDS, ws::IN_ADDR_0_1, [s_w1, s_w2]);
    same_size_align!(k::IN6_ADDR_0, ws::IN6_ADDR_0);
    // DISPATCHER_HEADER's first union: `LONG Lock` overlaid by the object's 4 header bytes
    // (wdm.h: `UCHAR Type; UCHAR Signalling; UCHAR Size; UCHAR Reserved1;` among others).
    same_size_align!(k::DISPATCHER_HEADER_0, wf::DISPATCHER_HEADER_0);
    same_offset!(k::DISPATCHER_HEADER_0, Lock; wf::DISPATCHER_HEADER_0, Anonymous1.Lock);
    hand_layout!(k::DISPATCHER_HEADER_TYPE, size 4, align 1, { Type = 0, Signalling = 1, Size = 2, Reserved1 = 3 });
    // LARGE_INTEGER's `u` view: { ULONG LowPart @0; LONG HighPart @4 } (little-endian halves).
    hand_layout!(k::LARGE_INTEGER_PARTS, size 8, align 4, { LowPart = 0, HighPart = 4 });
    hand_layout!(k::ULARGE_INTEGER_PARTS, size 8, align 4, { LowPart = 0, HighPart = 4 });
    let li = k::LARGE_INTEGER::new(-2);
    // SAFETY: both views of the union are plain integers.
    let parts = unsafe { li.u };
    assert_eq!((parts.LowPart, parts.HighPart), (0xFFFF_FFFE, -1));
}
