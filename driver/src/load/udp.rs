//! UDP load job: `flows` datagram sockets (each its own source port, so a NIC's RSS spreads the
//! job over its receive queues: the hash covers the ports), `connections` pre-allocated send
//! contexts spread over them round-robin (each sends from its flow's socket only) that each keep
//! one batch of up to [`BATCH`] datagrams of the source pattern (`message_size` bytes each, all
//! one shared read-only block) in flight with one WskSendMessages call (W65: a batch goes to one
//! address, which a job's batches all do), open loop (a send does not wait for an echo). A
//! context's next batch is issued by its own send completion, looping, not recursing (C12: no new
//! WSK call from a completion routine: loop, do not recurse).
//! Without WskSendMessages (before Windows 8) each call is one WskSendTo of one datagram. Echo
//! pattern: the receive callback counts and checks the replies. Paced by the job's ticket budget
//! (`Job::take_tickets`, one ticket per datagram); a context left idle (no ticket, or its loop's
//! round bound, [`ROUNDS`]) is restarted by the housekeeping tick while the job runs.
//! Everything is allocated when the job starts (control path); nothing on the send or receive
//! path allocates. The job block is counted: one reference for the job itself, dropped by
//! `close_and_free`, and one per send IRP in flight; whoever drops the last frees it, so no
//! context is freed while a send of it may still complete (W70: close cancels pending IRPs and
//! waits for running callbacks leaves the order of the close's and the cancelled sends' completions
//! open).

use core::net::SocketAddr;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use control::protocol::pattern;
use wsk_sys::{
    IoFreeMdl, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT, PIRP, PMDL, PVOID,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, ULONG, WSK_BUF,
    WSK_BUF_LIST, WSK_CLIENT_DATAGRAM_DISPATCH, WSK_DATAGRAM_INDICATION, WSK_EVENT_RECEIVE_FROM,
    WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_SOCKET,
};

use crate::datapath::DataPath;
use crate::kernel::time::wait_until;
use crate::kernel::{irp, pool};
use crate::wsk::addr::{wildcard_for, SockAddrBuf};
use crate::wsk::mdl::{self, build_mdl};
use crate::wsk::{close_sync, open_bound, BoundKind};

/// Send contexts per job at most (each is one batch in flight).
const MAX_CONTEXTS: usize = 64;
/// Sockets per job at most (the control ABI's bound; each flow has at least one context).
const MAX_FLOWS: usize = control::ioctl::MAX_LOAD_FLOWS as usize;
const _: () = assert!(MAX_FLOWS <= MAX_CONTEXTS);
/// Flows of a job that names none (wire value 0): a few, so RSS has something to spread, but
/// never more than the job has send contexts (a flow without one would never send).
const DEFAULT_FLOWS: usize = 4;
/// Datagrams per WskSendMessages call at most: enough that the per-call cost (IRP, completion,
/// job reference) is spread thin, as the served echo's batches are.
pub(crate) const BATCH: usize = 64;
/// Batches one entry into the send loop issues at most. A provider that completes every send
/// inline (loopback, or a fast NIC; wsk-sim's plain mode) would otherwise keep the loop going for
/// as long as the job runs: when the entry is the job's start or the housekeeping tick, that is
/// the driver's system thread, which also runs the tick that ends the job at its deadline, the
/// control requests and unload (an unpaced job's start never returned). Past the bound the
/// context goes idle and the next tick (every few ms) restarts it; a send that pends ends the
/// entry first, so a provider that completes asynchronously never meets the bound.
const ROUNDS: usize = 8;
/// How long the close waits for sends in flight, before and after the close, at least. A job
/// retains no indication, so nothing but its own memory waits on them: past this the last send
/// completion frees the job (and unload waits for every completion routine, C30: no completion
/// routine may still run when the image unloads).
const SEND_DRAIN_MS: u64 = 1000;
/// Bytes of each reply compared with what was sent.
const CHECK_LEN: usize = 64;

