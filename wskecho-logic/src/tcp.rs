//! Per-connection TCP send/receive state machine, platform-free.
//!
//! The kernel layer (the driver's conn room) holds this under the connection's spin lock and performs the
//! WSK calls it asks for *outside* the lock. Everything that decides lives here so that it is
//! unit-tested on the host:
//! - zero-copy vs copy per indication (rules C1: hold a zero-copy send's indication until both the
//!   send and the callback are done, C2: bound retention, honour RELEASE_ASAP),
//! - ordering: sends are issued strictly in the order the bytes arrived, by a single "pump"
//!   owner at a time; an inline completion only records its result instead of recursing (C12: no new
//!   WSK call from a completion routine: loop, do not recurse),
//! - the copy-path ring and backpressure (STATUS_DATA_NOT_ACCEPTED / partial accept, then a
//!   zero-length WskReceive once the ring has drained, C5: after a partial or refused indication,
//!   post a WskReceive),
//! - teardown: when the socket may be disconnected/closed (no call executing, C22: no call may be
//!   running at close; every retained indication released first, C4: release every retained list
//!   before WskCloseSocket).

use super::budget::RetainedBudget;
use super::load_client::ClientState;
use super::ring::ByteRing;

/// Upper bound on concurrently outstanding sends per connection (C37: several in flight).
pub const MAX_SLOTS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZcState {
    /// Retained, waiting for its turn to be sent.
    Queued,
    /// Handed to WskSend.
    InFlight,
    /// The send finished (or was never issued because of an abort).
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Free,
    /// A retained indication (zero-copy). `cb`: the receive callback still holds it (C1).
    /// `epoch`: the receive callback it came from (see `TcpState::rx_epoch`). `since`: the
    /// clock reading of the first housekeeping tick that saw it retained (the retention
    /// deadline counts from there; the receive path reads no clock).
    /// `head`: the slot of the list's first entry (the one whose indication WskRelease is
    /// given, C3: WskRelease only PENDING lists, exactly once); a list of several entries is sent
    /// entry by entry from several slots and given back once, when every one of them is done.
    /// `part`: the entry's place in the list.
    Zc {
        len: usize,
        cb: bool,
        state: ZcState,
        epoch: u32,
        since: Option<u64>,
        head: u8,
        part: u8,
    },
    /// A chunk of the ring handed to WskSend; `done` once it completed (ring space is freed in
    /// issue order even when completions arrive out of order).
    Ring {
        len: usize,
        done: bool,
    },
    /// A chunk of the shared read-only source pattern.
    Pattern {
        len: usize,
    },
}

/// The slots as bit sets (bit `i` = slot `i`, so `MAX_SLOTS` fits a `u8`), derived from the
/// slots by [`update`](Self::update) on every write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SlotMasks {
    /// Free slots among those in use for the connection (`nslots`).
    free: u8,
    /// Retained entries whose send is done (or never went out: aborted).
    done: u8,
    /// Retained entries whose receive callback still holds its reference (C1).
    cb: u8,
    /// Head slots of retained lists (a `Slot::Zc` whose `head` is its own index).
    heads: u8,
    /// `group[h]`: the entries of the list headed by slot `h`.
    group: [u8; MAX_SLOTS],
}

const _: () = assert!(MAX_SLOTS <= 8, "slot masks are u8");

impl SlotMasks {
    fn all_free(nslots: usize) -> Self {
        SlotMasks {
            free: (0..nslots).fold(0, |m, i| m | bit(i)),
            ..SlotMasks::default()
        }
    }

    /// Slot `i` (`live`: one of the connection's `nslots`) changed from `old` to `new`.
    fn update(&mut self, i: usize, old: Slot, new: Slot, live: bool) {
        let b = bit(i);
        if let Slot::Zc { head, .. } = old {
            if let Some(g) = self.group.get_mut(usize::from(head)) {
                *g &= !b;
            }
        }
        self.free &= !b;
        self.done &= !b;
        self.cb &= !b;
        self.heads &= !b;
        match new {
            Slot::Free if live => self.free |= b,
            Slot::Zc {
                cb, state, head, ..
            } => {
                if let Some(g) = self.group.get_mut(usize::from(head)) {
                    *g |= b;
                }
                if cb {
                    self.cb |= b;
                }
                if state == ZcState::Done {
                    self.done |= b;
                }
                if usize::from(head) == i {
                    self.heads |= b;
                }
            }
            _ => {}
        }
    }

    #[inline]
    fn group_of(&self, head: usize) -> u8 {
        self.group.get(head).copied().unwrap_or(0)
    }
}

/// The bit of slot `i` (none for an index past the masks).
#[inline]
fn bit(i: usize) -> u8 {
    u32::try_from(i)
        .ok()
        .and_then(|i| 1u8.checked_shl(i))
        .unwrap_or(0)
}

