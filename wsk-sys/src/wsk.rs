//! wsk.h: Winsock Kernel types, function-pointer types and constants.
//!
//! Reference: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/>
//! Every function-pointer type is `Option<unsafe extern "win64" fn ...>` (`WSKAPI` is
//! `NTAPI`), so a dispatch table with a missing entry is representable and checkable.

use core::ffi::c_void;

use crate::io::PIRP;
use crate::io::PMDL;
use crate::ke::{KSPIN_LOCK, PEPROCESS, PETHREAD};
use crate::ntdef::{
    GUID, NTSTATUS, PUNICODE_STRING, PVOID, SIZE_T, UCHAR, ULONG, ULONGLONG, ULONG_PTR, USHORT,
};
use crate::se::PSECURITY_DESCRIPTOR;
use crate::ws2def::{
    _WSAIO, _WSAIOR, _WSAIORW, _WSAIOW, ADDRESS_FAMILY, IOC_WSK, PADDRINFOEXW, PCMSGHDR, PSOCKADDR,
    WSK_SO_BASE,
};

/// `NPIID`: a GUID naming a network programming interface (netioddk.h).
pub type NPIID = GUID;
pub type PNPIID = *const NPIID;

/// `NPI_WSK_INTERFACE_ID`, {2227E803-8D8B-11D4-ABAD-009027719E09}. C drivers get it from
/// the WDK's uuid.lib / netio.lib; defined here so no WDK library is linked.
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_event_callback_control>
pub static NPI_WSK_INTERFACE_ID: NPIID = GUID {
    Data1: 0x2227_E803,
    Data2: 0x8D8B,
    Data3: 0x11D4,
    Data4: [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09],
};

/// `MAKE_WSK_VERSION` macro:
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_dispatch>
#[inline]
pub const fn MAKE_WSK_VERSION(Mj: u8, Mn: u8) -> USHORT {
    ((Mj as USHORT) << 8) | (Mn as USHORT & 0xff)
}
/// `WSK_MAJOR_VERSION` macro.
#[inline]
pub const fn WSK_MAJOR_VERSION(V: USHORT) -> UCHAR {
    (V >> 8) as UCHAR
}
/// `WSK_MINOR_VERSION` macro.
#[inline]
pub const fn WSK_MINOR_VERSION(V: USHORT) -> UCHAR {
    V as UCHAR
}

// ---- Flags ----------------------------------------------------------------------------

/// Callback flag: the callback runs at DISPATCH_LEVEL.
pub const WSK_FLAG_AT_DISPATCH_LEVEL: ULONG = 0x0000_0008;
/// Receive-event flag: give the indicated buffers back as soon as possible.
pub const WSK_FLAG_RELEASE_ASAP: ULONG = 0x0000_0002;
pub const WSK_FLAG_ENTIRE_MESSAGE: ULONG = 0x0000_0004;
/// Disconnect flag / disconnect-event flag: abortive.
pub const WSK_FLAG_ABORTIVE: ULONG = 0x0000_0001;

// Socket categories for WskSocket: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_socket>
pub const WSK_FLAG_BASIC_SOCKET: ULONG = 0x0000_0000;
pub const WSK_FLAG_LISTEN_SOCKET: ULONG = 0x0000_0001;
pub const WSK_FLAG_CONNECTION_SOCKET: ULONG = 0x0000_0002;
pub const WSK_FLAG_DATAGRAM_SOCKET: ULONG = 0x0000_0004;
/// Windows 10 1703+ (NTDDI_WIN10_RS2).
pub const WSK_FLAG_STREAM_SOCKET: ULONG = 0x0000_0008;

// Send / receive flags.
pub const WSK_FLAG_OOB: ULONG = 0x0000_0001;
pub const WSK_FLAG_NODELAY: ULONG = 0x0000_0002;
pub const WSK_FLAG_WAITALL: ULONG = 0x0000_0002;
pub const WSK_FLAG_DRAIN: ULONG = 0x0000_0004;

// WskCaptureProviderNPI timeouts.
pub const WSK_NO_WAIT: ULONG = 0;
pub const WSK_INFINITE_WAIT: ULONG = 0xffff_ffff;

