//! One test per event / data-path rule (docs/wsk-contract.md, W41–W71) that a test can show.
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
use std::ptr::null_mut;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::probe::{self, Ev};
use common::*;
use wsk_sim::{Config, ViolationMode};
use wsk_sys::*;

fn rec() -> Config {
    Config {
        violations: ViolationMode::Record,
        ..Config::plain()
    }
}

fn has_violation(needle: &str) -> bool {
    wsk_sim::violations().iter().any(|v| v.contains(needle))
}

fn dgram_socket(wsk: &Wsk, ctx: usize) -> (PWSK_SOCKET, u16) {
    let (d, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        ctx as PVOID,
        (&raw const probe::DGRAM).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(s, &mut a).status, STATUS_SUCCESS);
    let (_, la) = local_addr(s, true);
    (s, port_of(&la))
}

#[test]
fn w41_accept_pends_until_a_connection_arrives() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (_, ls) = wsk.socket(
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_LISTEN_SOCKET,
        null_mut(),
        std::ptr::null(),
    );
    let mut a = v4([127, 0, 0, 1], 0);
    bind(ls, &mut a);
    let (_, la) = local_addr(ls, false);
    let port = port_of(&la);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"early data").unwrap();
        c
    });
    let mut remote = v4([0; 4], 0);
    // SAFETY: listen table.
    let f = unsafe { listen_d(ls) }.WskAccept.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe {
        f(
            ls,
            0,
            0xC0DE as PVOID,
            &raw const probe::CONN,
            null_mut(),
            (&raw mut remote).cast(),
            irp,
        )
    });
    assert_eq!(d.status, STATUS_SUCCESS);
    let s = d.info as PWSK_SOCKET;
    assert_eq!(remote.sin_family, AF_INET);
    let _c = t.join().unwrap();
    // W24: callbacks start disabled on an accepted socket: the data waits for WskReceive.
    std::thread::sleep(Duration::from_millis(50));
    assert!(probe::events().is_empty());
    let (d, got) = probe::receive_into(s, 64, 0);
    assert_eq!(
        (d.status, got.as_slice()),
        (STATUS_SUCCESS, &b"early data"[..])
    );
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w43_callback_irql_matches_the_flag() {
    for (rate, want_flag) in [(1.0, true), (0.0, false)] {
        let _g = wsk_sim::init(Config {
            dispatch_rate: rate,
            ..rec()
        });
        probe::reset();
        let wsk = Wsk::open();
        let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
        peer.write_all(b"x").unwrap();
        wait_until("receive", 5, || !probe::received_bytes().is_empty());
        for e in probe::events() {
            if let Ev::Receive { flags, irql, .. } = e {
                assert_eq!(flags & WSK_FLAG_AT_DISPATCH_LEVEL != 0, want_flag);
                assert_eq!(
                    irql,
                    if want_flag {
                        DISPATCH_LEVEL
                    } else {
                        PASSIVE_LEVEL
                    }
                );
            }
            if let Ev::Accept { flags, .. } = e {
                assert_eq!(flags & WSK_FLAG_AT_DISPATCH_LEVEL != 0, want_flag);
            }
        }
        close(s);
        close(ls);
        wsk.close();
        wsk_sim::assert_no_leaks();
    }
}

