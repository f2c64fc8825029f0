//! WskControlClient (static callbacks, transport list, cached SDs) and WskControlSocket
//! (SO_WSK_EVENT_CALLBACK, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, a few plain options).

use wsk_sys::{
    WskGetOption, WskIoctl, WskSetOption, AF_INET, AF_INET6, GUID, IPPROTO_TCP, IPPROTO_UDP,
    NTSTATUS, PADDRINFOEXW, PEPROCESS, PETHREAD, PIRP, PSOCKADDR, PUNICODE_STRING, PVOID,
    PWSK_CLIENT, PWSK_SOCKET, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, SIO_WSK_SET_REMOTE_ADDRESS, SIZE_T,
    SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET, SO_WSK_EVENT_CALLBACK, STATUS_BUFFER_OVERFLOW,
    STATUS_BUFFER_TOO_SMALL, STATUS_EVENT_PENDING, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, ULONG, WSK_CACHE_SD,
    WSK_CONTROL_SOCKET_TYPE, WSK_EVENT_ACCEPT, WSK_EVENT_CALLBACK_CONTROL, WSK_EVENT_DISABLE,
    WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM, WSK_EVENT_SEND_BACKLOG,
    WSK_RELEASE_SD, WSK_SET_STATIC_EVENT_CALLBACKS, WSK_TRANSPORT, WSK_TRANSPORT_LIST_CHANGE,
    WSK_TRANSPORT_LIST_QUERY,
};

use super::complete;
use super::socket::{self, Kind};

/// {8C1A4F5E-0B6D-4A0F-9A5B-5753494D5754}: the sim's transport provider id.
const SIM_PROVIDER_ID: GUID = GUID {
    Data1: 0x8C1A_4F5E,
    Data2: 0x0B6D,
    Data3: 0x4A0F,
    Data4: *b"\x9A\x5BWSIMWT",
};

fn npi_ok(p: *const GUID) -> bool {
    // SAFETY: NpiId points to a GUID (client contract); NULL checked.
    !p.is_null() && unsafe { *p } == wsk_sys::NPI_WSK_INTERFACE_ID
}

/// Ends a WskControlClient/WskControlSocket call: with an IRP the size goes to
/// IoStatus.Information, without one to *OutputSizeReturned (W21, W30).
///
/// # Safety
/// `irp` is NULL or provider-owned; `ret` is NULL or SIZE_T storage.
unsafe fn done(irp: PIRP, ret: *mut SIZE_T, status: NTSTATUS, size: usize) -> NTSTATUS {
    if irp.is_null() {
        if !ret.is_null() {
            // SAFETY: per the function contract.
            unsafe { ret.write(size) };
        }
        status
    } else {
        // SAFETY: per the function contract.
        unsafe { complete::finish(irp, status, size) }
    }
}

