//! Connection sockets: WskSocketConnect, WskConnect(Ex), WskSend (unbuffered: the client's
//! MDLs are read as the socket is written), WskReceive, WskDisconnect, WskRelease.

use std::io::ErrorKind;

use wsk_sys::{
    NTSTATUS, PEPROCESS, PETHREAD, PIRP, PSECURITY_DESCRIPTOR, PSOCKADDR, PVOID, PWSK_BUF,
    PWSK_CLIENT, PWSK_SOCKET, STATUS_BUFFER_OVERFLOW, STATUS_CANCELLED, STATUS_CONNECTION_ABORTED,
    STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET, STATUS_INVALID_ADDRESS_COMPONENT,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING,
    STATUS_SUCCESS, ULONG, USHORT, WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_FLAG_ABORTIVE,
    WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DRAIN, WSK_FLAG_NODELAY, WSK_FLAG_WAITALL,
};

use super::complete;
use super::socket::{self, Kind, Progress, RecvReq, SendReq, Sock};

fn io_status(e: &std::io::Error) -> NTSTATUS {
    match e.kind() {
        ErrorKind::ConnectionRefused => STATUS_CONNECTION_REFUSED,
        ErrorKind::ConnectionAborted => STATUS_CONNECTION_ABORTED,
        _ => STATUS_CONNECTION_RESET,
    }
}

/// Makes the connection dead with an RST (abortive), as a reset by the peer would.
pub(crate) fn abort(s: &mut Sock, status: NTSTATUS) {
    if let Some(fd) = s.fd.take() {
        let _ = fd.set_linger(Some(std::time::Duration::ZERO));
    }
    s.dead = Some(status);
}

