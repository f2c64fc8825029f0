//! `#[repr(C)]` mirrors of every fixed part of the wire format, for readers of the ABI and for
//! C/C++ clients (the byte layout is the same on little-endian targets, which all Windows
//! targets are). The crate never casts bytes to these types: encoders and decoders work field
//! by field. Compile-time asserts pin the sizes to the encoders' constants, and
//! `tests/layout.rs` checks every field offset against bytes the encoders produce.
//!
//! Variable parts: a config body is [`WireConfigHead`] followed by `allowed_count`
//! [`WireCidr`] and `service_count` [`WireService`]; a set-config request is
//! [`WireSetConfigHead`] followed by a config body without its header (ops 1, 4) or one
//! [`WireService`] (ops 2, 3); a stats response is [`WireStatsHead`], then `counter_count`
//! u64 global counters, then `cpu_count` blocks of them, then `service_count` times
//! ([`WireService`], counters); a service-state response is [`WireServiceStatesHead`]
//! followed by `count` [`WireServiceState`].

use core::mem::size_of;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireHeader {
    pub version: u16,
    pub kind: u16,
    /// Whole message, header included.
    pub length: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireAddress {
    /// AF_INET (2) or AF_INET6 (23).
    pub family: u16,
    pub reserved: u16,
    /// IPv4: bytes 0..4, the rest zero.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireService {
    /// 0 TCP, 1 UDP; bit 7 set: a TCP service on a stream socket.
    pub proto: u8,
    /// 0 echo, 1 discard, 2 source, 3 sockperf.
    pub mode: u8,
    pub port: u16,
    pub bind: WireAddress,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireCidr {
    pub family: u16,
    pub prefix: u8,
    pub reserved: u8,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireLimits {
    pub max_connections: u32,
    pub max_retained_per_conn: u32,
    pub max_retained_total: u32,
    pub send_ring_bytes: u32,
    pub udp_send_contexts: u32,
    pub udp_rate_per_source: u32,
    pub disconnect_timeout_ms: u32,
    /// Since ABI 3.
    pub idle_timeout_ms: u32,
    /// Since ABI 3.
    pub progress_timeout_ms: u32,
    /// Since ABI 3.
    pub retain_timeout_ms: u32,
    /// Bit 0: zero copy; bits 1-5: the UDP guard's switches (`LIMIT_FLAG_SWITCHES`); other
    /// bits zero.
    pub flags: u32,
}

/// Start of a config response (and of a set-config body, without `header`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireConfigHead {
    pub header: WireHeader,
    pub limits: WireLimits,
    pub allowed_count: u16,
    pub service_count: u16,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireSetConfigHead {
    pub header: WireHeader,
    /// 1 replace, 2 add service, 3 remove service, 4 set limits.
    pub op: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireLoadJob {
    pub target: WireAddress,
    pub port: u16,
    pub proto: u8,
    /// 0 echo, 1 source.
    pub pattern: u8,
    pub connections: u32,
    pub message_size: u32,
    pub duration_ms: u32,
    pub rate: u32,
    /// Since ABI 4. UDP: sockets (source ports) the job sends from; 0: the driver's default.
    pub flows: u32,
    /// Since ABI 4. Zero.
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireLoadStart {
    pub header: WireHeader,
    pub job: WireLoadJob,
}

/// Load-start response and load-stop request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireJobId {
    pub header: WireHeader,
    pub job_id: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireLoadStatus {
    pub header: WireHeader,
    pub job_id: u32,
    pub state: u32,
    pub last_status: i32,
    pub elapsed_ms: u32,
    pub connections_open: u32,
    pub connect_failures: u32,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub verify_failures: u64,
    /// All zero: no job.
    pub job: WireLoadJob,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireStatsRequest {
    pub header: WireHeader,
    /// Bit 0 per CPU, bit 1 per service.
    pub flags: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireStatsHead {
    pub header: WireHeader,
    pub cpu_count: u16,
    pub service_count: u16,
    pub counter_count: u16,
    pub reserved: u16,
    pub time_us: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireVersionInfo {
    pub header: WireHeader,
    pub abi_min: u16,
    pub abi_max: u16,
    pub driver_major: u16,
    pub driver_minor: u16,
    pub driver_patch: u16,
    pub reserved: u16,
    pub features: u32,
    pub cpu_count: u32,
    pub service_count: u32,
}

/// Head of a service-state response (IOCTL_WSKECHO_QUERY_SERVICES).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireServiceStatesHead {
    pub header: WireHeader,
    pub count: u16,
    pub reserved: u16,
    pub reserved2: u32,
}

/// One configured service and where it stands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WireServiceState {
    pub service: WireService,
    /// NTSTATUS: 0 open; otherwise the last attempt's failure (or STATUS_DEVICE_NOT_READY).
    pub status: i32,
    /// Bit 0: not open and being retried.
    pub flags: u32,
}

use super::{
    ADDRESS_LEN, CIDR_LEN, LIMITS_LEN, LOAD_JOB_LEN, LOAD_START_REQUEST_LEN,
    LOAD_START_RESPONSE_LEN, LOAD_STATUS_RESPONSE_LEN, SERVICE_LEN,
};
use super::{HEADER_LEN, VERSION_INFO_LEN};

const _: () = assert!(size_of::<WireHeader>() == HEADER_LEN);
const _: () = assert!(size_of::<WireAddress>() == ADDRESS_LEN);
const _: () = assert!(size_of::<WireService>() == SERVICE_LEN);
const _: () = assert!(size_of::<WireCidr>() == CIDR_LEN);
const _: () = assert!(size_of::<WireLimits>() == LIMITS_LEN);
const _: () = assert!(size_of::<WireConfigHead>() == super::msg::config_response_len(0, 0));
const _: () = assert!(size_of::<WireSetConfigHead>() == HEADER_LEN + 8);
const _: () = assert!(size_of::<WireLoadJob>() == LOAD_JOB_LEN);
const _: () = assert!(size_of::<WireLoadStart>() == LOAD_START_REQUEST_LEN);
const _: () = assert!(size_of::<WireJobId>() == LOAD_START_RESPONSE_LEN);
const _: () = assert!(size_of::<WireLoadStatus>() == LOAD_STATUS_RESPONSE_LEN);
const _: () = assert!(size_of::<WireStatsRequest>() == super::STATS_REQUEST_LEN);
const _: () =
    assert!(size_of::<WireStatsHead>() == super::stats_len(0, 0) - crate::stats::COUNTER_COUNT * 8);
const _: () = assert!(size_of::<WireVersionInfo>() == VERSION_INFO_LEN);
const _: () = assert!(size_of::<WireServiceStatesHead>() == super::SERVICE_STATES_FIXED_LEN);
const _: () = assert!(size_of::<WireServiceState>() == super::SERVICE_STATE_LEN);