/// `WskControlClient`.
#[no_mangle]
pub unsafe extern "win64" fn WskControlClient(
    Client: PWSK_CLIENT,
    ControlCode: ULONG,
    InputSize: SIZE_T,
    InputBuffer: PVOID,
    OutputSize: SIZE_T,
    OutputBuffer: PVOID,
    OutputSizeReturned: *mut SIZE_T,
    Irp: PIRP,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskControlClient");
    // SAFETY: NULL or the client's IRP.
    if !Irp.is_null() && !unsafe { crate::kernel::irp::take(Irp, "WskControlClient") } {
        return STATUS_INVALID_PARAMETER;
    }
    let client = Client as usize;
    if !super::clients::check_client(client, "WskControlClient") {
        // SAFETY: taken or NULL.
        return unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_PARAMETER, 0) };
    }
    if let Some(st) =
        crate::kernel::schedule::injected_failure(crate::config::Call::WskControlClient)
    {
        // SAFETY: taken or NULL.
        return unsafe { done(Irp, OutputSizeReturned, st, 0) };
    }
    match ControlCode {
        WSK_SET_STATIC_EVENT_CALLBACKS => {
            if !Irp.is_null() {
                crate::kernel::state::violation(
                    "WSK_SET_STATIC_EVENT_CALLBACKS with an IRP (it must be NULL, W16)",
                );
                // SAFETY: taken above.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_PARAMETER, 0) };
            }
            if InputSize < std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>()
                || InputBuffer.is_null()
            {
                return STATUS_INVALID_PARAMETER;
            }
            // SAFETY: checked size; the client's WSK_EVENT_CALLBACK_CONTROL.
            let ctl = unsafe { *InputBuffer.cast::<WSK_EVENT_CALLBACK_CONTROL>() };
            if !npi_ok(ctl.NpiId) {
                return STATUS_INVALID_PARAMETER;
            }
            let all = WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE_FROM | socket::CONNECTION_EVENTS;
            if ctl.EventMask & !all != 0 {
                return STATUS_INVALID_PARAMETER;
            }
            let r = super::clients::with_client(client, |r| {
                if r.sockets_created > 0 {
                    return Err(());
                }
                r.static_mask |= ctl.EventMask;
                Ok(())
            });
            if let Some(Err(())) = r {
                crate::kernel::state::violation(
                    "WSK_SET_STATIC_EVENT_CALLBACKS after the client's first socket (W16/C26)",
                );
                return STATUS_INVALID_DEVICE_STATE;
            }
            STATUS_SUCCESS
        }
        WSK_TRANSPORT_LIST_QUERY => {
            let list = [
                (SOCK_STREAM, IPPROTO_TCP, AF_INET),
                (SOCK_DGRAM, IPPROTO_UDP, AF_INET),
                (SOCK_STREAM, IPPROTO_TCP, AF_INET6),
                (SOCK_DGRAM, IPPROTO_UDP, AF_INET6),
            ];
            let need = list.len() * std::mem::size_of::<WSK_TRANSPORT>();
            if OutputBuffer.is_null() || OutputSize < need {
                // SAFETY: taken or NULL.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_BUFFER_OVERFLOW, need) };
            }
            let out = OutputBuffer.cast::<WSK_TRANSPORT>();
            for (i, (ty, proto, fam)) in list.iter().enumerate() {
                // SAFETY: OutputSize covers `need` bytes.
                unsafe {
                    out.add(i).write_unaligned(WSK_TRANSPORT {
                        Version: wsk_sys::MAKE_WSK_VERSION(1, 0),
                        SocketType: *ty,
                        Protocol: *proto,
                        AddressFamily: *fam,
                        ProviderId: SIM_PROVIDER_ID,
                    });
                }
            }
            // SAFETY: taken or NULL.
            unsafe { done(Irp, OutputSizeReturned, STATUS_SUCCESS, need) }
        }
        WSK_TRANSPORT_LIST_CHANGE => {
            if Irp.is_null() {
                return STATUS_INVALID_PARAMETER;
            }
            // SAFETY: taken above; marked before it is visible to WskDeregister.
            unsafe { crate::kernel::irp::mark_pending(Irp) };
            super::clients::with_client(client, |r| r.list_change_irps.push(Irp as usize));
            complete::late_return()
        }
        WSK_CACHE_SD => {
            let psz = std::mem::size_of::<PVOID>();
            if InputSize < psz
                || OutputSize < psz
                || InputBuffer.is_null()
                || OutputBuffer.is_null()
            {
                // SAFETY: taken or NULL.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_PARAMETER, 0) };
            }
            // SAFETY: the input is one PSECURITY_DESCRIPTOR.
            let sd = unsafe { *InputBuffer.cast::<PVOID>() };
            if sd.is_null() {
                // SAFETY: taken or NULL.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_PARAMETER, 0) };
            }
            // The cached copy is provider memory; its content is not interpreted.
            let copy = Box::into_raw(Box::new([0u64; 8])) as usize;
            super::clients::with_client(client, |r| r.cached_sds.insert(copy));
            // SAFETY: the output is one PSECURITY_DESCRIPTOR.
            unsafe { OutputBuffer.cast::<PVOID>().write(copy as PVOID) };
            // SAFETY: taken or NULL.
            unsafe { done(Irp, OutputSizeReturned, STATUS_SUCCESS, psz) }
        }
        WSK_RELEASE_SD => {
            if InputSize < std::mem::size_of::<PVOID>() || InputBuffer.is_null() {
                // SAFETY: taken or NULL.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_PARAMETER, 0) };
            }
            // SAFETY: the input is one PSECURITY_DESCRIPTOR.
            let sd = unsafe { *InputBuffer.cast::<PVOID>() } as usize;
            let ok =
                super::clients::with_client(client, |r| r.cached_sds.remove(&sd)).unwrap_or(false);
            if ok {
                // SAFETY: allocated by WSK_CACHE_SD.
                drop(unsafe { Box::from_raw(sd as *mut [u64; 8]) });
                // SAFETY: taken or NULL.
                unsafe { done(Irp, OutputSizeReturned, STATUS_SUCCESS, 0) }
            } else {
                crate::kernel::state::violation(format!(
                    "WSK_RELEASE_SD({sd:#x}): not a cached security descriptor (W20)"
                ));
                // SAFETY: taken or NULL.
                unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_PARAMETER, 0) }
            }
        }
        // SAFETY: taken or NULL.
        _ => unsafe { done(Irp, OutputSizeReturned, STATUS_NOT_SUPPORTED, 0) },
    }
}

