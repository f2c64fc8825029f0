//! The orders the WSK docs leave open, each a seeded Config setting (off by default): each
//! test shows the setting is exercised and that a client written for the kind order
//! (tests/common/naive.rs) goes wrong under it.

#![allow(
    clippy::items_after_statements,
    clippy::unnecessary_box_returns,
    clippy::ref_as_ptr
)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::atomic::Ordering;

use common::naive::{self, Ctx};
use common::*;
use wsk_sim::{Config, ViolationMode};
use wsk_sys::*;

fn rec() -> Config {
    Config {
        violations: ViolationMode::Record,
        ..Config::plain()
    }
}

/// Closes an accepted connection that has a receive pending; returns how often the naive
/// client touched its context after the close's completion "freed" it.
fn close_with_pending_receive(cfg: Config) -> usize {
    let _g = wsk_sim::init(cfg);
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let ctx = Ctx::new();
    let buf = PoolBuf::new(64);
    assert_eq!(naive::post_receive(s, &buf, &ctx), STATUS_PENDING);
    let st = naive::close(s, &ctx);
    assert!(st == STATUS_SUCCESS || st == STATUS_PENDING, "{st:#x}");
    wait_until("receive and close completed", 5, || {
        ctx.completed.load(Ordering::SeqCst) == 2
    });
    buf.free();
    close(ls);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
    ctx.wrong_order.load(Ordering::SeqCst)
}

/// `reorder_close_rate`: WskCloseSocket's IRP completes before or after the IRPs it
/// cancelled (seeded); a client that frees its context in the close's completion touches
/// freed memory in the cancelled receive's completion. Off, the kind order holds.
#[test]
fn close_completes_before_or_after_the_irps_it_cancelled() {
    let mut wrong = 0;
    let mut kind = 0;
    for seed in 1..=12 {
        let n = close_with_pending_receive(Config {
            seed,
            reorder_close_rate: 1.0,
            ..rec()
        });
        if n > 0 {
            wrong += 1;
        } else {
            kind += 1;
        }
    }
    assert!(wrong > 0, "the close never completed first in 12 seeds");
    assert!(kind > 0, "the close never completed last in 12 seeds");
    for seed in 1..=4 {
        assert_eq!(close_with_pending_receive(Config { seed, ..rec() }), 0);
    }
}

