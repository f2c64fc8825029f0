//! WskBind (with Windows' default no-sharing rule), WskListen, WskAccept, local addresses.

use std::net::SocketAddr;

use wsk_sys::{
    NTSTATUS, PIRP, PSOCKADDR, PVOID, PWSK_INSPECT_ID, PWSK_SOCKET, STATUS_ADDRESS_ALREADY_EXISTS,
    STATUS_INVALID_ADDRESS_COMPONENT, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED, STATUS_SUCCESS, ULONG, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_INSPECT_ACTION,
};

use super::complete;
use super::socket::{self, AcceptReq, Kind};

const BACKLOG: i32 = 128;

/// Does binding `a` (TCP if `tcp`) clash with a live non-shared bind? Windows' default SD
/// forbids sharing: the same port on the same address, or on the wildcard, is taken.
fn clashes(p: &socket::Provider, tcp: bool, a: SocketAddr) -> bool {
    if a.port() == 0 {
        return false;
    }
    p.sockets.values().any(|s| match s.share_key {
        Some((t, b)) if t == tcp && b.port() == a.port() && b.is_ipv4() == a.is_ipv4() => {
            !(s.shared) && (b.ip() == a.ip() || b.ip().is_unspecified() || a.ip().is_unspecified())
        }
        _ => false,
    })
}

fn map_bind_error(e: &std::io::Error) -> NTSTATUS {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => STATUS_ADDRESS_ALREADY_EXISTS,
        Some(libc::EADDRNOTAVAIL) => STATUS_INVALID_ADDRESS_COMPONENT,
        _ => STATUS_INVALID_PARAMETER,
    }
}

/// Binds (and, for listening sockets, starts listening). Used by WskSocketConnect too.
pub(crate) fn bind_locked(
    p: &mut socket::Provider,
    ws: usize,
    a: SocketAddr,
) -> Result<(), NTSTATUS> {
    let tcp = p.sockets.get(&ws).is_some_and(|s| s.kind != Kind::Datagram);
    if p.sockets[&ws].shared {
        // A cached SD was given: the sim treats it as allowing address sharing.
    } else if clashes(p, tcp, a) {
        return Err(STATUS_ADDRESS_ALREADY_EXISTS);
    }
    let s = p.sockets.get_mut(&ws).expect("live");
    if s.bound.is_some() {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    if super::addr::family_of(&a) != s.family {
        return Err(STATUS_INVALID_ADDRESS_COMPONENT);
    }
    let fd = s.fd.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
    fd.bind(&a.into()).map_err(|e| map_bind_error(&e))?;
    let local = fd
        .local_addr()
        .ok()
        .and_then(|l| l.as_socket())
        .unwrap_or(a);
    if s.kind == Kind::Listen {
        fd.listen(BACKLOG).map_err(|e| map_bind_error(&e))?;
        s.listening = true;
    }
    s.bound = Some(local);
    s.share_key = Some((tcp, local));
    Ok(())
}

/// `WskBind`: W39.
#[no_mangle]
pub unsafe extern "win64" fn WskBind(
    Socket: PWSK_SOCKET,
    LocalAddress: PSOCKADDR,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    // SAFETY: the client passes its IRP to WskBind.
    let _in = match unsafe {
        socket::begin_irp_call(Socket, Irp, "WskBind", crate::config::Call::WskBind)
    } {
        Ok(call) => call,
        Err(st) => return st,
    };
    if Flags != 0 {
        crate::kernel::state::violation(format!(
            "WskBind with Flags {Flags:#x}: reserved, must be 0 (W39)"
        ));
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: the client passes a SOCKADDR of its family.
    let Some(a) = (unsafe { super::addr::read(LocalAddress) }) else {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_ADDRESS_COMPONENT) };
    };
    let ws = Socket as usize;
    let r = socket::with(|p| bind_locked(p, ws, a));
    let owner = socket::with(|p| p.sockets.get(&ws).map_or(0, |s| s.owner));
    super::wake::wake(owner);
    match r {
        // SAFETY: taken above.
        Ok(()) => unsafe { complete::finish(Irp, STATUS_SUCCESS, 0) },
        // SAFETY: taken above.
        Err(st) => unsafe { complete::fail(Irp, st) },
    }
}