/// Writes the next slices of `req` from the client's MDL chain (read now, not earlier).
pub(crate) fn write_some(s: &mut Sock, req: &mut SendReq) -> Progress {
    let max_slice = crate::kernel::state::config().max_write_slice.max(1);
    let reset_rate = crate::kernel::state::config().reset_rate;
    loop {
        if req.done >= req.buf.Length {
            return Progress::Done;
        }
        if let Some(st) = s.dead {
            return Progress::Failed(st);
        }
        let Some(fd) = s.fd.as_ref() else {
            return Progress::Failed(STATUS_CONNECTION_ABORTED);
        };
        // SAFETY: the WSK_BUF's MDLs stay valid until this IRP completes (the client's
        // contract); `segments` checks them.
        let Some(segs) = (unsafe {
            crate::kernel::mdl::segments(
                req.buf.Mdl,
                req.buf.Offset as usize,
                req.buf.Length,
                req.call,
            )
        }) else {
            return Progress::Failed(STATUS_INVALID_PARAMETER);
        };
        let slice = crate::kernel::schedule::range(1, max_slice);
        let mut skip = req.done;
        let mut chunk: Vec<u8> = Vec::with_capacity(slice);
        for (p, n) in segs {
            if skip >= n {
                skip -= n;
                continue;
            }
            let take = (n - skip).min(slice - chunk.len());
            // SAFETY: within the MDL-described memory just validated.
            chunk.extend_from_slice(unsafe { std::slice::from_raw_parts(p.add(skip), take) });
            skip = 0;
            if chunk.len() == slice {
                break;
            }
        }
        match fd.send_with_flags(&chunk, libc::MSG_NOSIGNAL) {
            Ok(n) => {
                req.done += n;
                if req.done < req.buf.Length && crate::kernel::schedule::chance(reset_rate) {
                    // Fault: the peer resets the connection mid-send.
                    abort(s, STATUS_CONNECTION_RESET);
                    return Progress::Failed(STATUS_CONNECTION_RESET);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Blocked,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let st = io_status(&e);
                abort(s, st);
                return Progress::Failed(st);
            }
        }
    }
}

/// Copies buffered stream data into a posted receive. Some(result) when it completes.
pub(crate) fn fill_receive(s: &mut Sock, req: &mut RecvReq) -> Option<(NTSTATUS, usize)> {
    if req.flags & WSK_FLAG_DRAIN != 0 {
        s.rx.clear();
        return (s.eof || s.dead.is_some()).then_some((STATUS_SUCCESS, 0));
    }
    if !s.rx.is_empty() {
        // SAFETY: the receive's MDLs stay valid until completion (client contract).
        let Some(segs) = (unsafe {
            crate::kernel::mdl::segments(
                req.buf.Mdl,
                req.buf.Offset as usize,
                req.buf.Length,
                "WskReceive",
            )
        }) else {
            return Some((STATUS_INVALID_PARAMETER, 0));
        };
        let mut skip = req.got;
        for (p, n) in segs {
            if skip >= n {
                skip -= n;
                continue;
            }
            let room = n - skip;
            let take = room.min(s.rx.len());
            for i in 0..take {
                // SAFETY: inside the validated segment.
                unsafe {
                    p.add(skip + i)
                        .write(s.rx.pop_front().expect("len checked"));
                };
            }
            req.got += take;
            skip = 0;
            if s.rx.is_empty() {
                break;
            }
        }
    }
    let full = req.got >= req.buf.Length;
    if req.got > 0 && (full || req.flags & WSK_FLAG_WAITALL == 0) {
        return Some((STATUS_SUCCESS, req.got));
    }
    if s.rx.is_empty() {
        if let Some(st) = s.dead {
            return Some(if req.got > 0 {
                (STATUS_SUCCESS, req.got)
            } else {
                (st, 0)
            });
        }
        if s.eof {
            // G6: a graceful close completes the receive with what there is (0 = EOF).
            return Some((STATUS_SUCCESS, req.got));
        }
    }
    None
}

fn start_connect(s: &mut Sock, remote: std::net::SocketAddr) -> Result<bool, NTSTATUS> {
    let fd = s.fd.as_ref().ok_or(STATUS_INVALID_DEVICE_STATE)?;
    s.remote = Some(remote);
    if crate::kernel::state::config()
        .unanswered_connects
        .contains(&remote)
    {
        // Config::unanswered_connects: no SYN goes out, no answer ever comes.
        s.unanswered = true;
        return Ok(false);
    }
    match fd.connect(&remote.into()) {
        Ok(()) => Ok(true),
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == ErrorKind::WouldBlock =>
        {
            Ok(false)
        }
        Err(e) => Err(io_status(&e)),
    }
}

/// `WskSocketConnect`: create + bind + connect in one IRP (W28).
#[no_mangle]
pub unsafe extern "win64" fn WskSocketConnect(
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
) -> NTSTATUS {
    let _ = OwningThread;
    // SAFETY: the client passes its IRP.
    let client = match unsafe {
        socket::begin_client_call(
            Client,
            Irp,
            Flags == 0,
            OwningProcess,
            "WskSocketConnect",
            crate::config::Call::WskSocketConnect,
        )
    } {
        Ok(client) => client,
        Err(st) => return st,
    };
    // SAFETY: the client passes SOCKADDRs of one family.
    let (Some(local), Some(remote)) = (unsafe { super::addr::read(LocalAddress) }, unsafe {
        super::addr::read(RemoteAddress)
    }) else {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_ADDRESS_COMPONENT) };
    };
    let family = super::addr::family_of(&local);
    let ws = match socket::create(
        client,
        family,
        SocketType,
        Protocol,
        WSK_FLAG_CONNECTION_SOCKET,
        SocketContext as usize,
        Dispatch as usize,
        SecurityDescriptor,
        "WskSocketConnect",
    ) {
        Ok(ws) => ws,
        // SAFETY: taken above.
        Err(st) => return unsafe { complete::fail(Irp, st) },
    };
    // SAFETY: taken above; marked before the poller can complete it.
    unsafe { crate::kernel::irp::mark_pending(Irp) };
    let r = socket::with(|p| {
        p.sockets.get_mut(&ws).expect("new").handed_out = false;
        super::listen::bind_locked(p, ws, local)?;
        let s = p.sockets.get_mut(&ws).expect("new");
        let now = start_connect(s, remote)?;
        s.connect = Some((Irp as usize, true));
        Ok((s.owner, now))
    });
    match r {
        Ok((owner, _)) => super::wake::wake(owner),
        Err(st) => {
            socket::with(|p| {
                if let Some(mut s) = socket::remove(p, ws) {
                    drop(s.fd.take());
                }
            });
            complete::defer(Irp, st, 0);
        }
    }
    STATUS_PENDING
}

