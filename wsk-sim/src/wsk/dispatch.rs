//! The provider dispatch tables: the client-level one WskCaptureProviderNPI hands out, and
//! one per socket category that each WSK_SOCKET points to.

use wsk_sys::{
    WSK_PROVIDER_BASIC_DISPATCH, WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_PROVIDER_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH, WSK_PROVIDER_STREAM_DISPATCH,
};

use super::socket::Kind;

/// The client-level table WskCaptureProviderNPI hands out.
pub(crate) static PROVIDER_DISPATCH: WSK_PROVIDER_DISPATCH = WSK_PROVIDER_DISPATCH {
    Version: wsk_sys::MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskSocket: Some(super::socket::WskSocket),
    WskSocketConnect: Some(super::connection::WskSocketConnect),
    WskControlClient: Some(super::control_calls::WskControlClient),
    WskGetAddressInfo: Some(super::control_calls::WskGetAddressInfo),
    WskFreeAddressInfo: Some(super::control_calls::WskFreeAddressInfo),
    WskGetNameInfo: Some(super::control_calls::WskGetNameInfo),
};

pub(crate) static BASIC_DISPATCH: WSK_PROVIDER_BASIC_DISPATCH = WSK_PROVIDER_BASIC_DISPATCH {
    WskControlSocket: Some(super::control_calls::WskControlSocket),
    WskCloseSocket: Some(super::socket::WskCloseSocket),
};

pub(crate) static LISTEN_DISPATCH: WSK_PROVIDER_LISTEN_DISPATCH = WSK_PROVIDER_LISTEN_DISPATCH {
    Basic: BASIC_DISPATCH,
    WskBind: Some(super::listen::WskBind),
    WskAccept: Some(super::listen::WskAccept),
    WskInspectComplete: Some(super::listen::WskInspectComplete),
    WskGetLocalAddress: Some(super::listen::WskGetLocalAddress),
};

/// A provider table in a static: the tables hold only function pointers (and, for members
/// "reserved for system use", NULL pointers), never mutated, so sharing them is sound.
#[repr(transparent)]
pub(crate) struct Table<T>(pub T);
// SAFETY: immutable tables of function pointers / NULLs.
unsafe impl<T> Sync for Table<T> {}

const fn connection_table() -> WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: every member is an Option<fn> or a raw pointer: all-zero is None / NULL, which
    // also covers members reserved for system use that the sim leaves empty.
    let mut t: WSK_PROVIDER_CONNECTION_DISPATCH = unsafe { std::mem::zeroed() };
    t.Basic = BASIC_DISPATCH;
    t.WskBind = Some(super::listen::WskBind);
    t.WskConnect = Some(super::connection::WskConnect);
    t.WskGetLocalAddress = Some(super::listen::WskGetLocalAddress);
    t.WskGetRemoteAddress = Some(super::connection::WskGetRemoteAddress);
    t.WskSend = Some(super::connection::WskSend);
    t.WskReceive = Some(super::connection::WskReceive);
    t.WskDisconnect = Some(super::connection::WskDisconnect);
    t.WskRelease = Some(super::release::WskReleaseData);
    t.WskConnectEx = Some(super::connection::WskConnectEx);
    t
}

const fn stream_table() -> WSK_PROVIDER_STREAM_DISPATCH {
    // SAFETY: as in connection_table.
    let mut t: WSK_PROVIDER_STREAM_DISPATCH = unsafe { std::mem::zeroed() };
    t.Basic = BASIC_DISPATCH;
    t.WskBind = Some(super::listen::WskBind);
    t.WskAccept = Some(super::listen::WskAccept);
    t.WskConnect = Some(super::connection::WskConnect);
    t.WskListen = Some(super::listen::WskListen);
    t.WskSend = Some(super::connection::WskSend);
    t.WskReceive = Some(super::connection::WskReceive);
    t.WskDisconnect = Some(super::connection::WskDisconnect);
    t.WskRelease = Some(super::release::WskReleaseData);
    t.WskGetLocalAddress = Some(super::listen::WskGetLocalAddress);
    t.WskGetRemoteAddress = Some(super::connection::WskGetRemoteAddress);
    t.WskConnectEx = Some(super::connection::WskConnectEx);
    t
}

pub(crate) static CONNECTION_DISPATCH: Table<WSK_PROVIDER_CONNECTION_DISPATCH> =
    Table(connection_table());

pub(crate) static DATAGRAM_DISPATCH: WSK_PROVIDER_DATAGRAM_DISPATCH =
    WSK_PROVIDER_DATAGRAM_DISPATCH {
        Basic: BASIC_DISPATCH,
        WskBind: Some(super::listen::WskBind),
        WskSendTo: Some(super::datagram::WskSendTo),
        WskReceiveFrom: Some(super::datagram::WskReceiveFrom),
        WskRelease: Some(super::release::WskReleaseDatagrams),
        WskGetLocalAddress: Some(super::listen::WskGetLocalAddress),
        WskSendMessages: Some(super::datagram::WskSendMessages),
    };

pub(crate) static STREAM_DISPATCH: Table<WSK_PROVIDER_STREAM_DISPATCH> = Table(stream_table());

/// The table a new socket of `kind` carries in its WSK_SOCKET.
pub(crate) fn for_kind(kind: Kind) -> *const std::ffi::c_void {
    match kind {
        Kind::Basic => (&raw const BASIC_DISPATCH).cast(),
        Kind::Listen => (&raw const LISTEN_DISPATCH).cast(),
        Kind::Connection => (&raw const CONNECTION_DISPATCH).cast(),
        Kind::Datagram => (&raw const DATAGRAM_DISPATCH).cast(),
        Kind::Stream => (&raw const STREAM_DISPATCH).cast(),
    }
}