/// `WskListen` (stream sockets): a bound stream socket starts listening.
#[no_mangle]
pub unsafe extern "win64" fn WskListen(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS {
    // The common start of every IRP call, injected failures (Call::WskListen) included.
    // SAFETY: the client passes its IRP.
    let _in = match unsafe {
        socket::begin_irp_call(Socket, Irp, "WskListen", crate::config::Call::WskListen)
    } {
        Ok(c) => c,
        Err(st) => return st,
    };
    let ws = Socket as usize;
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if s.bound.is_none() || s.connected || s.listening {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        s.fd.as_ref()
            .ok_or(STATUS_INVALID_DEVICE_STATE)?
            .listen(BACKLOG)
            .map_err(|e| map_bind_error(&e))?;
        s.listening = true;
        Ok(s.owner)
    });
    match r {
        Ok(owner) => {
            super::wake::wake(owner);
            // SAFETY: taken above.
            unsafe { complete::finish(Irp, STATUS_SUCCESS, 0) }
        }
        // SAFETY: taken above.
        Err(st) => unsafe { complete::fail(Irp, st) },
    }
}

/// `WskAccept`: completes when a connection arrives (W41).
#[no_mangle]
pub unsafe extern "win64" fn WskAccept(
    ListenSocket: PWSK_SOCKET,
    Flags: ULONG,
    AcceptSocketContext: PVOID,
    AcceptSocketDispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    LocalAddress: PSOCKADDR,
    RemoteAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskAccept");
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskAccept") } {
        return STATUS_INVALID_PARAMETER;
    }
    let _in = match socket::enter(ListenSocket, "WskAccept") {
        Ok(c) => c,
        // SAFETY: taken above.
        Err(st) => return unsafe { complete::fail(Irp, st) },
    };
    if let Some(st) = crate::kernel::schedule::injected_failure(crate::config::Call::WskAccept) {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, st) };
    }
    if Flags != 0 {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    let ws = ListenSocket as usize;
    // Marked pending before the poller can see it (W12).
    // SAFETY: taken above.
    unsafe { crate::kernel::irp::mark_pending(Irp) };
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if !s.listening {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        s.accepts.push_back(AcceptReq {
            irp: Irp as usize,
            ctx: AcceptSocketContext as usize,
            dispatch: AcceptSocketDispatch as usize,
            local: LocalAddress as usize,
            remote: RemoteAddress as usize,
        });
        Ok(s.owner)
    });
    match r {
        Ok(owner) => {
            super::wake::wake(owner);
            wsk_sys::STATUS_PENDING
        }
        Err(st) => {
            // Not queued: the IRP (already marked pending) completes with the failure.
            complete::defer(Irp, st, 0);
            wsk_sys::STATUS_PENDING
        }
    }
}

/// `WskInspectComplete`: conditional accept is not simulated.
#[no_mangle]
pub unsafe extern "win64" fn WskInspectComplete(
    ListenSocket: PWSK_SOCKET,
    InspectID: PWSK_INSPECT_ID,
    Action: WSK_INSPECT_ACTION,
    Irp: PIRP,
) -> NTSTATUS {
    let _ = (ListenSocket, InspectID, Action);
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskInspectComplete") } {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: taken above.
    unsafe { complete::fail(Irp, STATUS_NOT_SUPPORTED) }
}

/// `WskGetLocalAddress`: bound sockets only (W71).
#[no_mangle]
pub unsafe extern "win64" fn WskGetLocalAddress(
    Socket: PWSK_SOCKET,
    LocalAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskGetLocalAddress");
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskGetLocalAddress") } {
        return STATUS_INVALID_PARAMETER;
    }
    let _in = match socket::enter(Socket, "WskGetLocalAddress") {
        Ok(c) => c,
        // SAFETY: taken above.
        Err(st) => return unsafe { complete::fail(Irp, st) },
    };
    let ws = Socket as usize;
    let a = socket::with(|p| {
        let s = p.sockets.get(&ws)?;
        // The IP of a wildcard-bound connection socket becomes known at connect.
        let live =
            s.fd.as_ref()
                .and_then(|f| f.local_addr().ok())
                .and_then(|l| l.as_socket());
        s.bound.map(|b| live.unwrap_or(b))
    });
    match a {
        Some(a) => {
            // SAFETY: the client passes SOCKADDR storage of its family.
            unsafe { super::addr::write(LocalAddress, a) };
            // SAFETY: taken above.
            unsafe { complete::finish(Irp, STATUS_SUCCESS, 0) }
        }
        // SAFETY: taken above.
        None => unsafe { complete::fail(Irp, STATUS_INVALID_DEVICE_STATE) },
    }
}