fn connect_common(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
    call: &'static str,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below(call);
    if let Some(st) = socket::left_unfinished(crate::config::Call::WskConnect, Irp, call) {
        return st;
    }
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, call) } {
        return STATUS_INVALID_PARAMETER;
    }
    let _in = match socket::enter(Socket, call) {
        Ok(c) => c,
        // SAFETY: taken above.
        Err(st) => return unsafe { complete::fail(Irp, st) },
    };
    if let Some(st) = crate::kernel::schedule::injected_failure(crate::config::Call::WskConnect) {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, st) };
    }
    if Flags != 0 {
        crate::kernel::state::violation(format!(
            "{call} with Flags {Flags:#x}: reserved, must be 0 (W40)"
        ));
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: NULL or the client's WSK_BUF.
    let extra = (!Buffer.is_null())
        .then(|| unsafe { *Buffer })
        .filter(|b| b.Length > 0);
    if extra.is_some_and(|b| b.Length > 65535) {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_BUFFER_OVERFLOW) };
    }
    // SAFETY: the client passes a SOCKADDR.
    let Some(remote) = (unsafe { super::addr::read(RemoteAddress) }) else {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_ADDRESS_COMPONENT) };
    };
    // SAFETY: taken above; marked before the poller can complete it.
    unsafe { crate::kernel::irp::mark_pending(Irp) };
    let ws = Socket as usize;
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if !matches!(s.kind, Kind::Connection | Kind::Stream)
            || s.bound.is_none()
            || s.connected
            || s.connect.is_some()
            || s.listening
        {
            return Err(STATUS_INVALID_DEVICE_STATE); // W40: bound, unconnected sockets only
        }
        start_connect(s, remote)?;
        s.connect = Some((Irp as usize, false));
        if let Some(b) = extra {
            // SAFETY: pinned until the send completes.
            unsafe { crate::kernel::mdl::pin_chain(b.Mdl, 1) };
            s.sends.push_back(SendReq {
                irp: 0,
                buf: b,
                done: 0,
                call,
            });
        }
        Ok(s.owner)
    });
    match r {
        Ok(owner) => super::wake::wake(owner),
        Err(st) => complete::defer(Irp, st, 0),
    }
    complete::late_return()
}

/// `WskConnect`.
#[no_mangle]
pub unsafe extern "win64" fn WskConnect(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    connect_common(
        Socket,
        RemoteAddress,
        std::ptr::null_mut(),
        Flags,
        Irp,
        "WskConnect",
    )
}

/// `WskConnectEx`: connect, then send `Buffer` (at most 65,535 bytes).
#[no_mangle]
pub unsafe extern "win64" fn WskConnectEx(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    connect_common(Socket, RemoteAddress, Buffer, Flags, Irp, "WskConnectEx")
}

/// `WskGetRemoteAddress`.
#[no_mangle]
pub unsafe extern "win64" fn WskGetRemoteAddress(
    Socket: PWSK_SOCKET,
    RemoteAddress: PSOCKADDR,
    Irp: PIRP,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskGetRemoteAddress");
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskGetRemoteAddress") } {
        return STATUS_INVALID_PARAMETER;
    }
    let _in = match socket::enter(Socket, "WskGetRemoteAddress") {
        Ok(c) => c,
        // SAFETY: taken above.
        Err(st) => return unsafe { complete::fail(Irp, st) },
    };
    let ws = Socket as usize;
    let a = socket::with(|p| {
        p.sockets
            .get(&ws)
            .filter(|s| s.connected)
            .and_then(|s| s.remote)
    });
    match a {
        Some(a) => {
            // SAFETY: the client passes SOCKADDR storage.
            unsafe { super::addr::write(RemoteAddress, a) };
            // SAFETY: taken above.
            unsafe { complete::finish(Irp, STATUS_SUCCESS, 0) }
        }
        // SAFETY: taken above.
        None => unsafe { complete::fail(Irp, STATUS_INVALID_DEVICE_STATE) },
    }
}