/// The indices of the bits set in `m`, lowest first.
#[inline]
fn bits(mut m: u8) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if m == 0 {
            return None;
        }
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        Some(i)
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvDecision {
    /// Retain the indication (return STATUS_PENDING) and send it from `slot`.
    ZeroCopy { slot: usize },
    /// Copy `n` bytes (the first `n` of the indication) into the ring; if `n` is less than
    /// what was indicated the callback reports a partial accept.
    Copy { n: usize },
    /// Nothing taken: return STATUS_DATA_NOT_ACCEPTED (TCP backpressure).
    NotAccepted,
    /// The connection is going away: take the data and drop it.
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    ZeroCopy,
    Ring { off: usize, len: usize },
    Pattern { len: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendOp {
    pub slot: usize,
    pub kind: SendKind,
}

/// What the pump must do next (one WSK call at a time, outside the lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Send(SendOp),
    /// Zero-length WskReceive: indications were refused and the ring has room again (C5).
    ResumeReceive,
    /// Release the indication retained in this slot; the slot is then free (C3: once).
    Release {
        slot: usize,
    },
    /// WskDisconnect: graceful when the peer finished and everything was echoed (C33: graceful echo
    /// close: disconnect after the last send, then close), abortive to cancel sends that hold
    /// retained indications before the close (C4).
    Disconnect {
        abortive: bool,
    },
    /// WskCloseSocket: nothing is in flight, nothing retained, no call executing (C22, C4).
    Close,
}

/// What a housekeeping [`kick`](TcpState::kick) found: whether to pump, and which deadline
/// (if any) it applied, for the caller to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kick {
    pub pump: bool,
    pub idle_timeout: bool,
    pub progress_timeout: bool,
    pub retain_timeout: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Echo,
    Discard,
    Source,
    /// Echo of the reply stream computed by the sockperf framer (always the copy path: the
    /// reply differs from the request in the header, and indication buffers are never written).
    Sockperf,
    /// Outbound load (kernel-side client): send one `msg`-byte message of the source pattern,
    /// wait for its echo (verified by the caller), repeat.
    EchoClient {
        msg: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Peer sent FIN: echo what is queued, then disconnect gracefully.
    PeerDone,
    /// Tear down as fast as possible.
    Aborting,
}

#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
pub struct TcpState {
    pub mode: Mode,
    pub ring: ByteRing,
    slots: [Slot; MAX_SLOTS],
    nslots: usize,
    /// Zero-copy slots in arrival order, not yet issued.
    zc_fifo: [u8; MAX_SLOTS],
    zc_head: usize,
    zc_len: usize,
    /// Ring slots in issue order, so ring space is freed in order.
    ring_fifo: [u8; MAX_SLOTS],
    ring_head: usize,
    ring_len: usize,
    /// Receive callbacks started so far. A list retained by callback `e` is given back only
    /// once that callback holds no reference any more: it has returned (`rx_in_callback`
    /// cleared by its last act, [`rx_callback_end`](Self::rx_callback_end)), or a later
    /// callback has started (callbacks of a socket are serialised, W45: receive events are
    /// serialised per socket, so callback `e` has returned and its STATUS_PENDING has been taken
    /// in). A release racing with the PENDING return itself is what the provider cannot accept. No
    /// count of housekeeping ticks stands in for that reference: a preempted PASSIVE callback can
    /// stall for any time.
    rx_epoch: u32,
    max_send: usize,
    per_conn_budget: usize,
    retained: usize,
    pumping: bool,
    /// WSK calls currently executing for this socket (C22).
    calls: usize,
    /// IRPs of this context that WSK owns now: sends, the resume receive, the disconnect, the
    /// backlog query and the close. The context is recycled only when the close has completed
    /// AND this count is zero: WskCloseSocket cancels the pending ones, but nothing orders
    /// their completions against the close's own (W70: close cancels pending IRPs and waits for
    /// running callbacks), so whichever completion brings the count to zero after the close
    /// recycles (see [`recyclable`](Self::recyclable)).
    irps: u32,
    /// Indications were refused (partial accept or DATA_NOT_ACCEPTED) and none arrived since.
    rx_blocked: bool,
    resume_pending: bool,
    /// A receive callback is running: a resume posted now could be undone when it returns
    /// (the provider blocks indications after the callback's partial accept, G2: indications resume
    /// only once the posted WskReceive completes).
    rx_in_callback: bool,
    /// [`callback_begin`](Self::callback_begin) ran for the callback now deciding.
    rx_begun: bool,
    /// The slots seen as bit sets (bit `i` = slot `i`), kept by [`put`](Self::put), the one
    /// writer of `slots`, so that the per-indication and per-pump questions (a free slot, a
    /// list to give back, a list's entries) cost a few mask operations instead of a scan of
    /// every slot and, for each, of its list. `slots` stays the truth; the masks are derived
    /// from it (`masks_match` in the tests recomputes them after every step).
    masks: SlotMasks,
    /// Permission to post one resume: set by send completions and the driver's periodic kick,
    /// so a resume lost to the race above is retried, not spun on.
    resume_armed: bool,
    phase: Phase,
    disconnect_issued: bool,
    disconnect_done: bool,
    close_issued: bool,
    close_completed: bool,
    /// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG issued at accept and not completed yet (W36:
    /// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG: connection sockets, IRP required): its IRP and output
    /// buffer belong to WSK, so the context is not recycled before it completes.
    query_pending: bool,
    /// The peer's FIN arrived.
    peer_fin: bool,
    /// We stopped taking data ourselves (an idle limit, a job stop, an unload): what is
    /// indicated from here on is dropped, whatever arrives later (the peer's FIN included),
    /// so that no byte after a dropped one is ever echoed.
    local_stop: bool,
    /// The housekeeper's next visit pumps (work that may not start where it was found: the
    /// accept callback).
    pump_due: bool,
    /// Close only after the peer's FIN (outbound connections: closing earlier aborts, and the
    /// peer would lose what it has not read yet).
    pub wait_peer_fin: bool,
    /// How long a graceful shutdown may take before it turns abortive (C34: bounded), in the
    /// clock units of the `now` given to [`kick`](Self::kick) (the performance counter);
    /// 0 = no limit. Measured from the first kick that sees the shutdown, so a clock-interval
    /// sleep between ticks never stretches it (it used to count 5 ms ticks: 15.6 ms each
    /// on a default Windows clock, three times the limit).
    pub shutdown_limit: u64,
    shutdown_since: Option<u64>,
    /// Deadlines while open, in the same clock units as
    /// `shutdown_limit`, 0 = none. `idle_limit`: nothing received and nothing to send for
    /// that long -> graceful close. `progress_limit`: echo outstanding (sends pending, data
    /// queued or refused) and nothing moving for that long -> abort, which cancels the sends
    /// and releases every retained list. `retain_limit`: a list retained that long -> this
    /// connection takes no more zero-copy (copy path and back-pressure from then on).
    pub idle_limit: u64,
    pub progress_limit: u64,
    pub retain_limit: u64,
    /// Bumped by every indication and every successful send completion.
    progress: u32,
    /// `progress` as the last tick saw it, and the clock reading since when it has not moved.
    progress_seen: u32,
    quiet_since: Option<u64>,
    /// The retention deadline passed once: zero-copy is off for the rest of the connection.
    zc_off: bool,
    /// Outbound load only (EchoClient, paced Source): the client's message state.
    pub client: ClientState,
    /// Calls that named a slot out of range or in the wrong state: dropped and counted here
    /// (the kernel layer reports them), never a panic at DISPATCH_LEVEL.
    pub anomalies: u32,
}

/// What a connection's state is made with (`TcpState::new`).
#[derive(Clone, Copy, Debug)]
pub struct TcpParams {
    pub mode: Mode,
    /// Bytes of the copy path's send ring (0: no ring, zero-copy or nothing to send).
    pub ring_cap: usize,
    /// Sends in flight at most (clamped to 1..=MAX_SLOTS).
    pub send_slots: usize,
    /// Largest single send, bytes (at least 1).
    pub max_send: usize,
    /// Bytes this connection may keep retained for zero-copy (changeable later:
    /// `set_per_conn_budget`).
    pub per_conn_budget: usize,
}

impl TcpState {
    pub fn new(p: TcpParams) -> Self {
        let TcpParams {
            mode,
            ring_cap,
            send_slots: nslots,
            max_send,
            per_conn_budget,
        } = p;
        Self {
            mode,
            ring: ByteRing::new(ring_cap),
            slots: [Slot::Free; MAX_SLOTS],
            nslots: nslots.clamp(1, MAX_SLOTS),
            zc_fifo: [0; MAX_SLOTS],
            zc_head: 0,
            zc_len: 0,
            ring_fifo: [0; MAX_SLOTS],
            ring_head: 0,
            ring_len: 0,
            rx_epoch: 0,
            max_send: max_send.max(1),
            per_conn_budget,
            retained: 0,
            pumping: false,
            calls: 0,
            irps: 0,
            rx_blocked: false,
            resume_pending: false,
            rx_in_callback: false,
            rx_begun: false,
            masks: SlotMasks::all_free(nslots.clamp(1, MAX_SLOTS)),
            resume_armed: false,
            phase: Phase::Open,
            disconnect_issued: false,
            disconnect_done: false,
            close_issued: false,
            close_completed: false,
            query_pending: false,
            peer_fin: false,
            local_stop: false,
            pump_due: false,
            wait_peer_fin: false,
            shutdown_limit: 0,
            shutdown_since: None,
            idle_limit: 0,
            progress_limit: 0,
            retain_limit: 0,
            progress: 0,
            progress_seen: 0,
            quiet_since: None,
            zc_off: false,
            client: ClientState::new(),
            anomalies: 0,
        }
    }

    /// Slot `i`, or Free for an index no slot has (counted).
    fn slot_at(&mut self, i: usize) -> Slot {
        if let Some(s) = self.slots.get(i) {
            *s
        } else {
            self.anomalies += 1;
            Slot::Free
        }
    }

    /// Sets slot `i` (the one writer of `slots`: the masks follow); an index no slot has is
    /// dropped and counted.
    fn set_slot(&mut self, i: usize, v: Slot) {
        if let Some(s) = self.slots.get_mut(i) {
            let old = core::mem::replace(s, v);
            self.masks.update(i, old, v, i < self.nslots);
        } else {
            self.anomalies += 1;
        }
    }

    /// Sets slot `i`, which holds a ring send, to `v` (the send done, or Free), as
    /// [`set_slot`](Self::set_slot) would and without its general mask update: a ring send's
    /// slot is in no mask (it is not free, and the other masks are of retained entries), so
    /// only its free bit can change (`masks_match` in the tests checks after every step).
    // Always: its two calls per ring completion otherwise stay calls (the fallback to
    // set_slot makes it look large to the inliner), and saving that call is its purpose.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn set_ring_slot(&mut self, i: usize, v: Slot) {
        if let Some(s @ Slot::Ring { .. }) = self.slots.get_mut(i) {
            *s = v;
            if v == Slot::Free && i < self.nslots {
                self.masks.free |= bit(i);
            }
        } else {
            self.set_slot(i, v);
        }
    }

    /// The lowest free slot in use for this connection.
    #[inline]
    fn free_slot(&self) -> Option<usize> {
        let f = self.masks.free;
        (f != 0).then(|| f.trailing_zeros() as usize)
    }

    /// Retained entries whose send is done (or never went out: aborted), not yet given back.
    #[cfg(test)]
    fn zc_done(&self) -> u32 {
        self.masks.done.count_ones()
    }

    #[inline]
    pub fn close_issued(&self) -> bool {
        self.close_issued
    }

    /// Slots busy (sends, retained indications).
    #[inline]
    pub fn busy_slots(&self) -> usize {
        self.nslots - self.masks.free.count_ones() as usize
    }

    /// MaxRetainedBytesPerConnection is a live limit: the connection reads it again before
    /// each indication. Lowered below what is retained now, no new list is retained until
    /// the retained ones have gone back (nothing is released early).
    #[inline]
    pub fn set_per_conn_budget(&mut self, bytes: usize) {
        self.per_conn_budget = bytes;
    }

    /// Decides what to do with an indication of `len` bytes.
    /// `zc_ok` is false when zero-copy is impossible for reasons the caller knows (a list of
    /// several indications, WSK_FLAG_RELEASE_ASAP, zero-copy disabled by config).
    #[inline]
    pub fn on_receive(&mut self, len: usize, zc_ok: bool, global: &RetainedBudget) -> RecvDecision {
        self.on_receive_one(len, zc_ok, global)
    }

    /// As [`on_receive_list`](Self::on_receive_list) for a list of one entry of `len` bytes
    /// (the common case: one segment per indication), with the same answer and the same state
    /// left behind (`one_entry_path_is_the_list_path` checks both along seeded walks), without
    /// the per-entry loop: one free slot, taken as the list's head and only entry.
    // Always: the receive callback's one call per message into this crate; left to the
    // inliner it stays a call (its prologue, epilogue and argument moves on every message).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn on_receive_one(
        &mut self,
        len: usize,
        zc_ok: bool,
        global: &RetainedBudget,
    ) -> RecvDecision {
        if let Some(d) = self.receive_prelude(len) {
            return d;
        }
        // As on_receive_list with one entry: `len > 0` (the prelude answered 0), one free slot.
        if zc_ok && self.masks.free != 0 && self.zc_allowed(len) && global.try_reserve(len) {
            self.retained += len;
            let slot = self.masks.free.trailing_zeros() as usize;
            self.retain_entry(slot, slot, 0, len);
            return RecvDecision::ZeroCopy { slot };
        }
        self.copy_decision(len)
    }

    /// As [`on_receive`](Self::on_receive) for an indication list whose entries hold `lens`
    /// bytes (in list order): zero-copy takes one slot per entry (a WSK_BUF describes one MDL
    /// chain, so each entry is its own send), all or nothing, and reports the head slot;
    /// [`group`](Self::group) tells the caller which slot carries which entry.
    pub fn on_receive_list(
        &mut self,
        lens: &[usize],
        zc_ok: bool,
        global: &RetainedBudget,
    ) -> RecvDecision {
        if let [len] = *lens {
            return self.on_receive_one(len, zc_ok, global);
        }
        self.on_receive_entries(lens, zc_ok, global)
    }

    /// The general case of [`on_receive_list`](Self::on_receive_list), any number of entries.
    fn on_receive_entries(
        &mut self,
        lens: &[usize],
        zc_ok: bool,
        global: &RetainedBudget,
    ) -> RecvDecision {
        let len: usize = lens.iter().sum();
        if let Some(d) = self.receive_prelude(len) {
            return d;
        }
        // Zero-copy only while nothing copied is waiting (order), a slot is free and both
        // retention budgets allow it (C2).
        let free = self.masks.free.count_ones() as usize;
        if zc_ok
            && !lens.is_empty()
            && lens.len() <= free
            && lens.iter().all(|&l| l > 0)
            && self.zc_allowed(len)
            && global.try_reserve(len)
        {
            self.retained += len;
            let mut head = None;
            for (part, &l) in lens.iter().enumerate() {
                // `free` slots were counted above: one per entry is there.
                let Some(slot) = self.free_slot() else {
                    self.anomalies += 1;
                    break;
                };
                let h = *head.get_or_insert(slot);
                self.retain_entry(slot, h, part, l);
            }
            if let Some(slot) = head {
                return RecvDecision::ZeroCopy { slot };
            }
        }
        self.copy_decision(len)
    }

    /// What every indication does first: the callback's start (if the caller did not record
    /// it), then the answers that need no slot: Drop while no data is taken or the mode
    /// takes none, an empty copy for an empty indication. None: decide on.
    #[inline]
    fn receive_prelude(&mut self, len: usize) -> Option<RecvDecision> {
        if !self.rx_begun {
            let _ = self.callback_begin();
        }
        self.rx_begun = false;
        if !self.takes_data() {
            return Some(RecvDecision::Drop);
        }
        match self.mode {
            Mode::Discard | Mode::Source | Mode::EchoClient { .. } => {
                return Some(RecvDecision::Drop)
            }
            Mode::Echo | Mode::Sockperf => {}
        }
        if len == 0 {
            return Some(RecvDecision::Copy { n: 0 });
        }
        None
    }

    /// Zero-copy of `len` more bytes is allowed by this connection's state: not switched off
    /// by the retention deadline, an echo, nothing copied waiting (order), and the
    /// per-connection retention budget (C2). The caller checks the slots and reserves the
    /// global budget last.
    #[inline]
    fn zc_allowed(&self, len: usize) -> bool {
        !self.zc_off
            && self.mode == Mode::Echo
            && self.ring.queued() == 0
            && self.retained + len <= self.per_conn_budget
    }

    /// Free slot `slot` becomes entry `part` (`len` bytes) of the list headed by `head`,
    /// queued and held by the running callback.
    // Always: inlined into on_receive_one (so into the receive callback) it is a handful of
    // stores; as a call it costs as much again.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn retain_entry(&mut self, slot: usize, head: usize, part: usize, len: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Slot::Zc {
                len,
                cb: true,
                state: ZcState::Queued,
                epoch: self.rx_epoch,
                since: None,
                head: head as u8,
                part: part as u8,
            };
            // The masks as set_slot would leave them (a free slot becomes a queued entry held
            // by its callback, in the list headed by `head`), set in place.
            let (b, m) = (bit(slot), &mut self.masks);
            m.free &= !b;
            m.cb |= b;
            if let Some(g) = m.group.get_mut(head) {
                *g |= b;
            }
            if head == slot {
                m.heads |= b;
            }
        }
        self.zc_fifo[(self.zc_head + self.zc_len) % MAX_SLOTS] = slot as u8;
        self.zc_len += 1;
    }

    /// The copy path's answer for `len` indicated bytes: as many as the ring takes.
    #[inline]
    fn copy_decision(&mut self, len: usize) -> RecvDecision {
        // Echo puts exactly the taken bytes in the ring. The sockperf reply stream is never
        // longer than the request stream overall, but a header whose first bytes came in an
        // earlier indication is emitted whole now: keep one header of slack.
        let room = self.ring.free().saturating_sub(self.copy_slack());
        let n = len.min(room);
        if n < len {
            self.rx_blocked = true;
        }
        if n == 0 {
            RecvDecision::NotAccepted
        } else {
            RecvDecision::Copy { n }
        }
    }

    /// Whether indicated data is still echoed: while open, and after the peer's FIN until
    /// our own FIN is issued. A receive callback may be indicated before
    /// the FIN and still be deciding when the disconnect event runs on another thread (G1: receive
    /// events are serialised per socket, nothing orders them with other events, G23: a graceful
    /// disconnect event may overlap a receive event): its bytes came before the FIN and are echoed,
    /// our FIN waiting for the callback (`teardown_work`). Nothing is taken once we stopped taking
    /// data ourselves (`local_stop`): had a local stop's dropped bytes been followed by the peer's
    /// FIN, the bytes that came with the FIN would have been echoed after a gap (what the chaos
    /// campaign found when this step was first tried: an unload's graceful stop, then the client's
    /// last write and FIN).
    fn takes_data(&self) -> bool {
        match self.phase {
            Phase::Open => true,
            Phase::PeerDone => self.peer_fin && !self.local_stop && !self.disconnect_issued,
            Phase::Aborting => false,
        }
    }

    /// A receive callback of this socket has been entered (the kernel layer marks its entry
    /// before any kernel call) and has not yet dropped its reference: a disconnect event that
    /// overlaps it (G1) records it here, so our graceful FIN waits for the data it carries.
    pub fn receive_running(&mut self) {
        self.rx_in_callback = true;
    }

    /// The accept callback that attached this connection is still running: counted as an
    /// executing call, so no close is issued on the socket being accepted (W49: the provider
    /// owns it until the callback returns) by an event that came early on another thread.
    pub fn accept_begin(&mut self) {
        self.calls += 1;
    }

    /// The accept callback is about to return: the close it held back, and a source
    /// connection's first send, go out from the housekeeper's next visit, never from inside
    /// WskAcceptEvent.
    pub fn accept_end(&mut self) {
        self.call_returned();
        self.pump_due = true;
    }

    /// A receive callback starts (before [`on_receive`](Self::on_receive), which otherwise
    /// does this itself): from here every list of an earlier callback may be given back (W45:
    /// that callback has returned), so a pump now frees their slots for this indication.
    /// Returns whether a list of an earlier callback can be given back now (the caller pumps).
    #[inline]
    pub fn callback_begin(&mut self) -> bool {
        // Any indication means indications flow again, and the connection is not idle.
        self.rx_blocked = false;
        self.progress = self.progress.wrapping_add(1);
        self.rx_in_callback = true;
        self.rx_epoch = self.rx_epoch.wrapping_add(1);
        self.rx_begun = true;
        self.releasable().is_some()
    }

    /// Ring bytes a copy of `n` input bytes may need beyond `n` (see on_receive).
    #[inline]
    pub fn copy_slack(&self) -> usize {
        if self.mode == Mode::Sockperf {
            control::protocol::sockperf::HEADER_LEN
        } else {
            0
        }
    }

    /// The slots of the list whose head slot is `head`, in entry order: (slots, count).
    pub fn group(&self, head: usize) -> ([usize; MAX_SLOTS], usize) {
        let mut out = [0usize; MAX_SLOTS];
        let mut n = 0;
        for i in bits(self.masks.group_of(head)) {
            if let Some(Slot::Zc { part, .. }) = self.slots.get(i) {
                if let Some(o) = out.get_mut(usize::from(*part)) {
                    *o = i;
                    n += 1;
                }
            }
        }
        (out, n)
    }

    /// The slots of the list whose head slot is `head`, as a mask (bit `i` = slot `i`). Entry
    /// order is slot order: [`on_receive_list`](Self::on_receive_list) gives each entry in
    /// turn the lowest free slot, so the lowest bit is the first entry (the head).
    #[inline]
    pub fn group_mask(&self, head: usize) -> u8 {
        self.masks.group_of(head)
    }

    /// Frees every slot of the list headed by `head` and gives its bytes back to the budgets.
    fn free_group(&mut self, head: usize, global: &RetainedBudget) {
        let g = self.masks.group_of(head);
        let mut bytes = 0;
        let mut free = |s: &mut Slot| {
            if let Slot::Zc { len, .. } = *s {
                bytes += len;
            }
            *s = Slot::Free;
        };
        if g == bit(head) {
            // A list of one entry (the common case) is its head alone: no walk of the mask.
            if let Some(s) = self.slots.get_mut(head) {
                free(s);
            }
        } else {
            for i in bits(g) {
                if let Some(s) = self.slots.get_mut(i) {
                    free(s);
                }
            }
        }
        // The masks as set_slot would leave them: every entry of the list (all live slots
        // headed by `head`, the head among them) free, in no list.
        let m = &mut self.masks;
        m.free |= g;
        m.done &= !g;
        m.cb &= !g;
        m.heads &= !g;
        if let Some(x) = m.group.get_mut(head) {
            *x = 0;
        }
        self.retained -= bytes;
        global.release(bytes);
    }

    /// The receive callback that chose zero-copy for the list headed by `slot` is about to
    /// return (C1: its reference). Returns true when a send still uses the list: the callback
    /// returns STATUS_PENDING and the pump calls WskRelease once every entry's send is done.
    /// Returns false when every send already finished (inline completion, or cancelled by an
    /// abort): the slots are free again and the callback returns STATUS_SUCCESS, so no
    /// WskRelease is due (C3: never twice).
    #[inline]
    pub fn callback_done(&mut self, slot: usize, global: &RetainedBudget) -> bool {
        if !matches!(self.slots.get(slot), Some(Slot::Zc { head, .. }) if usize::from(*head) == slot)
        {
            // No retained list headed there: nothing to keep, nothing to release later.
            self.anomalies += 1;
            return false;
        }
        let group = self.masks.group_of(slot);
        if group & !self.masks.done == 0 {
            self.free_group(slot, global);
            return false;
        }
        for i in bits(group) {
            if let Some(Slot::Zc { cb, .. }) = self.slots.get_mut(i) {
                *cb = false;
            }
        }
        // The masks follow (in place: only the callback's bit changes).
        self.masks.cb &= !group;
        true
    }

    /// The head slot of a retained list that may be given back now: every entry's send is
    /// done and its callback holds no reference any more (see `rx_epoch`).
    #[inline]
    fn releasable(&self) -> Option<usize> {
        let m = &self.masks;
        // Nothing retained is done: the common case costs one compare.
        if m.done == 0 {
            return None;
        }
        // Heads of lists whose every entry is done and no longer held by its callback.
        bits(m.heads).find(|&h| {
            let g = m.group_of(h);
            g & !m.done == 0
                && g & m.cb == 0
                && matches!(self.slots.get(h), Some(Slot::Zc { epoch, .. })
                    if *epoch != self.rx_epoch || !self.rx_in_callback)
        })
    }

    /// WskSendBacklogEvent: keep about the ideal backlog in flight across the slots (C37).
    pub fn set_ideal_backlog(&mut self, backlog: usize) {
        if self.client.paced {
            // A paced source's send size is its message size.
            return;
        }
        self.max_send = (backlog / self.nslots.max(1)).clamp(4096, 64 * 1024);
    }

    /// The accept path issues SIO_WSK_QUERY_IDEAL_SEND_BACKLOG (W36): it counts as an executing
    /// call until [`call_returned`](Self::call_returned) (C22) and as an outstanding IRP until
    /// [`query_complete`](Self::query_complete). False when the connection is already closing.
    pub fn query_issue(&mut self) -> bool {
        if self.close_issued || self.query_pending {
            return false;
        }
        self.query_pending = true;
        self.calls += 1;
        self.irps += 1;
        true
    }

    /// The backlog query IRP completed; `Some(bytes)` on success is applied as a send-backlog
    /// event is (W58: the send backlog event reports the ideal backlog, C37). Returns true when the
    /// close has already completed and nothing else is outstanding: this was the context's last IRP
    /// and the caller recycles it.
    pub fn query_complete(&mut self, ideal: Option<usize>) -> bool {
        self.query_pending = false;
        self.irp_done();
        if let Some(b) = ideal {
            self.set_ideal_backlog(b);
        }
        self.recyclable()
    }

    /// One IRP of the context came back from WSK (its completion routine runs).
    #[inline]
    fn irp_done(&mut self) {
        if let Some(n) = self.irps.checked_sub(1) {
            self.irps = n;
        } else {
            // A completion no issue accounts for: counted, never a wrap.
            self.anomalies += 1;
        }
    }

    /// The close has completed and no IRP of the context is outstanding: the completion that
    /// sees this (exactly one does, under the lock) recycles the context (C20: never free or reuse
    /// what WSK still owns, C23: keep the socket context until the close IRP completes, C30: no
    /// completion routine may still run when the image unloads).
    #[inline]
    pub fn recyclable(&self) -> bool {
        self.close_completed && self.irps == 0
    }

    /// IRPs of the context WSK owns now.
    #[cfg(test)]
    pub fn irps_outstanding(&self) -> u32 {
        self.irps
    }

    /// Current size of one send (follows the ideal send backlog, C37).
    pub fn max_send(&self) -> usize {
        self.max_send
    }

    /// EchoClient: `n` more bytes of echo arrived (verified by the caller against the pattern
    /// at `client.offset()` first).
    pub fn client_received(&mut self, n: usize) {
        if let Mode::EchoClient { msg } = self.mode {
            self.client.received(n, msg);
        }
    }

    /// The receive callback's last act before it returns (every path): it drops the
    /// callback's reference on the lists it retained. The callback does not pump after this
    /// (a release issued now could reach the provider before the callback's STATUS_PENDING
    /// does): the next pump (a send completion, the next callback, the housekeeper) releases.
    #[inline]
    pub fn rx_callback_end(&mut self) {
        self.rx_in_callback = false;
    }

    /// Periodic housekeeping tick (PASSIVE_LEVEL, every few ms) at clock reading `now`: bounds
    /// a graceful shutdown by time, applies the deadlines while open (idle, progress,
    /// retention), gives back finished zero-copy lists whose callback has returned and arms
    /// one resume attempt if indications are blocked. Every deadline is measured from a clock
    /// reading taken by a tick, so a clock-interval sleep between ticks never stretches it.
    pub fn kick(&mut self, now: u64) -> Kick {
        let mut k = Kick::default();
        // After the peer's FIN an echo (or sockperf reply) service still owes the bytes that
        // came before it; nothing else is owed anything.
        let owes_echo = matches!(self.mode, Mode::Echo | Mode::Sockperf)
            && !self.local_stop
            && !self.disconnect_issued;
        if self.phase == Phase::PeerDone
            && !owes_echo
            && self.shutdown_limit > 0
            && !self.close_issued
        {
            // C34: a graceful close that does not finish (peer never reads, never FINs) is
            // bounded; then it is aborted like any other stuck connection. Bounded by
            // DisconnectTimeoutMs: a stop of ours (unload, job stop, idle limit), our own FIN,
            // and a source's or discard's close after the peer's. The echo still owed after
            // the peer's FIN is not: the peer asked for it, and a peer that stops reading is
            // bounded by the progress limit below, as while open (a 100 ms DisconnectTimeoutMs
            // used to cut half-closed echoes with a reset).
            let since = *self.shutdown_since.get_or_insert(now);
            if now.saturating_sub(since) > self.shutdown_limit {
                self.phase = Phase::Aborting;
                k.pump = true;
            }
        }
        if self.progress != self.progress_seen || self.quiet_since.is_none() {
            self.progress_seen = self.progress;
            self.quiet_since = Some(now);
        }
        let quiet = now.saturating_sub(self.quiet_since.unwrap_or(now));
        // Open, or echoing what came before the peer's FIN (our FIN not out, no stop of ours).
        let echoing = self.phase == Phase::Open || (self.phase == Phase::PeerDone && owes_echo);
        if echoing && !self.close_issued {
            // Echo owed to the peer: sends in flight, lists retained, bytes queued, or
            // indications refused (the peer's data waits in the stack behind them).
            let owed = self.busy_slots() > 0 || !self.ring.is_empty() || self.rx_blocked;
            if owed && self.progress_limit > 0 && quiet > self.progress_limit {
                // 1d: a peer with a closed window (never reads; its FIN, if any, waits behind
                // the data we refused) would hold the provider's buffers until unload.
                self.phase = Phase::Aborting;
                k.progress_timeout = true;
                k.pump = true;
            } else if self.phase == Phase::Open
                && !owed
                && self.idle_limit > 0
                && quiet > self.idle_limit
            {
                // An idle peer holds a context forever otherwise: FIN, then the graceful close
                // (itself bounded by `shutdown_limit`).
                self.local_shutdown();
                k.idle_timeout = true;
                k.pump = true;
            }
        }
        let retain_limit = self.retain_limit;
        let mut overdue = false;
        for s in self.slots.iter_mut().take(self.nslots) {
            if let Slot::Zc { since, .. } = s {
                let t = *since.get_or_insert(now);
                overdue |= retain_limit > 0 && now.saturating_sub(t) > retain_limit;
            }
        }
        if overdue && !self.zc_off {
            // 9: lists held past the deadline: take no more (copy path, back-pressure); the
            // ones held go back as their sends finish, or with the abort of the progress
            // deadline if they never do.
            self.zc_off = true;
            k.retain_timeout = true;
        }
        k.pump |= self.releasable().is_some() || core::mem::take(&mut self.pump_due);
        if self.rx_blocked && !self.resume_pending && !self.rx_in_callback {
            self.resume_armed = true;
            k.pump = true;
        }
        k
    }

    /// Whether the next housekeeping tick has work here beyond the periodic sweep of the
    /// deadlines: a resume to retry, a retained list to give back or to time, a shutdown to
    /// bound. The kernel layer keeps such connections on its attention list, so an idle tick
    /// visits only them.
    #[inline]
    pub fn needs_tick(&self) -> bool {
        if self.close_issued {
            return false;
        }
        // A list whose send is still out goes back from that send's completion; one whose
        // send is done waits for a pump: this tick's. (Retention deadlines are the sweep's.)
        self.pump_due
            || (self.rx_blocked && !self.resume_pending)
            || self.phase != Phase::Open
            || self.release_due()
    }

    /// [`needs_tick`](Self::needs_tick) for a caller that has just seen [`idle`](Self::idle)
    /// answer true under the same lock: idle means open, indications flowing and no retained
    /// entry both done and free of its callback's reference, so of needs_tick's reasons only
    /// a due pump is left (the seeded walk in the tests compares the two whenever idle).
    #[inline]
    pub fn needs_tick_when_idle(&self) -> bool {
        debug_assert!(self.idle());
        !self.close_issued && self.pump_due
    }

    /// A retained list whose every send is done and whose callback has dropped, or is about
    /// to drop, its reference: it goes back at the next pump. One compare when no retained
    /// entry is done.
    #[inline]
    pub fn release_due(&self) -> bool {
        self.masks.done & !self.masks.cb != 0
    }

    /// Paced source: one send (one message) is `n` bytes (rounded to the pattern period).
    pub fn set_max_send(&mut self, n: usize) {
        self.max_send = n.max(1);
    }

    /// Paced load: the next message could go out now but for want of a ticket.
    #[inline]
    pub fn wants_ticket(&self) -> bool {
        let msg_mode = match self.mode {
            Mode::EchoClient { .. } => self.client.wants_ticket(true),
            Mode::Source => self.client.wants_ticket(false),
            _ => false,
        };
        msg_mode && self.phase == Phase::Open && self.masks.free != 0
    }

    /// Pump ownership: only one thread issues WSK calls for this connection at a time, so sends
    /// go out in order and an inline completion never recurses into another send (C12).
    /// False: another thread owns the pump. Nothing is flagged for it: the owner asks
    /// [`next_work`](Self::next_work) again after every call it made, under the lock every
    /// change is made under, and leaves only when that found nothing, in the same critical
    /// section; so whatever a refused caller recorded (it held the lock, hence the owner was
    /// between a work item and its `call_returned`) is seen by the owner's next question.
    #[inline]
    pub fn enter_pump(&mut self) -> bool {
        !core::mem::replace(&mut self.pumping, true)
    }

    /// The owner leaves the pump: call only in the critical section in which
    /// [`next_work`](Self::next_work) returned None.
    #[inline]
    pub fn leave_pump(&mut self) {
        self.pumping = false;
    }

    /// Next WSK call to make, or None. The caller makes it outside the lock, then calls
    /// [`call_returned`](Self::call_returned).
    /// The common None is answered inline ([`idle`](Self::idle)); the rest is out of line.
    #[inline]
    pub fn next_work(&mut self, global: &RetainedBudget) -> Option<Work> {
        if self.idle() {
            return None;
        }
        self.next_work_unasked(global)
    }

    /// [`next_work`](Self::next_work) without the [`idle`](Self::idle) question, for a pump
    /// that has just asked it, or whose caller has just queued work under this lock (a
    /// zero-copy entry, ring bytes, an abort), where it would answer false. The same answer
    /// from any state: idle or not, `next_work_busy` finds what next_work finds.
    #[inline]
    pub fn next_work_unasked(&mut self, global: &RetainedBudget) -> Option<Work> {
        debug_assert!(self.pumping);
        if self.masks.done & !self.masks.cb == 0 && self.phase != Phase::Aborting {
            // The next most frequent answers, inline: a queued zero-copy send, or else ring
            // bytes to send from a free slot, while there is no list to give back (a
            // releasable list has an entry both done and free of its callback's reference).
            // `next_work_busy` gives the same answers in that state: its first branch finds no
            // releasable list and, not aborting, it issues the queued zero-copy send first,
            // then a ring send (`next_work_checked` in the tests compares the two paths).
            if self.zc_len > 0 {
                return Some(self.issue_zc());
            }
            if self.ring.queued() > 0 && self.masks.free != 0 {
                if let Some(w) = self.issue_ring() {
                    return Some(w);
                }
            }
        }
        self.next_work_busy(global)
    }

    /// Issues a send of the ring's oldest unsent bytes (up to `max_send`) from the lowest free
    /// slot, counted as an executing call and an outstanding IRP; None without a free slot or
    /// unsent bytes.
    #[inline]
    fn issue_ring(&mut self) -> Option<Work> {
        let slot = self.free_slot()?;
        let (off, len) = self.ring.take_send(self.max_send)?;
        // In place, as set_slot would leave it: a free slot (in no mask but `free`) becomes a
        // ring send (in none).
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Slot::Ring { len, done: false };
            self.masks.free &= !bit(slot);
        }
        self.ring_fifo[(self.ring_head + self.ring_len) % MAX_SLOTS] = slot as u8;
        self.ring_len += 1;
        self.calls += 1;
        self.irps += 1;
        Some(Work::Send(SendOp {
            slot,
            kind: SendKind::Ring { off, len },
        }))
    }

    /// Issues the oldest queued zero-copy send: in flight, counted as an executing call and an
    /// outstanding IRP.
    #[inline]
    fn issue_zc(&mut self) -> Work {
        let slot = self.pop_zc();
        self.set_zc_state(slot, ZcState::InFlight);
        self.calls += 1;
        self.irps += 1;
        Work::Send(SendOp {
            slot,
            kind: SendKind::ZeroCopy,
        })
    }

    /// Whether [`next_work`](Self::next_work) has nothing to hand out now, in a few compares:
    /// open, no retained entry both done and free of its callback's reference (so no list to
    /// give back: a releasable list has such an entry, its head), no zero-copy send queued,
    /// nothing in the ring, indications flowing, and a mode that sends only what it received
    /// (no ticket or pattern send can be due). Every branch of `next_work_busy` then finds
    /// nothing (teardown_work returns None while open). The most frequent answer: a pump
    /// entered after a send completed inline, or after the callback's reference is recorded.
    #[inline]
    pub fn idle(&self) -> bool {
        self.masks.done & !self.masks.cb == 0
            && self.zc_len == 0
            && self.phase == Phase::Open
            && !self.rx_blocked
            && self.ring.queued() == 0
            && matches!(self.mode, Mode::Echo | Mode::Discard | Mode::Sockperf)
    }

    /// Some thread owns the pump now (between its `enter_pump` and `leave_pump`).
    #[inline]
    pub fn pump_owned(&self) -> bool {
        self.pumping
    }

    #[inline(never)]
    fn next_work_busy(&mut self, global: &RetainedBudget) -> Option<Work> {
        if let Some(slot) = self.releasable() {
            self.free_group(slot, global);
            self.calls += 1;
            return Some(Work::Release { slot });
        }
        if self.phase == Phase::Aborting {
            // Retained indications that never went out are given back without a send.
            while self.zc_len > 0 {
                let slot = self.pop_zc();
                self.set_zc_state(slot, ZcState::Done);
            }
            if self.releasable().is_some() {
                return self.next_work_busy(global);
            }
        } else {
            if self.zc_len > 0 {
                return Some(self.issue_zc());
            }
            if self.ring.queued() > 0 {
                if let Some(w) = self.issue_ring() {
                    return Some(w);
                }
            }
            if let Mode::EchoClient { msg } = self.mode {
                if self.phase == Phase::Open && self.client.may_send(true) {
                    if let Some(slot) = self.free_slot() {
                        self.client.sent(true);
                        self.set_slot(slot, Slot::Pattern { len: msg });
                        self.calls += 1;
                        self.irps += 1;
                        return Some(Work::Send(SendOp {
                            slot,
                            kind: SendKind::Pattern { len: msg },
                        }));
                    }
                }
            }
            if self.mode == Mode::Source && self.phase == Phase::Open && self.client.may_send(false)
            {
                if let Some(slot) = self.free_slot() {
                    self.client.sent(false);
                    let len = super::source::send_len(self.max_send);
                    self.set_slot(slot, Slot::Pattern { len });
                    self.calls += 1;
                    self.irps += 1;
                    return Some(Work::Send(SendOp {
                        slot,
                        kind: SendKind::Pattern { len },
                    }));
                }
            }
            if self.rx_blocked
                && self.resume_armed
                && !self.rx_in_callback
                && !self.resume_pending
                && self.ring.free() * 2 >= self.ring.capacity()
            {
                self.resume_armed = false;
                self.resume_pending = true;
                self.calls += 1;
                self.irps += 1;
                return Some(Work::ResumeReceive);
            }
        }
        self.teardown_work()
    }

    fn teardown_work(&mut self) -> Option<Work> {
        if self.phase == Phase::Open || self.close_issued {
            return None;
        }
        let idle_sends = self.busy_slots() == 0;
        if self.phase == Phase::PeerDone {
            // Graceful: everything echoed, then FIN (C33), then close once the FIN completes.
            // A receive callback still running may carry bytes from before the peer's FIN
            // (G1): they go out first. Its end puts the connection on the attention list.
            if !(idle_sends && self.ring.is_empty()) {
                return None;
            }
            if self.rx_in_callback {
                // The housekeeper pumps again once the callback is over.
                self.pump_due = true;
                return None;
            }
            if self.rx_blocked && !self.local_stop && !self.disconnect_issued {
                // Indications were refused (a partial accept or DATA_NOT_ACCEPTED when the ring
                // was full) and not indicated again yet: the provider holds bytes that came
                // before the peer's FIN. Our FIN waits for them: the resume (C5) brings them
                // back and they are echoed first. Sent now, they would be dropped (nothing is
                // taken after our FIN) and the close, with them unread, would reset.
                return None;
            }
            if !self.disconnect_issued {
                self.disconnect_issued = true;
                self.calls += 1;
                self.irps += 1;
                return Some(Work::Disconnect { abortive: false });
            }
        } else if !idle_sends && !self.disconnect_issued {
            // Sends still hold retained indications: cancel them so they can be released
            // before the close (C4).
            self.disconnect_issued = true;
            self.calls += 1;
            self.irps += 1;
            return Some(Work::Disconnect { abortive: true });
        }
        let disconnect_settled =
            !self.disconnect_issued || self.disconnect_done || self.phase == Phase::Aborting;
        if self.phase == Phase::PeerDone && self.wait_peer_fin && !self.peer_fin {
            return None;
        }
        // A pending zero-length receive does not hold the close back: the close cancels it
        // (W70), and its completion, whenever it comes, is counted in `irps`.
        if idle_sends && self.calls == 0 && disconnect_settled {
            self.close_issued = true;
            self.irps += 1;
            return Some(Work::Close);
        }
        None
    }

    /// The retained entry in `slot` moves to `state` (anything else there is left alone). In
    /// place, with the one mask it changes (the done bit).
    #[inline]
    fn set_zc_state(&mut self, slot: usize, state: ZcState) {
        if let Some(Slot::Zc { state: s, .. }) = self.slots.get_mut(slot) {
            *s = state;
            if state == ZcState::Done {
                self.masks.done |= bit(slot);
            } else {
                self.masks.done &= !bit(slot);
            }
        }
    }

    fn pop_zc(&mut self) -> usize {
        let slot = self.zc_fifo[self.zc_head % MAX_SLOTS] as usize;
        self.zc_head = (self.zc_head + 1) % MAX_SLOTS;
        self.zc_len -= 1;
        slot
    }

    /// A WSK call on the socket made outside [`next_work`](Self::next_work) (an outbound
    /// stream socket's bind and connect) is executing: no close until it returns (C22).
    pub fn call_begin(&mut self) {
        self.calls += 1;
    }

    /// A WSK call handed out by [`next_work`](Self::next_work) has returned to the caller.
    #[inline]
    pub fn call_returned(&mut self) {
        self.calls -= 1;
    }

    /// Retires the oldest ring send, in slot `s`, of `len` bytes: its bytes leave the ring,
    /// its slot is free, the FIFO moves on. The caller knows `s` heads the FIFO.
    #[inline]
    fn retire_ring_head(&mut self, s: usize, len: usize) {
        if !self.ring.complete(len) {
            self.anomalies += 1;
        }
        self.set_ring_slot(s, Slot::Free);
        self.ring_head = (self.ring_head + 1) % MAX_SLOTS;
        self.ring_len -= 1;
    }

    /// A send IRP completed (any thread, any IRQL <= DISPATCH).
    // Always: recorded once per message, by the completion routine or by the pump owner the
    // completion handed it to; left to the inliner, the pump's loop (a large function) called
    // it (its prologue, epilogue and argument moves on every message).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn send_complete(&mut self, slot: usize, ok: bool) {
        self.irp_done();
        self.resume_armed = true;
        if ok {
            self.progress = self.progress.wrapping_add(1);
        } else {
            self.phase = Phase::Aborting;
        }
        match self.slot_at(slot) {
            Slot::Zc {
                state: ZcState::InFlight,
                ..
            } => {
                // Released later by the pump once the callback is provably over (rx_epoch).
                self.set_zc_state(slot, ZcState::Done);
            }
            Slot::Ring { len, .. } => {
                if self.ring_len > 0 && self.ring_fifo[self.ring_head % MAX_SLOTS] as usize == slot
                {
                    // The oldest ring send (completions in order, the common case): retired
                    // at once, without being marked done first and read back. The same bytes
                    // complete and the same slot is freed as by the loop below.
                    self.retire_ring_head(slot, len);
                } else {
                    self.set_ring_slot(slot, Slot::Ring { len, done: true });
                }
                while self.ring_len > 0 {
                    let s = self.ring_fifo[self.ring_head % MAX_SLOTS] as usize;
                    let Slot::Ring { len, done: true } = self.slot_at(s) else {
                        break;
                    };
                    self.retire_ring_head(s, len);
                }
            }
            Slot::Pattern { .. } => self.set_slot(slot, Slot::Free),
            // No send in that slot: dropped and counted.
            _ => self.anomalies += 1,
        }
    }

    /// The zero-length receive posted by ResumeReceive completed.
    pub fn resume_complete(&mut self, ok: bool, bytes: usize) {
        self.irp_done();
        self.resume_pending = false;
        // A zero-length receive that completes with success and 0 bytes may mean the peer
        // closed its half (G6: a 0-byte WskReceive success means the peer's FIN); the disconnect
        // event covers that case as well.
        let _ = (ok, bytes);
        if !ok {
            self.phase = Phase::Aborting;
        }
    }

    /// Peer closed its sending half (WskDisconnectEvent without WSK_FLAG_ABORTIVE).
    pub fn peer_graceful(&mut self) {
        self.peer_fin = true;
        if self.phase == Phase::Open {
            self.phase = Phase::PeerDone;
        }
    }

    /// Local graceful stop (unload, end of a load job): no new data taken or generated, what is
    /// queued goes out, then FIN.
    pub fn local_shutdown(&mut self) {
        self.local_stop = true;
        if self.phase == Phase::Open {
            self.phase = Phase::PeerDone;
        }
    }

    /// Abortive disconnect from the peer, a dead socket (NULL indication), a protocol error,
    /// an unload, or a graceful disconnect that took too long.
    pub fn abort(&mut self) {
        self.phase = Phase::Aborting;
    }

    /// Returns true when the close has already completed: this was the context's last IRP and
    /// the caller recycles it (a close may complete before a pending graceful disconnect it
    /// cancels, W70).
    pub fn disconnect_complete(&mut self, ok: bool) -> bool {
        self.irp_done();
        self.disconnect_done = true;
        if !ok {
            self.phase = Phase::Aborting;
        }
        self.recyclable()
    }

    /// The close IRP completed. Returns true when no other IRP of the context is outstanding
    /// (so the context can be recycled now); false when a cancelled IRP (a send, the resume
    /// receive, the disconnect, the query) has still to complete: its completion recycles.
    pub fn close_complete(&mut self) -> bool {
        self.irp_done();
        self.close_completed = true;
        self.recyclable()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Most work items one test's pump may produce: every loop in these tests is bounded, so a
    /// state machine that never runs dry fails the test instead of hanging it.
    const MAX_WORK: usize = 1000;

    fn pump(st: &mut TcpState, g: &RetainedBudget) -> Vec<Work> {
        let mut v = Vec::new();
        masks_match(st);
        assert!(!st.idle() || st.needs_tick() == st.needs_tick_when_idle());
        assert!(st.enter_pump());
        while let Some(w) = next_work_checked(st, g) {
            v.push(w);
            assert!(v.len() <= MAX_WORK, "the pump never runs dry");
            if w != Work::Close {
                st.call_returned();
            }
            masks_match(st);
        }
        st.leave_pump();
        v
    }

    /// `next_work`, checked against the general path: its inline answers (`idle`, the queued
    /// zero-copy send) are the ones `next_work_busy` gives from the same state, which it
    /// leaves as `next_work_busy` does (state and global budget).
    /// `next_work_unasked` (the pump's question when it skips `idle`) is checked the same way.
    fn next_work_checked(st: &mut TcpState, g: &RetainedBudget) -> Option<Work> {
        let mut twin = st.clone();
        let g2 = RetainedBudget::new(g.limit());
        assert!(g2.try_reserve(g.used()));
        let mut unasked = st.clone();
        let g3 = RetainedBudget::new(g.limit());
        assert!(g3.try_reserve(g.used()));
        let w = st.next_work(g);
        assert_eq!(w, twin.next_work_busy(&g2), "from {twin:?}");
        assert_eq!(std::format!("{st:?}"), std::format!("{twin:?}"));
        assert_eq!(g.used(), g2.used());
        assert_eq!(w, unasked.next_work_unasked(&g3), "unasked, from {twin:?}");
        assert_eq!(std::format!("{st:?}"), std::format!("{unasked:?}"));
        assert_eq!(g.used(), g3.used());
        w
    }

    /// The masks, computed again from the slots alone, are the ones `set_slot` kept.
    fn masks_match(st: &TcpState) {
        let mut m = SlotMasks::default();
        for (i, s) in st.slots.iter().enumerate() {
            let b = 1u8 << i;
            match *s {
                Slot::Free if i < st.nslots => m.free |= b,
                Slot::Zc {
                    cb, state, head, ..
                } => {
                    m.group[usize::from(head)] |= b;
                    if cb {
                        m.cb |= b;
                    }
                    if state == ZcState::Done {
                        m.done |= b;
                    }
                    if usize::from(head) == i {
                        m.heads |= b;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(m, st.masks, "slots {:?}", st.slots);
    }

    /// `releasable`, `release_due`, `busy_slots` and `group` of every head, as a scan gives them.
    type ScanAnswers = (Option<usize>, bool, usize, Vec<([usize; MAX_SLOTS], usize)>);

    /// What `releasable`, `release_due`, `group` and `busy_slots` answered when they scanned
    /// every slot (and, for each head, every slot again): the masks must give the same answers.
    fn scan_answers(st: &TcpState) -> ScanAnswers {
        let live = &st.slots[..st.nslots];
        let all = |head: usize, cb_gone: bool| {
            live.iter().all(|s| match *s {
                Slot::Zc {
                    head: h, state, cb, ..
                } if usize::from(h) == head => state == ZcState::Done && (!cb_gone || !cb),
                _ => true,
            })
        };
        let releasable = live.iter().enumerate().find_map(|(i, s)| match *s {
            Slot::Zc { head, epoch, .. }
                if usize::from(head) == i
                    && (epoch != st.rx_epoch || !st.rx_in_callback)
                    && all(i, true) =>
            {
                Some(i)
            }
            _ => None,
        });
        let due = live.iter().any(|s| {
            matches!(
                s,
                Slot::Zc {
                    cb: false,
                    state: ZcState::Done,
                    ..
                }
            )
        });
        let busy = live.iter().filter(|s| **s != Slot::Free).count();
        let groups = (0..MAX_SLOTS)
            .map(|head| {
                let mut out = [0usize; MAX_SLOTS];
                let mut n = 0;
                for (i, s) in live.iter().enumerate() {
                    if let Slot::Zc { head: h, part, .. } = *s {
                        if usize::from(h) == head {
                            out[usize::from(part)] = i;
                            n += 1;
                        }
                    }
                }
                (out, n)
            })
            .collect();
        (releasable, due, busy, groups)
    }

    /// The seeded walks' draws (a 64-bit LCG, its high bits): the same seed, the same walk.
    fn walk_rng(seed: u64) -> impl FnMut() -> usize {
        let mut r = seed;
        move || {
            r = r
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (r >> 33) as usize
        }
    }

    /// A seeded walk through receive callbacks (lists of 1 to 3 entries), pumps, send
    /// completions in any order, callback ends and ticks: after every step the masks are the
    /// slots' and every question they answer gets the answer a full scan gives.
    #[test]
    fn slot_masks_answer_as_a_scan_of_the_slots() {
        let g = RetainedBudget::new(1 << 20);
        for seed in 1..=40u64 {
            let mut st = TcpState::new(TcpParams {
                mode: Mode::Echo,
                ring_cap: 256,
                send_slots: 2 + (seed as usize % 7),
                max_send: 64,
                per_conn_budget: 1 << 16,
            });
            let mut next = walk_rng(seed);
            let mut in_flight: Vec<usize> = Vec::new();
            let mut cb: Option<Option<usize>> = None;
            let (mut zc, mut released) = (0, 0);
            for step in 0..600u64 {
                match next() % 5 {
                    0 if cb.is_none() => {
                        let _ = st.callback_begin();
                        let lens: Vec<usize> = (0..=next() % 3).map(|_| 1 + next() % 50).collect();
                        let d = st.on_receive_list(&lens, true, &g);
                        if let RecvDecision::Copy { n } = d {
                            assert!(st.ring.commit(n));
                        }
                        if matches!(d, RecvDecision::ZeroCopy { .. }) {
                            zc += 1;
                        }
                        cb = Some(match d {
                            RecvDecision::ZeroCopy { slot } => Some(slot),
                            _ => None,
                        });
                    }
                    1 => {
                        let idle = st.idle();
                        assert!(
                            !idle || st.needs_tick() == st.needs_tick_when_idle(),
                            "seed {seed} step {step}: needs_tick when idle"
                        );
                        let works = pump(&mut st, &g);
                        assert!(
                            !idle || works.is_empty(),
                            "seed {seed} step {step}: idle, yet {works:?}"
                        );
                        for w in works {
                            match w {
                                Work::Send(op) => in_flight.push(op.slot),
                                Work::Release { .. } => released += 1,
                                _ => {}
                            }
                        }
                    }
                    2 if !in_flight.is_empty() => {
                        let slot = in_flight.swap_remove(next() % in_flight.len());
                        st.send_complete(slot, true);
                    }
                    3 => {
                        if let Some(head) = cb.take() {
                            if let Some(h) = head {
                                st.callback_done(h, &g);
                            }
                            if next().is_multiple_of(2) {
                                st.rx_callback_end();
                            }
                        }
                    }
                    _ => {
                        let _ = st.kick(step);
                    }
                }
                masks_match(&st);
                let (rel, due, busy, groups) = scan_answers(&st);
                assert_eq!(st.releasable(), rel, "seed {seed} step {step}");
                assert_eq!(st.release_due(), due, "seed {seed} step {step}");
                assert_eq!(st.busy_slots(), busy, "seed {seed} step {step}");
                for (h, gr) in groups.iter().enumerate() {
                    assert_eq!(st.group(h), *gr, "seed {seed} step {step} head {h}");
                    // The mask's bits, lowest first, are the entries in list order.
                    let in_order: Vec<usize> = bits(st.group_mask(h)).collect();
                    assert_eq!(in_order, gr.0[..gr.1], "seed {seed} step {step} head {h}");
                }
            }
            assert!(
                zc >= 5 && released > 0,
                "seed {seed}: {zc} zero-copy, {released} released"
            );
            assert_eq!(st.anomalies, 0, "seed {seed}");
        }
    }

    /// The one-entry fast path (`on_receive_one`) answers as the general list path
    /// (`on_receive_entries`) given the same one-entry list, and leaves the same state and the
    /// same global budget behind: checked on a twin of the state before every receive of a
    /// seeded walk (callbacks, pumps, completions in any order, ticks, small retention budgets
    /// and a small ring so that every answer occurs).
    #[test]
    fn one_entry_path_is_the_list_path() {
        let mut seen = [0usize; 4];
        for seed in 1..=40u64 {
            let g = RetainedBudget::new(if seed % 5 == 0 { 120 } else { 1 << 20 });
            let mut st = TcpState::new(TcpParams {
                mode: if seed % 9 == 0 {
                    Mode::Sockperf
                } else {
                    Mode::Echo
                },
                ring_cap: 128,
                send_slots: 1 + (seed as usize % 8),
                max_send: 64,
                per_conn_budget: if seed % 3 == 0 { 100 } else { 1 << 16 },
            });
            let mut next = walk_rng(seed);
            let mut in_flight: Vec<usize> = Vec::new();
            let mut cb: Option<Option<usize>> = None;
            for step in 0..400u64 {
                match next() % 6 {
                    0 if cb.is_none() => {
                        if next().is_multiple_of(2) {
                            let _ = st.callback_begin();
                        }
                        let len = next() % 60;
                        let zc_ok = !next().is_multiple_of(4);
                        let mut twin = st.clone();
                        let g2 = RetainedBudget::new(g.limit());
                        assert!(g2.try_reserve(g.used()));
                        let d = st.on_receive_one(len, zc_ok, &g);
                        let d2 = twin.on_receive_entries(&[len], zc_ok, &g2);
                        assert_eq!(d, d2, "seed {seed} step {step}");
                        assert_eq!(
                            std::format!("{st:?}"),
                            std::format!("{twin:?}"),
                            "seed {seed} step {step}"
                        );
                        assert_eq!(g.used(), g2.used(), "seed {seed} step {step}");
                        seen[match d {
                            RecvDecision::ZeroCopy { .. } => 0,
                            RecvDecision::Copy { .. } => 1,
                            RecvDecision::NotAccepted => 2,
                            RecvDecision::Drop => 3,
                        }] += 1;
                        if let RecvDecision::Copy { n } = d {
                            assert!(st.ring.commit(n));
                        }
                        cb = Some(match d {
                            RecvDecision::ZeroCopy { slot } => Some(slot),
                            _ => None,
                        });
                    }
                    1 => {
                        for w in pump(&mut st, &g) {
                            if let Work::Send(op) = w {
                                in_flight.push(op.slot);
                            }
                        }
                    }
                    2 if !in_flight.is_empty() => {
                        let slot = in_flight.swap_remove(next() % in_flight.len());
                        st.send_complete(slot, true);
                    }
                    3 => {
                        if let Some(head) = cb.take() {
                            if let Some(h) = head {
                                st.callback_done(h, &g);
                            }
                            st.rx_callback_end();
                        }
                    }
                    4 if next().is_multiple_of(50) => st.peer_graceful(),
                    _ => {
                        let _ = st.kick(step);
                    }
                }
                masks_match(&st);
            }
            assert_eq!(st.anomalies, 0, "seed {seed}");
        }
        // Every answer was compared at least a few times.
        assert!(seen.iter().all(|&n| n >= 5), "answers seen: {seen:?}");
    }

    #[test]
    fn zero_copy_waits_for_both_references() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1024,
            send_slots: 4,
            max_send: 512,
            per_conn_budget: 4096,
        });
        let RecvDecision::ZeroCopy { slot } = st.on_receive(100, true, &g) else {
            panic!()
        };
        let w = pump(&mut st, &g);
        assert_eq!(
            w,
            [Work::Send(SendOp {
                slot,
                kind: SendKind::ZeroCopy
            })]
        );
        // Send completes before the callback returned (C1): no release yet.
        st.send_complete(slot, true);
        assert!(pump(&mut st, &g).is_empty());
        assert_eq!(g.used(), 100);
        // The send is done: the callback returns SUCCESS and nothing is released later.
        assert!(!st.callback_done(slot, &g));
        assert!(pump(&mut st, &g).is_empty());
        assert_eq!(g.used(), 0);
        assert_eq!(st.busy_slots(), 0);
    }

    #[test]
    fn release_waits_for_the_callback_to_return_not_for_ticks() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1024,
            send_slots: 4,
            max_send: 512,
            per_conn_budget: 4096,
        });
        let RecvDecision::ZeroCopy { slot } = st.on_receive(10, true, &g) else {
            panic!()
        };
        // The send goes out from inside the callback; the callback then takes PENDING.
        assert_eq!(pump(&mut st, &g).len(), 1);
        assert!(st.callback_done(slot, &g));
        st.send_complete(slot, true);
        // The callback thread is preempted before it returns: however many housekeeping ticks
        // and however much time pass, its PENDING may not have reached the provider yet.
        for tick in 0..100u64 {
            assert!(!st.kick(tick * 1_000_000_000).pump, "tick {tick}");
            assert!(pump(&mut st, &g).is_empty(), "tick {tick}");
        }
        assert_eq!(g.used(), 10);
        // Its last act drops its reference: the next pump releases.
        st.rx_callback_end();
        assert!(st.kick(0).pump);
        assert_eq!(pump(&mut st, &g), [Work::Release { slot }]);
        assert_eq!(g.used(), 0);
        // A later callback proves the earlier one returned (W45): release at once, even if the
        // earlier one's end was never seen.
        let RecvDecision::ZeroCopy { slot } = st.on_receive(10, true, &g) else {
            panic!()
        };
        assert!(st.callback_done(slot, &g));
        pump(&mut st, &g);
        st.send_complete(slot, true);
        assert!(pump(&mut st, &g).is_empty());
        let RecvDecision::ZeroCopy { slot: s2 } = st.on_receive(5, true, &g) else {
            panic!()
        };
        assert_eq!(pump(&mut st, &g)[0], Work::Release { slot });
        assert_ne!(slot, s2);
    }

    #[test]
    fn recycled_only_after_every_irp_whatever_the_order() {
        // W70 orders nothing between the close's completion and those of the IRPs it cancels.
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 0,
        });
        // Back-pressure, then the ring drains: a zero-length resume receive goes out.
        assert_eq!(st.on_receive(100, true, &g), RecvDecision::Copy { n: 100 });
        assert!(st.ring.commit(100));
        assert_eq!(st.on_receive(1, true, &g), RecvDecision::NotAccepted);
        st.rx_callback_end();
        let sends: Vec<usize> = pump(&mut st, &g)
            .iter()
            .filter_map(|w| match w {
                Work::Send(o) => Some(o.slot),
                _ => None,
            })
            .collect();
        for s in sends {
            st.send_complete(s, true);
        }
        let w = pump(&mut st, &g);
        assert!(w.contains(&Work::ResumeReceive), "{w:?}");
        // The peer resets: abort. The close goes out with the resume still pending.
        st.abort();
        let w = pump(&mut st, &g);
        assert!(w.ends_with(&[Work::Close]), "{w:?}");
        assert_eq!(st.irps_outstanding(), 2, "the resume and the close");
        // The close completes first: the cancelled resume still owns the context.
        assert!(!st.close_complete());
        assert!(!st.recyclable());
        st.resume_complete(false, 0);
        assert!(st.recyclable(), "the last completion recycles");
        assert_eq!(st.anomalies, 0);
    }

    #[test]
    fn budgets_force_copy_and_ring_orders_after_zero_copy() {
        let g = RetainedBudget::new(150);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1000,
            send_slots: 4,
            max_send: 1000,
            per_conn_budget: 1000,
        });
        let RecvDecision::ZeroCopy { slot: a } = st.on_receive(100, true, &g) else {
            panic!()
        };
        // Global budget exhausted: copy.
        assert_eq!(st.on_receive(100, true, &g), RecvDecision::Copy { n: 100 });
        assert!(st.ring.commit(100));
        // Ring holds queued data: a later indication must not overtake it, even if budget allows.
        assert_eq!(st.on_receive(10, true, &g), RecvDecision::Copy { n: 10 });
        assert!(st.ring.commit(10));
        // RELEASE_ASAP (zc_ok false) always copies.
        assert_eq!(st.on_receive(5, false, &g), RecvDecision::Copy { n: 5 });
        assert!(st.ring.commit(5));
        let w = pump(&mut st, &g);
        assert_eq!(
            w[0],
            Work::Send(SendOp {
                slot: a,
                kind: SendKind::ZeroCopy
            })
        );
        assert!(matches!(
            w[1],
            Work::Send(SendOp {
                kind: SendKind::Ring { off: 0, len: 115 },
                ..
            })
        ));
    }

    #[test]
    fn backpressure_then_resume() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 30,
            per_conn_budget: 0,
        });
        assert_eq!(st.on_receive(80, true, &g), RecvDecision::Copy { n: 80 });
        assert!(st.ring.commit(80));
        assert_eq!(st.on_receive(50, true, &g), RecvDecision::Copy { n: 20 }); // partial
        assert!(st.ring.commit(20));
        assert_eq!(st.on_receive(1, true, &g), RecvDecision::NotAccepted);
        let w = pump(&mut st, &g);
        assert_eq!(w.len(), 2); // two slots, 30 bytes each
        let slots: Vec<usize> = w
            .iter()
            .map(|w| match w {
                Work::Send(o) => o.slot,
                _ => panic!(),
            })
            .collect();
        // Completions out of order: space is only freed in order.
        st.send_complete(slots[1], true);
        assert_eq!(st.ring.free(), 0);
        st.send_complete(slots[0], true);
        assert_eq!(st.ring.free(), 60);
        // Still inside the receive callback: a resume now could be undone by its return.
        assert!(!pump(&mut st, &g).contains(&Work::ResumeReceive));
        st.rx_callback_end();
        let w = pump(&mut st, &g);
        assert!(w.contains(&Work::ResumeReceive), "{w:?}");
        // Only one resume while pending.
        assert!(!pump(&mut st, &g).contains(&Work::ResumeReceive));
        st.resume_complete(true, 0);
        // Not re-posted by itself (it may have been lost): only after a kick.
        assert!(!pump(&mut st, &g).contains(&Work::ResumeReceive));
        assert!(st.kick(0).pump);
        assert!(pump(&mut st, &g).contains(&Work::ResumeReceive));
        st.resume_complete(true, 0);
        // An indication arrived: no more kicks.
        st.on_receive(1, true, &g);
        st.rx_callback_end();
        assert!(!st.kick(0).pump);
    }

    #[test]
    fn sockperf_keeps_header_slack() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Sockperf,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        assert_eq!(st.on_receive(200, true, &g), RecvDecision::Copy { n: 86 });
        assert!(st.ring.commit(90));
        assert_eq!(st.on_receive(5, true, &g), RecvDecision::NotAccepted);
    }

    #[test]
    fn inline_completion_does_not_recurse() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 10,
            per_conn_budget: 0,
        });
        st.on_receive(40, true, &g);
        assert!(st.ring.commit(40));
        assert!(st.enter_pump());
        let Some(Work::Send(op)) = st.next_work(&g) else {
            panic!()
        };
        // The completion routine runs inside WskSend and tries to pump: refused, flagged.
        st.send_complete(op.slot, true);
        assert!(!st.enter_pump());
        st.call_returned();
        // The owner asks again after its call returned: what the completion freed is seen.
        let mut n = 1;
        while let Some(Work::Send(op)) = st.next_work(&g) {
            st.call_returned();
            st.send_complete(op.slot, true);
            n += 1;
            assert!(n <= MAX_WORK, "the pump never runs dry");
        }
        st.leave_pump();
        assert!(st.enter_pump(), "left: the next caller owns it");
        assert!(!st.enter_pump());
        assert_eq!(n, 4);
        assert!(st.ring.is_empty());
    }

    #[test]
    fn echo_client_one_message_at_a_time() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::EchoClient { msg: 100 },
            ring_cap: 16,
            send_slots: 4,
            max_send: 1000,
            per_conn_budget: 0,
        });
        let w = pump(&mut st, &g);
        assert_eq!(w.len(), 1, "one message outstanding: {w:?}");
        let Work::Send(op) = w[0] else { panic!() };
        assert_eq!(op.kind, SendKind::Pattern { len: 100 });
        st.send_complete(op.slot, true);
        assert!(pump(&mut st, &g).is_empty(), "waits for the echo");
        st.client_received(60);
        assert_eq!(st.client.offset(), 60);
        assert!(pump(&mut st, &g).is_empty());
        st.client_received(40);
        assert_eq!(
            (st.client.messages_sent, st.client.messages_received),
            (1, 1)
        );
        assert_eq!(pump(&mut st, &g).len(), 1, "next message");
        st.peer_graceful();
        assert_eq!(st.on_receive(5, true, &g), RecvDecision::Drop);
    }

    #[test]
    fn graceful_close_after_echo_drains() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.on_receive(10, true, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        st.peer_graceful();
        let w = pump(&mut st, &g);
        let Work::Send(op) = w[0] else { panic!() };
        assert_eq!(w.len(), 1, "no disconnect while data is unsent");
        st.send_complete(op.slot, true);
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        assert!(
            pump(&mut st, &g).is_empty(),
            "close waits for the FIN to complete"
        );
        assert!(!st.disconnect_complete(true));
        assert_eq!(pump(&mut st, &g), [Work::Close]);
        assert!(pump(&mut st, &g).is_empty(), "close only once");
        assert!(st.close_complete(), "nothing else outstanding");
    }

    #[test]
    fn abort_releases_retained_before_close() {
        let g = RetainedBudget::new(1000);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 4,
            max_send: 100,
            per_conn_budget: 1000,
        });
        let RecvDecision::ZeroCopy { slot: a } = st.on_receive(10, true, &g) else {
            panic!()
        };
        assert!(st.callback_done(a, &g));
        let w = pump(&mut st, &g); // a in flight
        assert_eq!(w.len(), 1);
        let RecvDecision::ZeroCopy { slot: b } = st.on_receive(20, true, &g) else {
            panic!()
        };
        assert!(st.callback_done(b, &g));
        st.rx_callback_end();
        st.abort();
        // b (never sent, its callback returned) goes back at once; a is in flight: an abortive
        // disconnect cancels it.
        assert_eq!(
            pump(&mut st, &g),
            [
                Work::Release { slot: b },
                Work::Disconnect { abortive: true }
            ]
        );
        st.send_complete(a, false);
        st.disconnect_complete(true);
        assert_eq!(pump(&mut st, &g), [Work::Release { slot: a }, Work::Close]);
        assert_eq!(st.zc_done(), 0, "every done entry given back");
        assert_eq!(g.used(), 0);
        assert_eq!(st.on_receive(5, true, &g), RecvDecision::Drop);
    }

    #[test]
    fn paced_load_sends_only_with_a_ticket() {
        let g = RetainedBudget::new(1 << 20);
        for mode in [Mode::Source, Mode::EchoClient { msg: 10 }] {
            let mut st = TcpState::new(TcpParams {
                mode,
                ring_cap: 100,
                send_slots: 2,
                max_send: 100,
                per_conn_budget: 0,
            });
            st.client.paced = true;
            assert!(st.enter_pump());
            assert!(st.wants_ticket());
            assert_eq!(st.next_work(&g), None, "paced: no ticket, no send");
            st.client.tickets = 1;
            assert!(matches!(st.next_work(&g), Some(Work::Send(_))));
            assert_eq!(st.client.tickets, 0);
            assert_eq!(st.next_work(&g), None, "one ticket, one message");
            st.client.paced = false;
            assert_eq!(
                st.next_work(&g).is_some(),
                mode == Mode::Source,
                "unpaced source fills the slots"
            );
        }
    }

    #[test]
    fn outbound_close_waits_for_the_peer_fin() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.wait_peer_fin = true;
        st.local_shutdown();
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        assert!(!st.disconnect_complete(true));
        assert!(
            pump(&mut st, &g).is_empty(),
            "closing now would reset the peer"
        );
        st.peer_graceful();
        assert_eq!(pump(&mut st, &g), [Work::Close]);
    }

    #[test]
    fn graceful_shutdown_is_bounded() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.shutdown_limit = 3;
        st.on_receive(10, true, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        // A stop of ours (unload, job stop): echo what is queued, FIN, within the limit.
        st.local_shutdown();
        let w = pump(&mut st, &g);
        assert_eq!(w.len(), 1, "the echo goes out; the peer never reads it");
        // The clock starts at the first kick that sees the shutdown (t = 10); however many
        // ticks pass, only elapsed time counts.
        for now in [10, 11, 11, 11, 12, 13] {
            st.kick(now);
            assert!(pump(&mut st, &g).is_empty(), "t = {now}");
        }
        assert!(
            st.kick(14).pump,
            "limit reached: more than 3 units since t = 10"
        );
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: true }]);
    }

    #[test]
    fn pending_backlog_query_holds_the_context() {
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1024,
            send_slots: 4,
            max_send: 16 * 1024,
            per_conn_budget: 0,
        });
        assert!(st.query_issue());
        assert!(!st.query_issue(), "one query at a time");
        st.abort();
        let g = RetainedBudget::new(1 << 20);
        assert!(
            pump(&mut st, &g).is_empty(),
            "no close while the query call executes (C22)"
        );
        st.call_returned();
        assert_eq!(pump(&mut st, &g), [Work::Close]);
        assert!(!st.close_complete(), "the query IRP is still out");
        assert!(
            st.query_complete(None),
            "its completion recycles the context"
        );
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1024,
            send_slots: 4,
            max_send: 16 * 1024,
            per_conn_budget: 0,
        });
        assert!(st.query_issue());
        st.call_returned();
        assert!(!st.query_complete(Some(200_000)));
        assert_eq!(st.max_send(), 50_000);
    }

    #[test]
    fn close_may_complete_before_a_pending_disconnect() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.peer_graceful();
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        st.abort(); // e.g. unload's abortive phase while the FIN is still pending
        assert_eq!(pump(&mut st, &g), [Work::Close]);
        assert!(!st.close_complete(), "the disconnect IRP is still out");
        assert!(
            st.disconnect_complete(false),
            "its completion recycles the context"
        );
    }

    /// The disconnect event runs on another thread after a receive
    /// callback was entered but before it decided (G1). The bytes it carries came before the
    /// FIN: they are echoed, and our FIN goes out only after they were and the callback is
    /// over.
    #[test]
    fn bytes_of_a_receive_overlapped_by_the_fin_are_echoed_before_ours() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 4096,
            send_slots: 2,
            max_send: 4096,
            per_conn_budget: 0,
        });
        // The disconnect event finds the receive callback entered (its first act).
        st.receive_running();
        st.peer_graceful();
        assert!(
            pump(&mut st, &g).is_empty(),
            "no FIN while the callback runs"
        );
        assert!(st.needs_tick());
        // The callback now decides: its 1,500 bytes are taken, not dropped.
        assert_eq!(
            st.on_receive(1500, false, &g),
            RecvDecision::Copy { n: 1500 }
        );
        assert!(st.ring.commit(1500));
        let w = pump(&mut st, &g);
        let [Work::Send(op)] = w[..] else {
            panic!("{w:?}")
        };
        st.send_complete(op.slot, true);
        assert!(
            pump(&mut st, &g).is_empty(),
            "the callback has not ended yet"
        );
        st.rx_callback_end();
        // The housekeeper's visit pumps: FIN after the echo.
        assert!(st.kick(0).pump);
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        // After our FIN nothing more is taken.
        assert_eq!(st.on_receive(10, false, &g), RecvDecision::Drop);
        // A local stop takes nothing more either.
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 4096,
            send_slots: 2,
            max_send: 4096,
            per_conn_budget: 0,
        });
        st.local_shutdown();
        assert_eq!(st.on_receive(10, false, &g), RecvDecision::Drop);
    }

    /// The gap: a local stop (unload, job stop, idle limit) drops what is
    /// indicated; the peer's FIN that follows must not make the bytes that come with it
    /// echoed after the dropped ones (the campaign's "byte 1444 of 1500 differs": 53 bytes
    /// dropped, the last 3 echoed, a clean FIN).
    #[test]
    fn nothing_is_echoed_after_bytes_a_local_stop_dropped() {
        let g = RetainedBudget::new(0);
        for overlapped in [false, true] {
            let mut st = TcpState::new(TcpParams {
                mode: Mode::Echo,
                ring_cap: 4096,
                send_slots: 2,
                max_send: 4096,
                per_conn_budget: 0,
            });
            assert_eq!(st.on_receive(10, false, &g), RecvDecision::Copy { n: 10 });
            assert!(st.ring.commit(10));
            st.local_shutdown();
            assert_eq!(st.on_receive(53, false, &g), RecvDecision::Drop);
            st.rx_callback_end();
            // The peer's FIN, during the callback carrying the last bytes or before it.
            if overlapped {
                st.receive_running();
            }
            st.peer_graceful();
            assert_eq!(
                st.on_receive(3, false, &g),
                RecvDecision::Drop,
                "bytes after a dropped indication taken (overlapped {overlapped})"
            );
        }
    }

    /// After the peer's FIN, the echo it is owed is bounded by progress, not by
    /// DisconnectTimeoutMs (a stop-and-unload limit): a slow reader is not cut after the
    /// shutdown limit, a peer that stops reading is aborted after the progress limit.
    #[test]
    fn echo_owed_after_the_peers_fin_is_bounded_by_progress() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.shutdown_limit = 3;
        st.progress_limit = 50;
        st.on_receive(10, false, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        st.peer_graceful();
        let w = pump(&mut st, &g);
        assert_eq!(w.len(), 1, "the echo goes out");
        for now in [10, 20, 40, 60] {
            assert!(!st.kick(now).pump, "t = {now}: cut by the shutdown limit");
            assert!(pump(&mut st, &g).is_empty(), "t = {now}");
        }
        let k = st.kick(61);
        assert!(
            k.progress_timeout && k.pump,
            "no progress for more than 50: aborted"
        );
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: true }]);
    }

    /// Refused bytes: the last indication before the peer's FIN was only
    /// partly taken (the ring was full). Our FIN waits until the resume has brought the rest
    /// back and it is echoed; before, the FIN went out as soon as the ring drained and the
    /// refused bytes were lost (the close then reset: a soak's "reset after 196608 of 200000").
    #[test]
    fn refused_bytes_before_the_fin_are_echoed_before_ours() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 64,
            send_slots: 2,
            max_send: 64,
            per_conn_budget: 0,
        });
        assert_eq!(st.on_receive(100, false, &g), RecvDecision::Copy { n: 64 });
        assert!(st.ring.commit(64));
        st.rx_callback_end();
        st.peer_graceful();
        let w = pump(&mut st, &g);
        let [Work::Send(op)] = w[..] else {
            panic!("{w:?}")
        };
        st.send_complete(op.slot, true);
        // The ring is empty: the resume goes out, and no FIN while the 36 bytes are away.
        assert_eq!(pump(&mut st, &g), [Work::ResumeReceive]);
        st.resume_complete(true, 0);
        assert!(
            pump(&mut st, &g).is_empty(),
            "FIN before the refused bytes came back"
        );
        // They come back in a callback after the disconnect event: taken and echoed, then FIN.
        assert_eq!(st.on_receive(36, false, &g), RecvDecision::Copy { n: 36 });
        assert!(st.ring.commit(36));
        st.rx_callback_end();
        let w = pump(&mut st, &g);
        let [Work::Send(op)] = w[..] else {
            panic!("{w:?}")
        };
        st.send_complete(op.slot, true);
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
    }

    /// While the accept callback runs, nothing closes the socket being
    /// accepted, even an abort from an event that came early on another thread; once it
    /// ends, the housekeeper's next visit pumps the close.
    #[test]
    fn no_close_before_the_accept_callback_ends() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 64,
            send_slots: 2,
            max_send: 64,
            per_conn_budget: 0,
        });
        st.accept_begin();
        st.abort();
        assert!(
            pump(&mut st, &g).is_empty(),
            "no close inside the accept callback"
        );
        st.accept_end();
        assert!(st.needs_tick());
        assert!(st.kick(0).pump);
        assert_eq!(pump(&mut st, &g), [Work::Close]);
        // An accepted source connection starts sending from that visit, not inside accept.
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 0,
            send_slots: 2,
            max_send: 64,
            per_conn_budget: 0,
        });
        st.accept_begin();
        st.accept_end();
        assert!(st.kick(0).pump);
        assert!(matches!(pump(&mut st, &g)[..], [Work::Send(_), ..]));
    }

    /// The receive callback's end asks `needs_tick_when_idle` instead of `needs_tick` once it
    /// has seen `idle`: the two agree in idle states, a due pump (the accept callback's
    /// leftover) included; the seeded walk compares them at every pump as well.
    #[test]
    fn needs_tick_when_idle_is_needs_tick() {
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 64,
            send_slots: 2,
            max_send: 64,
            per_conn_budget: 0,
        });
        assert!(st.idle());
        assert!(!st.needs_tick());
        assert!(!st.needs_tick_when_idle());
        st.accept_begin();
        st.accept_end();
        assert!(st.idle());
        assert!(st.needs_tick(), "the housekeeper's visit is due");
        assert!(st.needs_tick_when_idle());
        let _ = st.kick(0);
        assert!(st.idle());
        assert!(!st.needs_tick());
        assert!(!st.needs_tick_when_idle());
    }

    #[test]
    fn close_waits_for_executing_calls() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Discard,
            ring_cap: 16,
            send_slots: 1,
            max_send: 16,
            per_conn_budget: 0,
        });
        st.abort();
        st.calls = 1; // another thread is inside a WSK call
        assert!(st.enter_pump());
        assert_eq!(st.next_work(&g), None);
        st.calls = 0;
        assert_eq!(st.next_work(&g), Some(Work::Close));
    }

    #[test]
    fn source_keeps_slots_busy_until_abort() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 16,
            send_slots: 3,
            max_send: 1000,
            per_conn_budget: 0,
        });
        assert!(st.enter_pump());
        let mut n = 0;
        while let Some(Work::Send(op)) = st.next_work(&g) {
            assert_eq!(op.kind, SendKind::Pattern { len: 753 });
            st.call_returned();
            n += 1;
            assert!(n <= 3);
        }
        assert_eq!(n, 3);
        st.leave_pump();
        st.abort();
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: true }]);
        for s in 0..3 {
            st.send_complete(s, false);
        }
        assert_eq!(pump(&mut st, &g), [Work::Close]);
    }

    #[test]
    fn idle_connection_is_closed_gracefully_after_the_idle_limit() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.idle_limit = 100;
        assert_eq!(st.kick(1000), Kick::default(), "the clock starts here");
        // Traffic restarts the clock.
        st.on_receive(10, true, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        let w = pump(&mut st, &g);
        let Work::Send(op) = w[0] else { panic!() };
        st.send_complete(op.slot, true);
        assert!(!st.kick(1090).idle_timeout);
        assert!(!st.kick(1150).idle_timeout, "quiet for 60 units only");
        let k = st.kick(1191);
        assert!(k.idle_timeout && k.pump, "{k:?}");
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        // Counted once.
        assert!(!st.kick(5000).idle_timeout);
    }

    #[test]
    fn peer_that_never_reads_is_aborted_after_the_progress_limit() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        st.progress_limit = 500;
        st.idle_limit = 100; // owed echo is not idleness
        let RecvDecision::ZeroCopy { slot } = st.on_receive(50, true, &g) else {
            panic!()
        };
        assert!(st.callback_done(slot, &g));
        st.rx_callback_end();
        assert_eq!(
            pump(&mut st, &g).len(),
            1,
            "the echo goes out and never completes"
        );
        for now in [0, 200, 400, 500] {
            let k = st.kick(now);
            assert!(!k.progress_timeout && !k.idle_timeout, "t = {now}: {k:?}");
        }
        let k = st.kick(501);
        assert!(k.progress_timeout && k.pump, "{k:?}");
        // The abort cancels the send (abortive disconnect); its completion frees the list.
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: true }]);
        st.send_complete(slot, false);
        assert!(!st.disconnect_complete(true));
        assert_eq!(pump(&mut st, &g), [Work::Release { slot }, Work::Close]);
        assert_eq!(g.used(), 0);
    }

    #[test]
    fn retention_deadline_turns_zero_copy_off() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1000,
            send_slots: 4,
            max_send: 1000,
            per_conn_budget: 1 << 20,
        });
        st.retain_limit = 100;
        let RecvDecision::ZeroCopy { slot } = st.on_receive(50, true, &g) else {
            panic!()
        };
        assert!(st.callback_done(slot, &g));
        st.rx_callback_end();
        pump(&mut st, &g);
        assert!(!st.kick(10).retain_timeout, "retained from here");
        assert!(!st.kick(110).retain_timeout);
        // Another list meanwhile is still zero-copy.
        assert!(matches!(
            st.on_receive(5, true, &g),
            RecvDecision::ZeroCopy { .. }
        ));
        st.rx_callback_end();
        assert!(st.kick(111).retain_timeout);
        assert_eq!(st.on_receive(5, true, &g), RecvDecision::Copy { n: 5 });
        assert!(!st.kick(500).retain_timeout, "counted once");
    }

    #[test]
    fn multi_entry_list_is_sent_entry_by_entry_and_released_once() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1000,
            send_slots: 4,
            max_send: 1000,
            per_conn_budget: 1 << 20,
        });
        let RecvDecision::ZeroCopy { slot: head } = st.on_receive_list(&[10, 20, 30], true, &g)
        else {
            panic!()
        };
        let (group, n) = st.group(head);
        assert_eq!(n, 3);
        assert_eq!(group[0], head, "the first entry is the head");
        // One send per entry, in list order.
        let w = pump(&mut st, &g);
        let sent: Vec<usize> = w
            .iter()
            .map(|w| match w {
                Work::Send(SendOp {
                    slot,
                    kind: SendKind::ZeroCopy,
                }) => *slot,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sent, group[..3]);
        assert_eq!(g.used(), 60);
        // The callback returns while sends are out: PENDING, once for the list.
        assert!(st.callback_done(head, &g));
        st.rx_callback_end();
        // Completions in any order; nothing goes back until the last one.
        st.send_complete(group[2], true);
        st.send_complete(group[0], true);
        assert!(pump(&mut st, &g).is_empty(), "entry 1 still in flight");
        st.send_complete(group[1], true);
        assert_eq!(pump(&mut st, &g), [Work::Release { slot: head }]);
        assert_eq!(g.used(), 0);
        assert_eq!(st.busy_slots(), 0);
        // All sends done before the callback returns: SUCCESS, no release later.
        let RecvDecision::ZeroCopy { slot: head } = st.on_receive_list(&[5, 5], true, &g) else {
            panic!()
        };
        let (group, _) = st.group(head);
        pump(&mut st, &g);
        st.send_complete(group[0], true);
        st.send_complete(group[1], true);
        assert!(!st.callback_done(head, &g));
        st.rx_callback_end();
        assert!(pump(&mut st, &g).is_empty());
        assert_eq!((g.used(), st.busy_slots(), st.zc_done()), (0, 0, 0));
        // More entries than free slots: copied whole.
        assert_eq!(
            st.on_receive_list(&[1, 1, 1, 1, 1], true, &g),
            RecvDecision::Copy { n: 5 }
        );
        assert_eq!(st.anomalies, 0);
    }

    // The tests below were written for mutants of the whole-crate cargo-mutants run that no
    // test caught (README, "Mutation testing"); each names the mutants it kills.

    /// Every call that names no slot or no outstanding IRP is counted exactly once per fault
    /// (kills `anomalies += 1` -> `-=`/`*=` in slot_at, irp_done and callback_done).
    #[test]
    fn each_stray_call_is_counted_once() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        // A completion for slot 99 with no IRP out: the IRP count, the slot index and the
        // empty slot are three faults.
        st.send_complete(99, true);
        assert_eq!(st.anomalies, 3);
        assert_eq!(st.irps_outstanding(), 0, "never wraps");
        // A callback ending for a list it never retained.
        assert!(!st.callback_done(1, &g));
        assert_eq!(st.anomalies, 4);
        // A query completion with no query issued.
        assert!(!st.query_complete(None));
        assert_eq!(st.anomalies, 5);
    }

    /// `close_issued` reports the close once it is handed out, not before (kills the
    /// accessor -> true / false).
    #[test]
    fn close_issued_turns_true_with_the_close() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        assert!(!st.close_issued());
        st.abort();
        assert!(!st.close_issued(), "decided, not issued yet");
        assert_eq!(pump(&mut st, &g), [Work::Close]);
        assert!(st.close_issued());
    }

    /// The per-connection retention budget: a lowered live limit applies to the next list,
    /// the first list alone is held to it, and a list given back returns its bytes (kills
    /// `set_per_conn_budget` -> (), `retained + len` -> `*`, `retained -= bytes` -> `+=`/`/=`).
    #[test]
    fn per_connection_budget_is_live_and_given_back() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1000,
            send_slots: 4,
            max_send: 1000,
            per_conn_budget: 100,
        });
        // Larger than the budget on its own, with nothing retained yet.
        assert_eq!(st.on_receive(150, true, &g), RecvDecision::Copy { n: 150 });
        st.rx_callback_end();
        assert!(st.ring.commit(150));
        for w in pump(&mut st, &g) {
            let Work::Send(op) = w else { panic!("{w:?}") };
            st.send_complete(op.slot, true);
        }
        assert!(st.ring.is_empty());
        // 60 retained and given back: the whole budget (100) is free again.
        let RecvDecision::ZeroCopy { slot } = st.on_receive(60, true, &g) else {
            panic!()
        };
        pump(&mut st, &g);
        st.send_complete(slot, true);
        assert!(!st.callback_done(slot, &g), "done inline: nothing retained");
        st.rx_callback_end();
        assert_eq!(st.retained, 0);
        let RecvDecision::ZeroCopy { slot } = st.on_receive(100, true, &g) else {
            panic!("exactly the budget is zero-copy")
        };
        pump(&mut st, &g);
        st.send_complete(slot, true);
        assert!(!st.callback_done(slot, &g));
        st.rx_callback_end();
        // Lowered while running: the next list is held to the new limit.
        st.set_per_conn_budget(10);
        assert_eq!(st.on_receive(50, true, &g), RecvDecision::Copy { n: 50 });
        assert_eq!(g.used(), 0);
    }

    /// A list with an empty entry is never zero-copy: an empty entry has nothing to send
    /// (kills `l > 0` -> `l >= 0`).
    #[test]
    fn a_list_with_an_empty_entry_is_copied() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 1000,
            send_slots: 4,
            max_send: 1000,
            per_conn_budget: 1 << 20,
        });
        assert_eq!(
            st.on_receive_list(&[10, 0, 5], true, &g),
            RecvDecision::Copy { n: 15 }
        );
        assert_eq!((st.busy_slots(), g.used()), (0, 0));
    }

    /// No DisconnectTimeoutMs (0) means a graceful close of ours is never cut by time (kills
    /// `shutdown_limit > 0` -> `>= 0`).
    #[test]
    fn no_shutdown_limit_never_aborts() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.on_receive(10, true, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        st.local_shutdown();
        assert_eq!(
            pump(&mut st, &g).len(),
            1,
            "the echo goes out, never completes"
        );
        for now in [0, 10, 1_000_000, u64::MAX / 2] {
            assert_eq!(st.kick(now), Kick::default(), "t = {now}");
            assert!(pump(&mut st, &g).is_empty(), "t = {now}");
        }
    }

    /// A connection that never sees a byte is idle from its first tick, and the idle limit
    /// is "more than", to the unit (kills `progress != seen || quiet_since.is_none()` ->
    /// `&&`, `quiet > idle_limit` -> `>=`, `idle_limit > 0` -> `>= 0`).
    #[test]
    fn idle_from_the_first_tick_and_to_the_unit() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.idle_limit = 100;
        assert_eq!(st.kick(0), Kick::default());
        assert!(
            !st.kick(100).idle_timeout,
            "exactly the limit is not past it"
        );
        let k = st.kick(101);
        assert!(k.idle_timeout && k.pump, "{k:?}");
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        // No idle limit: never closed for idleness.
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 0,
        });
        for now in [0, 1, 1_000_000] {
            assert_eq!(st.kick(now), Kick::default(), "t = {now}");
        }
    }

    /// After a stop of ours (a local shutdown: our FIN owed, no echo owed) the progress limit
    /// does not apply: that close is bounded by `shutdown_limit` alone; and an abort is
    /// reported once, not again by later ticks (kills `PeerDone && owes_echo` -> `||` and
    /// `echoing && !close_issued` -> `||`).
    #[test]
    fn progress_limit_is_for_echo_owed_only() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.progress_limit = 100;
        st.on_receive(10, true, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        st.local_shutdown();
        assert_eq!(
            pump(&mut st, &g).len(),
            1,
            "the echo goes out, never completes"
        );
        for now in [0, 101, 10_000] {
            assert_eq!(st.kick(now), Kick::default(), "t = {now}");
        }
        // Echo owed while open: the progress abort fires once; a tick before the pump
        // does not report it again.
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.progress_limit = 100;
        st.on_receive(10, true, &g);
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        assert_eq!(pump(&mut st, &g).len(), 1);
        assert!(!st.kick(0).progress_timeout);
        assert!(st.kick(101).progress_timeout);
        assert!(!st.kick(1000).progress_timeout, "counted once");
    }

    /// Refused indications alone (nothing queued, nothing in flight: a ring with no room)
    /// are echo owed: the peer's data waits in the stack (kills `|| rx_blocked` -> `&&`).
    #[test]
    fn refused_data_alone_is_owed_echo() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 0,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.progress_limit = 100;
        st.idle_limit = 50;
        assert_eq!(st.on_receive(10, false, &g), RecvDecision::NotAccepted);
        st.rx_callback_end();
        assert!(st.ring.is_empty() && st.busy_slots() == 0);
        assert!(!st.kick(0).idle_timeout);
        let k = st.kick(101);
        assert!(k.progress_timeout && !k.idle_timeout, "{k:?}");
    }

    /// Which connections the housekeeper must visit (kills `needs_tick` -> true and each
    /// `||`/`&&`/`!`/`!=` mutant in it).
    #[test]
    fn needs_tick_only_with_work_for_the_tick() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 0,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        assert!(!st.needs_tick(), "fresh and open");
        // Refused data, no resume out: the tick posts one.
        assert_eq!(st.on_receive(10, false, &g), RecvDecision::NotAccepted);
        st.rx_callback_end();
        assert!(st.needs_tick());
        assert!(st.kick(0).pump);
        assert_eq!(pump(&mut st, &g), [Work::ResumeReceive]);
        assert!(!st.needs_tick(), "the resume is out");
        st.resume_complete(true, 0);
        assert!(st.needs_tick(), "blocked still: retried from the tick");
        // An accept callback that ended: the tick pumps.
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        st.accept_begin();
        assert!(!st.needs_tick());
        st.accept_end();
        assert!(st.needs_tick());
        assert!(st.kick(0).pump);
        assert!(!st.needs_tick());
        // A finished list whose callback is gone, phase open: the tick releases it.
        let RecvDecision::ZeroCopy { slot } = st.on_receive(10, true, &g) else {
            panic!()
        };
        pump(&mut st, &g);
        assert!(st.callback_done(slot, &g));
        assert!(!st.needs_tick(), "its send is out");
        st.send_complete(slot, true);
        assert!(st.needs_tick());
        st.rx_callback_end();
        assert_eq!(pump(&mut st, &g), [Work::Release { slot }]);
        assert!(!st.needs_tick());
        // Not open: the shutdown is bounded by the tick; once closed, never.
        st.peer_graceful();
        assert!(st.needs_tick());
        assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: false }]);
        assert!(!st.disconnect_complete(true));
        assert_eq!(pump(&mut st, &g), [Work::Close]);
        assert!(!st.needs_tick());
    }

    /// A retained list is due back only when every send is done and its callback's reference
    /// is gone (kills `release_due` -> true/false, `zc_done > 0` -> `==`/`<`, `&&` -> `||`).
    #[test]
    fn release_due_needs_the_send_and_the_callback_done() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        assert!(!st.release_due());
        let RecvDecision::ZeroCopy { slot } = st.on_receive(10, true, &g) else {
            panic!()
        };
        pump(&mut st, &g);
        assert!(!st.release_due(), "send out");
        st.send_complete(slot, true);
        assert!(!st.release_due(), "the callback still holds it");
        assert!(
            !st.callback_done(slot, &g),
            "done inline: SUCCESS, nothing retained"
        );
        assert!(!st.release_due());
        st.rx_callback_end();
        // The callback returns PENDING first, then the send completes.
        let RecvDecision::ZeroCopy { slot } = st.on_receive(10, true, &g) else {
            panic!()
        };
        pump(&mut st, &g);
        assert!(st.callback_done(slot, &g));
        assert!(!st.release_due(), "send out");
        st.send_complete(slot, true);
        assert!(st.release_due());
        st.rx_callback_end();
        assert_eq!(pump(&mut st, &g), [Work::Release { slot }]);
        assert!(!st.release_due());
    }

    /// A paced source's message size is what the job sets (kills `set_max_send` -> ()).
    #[test]
    fn set_max_send_sets_the_message_size() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.set_max_send(300);
        assert_eq!(st.max_send(), 300);
        st.set_max_send(0);
        assert_eq!(st.max_send(), 1, "never a zero-length send");
        // Rounded to the pattern period by the source: 600 -> 2 periods, 100 -> 1.
        st.set_max_send(600);
        assert!(st.enter_pump());
        let len = super::super::source::send_len(600);
        assert_ne!(len, super::super::source::send_len(100));
        assert_eq!(
            st.next_work(&g),
            Some(Work::Send(SendOp {
                slot: 0,
                kind: SendKind::Pattern { len },
            }))
        );
    }

    /// Only a paced message mode, open, with a free slot, wants a ticket (kills
    /// `wants_ticket` -> true and both `&&` -> `||`).
    #[test]
    fn wants_ticket_only_when_a_ticket_is_all_that_is_missing() {
        let g = RetainedBudget::new(0);
        let mut echo = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        echo.client.paced = true;
        assert!(!echo.wants_ticket(), "served echo takes no tickets");
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.client.paced = true;
        assert!(st.wants_ticket());
        st.client.tickets = 1;
        assert!(st.enter_pump());
        assert!(matches!(st.next_work(&g), Some(Work::Send(_))));
        st.call_returned();
        assert!(!st.wants_ticket(), "its one slot is busy");
        st.leave_pump();
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.client.paced = true;
        st.abort();
        assert!(!st.wants_ticket(), "aborting");
    }

    /// Every IRP handed to WSK is counted: a pattern send (echo client and source) and the
    /// abortive disconnect that cancels a send (kills `irps += 1` -> `*=`/`-=` in next_work
    /// and teardown_work).
    #[test]
    fn every_irp_handed_out_is_counted() {
        let g = RetainedBudget::new(0);
        for mode in [Mode::Source, Mode::EchoClient { msg: 10 }] {
            let mut st = TcpState::new(TcpParams {
                mode,
                ring_cap: 100,
                send_slots: 1,
                max_send: 100,
                per_conn_budget: 0,
            });
            assert_eq!(pump(&mut st, &g).len(), 1, "{mode:?}");
            assert_eq!(st.irps_outstanding(), 1, "{mode:?}");
            // The abort cancels the send: the disconnect is a second IRP.
            st.abort();
            assert_eq!(pump(&mut st, &g), [Work::Disconnect { abortive: true }]);
            assert_eq!(st.irps_outstanding(), 2, "{mode:?}");
            st.send_complete(0, false);
            assert!(!st.disconnect_complete(true));
            assert_eq!(st.irps_outstanding(), 0, "{mode:?}");
            assert_eq!(pump(&mut st, &g), [Work::Close]);
            assert!(st.close_complete(), "{mode:?}: the close was the last IRP");
            assert_eq!(st.anomalies, 0, "{mode:?}");
        }
    }

    /// The peer's FIN while a zero-copy echo is in flight (the ring empty): our FIN waits for
    /// the send (kills `!(idle_sends && ring.is_empty())` -> `||`).
    #[test]
    fn our_fin_waits_for_a_zero_copy_send() {
        let g = RetainedBudget::new(1 << 20);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 2,
            max_send: 100,
            per_conn_budget: 1 << 20,
        });
        let RecvDecision::ZeroCopy { slot } = st.on_receive(10, true, &g) else {
            panic!()
        };
        assert_eq!(pump(&mut st, &g).len(), 1);
        assert!(st.callback_done(slot, &g));
        st.rx_callback_end();
        st.peer_graceful();
        assert!(st.ring.is_empty());
        assert!(pump(&mut st, &g).is_empty(), "the echo is still out");
        st.send_complete(slot, true);
        assert_eq!(
            pump(&mut st, &g),
            [Work::Release { slot }, Work::Disconnect { abortive: false }]
        );
    }

    /// A WSK call made outside the pump (an outbound socket's connect) holds the close back
    /// until it returns (kills `call_begin` -> () and `calls += 1` -> `-=`/`*=`).
    #[test]
    fn call_begin_holds_the_close() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Source,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        st.call_begin();
        st.abort();
        assert!(pump(&mut st, &g).is_empty(), "a call is executing");
        st.call_returned();
        assert_eq!(pump(&mut st, &g), [Work::Close]);
    }

    /// Copy-path sends complete in and out of order, round after round: each round frees
    /// its ring bytes and its slots (kills `ring_len -= 1` -> `+=`/`/=`).
    #[test]
    fn ring_sends_are_freed_round_after_round() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 3,
            max_send: 20,
            per_conn_budget: 0,
        });
        for round in 0..20 {
            assert_eq!(st.on_receive(50, false, &g), RecvDecision::Copy { n: 50 });
            assert!(st.ring.commit(50));
            st.rx_callback_end();
            let slots: Vec<usize> = pump(&mut st, &g)
                .iter()
                .map(|w| match w {
                    Work::Send(SendOp {
                        slot,
                        kind: SendKind::Ring { .. },
                    }) => *slot,
                    other => panic!("round {round}: {other:?}"),
                })
                .collect();
            assert_eq!(slots.len(), 3, "round {round}: 20 + 20 + 10");
            // Odd rounds complete out of order: nothing is freed before the oldest.
            if round % 2 == 1 {
                st.send_complete(slots[2], true);
                st.send_complete(slots[1], true);
                assert_eq!(st.ring.free(), 50, "round {round}");
                st.send_complete(slots[0], true);
            } else {
                for s in slots {
                    st.send_complete(s, true);
                }
            }
            assert!(st.ring.is_empty(), "round {round}");
            assert_eq!(st.busy_slots(), 0, "round {round}");
        }
        assert_eq!(st.anomalies, 0);
    }

    /// A completion the ring does not account for (more bytes than it has in flight: the
    /// ring changed under the send) is counted, and the slot still freed (kills the count's
    /// `+=` -> `-=`/`*=`).
    #[test]
    fn a_ring_completion_the_ring_cannot_take_is_counted() {
        let g = RetainedBudget::new(0);
        let mut st = TcpState::new(TcpParams {
            mode: Mode::Echo,
            ring_cap: 100,
            send_slots: 1,
            max_send: 100,
            per_conn_budget: 0,
        });
        assert_eq!(st.on_receive(10, false, &g), RecvDecision::Copy { n: 10 });
        assert!(st.ring.commit(10));
        st.rx_callback_end();
        let [Work::Send(op)] = pump(&mut st, &g)[..] else {
            panic!()
        };
        st.ring = ByteRing::new(100);
        st.send_complete(op.slot, true);
        assert_eq!(st.anomalies, 1);
        assert_eq!(st.busy_slots(), 0);
    }
}
