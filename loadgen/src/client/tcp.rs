//! TCP engine: every connection is a non-blocking socket in the worker's mio event loop; a fixed
//! send and receive buffer per connection, so nothing is allocated per message.

use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcp;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::pacer::Pacer;
use super::stats::Stats;
use super::wire::{Check, SendTimes};
use super::{Clock, Mode, RunConfig, Wire, Worker};

/// How long after the end a run waits for the last echoes.
/// Target bytes per write in sink/stream mode.
const TX_CHUNK: usize = 256 * 1024;
/// Buffer memory a worker aims for over all its connections (smaller chunks with many conns).
const BUF_BUDGET: usize = 16 << 20;
/// Writes one connection may do before the loop moves on.
const MAX_WRITES_PER_TURN: usize = 16;
/// Whether a short read may end a read turn without waiting for WouldBlock (see `read_conn`).
const SHORT_READ_MEANS_EMPTY: bool = !cfg!(windows);

/// Sequence bookkeeping of one connection (apart from the buffers, so both can be borrowed).
struct SeqState {
    flow: u32,
    /// Next sequence to generate.
    next_seq: u64,
    /// Next sequence whose echo is due.
    expect_seq: u64,
    /// Messages asking for an echo, sent and not yet echoed.
    outstanding: u64,
    times: Option<SendTimes>,
    /// Paced runs: when each message was actually generated and written (wrk2's uncorrected
    /// latency counts from it).
    actual: Option<SendTimes>,
}

struct Conn {
    sock: TcpStream,
    flow: u32,
    tx: Vec<u8>,
    tx_pos: usize,
    tx_len: usize,
    rx: Vec<u8>,
    rx_len: usize,
    s: SeqState,
    /// Source mode: stream offset of `rx[0]`.
    src_off: u64,
    /// The send schedule of a paced run (`--rate`).
    pacer: Option<Pacer>,
    readable: bool,
    writable: bool,
    /// The poller said the peer closed (or the socket failed): read until end-of-file, even
    /// after a short read, since no further event will come for it.
    closing: bool,
    dead: bool,
    /// TCP_INFO's tcpi_total_retrans at the last reading.
    retrans_seen: u64,
}

