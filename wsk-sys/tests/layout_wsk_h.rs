//! Layout of the wsk.h structures, which windows-sys does not have (it has no WSK at
//! all), against offsets worked out by hand from the definitions in wsk.h
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/>) with the x64 C rules:
//! pointers, SIZE_T and ULONG_PTR are 8 bytes aligned 8; ULONG 4/4; USHORT and
//! ADDRESS_FAMILY 2/2; GUID 16 bytes aligned 4; a member starts at the next multiple of
//! its alignment; the struct's size is rounded up to its largest member alignment.
#![cfg(target_arch = "x86_64")]

#[macro_use]
mod common;

use wsk_sys as k;

#[test]
fn buffers_and_indications() {
    // { PMDL Mdl @0; ULONG Offset @8; (pad 4) SIZE_T Length @16 } = 24
    hand_layout!(k::WSK_BUF, size 24, align 8, { Mdl = 0, Offset = 8, Length = 16 });
    // { struct _WSK_BUF_LIST *Next @0; WSK_BUF Buffer @8 (24) } = 32
    hand_layout!(k::WSK_BUF_LIST, size 32, align 8, { Next = 0, Buffer = 8, Buffer.Length = 24 });
    // { Next @0; WSK_BUF Buffer @8 } = 32
    hand_layout!(k::WSK_DATA_INDICATION, size 32, align 8, { Next = 0, Buffer = 8, Buffer.Mdl = 8 });
    // { Next @0; Buffer @8..32; PCMSGHDR ControlInfo @32; ULONG ControlInfoLength @40;
    //   (pad 4) PSOCKADDR RemoteAddress @48 } = 56
    hand_layout!(k::WSK_DATAGRAM_INDICATION, size 56, align 8, {
        Next = 0, Buffer = 8, ControlInfo = 32, ControlInfoLength = 40, RemoteAddress = 48,
    });
    // { CONST VOID *Dispatch @0 } = 8
    hand_layout!(k::WSK_SOCKET, size 8, align 8, { Dispatch = 0 });
    // { ULONG_PTR Key @0; ULONG SerialNumber @8; (pad 4) } = 16
    hand_layout!(k::WSK_INSPECT_ID, size 16, align 8, { Key = 0, SerialNumber = 8 });
}

#[test]
fn registration_and_npis() {
    // { ULONGLONG ReservedRegistrationState @0; PVOID ReservedRegistrationContext @8;
    //   KSPIN_LOCK ReservedRegistrationLock @16 } = 24
    hand_layout!(k::WSK_REGISTRATION, size 24, align 8, {
        ReservedRegistrationState = 0, ReservedRegistrationContext = 8, ReservedRegistrationLock = 16,
    });
    // { PVOID ClientContext @0; CONST WSK_CLIENT_DISPATCH *Dispatch @8 } = 16
    hand_layout!(k::WSK_CLIENT_NPI, size 16, align 8, { ClientContext = 0, Dispatch = 8 });
    // { PWSK_CLIENT Client @0; CONST WSK_PROVIDER_DISPATCH *Dispatch @8 } = 16
    hand_layout!(k::WSK_PROVIDER_NPI, size 16, align 8, { Client = 0, Dispatch = 8 });
    // { USHORT Version @0; USHORT Reserved @2; (pad 4) PFN WskClientEvent @8 } = 16
    hand_layout!(k::WSK_CLIENT_DISPATCH, size 16, align 8, { Version = 0, Reserved = 2, WskClientEvent = 8 });
    // { USHORT HighestVersion @0; USHORT LowestVersion @2 } = 4
    hand_layout!(k::WSK_PROVIDER_CHARACTERISTICS, size 4, align 2, { HighestVersion = 0, LowestVersion = 2 });
    // { PNPIID NpiId @0; ULONG EventMask @8; (pad 4) } = 16
    hand_layout!(k::WSK_EVENT_CALLBACK_CONTROL, size 16, align 8, { NpiId = 0, EventMask = 8 });
    // { PNPIID NpiId @0; PVOID ClientContext @8; CONST VOID *ClientDispatch @16 } = 24
    hand_layout!(k::WSK_EXTENSION_CONTROL_IN, size 24, align 8, { NpiId = 0, ClientContext = 8, ClientDispatch = 16 });
    // { PVOID ProviderContext @0; CONST VOID *ProviderDispatch @8 } = 16
    hand_layout!(k::WSK_EXTENSION_CONTROL_OUT, size 16, align 8, { ProviderContext = 0, ProviderDispatch = 8 });
    // { USHORT Version @0; USHORT SocketType @2; ULONG Protocol @4; ADDRESS_FAMILY AddressFamily @8;
    //   (pad 2: GUID aligns to 4) GUID ProviderId @12 (16) } = 28, align 4
    hand_layout!(k::WSK_TRANSPORT, size 28, align 4, {
        Version = 0, SocketType = 2, Protocol = 4, AddressFamily = 8, ProviderId = 12,
    });
    // { USHORT SocketType @0; ADDRESS_FAMILY AddressFamily @2; ULONG Protocol @4; PCWSTR TdiDeviceName @8 } = 16
    hand_layout!(k::WSK_TDI_MAP, size 16, align 8, { SocketType = 0, AddressFamily = 2, Protocol = 4, TdiDeviceName = 8 });
    // { CONST ULONG ElementCount @0; (pad 4) CONST WSK_TDI_MAP *Map @8 } = 16
    hand_layout!(k::WSK_TDI_MAP_INFO, size 16, align 8, { ElementCount = 0, Map = 8 });
    // NPIID is a GUID: { ULONG Data1 @0; USHORT Data2 @4; USHORT Data3 @6; UCHAR Data4[8] @8 } = 16
    hand_layout!(k::NPIID, size 16, align 4, { Data1 = 0, Data2 = 4, Data3 = 6, Data4 = 8 });
}

