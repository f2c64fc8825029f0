//! Outbound load job (kernel-side load generation): N TCP connections made with
//! WskSocketConnect to a target, each running the source pattern (send only) or an echo client
//! (one message of the source pattern at a time, echo verified byte for byte), for a duration.
//! Started through the control ABI. Connection contexts come from the same pre-sized pool as
//! accepted connections (the pool limit covers both) and run on the same engine with this
//! room's `tcp::HOOKS`. UDP jobs: `udp`. A non-zero rate paces both (a ticket per message from
//! a budget the housekeeping tick raises).

mod tcp;
mod udp;

use control::config::Limit;
use core::net::SocketAddr;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use control::config::Proto;
use control::ioctl::{JobState, LoadJob, LoadPattern, LoadStatus};
use wsk_sys::{NTSTATUS, STATUS_NOT_SUPPORTED};

use crate::datapath::DataPath;
use crate::kernel::lock::SpinLock;
use crate::kernel::time;
use crate::logic::source::PATTERN_LEN;
use crate::logic::tcp::Mode;
use crate::stats::Counter;
use udp::UdpJob;

pub(crate) struct Job {
    pub(crate) id: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) spec: SpinLock<Option<LoadJob>>,
    pub(crate) started: AtomicU64,
    pub(crate) deadline: AtomicU64,
    pub(crate) open: AtomicU32,
    pub(crate) connect_failures: AtomicU32,
    pub(crate) first_error: AtomicI32,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) verify_failures: AtomicU64,
    pub(crate) stop_requested: AtomicBool,
    /// Rate pacing: messages allowed so far (raised by the housekeeping tick from the job's
    /// rate and elapsed time; u64::MAX when unpaced) and tickets handed out.
    pub(crate) allowed: AtomicU64,
    pub(crate) issued: AtomicU64,
    /// The UDP job's socket and contexts (null for TCP jobs and once closed). Freed by the
    /// housekeeper when the job has stopped, or by unload once the housekeeping pass that may have
    /// read it has ended.
    pub(crate) udp: AtomicPtr<UdpJob>,
}

