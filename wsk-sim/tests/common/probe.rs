//! A scriptable probe client: callbacks record what the provider did and return what the
//! test scripted. Tests are serialised by the sim guard, so globals are fine here.
#![allow(dead_code, non_snake_case)]

use std::collections::VecDeque;
use std::net::TcpStream;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use wsk_sys::*;

use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Receive {
        ctx: usize,
        flags: u32,
        data: Vec<u8>,
        head: usize,
        irql: u8,
    },
    NullReceive {
        ctx: usize,
    },
    Disconnect {
        ctx: usize,
        flags: u32,
    },
    Backlog {
        ctx: usize,
        size: usize,
    },
    Accept {
        ctx: usize,
        flags: u32,
    },
    NullAccept {
        ctx: usize,
    },
    ReceiveFrom {
        ctx: usize,
        flags: u32,
        data: Vec<Vec<u8>>,
        head: usize,
    },
}

pub static EVENTS: Mutex<Vec<Ev>> = Mutex::new(Vec::new());
/// Scripted receive returns: (status, Some(bytes accepted) for a partial SUCCESS).
pub static RECV_SCRIPT: Mutex<VecDeque<(NTSTATUS, Option<usize>)>> = Mutex::new(VecDeque::new());
pub static RECVFROM_SCRIPT: Mutex<VecDeque<NTSTATUS>> = Mutex::new(VecDeque::new());
pub static ACCEPT_SCRIPT: Mutex<VecDeque<NTSTATUS>> = Mutex::new(VecDeque::new());
pub static ACCEPTED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Events to enable on an accepted socket from inside WskAcceptEvent (W50), 0 = none.
pub static ENABLE_IN_ACCEPT: AtomicU32 = AtomicU32::new(0);
/// Accept with `*AcceptSocketDispatch` left NULL (S-B).
pub static NULL_DISPATCH_IN_ACCEPT: AtomicU32 = AtomicU32::new(0);
/// Call WskCloseSocket on the socket being accepted from inside WskAcceptEvent, then accept
/// it (issue 17 item 7); the close's status lands in CLOSE_IN_ACCEPT_RESULT.
pub static CLOSE_IN_ACCEPT: AtomicU32 = AtomicU32::new(0);
pub static CLOSE_IN_ACCEPT_RESULT: Mutex<Option<NTSTATUS>> = Mutex::new(None);
/// Receive callbacks running now, and the most seen at once (W45).
pub static IN_RECEIVE: AtomicUsize = AtomicUsize::new(0);
pub static MAX_IN_RECEIVE: AtomicUsize = AtomicUsize::new(0);
/// Milliseconds each receive callback sleeps (to widen races).
pub static RECEIVE_SLEEP_MS: AtomicU32 = AtomicU32::new(0);
/// A control call to make from inside the next receive callback: disable RECEIVE (W33).
pub static DISABLE_IN_RECEIVE: Mutex<Option<usize>> = Mutex::new(None);
pub static DISABLE_RESULT: Mutex<Option<NTSTATUS>> = Mutex::new(None);
/// A socket whose next receive callback hands its list to another thread that calls
/// WskRelease on it (and waits for that call) before the callback returns STATUS_PENDING:
/// a release racing the callback's return. The release's status lands in RELEASE_RESULT.
pub static RELEASE_ON_OTHER_THREAD: Mutex<Option<usize>> = Mutex::new(None);
pub static RELEASE_RESULT: Mutex<Option<NTSTATUS>> = Mutex::new(None);
/// Each receive indication's MDLs as they arrived, before the probe read them: (mapped
/// or built for non-paged pool, MappedSystemVa non-NULL, ByteCount).
pub static MDL_SHAPES: Mutex<Vec<Vec<(bool, bool, u32)>>> = Mutex::new(Vec::new());
/// Host threads receive callbacks ran on (W44).
pub static RECEIVE_THREADS: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

pub const ACCEPTED_CTX: usize = 0xACC0;

pub fn reset() {
    EVENTS.lock().unwrap().clear();
    RECV_SCRIPT.lock().unwrap().clear();
    RECVFROM_SCRIPT.lock().unwrap().clear();
    ACCEPT_SCRIPT.lock().unwrap().clear();
    ACCEPTED.lock().unwrap().clear();
    ENABLE_IN_ACCEPT.store(0, Ordering::SeqCst);
    NULL_DISPATCH_IN_ACCEPT.store(0, Ordering::SeqCst);
    CLOSE_IN_ACCEPT.store(0, Ordering::SeqCst);
    *CLOSE_IN_ACCEPT_RESULT.lock().unwrap() = None;
    IN_RECEIVE.store(0, Ordering::SeqCst);
    MAX_IN_RECEIVE.store(0, Ordering::SeqCst);
    RECEIVE_SLEEP_MS.store(0, Ordering::SeqCst);
    *DISABLE_IN_RECEIVE.lock().unwrap() = None;
    *DISABLE_RESULT.lock().unwrap() = None;
    RECEIVE_THREADS.lock().unwrap().clear();
    MDL_SHAPES.lock().unwrap().clear();
    *RELEASE_ON_OTHER_THREAD.lock().unwrap() = None;
    *RELEASE_RESULT.lock().unwrap() = None;
}