#[test]
fn w44_indications_come_on_varying_threads() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    for i in 1..=100usize {
        peer.write_all(b"m").unwrap();
        wait_until("indication", 5, || probe::received_bytes().len() == i);
    }
    assert!(
        probe::RECEIVE_THREADS.lock().unwrap().len() >= 2,
        "all 100 indications on one thread"
    );
    assert!(probe::RECEIVE_THREADS
        .lock()
        .unwrap()
        .iter()
        .all(|t| *t != std::thread::current().id()));
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w45_receive_events_are_serialised_per_socket() {
    let _g = wsk_sim::init(Config {
        max_indication: 5,
        ..rec()
    });
    probe::reset();
    probe::RECEIVE_SLEEP_MS.store(3, Ordering::SeqCst);
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    let data: Vec<u8> = (0..200u8).collect();
    peer.write_all(&data).unwrap();
    wait_until("all data", 10, || probe::received_bytes().len() == 200);
    assert_eq!(probe::received_bytes(), data, "in order, nothing lost");
    assert_eq!(probe::MAX_IN_RECEIVE.load(Ordering::SeqCst), 1);
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w49_rejected_accept_is_closed_by_the_provider() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::ACCEPT_SCRIPT
        .lock()
        .unwrap()
        .push_back(STATUS_REQUEST_NOT_ACCEPTED);
    let wsk = Wsk::open();
    let (ls, port) = probe::listener(&wsk, WSK_EVENT_RECEIVE);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 4];
    let r = c.read(&mut b);
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "the rejected connection is closed"
    );
    assert!(probe::ACCEPTED.lock().unwrap().is_empty());
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w50_callbacks_enabled_inside_accept_use_the_accept_context() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::ENABLE_IN_ACCEPT.store(WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT, Ordering::SeqCst);
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, 0);
    peer.write_all(b"ctx").unwrap();
    wait_until("receive", 5, || !probe::received_bytes().is_empty());
    assert!(probe::events().iter().any(|e| matches!(
        e,
        Ev::Receive {
            ctx: probe::ACCEPTED_CTX,
            ..
        }
    )));
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w51_indication_chains_offsets_and_byte_counts() {
    let _g = wsk_sim::init(Config {
        max_indication: 4096,
        ..rec()
    });
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    peer.write_all(&data).unwrap();
    wait_until("all data", 5, || {
        probe::received_bytes().len() == data.len()
    });
    assert_eq!(probe::received_bytes(), data);
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w52_reset_peer_gives_null_indication_when_only_receive_is_enabled() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    wait_until("null indication", 5, || {
        probe::events()
            .iter()
            .any(|e| matches!(e, Ev::NullReceive { .. }))
    });
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w54_partial_accept_stops_indications_until_a_receive_completes() {
    let _g = wsk_sim::init(Config {
        max_indication: 1 << 20,
        ..rec()
    });
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_SUCCESS, Some(3)));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"abcdefgh").unwrap();
    wait_until("first indication", 5, || !probe::data_events().is_empty());
    let first = probe::received_bytes();
    assert!(first.starts_with(b"abc"));
    peer.write_all(b"XYZ").unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(
        probe::data_events().len(),
        1,
        "no indication after a partial accept"
    );
    // The unaccepted bytes and the new ones go to the posted receive first.
    let (d, got) = probe::receive_into(s, 64, 0);
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut all = b"abc".to_vec();
    all.extend(&got);
    let mut rest = Vec::new();
    peer.write_all(b"!").unwrap();
    wait_until("resumed", 5, || probe::data_events().len() >= 2);
    for e in probe::data_events().into_iter().skip(1) {
        if let Ev::Receive { data, .. } = e {
            rest.extend(data);
        }
    }
    all.extend(rest);
    assert_eq!(all, b"abcdefghXYZ!");
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w55_pending_retains_until_release_then_poisons() {
    let _g = wsk_sim::init(Config {
        max_indication: 1 << 20,
        ..rec()
    });
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_PENDING, None));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"retained!").unwrap();
    wait_until("indication", 5, || !probe::data_events().is_empty());
    let Ev::Receive { head, .. } = probe::data_events()[0].clone() else {
        panic!("expected a receive")
    };
    let ind = head as PWSK_DATA_INDICATION;
    // SAFETY: retained: still valid.
    let buf = unsafe { (*ind).Buffer };
    // SAFETY: retained list.
    let data = unsafe { read_wsk_buf(&buf) };
    assert!(b"retained!".starts_with(&data));
    assert_eq!(wsk_sim::counts().retained_indications, 1);
    peer.write_all(b"more").unwrap();
    wait_until("indications continue while retained", 5, || {
        probe::received_bytes().len() == 13
    });
    // SAFETY: connection table.
    let rel = unsafe { conn_d(s) }.WskRelease.unwrap();
    // SAFETY: releasing the retained list.
    let va = unsafe { MmGetSystemAddressForMdlSafe(buf.Mdl, NormalPagePriority) }.cast::<u8>();
    // SAFETY: as above.
    assert_eq!(unsafe { rel(s, ind) }, STATUS_SUCCESS);
    assert_eq!(wsk_sim::counts().retained_indications, 0);
    // The sim keeps released memory quarantined and poisoned for a while.
    assert_eq!(
        // SAFETY: quarantined memory is still allocated.
        unsafe { *va.add(buf.Offset as usize) },
        wsk_sim::RELEASED_POISON
    );
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w56_not_accepted_then_zero_length_receive_resumes() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_DATA_NOT_ACCEPTED, None));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"later").unwrap();
    wait_until("first indication", 5, || !probe::data_events().is_empty());
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(
        probe::data_events().len(),
        1,
        "stopped after DATA_NOT_ACCEPTED"
    );
    // Zero-length receive, Mdl NULL: resumes without consuming.
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskReceive.unwrap();
    let mut wb = WSK_BUF {
        Mdl: null_mut(),
        Offset: 0,
        Length: 0,
    };
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, irp) });
    assert_eq!((d.status, d.info), (STATUS_SUCCESS, 0));
    wait_until("re-indicated", 5, || probe::data_events().len() >= 2);
    let mut again = Vec::new();
    for e in probe::data_events().into_iter().skip(1) {
        if let Ev::Receive { data, .. } = e {
            again.extend(data);
        }
    }
    wait_until("all bytes again", 5, || {
        probe::data_events()
            .into_iter()
            .skip(1)
            .map(|e| {
                if let Ev::Receive { data, .. } = e {
                    data.len()
                } else {
                    0
                }
            })
            .sum::<usize>()
            == 5
    });
    let again: Vec<u8> = probe::data_events()
        .into_iter()
        .skip(1)
        .flat_map(|e| {
            if let Ev::Receive { data, .. } = e {
                data
            } else {
                vec![]
            }
        })
        .collect();
    assert_eq!(again, b"later");
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w57_graceful_close_is_a_disconnect_event_without_abortive() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT);
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    wait_until("disconnect event", 5, || {
        probe::data_events()
            .iter()
            .any(|e| matches!(e, Ev::Disconnect { .. }))
    });
    assert!(probe::data_events().contains(&Ev::Disconnect {
        ctx: probe::ACCEPTED_CTX,
        flags: 0
    }));
    // Sends are still allowed after a graceful remote disconnect.
    assert_eq!(probe::send(s, b"bye").status, STATUS_SUCCESS);
    let mut b = [0u8; 3];
    (&peer).read_exact(&mut b).unwrap();
    close(s);
    // An abortive remote close carries WSK_FLAG_ABORTIVE.
    probe::reset();
    let (ls2, s2, peer2) = probe::accepted_pair(&wsk, WSK_EVENT_DISCONNECT);
    socket2::SockRef::from(&peer2)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer2);
    std::thread::sleep(Duration::from_millis(30));
    // Disconnect-only: the provider must notice the RST while reading for EOF.
    wait_until("abortive disconnect", 5, || {
        probe::data_events()
            .iter()
            .any(|e| matches!(e, Ev::Disconnect { flags, .. } if flags & WSK_FLAG_ABORTIVE != 0))
    });
    close(s2);
    close(ls2);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w58_send_backlog_event_reports_the_ideal_backlog() {
    let _g = wsk_sim::init(Config {
        ideal_send_backlog: 4242,
        ..rec()
    });
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    assert_eq!(enable(s, WSK_EVENT_SEND_BACKLOG), STATUS_SUCCESS);
    wait_until("backlog event", 5, || {
        probe::data_events()
            .iter()
            .any(|e| matches!(e, Ev::Backlog { size: 4242, .. }))
    });
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w61_receive_from_not_accepted_disables_until_reenabled() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::RECVFROM_SCRIPT
        .lock()
        .unwrap()
        .push_back(STATUS_DATA_NOT_ACCEPTED);
    let wsk = Wsk::open();
    let (s, port) = dgram_socket(&wsk, 0xD6);
    assert_eq!(enable(s, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"d1", ("127.0.0.1", port)).unwrap();
    wait_until("first", 5, || !probe::data_events().is_empty());
    c.send_to(b"d2", ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(
        probe::data_events().len(),
        1,
        "disabled after DATA_NOT_ACCEPTED"
    );
    assert_eq!(enable(s, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    wait_until("buffered datagrams", 5, || {
        probe::data_events()
            .iter()
            .skip(1)
            .map(|e| {
                if let Ev::ReceiveFrom { data, .. } = e {
                    data.len()
                } else {
                    0
                }
            })
            .sum::<usize>()
            == 2
    });
    let got: Vec<Vec<u8>> = probe::data_events()
        .into_iter()
        .skip(1)
        .flat_map(|e| {
            if let Ev::ReceiveFrom { data, .. } = e {
                data
            } else {
                vec![]
            }
        })
        .collect();
    assert_eq!(got, vec![b"d1".to_vec(), b"d2".to_vec()]);
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w62_unsupported_send_flag() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let b = PoolBuf::from(b"x");
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskSend.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0x100, irp) });
    assert_eq!(d.status, STATUS_NOT_SUPPORTED);
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, WSK_FLAG_NODELAY, irp) });
    assert_eq!((d.status, d.info), (STATUS_SUCCESS, 1));
    b.free();
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