struct Send {
    job: *const UdpJob,
    /// The flow (index into the job's sockets) this context sends from.
    flow: usize,
    irp: PIRP,
    /// The batch's WSK_BUF_LIST, chained in order, the last entry's `Next` null: a batch of k
    /// datagrams is the list's last k entries (starts at `BATCH - k`), so nothing is re-linked
    /// while the provider may still read it (W65 gives the list no lifetime: it stays untouched
    /// until the completion).
    entries: [WSK_BUF_LIST; BATCH],
    /// Datagrams in the batch in flight; written by the loop before the call, read by its
    /// completion (the IRP's completion orders the two).
    count: usize,
    /// Reasons to run the send loop: the loop itself, plus a completion that arrived while it
    /// ran (C12: an inline completion only flags more work).
    work: AtomicU32,
    /// No send in flight and the loop left: the housekeeping tick may restart it.
    idle: AtomicBool,
}

pub(crate) struct UdpJob {
    drv: *const DataPath,
    /// One socket per flow; the first `flows` are open once `create` returned.
    sockets: [*mut WSK_SOCKET; MAX_FLOWS],
    flows: usize,
    ctxs: *mut Send,
    n: usize,
    payload: *mut u8,
    payload_mdl: PMDL,
    len: usize,
    remote: SockAddrBuf,
    ctl_irp: PIRP,
    /// 1 for the job itself (dropped by `close_and_free`) + 1 per send IRP in flight; whoever
    /// takes it to zero frees the block.
    io: AtomicU32,
    /// The context the next kick starts with. A paced job's budget is a few datagrams per tick
    /// and the first context started takes them all (a batch takes up to 64 tickets): starting
    /// each kick one context further gives every context, so every flow, its turns.
    turn: AtomicU32,
}

static DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(receive_from_event),
};

impl UdpJob {
    fn drv(&self) -> &DataPath {
        // SAFETY: the driver state outlives its jobs.
        unsafe { &*self.drv }
    }

    /// How many flows and send contexts a job asking for `flows` (0: the default) and
    /// `contexts` gets: both bounded, and never a flow without a context.
    fn shape(flows: usize, contexts: usize) -> (usize, usize) {
        let n = contexts.clamp(1, MAX_CONTEXTS);
        let f = if flows == 0 {
            DEFAULT_FLOWS.min(n)
        } else {
            flows.min(MAX_FLOWS)
        };
        (f, n.max(f))
    }

    /// The flow sockets (each bound to the wildcard address: its own source port), receive
    /// events (echo), contexts. PASSIVE_LEVEL (control path). `flows` and `contexts` as
    /// [`shape`](Self::shape) bounds them.
    ///
    /// # Safety
    /// Captured provider.
    pub(crate) unsafe fn create(
        d: &DataPath,
        remote: SocketAddr,
        flows: usize,
        contexts: usize,
        len: usize,
        echo: bool,
    ) -> Result<*mut UdpJob, NTSTATUS> {
        let (flows, contexts) = Self::shape(flows, contexts);
        let u = pool::new_block(
            UdpJob {
                drv: d,
                sockets: [ptr::null_mut(); MAX_FLOWS],
                flows: 0,
                ctxs: ptr::null_mut(),
                n: 0,
                payload: ptr::null_mut(),
                payload_mdl: ptr::null_mut(),
                len,
                remote: SockAddrBuf::from_socket_addr(remote),
                // Allocated once the block exists (below): an IRP inside a value whose block
                // allocation fails would be dropped unfreed.
                ctl_irp: ptr::null_mut(),
                io: AtomicU32::new(1),
                turn: AtomicU32::new(0),
            },
            pool::TAG_UDP,
        )?;
        // SAFETY: u is ours until the sockets exist.
        if let Err(e) = unsafe { (*u).alloc(contexts, flows) } {
            // SAFETY: never published.
            unsafe { Self::free(u) };
            return Err(e);
        }
        // C26: per-socket callback after bind, for the echo replies only.
        let events: &[u32] = if echo { &[WSK_EVENT_RECEIVE_FROM] } else { &[] };
        for flow in 0..flows {
            // SAFETY: ours; no send before the job is kicked; the receive callback reads only
            // the job's immutable fields.
            let publish = |sock| unsafe { (*u).sockets[flow] = sock };
            // SAFETY: context complete before the socket exists; static dispatch; on failure the
            // socket is closed before this returns. The control IRP is used by one synchronous
            // call at a time (this loop's, then the closes below).
            let opened = unsafe {
                open_bound(
                    &d.provider,
                    BoundKind::Datagram,
                    u.cast(),
                    ptr::addr_of!(DISPATCH).cast(),
                    wildcard_for(remote),
                    (*u).ctl_irp,
                    publish,
                    events,
                )
            };
            match opened {
                // SAFETY: ours, as above.
                Ok(_) => unsafe { (*u).flows = flow + 1 },
                Err(e) => {
                    // SAFETY: no send was ever issued; the flows opened so far close here, each
                    // close complete before the block is freed (C23: the socket context lives
                    // until its close IRP completes).
                    unsafe {
                        for open in 0..(*u).flows {
                            let _ = close_sync((*u).sockets[open], (*u).ctl_irp);
                        }
                        Self::free(u);
                    }
                    return Err(e);
                }
            }
        }
        Ok(u)
    }