/// Every dispatch table is an array of function pointers (8 bytes each) after an
/// optional { USHORT Version; USHORT Reserved; } header padded to 8. The provider socket
/// tables start with the anonymous WSK_PROVIDER_BASIC_DISPATCH (2 pointers).
#[test]
fn dispatch_tables() {
    hand_layout!(k::WSK_CLIENT_LISTEN_DISPATCH, size 24, align 8, {
        WskAcceptEvent = 0, WskInspectEvent = 8, WskAbortEvent = 16,
    });
    hand_layout!(k::WSK_CLIENT_DATAGRAM_DISPATCH, size 8, align 8, { WskReceiveFromEvent = 0 });
    hand_layout!(k::WSK_CLIENT_CONNECTION_DISPATCH, size 24, align 8, {
        WskReceiveEvent = 0, WskDisconnectEvent = 8, WskSendBacklogEvent = 16,
    });
    hand_layout!(k::WSK_CLIENT_STREAM_DISPATCH, size 16, align 8, { Listen = 0, Connect = 8 });
    hand_layout!(k::WSK_PROVIDER_DISPATCH, size 56, align 8, {
        Version = 0, Reserved = 2, WskSocket = 8, WskSocketConnect = 16, WskControlClient = 24,
        WskGetAddressInfo = 32, WskFreeAddressInfo = 40, WskGetNameInfo = 48,
    });
    hand_layout!(k::WSK_PROVIDER_BASIC_DISPATCH, size 16, align 8, { WskControlSocket = 0, WskCloseSocket = 8 });
    hand_layout!(k::WSK_PROVIDER_LISTEN_DISPATCH, size 48, align 8, {
        Basic = 0, Basic.WskControlSocket = 0, Basic.WskCloseSocket = 8,
        WskBind = 16, WskAccept = 24, WskInspectComplete = 32, WskGetLocalAddress = 40,
    });
    hand_layout!(k::WSK_PROVIDER_DATAGRAM_DISPATCH, size 64, align 8, {
        Basic = 0, WskBind = 16, WskSendTo = 24, WskReceiveFrom = 32, WskRelease = 40,
        WskGetLocalAddress = 48, WskSendMessages = 56,
    });
    // The doc pages (not older wsk.h copies) end both tables with the reserved
    // WskSendEx / WskReceiveEx pointers.
    hand_layout!(k::WSK_PROVIDER_CONNECTION_DISPATCH, size 104, align 8, {
        Basic = 0, WskBind = 16, WskConnect = 24, WskGetLocalAddress = 32, WskGetRemoteAddress = 40,
        WskSend = 48, WskReceive = 56, WskDisconnect = 64, WskRelease = 72, WskConnectEx = 80,
        WskSendEx = 88, WskReceiveEx = 96,
    });
    hand_layout!(k::WSK_PROVIDER_STREAM_DISPATCH, size 120, align 8, {
        Basic = 0, WskBind = 16, WskAccept = 24, WskConnect = 32, WskListen = 40, WskSend = 48,
        WskReceive = 56, WskDisconnect = 64, WskRelease = 72, WskGetLocalAddress = 80,
        WskGetRemoteAddress = 88, WskConnectEx = 96, WskSendEx = 104, WskReceiveEx = 112,
    });
}

/// Option<fn> must stay pointer-sized and NULL-representable: a provider table with a
/// missing entry is a NULL pointer in C.
#[test]
fn function_pointers_are_nullable_pointers() {
    assert_eq!(core::mem::size_of::<k::PFN_WSK_SOCKET>(), 8);
    assert_eq!(core::mem::size_of::<k::PFN_WSK_SEND>(), 8);
    assert_eq!(core::mem::size_of::<k::PIO_COMPLETION_ROUTINE>(), 8);
    // SAFETY: all-zero bytes are a valid Option<fn> (None) by the niche guarantee.
    let none: k::PFN_WSK_RECEIVE_EVENT = unsafe { core::mem::zeroed() };
    assert!(none.is_none());
}

/// Kernel structures not in windows-sys, laid out by hand from wdm.h.
#[test]
fn kernel_structs_without_oracle() {
    // IRP.Tail.Overlay: { PVOID DriverContext[4] @0 (union with KDEVICE_QUEUE_ENTRY, 24);
    //   PETHREAD Thread @32; PCHAR AuxiliaryBuffer @40; LIST_ENTRY ListEntry @48;
    //   CurrentStackLocation @64 (union with ULONG PacketType); PFILE_OBJECT OriginalFileObject @72 } = 80
    hand_layout!(k::IRP_TAIL_OVERLAY, size 80, align 8, {
        DriverContext = 0, Thread = 32, AuxiliaryBuffer = 40, ListEntry = 48,
        CurrentStackLocation = 64, OriginalFileObject = 72,
    });
    // IRP.Tail = union { Overlay (80); KAPC Apc (88); PVOID CompletionKey } = 88; IRP.Tail @120.
    hand_layout!(k::IRP, size 208, align 8, { Tail = 120, Tail.Overlay.CurrentStackLocation = 184 });
    // IO_STACK_LOCATION: 4 UCHARs, Parameters @8 (32 bytes on x64), then 4 pointers.
    hand_layout!(k::IO_STACK_LOCATION, size 72, align 8, {
        MajorFunction = 0, Control = 3, Parameters = 8, DeviceObject = 40, FileObject = 48,
        CompletionRoutine = 56, Context = 64,
    });
}