// Client-level control codes (WskControlClient):
// <https://learn.microsoft.com/windows-hardware/drivers/network/wsk-client-control-operations>
pub const WSK_TRANSPORT_LIST_QUERY: ULONG = 2;
pub const WSK_TRANSPORT_LIST_CHANGE: ULONG = 3;
pub const WSK_CACHE_SD: ULONG = 4;
pub const WSK_RELEASE_SD: ULONG = 5;
pub const WSK_TDI_DEVICENAME_MAPPING: ULONG = 6;
pub const WSK_SET_STATIC_EVENT_CALLBACKS: ULONG = 7;
pub const WSK_TDI_BEHAVIOR: ULONG = 8;
pub const WSK_TDI_BEHAVIOR_BYPASS_TDI: ULONG = 0x0000_0001;

// Socket options: <https://learn.microsoft.com/windows-hardware/drivers/network/wsk-socket-options>
pub const SO_WSK_SECURITY: ULONG = WSK_SO_BASE + 1;
pub const SO_WSK_EVENT_CALLBACK: ULONG = WSK_SO_BASE + 2;

// Event masks for SO_WSK_EVENT_CALLBACK / WSK_SET_STATIC_EVENT_CALLBACKS.
pub const WSK_EVENT_RECEIVE_FROM: ULONG = 0x0000_0100;
pub const WSK_EVENT_ACCEPT: ULONG = 0x0000_0200;
pub const WSK_EVENT_SEND_BACKLOG: ULONG = 0x0000_0010;
pub const WSK_EVENT_RECEIVE: ULONG = 0x0000_0040;
pub const WSK_EVENT_DISCONNECT: ULONG = 0x0000_0080;
pub const WSK_EVENT_DISABLE: ULONG = 0x8000_0000;

// Socket IOCTLs: <https://learn.microsoft.com/windows-hardware/drivers/network/wsk-socket-ioctl-operations>
pub const SIO_WSK_SET_REMOTE_ADDRESS: ULONG = _WSAIOW(IOC_WSK, 0x1);
pub const SIO_WSK_REGISTER_EXTENSION: ULONG = _WSAIORW(IOC_WSK, 0x2);
pub const SIO_WSK_QUERY_IDEAL_SEND_BACKLOG: ULONG = _WSAIOR(IOC_WSK, 0x3);
pub const SIO_WSK_QUERY_RECEIVE_BACKLOG: ULONG = _WSAIOR(IOC_WSK, 0x4);
pub const SIO_WSK_QUERY_INSPECT_ID: ULONG = _WSAIOR(IOC_WSK, 0x5);
pub const SIO_WSK_SET_SENDTO_ADDRESS: ULONG = _WSAIOW(IOC_WSK, 0x6);
pub const SIO_WSK_SET_TCP_SILENT_MODE: ULONG = _WSAIO(IOC_WSK, 0x7);

// ---- Plain structures -----------------------------------------------------------------

/// `WSK_SOCKET`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_socket>
/// `Dispatch` points at the provider table matching the socket's category.
#[repr(C)]
#[derive(Debug)]
pub struct WSK_SOCKET {
    pub Dispatch: *const c_void,
}
pub type PWSK_SOCKET = *mut WSK_SOCKET;

/// `PWSK_CLIENT`: an opaque pointer the provider hands out in `WSK_PROVIDER_NPI`.
pub type PWSK_CLIENT = PVOID;

/// `WSK_BUF`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_buf>
/// `Offset` must lie within the first MDL of the chain.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_BUF {
    pub Mdl: PMDL,
    pub Offset: ULONG,
    pub Length: SIZE_T,
}
pub type PWSK_BUF = *mut WSK_BUF;

/// `WSK_BUF_LIST` (Windows 8+): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_buf_list>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_BUF_LIST {
    pub Next: *mut WSK_BUF_LIST,
    pub Buffer: WSK_BUF,
}
pub type PWSK_BUF_LIST = *mut WSK_BUF_LIST;

/// `WSK_DATA_INDICATION`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_data_indication>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_DATA_INDICATION {
    pub Next: *mut WSK_DATA_INDICATION,
    pub Buffer: WSK_BUF,
}
pub type PWSK_DATA_INDICATION = *mut WSK_DATA_INDICATION;

/// `WSK_DATAGRAM_INDICATION`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_datagram_indication>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_DATAGRAM_INDICATION {
    pub Next: *mut WSK_DATAGRAM_INDICATION,
    pub Buffer: WSK_BUF,
    pub ControlInfo: PCMSGHDR,
    pub ControlInfoLength: ULONG,
    pub RemoteAddress: PSOCKADDR,
}
pub type PWSK_DATAGRAM_INDICATION = *mut WSK_DATAGRAM_INDICATION;