    /// Open flows (sockets) of the job.
    pub(crate) fn flows(&self) -> usize {
        self.flows
    }

    fn alloc(&mut self, n: usize, flows: usize) -> Result<(), NTSTATUS> {
        self.ctl_irp = irp::alloc();
        if self.ctl_irp.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        self.payload = pool::alloc(self.len.max(1), pool::TAG_UDP);
        if self.payload.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        // SAFETY: fresh block of len bytes, ours.
        let p = unsafe { core::slice::from_raw_parts_mut(self.payload, self.len.max(1)) };
        pattern::fill(0, p);
        self.payload_mdl = build_mdl(self.payload, self.len.max(1));
        self.ctxs = pool::alloc(n * core::mem::size_of::<Send>(), pool::TAG_UDP).cast();
        if self.payload_mdl.is_null() || self.ctxs.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let me: *const UdpJob = self;
        let buf = WSK_BUF {
            Mdl: self.payload_mdl,
            Offset: 0,
            Length: self.len,
        };
        for i in 0..n {
            let irp = irp::alloc();
            // SAFETY: i < n; the block is ours. Written field by field in place: a context is
            // over 2 KB, too big to build in a kernel stack frame first (and a frame over a page
            // needs a stack probe the image does not import).
            unsafe {
                let ctx = self.ctxs.add(i);
                ptr::addr_of_mut!((*ctx).job).write(me);
                // Round-robin: every flow gets a context (n >= flows), the rest spread evenly.
                ptr::addr_of_mut!((*ctx).flow).write(i % flows);
                ptr::addr_of_mut!((*ctx).irp).write(irp);
                ptr::addr_of_mut!((*ctx).count).write(0);
                ptr::addr_of_mut!((*ctx).work).write(AtomicU32::new(0));
                ptr::addr_of_mut!((*ctx).idle).write(AtomicBool::new(true));
                // Chained in place (the entries do not move from here until freed).
                let list = ptr::addr_of_mut!((*ctx).entries).cast::<WSK_BUF_LIST>();
                for at in 0..BATCH {
                    let next = if at + 1 < BATCH {
                        list.add(at + 1)
                    } else {
                        ptr::null_mut()
                    };
                    list.add(at).write(WSK_BUF_LIST {
                        Next: next,
                        Buffer: buf,
                    });
                }
            }
            let ok = !irp.is_null();
            self.n = i + 1;
            if !ok {
                return Err(STATUS_INSUFFICIENT_RESOURCES);
            }
        }
        Ok(())
    }

    /// Any IRQL <= DISPATCH_LEVEL (the last send completion may do it).
    ///
    /// # Safety
    /// Not registered with WSK any more (or never); no IRP in flight (`io` at zero, or never
    /// issued).
    unsafe fn free(u: *mut UdpJob) {
        // SAFETY: per the caller.
        unsafe {
            let r = &mut *u;
            for i in 0..r.n {
                irp::free((*r.ctxs.add(i)).irp);
            }
            pool::free(r.ctxs.cast(), pool::TAG_UDP);
            if !r.payload_mdl.is_null() {
                IoFreeMdl(r.payload_mdl);
            }
            pool::free(r.payload, pool::TAG_UDP);
            irp::free(r.ctl_irp);
            pool::free_typed(u, pool::TAG_UDP);
        }
    }

