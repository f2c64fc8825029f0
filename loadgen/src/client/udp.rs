//! UDP engine: one connected socket per flow, all flows of a worker in one mio event loop;
//! sends and receives go through [`super::batch`] (sendmmsg/GSO/recvmmsg on Linux).

use std::io;
use std::net::UdpSocket as StdUdp;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::{gso_segments, keep_icmp_errors, take_icmp_error, RxBatch, TxBatch};
use super::pacer::Pacer;
use super::spin::{SpinCounts, SpinGate, Verdict};
use super::stats::{Jitter, SeqEvent, SeqTracker, Stats};
use super::wire::{Check, SendTimes};
use super::{Clock, Mode, RunConfig, Wire, Worker};
use crate::payload;

const SOCK_BUF: usize = 4 << 20;

struct Flow {
    sock: UdpSocket,
    /// Global flow id (part of every message's pattern).
    id: u32,
    next_seq: u64,
    /// Sent messages that ask for a reply (ping-pong/source: requests).
    replies_wanted: u64,
    tracker: SeqTracker,
    /// Stream mode: replies given up on after a stall (so the window reopens).
    written_off: u64,
    last_progress_ns: u64,
    /// Ping-pong/source: time the outstanding request was sent.
    waiting_since: Option<u64>,
    times: Option<SendTimes>,
    /// Paced runs: the actual send time of each message (wrk2's uncorrected latency).
    actual: Option<SendTimes>,
    /// The send schedule of a paced run (`--rate`).
    pacer: Option<Pacer>,
    got_any: bool,
    readable: bool,
    writable: bool,
    dead: bool,
    /// The sequences whose send time lies in the measured window, `[lo, hi)`: the time a
    /// message carries grows with its sequence, so they are one range (hi: none yet past it).
    measured_lo: Option<u64>,
    measured_hi: Option<u64>,
    /// Of those, the ones that ask for a reply, and the ones whose reply came (first arrivals,
    /// corrupted ones included: those count as corrupted, not as lost).
    wanted_in: u64,
    answered_in: u64,
    /// Index of this flow's jitter in the worker's [`Stats::jitter`].
    slot: usize,
    /// Highest sequence answered so far: a first arrival above it shows the wanted replies
    /// in between missing (counted lost in the interval where the gap shows, as iperf3 does).
    seen_high: Option<u64>,
    /// This flow's share of `Stats::errors.lost` (gaps, net of late arrivals taken back).
    counted_lost: u64,
    /// Late arrivals of replies a gap had counted lost, not taken back yet (the loss was in
    /// an interval already handed in); settled against later gaps or at the end.
    pending_fill: u64,
}

impl Flow {
    fn outstanding(&self) -> u64 {
        self.replies_wanted
            .saturating_sub(self.tracker.unique + self.written_off)
    }

    /// Books a sent message for the loss count over the measured window.
    fn on_sent(&mut self, seq: u64, measuring: bool, wants_reply: bool) {
        if measuring {
            if self.measured_lo.is_none() {
                self.measured_lo = Some(seq);
            }
            if wants_reply {
                self.wanted_in += 1;
            }
        } else if self.measured_lo.is_some() && self.measured_hi.is_none() {
            self.measured_hi = Some(seq);
        }
    }

    /// Books the first arrival of the reply to `seq`; a gap below it counts the wanted
    /// replies of the measured window in it as lost now, a late arrival takes one back.
    fn on_answered(&mut self, seq: u64, cfg: &RunConfig, st: &mut Stats) {
        let lo = self.measured_lo.unwrap_or(u64::MAX);
        let hi = self.measured_hi.unwrap_or(u64::MAX);
        let measured = seq >= lo && seq < hi;
        if measured {
            self.answered_in += 1;
        }
        match self.seen_high {
            Some(h) if seq < h => {
                if measured && wants_reply(cfg, seq) {
                    if self.counted_lost > 0 && st.unlose() {
                        self.counted_lost -= 1;
                    } else {
                        self.pending_fill += 1;
                    }
                }
            }
            prev => {
                let from = prev.map_or(lo, |h| h + 1).max(lo);
                let gap = wanted_between(cfg, from, seq.min(hi));
                let settled = gap.min(self.pending_fill);
                self.pending_fill -= settled;
                self.counted_lost += gap - settled;
                st.errors.lost += gap - settled;
                self.seen_high = Some(seq);
            }
        }
    }