/// `WSK_INSPECT_ID`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_inspect_id>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_INSPECT_ID {
    pub Key: ULONG_PTR,
    pub SerialNumber: ULONG,
}
pub type PWSK_INSPECT_ID = *mut WSK_INSPECT_ID;

/// `WSK_INSPECT_ACTION`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ne-wsk-_wsk_inspect_action>
pub type WSK_INSPECT_ACTION = i32;
pub const WskInspectReject: WSK_INSPECT_ACTION = 0;
pub const WskInspectAccept: WSK_INSPECT_ACTION = 1;
pub const WskInspectPend: WSK_INSPECT_ACTION = 2;
pub const WskInspectMax: WSK_INSPECT_ACTION = 3;

/// `WSK_CONTROL_SOCKET_TYPE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ne-wsk-_wsk_control_socket_type>
pub type WSK_CONTROL_SOCKET_TYPE = i32;
pub const WskSetOption: WSK_CONTROL_SOCKET_TYPE = 0;
pub const WskGetOption: WSK_CONTROL_SOCKET_TYPE = 1;
pub const WskIoctl: WSK_CONTROL_SOCKET_TYPE = 2;
pub const WskControlMax: WSK_CONTROL_SOCKET_TYPE = 3;

/// `WSK_EVENT_CALLBACK_CONTROL`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_event_callback_control>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_EVENT_CALLBACK_CONTROL {
    pub NpiId: PNPIID,
    pub EventMask: ULONG,
}
pub type PWSK_EVENT_CALLBACK_CONTROL = *mut WSK_EVENT_CALLBACK_CONTROL;

/// `WSK_EXTENSION_CONTROL_IN`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_extension_control_in>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_EXTENSION_CONTROL_IN {
    pub NpiId: PNPIID,
    pub ClientContext: PVOID,
    pub ClientDispatch: *const c_void,
}

/// `WSK_EXTENSION_CONTROL_OUT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_extension_control_out>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_EXTENSION_CONTROL_OUT {
    pub ProviderContext: PVOID,
    pub ProviderDispatch: *const c_void,
}

/// `WSK_PROVIDER_CHARACTERISTICS`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_characteristics>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_CHARACTERISTICS {
    pub HighestVersion: USHORT,
    pub LowestVersion: USHORT,
}
pub type PWSK_PROVIDER_CHARACTERISTICS = *mut WSK_PROVIDER_CHARACTERISTICS;

/// `WSK_TRANSPORT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_transport>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_TRANSPORT {
    pub Version: USHORT,
    pub SocketType: USHORT,
    pub Protocol: ULONG,
    pub AddressFamily: ADDRESS_FAMILY,
    pub ProviderId: GUID,
}
pub type PWSK_TRANSPORT = *mut WSK_TRANSPORT;

/// `WSK_TDI_MAP`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_TDI_MAP {
    pub SocketType: USHORT,
    pub AddressFamily: ADDRESS_FAMILY,
    pub Protocol: ULONG,
    pub TdiDeviceName: *const u16,
}

/// `WSK_TDI_MAP_INFO`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_TDI_MAP_INFO {
    pub ElementCount: ULONG,
    pub Map: *const WSK_TDI_MAP,
}

/// `WSK_REGISTRATION`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_registration>
/// Owned by WSK between WskRegister and WskDeregister; the client never touches it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_REGISTRATION {
    pub ReservedRegistrationState: ULONGLONG,
    pub ReservedRegistrationContext: PVOID,
    pub ReservedRegistrationLock: KSPIN_LOCK,
}
pub type PWSK_REGISTRATION = *mut WSK_REGISTRATION;

impl WSK_REGISTRATION {
    pub const fn zeroed() -> Self {
        WSK_REGISTRATION {
            ReservedRegistrationState: 0,
            ReservedRegistrationContext: core::ptr::null_mut(),
            ReservedRegistrationLock: 0,
        }
    }
}

// ---- Client event callbacks ------------------------------------------------------------

