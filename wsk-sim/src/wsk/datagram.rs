//! Datagram sockets: WskSendTo, WskSendMessages, WskReceiveFrom, WskRelease.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;

use wsk_sys::{
    NTSTATUS, PCMSGHDR, PIRP, PSOCKADDR, PULONG, PWSK_BUF, PWSK_BUF_LIST, PWSK_SOCKET,
    STATUS_INVALID_ADDRESS_COMPONENT, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS, ULONG, WSK_BUF,
};

use super::complete;
use super::socket::Progress;
use super::socket::{self, RecvFromReq, SendToReq, Sock};

/// Sends the queued datagrams of `req`, each read from its MDL chain at send time.
pub(crate) fn send_some(s: &mut Sock, req: &mut SendToReq) -> Progress {
    while let Some((buf, to)) = req.bufs.front().copied() {
        let Some(fd) = s.fd.as_ref() else {
            return Progress::Failed(STATUS_INVALID_DEVICE_STATE);
        };
        // SAFETY: the client's MDLs stay valid until completion; `segments` checks them.
        let Some(segs) = (unsafe {
            crate::kernel::mdl::segments(buf.Mdl, buf.Offset as usize, buf.Length, req.call)
        }) else {
            return Progress::Failed(STATUS_INVALID_PARAMETER);
        };
        let mut data = Vec::with_capacity(buf.Length);
        for (p, n) in segs {
            // SAFETY: validated segment.
            data.extend_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
        }
        match fd.send_to(&data, &to.into()) {
            Ok(n) => {
                req.sent += n;
                req.bufs.pop_front();
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(buf.Mdl, -1) };
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Blocked,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                // UDP send errors (e.g. ICMP port unreachable reported late) drop the datagram.
                req.bufs.pop_front();
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(buf.Mdl, -1) };
            }
        }
    }
    Progress::Done
}

/// Copies one datagram into a posted WskReceiveFrom and fills its optional outputs.
pub(crate) fn fill_recvfrom(req: &RecvFromReq, data: &[u8], from: SocketAddr) -> (NTSTATUS, usize) {
    // SAFETY: the client's MDLs stay valid until completion; `segments` checks them.
    let Some(segs) = (unsafe {
        crate::kernel::mdl::segments(
            req.buf.Mdl,
            req.buf.Offset as usize,
            req.buf.Length,
            "WskReceiveFrom",
        )
    }) else {
        return (STATUS_INVALID_PARAMETER, 0);
    };
    let mut off = 0;
    for (p, n) in segs {
        let take = n.min(data.len() - off);
        // SAFETY: validated segment of `n >= take` bytes.
        unsafe { std::ptr::copy_nonoverlapping(data[off..].as_ptr(), p, take) };
        off += take;
        if off == data.len() {
            break;
        }
    }
    // SAFETY: optional outputs the client keeps valid until completion (W14, W67).
    unsafe {
        if req.remote != 0 {
            super::addr::write(req.remote as PSOCKADDR, from);
        }
        if req.control_len != 0 {
            (req.control_len as PULONG).write(0);
        }
        if req.control_flags != 0 {
            (req.control_flags as PULONG).write(if off < data.len() {
                wsk_sys::MSG_TRUNC
            } else {
                0
            });
        }
    }
    (STATUS_SUCCESS, off)
}

fn sendto_common(
    socket_ptr: PWSK_SOCKET,
    bufs: Vec<WSK_BUF>,
    flags: ULONG,
    remote: PSOCKADDR,
    irp: PIRP,
    call: &'static str,
) -> NTSTATUS {
    let fault = if call == "WskSendTo" {
        crate::config::Call::WskSendTo
    } else {
        crate::config::Call::WskSendMessages
    };
    if let Some(st) = socket::left_unfinished(fault, irp, call) {
        return st;
    }
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(irp, call) } {
        return STATUS_INVALID_PARAMETER;
    }
    let _in = match socket::enter(socket_ptr, call) {
        Ok(c) => c,
        // SAFETY: taken above.
        Err(st) => return unsafe { complete::fail(irp, st) },
    };
    if let Some(st) = crate::kernel::schedule::injected_failure(fault) {
        // SAFETY: taken above.
        return unsafe { complete::fail(irp, st) };
    }
    if flags != 0 {
        crate::kernel::state::violation(format!(
            "{call} with Flags {flags:#x}: reserved, must be 0"
        ));
        // SAFETY: taken above.
        return unsafe { complete::fail(irp, STATUS_INVALID_PARAMETER) };
    }
    for b in &bufs {
        // SAFETY: validates each chain now so a bad WSK_BUF fails the call.
        if unsafe { crate::kernel::mdl::segments(b.Mdl, b.Offset as usize, b.Length, call) }
            .is_none()
        {
            // SAFETY: taken above.
            return unsafe { complete::fail(irp, STATUS_INVALID_PARAMETER) };
        }
    }
    // SAFETY: NULL or a client SOCKADDR.
    let to = unsafe { super::addr::read(remote) };
    let ws = socket_ptr as usize;
    // W64: a NULL RemoteAddress is the client's mistake unless SIO_WSK_SET_REMOTE_ADDRESS
    // (W38) fixed one: flagged, not only failed (WskSendMessages' page says the same of its
    // optional address by reference to the fixed one).
    let unconnected = to.is_none()
        && socket::with(|p| p.sockets.get(&ws).is_some_and(|s| s.fixed_remote.is_none()));
    if unconnected {
        crate::kernel::state::violation(format!(
            "{call} with a NULL RemoteAddress on a datagram socket with no fixed remote address (W64)"
        ));
        // SAFETY: taken above.
        return unsafe { complete::fail(irp, STATUS_INVALID_ADDRESS_COMPONENT) };
    }
    let inline_ok = !crate::kernel::schedule::chance(crate::kernel::state::config().pend_rate)
        && !crate::kernel::schedule::datagram_sends_held();
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if s.bound.is_none() {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        // W64: NULL RemoteAddress only with a fixed remote address.
        let Some(to) = to.or(s.fixed_remote) else {
            return Err(STATUS_INVALID_ADDRESS_COMPONENT);
        };
        if super::addr::family_of(&to) != s.family {
            return Err(STATUS_INVALID_ADDRESS_COMPONENT);
        }
        for b in &bufs {
            // SAFETY: pinned until sent.
            unsafe { crate::kernel::mdl::pin_chain(b.Mdl, 1) };
        }
        let mut req = SendToReq {
            irp: irp as usize,
            bufs: bufs.iter().map(|b| (*b, to)).collect::<VecDeque<_>>(),
            sent: 0,
            call,
        };
        if inline_ok && s.sendtos.is_empty() {
            match send_some(s, &mut req) {
                Progress::Done => return Ok((None, req.sent)),
                Progress::Failed(st) => {
                    for (b, _) in &req.bufs {
                        // SAFETY: pinned above.
                        unsafe { crate::kernel::mdl::pin_chain(b.Mdl, -1) };
                    }
                    return Err(st);
                }
                Progress::Blocked => {}
            }
        }
        // SAFETY: the provider owns the IRP.
        unsafe { crate::kernel::irp::mark_pending(irp) };
        s.sendtos.push_back(req);
        Ok((Some(s.owner), 0))
    });
    match r {
        Ok((None, sent)) => {
            // SAFETY: taken above; sent inline.
            unsafe { crate::kernel::irp::complete(irp, STATUS_SUCCESS, sent) };
            STATUS_SUCCESS
        }
        Ok((Some(owner), _)) => {
            super::wake::wake(owner);
            complete::late_return()
        }
        // SAFETY: taken above.
        Err(st) => unsafe { complete::fail(irp, st) },
    }
}