fn connect(cfg: &RunConfig) -> io::Result<StdTcp> {
    let s = Socket::new(
        Domain::for_address(cfg.target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    cfg.sock.apply(&s, cfg.target)?;
    s.connect_timeout(&cfg.target.into(), cfg.connect_timeout)?;
    s.set_nodelay(cfg.sock.nodelay)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

pub(crate) fn worker(w: &Worker) -> Stats {
    let cfg = &*w.cfg;
    let mut st = Stats::for_worker(w.book.clone(), w.index);
    let mut conns = Vec::with_capacity(w.flows.len());
    let poll = Poll::new();
    let mut poll = match poll {
        Ok(p) => Some(p),
        Err(e) => {
            st.errors.io += 1;
            st.note(format!("cannot create event loop: {e}"));
            None
        }
    };
    let interval = w.interval_ns();
    let chunk = (BUF_BUDGET / w.flows.len().max(1)).clamp(16 * 1024, TX_CHUNK);
    let msgs_per_chunk = (chunk / cfg.size).max(1);
    for (i, &flow) in w.flows.iter().enumerate() {
        let Some(p) = poll.as_mut() else { break };
        match connect(cfg) {
            Ok(s) => {
                let mut sock = TcpStream::from_std(s);
                if let Err(e) = p.registry().register(
                    &mut sock,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    st.errors.io += 1;
                    st.note(format!("register socket: {e}"));
                    continue;
                }
                let tx_cap = match cfg.mode {
                    Mode::Pingpong => cfg.size,
                    Mode::Source => 0,
                    _ => cfg.size * msgs_per_chunk,
                };
                conns.push(Conn {
                    sock,
                    flow,
                    tx: vec![0; tx_cap],
                    tx_pos: 0,
                    tx_len: 0,
                    rx: vec![0; (cfg.size * 2).max(chunk)],
                    rx_len: 0,
                    s: SeqState {
                        flow,
                        next_seq: 0,
                        expect_seq: 0,
                        outstanding: 0,
                        times: (cfg.wire == Wire::Sockperf).then(|| SendTimes::new(65_536)),
                        actual: interval.is_some().then(|| SendTimes::new(65_536)),
                    },
                    src_off: 0,
                    pacer: interval.map(|iv| Pacer::new(iv, flow, cfg.conns)),
                    readable: true,
                    writable: true,
                    closing: false,
                    dead: false,
                    retrans_seen: 0,
                });
            }
            Err(e) => {
                // The rest would fail the same way, each after a full timeout at worst.
                st.errors.connect += (w.flows.len() - i) as u64;
                st.note(format!("connect to {} (tcp): {e}", cfg.target));
                break;
            }
        }
    }
    let clock = w.sync_start();
    let Some(mut poll) = poll else { return st };
    let mut events = Events::with_capacity(1024);
    let window_msgs = (cfg.window_bytes / cfg.size).max(1) as u64;
    let mut last_live = (0u64, 0u64, 0u64);
    loop {
        let now = clock.now_ns();
        if st.boundary_due(now) {
            read_retransmits(&mut conns, &mut st);
        }
        st.tick(now, clock.warm_end_ns, clock.end_ns());
        let ending = now >= clock.end_ns();
        let mut busy = false;
        let mut next_due = u64::MAX;
        for c in &mut conns {
            if c.dead {
                continue;
            }
            if c.readable {
                busy |= read_conn(c, cfg, &clock, &mut st);
            }
            if c.dead || cfg.mode == Mode::Source {
                continue;
            }
            // Closed and windowed loops get their quota from the echoes; paced loops from time.
            let quota = if ending {
                0
            } else {
                match (cfg.mode, c.pacer) {
                    (Mode::Pingpong, _) => u64::from(c.s.outstanding == 0),
                    (_, Some(p)) => {
                        let q = p.quota(now, c.s.next_seq, &mut next_due);
                        if cfg.mode == Mode::Stream {
                            q.min(window_msgs.saturating_sub(c.s.outstanding))
                        } else {
                            q
                        }
                    }
                    (Mode::Stream, None) => window_msgs.saturating_sub(c.s.outstanding),
                    _ => u64::MAX,
                }
            };
            if c.writable && (c.tx_pos < c.tx_len || quota > 0) {
                busy |= write_conn(c, cfg, &clock, quota, &mut st);
            }
        }
        let all_done = conns.iter().all(|c| {
            c.dead
                || (ending
                    && c.tx_pos >= c.tx_len
                    && (c.s.outstanding == 0 || matches!(cfg.mode, Mode::Sink | Mode::Source)))
        });
        if all_done {
            break;
        }
        if ending && now >= clock.end_ns() + cfg.tcp_drain.as_nanos() as u64 {
            let silent: Vec<u32> = conns
                .iter()
                .filter(|c| !c.dead && c.s.outstanding > 0 && c.s.expect_seq == 0)
                .map(|c| c.flow)
                .collect();
            for c in conns.iter().filter(|c| !c.dead && c.s.outstanding > 0) {
                st.errors.lost += c.s.outstanding;
                if c.s.expect_seq > 0 {
                    st.note(format!(
                        "connection {}: {} {} missing {} s after the end",
                        c.flow,
                        c.s.outstanding,
                        if c.s.outstanding == 1 {
                            "echo"
                        } else {
                            "echoes"
                        },
                        cfg.tcp_drain.as_secs_f64()
                    ));
                }
            }
            // Not one echo on a connection: the server took it and never answered (a
            // sockperf server that serves some connections only, a discard service, ...).
            match silent.as_slice() {
                [] => {}
                [one] => st.note(format!(
                    "connection {one} never answered (is {} an echo service?)",
                    cfg.target
                )),
                many => st.note(format!(
                    "{} connections never answered ({}{}; is {} an echo service?)",
                    many.len(),
                    many.iter()
                        .take(8)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if many.len() > 8 { ", ..." } else { "" },
                    cfg.target
                )),
            }
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
        if cfg.busy_poll {
            // Spin: try every socket each turn instead of sleeping in epoll (lowest latency).
            for x in &mut conns {
                x.readable = true;
                x.writable = true;
            }
            continue;
        }
        let timeout = if cfg.busy_poll || busy {
            Some(Duration::ZERO)
        } else {
            let limit = if ending {
                clock.end_ns() + cfg.tcp_drain.as_nanos() as u64
            } else {
                clock.end_ns().min(next_due)
            };
            let wait = limit.saturating_sub(clock.now_ns());
            // epoll sleeps in whole milliseconds: spin for the last one.
            Some(
                Duration::from_nanos(wait.saturating_sub(1_000_000)).min(Duration::from_millis(50)),
            )
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                st.errors.io += 1;
                st.note(format!("poll: {e}"));
                break;
            }
        }
        for ev in &events {
            let c = &mut conns[ev.token().0];
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                c.readable = true;
            }
            if ev.is_read_closed() || ev.is_error() {
                c.closing = true;
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                c.writable = true;
            }
        }
    }
    // The last interval's retransmissions (it is handed in when the worker closes).
    read_retransmits(&mut conns, &mut st);
    for c in &conns {
        if let Some(i) = super::sysinfo::tcp_info(&c.sock) {
            st.tcp_info.add(&i);
        }
    }
    // Served: still open at the end, or echoed at least once before it ended.
    st.conns_served += conns
        .iter()
        .filter(|c| !c.dead || c.s.expect_seq > 0)
        .count() as u64;
    st
}

fn fail(c: &mut Conn, st: &mut Stats, what: &str, cfg: &RunConfig) {
    c.dead = true;
    st.errors.io += 1;
    st.note(format!("tcp {} flow {}: {what}", cfg.target, c.flow));
}

/// Reads what is there and checks every complete message; true if any progress was made.
fn read_conn(c: &mut Conn, cfg: &RunConfig, clock: &Clock, st: &mut Stats) -> bool {
    let mut progress = false;
    for _ in 0..MAX_WRITES_PER_TURN {
        let n = match c.sock.read(&mut c.rx[c.rx_len..]) {
            Ok(0) => {
                let expecting = c.s.outstanding > 0
                    || (cfg.mode == Mode::Source && clock.now_ns() < clock.end_ns());
                let mid_run = clock.now_ns() < clock.end_ns();
                if expecting || mid_run {
                    fail(c, st, "connection closed by the server mid-run", cfg);
                } else {
                    c.dead = true;
                }
                return progress;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.readable = false;
                return progress;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                fail(c, st, &format!("receive failed: {e}"), cfg);
                return progress;
            }
        };
        progress = true;
        // A short read means the socket buffer is empty now; with edge-triggered polling the
        // next arrival raises a new event, so skip the read that would only say EAGAIN. Not
        // when the end-of-file came with the same event: nothing would report it again. Not on
        // Windows: mio re-arms its AFD poll there only after a call returned WouldBlock, so a
        // skipped read leaves the socket without events for good (one echo, then silence).
        let drained = SHORT_READ_MEANS_EMPTY && c.rx_len + n < c.rx.len() && !c.closing;
        c.rx_len += n;
        let now = clock.now_ns();
        let counting = clock.measuring(now);
        match cfg.mode {
            Mode::Source => {
                if cfg.verify_source {
                    if let Some(i) = control::protocol::pattern::check(c.src_off, &c.rx[..c.rx_len])
                    {
                        st.errors.corrupted += 1;
                        fail(
                            c,
                            st,
                            &format!("source stream corrupt at offset {}", c.src_off + i as u64),
                            cfg,
                        );
                        return progress;
                    }
                }
                c.src_off += c.rx_len as u64;
                if counting {
                    st.recv_bytes += c.rx_len as u64;
                    st.recv_msgs += c.rx_len as u64 / cfg.size as u64;
                }
                c.rx_len = 0;
            }
            Mode::Sink => c.rx_len = 0, // a discard server sends nothing; ignore noise
            _ => {
                let size = cfg.size;
                let mut pos = 0;
                while c.rx_len - pos >= size {
                    if !check_echo(&mut c.s, cfg, &c.rx[pos..pos + size], now, clock, st) {
                        fail(
                            c,
                            st,
                            "echoed stream out of sync (corrupt header or wrong sequence)",
                            cfg,
                        );
                        return progress;
                    }
                    pos += size;
                }
                c.rx.copy_within(pos..c.rx_len, 0);
                c.rx_len -= pos;
            }
        }
        if drained {
            c.readable = false;
            return progress;
        }
    }
    progress
}

/// Adds each connection's retransmissions since the last reading to the worker's count (the
/// `retransmits` of the interval lines); a connection without TCP_INFO (not Linux) adds
/// nothing and is not counted as read.
fn read_retransmits(conns: &mut [Conn], st: &mut Stats) {
    let mut read = 0;
    for c in conns.iter_mut().filter(|c| !c.dead) {
        if let Some(i) = super::sysinfo::tcp_info(&c.sock) {
            st.tcp_retrans += i.retransmits.saturating_sub(c.retrans_seen);
            c.retrans_seen = c.retrans_seen.max(i.retransmits);
            read += 1;
        }
    }
    st.tcp_retrans_conns = read;
}

/// Checks one echo. It counts as received when its message was sent inside the measured
/// window (as the sent side counts it), whenever the echo arrives.
fn check_echo(
    c: &mut SeqState,
    cfg: &RunConfig,
    msg: &[u8],
    now: u64,
    clock: &Clock,
    st: &mut Stats,
) -> bool {
    match cfg.wire.check(c.flow, msg) {
        Check::Ok { seq, ts_ns } if seq == c.expect_seq => {
            let ts = ts_ns.or_else(|| c.times.as_ref().and_then(|t| t.get(seq)));
            if clock.measuring(ts.unwrap_or(now)) {
                st.recv_msgs += 1;
                st.recv_bytes += msg.len() as u64;
                if let Some(ts) = ts {
                    st.record_latency(now.saturating_sub(ts));
                }
                if let Some(a) = c.actual.as_ref().and_then(|t| t.get(seq)) {
                    let _ = st.uncorrected.record(now.saturating_sub(a).max(1));
                }
            }
            advance_expect(c, cfg);
            true
        }
        Check::BadBody { seq } if seq == c.expect_seq => {
            st.errors.corrupted += 1;
            st.note(format!(
                "tcp {} flow {}: corrupted bytes in echo of message {seq}",
                cfg.target, c.flow
            ));
            advance_expect(c, cfg);
            true
        }
        _ => {
            st.errors.corrupted += 1;
            false
        }
    }
}

fn advance_expect(c: &mut SeqState, cfg: &RunConfig) {
    c.outstanding = c.outstanding.saturating_sub(1);
    c.expect_seq += 1;
    // At most reply_every steps: every reply_every-th message asks for an echo.
    while !cfg.wants_reply(c.expect_seq) {
        c.expect_seq += 1;
    }
}

/// Generates up to `quota` messages when the buffer is empty and writes; true on progress.
#[allow(clippy::too_many_arguments)]
fn write_conn(c: &mut Conn, cfg: &RunConfig, clock: &Clock, quota: u64, st: &mut Stats) -> bool {
    let mut progress = false;
    let mut quota = quota;
    // Bounded so one busy connection cannot starve the others (or miss the end of the run).
    for _ in 0..MAX_WRITES_PER_TURN {
        if c.tx_pos >= c.tx_len {
            if quota == 0 {
                return progress;
            }
            let now = clock.now_ns();
            let n = ((c.tx.len() / cfg.size) as u64).min(quota) as usize;
            for k in 0..n {
                let seq = c.s.next_seq;
                let ts = c.pacer.map_or(now, |p| p.due_at(seq));
                let reply = cfg.wants_reply(seq);
                cfg.wire.build(
                    c.flow,
                    seq,
                    ts,
                    reply,
                    &mut c.tx[k * cfg.size..(k + 1) * cfg.size],
                );
                if let Some(t) = c.s.times.as_mut() {
                    t.put(seq, ts);
                }
                if let Some(t) = c.s.actual.as_mut() {
                    t.put(seq, now);
                    if clock.measuring(ts) {
                        let _ = st.send_lag.record(now.saturating_sub(ts).max(1));
                    }
                }
                if reply {
                    c.s.outstanding += 1;
                }
                c.s.next_seq += 1;
                // By the time the message carries, so both sides count the same window.
                if clock.measuring(ts) {
                    st.sent_msgs += 1;
                    st.sent_bytes += cfg.size as u64;
                }
            }
            quota -= n as u64;
            c.tx_pos = 0;
            c.tx_len = n * cfg.size;
        }
        match c.sock.write(&c.tx[c.tx_pos..c.tx_len]) {
            Ok(0) => {
                fail(c, st, "connection closed while sending", cfg);
                return progress;
            }
            Ok(n) => {
                c.tx_pos += n;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.writable = false;
                return progress;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                fail(c, st, &format!("send failed: {e}"), cfg);
                return progress;
            }
        }
    }
    progress
}