/// `late_return_rate`: a call that pends can have its IRP completed on a provider thread
/// before it returns; a client that sets up what its completion routine reads only after
/// the call returned reads it unset.
#[test]
fn completion_runs_on_another_thread_before_the_call_returns() {
    let _g = wsk_sim::init(Config {
        pend_rate: 1.0,
        late_return_rate: 1.0,
        late_return_us: 40_000,
        ..rec()
    });
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let ctx = Ctx::new();
    let buf = PoolBuf::from(b"early completion");
    let mut pended = 0;
    for _ in 0..4 {
        let before = ctx.completed.load(Ordering::SeqCst);
        if naive::send_then_mark(s, &buf, &ctx) == STATUS_PENDING {
            pended += 1;
        }
        wait_until("send completed", 5, || {
            ctx.completed.load(Ordering::SeqCst) == before + 1
        });
    }
    assert_eq!(pended, 4, "pend_rate 1.0: every send pends");
    assert!(
        ctx.wrong_order.load(Ordering::SeqCst) > 0,
        "no completion ran before its call returned"
    );
    buf.free();
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

/// Connects the naive client to a host listener, enables its receive callback, and has the
/// peer send one message; returns (replies completed inside the callback, callbacks run).
fn reply_inside_callback(cfg: Config) -> (usize, usize) {
    let _g = wsk_sim::init(cfg);
    probe::reset();
    let wsk = Wsk::open();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = Ctx::new();
    let reply = PoolBuf::from(b"reply");
    let mut wb = reply.wsk_buf();
    ctx.reply.store(&raw mut wb, Ordering::SeqCst);
    let s = naive::connect(&wsk, port, &ctx);
    let (mut peer, _) = listener.accept().unwrap();
    assert_eq!(enable(s, WSK_EVENT_RECEIVE), STATUS_SUCCESS);
    std::io::Write::write_all(&mut peer, b"ping").unwrap();
    wait_until("reply completed", 5, || {
        ctx.completed.load(Ordering::SeqCst) == 1
    });
    wait_until("callback returned", 5, || {
        ctx.receives.load(Ordering::SeqCst) == 1
            && wsk_sim::wait_quiescent(std::time::Duration::ZERO)
    });
    close(s);
    reply.free();
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
    (
        ctx.completed_in_callback.load(Ordering::SeqCst),
        ctx.receives.load(Ordering::SeqCst),
    )
}

/// `progress_during_callback_rate`: a send issued inside a receive callback completes
/// while that callback still runs (another provider thread moves it); a client that
/// assumes no completion of the socket runs before its callback returns sees it. Off, the
/// send waits for the callback.
#[test]
fn sends_complete_while_the_receive_callback_runs() {
    let on = Config {
        pend_rate: 1.0,
        progress_during_callback_rate: 1.0,
        ..rec()
    };
    assert_eq!(reply_inside_callback(on), (1, 1));
    let off = Config {
        pend_rate: 1.0,
        ..rec()
    };
    assert_eq!(reply_inside_callback(off), (0, 1));
}

/// `callback_stall_rate`: a PASSIVE_LEVEL callback's thread is descheduled on its way in;
/// a client that gives up on data its callback has not seen within 20 ms (a timeout
/// inferred from time rather than counted) gives up on data that does arrive.
#[test]
fn callbacks_can_be_descheduled_for_tens_of_ms() {
    let _g = wsk_sim::init(Config {
        callback_stall_rate: 1.0,
        callback_stall_us: 100_000,
        ..rec()
    });
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    let sent = std::time::Instant::now();
    std::io::Write::write_all(&mut peer, b"late").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seen_in_time = !probe::data_events().is_empty();
    wait_until("indication", 5, || !probe::data_events().is_empty());
    // The stall is 50-100 ms: a lower bound the sleep guarantees, not a speed measure.
    assert!(sent.elapsed() >= std::time::Duration::from_millis(50));
    assert!(!seen_in_time, "the naive 20 ms timeout saw the data");
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

// ntoskrnl exports the sim defines that wsk-sys does not declare.
unsafe extern "win64" {
    fn IoGetCurrentProcess() -> PEPROCESS;
    static PsInitialSystemProcess: PEPROCESS;
}

static DISPATCH_WSK: std::sync::Mutex<Option<(usize, usize)>> = std::sync::Mutex::new(None);
static DISPATCH_SOCKET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A naive IOCTL handler: creates a datagram socket for the caller's request with
/// OwningProcess NULL, as if the driver's own process were current.
unsafe extern "win64" fn create_socket_ioctl(_dev: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    let (client, disp) = DISPATCH_WSK.lock().unwrap().expect("set by the test");
    // SAFETY: the captured provider dispatch of the test's registration.
    let f = unsafe { (*(disp as *const WSK_PROVIDER_DISPATCH)).WskSocket.unwrap() };
    let d = sync_call(|i| {
        // SAFETY: valid arguments per PFN_WSK_SOCKET.
        unsafe {
            f(
                client as PWSK_CLIENT,
                AF_INET,
                SOCK_DGRAM,
                IPPROTO_UDP,
                WSK_FLAG_DATAGRAM_SOCKET,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                i,
            )
        }
    });
    DISPATCH_SOCKET.store(d.info, Ordering::SeqCst);
    // SAFETY: the I/O manager's IRP for our device.
    unsafe {
        (*irp).IoStatus.Status = d.status;
        (*irp).IoStatus.Information = 0;
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    d.status
}

/// Sends one IOCTL to a device whose handler is `create_socket_ioctl`; returns the socket
/// it made and whether a violation was recorded.
fn socket_from_ioctl(flag: bool) -> bool {
    let _g = wsk_sim::init(Config {
        flag_user_process_sockets: flag,
        ..rec()
    });
    let wsk = Wsk::open();
    *DISPATCH_WSK.lock().unwrap() = Some((wsk.npi.Client as usize, wsk.npi.Dispatch as usize));
    let drv = wsk_sim::new_driver_object();
    let mut dev: PDEVICE_OBJECT = std::ptr::null_mut();
    // SAFETY: a device for the handler, deleted below.
    unsafe {
        (*drv).MajorFunction[usize::from(IRP_MJ_DEVICE_CONTROL)] = Some(create_socket_ioctl);
        assert_eq!(
            wsk_sim::run_passive(|| IoCreateDevice(
                drv,
                0,
                std::ptr::null_mut(),
                FILE_DEVICE_NETWORK,
                0,
                FALSE,
                &raw mut dev
            )),
            STATUS_SUCCESS
        );
    }
    // SAFETY: a live device whose driver has an IRP_MJ_DEVICE_CONTROL routine.
    let r =
        unsafe { wsk_sim::device::call_dispatch(dev, IRP_MJ_DEVICE_CONTROL, 0x0022_2000, &[], 0) };
    assert_eq!(r.status, STATUS_SUCCESS);
    close(DISPATCH_SOCKET.load(Ordering::SeqCst) as PWSK_SOCKET);
    // SAFETY: created above.
    wsk_sim::run_passive(|| unsafe { IoDeleteDevice(dev) });
    wsk.close();
    let flagged = !wsk_sim::take_violations().is_empty();
    wsk_sim::assert_no_leaks();
    flagged
}

/// `flag_user_process_sockets`: an IOCTL's dispatch runs in the caller's process; a socket
/// created there with OwningProcess NULL is that process's (W26). A driver that assumed it
/// runs in its own context is flagged; off, nothing is.
#[test]
fn sockets_created_in_a_user_process_context_are_flagged() {
    assert!(socket_from_ioctl(true));
    assert!(!socket_from_ioctl(false));
    // DriverEntry and system threads run in the System process.
    let _g = wsk_sim::init(rec());
    // SAFETY: a plain kernel call.
    let p = wsk_sim::run_passive(|| unsafe { IoGetCurrentProcess() });
    // SAFETY: set by init.
    assert_eq!(p, unsafe { PsInitialSystemProcess });
}

/// The names `WSK_SIM_UNKIND` and `Config::with_unkind` take: each turns its setting on,
/// `all` every one, an unknown name is a clear error.
#[test]
fn unkind_orders_by_name() {
    let all = Config::plain().with_unkind("all").unwrap();
    assert!(all.reorder_close_rate > 0.0 && all.late_return_rate > 0.0);
    assert!(all.progress_during_callback_rate > 0.0 && all.callback_stall_rate > 0.0);
    assert!(all.flag_user_process_sockets);
    let one = Config::plain().with_unkind(" close ").unwrap();
    assert!(one.reorder_close_rate > 0.0 && one.late_return_rate == 0.0);
    for name in wsk_sim::UNKIND_ORDERS {
        assert!(Config::plain().with_unkind(name).is_ok(), "{name}");
    }
    let e = Config::plain().with_unkind("close,sideways").unwrap_err();
    assert!(e.contains("sideways") && e.contains("late-return"), "{e}");
}

/// Sends `data` to an accepted probe connection and returns what the probe received and the
/// MDL shapes of the indications as they arrived.
fn indications_of(cfg: Config, data: &[u8]) -> (Vec<u8>, Vec<(bool, bool, u32)>) {
    let _g = wsk_sim::init(cfg);
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    std::io::Write::write_all(&mut peer, data).unwrap();
    wait_until("all data indicated", 5, || {
        probe::received_bytes().len() == data.len()
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
    let shapes = probe::MDL_SHAPES.lock().unwrap().concat();
    (probe::received_bytes(), shapes)
}

/// `unmapped_mdl_rate`: indication MDLs may come locked but not mapped. A client that reads
/// MappedSystemVa directly reads NULL; MmGetSystemAddressForMdlSafe maps them and the data
/// is intact.
#[test]
fn indication_mdls_may_come_unmapped() {
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let (got, shapes) = indications_of(
        Config {
            unmapped_mdl_rate: 1.0,
            ..rec()
        },
        &data,
    );
    assert_eq!(got, data);
    assert!(!shapes.is_empty());
    assert!(
        shapes.iter().all(|&(mapped, va, _)| !mapped && !va),
        "every MDL unmapped at rate 1.0: {shapes:?}"
    );
    let (_, kind) = indications_of(rec(), &data);
    assert!(kind.iter().all(|&(mapped, va, _)| mapped && va));
}

/// `tiny_mdl_rate`: an indication's data may come in 1-3 byte MDLs. A client that expects
/// a 4-byte header inside the first MDL finds it split.
#[test]
fn indication_data_may_come_in_tiny_mdls() {
    let data: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let (got, shapes) = indications_of(
        Config {
            tiny_mdl_rate: 1.0,
            ..rec()
        },
        &data,
    );
    assert_eq!(got, data);
    // The first MDL also covers the 7 bytes before the data (WSK_BUF.Offset).
    let first_data = shapes[0].2 - 7;
    assert!((1..=3).contains(&first_data), "{shapes:?}");
    assert!(shapes.len() > 8, "{shapes:?}");
}

/// `inline_callback_rate`: a zero-length WskReceive that resumes indications (after
/// STATUS_DATA_NOT_ACCEPTED) may have the receive callback run inside it, on the caller's
/// thread: a client holding its connection lock around the call and taking it in the
/// callback would deadlock. Off, the callback comes on a provider thread.
fn callback_thread_after_resume(rate: f64) -> bool {
    let _g = wsk_sim::init(Config {
        inline_callback_rate: rate,
        ..rec()
    });
    probe::reset();
    probe::RECV_SCRIPT
        .lock()
        .unwrap()
        .push_back((STATUS_DATA_NOT_ACCEPTED, None));
    let wsk = Wsk::open();
    let (ls, s, mut peer) = probe::accepted_pair(&wsk, WSK_EVENT_RECEIVE);
    std::io::Write::write_all(&mut peer, b"held back").unwrap();
    wait_until("refused indication", 5, || probe::data_events().len() == 1);
    let (d, _) = probe::receive_into(s, 0, 0);
    assert_eq!(d.status, STATUS_SUCCESS);
    wait_until("indication again", 5, || probe::data_events().len() == 2);
    let me = std::thread::current().id();
    let inside = probe::RECEIVE_THREADS.lock().unwrap().contains(&me);
    close(s);
    close(ls);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
    inside
}

#[test]
fn callbacks_may_run_inside_the_call_that_resumes_them() {
    assert!(callback_thread_after_resume(1.0));
    assert!(!callback_thread_after_resume(0.0));
}