/// Which client dispatch entry serves `event` on `s`: W25 flags enabling a NULL entry.
fn entry_present(s: &socket::Sock, event: u32) -> bool {
    if s.dispatch == 0 {
        return false;
    }
    let d = s.dispatch as *const usize;
    // The client tables are arrays of function pointers:
    // listen {Accept, Inspect, Abort}, connection {Receive, Disconnect, SendBacklog},
    // datagram {ReceiveFrom}, stream {Listen*, Connect*}.
    // SAFETY: the client's dispatch table of the socket's category.
    unsafe {
        match (s.kind, event) {
            (Kind::Listen, WSK_EVENT_ACCEPT) => *d != 0,
            (Kind::Listen, _) => true, // connection flags for accepted sockets
            (Kind::Datagram, WSK_EVENT_RECEIVE_FROM) => *d != 0,
            (Kind::Connection, WSK_EVENT_RECEIVE) => *d != 0,
            (Kind::Connection, WSK_EVENT_DISCONNECT) => *d.add(1) != 0,
            (Kind::Connection, WSK_EVENT_SEND_BACKLOG) => *d.add(2) != 0,
            (Kind::Stream, WSK_EVENT_ACCEPT) => *d != 0 && **d.cast::<*const usize>() != 0,
            (Kind::Stream, _) => *d.add(1) != 0,
            _ => false,
        }
    }
}