/// `WskSend`: W62/W63. Completes only when every byte is on the socket.
#[no_mangle]
pub unsafe extern "win64" fn WskSend(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    // SAFETY: the client passes its IRP to WskSend.
    let _in = match unsafe {
        socket::begin_irp_call(Socket, Irp, "WskSend", crate::config::Call::WskSend)
    } {
        Ok(call) => call,
        Err(st) => return st,
    };
    if Flags & !WSK_FLAG_NODELAY != 0 {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_NOT_SUPPORTED) };
    }
    if Buffer.is_null() {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: the client's WSK_BUF (copied: its MDLs are read as the send progresses).
    let buf: WSK_BUF = unsafe { *Buffer };
    // SAFETY: validates the chain now so a bad WSK_BUF fails the call.
    if unsafe { crate::kernel::mdl::segments(buf.Mdl, buf.Offset as usize, buf.Length, "WskSend") }
        .is_none()
    {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    let ws = Socket as usize;
    let inline_ok = !crate::kernel::schedule::chance(crate::kernel::state::config().pend_rate);
    // Marked pending up front: the poller may complete it before we return.
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if !s.connected || s.shut_wr {
            return Err(s.dead.unwrap_or(STATUS_INVALID_DEVICE_STATE));
        }
        if let Some(st) = s.dead {
            return Err(st);
        }
        let mut req = SendReq {
            irp: Irp as usize,
            buf,
            done: 0,
            call: "WskSend",
        };
        if inline_ok && s.sends.is_empty() {
            match write_some(s, &mut req) {
                Progress::Done => return Ok(None),
                Progress::Failed(st) => return Err(st),
                Progress::Blocked => {}
            }
        }
        // SAFETY: the provider owns the IRP; pinned MDLs until completion.
        unsafe {
            crate::kernel::irp::mark_pending(Irp);
            crate::kernel::mdl::pin_chain(buf.Mdl, 1);
        }
        s.sends.push_back(req);
        Ok(Some(s.owner))
    });
    match r {
        Ok(None) => {
            // SAFETY: taken above; every byte was written.
            unsafe { crate::kernel::irp::complete(Irp, STATUS_SUCCESS, buf.Length) };
            STATUS_SUCCESS
        }
        Ok(Some(owner)) => {
            super::wake::wake(owner);
            complete::late_return()
        }
        // SAFETY: taken above.
        Err(st) => unsafe { complete::fail(Irp, st) },
    }
}

/// `WskReceive`: W66; a completed receive resumes blocked indications (W54/W56, G2).
#[no_mangle]
pub unsafe extern "win64" fn WskReceive(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    // SAFETY: the client passes its IRP to WskReceive.
    let _in = match unsafe {
        socket::begin_irp_call(Socket, Irp, "WskReceive", crate::config::Call::WskReceive)
    } {
        Ok(call) => call,
        Err(st) => return st,
    };
    if Flags & !(WSK_FLAG_WAITALL | WSK_FLAG_DRAIN) != 0 {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_NOT_SUPPORTED) };
    }
    // SAFETY: NULL or the client's WSK_BUF.
    let buf = if Buffer.is_null() {
        WSK_BUF {
            Mdl: std::ptr::null_mut(),
            Offset: 0,
            Length: 0,
        }
    } else {
        // SAFETY: non-NULL: the client's WSK_BUF.
        unsafe { *Buffer }
    };
    let drain = Flags & WSK_FLAG_DRAIN != 0;
    if drain && (Flags & WSK_FLAG_WAITALL != 0 || buf.Length != 0) {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: validates the chain now so a bad WSK_BUF fails the call.
    if unsafe {
        crate::kernel::mdl::segments(buf.Mdl, buf.Offset as usize, buf.Length, "WskReceive")
    }
    .is_none()
    {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    let ws = Socket as usize;
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if !s.connected && s.dead.is_none() {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        if buf.Length == 0 && !drain {
            // W56: a zero-length receive resumes indications without consuming data.
            s.rx_blocked = false;
            return Ok((Some(true), Some((STATUS_SUCCESS, 0)), s.owner));
        }
        let mut req = RecvReq {
            irp: Irp as usize,
            buf,
            flags: Flags,
            got: 0,
        };
        if s.receives.is_empty() {
            if let Some(res) = fill_receive(s, &mut req) {
                s.rx_blocked = false;
                return Ok((None, Some(res), s.owner));
            }
        }
        // SAFETY: the provider owns the IRP; MDLs pinned until completion.
        unsafe {
            crate::kernel::irp::mark_pending(Irp);
            crate::kernel::mdl::pin_chain(buf.Mdl, 1);
        }
        s.receives.push_back(req);
        Ok((Some(false), None, s.owner))
    });
    match r {
        Ok((Some(true), Some((st, n)), owner)) => {
            // Indications resume: they may come inside this call.
            super::wake::resume(owner, ws);
            // SAFETY: taken above.
            unsafe { complete::finish(Irp, st, n) }
        }
        Ok((_, Some((st, n)), owner)) => {
            super::wake::wake(owner);
            // SAFETY: taken above.
            unsafe { complete::finish(Irp, st, n) }
        }
        Ok((_, None, owner)) => {
            super::wake::wake(owner);
            complete::late_return()
        }
        // SAFETY: taken above.
        Err(st) => unsafe { complete::fail(Irp, st) },
    }
}

