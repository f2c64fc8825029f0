//! UDP sockets: one datagram socket per configured UDP service.
//!
//! Echo is zero-copy: the indication list is retained (STATUS_PENDING) and each datagram goes
//! back with WskSendTo over its own WSK_BUF; the list is released once the callback and every
//! send have finished (C1 applied to datagrams), and not before the provider has provably
//! taken in the callback's STATUS_PENDING (see `release_parked`). sockperf replies are copied into the send
//! context's small buffer with the rewritten header (the indication is never written). Send
//! contexts come from a per-socket pre-allocated pool; when it is empty the datagram is dropped
//! and counted (never queued, never allocated). A reply is never larger than its request.
//! Before any send a datagram passes AllowedSources, the reflection and loop guard
//! (`logic::udp_guard`: broadcast/multicast flags, special sources, privileged and own-service
//! source ports) and the per-source rate limit (loopback exempt by default); each drop is
//! counted under its reason.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};

use control::config::{Service, MAX_SERVICES};
use control::protocol::sockperf::HEADER_LEN;
use control::protocol::Mode;
use wsk_sys::{
    IoFreeMdl, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT, PIRP, PMDL, PVOID,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_PENDING, STATUS_SUCCESS, ULONG, WSK_BUF,
    WSK_CLIENT_DATAGRAM_DISPATCH, WSK_DATAGRAM_INDICATION, WSK_EVENT_RECEIVE_FROM,
    WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_SOCKET,
};

use crate::driver::Driver;
use crate::kernel::free_list::FreeList;
use crate::kernel::lock::SpinLock;
use crate::kernel::time::{self, wait_until};
use crate::kernel::{irp, pool};
use crate::logic::udp::RateLimiter;
use crate::logic::udp_guard::{self, GuardDrop};
use crate::logic::{copy_at, udp_verdict, UdpVerdict};
use crate::stats::Counter;
use crate::wsk::addr::SockAddrBuf;
use crate::wsk::mdl::{self, build_mdl};
use crate::wsk::{close_sync, disable_event_sync, open_bound, BoundKind};

/// Size of a send context's copy buffer (sockperf replies); larger sockperf datagrams are
/// dropped and counted (udp_drop_too_big).
const COPY_BUF: usize = 2048;

/// The ports of every configured service (TCP and UDP; 0 = empty slot), for the guard's
/// own-port rule. The services list itself is written by the control path while callbacks
/// run, so callbacks read this copy of atomics instead (a datagram racing a reconfiguration
/// may see a mix of the old and new ports, never a torn port).
static SERVICE_PORTS: [AtomicU16; MAX_SERVICES] = [const { AtomicU16::new(0) }; MAX_SERVICES];

/// Publishes the configured services' ports to the UDP guard. PASSIVE_LEVEL (start-up and the
/// control path, which are serialised).
pub(crate) fn publish_service_ports(services: &[Service]) {
    for (i, slot) in SERVICE_PORTS.iter().enumerate() {
        slot.store(services.get(i).map_or(0, |s| s.port), Ordering::Relaxed);
    }
}

fn service_ports() -> impl Iterator<Item = u16> {
    SERVICE_PORTS
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .filter(|&p| p != 0)
}

const fn guard_counter(d: GuardDrop) -> Counter {
    match d {
        GuardDrop::Broadcast => Counter::UdpDropBroadcast,
        GuardDrop::SpecialSource => Counter::UdpDropSpecialSource,
        GuardDrop::PrivilegedPort => Counter::UdpDropPrivilegedPort,
        GuardDrop::ServicePort => Counter::UdpDropServicePort,
    }
}

struct UdpSend {
    sock: *mut UdpSock,
    idx: u32,
    irp: PIRP,
    buf: WSK_BUF,
    remote: SockAddrBuf,
    /// On the first zero-copy context of a list: the list and its reference count
    /// (1 for the callback + 1 per send still running).
    list: *mut WSK_DATAGRAM_INDICATION,
    refs: AtomicU32,
    owner: *mut UdpSend,
    copy: *mut u8,
    copy_mdl: PMDL,
    /// Owner whose list is done and waits to be released (see `release_parked`).
    parked: bool,
    age: u8,
}

struct Inner {
    free: FreeList,
    rate: RateLimiter,
    /// FIFO of parked owners (indices), oldest first: ages only grow, so the eligible ones are
    /// a prefix. Capacity n (an owner is parked at most once at a time).
    parked_q: *mut u32,
    parked_head: usize,
    parked: usize,
}

