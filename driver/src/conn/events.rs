//! The connection callbacks WSK calls (WskReceiveEvent, WskDisconnectEvent,
//! WskSendBacklogEvent) at up to DISPATCH_LEVEL, and the dispatch table that names them.

use control::config::Limit;
use core::ptr;
use core::sync::atomic::Ordering;

use wsk_sys::{
    MdlMappingNoExecute, MmGetSystemAddressForMdlSafe, NormalPagePriority, NTSTATUS, PVOID, SIZE_T,
    STATUS_DATA_NOT_ACCEPTED, STATUS_PENDING, STATUS_SUCCESS, ULONG,
    WSK_CLIENT_CONNECTION_DISPATCH, WSK_DATA_INDICATION, WSK_FLAG_ABORTIVE, WSK_FLAG_RELEASE_ASAP,
};

use crate::datapath::DataPath;
use crate::logic::tcp::{self, RecvDecision, MAX_SLOTS};
use crate::stats::Counter;
use crate::wsk::mdl::{self};

use super::pump::{nothing_to_pump, pump_in_callback, pump_locked, pump_queued_in_callback};
use super::Conn;
use crate::kernel::lock::SpinGuard;
use crate::logic::tcp::TcpState;

pub(crate) static CONN_DISPATCH: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive_event),
    WskDisconnectEvent: Some(disconnect_event),
    WskSendBacklogEvent: Some(send_backlog_event),
};

pub(crate) fn dispatch() -> *const WSK_CLIENT_CONNECTION_DISPATCH {
    ptr::addr_of!(CONN_DISPATCH)
}