pub fn events() -> Vec<Ev> {
    EVENTS.lock().unwrap().clone()
}

/// Receive-side events only (the probe also records accepts).
pub fn data_events() -> Vec<Ev> {
    events()
        .into_iter()
        .filter(|e| !matches!(e, Ev::Accept { .. } | Ev::NullAccept { .. }))
        .collect()
}

pub fn received_bytes() -> Vec<u8> {
    events()
        .into_iter()
        .filter_map(|e| {
            if let Ev::Receive { data, .. } = e {
                Some(data)
            } else {
                None
            }
        })
        .flatten()
        .collect()
}

pub static LISTEN: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept),
    WskInspectEvent: None,
    WskAbortEvent: None,
};
pub static CONN: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive),
    WskDisconnectEvent: Some(disconnect),
    WskSendBacklogEvent: Some(backlog),
};
pub static CONN_NO_BACKLOG: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive),
    WskDisconnectEvent: Some(disconnect),
    WskSendBacklogEvent: None,
};
pub static DGRAM: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(receive_from),
};

unsafe extern "win64" fn accept(
    ctx: PVOID,
    flags: ULONG,
    _l: PSOCKADDR,
    _r: PSOCKADDR,
    s: PWSK_SOCKET,
    actx: *mut PVOID,
    adisp: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    if s.is_null() {
        EVENTS
            .lock()
            .unwrap()
            .push(Ev::NullAccept { ctx: ctx as usize });
        return STATUS_SUCCESS;
    }
    EVENTS.lock().unwrap().push(Ev::Accept {
        ctx: ctx as usize,
        flags,
    });
    let st = ACCEPT_SCRIPT
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(STATUS_SUCCESS);
    if st == STATUS_SUCCESS && !s.is_null() {
        // SAFETY: the provider's out-parameters.
        unsafe {
            *actx = ACCEPTED_CTX as PVOID;
            *adisp = if NULL_DISPATCH_IN_ACCEPT.load(Ordering::SeqCst) != 0 {
                null_mut()
            } else {
                &raw const CONN
            };
        }
        if CLOSE_IN_ACCEPT.load(Ordering::SeqCst) != 0 {
            *CLOSE_IN_ACCEPT_RESULT.lock().unwrap() = Some(close(s).status);
        }
        let m = ENABLE_IN_ACCEPT.load(Ordering::SeqCst);
        if m != 0 {
            assert_eq!(enable(s, m), STATUS_SUCCESS);
        }
        ACCEPTED.lock().unwrap().push(s as usize);
    }
    st
}