pub(crate) struct UdpSock {
    socket: *mut WSK_SOCKET,
    drv: *const Driver,
    pub(crate) service: Service,
    inner: SpinLock<Inner>,
    ctxs: *mut UdpSend,
    n: usize,
    closing: AtomicBool,
    /// Set by a NULL datagram list (W60): the socket no longer works.
    pub(crate) dead: AtomicBool,
    /// Pre-allocated for the callback disable and the close (teardown never allocates).
    ctl_irp: PIRP,
    /// Per-service counter slot (`Driver::stats_slots`).
    stats_slot: usize,
}

static DGRAM_DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(receive_from_event),
};

impl UdpSock {
    fn drv(&self) -> &Driver {
        // SAFETY: the driver state outlives its sockets.
        unsafe { &*self.drv }
    }

    /// PASSIVE_LEVEL (start-up).
    ///
    /// # Safety
    /// `drv` captured, at its final address.
    pub(crate) unsafe fn create(
        drv: &mut Driver,
        service: &Service,
        stats_slot: usize,
    ) -> Result<*mut UdpSock, NTSTATUS> {
        let n = (drv.config.limits.udp_send_contexts as usize).max(1);
        let u = pool::new_block(
            UdpSock {
                socket: ptr::null_mut(),
                drv,
                service: *service,
                inner: SpinLock::new(Inner {
                    free: FreeList::empty(),
                    rate: RateLimiter::new(drv.config.limits.udp_rate_per_source, drv.perf_freq),
                    parked_q: ptr::null_mut(),
                    parked_head: 0,
                    parked: 0,
                }),
                ctxs: ptr::null_mut(),
                n: 0,
                closing: AtomicBool::new(false),
                dead: AtomicBool::new(false),
                ctl_irp: irp::alloc(),
                stats_slot,
            },
            pool::TAG_UDP,
        )?;
        // SAFETY: u is ours until the socket exists.
        if let Err(e) = unsafe { (*u).alloc_ctxs(n) } {
            // SAFETY: never published.
            unsafe { Self::free(u) };
            return Err(e);
        }
        let local = core::net::SocketAddr::new(service.bind, service.port);
        // SAFETY: ours; no callback before the events are enabled.
        let publish = |sock| unsafe { (*u).socket = sock };
        // SAFETY: context complete before the socket exists; static dispatch; on failure the
        // socket is closed before this returns.
        let opened = unsafe {
            open_bound(
                &drv.provider,
                BoundKind::Datagram,
                u.cast(),
                ptr::addr_of!(DGRAM_DISPATCH).cast(),
                local,
                (*u).ctl_irp,
                publish,
                // C26: per-socket callback after bind.
                &[WSK_EVENT_RECEIVE_FROM],
            )
        };
        if let Err(e) = opened {
            // SAFETY: no socket left (C23: its close completed); never published.
            unsafe { Self::free(u) };
            return Err(e);
        }
        Ok(u)
    }

    fn alloc_ctxs(&mut self, n: usize) -> Result<(), NTSTATUS> {
        if self.ctl_irp.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        self.ctxs = pool::alloc(n * core::mem::size_of::<UdpSend>(), pool::TAG_UDP).cast();
        self.inner.get_mut().free.alloc(n, pool::TAG_UDP)?;
        let q: *mut u32 = pool::alloc(n * 4, pool::TAG_UDP).cast();
        self.inner.get_mut().parked_q = q;
        if self.ctxs.is_null() || q.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let me: *mut UdpSock = self;
        for i in 0..n {
            let copy = pool::alloc(COPY_BUF, pool::TAG_UDP);
            let ctx = UdpSend {
                sock: me,
                idx: i as u32,
                irp: irp::alloc(),
                buf: WSK_BUF {
                    Mdl: ptr::null_mut(),
                    Offset: 0,
                    Length: 0,
                },
                remote: SockAddrBuf::zeroed(),
                list: ptr::null_mut(),
                refs: AtomicU32::new(0),
                owner: ptr::null_mut(),
                copy,
                copy_mdl: if copy.is_null() {
                    ptr::null_mut()
                } else {
                    build_mdl(copy, COPY_BUF)
                },
                parked: false,
                age: 0,
            };
            let ok = !ctx.irp.is_null() && !ctx.copy_mdl.is_null();
            // SAFETY: i < n.
            unsafe { ptr::write(self.ctxs.add(i), ctx) };
            self.n = i + 1;
            self.inner.get_mut().free.push(i);
            if !ok {
                return Err(STATUS_INSUFFICIENT_RESOURCES);
            }
        }
        Ok(())
    }

