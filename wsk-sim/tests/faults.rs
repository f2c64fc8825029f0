//! Fault injection: failing calls, allocation failures, peer resets mid-send, pended and
//! reordered completions. The test client must survive and the sim must show no leaks.
#![allow(
    clippy::many_single_char_names,
    clippy::items_after_statements,
    clippy::unnecessary_box_returns,
    clippy::ref_as_ptr,
    clippy::used_underscore_binding
)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use wsk_sim::faults::Call;
use wsk_sim::Config;
use wsk_sys::*;

/// A client that tolerates resets: returns how many bytes came back intact.
fn tolerant_tcp_client(port: u16, size: usize, prefix: bool) -> usize {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut r = s.try_clone().unwrap();
    let want = data.clone();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while got.len() < want.len() {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if prefix {
            assert!(
                want.starts_with(&got),
                "echoed data must be a prefix of what was sent, never corrupted"
            );
        }
        got.len()
    });
    for c in data.chunks(4096) {
        if s.write_all(c).is_err() {
            break;
        }
    }
    let n = reader.join().unwrap();
    let _ = s.shutdown(std::net::Shutdown::Both);
    n
}

fn run_faulty(cfg: Config, conns: usize, size: usize, prefix: bool) -> usize {
    let _g = wsk_sim::init(cfg);
    let wsk = Wsk::open();
    let server = Server::new(false);
    server.tolerate_failures.store(true, Ordering::SeqCst);
    let (ls, port) = tcp_echo_listener(&wsk, &server);
    let (us, uport) = udp_echo_socket(&wsk, &server);
    let mut total = 0;
    for _ in 0..conns {
        total += tolerant_tcp_client(port, size, prefix);
    }
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20u8 {
        c.send_to(&[i; 64], ("127.0.0.1", uport)).unwrap();
    }
    wait_until("connections closed", 15, || {
        server.conns_live.load(Ordering::SeqCst) == 0
    });
    wait_until("udp drained", 10, || {
        server.inflight_udp.load(Ordering::SeqCst) == 0
    });
    assert_eq!(close(ls).status, STATUS_SUCCESS);
    // Quiesce the datagram callbacks before closing: the callback calls WskSendTo on this
    // socket, and no call may overlap WskCloseSocket (W70/C22).
    assert_eq!(disable(us, WSK_EVENT_RECEIVE_FROM).status, STATUS_SUCCESS);
    wait_until("udp drained", 10, || {
        server.inflight_udp.load(Ordering::SeqCst) == 0
    });
    assert_eq!(close(us).status, STATUS_SUCCESS);
    wsk.close();
    wsk_sim::assert_no_leaks();
    total
}

#[test]
fn faults_failing_sends_and_receives_leak_nothing() {
    let cfg = Config {
        fail_calls: vec![Call::WskSend, Call::WskSendTo],
        fail_rate: 0.2,
        fail_status: STATUS_INSUFFICIENT_RESOURCES,
        ..Config::default()
    };
    // A failed send loses its chunk (the echo is no longer a prefix): only survival counts.
    run_faulty(cfg, 4, 50_000, false);
}

#[test]
fn faults_peer_reset_mid_send() {
    let cfg = Config {
        reset_rate: 0.2,
        max_write_slice: 512,
        ..Config::default()
    };
    let echoed = run_faulty(cfg, 4, 100_000, true);
    assert!(
        echoed < 400_000,
        "with resets mid-send some echo must be cut short ({echoed})"
    );
}

#[test]
fn faults_everything_pends_and_reorders() {
    let cfg = Config {
        pend_rate: 1.0,
        complete_before_return_rate: 0.3,
        max_completion_delay_us: 3000,
        dispatch_rate: 0.5,
        ..Config::default()
    };
    let echoed = run_faulty(cfg, 3, 40_000, true);
    assert_eq!(
        echoed, 120_000,
        "pending and reordered completions lose nothing"
    );
}