/// `WskSendTo`: W64.
#[no_mangle]
pub unsafe extern "win64" fn WskSendTo(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlInfoLength: ULONG,
    ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let _ = (ControlInfoLength, ControlInfo);
    crate::kernel::irql::require_dispatch_or_below("WskSendTo");
    if Buffer.is_null() {
        crate::kernel::state::violation("WskSendTo with a NULL Buffer");
    }
    let bufs = if Buffer.is_null() {
        Vec::new()
    } else {
        // SAFETY: the client's WSK_BUF (not NULL).
        vec![unsafe { *Buffer }]
    };
    sendto_common(Socket, bufs, Flags, RemoteAddress, Irp, "WskSendTo")
}

/// `WskSendMessages`: one datagram per WSK_BUF_LIST entry, all to one address (W65).
#[no_mangle]
pub unsafe extern "win64" fn WskSendMessages(
    Socket: PWSK_SOCKET,
    BufferList: PWSK_BUF_LIST,
    Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlInfoLength: ULONG,
    ControlInfo: PCMSGHDR,
    Irp: PIRP,
) -> NTSTATUS {
    let _ = (ControlInfoLength, ControlInfo);
    crate::kernel::irql::require_dispatch_or_below("WskSendMessages");
    let mut bufs = Vec::new();
    let mut cur = BufferList;
    while !cur.is_null() && bufs.len() < 65536 {
        // SAFETY: the client's list, valid until completion.
        unsafe {
            bufs.push((*cur).Buffer);
            cur = (*cur).Next;
        }
    }
    sendto_common(Socket, bufs, Flags, RemoteAddress, Irp, "WskSendMessages")
}

/// `WskReceiveFrom`: one datagram per IRP (W67).
#[no_mangle]
pub unsafe extern "win64" fn WskReceiveFrom(
    Socket: PWSK_SOCKET,
    Buffer: PWSK_BUF,
    Flags: ULONG,
    RemoteAddress: PSOCKADDR,
    ControlLength: PULONG,
    ControlInfo: PCMSGHDR,
    ControlFlags: PULONG,
    Irp: PIRP,
) -> NTSTATUS {
    let _ = ControlInfo;
    // SAFETY: the client passes its IRP to WskReceiveFrom.
    let _in = match unsafe {
        socket::begin_irp_call(
            Socket,
            Irp,
            "WskReceiveFrom",
            crate::config::Call::WskReceiveFrom,
        )
    } {
        Ok(call) => call,
        Err(st) => return st,
    };
    if Flags != 0 || Buffer.is_null() {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: the client's WSK_BUF.
    let buf = unsafe { *Buffer };
    // SAFETY: validates the chain now.
    if unsafe {
        crate::kernel::mdl::segments(buf.Mdl, buf.Offset as usize, buf.Length, "WskReceiveFrom")
    }
    .is_none()
    {
        // SAFETY: taken above.
        return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
    }
    // SAFETY: taken above; marked before the poller can complete it.
    unsafe { crate::kernel::irp::mark_pending(Irp) };
    let ws = Socket as usize;
    let r = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        if s.bound.is_none() {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        // SAFETY: pinned until completion.
        unsafe { crate::kernel::mdl::pin_chain(buf.Mdl, 1) };
        s.recvfroms.push_back(RecvFromReq {
            irp: Irp as usize,
            buf,
            remote: RemoteAddress as usize,
            control_len: ControlLength as usize,
            control_flags: ControlFlags as usize,
        });
        Ok(s.owner)
    });
    match r {
        Ok(owner) => super::wake::wake(owner),
        Err(st) => complete::defer(Irp, st, 0),
    }
    complete::late_return()
}