unsafe extern "win64" fn receive(
    ctx: PVOID,
    flags: ULONG,
    ind: PWSK_DATA_INDICATION,
    _bytes: SIZE_T,
    accepted: *mut SIZE_T,
) -> NTSTATUS {
    {
        let mut t = RECEIVE_THREADS.lock().unwrap();
        let id = std::thread::current().id();
        if !t.contains(&id) {
            t.push(id);
        }
    }
    let now = IN_RECEIVE.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_RECEIVE.fetch_max(now, Ordering::SeqCst);
    let ms = RECEIVE_SLEEP_MS.load(Ordering::SeqCst);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
    }
    if ind.is_null() {
        EVENTS
            .lock()
            .unwrap()
            .push(Ev::NullReceive { ctx: ctx as usize });
        IN_RECEIVE.fetch_sub(1, Ordering::SeqCst);
        return STATUS_SUCCESS;
    }
    let mut shape = Vec::new();
    let mut cur = ind;
    while !cur.is_null() {
        // SAFETY: the provider's list and its MDL chains.
        unsafe {
            let mut m = (*cur).Buffer.Mdl;
            while !m.is_null() {
                let mapped =
                    (*m).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0;
                shape.push((mapped, !(*m).MappedSystemVa.is_null(), (*m).ByteCount));
                m = (*m).Next;
            }
            cur = (*cur).Next;
        }
    }
    MDL_SHAPES.lock().unwrap().push(shape);
    let mut data = Vec::new();
    let mut cur = ind;
    while !cur.is_null() {
        // SAFETY: the provider's list.
        unsafe {
            data.extend(read_wsk_buf(&(*cur).Buffer));
            cur = (*cur).Next;
        }
    }
    EVENTS.lock().unwrap().push(Ev::Receive {
        ctx: ctx as usize,
        flags,
        data,
        head: ind as usize,
        irql: KeGetCurrentIrql(),
    });
    if let Some(sock) = DISABLE_IN_RECEIVE.lock().unwrap().take() {
        let mut ctl = WSK_EVENT_CALLBACK_CONTROL {
            NpiId: &raw const NPI_WSK_INTERFACE_ID,
            EventMask: WSK_EVENT_RECEIVE | WSK_EVENT_DISABLE,
        };
        let s = sock as PWSK_SOCKET;
        // SAFETY: disabling without an IRP from inside the callback.
        let st = unsafe {
            (basic(s).WskControlSocket.unwrap())(
                s,
                WskSetOption,
                SO_WSK_EVENT_CALLBACK,
                SOL_SOCKET,
                std::mem::size_of_val(&ctl),
                (&raw mut ctl).cast(),
                0,
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        *DISABLE_RESULT.lock().unwrap() = Some(st);
    }
    if let Some(sock) = RELEASE_ON_OTHER_THREAD.lock().unwrap().take() {
        let list = ind as usize;
        let st = std::thread::spawn(move || {
            let s = sock as PWSK_SOCKET;
            // SAFETY: the list this callback is about to retain with STATUS_PENDING.
            unsafe { (conn_d(s).WskRelease.unwrap())(s, list as PWSK_DATA_INDICATION) }
        })
        .join()
        .unwrap();
        *RELEASE_RESULT.lock().unwrap() = Some(st);
        IN_RECEIVE.fetch_sub(1, Ordering::SeqCst);
        return STATUS_PENDING;
    }
    let (st, acc) = RECV_SCRIPT
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((STATUS_SUCCESS, None));
    if let Some(a) = acc {
        // SAFETY: the provider's out-parameter.
        unsafe { *accepted = a };
    }
    IN_RECEIVE.fetch_sub(1, Ordering::SeqCst);
    st
}

unsafe extern "win64" fn disconnect(ctx: PVOID, flags: ULONG) -> NTSTATUS {
    EVENTS.lock().unwrap().push(Ev::Disconnect {
        ctx: ctx as usize,
        flags,
    });
    STATUS_SUCCESS
}

unsafe extern "win64" fn backlog(ctx: PVOID, size: SIZE_T) -> NTSTATUS {
    EVENTS.lock().unwrap().push(Ev::Backlog {
        ctx: ctx as usize,
        size,
    });
    STATUS_SUCCESS
}

unsafe extern "win64" fn receive_from(
    ctx: PVOID,
    flags: ULONG,
    ind: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    let mut shape = Vec::new();
    let mut cur = ind;
    while !cur.is_null() {
        // SAFETY: the provider's list and its MDL chains.
        unsafe {
            let mut m = (*cur).Buffer.Mdl;
            while !m.is_null() {
                let mapped =
                    (*m).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0;
                shape.push((mapped, !(*m).MappedSystemVa.is_null(), (*m).ByteCount));
                m = (*m).Next;
            }
            cur = (*cur).Next;
        }
    }
    MDL_SHAPES.lock().unwrap().push(shape);
    let mut data = Vec::new();
    let mut cur = ind;
    while !cur.is_null() {
        // SAFETY: the provider's list.
        unsafe {
            data.push(read_wsk_buf(&(*cur).Buffer));
            cur = (*cur).Next;
        }
    }
    EVENTS.lock().unwrap().push(Ev::ReceiveFrom {
        ctx: ctx as usize,
        flags,
        data,
        head: ind as usize,
    });
    RECVFROM_SCRIPT
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(STATUS_SUCCESS)
}

/// A probe listener on 127.0.0.1:0 with `inherit` connection events enabled for accepted
/// sockets and WSK_EVENT_ACCEPT on.
pub fn listener(wsk: &Wsk, inherit: u32) -> (PWSK_SOCKET, u16) {
    let (d, ls) = wsk.socket(
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_LISTEN_SOCKET,
        0x1157 as PVOID,
        (&raw const LISTEN).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(ls, &mut a).status, STATUS_SUCCESS);
    if inherit != 0 {
        assert_eq!(enable(ls, inherit), STATUS_SUCCESS);
    }
    assert_eq!(enable(ls, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
    let (_, la) = local_addr(ls, false);
    (ls, port_of(&la))
}

/// A connection accepted through the probe listener, with its peer stream.
pub fn accepted_pair(wsk: &Wsk, inherit: u32) -> (PWSK_SOCKET, PWSK_SOCKET, TcpStream) {
    let (ls, port) = listener(wsk, inherit);
    let peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    wait_until("accept event", 5, || !ACCEPTED.lock().unwrap().is_empty());
    let s = ACCEPTED.lock().unwrap()[0] as PWSK_SOCKET;
    (ls, s, peer)
}

pub fn send(s: PWSK_SOCKET, data: &[u8]) -> Done {
    let b = PoolBuf::from(data);
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskSend.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, irp) });
    b.free();
    d
}

pub fn receive_into(s: PWSK_SOCKET, len: usize, flags: u32) -> (Done, Vec<u8>) {
    let b = PoolBuf::new(len);
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskReceive.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, flags, irp) });
    let got = b.bytes()[..d.info.min(len)].to_vec();
    b.free();
    (d, got)
}