    /// At the end: this flow's loss becomes exactly `lost_in()` (none for a flow that failed:
    /// it counts once, as its error). Returns the losses that could not be taken back because
    /// an earlier interval reported them (they leave the total, not that interval).
    fn settle(&mut self, st: &mut Stats) -> u64 {
        let target = if self.dead { 0 } else { self.lost_in() };
        let net = self.counted_lost.saturating_sub(self.pending_fill);
        if target >= net {
            st.errors.lost += target - net;
            return 0;
        }
        let mut stuck = 0;
        for _ in 0..net - target {
            if !st.unlose() {
                stuck += 1;
            }
        }
        stuck
    }

    /// Replies to messages of the measured window that never came.
    fn lost_in(&self) -> u64 {
        self.wanted_in.saturating_sub(self.answered_in)
    }
}

/// Whether the reply to `seq` is one the client waits for (source requests all are).
fn wants_reply(cfg: &RunConfig, seq: u64) -> bool {
    cfg.mode == Mode::Source || cfg.wants_reply(seq)
}

/// How many of the sequences `from..to` want a reply.
fn wanted_between(cfg: &RunConfig, from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    if cfg.mode == Mode::Rate && cfg.wire == Wire::Sockperf && cfg.reply_every > 1 {
        // Multiples of N in [from, to).
        let n = cfg.reply_every;
        return to.div_ceil(n) - from.div_ceil(n);
    }
    if matches!(cfg.mode, Mode::Sink) {
        return 0;
    }
    to - from
}