unsafe extern "win64" fn flag_done(_d: PDEVICE_OBJECT, _irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: the waiter's event.
    unsafe { KeSetEvent(ctx.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn w63_send_completes_only_when_all_bytes_are_written() {
    let _g = wsk_sim::init(Config {
        pend_rate: 0.0,
        ..rec()
    });
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, 0);
    let len = 8 << 20;
    let b = PoolBuf::new(len);
    // SAFETY: our buffer.
    unsafe { std::ptr::write_bytes(b.ptr, 0x5C, len) };
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskSend.unwrap();
    // SAFETY: IRP + event; waited for below.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        let mut ev: KEVENT = std::mem::zeroed();
        KeInitializeEvent(&raw mut ev, NotificationEvent, FALSE);
        IoSetCompletionRoutine(irp, Some(flag_done), (&raw mut ev).cast(), true, true, true);
        let st = f(s, &raw mut wb, 0, irp);
        assert_eq!(
            st, STATUS_PENDING,
            "8 MiB cannot be written at once to a peer that does not read"
        );
        let mut zero = LARGE_INTEGER { QuadPart: 0 };
        assert_eq!(
            KeWaitForSingleObject(
                (&raw mut ev).cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut zero
            ),
            STATUS_TIMEOUT
        );
        // Freeing the MDL of a pending send is caught.
        IoFreeMdl(b.mdl);
        assert!(has_violation("still in use by"));
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while got < len {
            let n = peer.read(&mut buf).unwrap();
            assert!(buf[..n].iter().all(|&x| x == 0x5C));
            got += n;
        }
        KeWaitForSingleObject(
            (&raw mut ev).cast(),
            Executive,
            KernelMode,
            FALSE,
            null_mut(),
        );
        assert_eq!(
            ((*irp).IoStatus.Status, (*irp).IoStatus.Information),
            (STATUS_SUCCESS, len)
        );
        IoFreeIrp(irp);
    }
    b.free();
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

fn sendto(s: PWSK_SOCKET, data: &[u8], to: Option<u16>) -> Done {
    let b = PoolBuf::from(data);
    let mut wb = b.wsk_buf();
    let mut a = v4([127, 0, 0, 1], to.unwrap_or(0));
    let ap: PSOCKADDR = if to.is_some() {
        (&raw mut a).cast()
    } else {
        null_mut()
    };
    // SAFETY: datagram table.
    let f = unsafe { dgram_d(s) }.WskSendTo.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, ap, 0, null_mut(), irp) });
    b.free();
    d
}