/// `WskDisconnect`: W69.
#[no_mangle]
pub unsafe extern "win64" fn WskDisconnect(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    Irp: PIRP,
) -> NTSTATUS {
    // SAFETY: the client passes its IRP to WskDisconnect.
    let _in = match unsafe {
        socket::begin_irp_call(
            Socket,
            Irp,
            "WskDisconnect",
            crate::config::Call::WskDisconnect,
        )
    } {
        Ok(call) => call,
        Err(st) => return st,
    };
    let ws = Socket as usize;
    if Flags & WSK_FLAG_ABORTIVE != 0 {
        if !Buffer.is_null() || Flags & !WSK_FLAG_ABORTIVE != 0 {
            // W69: an abortive disconnect takes no buffer (and no other flag): the client's
            // mistake, flagged as well as failed.
            crate::kernel::state::violation(if Buffer.is_null() {
                format!("WskDisconnect(WSK_FLAG_ABORTIVE) with other Flags {Flags:#x} (W69)")
            } else {
                "WskDisconnect(WSK_FLAG_ABORTIVE) with a Buffer: an abortive disconnect sends nothing, Buffer must be NULL (W69)".to_string()
            });
            // SAFETY: taken above.
            return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
        }
        let cancelled = socket::with(|p| {
            let s = p.sockets.get_mut(&ws).expect("entered");
            let mut v: Vec<(usize, NTSTATUS)> = Vec::new();
            for r in s.sends.drain(..) {
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
                if r.irp != 0 {
                    v.push((r.irp, STATUS_CANCELLED));
                }
            }
            for r in s.receives.drain(..) {
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
                v.push((r.irp, STATUS_CONNECTION_ABORTED));
            }
            if let Some(d) = s.disconnect.take() {
                v.push((d, STATUS_SUCCESS));
            }
            abort(s, STATUS_CONNECTION_ABORTED);
            s.dead_reported = true;
            s.shut_wr = true;
            s.eof = true;
            v
        });
        for (irp, st) in cancelled {
            complete::complete_now(irp as PIRP, st, 0);
        }
        // SAFETY: taken above.
        return unsafe { complete::finish(Irp, STATUS_SUCCESS, 0) };
    }
    if Flags != 0 {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: NULL or the client's WSK_BUF.
    let extra = (!Buffer.is_null())
        .then(|| unsafe { *Buffer })
        .filter(|b| b.Length > 0);
    // SAFETY: taken above; marked before the poller can complete it.
    unsafe { crate::kernel::irp::mark_pending(Irp) };
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if !s.connected || s.shut_wr || s.disconnect.is_some() {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        if let Some(b) = extra {
            // SAFETY: pinned until sent.
            unsafe { crate::kernel::mdl::pin_chain(b.Mdl, 1) };
            s.sends.push_back(SendReq {
                irp: 0,
                buf: b,
                done: 0,
                call: "WskDisconnect",
            });
        }
        s.disconnect = Some(Irp as usize);
        Ok(s.owner)
    });
    match r {
        Ok(owner) => super::wake::wake(owner),
        Err(st) => complete::defer(Irp, st, 0),
    }
    complete::late_return()
}