fn open(cfg: &RunConfig) -> io::Result<StdUdp> {
    let s = Socket::new(
        Domain::for_address(cfg.target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // Best effort: larger buffers absorb bursts; the kernel clamps to its limits.
    let _ = s.set_send_buffer_size(SOCK_BUF);
    let _ = s.set_recv_buffer_size(SOCK_BUF);
    cfg.sock.apply(&s, cfg.target)?;
    keep_icmp_errors(&s, cfg.target.is_ipv6())?;
    s.connect(&cfg.target.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

pub(crate) fn worker(w: &Worker) -> Stats {
    let cfg = &*w.cfg;
    let mut st = Stats::for_worker(w.book.clone(), w.index);
    let interval = w.interval_ns();
    let mut flows = Vec::with_capacity(w.flows.len());
    let mut poll = match Poll::new() {
        Ok(p) => Some(p),
        Err(e) => {
            st.errors.io += 1;
            st.note(format!("cannot create event loop: {e}"));
            None
        }
    };
    for (i, &flow) in w.flows.iter().enumerate() {
        let Some(p) = poll.as_mut() else { break };
        let r = open(cfg).and_then(|s| {
            let mut sock = UdpSocket::from_std(s);
            p.registry()
                .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            Ok(sock)
        });
        match r {
            Ok(sock) => flows.push(Flow {
                sock,
                id: flow,
                next_seq: 0,
                replies_wanted: 0,
                tracker: SeqTracker::default(),
                written_off: 0,
                last_progress_ns: 0,
                waiting_since: None,
                times: (cfg.wire == Wire::Sockperf).then(|| SendTimes::new(65_536)),
                actual: (interval.is_some() && cfg.mode != Mode::Sink)
                    .then(|| SendTimes::new(65_536)),
                pacer: interval.map(|iv| Pacer::new(iv, flow, cfg.conns)),
                got_any: false,
                readable: true,
                writable: true,
                dead: false,
                measured_lo: None,
                measured_hi: None,
                wanted_in: 0,
                answered_in: 0,
                slot: i,
                seen_high: None,
                counted_lost: 0,
                pending_fill: 0,
            }),
            Err(e) => {
                st.errors.connect += 1;
                st.note(format!("udp socket for {}: {e}", cfg.target));
            }
        }
    }
    st.jitter = vec![Jitter::default(); w.flows.len()];
    let closed_loop = matches!(cfg.mode, Mode::Pingpong | Mode::Source);
    let segs = if cfg.gso && !closed_loop {
        gso_segments(cfg.size, cfg.gso_segments)
    } else {
        1
    };
    let per_call = if closed_loop {
        1
    } else {
        cfg.batch.max(1) * segs
    };
    let mut tx = TxBatch::new(cfg.batch, segs > 1);
    let mut txbuf = vec![0u8; per_call * cfg.size];
    let mut rx = RxBatch::new(if closed_loop { 4 } else { cfg.batch }, cfg.size + 1);
    let window_msgs = (cfg.window_bytes / cfg.size).max(1) as u64;
    let timeout_ns = cfg.udp_timeout.as_nanos() as u64;

    let clock = w.sync_start();
    let Some(mut poll) = poll else { return st };
    let mut events = Events::with_capacity(1024);
    let mut last_live = (0u64, 0u64, 0u64);
    // One closed-loop flow on this thread: a blocking receive needs two system calls per round
    // trip (send, receive) instead of three (send, epoll_wait, receive) — visible in the p50.
    // With --busy-poll the same loop spins on a non-blocking receive instead.
    let blocking = cfg!(unix) && flows.len() == 1 && closed_loop;
    if blocking {
        closed_loop_blocking(&mut flows[0], cfg, &clock, &mut txbuf, &mut st);
    } else if flows.len() == 1 && closed_loop && !cfg.busy_poll {
        // Windows: the single flow runs in the event loop below, and there is no per-call
        // MSG_DONTWAIT to spin with (toggling FIONBIO twice a round would cost more than the
        // spin saves): as `--spin 0`, and the report says so.
        st.spin = Some(SpinCounts::default());
    }
    loop {
        if blocking {
            break;
        }
        let now = clock.now_ns();
        st.tick(now, clock.warm_end_ns, clock.end_ns());
        let ending = now >= clock.end_ns();
        let mut busy = false;
        let mut next_due = u64::MAX;
        for f in &mut flows {
            if f.dead {
                continue;
            }
            if f.readable {
                busy |= read_flow(f, cfg, &clock, &mut rx, &mut st);
            }
            if f.dead || ending {
                continue;
            }
            let quota: u64 = match (cfg.mode, f.pacer) {
                (Mode::Pingpong | Mode::Source, _) => match f.waiting_since {
                    Some(t) if now < t + timeout_ns => {
                        next_due = next_due.min(t + timeout_ns);
                        0
                    }
                    _ => 1,
                },
                (_, Some(p)) => p.quota(now, f.next_seq, &mut next_due),
                (Mode::Stream, None) => {
                    if f.outstanding() > 0 && now > f.last_progress_ns + timeout_ns {
                        // Stalled: write the missing replies off so the window reopens; they
                        // stay counted as lost at the end unless they still arrive.
                        f.written_off = f.replies_wanted - f.tracker.unique;
                        f.last_progress_ns = now;
                    }
                    window_msgs.saturating_sub(f.outstanding())
                }
                _ => u64::MAX,
            };
            if quota > 0 && f.writable {
                busy |= send_flow(
                    f,
                    cfg,
                    &clock,
                    quota.min(per_call as u64) as usize,
                    &mut tx,
                    segs,
                    &mut txbuf,
                    &mut st,
                    now,
                );
            }
        }
        let drained = flows
            .iter()
            .all(|f| f.dead || cfg.mode == Mode::Sink || f.outstanding() == 0);
        if ending && (drained || now >= clock.end_ns() + timeout_ns) {
            break;
        }
        let live = (st.sent_bytes, st.recv_bytes, st.recv_msgs.max(st.sent_msgs));
        if live != last_live {
            w.live
                .sent_bytes
                .fetch_add(live.0 - last_live.0, Ordering::Relaxed);
            w.live
                .recv_bytes
                .fetch_add(live.1 - last_live.1, Ordering::Relaxed);
            w.live
                .msgs
                .fetch_add(live.2 - last_live.2, Ordering::Relaxed);
            last_live = live;
        }
        if flows.iter().all(|f| f.dead) {
            break;
        }
        if cfg.busy_poll {
            // Spin: try every socket each turn instead of sleeping in epoll (lowest latency).
            for x in &mut flows {
                x.readable = true;
                x.writable = true;
            }
            continue;
        }
        let timeout = if cfg.busy_poll || busy {
            Duration::ZERO
        } else {
            let limit = if ending {
                clock.end_ns() + timeout_ns
            } else {
                clock.end_ns().min(next_due)
            };
            let wait = limit.saturating_sub(clock.now_ns());
            Duration::from_nanos(wait.saturating_sub(1_000_000)).min(Duration::from_millis(50))
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                st.errors.io += 1;
                st.note(format!("poll: {e}"));
                break;
            }
        }
        for ev in &events {
            let f = &mut flows[ev.token().0];
            if ev.is_readable() || ev.is_error() {
                f.readable = true;
            }
            if ev.is_writable() || ev.is_error() {
                f.writable = true;
            }
        }
    }
    if cfg.mode != Mode::Sink {
        // Over the same window as sent and received: replies to warm-up messages are not the
        // measurement's. A flow that failed is counted once, as its error.
        // Losses so far were counted as gaps showed them; the end settles each flow to its
        // exact count (the trailing ones no later reply revealed go to the last interval).
        let mut stuck = 0;
        for f in &mut flows {
            stuck += f.settle(&mut st);
        }
        // Replies taken back after their interval was reported: the total stays exact, the
        // earlier interval keeps the count it printed.
        st.errors.lost -= stuck.min(st.errors.lost);
        if stuck > 0 {
            st.note(format!(
                "udp {}: {stuck} {} reported lost in an earlier interval arrived later (not in \
                 the total)",
                cfg.target,
                plural(stuck, "reply", "replies")
            ));
        }
        let live = || flows.iter().filter(|f| !f.dead);
        let lost: u64 = live().map(Flow::lost_in).sum();
        if lost > 0 {
            st.note(format!(
                "udp {}: {lost} {} never arrived (lost)",
                cfg.target,
                plural(lost, "reply", "replies")
            ));
        }
        let warm: u64 = live()
            .map(|f| {
                f.replies_wanted
                    .saturating_sub(f.tracker.unique)
                    .saturating_sub(f.lost_in())
            })
            .sum();
        if warm > 0 {
            st.note(format!(
                "udp {}: {warm} {} to warm-up messages never arrived (not counted as lost)",
                cfg.target,
                plural(warm, "reply", "replies")
            ));
        }
    }
    st
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn flow_error(f: &mut Flow, cfg: &RunConfig, st: &mut Stats, e: &io::Error) {
    f.dead = true;
    let what = if e.kind() == io::ErrorKind::ConnectionRefused {
        "connection refused (ICMP port unreachable: nothing listens there)".to_string()
    } else {
        e.to_string()
    };
    if f.got_any {
        st.errors.io += 1;
    } else {
        st.errors.connect += 1;
    }
    st.note(format!("udp {} flow {}: {what}", cfg.target, f.id));
}

#[allow(clippy::too_many_arguments)]
fn send_flow(
    f: &mut Flow,
    cfg: &RunConfig,
    clock: &Clock,
    n: usize,
    tx: &mut TxBatch,
    segs: usize,
    buf: &mut [u8],
    st: &mut Stats,
    now: u64,
) -> bool {
    let size = cfg.size;
    for k in 0..n {
        let seq = f.next_seq + k as u64;
        let m = &mut buf[k * size..(k + 1) * size];
        if cfg.mode == Mode::Source {
            // The request's content does not matter to a source server; make it verifiable anyway.
            payload::fill_pattern(f.id, seq, m);
        } else {
            let ts = f.pacer.map_or(now, |p| p.due_at(seq));
            cfg.wire.build(f.id, seq, ts, cfg.wants_reply(seq), m);
            if let Some(t) = f.times.as_mut() {
                t.put(seq, ts);
            }
        }
    }
    match tx.send(&f.sock, buf, size, n, segs) {
        Ok(sent) => {
            for seq in f.next_seq..f.next_seq + sent as u64 {
                let wants = cfg.wants_reply(seq) || cfg.mode == Mode::Source;
                if wants {
                    f.replies_wanted += 1;
                }
                let ts = match (cfg.mode, f.pacer) {
                    (Mode::Source, _) | (_, None) => now,
                    (_, Some(p)) => p.due_at(seq),
                };
                f.on_sent(seq, clock.measuring(ts), wants);
            }
            if f.replies_wanted > 0 && f.last_progress_ns == 0 {
                f.last_progress_ns = now;
            }
            f.next_seq += sent as u64;
            if matches!(cfg.mode, Mode::Pingpong | Mode::Source) && sent > 0 {
                f.waiting_since = Some(now);
            }
            // By the time each message carries (intended time when paced), as the receive
            // side counts it.
            for k in 0..sent as u64 {
                let seq = f.next_seq - sent as u64 + k;
                let ts = match (cfg.mode, f.pacer) {
                    (Mode::Source, _) | (_, None) => now,
                    (_, Some(p)) => p.due_at(seq),
                };
                if clock.measuring(ts) {
                    st.sent_msgs += 1;
                    st.sent_bytes += size as u64;
                }
                if let Some(t) = f.actual.as_mut() {
                    t.put(seq, now);
                    if clock.measuring(ts) {
                        let _ = st.send_lag.record(now.saturating_sub(ts).max(1));
                    }
                }
            }
            if sent < n {
                // A short batch: the send buffer is full, or a datagram failed with an error
                // the batch call does not return (an ICMP port unreachable, say).
                if let Some(e) = take_icmp_error(&f.sock) {
                    flow_error(f, cfg, st, &e);
                    return sent > 0;
                }
                f.writable = false;
            }
            sent > 0
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            f.writable = false;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
        Err(e) => {
            flow_error(f, cfg, st, &e);
            false
        }
    }
}

fn read_flow(
    f: &mut Flow,
    cfg: &RunConfig,
    clock: &Clock,
    rx: &mut RxBatch,
    st: &mut Stats,
) -> bool {
    let mut progress = false;
    // Bounded so a flood on one flow cannot starve the others or the end-of-run check.
    for _ in 0..64 {
        let n = match rx.recv(&f.sock) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                f.readable = false;
                return progress;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                flow_error(f, cfg, st, &e);
                return progress;
            }
        };
        if n == 0 {
            f.readable = false;
            return progress;
        }
        // Fewer than a full batch: the queue is empty now (edge-triggered polling reports the
        // next arrival), so skip the receive call that would only say EAGAIN.
        let drained = n < rx.capacity();
        progress = true;
        f.got_any = true;
        let now = clock.now_ns();
        f.last_progress_ns = now;
        for i in 0..n {
            on_datagram(f, cfg, rx.msg(i), now, clock, st, None);
        }
        if drained {
            f.readable = false;
            return progress;
        }
    }
    progress
}

/// Checks one reply and books it (latency, sequence events, errors). A reply counts as
/// received when its request was sent inside the measured window (as the sent side counts
/// it), whenever it arrives.
/// `sent`: the outstanding request's sequence and bytes, when at hand (the blocking
/// ping-pong), so the reply is checked against them ([`Wire::check_echo`]).
fn on_datagram(
    f: &mut Flow,
    cfg: &RunConfig,
    msg: &[u8],
    now: u64,
    clock: &Clock,
    st: &mut Stats,
    sent: Option<(u64, &[u8])>,
) {
    if cfg.mode == Mode::Sink {
        return;
    }
    if cfg.mode == Mode::Source {
        // No sequence in a source reply: it answers the one outstanding request.
        let ok = msg.len() == cfg.size
            && (!cfg.verify_source || control::protocol::pattern::check(0, msg).is_none());
        if !ok {
            st.errors.corrupted += 1;
            st.note(format!(
                "udp {} flow {}: source reply of {} bytes does not match the pattern",
                cfg.target,
                f.id,
                msg.len()
            ));
        }
        if let Some(t) = f.waiting_since.take() {
            let seq = f.next_seq - 1;
            if f.tracker.on_recv(seq) != SeqEvent::Duplicate {
                f.on_answered(seq, cfg, st);
            }
            if ok && clock.measuring(t) {
                st.recv_msgs += 1;
                st.recv_bytes += msg.len() as u64;
                st.record_latency(now.saturating_sub(t));
                st.jitter[f.slot].on_arrival(now as i64 - t as i64);
            }
        } else {
            st.errors.duplicated += 1;
        }
        return;
    }
    let check = if msg.len() == cfg.size {
        match sent {
            Some((seq, req)) => cfg.wire.check_echo(f.id, msg, seq, req),
            None => cfg.wire.check(f.id, msg),
        }
    } else {
        Check::BadHeader
    };
    match check {
        Check::Ok { seq, ts_ns } if seq < f.next_seq => {
            let ev = f.tracker.on_recv(seq);
            if ev == SeqEvent::Duplicate {
                st.errors.duplicated += 1;
                return;
            }
            f.on_answered(seq, cfg, st);
            if ev == SeqEvent::Reordered {
                st.errors.reordered += 1;
            }
            if f.waiting_since.is_some() && seq + 1 == f.next_seq {
                f.waiting_since = None;
            }
            let ts = ts_ns.or_else(|| f.times.as_ref().and_then(|t| t.get(seq)));
            if clock.measuring(ts.unwrap_or(now)) {
                st.recv_msgs += 1;
                st.recv_bytes += msg.len() as u64;
                if let Some(ts) = ts {
                    st.record_latency(now.saturating_sub(ts));
                    st.jitter[f.slot].on_arrival(now as i64 - ts as i64);
                }
                if let Some(a) = f.actual.as_ref().and_then(|t| t.get(seq)) {
                    let _ = st.uncorrected.record(now.saturating_sub(a).max(1));
                }
            }
        }
        Check::BadBody { seq } if seq < f.next_seq => {
            // Attributed: counted as corrupted, not as lost.
            if f.tracker.on_recv(seq) == SeqEvent::Duplicate {
                st.errors.duplicated += 1;
            } else {
                f.on_answered(seq, cfg, st);
            }
            st.errors.corrupted += 1;
            st.note(format!(
                "udp {} flow {}: corrupted reply to message {seq}",
                cfg.target, f.id
            ));
            if f.waiting_since.is_some() && seq + 1 == f.next_seq {
                f.waiting_since = None;
            }
        }
        _ => {
            st.errors.corrupted += 1;
            st.note(format!(
                "udp {} flow {}: unattributable reply ({} bytes, bad header)",
                cfg.target,
                f.id,
                msg.len()
            ));
        }
    }
}

/// Ping-pong (or source request/reply) of a single flow with a blocking receive.
fn closed_loop_blocking(
    f: &mut Flow,
    cfg: &RunConfig,
    clock: &Clock,
    txbuf: &mut [u8],
    st: &mut Stats,
) {
    let timeout = cfg.udp_timeout.max(Duration::from_millis(1));
    if cfg.busy_poll {
        // Spin on the non-blocking socket: no sleep, no wake-up, a core per flow (no limit:
        // `--spin` has nothing to add).
        blocking_rounds(f, cfg, clock, txbuf, st, None);
        return;
    }
    // The bounded spin before each blocking receive (`--spin`): Linux only, where a receive
    // takes MSG_DONTWAIT on a blocking socket.
    st.spin = Some(SpinCounts {
        budget_ns: if plain::CAN_SPIN {
            cfg.spin.as_nanos().min(u128::from(u64::MAX)) as u64
        } else {
            0
        },
        available: plain::CAN_SPIN,
        ..SpinCounts::default()
    });
    if let Err(e) = socket2::SockRef::from(&f.sock).set_nonblocking(false) {
        flow_error(f, cfg, st, &e);
        return;
    }
    // No receive timeout on the socket (a kernel timer per wait, ~1 % of a loopback round
    // trip here): a watchdog interrupts the receive when a reply is overdue.
    #[cfg(unix)]
    if super::wakeup::guarded(clock, timeout, |since| {
        blocking_rounds(f, cfg, clock, txbuf, st, Some(since));
    })
    .is_some()
    {
        return;
    }
    if let Err(e) = socket2::SockRef::from(&f.sock).set_read_timeout(Some(timeout)) {
        flow_error(f, cfg, st, &e);
        return;
    }
    blocking_rounds(f, cfg, clock, txbuf, st, None);
}

/// The request/reply rounds of [`closed_loop_blocking`]. `since` (watchdog mode): where the
/// outstanding request's send time goes; without it the socket has a receive timeout, or is
/// non-blocking (`--busy-poll`, spinning until the deadline).
fn blocking_rounds(
    f: &mut Flow,
    cfg: &RunConfig,
    clock: &Clock,
    txbuf: &mut [u8],
    st: &mut Stats,
    since: Option<&std::sync::atomic::AtomicU64>,
) {
    let size = cfg.size;
    let timeout_ns = cfg.udp_timeout.max(Duration::from_millis(1)).as_nanos() as u64;
    let mut buf = vec![0u8; size + 1];
    // A message that carries no time (sockperf's header, a source request) is built before
    // the clock is read, and that one read is both the end check and the send time: one
    // clock read before the send and one after the receive per round trip, as sockperf
    // (`setTxTime`, `rxTime.setNow()`), and building is not part of the round trip.
    let carries_time = cfg.mode != Mode::Source && cfg.wire != Wire::Sockperf;
    // `--busy-poll` (a non-blocking socket, polled until the deadline) has no spin budget.
    let mut gate = SpinGate::new(match &st.spin {
        Some(c) if !cfg.busy_poll => c.budget_ns,
        _ => 0,
    });
    while !f.dead {
        let seq = f.next_seq;
        let m = &mut txbuf[..size];
        if cfg.mode == Mode::Source {
            payload::fill_pattern(f.id, seq, m);
        } else if !carries_time {
            cfg.wire.build(f.id, seq, 0, true, m);
        }
        let now = clock.now_ns();
        let end = clock.end_ns();
        st.tick(now, clock.warm_end_ns, end);
        if now >= end {
            break;
        }
        if carries_time {
            cfg.wire.build(f.id, seq, now, true, m);
        }
        if cfg.mode != Mode::Source {
            if let Some(t) = f.times.as_mut() {
                t.put(seq, now);
            }
        }
        if let Some(s) = since {
            s.store(now, Ordering::Relaxed);
        }
        match plain::send(&f.sock, m) {
            Ok(_) => {
                f.on_sent(seq, clock.measuring(now), true);
                f.next_seq += 1;
                f.replies_wanted += 1;
                f.waiting_since = Some(now);
                if clock.measuring(now) {
                    st.sent_msgs += 1;
                    st.sent_bytes += size as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                flow_error(f, cfg, st, &e);
                break;
            }
        }
        let deadline = now + timeout_ns;
        let measured = clock.measuring(now);
        // When the reply to this round's request came (for the gate's trials).
        let mut answered_at = None;
        if let Some(budget) = gate.round() {
            answered_at = spin_for_reply(f, cfg, clock, &txbuf[..size], &mut buf, st, seq, {
                // Never past the reply's deadline (a --spin longer than --udp-timeout).
                deadline.min(now.saturating_add(budget))
            });
            if f.dead {
                break;
            }
            let caught = answered_at.is_some();
            let backed_off = if caught {
                gate.caught();
                false
            } else {
                gate.missed()
            };
            if let (true, Some(c)) = (measured, st.spin.as_mut()) {
                c.spun += 1;
                c.caught += u64::from(caught);
                c.backoffs += u64::from(backed_off);
            }
        }
        // No clock read before the receive: it returns only with a datagram, a timeout or the
        // watchdog's signal, and the deadline is checked on each of those.
        while f.waiting_since.is_some() {
            match plain::recv(&f.sock, &mut buf) {
                Ok(n) => {
                    f.got_any = true;
                    let t = clock.now_ns();
                    let sent = (cfg.mode != Mode::Source).then(|| (seq, &txbuf[..size]));
                    on_datagram(f, cfg, &buf[..n], t, clock, st, sent);
                    if f.waiting_since.is_none() {
                        answered_at = Some(t);
                        if let (true, Some(c)) = (measured, st.spin.as_mut()) {
                            c.blocked += 1;
                        }
                    }
                    // Stray or duplicate datagrams must not stretch the wait past the timeout.
                    if t >= deadline {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && cfg.busy_poll => {
                    if clock.now_ns() >= deadline {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if clock.now_ns() >= deadline {
                        break;
                    }
                }
                Err(e) => {
                    flow_error(f, cfg, st, &e);
                    break;
                }
            }
        }
        if let Some(t) = answered_at {
            // Trials count over the whole run: the first one runs in the warm-up.
            if let (Some(v), Some(c)) = (gate.answered(t.saturating_sub(now)), st.spin.as_mut()) {
                c.trials += 1;
                c.blocking_won += u64::from(v == Verdict::Block);
            }
        }
    }
    #[cfg(unix)]
    if let Some(s) = since {
        s.store(super::wakeup::IDLE, Ordering::Relaxed);
    }
}

/// The spin of one round: polls a non-blocking receive until the reply to `seq` (sent as
/// `req`) is in, or the clock reaches `until`. Every datagram is checked and booked as the
/// blocking receive does it (strays and duplicates too). Some: the clock time the reply came
/// while spinning.
#[allow(clippy::too_many_arguments)]
fn spin_for_reply(
    f: &mut Flow,
    cfg: &RunConfig,
    clock: &Clock,
    req: &[u8],
    buf: &mut [u8],
    st: &mut Stats,
    seq: u64,
    until: u64,
) -> Option<u64> {
    // Bounded in time by `until` (one clock read per poll), and so in count.
    loop {
        match plain::recv_nowait(&f.sock, buf) {
            Ok(n) => {
                f.got_any = true;
                let t = clock.now_ns();
                let sent = (cfg.mode != Mode::Source).then_some((seq, req));
                on_datagram(f, cfg, &buf[..n], t, clock, st, sent);
                if f.waiting_since.is_none() {
                    return Some(t);
                }
                if t >= until {
                    return None;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                if clock.now_ns() >= until {
                    return None;
                }
                std::hint::spin_loop();
            }
            Err(e) => {
                flow_error(f, cfg, st, &e);
                return None;
            }
        }
    }
}

/// send(2) and recv(2) of the ping-pong's connected socket. On Linux they go straight to the
/// system call: in a process with more than one thread glibc's `send`/`recv` (cancellation
/// points) switch asynchronous thread cancellation on and off around it, ~60 instructions a
/// call (callgrind: `__pthread_enable_asynccancel`/`disable`, about a tenth of the client's
/// own instructions per round trip), for a feature echoload never uses. sockperf's client is
/// single-threaded, which glibc's wrappers see and skip.
mod plain {
    use std::io;

    use mio::net::UdpSocket;

    #[cfg(target_os = "linux")]
    pub(super) fn send(sock: &UdpSocket, buf: &[u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: sendto(fd, buf, len, flags 0, no address, 0) on a socket we own, reading
        // `buf.len()` bytes of a live slice; every argument is passed as a full `c_long`, as
        // the variadic `syscall` reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sendto,
                libc::c_long::from(sock.as_raw_fd()),
                buf.as_ptr(),
                buf.len(),
                0 as libc::c_long,
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::c_long,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    #[cfg(target_os = "linux")]
    pub(super) fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
        recv_flags(sock, buf, 0)
    }

    /// recvfrom(2) of the connected socket with `flags`, no address.
    #[cfg(target_os = "linux")]
    #[inline]
    fn recv_flags(sock: &UdpSocket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: recvfrom(fd, buf, len, flags, no address) on a socket we own, writing at
        // most `buf.len()` bytes into a live, exclusively borrowed slice; every argument is
        // passed as a full `c_long`, as the variadic `syscall` reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                libc::c_long::from(sock.as_raw_fd()),
                buf.as_mut_ptr(),
                buf.len(),
                libc::c_long::from(flags),
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Whether [`recv_nowait`] exists here (the bounded spin of `--spin`).
    pub(super) const CAN_SPIN: bool = cfg!(target_os = "linux");

    /// recv(2) with MSG_DONTWAIT: non-blocking for this call only, on a blocking socket (no
    /// fcntl or FIONBIO per round).
    #[cfg(target_os = "linux")]
    pub(super) fn recv_nowait(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
        recv_flags(sock, buf, libc::MSG_DONTWAIT)
    }

    /// Never called off Linux ([`CAN_SPIN`] is false there): says so if it were.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn recv_nowait(_sock: &UdpSocket, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn send(sock: &UdpSocket, buf: &[u8]) -> io::Result<usize> {
        sock.send(buf)
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
        sock.recv(buf)
    }
}