#[test]
fn w64_sendto_null_address_needs_a_fixed_remote() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    let (s, _) = dgram_socket(&wsk, 0);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let pport = peer.local_addr().unwrap().port();
    assert_eq!(
        sendto(s, b"nowhere", None).status,
        STATUS_INVALID_ADDRESS_COMPONENT
    );
    // The client's mistake is flagged too (issue 17 S-C).
    assert!(wsk_sim::take_violations()
        .iter()
        .any(|v| v.contains("(W64)")));
    let mut fixed = v4([127, 0, 0, 1], pport);
    // SAFETY: basic table.
    let f = unsafe { basic(s) }.WskControlSocket.unwrap();
    // SAFETY: valid arguments (W38: IRP required).
    let d = sync_call(|irp| unsafe {
        f(
            s,
            WskIoctl,
            SIO_WSK_SET_REMOTE_ADDRESS,
            0,
            std::mem::size_of::<SOCKADDR_IN>(),
            (&raw mut fixed).cast(),
            0,
            null_mut(),
            null_mut(),
            irp,
        )
    });
    assert_eq!(d.status, STATUS_SUCCESS);
    let d = sendto(s, b"fixed", None);
    assert_eq!((d.status, d.info), (STATUS_SUCCESS, 5));
    let mut buf = [0u8; 16];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"fixed");
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w65_send_messages_sends_each_buffer_as_a_datagram() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    let (s, _) = dgram_socket(&wsk, 0);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut to = v4([127, 0, 0, 1], peer.local_addr().unwrap().port());
    let bufs = [
        PoolBuf::from(b"one"),
        PoolBuf::from(b"two!"),
        PoolBuf::from(b"three"),
    ];
    let mut list: Vec<WSK_BUF_LIST> = bufs
        .iter()
        .map(|b| WSK_BUF_LIST {
            Next: null_mut(),
            Buffer: b.wsk_buf(),
        })
        .collect();
    for i in 0..2 {
        let next: *mut WSK_BUF_LIST = &raw mut list[i + 1];
        list[i].Next = next;
    }
    // SAFETY: datagram table.
    let f = unsafe { dgram_d(s) }.WskSendMessages.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe {
        f(
            s,
            list.as_mut_ptr(),
            0,
            (&raw mut to).cast(),
            0,
            null_mut(),
            irp,
        )
    });
    assert_eq!((d.status, d.info), (STATUS_SUCCESS, 12));
    for want in [&b"one"[..], b"two!", b"three"] {
        let mut buf = [0u8; 16];
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], want);
    }
    for b in bufs {
        b.free();
    }
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w66_receive_flags() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, 0);
    let (d, _) = probe::receive_into(s, 4, WSK_FLAG_WAITALL | WSK_FLAG_DRAIN);
    assert_eq!(d.status, STATUS_INVALID_PARAMETER);
    let (d, _) = probe::receive_into(s, 4, 0x40);
    assert_eq!(d.status, STATUS_NOT_SUPPORTED);
    let t = std::thread::spawn(move || {
        for part in [&b"ab"[..], b"cd", b"ef"] {
            std::thread::sleep(Duration::from_millis(20));
            peer.write_all(part).unwrap();
        }
        peer
    });
    let (d, got) = probe::receive_into(s, 6, WSK_FLAG_WAITALL);
    assert_eq!(
        (d.status, got.as_slice()),
        (STATUS_SUCCESS, &b"abcdef"[..]),
        "WAITALL completes only when full"
    );
    drop(t.join().unwrap());
    let (d, got) = probe::receive_into(s, 6, 0);
    assert_eq!(
        (d.status, got.len()),
        (STATUS_SUCCESS, 0),
        "G6: EOF completes a receive with 0 bytes"
    );
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w67_receive_from_one_datagram_per_irp() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    let (s, port) = dgram_socket(&wsk, 0);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"0123456789", ("127.0.0.1", port)).unwrap();
    c.send_to(b"second", ("127.0.0.1", port)).unwrap();
    let b = PoolBuf::new(4);
    let mut wb = b.wsk_buf();
    let mut from = v4([0; 4], 0);
    let mut cflags = 0u32;
    let mut clen = 99u32;
    // SAFETY: datagram table.
    let f = unsafe { dgram_d(s) }.WskReceiveFrom.unwrap();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe {
        f(
            s,
            &raw mut wb,
            0,
            (&raw mut from).cast(),
            &raw mut clen,
            null_mut(),
            &raw mut cflags,
            irp,
        )
    });
    assert_eq!((d.status, d.info), (STATUS_SUCCESS, 4));
    assert_eq!(b.bytes(), b"0123");
    assert_eq!(cflags & MSG_TRUNC, MSG_TRUNC);
    assert_eq!(clen, 0);
    assert_eq!(port_of(&from), c.local_addr().unwrap().port());
    b.free();
    let b = PoolBuf::new(64);
    let mut wb = b.wsk_buf();
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe {
        f(
            s,
            &raw mut wb,
            0,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            irp,
        )
    });
    assert_eq!(&b.bytes()[..d.info], b"second");
    b.free();
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w68_release_rules_and_close_does_not_release() {
    let _g = wsk_sim::init(Config {
        max_indication: 1 << 20,
        ..rec()
    });
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_PENDING, None));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"keep").unwrap();
    wait_until("indication", 5, || !probe::data_events().is_empty());
    let Ev::Receive { head, .. } = probe::data_events()[0].clone() else {
        panic!()
    };
    // SAFETY: connection table.
    let rel = unsafe { conn_d(s) }.WskRelease.unwrap();
    assert_eq!(
        // SAFETY: bogus pointer: checked by the provider before use.
        unsafe { rel(s, 0x1000 as PWSK_DATA_INDICATION) },
        STATUS_INVALID_PARAMETER
    );
    assert!(has_violation("not a retained indication list"));
    close(s);
    assert!(
        wsk_sim::leaks()
            .iter()
            .any(|l| l.contains("never released")),
        "close does not release retained lists"
    );
    // Releasing after the close is a use after close.
    // SAFETY: the provider checks the socket first.
    let _ = unsafe { rel(s, head as PWSK_DATA_INDICATION) };
    assert!(has_violation("after WskCloseSocket"));
    close(ls);
    wsk.close();
    wsk_sim::take_violations();
    let l = wsk_sim::leaks();
    assert_eq!(l.len(), 1, "only the retained list leaks: {l:?}");
}