impl Job {
    pub(crate) const fn new() -> Self {
        Self {
            id: AtomicU32::new(0),
            state: AtomicU32::new(JobState::Idle as u32),
            spec: SpinLock::new(None),
            started: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            open: AtomicU32::new(0),
            connect_failures: AtomicU32::new(0),
            first_error: AtomicI32::new(0),
            messages_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            verify_failures: AtomicU64::new(0),
            stop_requested: AtomicBool::new(false),
            allowed: AtomicU64::new(u64::MAX),
            issued: AtomicU64::new(0),
            udp: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn state(&self) -> JobState {
        match self.state.load(Ordering::SeqCst) {
            1 => JobState::Running,
            2 => JobState::Stopping,
            3 => JobState::Finished,
            4 => JobState::Failed,
            _ => JobState::Idle,
        }
    }

    /// One message's worth of the rate budget. Any IRQL (atomics only).
    pub(crate) fn take_ticket(&self) -> bool {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if n < self.allowed.load(Ordering::Relaxed) {
            true
        } else {
            self.issued.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }

    /// Up to `max` messages' worth of the rate budget at once (a UDP batch): how many were
    /// granted, 0 when the budget is spent. Any IRQL (atomics only). Like `take_ticket`, a
    /// racing taker may be refused for a moment by tickets given back here; it goes idle and the
    /// housekeeping tick restarts it.
    pub(crate) fn take_tickets(&self, max: u64) -> u64 {
        let n = self.issued.fetch_add(max, Ordering::Relaxed);
        let allowed = self.allowed.load(Ordering::Relaxed);
        let got = allowed.saturating_sub(n).min(max);
        if got < max {
            self.issued.fetch_sub(max - got, Ordering::Relaxed);
        }
        got
    }

    /// Budget after `elapsed` ticks of a `freq` Hz clock at `rate` messages/s: one message at
    /// once, then the rate (bursts are at most one housekeeping tick's worth).
    pub(crate) fn allowance(rate: u32, elapsed: u64, freq: u64) -> u64 {
        if rate == 0 {
            return u64::MAX;
        }
        1 + (u128::from(rate) * u128::from(elapsed) / u128::from(freq.max(1))) as u64
    }

    /// New messages may go out (running, not asked to stop). Any IRQL.
    pub(crate) fn sending(&self) -> bool {
        self.state() == JobState::Running && !self.stop_requested.load(Ordering::Relaxed)
    }

    pub(crate) fn fail(&self, status: NTSTATUS) {
        let _ = self
            .first_error
            .compare_exchange(0, status, Ordering::SeqCst, Ordering::SeqCst);
    }
}

impl Default for Job {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts a job. PASSIVE_LEVEL (control path). Returns its id.
///
/// # Safety
/// Captured provider; `d` the loaded driver.
pub(crate) unsafe fn start(d: &DataPath, job: &LoadJob) -> Result<u32, NTSTATUS> {
    let j = &d.job;
    if matches!(j.state(), JobState::Running | JobState::Stopping)
        || !j.udp.load(Ordering::SeqCst).is_null()
    {
        return Err(STATUS_DEVICE_BUSY_NT);
    }
    let msg = job.message_size as usize;
    if job.pattern == LoadPattern::Echo && msg > PATTERN_LEN {
        // One message is one send of the shared pattern block.
        return Err(STATUS_NOT_SUPPORTED);
    }
    let mode = match job.pattern {
        LoadPattern::Echo => Mode::EchoClient { msg },
        LoadPattern::Source => Mode::Source,
    };
    let paced = job.rate != 0;
    let mut udp = ptr::null_mut();
    // What the status reports: the flows the job got, not the 0 that asks for the default.
    let mut spec = *job;
    if job.proto == Proto::Udp {
        // SAFETY: captured provider, control path.
        udp = unsafe {
            UdpJob::create(
                d,
                SocketAddr::new(job.target, job.port),
                job.flows as usize,
                job.connections as usize,
                msg,
                job.pattern == LoadPattern::Echo,
            )
        }?;
        // SAFETY: just created, not yet published.
        spec.flows = unsafe { (*udp).flows() } as u32;
    }
    let id = j.id.fetch_add(1, Ordering::SeqCst) + 1;
    *j.spec.lock() = Some(spec);
    for c in [
        &j.messages_sent,
        &j.messages_received,
        &j.bytes_sent,
        &j.bytes_received,
        &j.verify_failures,
    ] {
        c.store(0, Ordering::SeqCst);
    }
    j.open.store(0, Ordering::SeqCst);
    j.connect_failures.store(0, Ordering::SeqCst);
    j.first_error.store(0, Ordering::SeqCst);
    j.stop_requested.store(false, Ordering::SeqCst);
    j.issued.store(0, Ordering::SeqCst);
    j.allowed
        .store(Job::allowance(job.rate, 0, d.perf_freq), Ordering::SeqCst);
    let now = time::now();
    j.started.store(now, Ordering::SeqCst);
    j.deadline.store(
        now + u64::from(job.duration_ms) * d.perf_freq / 1000,
        Ordering::SeqCst,
    );
    j.state.store(JobState::Running as u32, Ordering::SeqCst);
    if !udp.is_null() {
        // One per flow socket (the status's connections_open while the job holds them).
        j.open.store(spec.flows, Ordering::SeqCst);
        j.udp.store(udp, Ordering::SeqCst);
        // SAFETY: just created; only this path and the housekeeper (after it reads the
        // pointer) use it, and it is freed only once the job stopped.
        unsafe { (*udp).kick() };
        return Ok(id);
    }
    let remote = SocketAddr::new(job.target, job.port);
    for _ in 0..job.connections {
        // SAFETY: captured provider.
        if let Err(e) = unsafe { tcp::connect_one(d, remote, mode, msg, paced, job.stream) } {
            j.connect_failures.fetch_add(1, Ordering::SeqCst);
            d.count(Counter::OutboundFailures, 1);
            j.fail(e);
        }
    }
    Ok(id)
}

const STATUS_DEVICE_BUSY_NT: NTSTATUS = control::ioctl::status::STATUS_DEVICE_BUSY;

/// Unload: stops the job and closes a UDP job's socket. PASSIVE_LEVEL, housekeeper still
/// ticking.
pub(crate) fn close(d: &DataPath) {
    stop(d);
    let u = d.job.udp.swap(ptr::null_mut(), Ordering::SeqCst);
    if u.is_null() {
        return;
    }
    // The housekeeper may be inside a pass that read the pointer (its tick kicks the job's
    // sends): it is out once that pass has ended.
    d.wait_housekeeper_pass();
    // SAFETY: taken out of the job; the job is stopping, so no new send starts.
    unsafe { UdpJob::close_and_free(u, u64::from(d.live.get(Limit::DisconnectTimeoutMs))) };
}

/// Ends the job's connections gracefully (no new messages, FIN after the last send).
/// PASSIVE_LEVEL (control path or housekeeper).
pub(crate) fn stop(d: &DataPath) {
    let j = &d.job;
    if j.state() != JobState::Running {
        return;
    }
    j.stop_requested.store(true, Ordering::SeqCst);
    // The graceful phase is bounded from now (see tick).
    j.deadline.store(time::now(), Ordering::SeqCst);
    j.state.store(JobState::Stopping as u32, Ordering::SeqCst);
    d.conns.shutdown_where(false, tcp::is_job);
    // Connects still pending end now, not when (or if) the peer answers.
    tcp::cancel_connects(d);
}

/// Housekeeping: pacing, deadline and completion. PASSIVE_LEVEL.
pub(crate) fn tick(d: &DataPath) {
    let j = &d.job;
    if j.state() == JobState::Running {
        let rate = j.spec.lock().map_or(0, |s| s.rate);
        if rate != 0 {
            let elapsed = time::now().saturating_sub(j.started.load(Ordering::SeqCst));
            j.allowed
                .store(Job::allowance(rate, elapsed, d.perf_freq), Ordering::SeqCst);
            // Connections waiting for a ticket try again (their pump takes one).
            d.conns
                .pump_where(|c| tcp::is_job(c) && !c.socket.is_null());
        }
        // UDP send contexts left idle (no ticket, or their loop's round bound: see
        // udp::ROUNDS) start again, paced or not.
        let u = j.udp.load(Ordering::SeqCst);
        if !u.is_null() {
            // SAFETY: freed only by this thread below, or by unload once this pass has
            // ended (it took the pointer out first).
            unsafe { (*u).kick() };
        }
    }
    if j.state() == JobState::Stopping {
        // A connect step armed after the stop's cancel went out is cancelled now (see
        // tcp::cancel_connects).
        tcp::cancel_connects(d);
        let u = j.udp.load(Ordering::SeqCst);
        if !u.is_null()
            // SAFETY: as above.
            && unsafe { (*u).all_idle() }
            && j.udp
                .compare_exchange(u, ptr::null_mut(), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // SAFETY: taken out of the job; no send in flight, none can start (stopping).
            unsafe { UdpJob::close_and_free(u, u64::from(d.live.get(Limit::DisconnectTimeoutMs))) };
        }
    }
    let udp_open = !j.udp.load(Ordering::SeqCst).is_null();
    match j.state() {
        JobState::Running if time::now() >= j.deadline.load(Ordering::SeqCst) => stop(d),
        JobState::Stopping
            if time::now()
                >= j.deadline.load(Ordering::SeqCst)
                    + u64::from(d.live.get(Limit::DisconnectTimeoutMs)) * d.perf_freq / 1000
                && d.conns.count_where(tcp::is_job) > 0 =>
        {
            // Graceful close bounded (C34: bound a graceful disconnect): whatever is left is
            // aborted.
            d.conns.shutdown_where(true, tcp::is_job);
        }
        JobState::Stopping if !udp_open && d.conns.count_where(tcp::is_job) == 0 => {
            let failed =
                j.open.load(Ordering::SeqCst) == 0 && j.connect_failures.load(Ordering::SeqCst) > 0;
            j.state.store(
                if failed {
                    JobState::Failed
                } else {
                    JobState::Finished
                } as u32,
                Ordering::SeqCst,
            );
        }
        JobState::Running
            if !udp_open
                && j.open.load(Ordering::SeqCst) == 0
                && d.conns.count_where(tcp::is_job) == 0 =>
        {
            // Every connect failed.
            j.state.store(JobState::Failed as u32, Ordering::SeqCst);
        }
        _ => {}
    }
}

pub(crate) fn status(d: &DataPath) -> LoadStatus {
    let j = &d.job;
    let started = j.started.load(Ordering::SeqCst);
    let elapsed = if j.state() == JobState::Idle {
        0
    } else {
        time::now().saturating_sub(started) * 1000 / d.perf_freq.max(1)
    };
    LoadStatus {
        job_id: j.id.load(Ordering::SeqCst),
        state: j.state(),
        last_status: j.first_error.load(Ordering::SeqCst),
        elapsed_ms: elapsed.min(u64::from(u32::MAX)) as u32,
        connections_open: d
            .conns
            .count_where(|c| tcp::is_job(c) && !c.socket.is_null())
            as u32
            + if j.udp.load(Ordering::SeqCst).is_null() {
                0
            } else {
                j.open.load(Ordering::SeqCst)
            },
        connect_failures: j.connect_failures.load(Ordering::SeqCst),
        messages_sent: j.messages_sent.load(Ordering::SeqCst),
        messages_received: j.messages_received.load(Ordering::SeqCst),
        bytes_sent: j.bytes_sent.load(Ordering::SeqCst),
        bytes_received: j.bytes_received.load(Ordering::SeqCst),
        verify_failures: j.verify_failures.load(Ordering::SeqCst),
        job: *j.spec.lock(),
    }
}