fn event_callback(
    ws: usize,
    input: *const WSK_EVENT_CALLBACK_CONTROL,
    input_size: usize,
    irp: PIRP,
    ret: *mut SIZE_T,
) -> NTSTATUS {
    if input.is_null() || input_size < std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() {
        // SAFETY: taken or NULL.
        return unsafe { done(irp, ret, STATUS_INVALID_PARAMETER, 0) };
    }
    // SAFETY: checked size; the client's control block.
    let ctl = unsafe { *input };
    if !npi_ok(ctl.NpiId) {
        // SAFETY: taken or NULL.
        return unsafe { done(irp, ret, STATUS_INVALID_PARAMETER, 0) };
    }
    let disable = ctl.EventMask & WSK_EVENT_DISABLE != 0;
    let mask = ctl.EventMask & !WSK_EVENT_DISABLE;
    enum Out {
        Fail(NTSTATUS, Option<String>),
        Ok(usize),
        EventPending,
        Pend,
    }
    let out = socket::with(|p| {
        let s = p.sockets.get_mut(&ws).expect("entered");
        let allowed = s.kind.event_mask();
        if mask == 0 || mask & !allowed != 0 {
            return Out::Fail(
                STATUS_INVALID_PARAMETER,
                Some(format!(
                    "SO_WSK_EVENT_CALLBACK mask {mask:#x} is not valid for a {:?} socket (W32)",
                    s.kind
                )),
            );
        }
        if disable {
            if mask.count_ones() != 1 {
                return Out::Fail(
                    STATUS_INVALID_PARAMETER,
                    Some(
                        "disabling must name exactly one event plus WSK_EVENT_DISABLE (W32)".into(),
                    ),
                );
            }
            if s.static_mask & mask != 0 {
                return Out::Fail(
                    STATUS_INVALID_PARAMETER,
                    Some("a statically enabled callback cannot be disabled (W16)".into()),
                );
            }
            if s.kind == Kind::Listen && mask & socket::CONNECTION_EVENTS != 0 {
                return Out::Fail(
                    STATUS_INVALID_PARAMETER,
                    Some(
                        "connection callbacks enabled on a listener cannot be disabled (W34)"
                            .into(),
                    ),
                );
            }
            s.enabled &= !mask;
            if s.running & mask != 0 {
                // W33: the callback is running now.
                if irp.is_null() {
                    return Out::EventPending;
                }
                // Marked pending before it is published: the callback may return and
                // complete it as soon as the lock is released (W12).
                // SAFETY: the provider owns the IRP (taken by the caller).
                unsafe { crate::kernel::irp::mark_pending(irp) };
                s.disable_waiters.push((mask, irp as usize));
                return Out::Pend;
            }
            return Out::Ok(s.owner);
        }
        // Enabling (W31): listen/datagram after bind, connection after connect.
        let ready = match s.kind {
            Kind::Listen | Kind::Datagram => s.bound.is_some(),
            Kind::Connection => s.connected,
            Kind::Stream => s.connected || s.listening,
            Kind::Basic => false,
        };
        if !ready {
            return Out::Fail(
                STATUS_INVALID_DEVICE_STATE,
                Some(format!(
                    "SO_WSK_EVENT_CALLBACK enabled on a {:?} socket before {} (W31/C26)",
                    s.kind,
                    if s.kind == Kind::Connection {
                        "connect"
                    } else {
                        "bind"
                    }
                )),
            );
        }
        if !irp.is_null() {
            return Out::Fail(
                STATUS_INVALID_PARAMETER,
                Some("SO_WSK_EVENT_CALLBACK enable with an IRP (Irp must be NULL, W30)".into()),
            );
        }
        // W50: inside WskAcceptEvent the context/dispatch come from the out-parameters.
        if let Some((ctx_slot, disp_slot)) = s.accept_slots {
            // SAFETY: the slots live on the provider thread's stack during the callback.
            unsafe {
                s.ctx = *(ctx_slot as *const usize);
                s.dispatch = *(disp_slot as *const usize);
            }
        }
        for bit in [
            WSK_EVENT_ACCEPT,
            WSK_EVENT_RECEIVE_FROM,
            WSK_EVENT_RECEIVE,
            WSK_EVENT_DISCONNECT,
            WSK_EVENT_SEND_BACKLOG,
        ] {
            if mask & bit != 0 && !entry_present(s, bit) {
                return Out::Fail(
                    STATUS_INVALID_PARAMETER,
                    Some(format!(
                        "enabling event {bit:#x} whose client dispatch entry is NULL (W25)"
                    )),
                );
            }
        }
        if s.kind == Kind::Listen {
            s.inherit |= mask & socket::CONNECTION_EVENTS;
        }
        if mask & WSK_EVENT_RECEIVE_FROM != 0 {
            s.dgram_retry_at = None;
        }
        if mask & WSK_EVENT_SEND_BACKLOG != 0 {
            s.backlog_reported = false;
        }
        s.enabled |= mask
            & !(if s.kind == Kind::Listen {
                socket::CONNECTION_EVENTS
            } else {
                0
            });
        Out::Ok(s.owner)
    });
    match out {
        Out::Fail(st, msg) => {
            if let Some(m) = msg {
                crate::kernel::state::violation(m);
            }
            // SAFETY: taken or NULL.
            unsafe { done(irp, ret, st, 0) }
        }
        Out::Ok(owner) => {
            super::wake::wake(owner);
            // SAFETY: taken or NULL.
            unsafe { done(irp, ret, STATUS_SUCCESS, 0) }
        }
        Out::EventPending => STATUS_EVENT_PENDING,
        Out::Pend => complete::late_return(),
    }
}

