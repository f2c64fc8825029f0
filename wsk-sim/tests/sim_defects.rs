//! Regression tests for defects an adversarial pass found in the sim itself: each test
//! fails on the sim before its fix.

#![allow(
    clippy::items_after_statements,
    clippy::unnecessary_box_returns,
    clippy::ref_as_ptr
)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::io::Write;
use std::ptr::null_mut;
use std::sync::atomic::Ordering;

use common::*;
use wsk_sim::{Config, ViolationMode};
use wsk_sys::*;

fn rec() -> Config {
    Config {
        violations: ViolationMode::Record,
        ..Config::plain()
    }
}

/// Every call that hands a pending IRP to another thread is held back 100-200 ms before it
/// returns STATUS_PENDING: whatever completes the IRP meanwhile does so first.
fn late_returns() -> Config {
    Config {
        late_return_rate: 1.0,
        late_return_us: 200_000,
        ..rec()
    }
}

fn has_violation(needle: &str) -> bool {
    wsk_sim::violations().iter().any(|v| v.contains(needle))
}

/// A receive callback that is running (it sleeps 60 ms) on a provider thread.
fn callback_running(wsk: &Wsk) -> (PWSK_SOCKET, PWSK_SOCKET, std::net::TcpStream) {
    probe::RECEIVE_SLEEP_MS.store(60, Ordering::SeqCst);
    let (ls, s, mut peer) = probe::accepted_pair(wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"x").unwrap();
    wait_until("receive callback running", 5, || {
        probe::IN_RECEIVE.load(Ordering::SeqCst) > 0
    });
    (ls, s, peer)
}

/// W33 + W12: a disable with an IRP while the callback runs pends until the callback
/// returns; the IRP must be marked pending before the callback's return can complete it,
/// else the completion routine sees PendingReturned FALSE although STATUS_PENDING is
/// returned (sync_call checks it), and the late mark writes past the IRP's stack.
#[test]
fn disable_with_irp_during_callback_is_marked_pending_before_it_is_published() {
    let _g = wsk_sim::init(late_returns());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = callback_running(&wsk);
    let d = disable(s, WSK_EVENT_RECEIVE);
    assert_eq!(d.returned, STATUS_PENDING, "the callback was running");
    assert_eq!(d.status, STATUS_SUCCESS);
    close(s);
    close(ls);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
}

/// W70 + W12: the same for a WskCloseSocket that waits for a running callback.
#[test]
fn close_during_callback_is_marked_pending_before_it_is_published() {
    let _g = wsk_sim::init(late_returns());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = callback_running(&wsk);
    let d = close(s);
    assert_eq!(d.returned, STATUS_PENDING, "the callback was running");
    assert_eq!(d.status, STATUS_SUCCESS);
    close(ls);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
}

fn dgram_socket(wsk: &Wsk) -> (PWSK_SOCKET, u16) {
    let (d, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        0xD6 as PVOID,
        (&raw const probe::DGRAM).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(s, &mut a).status, STATUS_SUCCESS);
    let (_, la) = local_addr(s, true);
    (s, port_of(&la))
}

// SAFETY (for the helpers below): `s` is a live datagram socket of the test.
unsafe fn dgram_d(s: PWSK_SOCKET) -> &'static WSK_PROVIDER_DATAGRAM_DISPATCH {
    // SAFETY: per the function's contract.
    unsafe { &*(*s).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>() }
}

fn send_to(s: PWSK_SOCKET, port: u16, flags: u32) -> Done {
    let b = PoolBuf::from(b"ping");
    let mut wb = b.wsk_buf();
    let mut to = v4([127, 0, 0, 1], port);
    // SAFETY: live datagram socket.
    let f = unsafe { dgram_d(s) }.WskSendTo.unwrap();
    // SAFETY: valid arguments; the buffers outlive the call (sync_call waits).
    let d = sync_call(|irp| unsafe {
        f(
            s,
            &raw mut wb,
            flags,
            (&raw mut to).cast(),
            0,
            null_mut(),
            irp,
        )
    });
    b.free();
    d
}