    /// # Safety
    /// `u` not registered with WSK any more (or never).
    unsafe fn free(u: *mut UdpSock) {
        // SAFETY: per the caller.
        unsafe {
            let r = &mut *u;
            for i in 0..r.n {
                let c = &mut *r.ctxs.add(i);
                irp::free(c.irp);
                if !c.copy_mdl.is_null() {
                    IoFreeMdl(c.copy_mdl);
                }
                pool::free(c.copy, pool::TAG_UDP);
            }
            pool::free(r.ctxs.cast(), pool::TAG_UDP);
            r.inner.get_mut().free.free();
            pool::free(r.inner.get_mut().parked_q.cast(), pool::TAG_UDP);
            irp::free(r.ctl_irp);
            pool::free_typed(u, pool::TAG_UDP);
        }
    }

    fn get(&self) -> Option<*mut UdpSend> {
        let i = self.inner.lock().free.pop()?;
        // SAFETY: free indices are < n.
        Some(unsafe { self.ctxs.add(i) })
    }

    fn put(&self, c: *mut UdpSend) {
        let mut g = self.inner.lock();
        // SAFETY: c is one of ours; the lock orders these writes before its next get.
        let idx = unsafe {
            (*c).owner = ptr::null_mut();
            (*c).list = ptr::null_mut();
            (*c).idx
        };
        g.free.push(idx as usize);
    }

    /// Releases finished lists: all of them from inside a later receive callback (callbacks
    /// of a socket are serialised, so the one that returned STATUS_PENDING for them is over),
    /// or those that aged `min_age` housekeeping ticks. A release from the send completion
    /// itself could race with the callback's PENDING return reaching the provider (C1).
    fn release_parked(&self, min_age: u8) {
        loop {
            let found = {
                let mut g = self.inner.lock();
                if g.parked == 0 {
                    return;
                }
                // SAFETY: parked_q has n entries; the head is a parked owner of ours.
                let c = unsafe { self.ctxs.add(*g.parked_q.add(g.parked_head) as usize) };
                // SAFETY: fields guarded by the lock.
                if unsafe { (*c).age } < min_age {
                    return;
                }
                g.parked_head = (g.parked_head + 1) % self.n.max(1);
                g.parked -= 1;
                // SAFETY: as above.
                unsafe { (*c).parked = false };
                c
            };
            // SAFETY: the list was retained with STATUS_PENDING; released once (C3).
            unsafe {
                let list = (*found).list;
                let disp = &*(*self.socket)
                    .Dispatch
                    .cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
                if let Some(rel) = disp.WskRelease {
                    rel(self.socket, list);
                }
            }
            self.put(found);
        }
    }

    /// Housekeeping tick (PASSIVE_LEVEL).
    pub(crate) fn kick(&self) {
        {
            let g = self.inner.lock();
            for k in 0..g.parked {
                // SAFETY: queue entries are parked owners; guarded by the lock.
                unsafe {
                    let c = self
                        .ctxs
                        .add(*g.parked_q.add((g.parked_head + k) % self.n.max(1)) as usize);
                    (*c).age = (*c).age.saturating_add(1);
                }
            }
        }
        self.release_parked(2);
    }

    fn free_count(&self) -> usize {
        self.inner.lock().free.len()
    }

    /// Stops the callback, waits (bounded) for sends in flight, closes. PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `u` from create, called once.
    pub(crate) unsafe fn close_and_free(u: *mut UdpSock, timeout_ms: u64) {
        // SAFETY: per the caller.
        let r = unsafe { &*u };
        r.closing.store(true, Ordering::SeqCst);
        // Disable the callback and wait until any running invocation has returned (W33), so
        // no new send starts after the in-flight count is checked.
        // SAFETY: live socket; the control IRP is idle (teardown is serialised).
        let _ = unsafe { disable_event_sync(r.socket, WSK_EVENT_RECEIVE_FROM, r.ctl_irp) };
        // Retained lists are released by send completions; all of them before the close (C4).
        if !wait_until(timeout_ms.max(1000), || {
            r.kick();
            r.free_count() == r.n
        }) {
            crate::kernel::log::log_err!(
                "udp port {}: sends still in flight at close",
                r.service.port
            );
        }
        // SAFETY: no call executing; u is freed after the close completed (C23).
        unsafe {
            let _ = close_sync(r.socket, r.ctl_irp);
            Self::free(u);
        }
    }
}

