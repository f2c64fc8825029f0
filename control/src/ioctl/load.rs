//! Kernel load jobs: the job description, start/stop/status messages and their validation.

use super::msg::{decode_addr, encode_addr, fixed, ADDRESS_LEN, SERVICE_PROTO_STREAM};
use super::wire::{Reader, Writer};
use super::{ControlError, Header, Kind, HEADER_LEN};
use crate::config::Proto;
use core::net::IpAddr;

/// `target address, port u16, proto u8 (bit 7: stream socket, as a service's), pattern u8,
/// connections u32, message_size u32, duration_ms u32, rate u32, flows u32, reserved u32`.
/// ABI 4 added `flows` and the reserved word (ABI 3's block ended at `rate`).
pub const LOAD_JOB_LEN: usize = ADDRESS_LEN + 4 + 24;

/// What each connection of a kernel load job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LoadPattern {
    /// Send a message, wait for the echo, verify, repeat (ping-pong; with `rate`, paced).
    Echo = 0,
    /// Send only (to a discard/sink service).
    Source = 1,
}

impl LoadPattern {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(LoadPattern::Echo),
            1 => Some(LoadPattern::Source),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            LoadPattern::Echo => "echo",
            LoadPattern::Source => "source",
        }
    }
}

pub const MAX_LOAD_CONNECTIONS: u32 = 4096;
/// Largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_UDP_MESSAGE: u32 = 65_507;
pub const MAX_TCP_MESSAGE: u32 = 1 << 20;
pub const MAX_LOAD_DURATION_MS: u32 = 3_600_000;
pub const MAX_LOAD_RATE: u32 = 10_000_000;
/// UDP flows (sockets, so distinct source ports) per job at most: enough for the receive
/// queues of any one NIC that RSS spreads flows over.
pub const MAX_LOAD_FLOWS: u32 = 64;

/// A kernel load job: `connections` sockets to `target`, each running `pattern` with
/// `message_size` bytes, for `duration_ms`, at `rate` messages per second in total (0: as
/// fast as the path allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadJob {
    pub target: IpAddr,
    pub port: u16,
    pub proto: Proto,
    pub pattern: LoadPattern,
    pub connections: u32,
    pub message_size: u32,
    pub duration_ms: u32,
    pub rate: u32,
    /// TCP only: connect from WSK stream sockets (WskSocket with WSK_FLAG_STREAM_SOCKET,
    /// WskBind, WskConnect) instead of WskSocketConnect's connection sockets.
    pub stream: bool,
    /// UDP only: how many sockets (flows, each its own source port, so RSS spreads them over a
    /// NIC's receive queues) the job's send contexts are spread over; 0: the driver's default
    /// (4, at most one per send context). At most [`MAX_LOAD_FLOWS`]; TCP jobs send 0 (each
    /// connection is a flow already).
    pub flows: u32,
}

impl LoadJob {
    pub fn validate(&self) -> Result<(), ControlError> {
        if self.port == 0 {
            return Err(ControlError::BadPort);
        }
        let bad_target = match self.target {
            IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
        };
        if bad_target {
            return Err(ControlError::BadAddress);
        }
        if self.stream && self.proto != Proto::Tcp {
            return Err(ControlError::Service(
                crate::config::ServiceError::StreamNotTcp,
            ));
        }
        let max_msg = match self.proto {
            Proto::Tcp => MAX_TCP_MESSAGE,
            Proto::Udp => MAX_UDP_MESSAGE,
        };
        let flows_ok = match self.proto {
            Proto::Tcp => self.flows == 0,
            Proto::Udp => self.flows <= MAX_LOAD_FLOWS,
        };
        let ok = flows_ok
            && (1..=MAX_LOAD_CONNECTIONS).contains(&self.connections)
            && (1..=max_msg).contains(&self.message_size)
            && (1..=MAX_LOAD_DURATION_MS).contains(&self.duration_ms)
            && self.rate <= MAX_LOAD_RATE;
        if ok {
            Ok(())
        } else {
            Err(ControlError::OutOfRange)
        }
    }
}

fn encode_job(w: &mut Writer<'_>, j: &LoadJob) {
    encode_addr(w, j.target);
    w.u16(j.port);
    w.u8(j.proto as u8 | if j.stream { SERVICE_PROTO_STREAM } else { 0 });
    w.u8(j.pattern as u8);
    w.u32(j.connections);
    w.u32(j.message_size);
    w.u32(j.duration_ms);
    w.u32(j.rate);
    w.u32(j.flows);
    w.u32(0);
}

fn decode_job(r: &mut Reader<'_>) -> Result<LoadJob, ControlError> {
    let target = decode_addr(r)?;
    let port = r.u16()?;
    let p = r.u8()?;
    let proto = Proto::from_u8(p & !SERVICE_PROTO_STREAM).ok_or(ControlError::BadEnum)?;
    let pattern = LoadPattern::from_u8(r.u8()?).ok_or(ControlError::BadEnum)?;
    let j = LoadJob {
        stream: p & SERVICE_PROTO_STREAM != 0,
        target,
        port,
        proto,
        pattern,
        connections: r.u32()?,
        message_size: r.u32()?,
        duration_ms: r.u32()?,
        rate: r.u32()?,
        flows: r.u32()?,
    };
    r.reserved(4)?;
    j.validate()?;
    Ok(j)
}