/// W15: a socket a failing transport killed fails every new call with
/// STATUS_FILE_FORCED_CLOSED (the IRP completed), so the client closes it.
#[test]
fn killed_socket_fails_new_calls_with_forced_closed() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (s, port) = dgram_socket(&wsk);
    assert_eq!(send_to(s, port, 0).status, STATUS_SUCCESS);
    assert_eq!(
        wsk_sim::faults::kill_socket(([127, 0, 0, 1], port).into()),
        1
    );
    let d = send_to(s, port, 0);
    assert_eq!(d.status, STATUS_FILE_FORCED_CLOSED, "{d:?}");
    let (d, _) = local_addr(s, true);
    assert_eq!(d.status, STATUS_FILE_FORCED_CLOSED, "{d:?}");
    // Closing still works.
    assert_eq!(close(s).status, STATUS_SUCCESS);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
}

/// W55/W68: a WskRelease from another thread that the provider sees before it records the
/// callback's STATUS_PENDING (the callback may already have returned) is applied once the
/// return is recorded: no "not a retained list" report, nothing leaks.
#[test]
fn release_racing_the_callbacks_return_is_not_lost() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    *probe::RELEASE_ON_OTHER_THREAD.lock().unwrap() = Some(s as usize);
    peer.write_all(b"released early").unwrap();
    wait_until("release attempted", 5, || {
        probe::RELEASE_RESULT.lock().unwrap().is_some()
    });
    assert_eq!(*probe::RELEASE_RESULT.lock().unwrap(), Some(STATUS_SUCCESS));
    wait_until("list released", 5, || {
        wsk_sim::counts().retained_indications == 0
    });
    close(s);
    close(ls);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
}

/// W54: STATUS_SUCCESS with *BytesAccepted above BytesIndicated is a violation, not a
/// full accept.
#[test]
fn receive_accepting_more_than_indicated_is_flagged() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_SUCCESS, Some(1 << 20)));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"four").unwrap();
    wait_until("flagged", 5, || has_violation("BytesAccepted"));
    close(s);
    close(ls);
    wsk.close();
    let _ = wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

/// W39 / WskSendTo: reserved Flags fail the call and are recorded as violations.
#[test]
fn reserved_flags_on_bind_and_sendto_are_flagged() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (s, port) = dgram_socket(&wsk);
    assert_eq!(send_to(s, port, 0x10).status, STATUS_INVALID_PARAMETER);
    assert!(
        has_violation("WskSendTo with Flags 0x10"),
        "{:?}",
        wsk_sim::violations()
    );
    let (d, s2) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        0xD7 as PVOID,
        (&raw const probe::DGRAM).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    // SAFETY: live datagram socket.
    let f = unsafe { dgram_d(s2) }.WskBind.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s2, (&raw mut a).cast(), 1, irp) });
    assert_eq!(d.status, STATUS_INVALID_PARAMETER);
    assert!(
        has_violation("WskBind with Flags 0x1"),
        "{:?}",
        wsk_sim::violations()
    );
    close(s2);
    close(s);
    wsk.close();
    let _ = wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

/// Tests of one binary share the sim's globals: a run that ends while one of its callbacks
/// still runs must not have that callback run into the next run (its counters, its
/// tables). `init` waits for the previous run's client code first.
#[test]
fn init_waits_for_the_previous_runs_callbacks() {
    let g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    probe::RECEIVE_SLEEP_MS.store(300, Ordering::SeqCst);
    let (_ls, _s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"slow").unwrap();
    wait_until("receive callback running", 5, || {
        probe::IN_RECEIVE.load(Ordering::SeqCst) > 0
    });
    // The run ends with its callback running; the next init tears its objects down.
    std::mem::forget(wsk);
    drop(g);
    let _g = wsk_sim::init(rec());
    assert_eq!(
        probe::IN_RECEIVE.load(Ordering::SeqCst),
        0,
        "a callback of the previous run still runs after init"
    );
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
}

/// Issue 17 S-C, W64: WskSendTo with a NULL RemoteAddress on a datagram socket that has no
/// fixed remote address (W38) is the client's mistake: flagged, not only failed. It used to
/// fail with STATUS_INVALID_ADDRESS_COMPONENT and no finding.
#[test]
fn sendto_without_an_address_on_an_unconnected_socket_is_flagged() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    let (d, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        null_mut(),
        std::ptr::null(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(s, &mut a).status, STATUS_SUCCESS);
    let buf = PoolBuf::from(b"nowhere");
    let mut wb = buf.wsk_buf();
    // SAFETY: a datagram socket's table.
    let f = unsafe { dgram_d(s) }.WskSendTo.expect("WskSendTo");
    // SAFETY: valid arguments but for the missing address.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, null_mut(), 0, null_mut(), irp) });
    assert_ne!(d.status, STATUS_SUCCESS);
    assert!(
        has_violation("NULL RemoteAddress on a datagram socket with no fixed remote address (W64)"),
        "{:?}",
        wsk_sim::violations()
    );
    // The same through WskSendMessages.
    wsk_sim::take_violations();
    let mut list = WSK_BUF_LIST {
        Next: null_mut(),
        Buffer: buf.wsk_buf(),
    };
    // SAFETY: as above.
    let f = unsafe { dgram_d(s) }
        .WskSendMessages
        .expect("WskSendMessages");
    // SAFETY: as above.
    let d = sync_call(|irp| unsafe { f(s, &raw mut list, 0, null_mut(), 0, null_mut(), irp) });
    assert_ne!(d.status, STATUS_SUCCESS);
    assert!(has_violation("(W64)"), "{:?}", wsk_sim::violations());
    wsk_sim::take_violations();
    close(s);
    buf.free();
    wsk.close();
    wsk_sim::assert_no_leaks();
}