    /// Starts every idle context (a context without a ticket goes idle again at once).
    /// PASSIVE_LEVEL (control path at start, housekeeper after).
    pub(crate) fn kick(&self) {
        let first = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        for i in 0..self.n {
            // SAFETY: the index is below n; contexts live until free.
            let s = unsafe { self.ctxs.add((first + i) % self.n) };
            // SAFETY: as above.
            if unsafe { (*s).idle.swap(false, Ordering::SeqCst) } {
                // SAFETY: idle: no send in flight, the loop is ours.
                unsafe {
                    (*s).work.store(1, Ordering::SeqCst);
                    drive(s);
                }
            }
        }
    }

    pub(crate) fn all_idle(&self) -> bool {
        // SAFETY: i < n; contexts live until free.
        (0..self.n).all(|i| unsafe { (*self.ctxs.add(i)).idle.load(Ordering::SeqCst) })
    }

    /// Waits (bounded) for the sends to finish, closes the socket and drops the job's own
    /// reference: the block is freed here, or by the last send completion if one is still to
    /// run. PASSIVE_LEVEL. The caller has made sure no new send starts (job not running) and
    /// that nobody else holds the pointer.
    ///
    /// # Safety
    /// `u` from [`create`](Self::create), closed once.
    pub(crate) unsafe fn close_and_free(u: *mut UdpJob, timeout_ms: u64) {
        // SAFETY: per the caller; the job's own reference keeps u alive until dropped below.
        let r = unsafe { &*u };
        let bound = timeout_ms.max(SEND_DRAIN_MS);
        if !wait_until(bound, || r.io.load(Ordering::SeqCst) == 1) {
            crate::kernel::log::log_err!(
                "udp load job: {} sends still in flight at close after {} ms",
                r.io.load(Ordering::SeqCst).saturating_sub(1),
                bound
            );
        }
        for k in 0..r.flows {
            // SAFETY: no call executing (the job is stopped); the close cancels what is pending.
            // One close at a time on the control IRP (each returns once complete).
            let _ = unsafe { close_sync(r.sockets[k], r.ctl_irp) };
        }
        // W70: the cancelled sends' completions may come after the close's own.
        if !wait_until(bound, || r.io.load(Ordering::SeqCst) == 1) {
            crate::kernel::log::log_err!(
                "udp load job: {} send completions still to run after the close; the last frees the job",
                r.io.load(Ordering::SeqCst).saturating_sub(1)
            );
        }
        // The job's own reference, last use of r.
        if r.io.fetch_sub(1, Ordering::SeqCst) == 1 {
            // SAFETY: closed, no IRP in flight, nobody else holds it.
            unsafe { Self::free(u) };
        }
    }
}

/// The send loop of one context. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// The caller owns the loop (`work` taken from 0 to 1, or idle cleared).
unsafe fn drive(s: *mut Send) {
    // SAFETY: contexts and their job live until the job is freed, after every loop ended.
    let j = unsafe { &*(*s).job };
    let d = j.drv();
    // SAFETY: as above; the flow is fixed at allocation and below `flows`.
    let socket = j.sockets[unsafe { (*s).flow }];
    let (messages, send_to) = {
        // SAFETY: live datagram socket (the job's sockets close only after every loop ended).
        let disp = unsafe { &*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>() };
        (disp.WskSendMessages, disp.WskSendTo)
    };
    let most = if messages.is_some() { BATCH } else { 1 } as u64;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let k = if rounds <= ROUNDS && d.job.sending() && (messages.is_some() || send_to.is_some())
        {
            d.job.take_tickets(most) as usize
        } else {
            0
        };
        if k == 0 {
            // No send in flight: nothing can add work now. The tick restarts an idle context
            // (a new ticket, or the round bound).
            // SAFETY: as above.
            unsafe {
                (*s).work.store(0, Ordering::SeqCst);
                (*s).idle.store(true, Ordering::SeqCst);
            }
            return;
        }
        // This batch's reference on the job block, dropped as its completion's last act.
        j.io.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the context's IRP is idle (the previous batch completed); the entries, the
        // payload and the remote address live in the job until it is freed (W14: buffers of a
        // pending call stay valid until it completes), which this batch's reference holds off.
        unsafe {
            (*s).count = k;
            let head = ptr::addr_of_mut!((*s).entries)
                .cast::<WSK_BUF_LIST>()
                .add(BATCH - k);
            let remote = ptr::addr_of!(j.remote).cast_mut().cast();
            irp::arm((*s).irp, send_done, s.cast());
            let st = if let Some(sm) = messages {
                sm(socket, head, 0, remote, 0, ptr::null_mut(), (*s).irp)
            } else if let Some(st) = send_to {
                st(
                    socket,
                    ptr::addr_of_mut!((*head).Buffer),
                    0,
                    remote,
                    0,
                    ptr::null_mut(),
                    (*s).irp,
                )
            } else {
                // k is 0 without either (above): never reached. The IRP completes through its
                // routine as failed, every count kept.
                irp::fail_unsent((*s).irp, send_done, s.cast());
                STATUS_NOT_SUPPORTED
            };
            // A final status with the IRP never completed (W11: SUCCESS/failure: the IRP is
            // complete; PENDING: it completes later broken): the send finishes here as its
            // completion would. The IRP's status tells: nothing re-arms it before this loop does (a
            // completion that runs while the loop holds `work` only flags work).
            if irp::unfinished((*s).irp, st) {
                irp::complete_unfinished((*s).irp, send_done, s.cast(), st);
            }
        }
        // SAFETY: as above.
        if unsafe { (*s).work.fetch_sub(1, Ordering::SeqCst) } == 1 {
            // Still in flight: its completion continues the loop.
            return;
        }
    }
}