/// Reads up to 14 leading bytes of a datagram.
///
/// # Safety
/// Valid WSK_BUF for the call.
unsafe fn head_of(buf: &WSK_BUF) -> ([u8; HEADER_LEN], usize) {
    let mut h = [0u8; HEADER_LEN];
    let mut n = 0;
    // SAFETY: per the caller.
    let _ = unsafe {
        mdl::for_each_chunk(buf, HEADER_LEN, |s| {
            n += copy_at(&mut h, n, s);
        })
    };
    (h, n)
}

/// WskReceiveFromEvent. IRQL <= DISPATCH_LEVEL (C13); walks the whole list.
/// Returns SUCCESS or PENDING only (C32); never DATA_NOT_ACCEPTED (that would disable a
/// per-socket callback, C6): overload is handled by dropping.
#[allow(clippy::many_single_char_names)] // socket, list element, context, counts: one loop
unsafe extern "win64" fn receive_from_event(
    ctx: PVOID,
    flags: ULONG,
    list: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    // SAFETY: the UdpSock registered with WskSocket; lives until after its close completes.
    let u = unsafe { &*ctx.cast::<UdpSock>() };
    let drv = u.drv();
    if list.is_null() {
        // W60/C7: the socket no longer works: the housekeeper closes and re-creates it.
        drv.count_service(u.stats_slot, Counter::DeadSockets, 1);
        u.dead.store(true, Ordering::SeqCst);
        return STATUS_SUCCESS;
    }
    let disp = {
        // SAFETY: live datagram socket.
        unsafe {
            &*(*u.socket)
                .Dispatch
                .cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()
        }
    };
    let Some(send_to) = disp.WskSendTo else {
        return STATUS_SUCCESS;
    };
    // Lists finished since the previous callback can be given back now.
    u.release_parked(0);
    let closing = u.closing.load(Ordering::Relaxed);
    let mut owner: *mut UdpSend = ptr::null_mut();
    let mut d = list;
    while !d.is_null() {
        // SAFETY: valid list element for the duration of the callback (W60).
        let (buf, remote_sa, next) = unsafe { ((*d).Buffer, (*d).RemoteAddress, (*d).Next) };
        d = next;
        let len = buf.Length;
        drv.count_service(u.stats_slot, Counter::UdpDatagramsIn, 1);
        drv.count_service(u.stats_slot, Counter::UdpBytesIn, len as u64);
        if closing {
            continue;
        }
        // SAFETY: provider SOCKADDR.
        let Some(remote) = (unsafe { SockAddrBuf::copy_from(remote_sa) }) else {
            drv.count_service(u.stats_slot, Counter::UdpDropFiltered, 1);
            continue;
        };
        let Some(peer) = remote.to_socket_addr() else {
            continue;
        };
        if !drv.config.limits.source_allowed(peer.ip()) {
            drv.count_service(u.stats_slot, Counter::UdpDropFiltered, 1);
            continue;
        }
        // Reflection and loop guard; MSG_BCAST/MSG_MCAST in Flags describe the whole list (W60).
        let guard = drv.config.limits.udp_guard;
        if let Some(why) = udp_guard::check(guard, flags, peer, service_ports()) {
            drv.count_service(u.stats_slot, guard_counter(why), 1);
            continue;
        }
        if udp_guard::rate_limited_source(guard, peer.ip())
            && !u.inner.lock().rate.allow(&peer.ip(), time::now())
        {
            drv.count_service(u.stats_slot, Counter::UdpDropRate, 1);
            continue;
        }
        // Only sockperf looks at the bytes (its header).
        let (head, hn) = if u.service.mode == Mode::Sockperf {
            // SAFETY: valid buffer.
            unsafe { head_of(&buf) }
        } else {
            ([0u8; HEADER_LEN], 0)
        };
        let verdict = udp_verdict(u.service.mode, head.get(..hn).unwrap_or(&[]), len);
        if verdict == UdpVerdict::Consume {
            continue;
        }
        if verdict == UdpVerdict::Drop {
            if u.service.mode != Mode::Discard {
                drv.count_service(u.stats_slot, Counter::UdpDropService, 1);
            }
            continue;
        }
        if let UdpVerdict::SockperfReply(_) = verdict {
            if len > COPY_BUF {
                drv.count_service(u.stats_slot, Counter::UdpDropTooBig, 1);
                continue;
            }
        }
        let Some(c) = u.get() else {
            drv.count_service(u.stats_slot, Counter::UdpDropNoContext, 1);
            continue;
        };
        // SAFETY: c is ours until its send completes.
        let cr = unsafe { &mut *c };
        cr.remote = remote;
        match verdict {
            UdpVerdict::Echo => {
                if owner.is_null() {
                    owner = c;
                    cr.list = list;
                    // The callback's own reference (C1).
                    cr.refs.store(1, Ordering::SeqCst);
                }
                // SAFETY: owner is a context of ours kept until refs reach 0.
                unsafe { (*owner).refs.fetch_add(1, Ordering::SeqCst) };
                cr.owner = owner;
                cr.buf = buf;
            }
            UdpVerdict::SockperfReply(h) => {
                // SAFETY: copy buffer of COPY_BUF >= len bytes.
                let dst = unsafe { core::slice::from_raw_parts_mut(cr.copy, COPY_BUF) };
                let mut k = 0;
                // SAFETY: valid buffer.
                let _ = unsafe {
                    mdl::for_each_chunk(&buf, len, |s| {
                        k += copy_at(dst, k, s);
                    })
                };
                let mut hb = [0u8; HEADER_LEN];
                h.write(&mut hb);
                let _ = copy_at(dst, 0, &hb);
                cr.owner = ptr::null_mut();
                cr.buf = WSK_BUF {
                    Mdl: cr.copy_mdl,
                    Offset: 0,
                    Length: k,
                };
            }
            UdpVerdict::Drop | UdpVerdict::Consume => {
                // Filtered above; never sent.
                u.put(c);
                continue;
            }
        }
        // SAFETY: the context's IRP is idle; buf/remote live in the context until completion.
        unsafe {
            irp::arm(cr.irp, send_done, c.cast());
            send_to(
                u.socket,
                &raw mut cr.buf,
                0,
                cr.remote.as_sockaddr(),
                0,
                ptr::null_mut(),
                cr.irp,
            );
        }
    }
    if owner.is_null() {
        return STATUS_SUCCESS;
    }
    // SAFETY: owner stays ours until its count reaches zero.
    if unsafe { (*owner).refs.fetch_sub(1, Ordering::SeqCst) } == 1 {
        // Every send already finished: nothing uses the list, hand it straight back.
        u.put(owner);
        STATUS_SUCCESS
    } else {
        STATUS_PENDING
    }
}