pub const LOAD_START_REQUEST_LEN: usize = HEADER_LEN + LOAD_JOB_LEN;
pub const LOAD_START_RESPONSE_LEN: usize = HEADER_LEN + 8;
pub const LOAD_STOP_REQUEST_LEN: usize = HEADER_LEN + 8;
pub const LOAD_STATUS_RESPONSE_LEN: usize = HEADER_LEN + 24 + 40 + LOAD_JOB_LEN;

pub fn encode_load_start(j: &LoadJob, out: &mut [u8]) -> Result<usize, ControlError> {
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::LoadStartRequest, LOAD_START_REQUEST_LEN);
    encode_job(&mut w, j);
    w.done()
}

pub fn decode_load_start(buf: &[u8]) -> Result<LoadJob, ControlError> {
    let mut r = fixed(buf, Kind::LoadStartRequest, LOAD_START_REQUEST_LEN)?;
    let j = decode_job(&mut r)?;
    r.finish()?;
    Ok(j)
}

/// Start response: the new job's id (a counter, never a pointer).
pub fn encode_load_started(job_id: u32, out: &mut [u8]) -> Result<usize, ControlError> {
    if out.len() < LOAD_START_RESPONSE_LEN {
        return Err(ControlError::OutputTooSmall);
    }
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::LoadStartResponse, LOAD_START_RESPONSE_LEN);
    w.u32(job_id);
    w.u32(0);
    w.done()
}

pub fn decode_load_started(buf: &[u8]) -> Result<u32, ControlError> {
    let mut r = fixed(buf, Kind::LoadStartResponse, LOAD_START_RESPONSE_LEN)?;
    let id = r.u32()?;
    r.reserved(4)?;
    Ok(id)
}

/// Stop request: `job_id u32` (0: whichever job runs), reserved u32.
pub fn encode_load_stop(job_id: u32, out: &mut [u8]) -> Result<usize, ControlError> {
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::LoadStopRequest, LOAD_STOP_REQUEST_LEN);
    w.u32(job_id);
    w.u32(0);
    w.done()
}

pub fn decode_load_stop(buf: &[u8]) -> Result<u32, ControlError> {
    let mut r = fixed(buf, Kind::LoadStopRequest, LOAD_STOP_REQUEST_LEN)?;
    let id = r.u32()?;
    r.reserved(4)?;
    Ok(id)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum JobState {
    Idle = 0,
    Running = 1,
    Stopping = 2,
    Finished = 3,
    Failed = 4,
}

impl JobState {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(JobState::Idle),
            1 => Some(JobState::Running),
            2 => Some(JobState::Stopping),
            3 => Some(JobState::Finished),
            4 => Some(JobState::Failed),
            _ => None,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            JobState::Idle => "idle",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
        }
    }
}

/// The current (or last) load job. `job: None` (no job has run) is a zeroed block on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadStatus {
    pub job_id: u32,
    pub state: JobState,
    /// NTSTATUS of the first failure (0 when none).
    pub last_status: i32,
    pub elapsed_ms: u32,
    pub connections_open: u32,
    pub connect_failures: u32,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Echo replies whose bytes differed from what was sent.
    pub verify_failures: u64,
    pub job: Option<LoadJob>,
}

impl LoadStatus {
    pub const IDLE: LoadStatus = LoadStatus {
        job_id: 0,
        state: JobState::Idle,
        last_status: 0,
        elapsed_ms: 0,
        connections_open: 0,
        connect_failures: 0,
        messages_sent: 0,
        messages_received: 0,
        bytes_sent: 0,
        bytes_received: 0,
        verify_failures: 0,
        job: None,
    };
}

pub fn encode_load_status(s: &LoadStatus, out: &mut [u8]) -> Result<usize, ControlError> {
    if out.len() < LOAD_STATUS_RESPONSE_LEN {
        return Err(ControlError::OutputTooSmall);
    }
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::LoadStatusResponse, LOAD_STATUS_RESPONSE_LEN);
    w.u32(s.job_id);
    w.u32(s.state as u32);
    w.i32(s.last_status);
    w.u32(s.elapsed_ms);
    w.u32(s.connections_open);
    w.u32(s.connect_failures);
    w.u64(s.messages_sent);
    w.u64(s.messages_received);
    w.u64(s.bytes_sent);
    w.u64(s.bytes_received);
    w.u64(s.verify_failures);
    match &s.job {
        Some(j) => encode_job(&mut w, j),
        None => w.zeros(LOAD_JOB_LEN),
    }
    w.done()
}

pub fn decode_load_status(buf: &[u8]) -> Result<LoadStatus, ControlError> {
    let mut r = fixed(buf, Kind::LoadStatusResponse, LOAD_STATUS_RESPONSE_LEN)?;
    let job_id = r.u32()?;
    let state = JobState::from_u32(r.u32()?).ok_or(ControlError::BadEnum)?;
    let mut s = LoadStatus {
        job_id,
        state,
        last_status: r.i32()?,
        elapsed_ms: r.u32()?,
        connections_open: r.u32()?,
        connect_failures: r.u32()?,
        messages_sent: r.u64()?,
        messages_received: r.u64()?,
        bytes_sent: r.u64()?,
        bytes_received: r.u64()?,
        verify_failures: r.u64()?,
        job: None,
    };
    // A zeroed job block means "no job" (AF 0 is not a family, so it cannot be a job).
    let block = r.take(LOAD_JOB_LEN)?;
    if block.iter().any(|&b| b != 0) {
        s.job = Some(decode_job(&mut Reader::new(block))?);
    }
    r.finish()?;
    Ok(s)
}