/// Issue 17 S-C, W69: an abortive WskDisconnect takes no Buffer. It used to fail with
/// STATUS_INVALID_PARAMETER and no finding.
#[test]
fn abortive_disconnect_with_a_buffer_is_flagged() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let buf = PoolBuf::from(b"last words");
    let mut wb = buf.wsk_buf();
    // SAFETY: a connection socket's table.
    let f = unsafe { conn_d(s) }.WskDisconnect.expect("WskDisconnect");
    // SAFETY: valid arguments but for the buffer.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, WSK_FLAG_ABORTIVE, irp) });
    assert_ne!(d.status, STATUS_SUCCESS);
    assert!(
        has_violation("WskDisconnect(WSK_FLAG_ABORTIVE) with a Buffer"),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::take_violations();
    close(s);
    close(ls);
    buf.free();
    wsk.close();
    wsk_sim::assert_no_leaks();
}

/// Issue 17 S-C: a client that completes an IRP it handed to WSK (still pending there) is
/// blamed, not the provider: the finding used to be the provider's own later completion,
/// "provider completion: IRP completed twice".
#[test]
fn a_client_completing_an_irp_wsk_holds_is_blamed_on_the_client() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, peer) = probe::accepted_pair(&wsk, 0);
    let buf = PoolBuf::new(16);
    let mut wb = buf.wsk_buf();
    // SAFETY: a one-location IRP whose completion routine keeps it (C16).
    let irp = unsafe { IoAllocateIrp(1, FALSE) };
    assert!(!irp.is_null());
    unsafe extern "win64" fn keep(_d: PDEVICE_OBJECT, _i: PIRP, c: PVOID) -> NTSTATUS {
        // SAFETY: the test's AtomicBool.
        unsafe { &*c.cast::<std::sync::atomic::AtomicBool>() }.store(true, Ordering::SeqCst);
        STATUS_MORE_PROCESSING_REQUIRED
    }
    let done = Box::new(std::sync::atomic::AtomicBool::new(false));
    // SAFETY: our IRP; the flag outlives it.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(keep),
            std::ptr::from_ref(&*done).cast_mut().cast(),
            true,
            true,
            true,
        );
    }
    // SAFETY: a connection socket's table.
    let recv = unsafe { conn_d(s) }.WskReceive.expect("WskReceive");
    // SAFETY: valid arguments; nothing to read yet, so it pends.
    let st = unsafe { recv(s, &raw mut wb, 0, irp) };
    assert_eq!(st, STATUS_PENDING);
    // The client's mistake: it completes the pending IRP itself.
    // SAFETY: exercising the violation.
    unsafe {
        (*irp).IoStatus.Status = STATUS_CANCELLED;
        IofCompleteRequest(irp, 0);
    }
    let v = wsk_sim::violations();
    assert!(
        v.iter()
            .any(|x| x.contains("the client completed IRP") && x.contains("while WSK holds it")),
        "{v:?}"
    );
    // The provider then completes it (the close cancels it) and is not blamed.
    wsk_sim::take_violations();
    close(s);
    wait_until("the provider's completion", 5, || {
        done.load(Ordering::SeqCst)
    });
    let v = wsk_sim::violations();
    assert!(
        !v.iter().any(|x| x.contains("completed twice")),
        "the provider blamed: {v:?}"
    );
    wsk_sim::take_violations();
    // SAFETY: completed by the provider, ours again.
    unsafe { IoFreeIrp(irp) };
    close(ls);
    drop(peer);
    buf.free();
    wsk.close();
    wsk_sim::assert_no_leaks();
}