/// `WskControlSocket`.
#[no_mangle]
pub unsafe extern "win64" fn WskControlSocket(
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
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskControlSocket");
    if let Some(st) = super::socket::left_unfinished(
        crate::config::Call::WskControlSocket,
        Irp,
        "WskControlSocket",
    ) {
        return st;
    }
    // SAFETY: NULL or the client's IRP.
    if !Irp.is_null() && !unsafe { crate::kernel::irp::take(Irp, "WskControlSocket") } {
        return STATUS_INVALID_PARAMETER;
    }
    let _in = match socket::enter(Socket, "WskControlSocket") {
        Ok(c) => c,
        // SAFETY: taken or NULL.
        Err(st) => return unsafe { done(Irp, OutputSizeReturned, st, 0) },
    };
    let ws = Socket as usize;
    if RequestType == WskSetOption && Level == SOL_SOCKET && ControlCode == SO_WSK_EVENT_CALLBACK {
        return event_callback(ws, InputBuffer.cast(), InputSize, Irp, OutputSizeReturned);
    }
    if let Some(st) =
        crate::kernel::schedule::injected_failure(crate::config::Call::WskControlSocket)
    {
        // SAFETY: taken or NULL.
        return unsafe { done(Irp, OutputSizeReturned, st, 0) };
    }
    match (RequestType, ControlCode) {
        (WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG) => {
            let ok = socket::with(|p| {
                p.sockets.get(&ws).is_some_and(|s| {
                    s.connected && matches!(s.kind, Kind::Connection | Kind::Stream)
                })
            });
            if Irp.is_null() {
                crate::kernel::state::violation(
                    "SIO_WSK_QUERY_IDEAL_SEND_BACKLOG without an IRP (W30/W36)",
                );
                return STATUS_INVALID_PARAMETER;
            }
            if !ok {
                // SAFETY: taken above.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_INVALID_DEVICE_STATE, 0) };
            }
            if OutputBuffer.is_null() || OutputSize < std::mem::size_of::<SIZE_T>() {
                // SAFETY: taken above.
                return unsafe { done(Irp, OutputSizeReturned, STATUS_BUFFER_TOO_SMALL, 0) };
            }
            // SAFETY: checked size.
            unsafe {
                OutputBuffer
                    .cast::<SIZE_T>()
                    .write_unaligned(crate::kernel::state::config().ideal_send_backlog);
            };
            // SAFETY: taken above.
            unsafe {
                done(
                    Irp,
                    OutputSizeReturned,
                    STATUS_SUCCESS,
                    std::mem::size_of::<SIZE_T>(),
                )
            }
        }
        (WskIoctl, SIO_WSK_SET_REMOTE_ADDRESS) => {
            if Irp.is_null() {
                crate::kernel::state::violation("SIO_WSK_SET_REMOTE_ADDRESS without an IRP (W38)");
                return STATUS_INVALID_PARAMETER;
            }
            let a = if InputSize == 0 {
                None
            } else {
                // SAFETY: a client SOCKADDR of InputSize bytes.
                unsafe { super::addr::read(InputBuffer as PSOCKADDR) }
            };
            let st = socket::with(|p| {
                let s = p.sockets.get_mut(&ws).expect("entered");
                if s.kind != Kind::Datagram || s.bound.is_none() {
                    return STATUS_INVALID_DEVICE_STATE;
                }
                s.fixed_remote = a;
                STATUS_SUCCESS
            });
            // SAFETY: taken above.
            unsafe { done(Irp, OutputSizeReturned, st, 0) }
        }
        (WskSetOption | WskGetOption, _) => {
            // SAFETY: taken or NULL; buffers per the option.
            let st = unsafe {
                plain_option(
                    ws,
                    RequestType,
                    ControlCode,
                    Level,
                    InputSize,
                    InputBuffer,
                    OutputSize,
                    OutputBuffer,
                )
            };
            let size = if RequestType == WskGetOption && st.0 == STATUS_SUCCESS {
                st.1
            } else {
                0
            };
            // SAFETY: taken or NULL.
            unsafe { done(Irp, OutputSizeReturned, st.0, size) }
        }
        // SAFETY: taken or NULL.
        _ => unsafe { done(Irp, OutputSizeReturned, STATUS_NOT_SUPPORTED, 0) },
    }
}