#[test]
fn w68_double_release_is_flagged() {
    let _g = wsk_sim::init(Config {
        max_indication: 1 << 20,
        ..rec()
    });
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_PENDING, None));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(b"twice").unwrap();
    wait_until("indication", 5, || !probe::data_events().is_empty());
    let Ev::Receive { head, .. } = probe::data_events()[0].clone() else {
        panic!()
    };
    // SAFETY: connection table.
    let rel = unsafe { conn_d(s) }.WskRelease.unwrap();
    // SAFETY: the retained list, then the same pointer again (checked by the provider).
    unsafe {
        assert_eq!(rel(s, head as PWSK_DATA_INDICATION), STATUS_SUCCESS);
        assert_eq!(
            rel(s, head as PWSK_DATA_INDICATION),
            STATUS_INVALID_PARAMETER
        );
    }
    assert!(has_violation("released twice"));
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w69_disconnect_graceful_and_abortive() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, 0);
    let b = PoolBuf::from(b"last words");
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskDisconnect.unwrap();
    // SAFETY: valid arguments: graceful with a final buffer.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, irp) });
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut all = Vec::new();
    peer.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last words", "graceful: data then FIN");
    b.free();
    close(s);
    // Abortive: Buffer must be NULL; the peer sees a reset.
    probe::reset();
    let (ls2, s2, mut peer2) = probe::accepted_pair(&wsk, 0);
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s2, null_mut(), WSK_FLAG_ABORTIVE, irp) });
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut buf = [0u8; 4];
    let r = peer2.read(&mut buf);
    assert!(r.is_err() || r.unwrap() == 0);
    close(s2);
    close(ls2);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w70_close_cancels_pending_irps_and_later_use_is_flagged() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let b = PoolBuf::new(16);
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskReceive.unwrap();
    // SAFETY: a pending receive on a heap event, closed before we wait.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        let ev: *mut KEVENT = Box::into_raw(Box::new(std::mem::zeroed()));
        KeInitializeEvent(ev, NotificationEvent, FALSE);
        IoSetCompletionRoutine(irp, Some(flag_done), ev.cast(), true, true, true);
        assert_eq!(f(s, &raw mut wb, 0, irp), STATUS_PENDING);
        assert_eq!(close(s).status, STATUS_SUCCESS);
        let mut zero = LARGE_INTEGER { QuadPart: 0 };
        assert_eq!(
            KeWaitForSingleObject(ev.cast(), Executive, KernelMode, FALSE, &raw mut zero),
            STATUS_SUCCESS,
            "cancelled before the close completed"
        );
        assert_eq!((*irp).IoStatus.Status, STATUS_CANCELLED);
        IoFreeIrp(irp);
        drop(Box::from_raw(ev));
    }
    // Any call on the closed socket is reported.
    let (d, _) = probe::receive_into(s, 4, 0);
    assert_ne!(d.status, STATUS_SUCCESS);
    assert!(has_violation("after WskCloseSocket"));
    b.free();
    close(ls);
    wsk.close();
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w71_local_address_only_when_bound() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    let (_, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        null_mut(),
        std::ptr::null(),
    );
    assert_eq!(local_addr(s, true).0.status, STATUS_INVALID_DEVICE_STATE);
    let mut a = v4([127, 0, 0, 1], 0);
    bind(s, &mut a);
    let (d, la) = local_addr(s, true);
    assert_eq!(d.status, STATUS_SUCCESS);
    assert_ne!(port_of(&la), 0);
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w72_remote_address_only_when_connected() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (_, c) = wsk.socket(
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_CONNECTION_SOCKET,
        null_mut(),
        std::ptr::null(),
    );
    let mut a = v4([0; 4], 0);
    // SAFETY: connection table.
    let f = unsafe { conn_d(c) }.WskGetRemoteAddress.unwrap();
    assert_eq!(
        // SAFETY: valid arguments.
        sync_call(|irp| unsafe { f(c, (&raw mut a).cast(), irp) }).status,
        STATUS_INVALID_DEVICE_STATE
    );
    close(c);
    let (ls, s, peer) = probe::accepted_pair(&wsk, 0);
    assert_eq!(
        // SAFETY: valid arguments.
        sync_call(|irp| unsafe { f(s, (&raw mut a).cast(), irp) }).status,
        STATUS_SUCCESS
    );
    assert_eq!(port_of(&a), peer.local_addr().unwrap().port());
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w73_stream_sockets_commit_to_listen_or_connect() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    // The stream table holds raw pointers (not Sync): leak one for the test's lifetime.
    let stream: &'static WSK_CLIENT_STREAM_DISPATCH =
        Box::leak(Box::new(WSK_CLIENT_STREAM_DISPATCH {
            Listen: &raw const probe::LISTEN,
            Connect: &raw const probe::CONN,
        }));
    let (d, ls) = wsk.socket(
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_STREAM_SOCKET,
        0x57 as PVOID,
        std::ptr::from_ref(stream).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    // SAFETY: a stream socket's provider table.
    let st = unsafe { &*(*ls).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>() };
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(
        // SAFETY: valid arguments.
        sync_call(|irp| unsafe { (st.WskBind.unwrap())(ls, (&raw mut a).cast(), 0, irp) }).status,
        STATUS_SUCCESS
    );
    assert_eq!(
        // SAFETY: valid arguments.
        sync_call(|irp| unsafe { (st.WskListen.unwrap())(ls, irp) }).status,
        STATUS_SUCCESS
    );
    assert_eq!(enable(ls, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
    let mut la = v4([0; 4], 0);
    // SAFETY: valid arguments.
    sync_call(|irp| unsafe { (st.WskGetLocalAddress.unwrap())(ls, (&raw mut la).cast(), irp) });
    let _peer = TcpStream::connect(("127.0.0.1", port_of(&la))).unwrap();
    wait_until("accept through the stream table", 5, || {
        !probe::ACCEPTED.lock().unwrap().is_empty()
    });
    assert!(probe::events().contains(&Ev::Accept {
        ctx: 0x57,
        flags: 0
    }));
    // Committed to listening: connection calls fail.
    assert_eq!(probe::send(ls, b"x").status, STATUS_INVALID_DEVICE_STATE);
    let acc = probe::ACCEPTED.lock().unwrap()[0] as PWSK_SOCKET;
    close(acc);
    close(ls);
    // A connecting stream socket cannot listen afterwards.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, cs) = wsk.socket(
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_STREAM_SOCKET,
        null_mut(),
        std::ptr::from_ref(stream).cast(),
    );
    let mut a = v4([127, 0, 0, 1], 0);
    let mut r = v4([127, 0, 0, 1], l.local_addr().unwrap().port());
    // SAFETY: valid arguments.
    unsafe {
        assert_eq!(
            sync_call(|irp| (st.WskBind.unwrap())(cs, (&raw mut a).cast(), 0, irp)).status,
            STATUS_SUCCESS
        );
        assert_eq!(
            sync_call(|irp| (st.WskConnect.unwrap())(cs, (&raw mut r).cast(), 0, irp)).status,
            STATUS_SUCCESS
        );
        assert_eq!(
            sync_call(|irp| (st.WskListen.unwrap())(cs, irp)).status,
            STATUS_INVALID_DEVICE_STATE
        );
    }
    close(cs);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w75_offset_must_lie_in_the_first_mdl() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let b = PoolBuf::from(b"abcd");
    let mut wb = WSK_BUF {
        Mdl: b.mdl,
        Offset: 9,
        Length: 1,
    };
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskSend.unwrap();
    // SAFETY: valid pointers; the bad Offset is what is tested.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, irp) });
    assert_eq!(d.status, STATUS_INVALID_PARAMETER);
    assert!(has_violation("not inside the first MDL"));
    let mut wb = WSK_BUF {
        Mdl: b.mdl,
        Offset: 2,
        Length: 8,
    };
    // SAFETY: as above; Length past the chain.
    let d = sync_call(|irp| unsafe { f(s, &raw mut wb, 0, irp) });
    assert_eq!(d.status, STATUS_INVALID_PARAMETER);
    assert!(has_violation("runs past the end of its MDL chain"));
    b.free();
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w42_posted_receives_take_data_before_the_callback() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, 0);
    let b = PoolBuf::new(32);
    let mut wb = b.wsk_buf();
    // SAFETY: connection table.
    let f = unsafe { conn_d(s) }.WskReceive.unwrap();
    let d = sync_call(|irp| {
        // SAFETY: valid arguments; the receive is posted before the event is enabled.
        let st = unsafe { f(s, &raw mut wb, 0, irp) };
        assert_eq!(enable(s, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
        peer.write_all(b"to the irp").unwrap();
        st
    });
    assert_eq!(&b.bytes()[..d.info], b"to the irp");
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        probe::data_events().is_empty(),
        "the queued receive took the data"
    );
    peer.write_all(b"to the event").unwrap();
    wait_until("event", 5, || probe::received_bytes() == b"to the event");
    b.free();
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w53_release_asap_once_retention_grows() {
    let _g = wsk_sim::init(Config {
        release_asap_threshold: 10,
        ..rec()
    });
    probe::reset();
    for _ in 0..2 {
        probe::RECV_SCRIPT
            .lock()
            .unwrap()
            .push_back((STATUS_PENDING, None));
    }
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    peer.write_all(&[1u8; 64]).unwrap();
    wait_until("first", 5, || probe::received_bytes().len() == 64);
    peer.write_all(&[2u8; 8]).unwrap();
    wait_until("second", 5, || probe::received_bytes().len() == 72);
    let ev = probe::data_events();
    let flags: Vec<u32> = ev
        .iter()
        .filter_map(|e| {
            if let Ev::Receive { flags, .. } = e {
                Some(*flags)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(flags[0] & WSK_FLAG_RELEASE_ASAP, 0);
    assert_ne!(
        flags[1] & WSK_FLAG_RELEASE_ASAP,
        0,
        "64 bytes retained > threshold 10"
    );
    // SAFETY: connection table.
    let rel = unsafe { conn_d(s) }.WskRelease.unwrap();
    for e in ev {
        if let Ev::Receive { head, .. } = e {
            assert_eq!(
                // SAFETY: retained lists.
                unsafe { rel(s, head as PWSK_DATA_INDICATION) },
                STATUS_SUCCESS
            );
        }
    }
    close(s);
    close(ls);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

#[test]
fn w60_datagram_indications_carry_the_remote_address() {
    let _g = wsk_sim::init(Config {
        dispatch_rate: 1.0,
        ..rec()
    });
    probe::reset();
    probe::RECVFROM_SCRIPT
        .lock()
        .unwrap()
        .push_back(STATUS_PENDING);
    let wsk = Wsk::open();
    let (s, port) = dgram_socket(&wsk, 0xD6);
    assert_eq!(enable(s, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"who", ("127.0.0.1", port)).unwrap();
    wait_until("datagram", 5, || !probe::events().is_empty());
    let Ev::ReceiveFrom { head, flags, .. } = probe::events()[0].clone() else {
        panic!()
    };
    assert_ne!(flags & WSK_FLAG_AT_DISPATCH_LEVEL, 0);
    let ind = head as PWSK_DATAGRAM_INDICATION;
    // SAFETY: retained (PENDING) until released below.
    unsafe {
        assert!((*ind).ControlInfo.is_null() && (*ind).ControlInfoLength == 0);
        let from = (*ind).RemoteAddress.cast::<SOCKADDR_IN>().read_unaligned();
        assert_eq!(port_of(&from), c.local_addr().unwrap().port());
        assert_eq!((dgram_d(s).WskRelease.unwrap())(s, ind), STATUS_SUCCESS);
    }
    close(s);
    wsk.close();
    wsk_sim::assert_no_leaks();
}

/// G21 (sim gap S-A): a FIN or a reset that arrives while the accepted socket's events are
/// still off (a stream listener's accepted sockets inherit none) is indicated once the client
/// enables them, as buffered data is; it is never marked reported unseen.
#[test]
fn g21_fin_or_reset_before_the_events_are_enabled_is_indicated_once_they_are() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    for reset in [false, true] {
        probe::reset();
        let (ls, s, peer) = probe::accepted_pair(&wsk, 0);
        if reset {
            // Closing with unread data in the receive buffer resets the connection.
            assert_eq!(probe::send(s, b"unread").status, STATUS_SUCCESS);
            let mut b = [0u8; 1];
            let _ = peer.peek(&mut b);
        } else {
            peer.shutdown(std::net::Shutdown::Write).unwrap();
        }
        drop(peer);
        // The provider has seen the FIN or the reset by the time it is quiet again.
        std::thread::sleep(Duration::from_millis(50));
        wait_until("quiet", 5, || wsk_sim::wait_quiescent(Duration::ZERO));
        assert!(
            probe::data_events().is_empty(),
            "nothing indicated while off"
        );
        assert_eq!(
            enable(s, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
            STATUS_SUCCESS
        );
        wait_until(
            if reset {
                "abortive disconnect event after enabling"
            } else {
                "graceful disconnect event after enabling"
            },
            5,
            || {
                probe::data_events().iter().any(|e| {
                    matches!(e, Ev::Disconnect { flags, .. }
                        if (flags & WSK_FLAG_ABORTIVE != 0) == reset)
                })
            },
        );
        close(s);
        close(ls);
    }
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
}

/// Sim gap S-B: WskAcceptEvent accepting with `*AcceptSocketDispatch` NULL while the socket's
/// receive events are inherited from the listener: real WSK would call through the NULL
/// table; the sim flags it.
#[test]
fn w50_accept_with_a_null_dispatch_and_inherited_events_is_flagged() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::NULL_DISPATCH_IN_ACCEPT.store(1, Ordering::SeqCst);
    let wsk = Wsk::open();
    let (ls, s, peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT);
    wait_until("flagged", 5, || has_violation("*AcceptSocketDispatch NULL"));
    drop(peer);
    close(s);
    close(ls);
    wsk.close();
    // Without inherited events a NULL dispatch is allowed (W25: nothing will be enabled).
    let _ = wsk_sim::take_violations();
    probe::reset();
    probe::NULL_DISPATCH_IN_ACCEPT.store(1, Ordering::SeqCst);
    let wsk = Wsk::open();
    let (ls, s, peer) = probe::accepted_pair(&wsk, 0);
    drop(peer);
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

/// Issue 17 item 7: a WskCloseSocket on the socket being accepted, issued inside its
/// WskAcceptEvent (the provider owns it until the callback returns, W49), is flagged.
#[test]
fn w49_close_inside_the_accept_callback_is_flagged() {
    let _g = wsk_sim::init(rec());
    probe::reset();
    probe::CLOSE_IN_ACCEPT.store(1, Ordering::SeqCst);
    let wsk = Wsk::open();
    let (ls, s, peer) = probe::accepted_pair(&wsk, 0);
    assert!(has_violation("inside the socket's own WskAcceptEvent"));
    assert_ne!(
        *probe::CLOSE_IN_ACCEPT_RESULT.lock().unwrap(),
        Some(STATUS_SUCCESS)
    );
    drop(peer);
    close(s);
    close(ls);
    wsk.close();
    let _ = wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}