/// WskSendMessages / WskSendTo completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn send_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let s = ctx.cast::<Send>();
    // SAFETY: completed IRP.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: the context's job lives while this send holds its reference.
    let jp = unsafe { (*s).job }.cast_mut();
    // SAFETY: as above.
    let j = unsafe { &*jp };
    let d = j.drv();
    // SAFETY: written by the loop before the call this completes.
    let count = unsafe { (*s).count } as u64;
    if NT_SUCCESS(status) {
        d.job.messages_sent.fetch_add(count, Ordering::Relaxed);
        d.job.bytes_sent.fetch_add(info as u64, Ordering::Relaxed);
    } else {
        // W65: a failed batch says how many bytes went out; whole datagrams of them count.
        if j.len != 0 && info != 0 {
            let whole = (info / j.len) as u64;
            d.job
                .messages_sent
                .fetch_add(whole.min(count), Ordering::Relaxed);
            d.job.bytes_sent.fetch_add(info as u64, Ordering::Relaxed);
        }
        d.job.fail(status);
        d.count(crate::stats::Counter::SendErrors, 1);
    }
    // SAFETY: as above.
    if unsafe { (*s).work.fetch_add(1, Ordering::SeqCst) } == 0 {
        // The issuing loop already left: continue it here (a new send takes its own reference
        // before this one is dropped).
        // SAFETY: the loop is ours now.
        unsafe { drive(s) };
    }
    // This send's reference on the job, the last use of it.
    if j.io.fetch_sub(1, Ordering::SeqCst) == 1 {
        // SAFETY: the close dropped the job's own reference: closed, nothing in flight.
        unsafe { UdpJob::free(jp) };
    }
    irp::routine_return()
}

/// WskReceiveFromEvent (echo replies). IRQL <= DISPATCH_LEVEL. Counts and checks, never
/// retains.
unsafe extern "win64" fn receive_from_event(
    ctx: PVOID,
    _flags: ULONG,
    list: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    // SAFETY: the job registered with WskSocket; lives until after its close completes.
    let j = unsafe { &*ctx.cast::<UdpJob>() };
    let d = j.drv();
    let mut p = list;
    while !p.is_null() {
        // SAFETY: valid list element for this call (W60: a receive-from list: one datagram per
        // entry, valid for the callback).
        let (buf, next) = unsafe { ((*p).Buffer, (*p).Next) };
        p = next;
        let mut ok = buf.Length == j.len;
        let mut off = 0;
        // SAFETY: valid indication buffer; payload is len bytes.
        let _ = unsafe {
            mdl::for_each_chunk(&buf, CHECK_LEN.min(j.len), |c| {
                for (k, b) in c.iter().enumerate() {
                    ok &= *b == pattern::byte((off + k) as u64);
                }
                off += c.len();
            })
        };
        d.job.messages_received.fetch_add(1, Ordering::Relaxed);
        d.job
            .bytes_received
            .fetch_add(buf.Length as u64, Ordering::Relaxed);
        if !ok {
            d.job.verify_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    STATUS_SUCCESS
}