/// SO_REUSEADDR / SO_EXCLUSIVEADDRUSE (accepted), SO_RCVBUF / SO_SNDBUF, TCP_NODELAY,
/// IPV6_V6ONLY, passed to the host socket; anything else is not supported.
#[allow(clippy::too_many_arguments)]
unsafe fn plain_option(
    ws: usize,
    ty: WSK_CONTROL_SOCKET_TYPE,
    code: ULONG,
    level: ULONG,
    in_size: usize,
    input: PVOID,
    out_size: usize,
    output: PVOID,
) -> (NTSTATUS, usize) {
    let read_u32 = || -> Option<u32> {
        // SAFETY: checked size.
        (in_size >= 4 && !input.is_null()).then(|| unsafe { input.cast::<u32>().read_unaligned() })
    };
    socket::with(|p| {
        let Some(s) = p.sockets.get_mut(&ws) else {
            return (STATUS_INVALID_PARAMETER, 0);
        };
        let Some(fd) = s.fd.as_ref() else {
            return (STATUS_INVALID_DEVICE_STATE, 0);
        };
        let get = |v: u32| -> (NTSTATUS, usize) {
            if output.is_null() || out_size < 4 {
                return (STATUS_BUFFER_TOO_SMALL, 0);
            }
            // SAFETY: checked size.
            unsafe { output.cast::<u32>().write_unaligned(v) };
            (STATUS_SUCCESS, 4)
        };
        let set_ok = |r: std::io::Result<()>| {
            if r.is_ok() {
                (STATUS_SUCCESS, 0)
            } else {
                (STATUS_INVALID_PARAMETER, 0)
            }
        };
        match (ty, level, code) {
            (WskSetOption, SOL_SOCKET, wsk_sys::SO_REUSEADDR | wsk_sys::SO_EXCLUSIVEADDRUSE) => {
                if s.bound.is_some() {
                    (STATUS_INVALID_DEVICE_STATE, 0)
                } else {
                    (STATUS_SUCCESS, 0)
                }
            }
            (WskSetOption, SOL_SOCKET, wsk_sys::SO_RCVBUF) => read_u32()
                .map_or((STATUS_INVALID_PARAMETER, 0), |v| {
                    set_ok(fd.set_recv_buffer_size(v as usize))
                }),
            (WskSetOption, SOL_SOCKET, wsk_sys::SO_SNDBUF) => read_u32()
                .map_or((STATUS_INVALID_PARAMETER, 0), |v| {
                    set_ok(fd.set_send_buffer_size(v as usize))
                }),
            (WskGetOption, SOL_SOCKET, wsk_sys::SO_RCVBUF) => {
                get(fd.recv_buffer_size().unwrap_or(0) as u32)
            }
            (WskGetOption, SOL_SOCKET, wsk_sys::SO_SNDBUF) => {
                get(fd.send_buffer_size().unwrap_or(0) as u32)
            }
            (WskSetOption, IPPROTO_TCP, wsk_sys::TCP_NODELAY) => read_u32()
                .map_or((STATUS_INVALID_PARAMETER, 0), |v| {
                    set_ok(fd.set_nodelay(v != 0))
                }),
            (WskGetOption, IPPROTO_TCP, wsk_sys::TCP_NODELAY) => {
                get(u32::from(fd.nodelay().unwrap_or(false)))
            }
            (WskSetOption, wsk_sys::IPPROTO_IPV6, wsk_sys::IPV6_V6ONLY) => read_u32()
                .map_or((STATUS_INVALID_PARAMETER, 0), |v| {
                    set_ok(fd.set_only_v6(v != 0))
                }),
            _ => (STATUS_NOT_SUPPORTED, 0),
        }
    })
}

/// `WskGetAddressInfo`: name resolution is not simulated.
#[no_mangle]
pub unsafe extern "win64" fn WskGetAddressInfo(
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
) -> NTSTATUS {
    let _ = (
        Client,
        NodeName,
        ServiceName,
        NameSpace,
        Provider,
        Hints,
        Result,
        OwningProcess,
        OwningThread,
    );
    crate::kernel::irql::require_passive("WskGetAddressInfo");
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskGetAddressInfo") } {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: taken above.
    unsafe { complete::fail(Irp, STATUS_NOT_SUPPORTED) }
}

/// `WskFreeAddressInfo`: nothing is ever allocated by WskGetAddressInfo here.
#[no_mangle]
pub unsafe extern "win64" fn WskFreeAddressInfo(Client: PWSK_CLIENT, AddrInfo: PADDRINFOEXW) {
    let _ = (Client, AddrInfo);
    crate::kernel::irql::require_passive("WskFreeAddressInfo");
}

/// `WskGetNameInfo`: not simulated.
#[no_mangle]
pub unsafe extern "win64" fn WskGetNameInfo(
    Client: PWSK_CLIENT,
    SockAddr: PSOCKADDR,
    SockAddrLength: ULONG,
    NodeName: PUNICODE_STRING,
    ServiceName: PUNICODE_STRING,
    Flags: ULONG,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    Irp: PIRP,
) -> NTSTATUS {
    let _ = (
        Client,
        SockAddr,
        SockAddrLength,
        NodeName,
        ServiceName,
        Flags,
        OwningProcess,
        OwningThread,
    );
    crate::kernel::irql::require_passive("WskGetNameInfo");
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskGetNameInfo") } {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: taken above.
    unsafe { complete::fail(Irp, STATUS_NOT_SUPPORTED) }
}
