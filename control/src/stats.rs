//! The driver's counters: one fixed set, kept per CPU, summed globally and per service.

/// Index of each counter in a [`Counters`] block. The order is ABI: append only, and bump
/// [`crate::ioctl::ABI_VERSION`] when the set changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Counter {
    ConnAccepted = 0,
    /// Refused: over MaxConnections, not in AllowedSources, or out of memory.
    ConnRefused,
    /// Gauge: accepted connections not yet closed (per-CPU values are deltas; the sum is exact).
    ConnActive,
    BytesIn,
    BytesOut,
    DatagramsIn,
    DatagramsOut,
    /// UDP datagrams dropped: every send context of the socket was busy.
    DropNoSendContext,
    /// UDP datagrams dropped by UdpRateLimitPerSource.
    DropRateLimited,
    /// UDP datagrams dropped because their source is not in AllowedSources.
    DropNotAllowed,
    /// Datagrams dropped for other reasons (e.g. a sockperf message that does not parse).
    DropMalformed,
    /// Gauge: receive-indication bytes held for zero-copy sends.
    RetainedBytes,
    SendErrors,
    /// TCP sends made straight from retained receive buffers.
    ZeroCopySends,
    /// TCP sends made from the copy ring.
    CopySends,
    /// Times a connection refused data (STATUS_DATA_NOT_ACCEPTED) because its ring was full.
    Backpressure,
    /// UDP datagrams dropped: sent to a broadcast or multicast address (UdpDropBroadcast).
    DropBroadcast,
    /// UDP datagrams dropped: source port below 1024 (UdpDropPrivilegedSourcePorts).
    DropPrivilegedPort,
    /// UDP datagrams dropped: source port of a configured service (UdpDropServiceSourcePorts).
    DropServicePort,
    /// UDP datagrams dropped: unspecified, multicast or broadcast source address
    /// (UdpDropSpecialSources).
    DropSpecialSource,
    /// TCP connections closed gracefully after IdleTimeoutMs with nothing received or owed.
    TcpIdleTimeouts,
    /// TCP connections aborted after ProgressTimeoutMs with echo owed and nothing moving
    /// (a peer that never reads); their retained buffers are released.
    TcpProgressTimeouts,
    /// TCP connections moved to the copy path after holding a receive buffer for longer than
    /// RetainTimeoutMs.
    TcpRetainTimeouts,
}

pub const COUNTER_COUNT: usize = 23;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT] = [
        Counter::ConnAccepted,
        Counter::ConnRefused,
        Counter::ConnActive,
        Counter::BytesIn,
        Counter::BytesOut,
        Counter::DatagramsIn,
        Counter::DatagramsOut,
        Counter::DropNoSendContext,
        Counter::DropRateLimited,
        Counter::DropNotAllowed,
        Counter::DropMalformed,
        Counter::RetainedBytes,
        Counter::SendErrors,
        Counter::ZeroCopySends,
        Counter::CopySends,
        Counter::Backpressure,
        Counter::DropBroadcast,
        Counter::DropPrivilegedPort,
        Counter::DropServicePort,
        Counter::DropSpecialSource,
        Counter::TcpIdleTimeouts,
        Counter::TcpProgressTimeouts,
        Counter::TcpRetainTimeouts,
    ];

    /// snake_case name, used in JSON and tables.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::ConnAccepted => "conn_accepted",
            Counter::ConnRefused => "conn_refused",
            Counter::ConnActive => "conn_active",
            Counter::BytesIn => "bytes_in",
            Counter::BytesOut => "bytes_out",
            Counter::DatagramsIn => "datagrams_in",
            Counter::DatagramsOut => "datagrams_out",
            Counter::DropNoSendContext => "drop_no_send_context",
            Counter::DropRateLimited => "drop_rate_limited",
            Counter::DropNotAllowed => "drop_not_allowed",
            Counter::DropMalformed => "drop_malformed",
            Counter::RetainedBytes => "retained_bytes",
            Counter::SendErrors => "send_errors",
            Counter::ZeroCopySends => "zero_copy_sends",
            Counter::CopySends => "copy_sends",
            Counter::Backpressure => "backpressure",
            Counter::DropBroadcast => "drop_broadcast",
            Counter::DropPrivilegedPort => "drop_privileged_port",
            Counter::DropServicePort => "drop_service_port",
            Counter::DropSpecialSource => "drop_special_source",
            Counter::TcpIdleTimeouts => "tcp_idle_timeouts",
            Counter::TcpProgressTimeouts => "tcp_progress_timeouts",
            Counter::TcpRetainTimeouts => "tcp_retain_timeouts",
        }
    }

    /// Gauges are levels, not totals: a per-second delta of them means nothing.
    pub const fn is_gauge(self) -> bool {
        matches!(self, Counter::ConnActive | Counter::RetainedBytes)
    }
}

/// One block of counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; COUNTER_COUNT]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
    pub fn set(&mut self, c: Counter, v: u64) {
        self.0[c as usize] = v;
    }
    /// Wrapping sum, as per-CPU gauges may hold "negative" deltas.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
}