/// `PFN_WSK_CLIENT_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_client_event>
pub type PFN_WSK_CLIENT_EVENT = Option<
    unsafe extern "win64" fn(
        ClientContext: PVOID,
        EventType: ULONG,
        Information: PVOID,
        InformationLength: SIZE_T,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_RECEIVE_FROM_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_receive_from_event>
/// A NULL `DataIndication` means the socket no longer works and must be closed.
pub type PFN_WSK_RECEIVE_FROM_EVENT = Option<
    unsafe extern "win64" fn(
        SocketContext: PVOID,
        Flags: ULONG,
        DataIndication: PWSK_DATAGRAM_INDICATION,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_ACCEPT_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_accept_event>
/// A NULL `AcceptSocket` means the listening socket no longer works.
pub type PFN_WSK_ACCEPT_EVENT = Option<
    unsafe extern "win64" fn(
        SocketContext: PVOID,
        Flags: ULONG,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        AcceptSocket: PWSK_SOCKET,
        AcceptSocketContext: *mut PVOID,
        AcceptSocketDispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_INSPECT_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_inspect_event>
pub type PFN_WSK_INSPECT_EVENT = Option<
    unsafe extern "win64" fn(
        SocketContext: PVOID,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        InspectID: PWSK_INSPECT_ID,
    ) -> WSK_INSPECT_ACTION,
>;

/// `PFN_WSK_ABORT_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_abort_event>
pub type PFN_WSK_ABORT_EVENT =
    Option<unsafe extern "win64" fn(SocketContext: PVOID, InspectID: PWSK_INSPECT_ID) -> NTSTATUS>;

/// `PFN_WSK_SEND_BACKLOG_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_send_backlog_event>
pub type PFN_WSK_SEND_BACKLOG_EVENT =
    Option<unsafe extern "win64" fn(SocketContext: PVOID, IdealBacklogSize: SIZE_T) -> NTSTATUS>;

/// `PFN_WSK_RECEIVE_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_receive_event>
/// A NULL `DataIndication` means the socket no longer works and must be closed.
pub type PFN_WSK_RECEIVE_EVENT = Option<
    unsafe extern "win64" fn(
        SocketContext: PVOID,
        Flags: ULONG,
        DataIndication: PWSK_DATA_INDICATION,
        BytesIndicated: SIZE_T,
        BytesAccepted: *mut SIZE_T,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_DISCONNECT_EVENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_disconnect_event>
pub type PFN_WSK_DISCONNECT_EVENT =
    Option<unsafe extern "win64" fn(SocketContext: PVOID, Flags: ULONG) -> NTSTATUS>;

// ---- Provider functions ----------------------------------------------------------------

/// `PFN_WSK_SOCKET`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_socket>
/// On success `Irp->IoStatus.Information` holds the new `PWSK_SOCKET`.
pub type PFN_WSK_SOCKET = Option<
    unsafe extern "win64" fn(
        Client: PWSK_CLIENT,
        AddressFamily: ADDRESS_FAMILY,
        SocketType: USHORT,
        Protocol: ULONG,
        Flags: ULONG,
        SocketContext: PVOID,
        Dispatch: *const c_void,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_SOCKET_CONNECT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_socket_connect>
pub type PFN_WSK_SOCKET_CONNECT = Option<
    unsafe extern "win64" fn(
        Client: PWSK_CLIENT,
        SocketType: USHORT,
        Protocol: ULONG,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        Flags: ULONG,
        SocketContext: PVOID,
        Dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        SecurityDescriptor: PSECURITY_DESCRIPTOR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_CONTROL_CLIENT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_control_client>
pub type PFN_WSK_CONTROL_CLIENT = Option<
    unsafe extern "win64" fn(
        Client: PWSK_CLIENT,
        ControlCode: ULONG,
        InputSize: SIZE_T,
        InputBuffer: PVOID,
        OutputSize: SIZE_T,
        OutputBuffer: PVOID,
        OutputSizeReturned: *mut SIZE_T,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_GET_ADDRESS_INFO`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_get_address_info>
pub type PFN_WSK_GET_ADDRESS_INFO = Option<
    unsafe extern "win64" fn(
        Client: PWSK_CLIENT,
        NodeName: PUNICODE_STRING,
        ServiceName: PUNICODE_STRING,
        NameSpace: ULONG,
        Provider: *mut GUID,
        Hints: PADDRINFOEXW,
        Result: *mut PADDRINFOEXW,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_FREE_ADDRESS_INFO`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_free_address_info>
pub type PFN_WSK_FREE_ADDRESS_INFO =
    Option<unsafe extern "win64" fn(Client: PWSK_CLIENT, AddrInfo: PADDRINFOEXW)>;

/// `PFN_WSK_GET_NAME_INFO`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_get_name_info>
pub type PFN_WSK_GET_NAME_INFO = Option<
    unsafe extern "win64" fn(
        Client: PWSK_CLIENT,
        SockAddr: PSOCKADDR,
        SockAddrLength: ULONG,
        NodeName: PUNICODE_STRING,
        ServiceName: PUNICODE_STRING,
        Flags: ULONG,
        OwningProcess: PEPROCESS,
        OwningThread: PETHREAD,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_CONTROL_SOCKET`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_control_socket>
pub type PFN_WSK_CONTROL_SOCKET = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        RequestType: WSK_CONTROL_SOCKET_TYPE,
        ControlCode: ULONG,
        Level: ULONG,
        InputSize: SIZE_T,
        InputBuffer: PVOID,
        OutputSize: SIZE_T,
        OutputBuffer: PVOID,
        OutputSizeReturned: *mut SIZE_T,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_CLOSE_SOCKET`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_close_socket>
pub type PFN_WSK_CLOSE_SOCKET =
    Option<unsafe extern "win64" fn(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS>;

/// `PFN_WSK_BIND`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_bind>
pub type PFN_WSK_BIND = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        LocalAddress: PSOCKADDR,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_ACCEPT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_accept>
pub type PFN_WSK_ACCEPT = Option<
    unsafe extern "win64" fn(
        ListenSocket: PWSK_SOCKET,
        Flags: ULONG,
        AcceptSocketContext: PVOID,
        AcceptSocketDispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
        LocalAddress: PSOCKADDR,
        RemoteAddress: PSOCKADDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_INSPECT_COMPLETE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_inspect_complete>
pub type PFN_WSK_INSPECT_COMPLETE = Option<
    unsafe extern "win64" fn(
        ListenSocket: PWSK_SOCKET,
        InspectID: PWSK_INSPECT_ID,
        Action: WSK_INSPECT_ACTION,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_GET_LOCAL_ADDRESS`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_get_local_address>
pub type PFN_WSK_GET_LOCAL_ADDRESS = Option<
    unsafe extern "win64" fn(Socket: PWSK_SOCKET, LocalAddress: PSOCKADDR, Irp: PIRP) -> NTSTATUS,
>;

/// `PFN_WSK_GET_REMOTE_ADDRESS`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_get_remote_address>
pub type PFN_WSK_GET_REMOTE_ADDRESS = Option<
    unsafe extern "win64" fn(Socket: PWSK_SOCKET, RemoteAddress: PSOCKADDR, Irp: PIRP) -> NTSTATUS,
>;

/// `PFN_WSK_CONNECT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_connect>
pub type PFN_WSK_CONNECT = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        RemoteAddress: PSOCKADDR,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_CONNECT_EX` (Windows 10 1703+): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_connect_ex>
pub type PFN_WSK_CONNECT_EX = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        RemoteAddress: PSOCKADDR,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_SEND_EX`: a member of the connection and stream tables "reserved for system
/// use"; its signature is undocumented, so the type carries none. Never call it. A
/// nullable fn pointer (not `*const c_void`) keeps the tables `Sync`, so they can be statics.
pub type PFN_WSK_SEND_EX = Option<unsafe extern "win64" fn()>;
/// `PFN_WSK_RECEIVE_EX`: reserved for system use, like [`PFN_WSK_SEND_EX`].
pub type PFN_WSK_RECEIVE_EX = Option<unsafe extern "win64" fn()>;

/// `PFN_WSK_LISTEN` (Windows 10 1703+): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_listen>
pub type PFN_WSK_LISTEN =
    Option<unsafe extern "win64" fn(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS>;

/// `PFN_WSK_SEND`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_send>
pub type PFN_WSK_SEND = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_RECEIVE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_receive>
pub type PFN_WSK_RECEIVE = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_DISCONNECT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_disconnect>
pub type PFN_WSK_DISCONNECT = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_RELEASE_DATA_INDICATION_LIST`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_release_data_indication_list>
pub type PFN_WSK_RELEASE_DATA_INDICATION_LIST = Option<
    unsafe extern "win64" fn(Socket: PWSK_SOCKET, DataIndication: PWSK_DATA_INDICATION) -> NTSTATUS,
>;

/// `PFN_WSK_SEND_TO`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_send_to>
pub type PFN_WSK_SEND_TO = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        RemoteAddress: PSOCKADDR,
        ControlInfoLength: ULONG,
        ControlInfo: PCMSGHDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_SEND_MESSAGES` (Windows 8+): <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_send_messages>
pub type PFN_WSK_SEND_MESSAGES = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        BufferList: PWSK_BUF_LIST,
        Flags: ULONG,
        RemoteAddress: PSOCKADDR,
        ControlInfoLength: ULONG,
        ControlInfo: PCMSGHDR,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_RECEIVE_FROM`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_receive_from>
pub type PFN_WSK_RECEIVE_FROM = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        Buffer: PWSK_BUF,
        Flags: ULONG,
        RemoteAddress: PSOCKADDR,
        ControlLength: *mut ULONG,
        ControlInfo: PCMSGHDR,
        ControlFlags: *mut ULONG,
        Irp: PIRP,
    ) -> NTSTATUS,
>;

/// `PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_release_datagram_indication_list>
pub type PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST = Option<
    unsafe extern "win64" fn(
        Socket: PWSK_SOCKET,
        DatagramIndication: PWSK_DATAGRAM_INDICATION,
    ) -> NTSTATUS,
>;

// ---- Dispatch tables -------------------------------------------------------------------

/// `WSK_CLIENT_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_DISPATCH {
    pub Version: USHORT,
    pub Reserved: USHORT,
    pub WskClientEvent: PFN_WSK_CLIENT_EVENT,
}
pub type PWSK_CLIENT_DISPATCH = *mut WSK_CLIENT_DISPATCH;

/// `WSK_CLIENT_LISTEN_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_listen_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_LISTEN_DISPATCH {
    pub WskAcceptEvent: PFN_WSK_ACCEPT_EVENT,
    pub WskInspectEvent: PFN_WSK_INSPECT_EVENT,
    pub WskAbortEvent: PFN_WSK_ABORT_EVENT,
}
pub type PWSK_CLIENT_LISTEN_DISPATCH = *mut WSK_CLIENT_LISTEN_DISPATCH;

/// `WSK_CLIENT_DATAGRAM_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_datagram_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_DATAGRAM_DISPATCH {
    pub WskReceiveFromEvent: PFN_WSK_RECEIVE_FROM_EVENT,
}
pub type PWSK_CLIENT_DATAGRAM_DISPATCH = *mut WSK_CLIENT_DATAGRAM_DISPATCH;

/// `WSK_CLIENT_CONNECTION_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_connection_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_CONNECTION_DISPATCH {
    pub WskReceiveEvent: PFN_WSK_RECEIVE_EVENT,
    pub WskDisconnectEvent: PFN_WSK_DISCONNECT_EVENT,
    pub WskSendBacklogEvent: PFN_WSK_SEND_BACKLOG_EVENT,
}
pub type PWSK_CLIENT_CONNECTION_DISPATCH = *mut WSK_CLIENT_CONNECTION_DISPATCH;

/// `WSK_CLIENT_STREAM_DISPATCH` (Windows 10 1703+):
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_stream_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_STREAM_DISPATCH {
    pub Listen: *const WSK_CLIENT_LISTEN_DISPATCH,
    pub Connect: *const WSK_CLIENT_CONNECTION_DISPATCH,
}
pub type PWSK_CLIENT_STREAM_DISPATCH = *mut WSK_CLIENT_STREAM_DISPATCH;

/// `WSK_PROVIDER_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_DISPATCH {
    pub Version: USHORT,
    pub Reserved: USHORT,
    pub WskSocket: PFN_WSK_SOCKET,
    pub WskSocketConnect: PFN_WSK_SOCKET_CONNECT,
    pub WskControlClient: PFN_WSK_CONTROL_CLIENT,
    pub WskGetAddressInfo: PFN_WSK_GET_ADDRESS_INFO,
    pub WskFreeAddressInfo: PFN_WSK_FREE_ADDRESS_INFO,
    pub WskGetNameInfo: PFN_WSK_GET_NAME_INFO,
}
pub type PWSK_PROVIDER_DISPATCH = *mut WSK_PROVIDER_DISPATCH;

/// `WSK_PROVIDER_BASIC_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_basic_dispatch>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_BASIC_DISPATCH {
    pub WskControlSocket: PFN_WSK_CONTROL_SOCKET,
    pub WskCloseSocket: PFN_WSK_CLOSE_SOCKET,
}
pub type PWSK_PROVIDER_BASIC_DISPATCH = *mut WSK_PROVIDER_BASIC_DISPATCH;

/// `WSK_PROVIDER_LISTEN_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_listen_dispatch>
/// C embeds the basic table anonymously (named `Basic` in C++), as here.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_LISTEN_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskAccept: PFN_WSK_ACCEPT,
    pub WskInspectComplete: PFN_WSK_INSPECT_COMPLETE,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
}
pub type PWSK_PROVIDER_LISTEN_DISPATCH = *mut WSK_PROVIDER_LISTEN_DISPATCH;

/// `WSK_PROVIDER_DATAGRAM_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_datagram_dispatch>
/// `WskSendMessages` exists from Windows 8 (NTDDI_WIN8).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_DATAGRAM_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskSendTo: PFN_WSK_SEND_TO,
    pub WskReceiveFrom: PFN_WSK_RECEIVE_FROM,
    pub WskRelease: PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
    pub WskSendMessages: PFN_WSK_SEND_MESSAGES,
}
pub type PWSK_PROVIDER_DATAGRAM_DISPATCH = *mut WSK_PROVIDER_DATAGRAM_DISPATCH;

/// `WSK_PROVIDER_CONNECTION_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_connection_dispatch>
/// `WskConnectEx` is present from Windows 10 1703; read it only when the provider's
/// version says so. `WskSendEx` / `WskReceiveEx` are reserved for system use (listed on the
/// doc page, absent from older headers).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_CONNECTION_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskConnect: PFN_WSK_CONNECT,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
    pub WskGetRemoteAddress: PFN_WSK_GET_REMOTE_ADDRESS,
    pub WskSend: PFN_WSK_SEND,
    pub WskReceive: PFN_WSK_RECEIVE,
    pub WskDisconnect: PFN_WSK_DISCONNECT,
    pub WskRelease: PFN_WSK_RELEASE_DATA_INDICATION_LIST,
    pub WskConnectEx: PFN_WSK_CONNECT_EX,
    pub WskSendEx: PFN_WSK_SEND_EX,
    pub WskReceiveEx: PFN_WSK_RECEIVE_EX,
}
pub type PWSK_PROVIDER_CONNECTION_DISPATCH = *mut WSK_PROVIDER_CONNECTION_DISPATCH;

/// `WSK_PROVIDER_STREAM_DISPATCH` (Windows 10 1703+):
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_stream_dispatch>
/// (`WskSendEx` / `WskReceiveEx` reserved for system use.)
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_STREAM_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: PFN_WSK_BIND,
    pub WskAccept: PFN_WSK_ACCEPT,
    pub WskConnect: PFN_WSK_CONNECT,
    pub WskListen: PFN_WSK_LISTEN,
    pub WskSend: PFN_WSK_SEND,
    pub WskReceive: PFN_WSK_RECEIVE,
    pub WskDisconnect: PFN_WSK_DISCONNECT,
    pub WskRelease: PFN_WSK_RELEASE_DATA_INDICATION_LIST,
    pub WskGetLocalAddress: PFN_WSK_GET_LOCAL_ADDRESS,
    pub WskGetRemoteAddress: PFN_WSK_GET_REMOTE_ADDRESS,
    pub WskConnectEx: PFN_WSK_CONNECT_EX,
    pub WskSendEx: PFN_WSK_SEND_EX,
    pub WskReceiveEx: PFN_WSK_RECEIVE_EX,
}
pub type PWSK_PROVIDER_STREAM_DISPATCH = *mut WSK_PROVIDER_STREAM_DISPATCH;

/// `WSK_CLIENT_NPI`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_client_npi>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_CLIENT_NPI {
    pub ClientContext: PVOID,
    pub Dispatch: *const WSK_CLIENT_DISPATCH,
}
pub type PWSK_CLIENT_NPI = *mut WSK_CLIENT_NPI;

/// `WSK_PROVIDER_NPI`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/ns-wsk-_wsk_provider_npi>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WSK_PROVIDER_NPI {
    pub Client: PWSK_CLIENT,
    pub Dispatch: *const WSK_PROVIDER_DISPATCH,
}
pub type PWSK_PROVIDER_NPI = *mut WSK_PROVIDER_NPI;