/// WskSendTo completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn send_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<UdpSend>();
    // SAFETY: armed context; its socket lives until every context is back.
    let u = unsafe { &*(*c).sock };
    let drv = u.drv();
    // SAFETY: completed IRP.
    let (status, info) = unsafe { irp::result(irp) };
    if NT_SUCCESS(status) {
        drv.count_service(u.stats_slot, Counter::UdpDatagramsOut, 1);
        drv.count_service(u.stats_slot, Counter::UdpBytesOut, info as u64);
    } else {
        drv.count_service(u.stats_slot, Counter::SendErrors, 1);
    }
    // SAFETY: c is ours until put.
    let owner = unsafe { (*c).owner };
    if owner != c {
        u.put(c);
    }
    // SAFETY: owner alive until its count reaches zero.
    if !owner.is_null() && unsafe { (*owner).refs.fetch_sub(1, Ordering::SeqCst) } == 1 {
        // Parked, released by the next callback or the housekeeper (see release_parked).
        let mut g = u.inner.lock();
        // SAFETY: owner is ours until released; fields guarded by the lock; the queue has room
        // for every context.
        unsafe {
            (*owner).parked = true;
            (*owner).age = 0;
            let tail = (g.parked_head + g.parked) % u.n.max(1);
            *g.parked_q.add(tail) = (*owner).idx;
        }
        g.parked += 1;
    }
    irp::routine_return()
}

#[cfg(test)]
mod tests {
    #[test]
    fn guard_flags_are_wsk_sys_flags() {
        assert_eq!(control::udp_guard::MSG_BCAST, wsk_sys::MSG_BCAST);
        assert_eq!(control::udp_guard::MSG_MCAST, wsk_sys::MSG_MCAST);
    }
}