#[test]
fn faults_allocation_failure_on_socket_creation_completes_irp() {
    let _g = wsk_sim::init(Config::plain());
    let wsk = Wsk::open();
    wsk_sim::faults::fail_next(Call::WskSocket, STATUS_INSUFFICIENT_RESOURCES, 2);
    for _ in 0..2 {
        let (d, s) = wsk.socket(
            AF_INET,
            SOCK_DGRAM,
            IPPROTO_UDP,
            WSK_FLAG_DATAGRAM_SOCKET,
            std::ptr::null_mut(),
            std::ptr::null(),
        );
        assert_eq!(d.status, STATUS_INSUFFICIENT_RESOURCES);
        assert!(s.is_null());
    }
    let (d, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        std::ptr::null_mut(),
        std::ptr::null(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn faults_kill_socket_gives_null_indications() {
    use common::probe::{self, Ev};
    let _g = wsk_sim::init(Config::plain());
    probe::reset();
    let wsk = Wsk::open();
    // Listener (W48): one NULL AcceptSocket, then connections are refused.
    let (ls, lport) = probe::listener(&wsk, WSK_EVENT_RECEIVE);
    let peer = TcpStream::connect(("127.0.0.1", lport)).unwrap();
    wait_until("accept", 5, || !probe::ACCEPTED.lock().unwrap().is_empty());
    let acc = probe::ACCEPTED.lock().unwrap()[0] as PWSK_SOCKET;
    assert_eq!(
        wsk_sim::faults::kill_socket(([127, 0, 0, 1], lport).into()),
        1
    );
    wait_until("null accept", 5, || {
        probe::events().contains(&Ev::NullAccept { ctx: 0x1157 })
    });
    assert!(TcpStream::connect(("127.0.0.1", lport)).is_err());
    // Connection (W52): a NULL DataIndication, no disconnect event after it (G7).
    assert_eq!(
        wsk_sim::faults::kill_connection(peer.peer_addr().unwrap(), peer.local_addr().unwrap()),
        1
    );
    wait_until("null receive", 5, || {
        probe::events()
            .iter()
            .any(|e| matches!(e, Ev::NullReceive { .. }))
    });
    assert_eq!(probe::send(acc, b"x").status, STATUS_FILE_FORCED_CLOSED);
    // Datagram (W60): a NULL list; a pending WskReceiveFrom completes with W15's status.
    let (d, us) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        0xD6 as PVOID,
        (&raw const probe::DGRAM).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    bind(us, &mut a);
    let (_, la) = local_addr(us, true);
    assert_eq!(enable(us, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    assert_eq!(
        wsk_sim::faults::kill_socket(([127, 0, 0, 1], port_of(&la)).into()),
        1
    );
    wait_until("null receive-from", 5, || {
        probe::events()
            .iter()
            .any(|e| matches!(e, Ev::ReceiveFrom { head: 0, .. }))
    });
    let nulls = probe::events()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Ev::NullAccept { .. } | Ev::NullReceive { .. } | Ev::ReceiveFrom { head: 0, .. }
            )
        })
        .count();
    assert_eq!(nulls, 3, "each dead socket is reported once");
    assert!(!probe::events()
        .iter()
        .any(|e| matches!(e, Ev::Disconnect { .. })));
    close(us);
    close(acc);
    close(ls);
    drop(peer);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

/// IRQL: any. Counts its runs in the AtomicUsize `ctx` points to.
unsafe extern "win64" fn count_runs(_dev: PDEVICE_OBJECT, _irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: the counter outlives every IRP armed with it (the test waits).
    unsafe { &*ctx.cast::<std::sync::atomic::AtomicUsize>() }.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A one-location IRP armed with `count_runs` on `runs`.
fn counted_irp(runs: &std::sync::atomic::AtomicUsize) -> PIRP {
    // SAFETY: a fresh IRP of ours; the completion routine and its context are valid.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoReuseIrp(irp, STATUS_PENDING);
        IoSetCompletionRoutine(
            irp,
            Some(count_runs),
            std::ptr::from_ref(runs).cast_mut().cast(),
            true,
            true,
            true,
        );
        irp
    }
}

fn bound_datagram_socket(wsk: &Wsk) -> PWSK_SOCKET {
    let (d, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        std::ptr::null_mut(),
        std::ptr::null(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(s, &mut a).status, STATUS_SUCCESS);
    s
}

/// `faults::leave_unfinished`: a call on the list returns a failure and never touches its IRP
/// (W11 broken on purpose); WskCloseSocket closes the socket, returns STATUS_SUCCESS and never
/// completes its IRP. The IRP stays the client's to reuse and free, nothing leaks.
#[test]
fn faults_unfinished_calls_leave_the_irp_alone() {
    let _g = wsk_sim::init(Config::plain());
    let wsk = Wsk::open();
    let s = bound_datagram_socket(&wsk);
    let runs = std::sync::atomic::AtomicUsize::new(0);
    wsk_sim::faults::leave_unfinished(&[Call::WskSendTo, Call::WskCloseSocket]);
    let sockets = wsk_sim::counts().sockets;
    // SAFETY: a live datagram socket, our IRP, a buffer and address valid for the call.
    unsafe {
        let buf = PoolBuf::from(&[7u8; 32]);
        let mut wb = buf.wsk_buf();
        let mut to = v4([127, 0, 0, 1], 9);
        let irp = counted_irp(&runs);
        let st = dgram_d(s).WskSendTo.unwrap()(
            s,
            &raw mut wb,
            0,
            (&raw mut to).cast(),
            0,
            std::ptr::null_mut(),
            irp,
        );
        assert_eq!(st, STATUS_NOT_IMPLEMENTED);
        assert_eq!((*irp).IoStatus.Status, STATUS_PENDING, "the IRP untouched");
        // The same IRP, re-armed, for the close.
        IoReuseIrp(irp, STATUS_PENDING);
        IoSetCompletionRoutine(
            irp,
            Some(count_runs),
            std::ptr::from_ref(&runs).cast_mut().cast(),
            true,
            true,
            true,
        );
        let st = basic(s).WskCloseSocket.unwrap()(s, irp);
        assert_eq!(st, STATUS_SUCCESS);
        assert_eq!((*irp).IoStatus.Status, STATUS_PENDING, "the IRP untouched");
        assert_eq!(
            wsk_sim::counts().sockets,
            sockets - 1,
            "the socket is closed"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "no completion routine ran");
        IoFreeIrp(irp);
        buf.free();
    }
    wsk_sim::faults::leave_unfinished(&[]);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

/// `faults::hold_datagram_sends`: a send stays pending until IoCancelIrp, which completes it
/// once with STATUS_CANCELLED (W76); nothing is sent, nothing leaks.
#[test]
fn faults_held_datagram_send_is_cancelled() {
    let _g = wsk_sim::init(Config::plain());
    let wsk = Wsk::open();
    let s = bound_datagram_socket(&wsk);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = peer.local_addr().unwrap().port();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    wsk_sim::faults::hold_datagram_sends(true);
    // SAFETY: as above; the buffer and address live until the IRP has completed (waited).
    unsafe {
        let buf = PoolBuf::from(&[9u8; 16]);
        let mut wb = buf.wsk_buf();
        let mut to = v4([127, 0, 0, 1], port);
        let irp = counted_irp(&runs);
        let st = dgram_d(s).WskSendTo.unwrap()(
            s,
            &raw mut wb,
            0,
            (&raw mut to).cast(),
            0,
            std::ptr::null_mut(),
            irp,
        );
        assert_eq!(st, STATUS_PENDING);
        let mut b = [0u8; 64];
        assert!(peer.recv_from(&mut b).is_err(), "a held send sends nothing");
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_ne!(IoCancelIrp(irp), 0, "a queued send is cancellable");
        wait_until("the cancelled send completes", 5, || {
            runs.load(Ordering::SeqCst) == 1
        });
        assert_eq!((*irp).IoStatus.Status, STATUS_CANCELLED);
        IoFreeIrp(irp);
        buf.free();
    }
    wsk_sim::faults::hold_datagram_sends(false);
    assert_eq!(close(s).status, STATUS_SUCCESS);
    wsk.close();
    wsk_sim::assert_no_leaks();
}
