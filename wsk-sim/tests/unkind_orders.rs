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

/// Issues `n` calls at once on one connection (WskGetLocalAddress: nothing orders them, every
/// one pends and is completed by the completer threads); returns how often one completion
/// routine of the socket found another one running.
fn overlapping_completions(cfg: Config, n: usize) -> usize {
    let _g = wsk_sim::init(Config {
        pend_rate: 1.0,
        complete_before_return_rate: 0.0,
        max_completion_delay_us: 500,
        ..cfg
    });
    probe::reset();
    let wsk = Wsk::open();
    let (ls, s, _peer) = probe::accepted_pair(&wsk, 0);
    let ctx = Ctx::new();
    let mut out = vec![v4([0; 4], 0); n];
    for a in &mut out {
        assert_eq!(naive::local_address_serial(s, a, &ctx), STATUS_PENDING);
    }
    wait_until("every call completed", 10, || {
        ctx.completed.load(Ordering::SeqCst) == n
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
    ctx.overlapped.load(Ordering::SeqCst)
}

#[test]
fn completion_routines_of_one_socket_may_run_at_once() {
    assert_eq!(
        overlapping_completions(rec(), 24),
        0,
        "one completer thread: routines one at a time"
    );
    let overlaps = overlapping_completions(rec().with_unkind("parallel-completion").unwrap(), 24);
    assert!(
        overlaps > 0,
        "parallel-completion: no two completion routines of the socket ran at once"
    );
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
    assert!(
        all.preempt_rate > 0.0 && all.preempt_us >= 31_250,
        "two 15.6 ms ticks"
    );
    assert!(all.accept_race_rate > 0.0 && all.disconnect_race_rate > 0.0);
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

// ---------------------------------------------------------------------------------------
// `preempt`, `accept-race`, `disconnect-race`: a small event client of their own (the
// probe's callbacks make no kernel calls, and preemption and the races happen at them).

/// The race client: one listener, its accepted connections, and what went wrong.
mod rc {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::common::*;
    use wsk_sys::*;

    /// 0: copy and return SUCCESS; 1: retain (STATUS_PENDING) and let the housekeeper
    /// release two ticks after the callback marked itself finished (time-based); 2: retain
    /// with a counted callback reference dropped as the callback's last act.
    pub static MODE: AtomicU32 = AtomicU32::new(0);
    /// Events that found their connection's setup (done in the accept callback after it
    /// set the context and dispatch) unfinished.
    pub static EARLY: AtomicUsize = AtomicUsize::new(0);
    /// Disconnect events that came while a receive callback of the socket ran.
    pub static OVERLAPS: AtomicUsize = AtomicUsize::new(0);
    pub static RECEIVES: AtomicUsize = AtomicUsize::new(0);
    pub static DISCONNECTS: AtomicUsize = AtomicUsize::new(0);
    pub static BYTES: AtomicUsize = AtomicUsize::new(0);
    /// Accepted sockets, in order.
    pub static SOCKETS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    /// The retained list (modes 1 and 2), the callback's "finished" mark, its counted
    /// reference, and the housekeeper's ticks since the mark.
    pub static HELD: AtomicUsize = AtomicUsize::new(0);
    pub static MARKED: AtomicBool = AtomicBool::new(false);
    pub static CB_REF: AtomicBool = AtomicBool::new(false);
    pub static RELEASED: AtomicUsize = AtomicUsize::new(0);
    static LOCK: AtomicUsize = AtomicUsize::new(0);

    pub struct Conn {
        ready: AtomicBool,
        in_receive: AtomicBool,
    }

    pub fn reset(mode: u32) {
        MODE.store(mode, Ordering::SeqCst);
        for a in [
            &EARLY,
            &OVERLAPS,
            &RECEIVES,
            &DISCONNECTS,
            &BYTES,
            &HELD,
            &RELEASED,
        ] {
            a.store(0, Ordering::SeqCst);
        }
        MARKED.store(false, Ordering::SeqCst);
        CB_REF.store(false, Ordering::SeqCst);
        SOCKETS.lock().unwrap().clear();
    }

    pub static LISTEN: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
        WskAcceptEvent: Some(accept),
        WskInspectEvent: None,
        WskAbortEvent: None,
    };
    pub static CONN: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
        WskReceiveEvent: Some(receive),
        WskDisconnectEvent: Some(disconnect),
        WskSendBacklogEvent: None,
    };

    pub static DGRAM: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
        WskReceiveFromEvent: Some(receive_from),
    };

    /// WskReceiveFromEvent (<= DISPATCH): modes 1 and 2 as for `receive`.
    unsafe extern "win64" fn receive_from(
        _ctx: PVOID,
        _flags: u32,
        ind: *mut WSK_DATAGRAM_INDICATION,
    ) -> NTSTATUS {
        if ind.is_null() {
            return STATUS_SUCCESS;
        }
        // SAFETY: the provider's list, valid during the callback.
        let bytes = unsafe { (*ind).Buffer.Length };
        retain(ind as usize, bytes)
    }

    /// Modes 1 (time-based) and 2 (counted) of a retaining receive callback.
    fn retain(ind: usize, bytes: usize) -> NTSTATUS {
        if MODE.load(Ordering::SeqCst) == 1 {
            // Time-based: mark the callback finished, then a little more work (a
            // statistics update under the lock: a preemption point) before returning.
            HELD.store(ind, Ordering::SeqCst);
            MARKED.store(true, Ordering::SeqCst);
            let old = lock();
            BYTES.fetch_add(bytes, Ordering::SeqCst);
            unlock(old);
        } else {
            // Counted: the same work, the callback's reference dropped last.
            CB_REF.store(true, Ordering::SeqCst);
            let old = lock();
            BYTES.fetch_add(bytes, Ordering::SeqCst);
            unlock(old);
            let old = lock();
            HELD.store(ind, Ordering::SeqCst);
            MARKED.store(true, Ordering::SeqCst);
            unlock(old);
            CB_REF.store(false, Ordering::SeqCst);
        }
        STATUS_PENDING
    }

    fn lock() -> KIRQL {
        // SAFETY: a spin lock word of this module.
        unsafe { KeAcquireSpinLockRaiseToDpc(LOCK.as_ptr().cast()) }
    }
    fn unlock(old: KIRQL) {
        // SAFETY: held by this thread (lock()).
        unsafe { KeReleaseSpinLock(LOCK.as_ptr().cast(), old) }
    }

    /// WskAcceptEvent (<= DISPATCH): sets the context and dispatch first, then finishes the
    /// connection's setup (a pool allocation stands in for it): a client that assumes no
    /// event of the socket comes before its accept callback returned.
    unsafe extern "win64" fn accept(
        _ctx: PVOID,
        _flags: u32,
        _l: PSOCKADDR,
        _r: PSOCKADDR,
        s: PWSK_SOCKET,
        ctx_out: *mut PVOID,
        disp_out: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
    ) -> NTSTATUS {
        if s.is_null() {
            return STATUS_REQUEST_NOT_ACCEPTED;
        }
        let c = Box::into_raw(Box::new(Conn {
            ready: AtomicBool::new(false),
            in_receive: AtomicBool::new(false),
        }));
        // SAFETY: the provider's out-parameters.
        unsafe {
            *ctx_out = c.cast();
            *disp_out = &raw const CONN;
        }
        // SAFETY: plain pool calls.
        unsafe {
            let p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, u32::from_le_bytes(*b"rcT1"));
            ExFreePoolWithTag(p, u32::from_le_bytes(*b"rcT1"));
            (*c).ready.store(true, Ordering::SeqCst);
        }
        SOCKETS.lock().unwrap().push(s as usize);
        STATUS_SUCCESS
    }

    /// WskReceiveEvent (<= DISPATCH).
    unsafe extern "win64" fn receive(
        ctx: PVOID,
        _flags: u32,
        ind: *mut WSK_DATA_INDICATION,
        bytes: SIZE_T,
        _accepted: *mut SIZE_T,
    ) -> NTSTATUS {
        // SAFETY: the Conn set in accept (never freed during a test).
        let c = unsafe { &*ctx.cast::<Conn>() };
        if !c.ready.load(Ordering::SeqCst) {
            EARLY.fetch_add(1, Ordering::SeqCst);
        }
        RECEIVES.fetch_add(1, Ordering::SeqCst);
        if ind.is_null() {
            return STATUS_SUCCESS;
        }
        c.in_receive.store(true, Ordering::SeqCst);
        match MODE.load(Ordering::SeqCst) {
            1 | 2 => {
                c.in_receive.store(false, Ordering::SeqCst);
                retain(ind as usize, bytes)
            }
            _ => {
                // SAFETY: a clock read, as a driver stamps its receive path.
                unsafe { KeQueryPerformanceCounter(std::ptr::null_mut()) };
                let mut n = 0;
                let mut cur = ind;
                while !cur.is_null() {
                    // SAFETY: the provider's list, valid during the callback.
                    unsafe {
                        n += read_wsk_buf(&(*cur).Buffer).len();
                        cur = (*cur).Next;
                    }
                }
                BYTES.fetch_add(n, Ordering::SeqCst);
                c.in_receive.store(false, Ordering::SeqCst);
                STATUS_SUCCESS
            }
        }
    }

    /// WskDisconnectEvent (<= DISPATCH): a client that assumes its receive path is idle by
    /// now (it would free the receive state here).
    unsafe extern "win64" fn disconnect(ctx: PVOID, _flags: u32) -> NTSTATUS {
        // SAFETY: the Conn set in accept.
        let c = unsafe { &*ctx.cast::<Conn>() };
        if !c.ready.load(Ordering::SeqCst) {
            EARLY.fetch_add(1, Ordering::SeqCst);
        }
        if c.in_receive.load(Ordering::SeqCst) {
            OVERLAPS.fetch_add(1, Ordering::SeqCst);
        }
        DISCONNECTS.fetch_add(1, Ordering::SeqCst);
        STATUS_SUCCESS
    }

    /// A listener on 127.0.0.1:0 whose accepted sockets inherit `inherit`.
    pub fn listener(wsk: &Wsk, inherit: u32) -> (PWSK_SOCKET, u16) {
        let (d, ls) = wsk.socket(
            AF_INET,
            SOCK_STREAM,
            IPPROTO_TCP,
            WSK_FLAG_LISTEN_SOCKET,
            std::ptr::null_mut(),
            (&raw const LISTEN).cast(),
        );
        assert_eq!(d.status, STATUS_SUCCESS);
        let mut a = v4([127, 0, 0, 1], 0);
        assert_eq!(bind(ls, &mut a).status, STATUS_SUCCESS);
        assert_eq!(enable(ls, inherit), STATUS_SUCCESS);
        assert_eq!(enable(ls, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
        let (_, la) = local_addr(ls, false);
        (ls, port_of(&la))
    }

    /// WskRelease of the held list from a housekeeping thread, at DISPATCH_LEVEL (as from a
    /// timer DPC: never descheduled).
    pub fn release_held(s: PWSK_SOCKET, dgram: bool) {
        let list = HELD.swap(0, Ordering::SeqCst);
        if list == 0 {
            return;
        }
        // SAFETY: the list the receive callback retained; released once.
        unsafe {
            let old = KfRaiseIrql(DISPATCH_LEVEL);
            if dgram {
                (dgram_d(s).WskRelease.unwrap())(s, list as PWSK_DATAGRAM_INDICATION);
            } else {
                (conn_d(s).WskRelease.unwrap())(s, list as PWSK_DATA_INDICATION);
            }
            KeLowerIrql(old);
        }
        RELEASED.fetch_add(1, Ordering::SeqCst);
    }
}

/// One connection to an `rc` listener whose receive callback retains the list (`mode` 1:
/// released two 5 ms housekeeping ticks after the callback marked itself finished; 2:
/// released once its counted callback reference is gone). Returns the violations.
/// With `dgram`, a datagram socket's WskReceiveFromEvent retains a datagram instead.
fn retained_release(cfg: Config, mode: u32, dgram: bool) -> Vec<String> {
    let _g = wsk_sim::init(cfg);
    rc::reset(mode);
    let wsk = Wsk::open();
    let (ls, s, _peer) = if dgram {
        let (d, s) = wsk.socket(
            AF_INET,
            SOCK_DGRAM,
            IPPROTO_UDP,
            WSK_FLAG_DATAGRAM_SOCKET,
            std::ptr::null_mut(),
            (&raw const rc::DGRAM).cast(),
        );
        assert_eq!(d.status, STATUS_SUCCESS);
        let mut a = v4([127, 0, 0, 1], 0);
        assert_eq!(bind(s, &mut a).status, STATUS_SUCCESS);
        assert_eq!(enable(s, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
        let (_, la) = local_addr(s, true);
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(250));
        u.send_to(b"hold me", ("127.0.0.1", port_of(&la))).unwrap();
        (None, s, None)
    } else {
        let (ls, port) = rc::listener(&wsk, WSK_EVENT_RECEIVE);
        let mut peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        wait_until("accept", 5, || !rc::SOCKETS.lock().unwrap().is_empty());
        let s = rc::SOCKETS.lock().unwrap()[0] as PWSK_SOCKET;
        // Past the fresh quantum of a provider thread preempted in the accept callback.
        std::thread::sleep(std::time::Duration::from_millis(250));
        std::io::Write::write_all(&mut peer, b"hold me").unwrap();
        (Some(ls), s, Some(peer))
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hk = {
        let stop = std::sync::Arc::clone(&stop);
        let sock = s as usize;
        std::thread::spawn(move || {
            let mut ticks = 0;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if !rc::MARKED.load(Ordering::SeqCst) {
                    continue;
                }
                let due = if mode == 1 {
                    ticks += 1;
                    ticks >= 2
                } else {
                    !rc::CB_REF.load(Ordering::SeqCst)
                };
                if due && rc::HELD.load(Ordering::SeqCst) != 0 {
                    rc::release_held(sock as PWSK_SOCKET, dgram);
                }
            }
        })
    };
    wait_until("release", 10, || rc::RELEASED.load(Ordering::SeqCst) == 1);
    wait_until("callback returned", 10, || {
        wsk_sim::wait_quiescent(std::time::Duration::ZERO) && rc::BYTES.load(Ordering::SeqCst) == 7
    });
    stop.store(true, Ordering::SeqCst);
    hk.join().unwrap();
    // The callback's return is recorded after it returned: give the provider a moment.
    std::thread::sleep(std::time::Duration::from_millis(150));
    close(s);
    if let Some(ls) = ls {
        close(ls);
    }
    wsk.close();
    let v = wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
    v
}

/// `preempt_rate`: a PASSIVE_LEVEL thread is descheduled at its kernel calls, here inside a
/// receive callback right after it marked itself finished. A client that concludes "two
/// housekeeping ticks after the mark, the callback has returned" releases the list while
/// the callback still runs, and the sim flags that WskRelease (W55/W68: the list is the
/// client's only once the callback returned STATUS_PENDING). Without preemption the same
/// client is not caught; with a counted callback reference dropped as the callback's last
/// act, nothing is flagged even under preemption.
#[test]
fn preempted_callback_is_still_running_when_a_time_based_release_comes() {
    let preempt = || Config {
        preempt_rate: 1.0,
        preempt_us: 100_000,
        ..rec()
    };
    for dgram in [false, true] {
        let v = retained_release(preempt(), 1, dgram);
        assert!(
            v.iter().any(|m| m.contains("still running")),
            "time-based release under preempt not flagged (dgram {dgram}): {v:?}"
        );
        assert_eq!(retained_release(rec(), 1, dgram), Vec::<String>::new());
        assert_eq!(retained_release(preempt(), 2, dgram), Vec::<String>::new());
    }
}

/// Connects `n` peers to an `rc` listener (inherit RECEIVE + DISCONNECT); each writes at
/// once and, with `fin`, shuts its sending side. Waits until every connection's data (and
/// FIN) was seen, closes everything, and returns (EARLY, OVERLAPS).
fn race_client_run(cfg: Config, n: usize, fin: bool) -> (usize, usize) {
    let _g = wsk_sim::init(cfg);
    rc::reset(0);
    let wsk = Wsk::open();
    let (ls, port) = rc::listener(&wsk, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT);
    let mut peers = Vec::new();
    for _ in 0..n {
        let mut p = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut p, b"first bytes").unwrap();
        if fin {
            p.shutdown(std::net::Shutdown::Write).unwrap();
        }
        peers.push(p);
    }
    wait_until("data", 10, || rc::BYTES.load(Ordering::SeqCst) == 11 * n);
    if fin {
        wait_until("disconnects", 10, || {
            rc::DISCONNECTS.load(Ordering::SeqCst) == n
        });
    }
    wait_until("quiet", 10, || {
        wsk_sim::wait_quiescent(std::time::Duration::ZERO)
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    for s in rc::SOCKETS.lock().unwrap().clone() {
        close(s as PWSK_SOCKET);
    }
    close(ls);
    wsk.close();
    assert!(
        wsk_sim::violations().is_empty(),
        "{:?}",
        wsk_sim::violations()
    );
    wsk_sim::assert_no_leaks();
    (
        rc::EARLY.load(Ordering::SeqCst),
        rc::OVERLAPS.load(Ordering::SeqCst),
    )
}

/// `accept_race_rate`: once WskAcceptEvent has set `*AcceptSocketDispatch`, the accepted
/// socket's (inherited) events may come on another thread before the callback returns. A
/// client that finishes its connection setup after setting the out-parameters gets a
/// receive event on an unfinished connection. Off, events wait for the return.
#[test]
fn accepted_socket_events_may_come_before_the_accept_callback_returns() {
    let (early, _) = race_client_run(
        Config {
            accept_race_rate: 1.0,
            accept_race_us: 20_000,
            ..rec()
        },
        4,
        false,
    );
    assert!(
        early > 0,
        "no event came before its accept callback returned"
    );
    assert_eq!(race_client_run(rec(), 4, false), (0, 0));
}

/// `disconnect_race_rate`: the graceful WskDisconnectEvent may run on another thread while
/// the socket's last WskReceiveEvent still runs (W45 serialises receive events only with
/// each other). A client that treats the disconnect event as "the receive path is idle"
/// sees them overlap. Off, they come one after the other.
#[test]
fn disconnect_event_may_overlap_the_receive_event() {
    let (_, overlaps) = race_client_run(
        Config {
            disconnect_race_rate: 1.0,
            disconnect_race_us: 20_000,
            ..rec()
        },
        4,
        true,
    );
    assert!(
        overlaps > 0,
        "no disconnect event overlapped a receive event"
    );
    assert_eq!(race_client_run(rec(), 4, true), (0, 0));
}