/// WskReceiveEvent. IRQL <= DISPATCH_LEVEL (C13: every callback must be DISPATCH-safe). Serialised
/// per socket by WSK (W45: receive events are serialised per socket).
/// Returns only SUCCESS, PENDING or DATA_NOT_ACCEPTED (C32: return only documented statuses from
/// callbacks).
///
/// One critical section from the decision to the return, the lock dropped only around the WSK
/// calls the pump makes and around a copy into the ring: the decision, the sends, the
/// callback's reference and its drop are recorded under the lock the pump and every releaser
/// take, without taking it again between them.
unsafe extern "win64" fn receive_event(
    ctx: PVOID,
    flags: ULONG,
    ind: *mut WSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: the registered context; live until the close completes (W70: close cancels pending
    // IRPs and waits for running callbacks).
    let r = unsafe { &*c };
    // First act, before any kernel call: a disconnect event that overlaps this callback from
    // here on holds our FIN back until the bytes indicated here are echoed (G23: a graceful
    // disconnect event may overlap a receive event).
    r.rx_entered.store(true, Ordering::SeqCst);
    // SAFETY: forwarded.
    let (status, mut state, idle) =
        unsafe { receive(c, r, flags, ind, bytes_indicated, bytes_accepted) };
    // The callback's last act: it drops its reference on the lists it retained (C1: hold a
    // zero-copy send's indication until both the send and the callback are done). Nothing is
    // released on this thread after it: the provider has not seen our STATUS_PENDING yet.
    // Another CPU may release them between the unlock below and the return (G22: a retained list
    // may be released from another thread before the callback's return is seen).
    // The context cannot be recycled under us: the close waits for running callbacks (W70).
    let tick = if idle {
        state.needs_tick_when_idle()
    } else {
        state.needs_tick()
    };
    if tick {
        // Lists this callback retained go back at the next pump or tick: on the attention list
        // first (inside the connection lock, the lock order everywhere), so that dropping the
        // reference below stays the callback's last act.
        r.drv().conns.attend(r);
    }
    // The reference is dropped under the lock every releaser takes: no release can reach the
    // provider before this unlock, and nothing of this callback enters the kernel after it.
    state.rx_callback_end();
    r.rx_entered.store(false, Ordering::SeqCst);
    drop(state);
    status
}

/// The callback's work: returns its status with the connection's lock held, for the
/// callback's last act, and whether `TcpState::idle` was true in that critical section
/// (false: not asked).
///
/// # Safety
/// Called by `receive_event` only, `r` being `c`, with the callback's arguments.
unsafe fn receive(
    c: *mut Conn,
    r: &Conn,
    flags: ULONG,
    ind: *mut WSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> (NTSTATUS, SpinGuard<'_, TcpState>, bool) {
    let drv = r.drv();
    // Read once for the callback's counters (and the sends its pump issues).
    let cpu = DataPath::cpu();
    if ind.is_null() {
        // C7: a NULL indication means the socket is dead: close it/W52: the socket no longer works
        // (not EOF): close it now.
        drv.count_service_at(cpu, r.stats_slot, Counter::DeadSockets, 1);
        let mut state = r.state.lock();
        state.abort();
        // SAFETY: the receive callback of c's socket, its lock held by `state`.
        return (
            STATUS_SUCCESS,
            unsafe { pump_in_callback(c, state, cpu) }.0,
            false,
        );
    }
    // The entries and their total (zero-copy sends each entry from its own slot, so a list of
    // more entries than slots takes the copy path). The entries' lengths are gathered only for
    // a list of several (one entry is the common case and needs none).
    // SAFETY: a valid list element for this call (W51: the indication list is valid for the
    // callback).
    let (entries, sum) = if unsafe { (*ind).Next }.is_null() {
        // One entry (the common case): no walk.
        // SAFETY: as above.
        (1usize, unsafe { (*ind).Buffer.Length })
    } else {
        let mut entries = 0usize;
        let mut sum = 0usize;
        let mut entry = ind;
        while !entry.is_null() {
            // SAFETY: as above, each element of the list.
            unsafe {
                sum = sum.saturating_add((*entry).Buffer.Length);
                entry = (*entry).Next;
            }
            entries += 1;
        }
        (entries, sum)
    };
    let zc_ok = entries <= MAX_SLOTS
        && flags & WSK_FLAG_RELEASE_ASAP == 0
        && drv.live.on(Limit::ZeroCopy)
        && sum == bytes_indicated;
    // A live limit (config set): read for every indication, not once at attach.
    let per_conn_budget = drv.live.get(Limit::MaxRetainedPerConn) as usize;
    let mut state = r.state.lock();
    // Lists retained by earlier callbacks whose sends are done go back first (this callback
    // started, so theirs have returned, W45): their slots are free for this indication.
    if state.callback_begin() {
        // SAFETY: the receive callback of c's socket, its lock held by `state`.
        state = unsafe { pump_in_callback(c, state, cpu) }.0;
    }
    state.set_per_conn_budget(per_conn_budget);
    let decision = if zc_ok && entries == 1 {
        // One entry (the common case): its length is bytes_indicated (zc_ok checked the sum).
        state.on_receive_one(bytes_indicated, true, &drv.budget)
    } else if zc_ok {
        // SAFETY: the list walked above, valid for this call (W51).
        let lens = unsafe { entry_lens(ind) };
        state.on_receive_list(lens.get(..entries).unwrap_or(&[]), true, &drv.budget)
    } else {
        state.on_receive(bytes_indicated, false, &drv.budget)
    };
    match decision {
        RecvDecision::ZeroCopy { slot } => {
            // Each entry's slot learns its entry; the head's is the list WskRelease is given.
            // Published under the lock: the pump reads them when it issues these slots. The
            // list's slots, lowest first, are its entries in order (TcpState::group_mask).
            let mut group = state.group_mask(slot);
            let mut entry = ind;
            if entries == 1 {
                // One entry: the list is its head slot alone (on_receive_one).
                // SAFETY: the slot was just reserved for this callback.
                unsafe { (*ptr::addr_of_mut!((*c).slots[slot % MAX_SLOTS])).indication = ind };
                group = 0;
            }
            while group != 0 && !entry.is_null() {
                let g = group.trailing_zeros() as usize;
                group &= group - 1;
                // SAFETY: the slots were just reserved for this callback; `entry` walks the same
                // list as above, one entry per slot.
                unsafe {
                    (*ptr::addr_of_mut!((*c).slots[g % MAX_SLOTS])).indication = entry;
                    entry = (*entry).Next;
                }
            }
            drv.count_service_at(
                cpu,
                r.stats_slot,
                Counter::TcpBytesIn,
                bytes_indicated as u64,
            );
            // SAFETY: the receive callback of c's socket, its lock held by `state`; the send
            // just queued is the pump's work.
            state = unsafe { pump_queued_in_callback(c, state, cpu) }.0;
            // C1: the callback's reference goes last; PENDING only if the send still uses it.
            let retained = state.callback_done(slot, &drv.budget);
            // The pump may owe a release now. Asked inline: the answer (usually idle) also
            // tells the callback's end which attention question is left.
            // SAFETY: the receive callback of c's socket, its lock held by `state`.
            let mut idle = unsafe { nothing_to_pump(c, &state) };
            if !idle {
                // SAFETY: as above.
                (state, idle) = unsafe { pump_in_callback(c, state, cpu) };
            }
            let status = if retained {
                STATUS_PENDING
            } else {
                STATUS_SUCCESS
            };
            (status, state, idle)
        }
        RecvDecision::NotAccepted => {
            drv.count_service_at(cpu, r.stats_slot, Counter::RxBackpressure, 1);
            (STATUS_DATA_NOT_ACCEPTED, state, false)
        }
        RecvDecision::Drop => {
            drop(state);
            drv.count_service_at(
                cpu,
                r.stats_slot,
                Counter::TcpBytesIn,
                bytes_indicated as u64,
            );
            if let Some(client) = r.client {
                // SAFETY: list valid for this call.
                unsafe { (client.received)(c, ind, bytes_indicated) };
            }
            (STATUS_SUCCESS, r.state.lock(), false)
        }
        RecvDecision::Copy { n } => {
            // The ring's free regions beyond the tail are the receive callback's until it
            // commits them: located under the lock, filled without it (or, small, with it).
            let plan = CopyPlan {
                mode: state.mode,
                cap: state.ring.capacity(),
                regions: state
                    .ring
                    .write_regions((n + state.copy_slack()).min(state.ring.free())),
            };
            // A small echo is copied without leaving the critical section: a copy of at most
            // COPY_UNDER_LOCK bytes holds the lock no longer than dropping and taking it again
            // would cost.
            let (copied, written, mut state) =
                if plan.mode != tcp::Mode::Sockperf && n <= COPY_UNDER_LOCK {
                    let mut w = RingWriter::new(r.ring, plan.cap, plan.regions);
                    // SAFETY: list valid for this call; n <= bytes indicated; the regions are
                    // beyond the ring's tail, written by no one else while the lock is held.
                    let ok = unsafe { copy_echo(ind, n, &mut w) };
                    (ok && !w.overrun, w.written, state)
                } else {
                    drop(state);
                    // SAFETY: list valid for this call; n <= bytes indicated; the regions are
                    // ours (CopyPlan).
                    let (copied, written) = unsafe { copy_in(r, ind, n, plan) };
                    (copied, written, r.state.lock())
                };
            // Only what was taken counts: a partial accept's rest is indicated again later.
            drv.count2_service_at(
                cpu,
                r.stats_slot,
                (Counter::TcpBytesIn, n as u64),
                (Counter::CopyBytes, n as u64),
            );
            let ok = state.ring.commit(written) && copied;
            if !ok {
                drv.count_service_at(cpu, r.stats_slot, Counter::ProtocolErrors, 1);
                state.abort();
            }
            // `idle`: the pump's last question was answered by TcpState::idle, in this
            // critical section (the callback's end then asks the narrower attention question).
            let idle;
            (state, idle) = if !ok || written > 0 {
                // Bytes committed to the ring are queued for a send, an abort is teardown
                // work: TcpState::idle is false either way, so the pump is entered unasked.
                // SAFETY: the receive callback of c's socket, its lock held by `state`.
                unsafe { pump_queued_in_callback(c, state, cpu) }
            } else {
                // SAFETY: as above.
                unsafe { pump_in_callback(c, state, cpu) }
            };
            if n < bytes_indicated && ok {
                // Partial accept: indications resume after our zero-length WskReceive (W54:
                // BytesAccepted below BytesIndicated: partial, indications stop, C5: after a
                // partial or refused indication, post a WskReceive).
                drv.count_service_at(cpu, r.stats_slot, Counter::RxBackpressure, 1);
                // SAFETY: out-parameter of this call.
                unsafe { *bytes_accepted = n };
            }
            (STATUS_SUCCESS, state, idle)
        }
    }
}

/// The largest echo copy made under the connection's lock (see the receive callback's Copy
/// arm): a message of this size or less is copied in the critical section that decided it.
const COPY_UNDER_LOCK: usize = 1024;

/// The lengths of the first `MAX_SLOTS` entries of the list `ind`, in list order.
///
/// # Safety
/// `ind` is a valid indication list for this call (W51).
unsafe fn entry_lens(mut ind: *mut WSK_DATA_INDICATION) -> [usize; MAX_SLOTS] {
    let mut lens = [0usize; MAX_SLOTS];
    for l in &mut lens {
        if ind.is_null() {
            break;
        }
        // SAFETY: per the caller.
        unsafe {
            *l = (*ind).Buffer.Length;
            ind = (*ind).Next;
        }
    }
    lens
}

/// Where a copy goes: the ring's free regions beyond its tail (offset, length), read under the
/// lock by the receive callback, which alone writes there until it commits.
#[derive(Clone, Copy)]
struct CopyPlan {
    mode: tcp::Mode,
    cap: usize,
    regions: [(usize, usize); 2],
}

/// Copies the first `n` indicated bytes into the ring regions of `plan` (echo) or through the
/// sockperf framer (reply stream, never longer than its input). Returns whether the copy
/// succeeded (false on a mapping failure or a sockperf framing error) and the bytes written,
/// for the caller to commit under the lock.
///
/// # Safety
/// Called from the receive callback only (framer and ring tail are its alone), `n` <= ring free.
#[inline]
unsafe fn copy_in(
    r: &Conn,
    mut ind: *mut WSK_DATA_INDICATION,
    n: usize,
    plan: CopyPlan,
) -> (bool, usize) {
    let CopyPlan { mode, cap, regions } = plan;
    // SAFETY: only the (serialised) receive callback touches the framer.
    let framer = unsafe { &mut *r.framer.get() };
    let mut w = RingWriter::new(r.ring, cap, regions);
    if mode != tcp::Mode::Sockperf {
        // SAFETY: per the caller.
        let ok = unsafe { copy_echo(ind, n, &mut w) };
        return (ok && !w.overrun, w.written);
    }
    let mut left = n;
    let mut ok = true;
    while left > 0 && !ind.is_null() {
        // SAFETY: valid list element for this call.
        let buf = unsafe { &(*ind).Buffer };
        // SAFETY: valid MDL chain (W51); the regions are the callback's (CopyPlan).
        let res = unsafe {
            mdl::for_each_chunk(buf, left, |chunk| {
                if framer.feed(chunk, &mut |s: &[u8]| w.put(s)).is_err() {
                    ok = false;
                }
            })
        };
        match res {
            Some(k) => left -= k,
            None => return (false, w.written),
        }
        // SAFETY: as above.
        ind = unsafe { (*ind).Next };
    }
    (ok && !w.overrun, w.written)
}

/// The echo's copy: the first `n` bytes of the list `ind` into `w`, chunk by chunk, each
/// chunk's MDL mapped as `mdl::for_each_chunk` does (C35: the whole chain, the Offset in the
/// first MDL only, a failed mapping is an error). False on a mapping failure or an MDL chain
/// shorter than its WSK_BUF says.
///
/// A loop of its own over the list's MDLs, with the writer's cursor in locals: a chunk that
/// fits the current region (all but the one that reaches the ring's end) is one memcpy and
/// two additions; the writer is synchronised only around the rare wrap and at the end.
/// Not inlined: as its own small function the loop keeps its values in registers across the
/// memcpy calls; inlined into the callback, or walking through `mdl::for_each_chunk`'s
/// closure into `RingWriter::put`, they were spilled and reloaded around every call (about
/// 46 instructions a chunk; the common 64 B message comes in one to three chunks).
///
/// # Safety
/// As [`copy_in`]; `ind` is valid for this call (W51).
#[inline(never)]
unsafe fn copy_echo(mut ind: *mut WSK_DATA_INDICATION, n: usize, w: &mut RingWriter) -> bool {
    let (mut at, mut room) = (w.at, w.room);
    let mut left = n;
    let mut ok = true;
    'list: while left > 0 && !ind.is_null() {
        // SAFETY: valid list element for this call (W51).
        let (mut m, mut off, mut want, next) = unsafe {
            let b = &(*ind).Buffer;
            (b.Mdl, b.Offset as usize, b.Length.min(left), (*ind).Next)
        };
        left -= want;
        while want > 0 {
            if m.is_null() {
                ok = false;
                break 'list;
            }
            // SAFETY: m is an MDL of the entry's chain (W51: the indication list is valid for the
            // callback, W75: a WSK_BUF's Offset lies in its first MDL), mapped or mappable.
            let (va, count, after) = unsafe {
                (
                    MmGetSystemAddressForMdlSafe(m, NormalPagePriority | MdlMappingNoExecute),
                    (*m).ByteCount as usize,
                    (*m).Next,
                )
            };
            if va.is_null() {
                ok = false;
                break 'list;
            }
            if off < count {
                let k = (count - off).min(want);
                // SAFETY: va+off lies within the MDL's described bytes.
                let src = unsafe { va.cast::<u8>().add(off) };
                if k <= room {
                    // SAFETY: [at, at+k) lies in the writer's current region (k <= room; the
                    // region was checked against the ring by `RingWriter::new`) and is the
                    // receive callback's until it commits; the source is k bytes of the MDL's
                    // described bytes, which never overlap the ring.
                    unsafe { core::ptr::copy_nonoverlapping(src, at, k) };
                    at = at.wrapping_add(k);
                    room -= k;
                } else {
                    // Crosses the region's end: the general writer, synchronised both ways
                    // (`written` counts the fast path's bytes since the last synchronisation
                    // as the distance the cursor moved in its region).
                    w.written += (at as usize).wrapping_sub(w.at as usize);
                    (w.at, w.room) = (at, room);
                    // SAFETY: as above, k bytes of the MDL's described bytes.
                    w.put(unsafe { core::slice::from_raw_parts(src, k) });
                    (at, room) = (w.at, w.room);
                }
                want -= k;
                off = 0;
            } else {
                off -= count;
            }
            m = after;
        }
        ind = next;
    }
    w.written += (at as usize).wrapping_sub(w.at as usize);
    (w.at, w.room) = (at, room);
    ok
}

/// Fills the ring's free regions beyond its tail, in order (a copy's target, see
/// [`CopyPlan`]). More bytes than the regions hold cannot happen (the reply stream is never
/// longer than its input plus one header of slack); if it did, the rest is dropped and
/// `overrun` set (the caller aborts and counts the connection), never a panic.
///
/// The regions are checked against the ring once, when the writer is made; a chunk then costs
/// one comparison and one memcpy while it fits the current region (the common case: a 64 B
/// message arrives in one to three chunks, and the ring wraps once per ring's worth of bytes).
struct RingWriter {
    /// Where the next byte goes, and the room left at `at` in the current region.
    at: *mut u8,
    room: usize,
    /// The second region, (first byte, length), taken when the first is full; its length is
    /// zero once it is current.
    next: (*mut u8, usize),
    /// Bytes written so far, across the regions.
    written: usize,
    overrun: bool,
}

impl RingWriter {
    /// A writer over `regions` of the ring at `base` of `cap` bytes (the driver's own
    /// non-paged block). A region outside the ring (impossible: `Ring::write_regions` gives
    /// offsets below `cap`) makes a writer with no room, whose first byte is an overrun.
    #[inline]
    fn new(base: *mut u8, cap: usize, regions: [(usize, usize); 2]) -> Self {
        let [(o1, l1), (o2, l2)] = regions;
        if !(o1 <= cap && l1 <= cap - o1 && o2 <= cap && l2 <= cap - o2) {
            return Self {
                at: base,
                room: 0,
                next: (base, 0),
                written: 0,
                overrun: false,
            };
        }
        // The offsets lie in the ring (checked): `wrapping_add` keeps the arithmetic free of
        // an unsafe block, and the pointers are only written through within their lengths.
        Self {
            at: base.wrapping_add(o1),
            room: l1,
            next: (base.wrapping_add(o2), l2),
            written: 0,
            overrun: false,
        }
    }

    /// Appends `s`: one memcpy per region it reaches (ntoskrnl's on Windows), not a byte loop.
    #[inline]
    fn put(&mut self, mut s: &[u8]) {
        loop {
            let k = self.room.min(s.len());
            // SAFETY: [at, at+k) lies in the current region (k <= room, and `new` checked the
            // region against the ring), which belongs to the receive callback until it
            // commits (CopyPlan); the source is k bytes of `s`, the provider's indicated
            // buffer, which never overlaps the ring.
            unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), self.at, k) };
            self.at = self.at.wrapping_add(k);
            self.room -= k;
            self.written += k;
            if k == s.len() {
                return;
            }
            s = s.get(k..).unwrap_or(&[]);
            // The current region is full: on to the second, once.
            let (p, l) = core::mem::replace(&mut self.next, (self.at, 0));
            if l == 0 {
                self.overrun = true;
                return;
            }
            self.at = p;
            self.room = l;
        }
    }
}

/// WskDisconnectEvent. IRQL <= DISPATCH_LEVEL. Must return SUCCESS (C32).
unsafe extern "win64" fn disconnect_event(ctx: PVOID, flags: ULONG) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: registered context.
    let r = unsafe { &*c };
    let mut state = r.state.lock();
    if flags & WSK_FLAG_ABORTIVE != 0 {
        state.abort();
    } else {
        // W57: no more data will come; echo the rest, then FIN (C33: graceful echo close:
        // disconnect after the last send, then close). A receive callback entered before this
        // one (G1: nothing orders them; the sim's disconnect-race) carries bytes from before
        // the FIN: our FIN waits for it.
        if r.rx_entered.load(Ordering::SeqCst) {
            state.receive_running();
        }
        state.peer_graceful();
    }
    // In the same critical section (a running callback holds the context, W70).
    // SAFETY: live context, its lock held by `state`.
    unsafe { pump_locked(c, state) };
    STATUS_SUCCESS
}

/// WskSendBacklogEvent. IRQL <= DISPATCH_LEVEL. Must return SUCCESS (C32).
unsafe extern "win64" fn send_backlog_event(ctx: PVOID, ideal: SIZE_T) -> NTSTATUS {
    // SAFETY: registered context.
    let r = unsafe { &*ctx.cast::<Conn>() };
    r.state.lock().set_ideal_backlog(ideal);
    STATUS_SUCCESS
}
