//! One function turns (IOCTL code, input bytes, output buffer) into (NTSTATUS, bytes written)
//! over a [`ControlHandler`] — the driver's device-control routine copies buffers in and
//! out and calls this; wskecho-sim's socket server and the tests call the same function.

use super::services_msg::{encode_service_states, ServiceState, FEATURE_SERVICE_STATE};
use super::stats_msg::{encode_stats, StatsRequest, StatsSource};
use super::status::STATUS_SUCCESS;
use super::wire::{Reader, Writer};
use super::{
    decode_empty_request, ControlError, Header, Kind, ABI_VERSION, ALL_CODES, HEADER_LEN,
    IOCTL_WSKECHO_GET_CONFIG, IOCTL_WSKECHO_LOAD_START, IOCTL_WSKECHO_LOAD_STATUS,
    IOCTL_WSKECHO_LOAD_STOP, IOCTL_WSKECHO_QUERY_SERVICES, IOCTL_WSKECHO_QUERY_STATS,
    IOCTL_WSKECHO_QUERY_VERSION, IOCTL_WSKECHO_SET_CONFIG, MAX_INPUT_BYTES,
};
use super::{
    decode_load_start, decode_load_stop, encode_config_response, encode_load_started,
    encode_load_status, LoadJob, LoadStatus, SetConfig, LOAD_START_RESPONSE_LEN,
};
use crate::config::Config;

/// What the driver provides to the control path. Errors are NTSTATUS values (e.g. a bind
/// failure's STATUS_ADDRESS_ALREADY_EXISTS); a failed `set_config` must leave the running
/// configuration unchanged.
pub trait ControlHandler: StatsSource {
    /// (major, minor, patch) of the driver build.
    fn driver_version(&self) -> (u16, u16, u16);
    fn config(&self) -> Config;
    /// Make `new` the running configuration (open added services, close removed ones).
    fn set_config(&mut self, new: &Config) -> Result<(), i32>;
    /// Start a load job; returns its id (a counter, never an address).
    fn load_start(&mut self, job: &LoadJob) -> Result<u32, i32>;
    /// Stop job `job_id` (0: whichever runs).
    fn load_stop(&mut self, job_id: u32) -> Result<(), i32>;
    fn load_status(&self) -> LoadStatus;
    /// Where configured service `index` (< `service_count()`, configuration order) stands:
    /// open, or the status of its last attempt to open and whether it is retried.
    fn service_state(&self, index: usize) -> ServiceState;
}

pub const VERSION_INFO_LEN: usize = HEADER_LEN + 24;

/// Answer to IOCTL_WSKECHO_QUERY_VERSION, whose input is empty so that any client version
/// can ask it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub abi_min: u16,
    pub abi_max: u16,
    pub driver: (u16, u16, u16),
    /// Feature bits: additions within the ABI version ([`FEATURE_SERVICE_STATE`]); a client
    /// uses a feature only when its bit is set and ignores bits it does not know.
    pub features: u32,
    pub cpu_count: u32,
    pub service_count: u32,
}

impl VersionInfo {
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        if out.len() < VERSION_INFO_LEN {
            return Err(ControlError::OutputTooSmall);
        }
        let mut w = Writer::new(out);
        Header::write(&mut w, Kind::VersionInfo, VERSION_INFO_LEN);
        w.u16(self.abi_min);
        w.u16(self.abi_max);
        w.u16(self.driver.0);
        w.u16(self.driver.1);
        w.u16(self.driver.2);
        w.u16(0);
        w.u32(self.features);
        w.u32(self.cpu_count);
        w.u32(self.service_count);
        w.done()
    }

    /// Decodes a version answer. Its header carries the driver's own ABI version, so this
    /// accepts any version in the header and leaves the decision to the caller.
    pub fn decode(buf: &[u8]) -> Result<VersionInfo, ControlError> {
        let mut r = Reader::new(buf);
        let _version = r.u16()?;
        let kind = r.u16()?;
        let length = r.u32()?;
        if length as usize != buf.len() {
            return Err(ControlError::LengthField);
        }
        if kind != Kind::VersionInfo as u16 {
            return Err(ControlError::Kind);
        }
        if buf.len() < VERSION_INFO_LEN {
            return Err(ControlError::Short);
        }
        if buf.len() > VERSION_INFO_LEN {
            return Err(ControlError::Long);
        }
        let abi_min = r.u16()?;
        let abi_max = r.u16()?;
        let driver = (r.u16()?, r.u16()?, r.u16()?);
        r.reserved(2)?;
        let v = VersionInfo {
            abi_min,
            abi_max,
            driver,
            features: r.u32()?,
            cpu_count: r.u32()?,
            service_count: r.u32()?,
        };
        r.finish()?;
        Ok(v)
    }

    /// Whether this build can talk to the driver that sent `self`.
    pub fn compatible(&self) -> bool {
        (self.abi_min..=self.abi_max).contains(&ABI_VERSION)
    }
}

/// Handles one IOCTL. Returns (NTSTATUS, bytes written to `output`); on any error nothing
/// is reported written. Input is checked completely before the handler acts, and the output
/// capacity is checked before an action whose answer could not be delivered.
pub fn dispatch(
    h: &mut impl ControlHandler,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> (i32, usize) {
    match dispatch_inner(h, code, input, output) {
        Ok(n) => (STATUS_SUCCESS, n),
        Err(Failure::Control(e)) => (e.ntstatus(), 0),
        Err(Failure::Status(s)) => (s, 0),
    }
}

enum Failure {
    Control(ControlError),
    Status(i32),
}

impl From<ControlError> for Failure {
    fn from(e: ControlError) -> Self {
        Failure::Control(e)
    }
}

fn dispatch_inner(
    h: &mut impl ControlHandler,
    code: u32,
    input: &[u8],
    out: &mut [u8],
) -> Result<usize, Failure> {
    if !ALL_CODES.contains(&code) {
        return Err(ControlError::UnknownCode.into());
    }
    if input.len() > MAX_INPUT_BYTES {
        return Err(ControlError::Long.into());
    }
    match code {
        IOCTL_WSKECHO_QUERY_VERSION => {
            if !input.is_empty() {
                return Err(ControlError::Long.into());
            }
            let v = VersionInfo {
                abi_min: ABI_VERSION,
                abi_max: ABI_VERSION,
                driver: h.driver_version(),
                features: FEATURE_SERVICE_STATE,
                cpu_count: h.cpu_count() as u32,
                service_count: h.service_count() as u32,
            };
            Ok(v.encode(out)?)
        }
        IOCTL_WSKECHO_QUERY_STATS => {
            let req = StatsRequest::decode(input)?;
            Ok(encode_stats(req, h, out)?)
        }
        IOCTL_WSKECHO_GET_CONFIG => {
            decode_empty_request(input, Kind::ConfigGetRequest)?;
            Ok(encode_config_response(&h.config(), out)?)
        }
        IOCTL_WSKECHO_SET_CONFIG => {
            let change = SetConfig::decode(input)?;
            let new = change.apply(&h.config())?;
            h.set_config(&new).map_err(Failure::Status)?;
            Ok(0)
        }
        IOCTL_WSKECHO_LOAD_START => {
            let job = decode_load_start(input)?;
            if out.len() < LOAD_START_RESPONSE_LEN {
                return Err(ControlError::OutputTooSmall.into());
            }
            let id = h.load_start(&job).map_err(Failure::Status)?;
            Ok(encode_load_started(id, out)?)
        }
        IOCTL_WSKECHO_LOAD_STOP => {
            let id = decode_load_stop(input)?;
            h.load_stop(id).map_err(Failure::Status)?;
            Ok(0)
        }
        IOCTL_WSKECHO_LOAD_STATUS => {
            decode_empty_request(input, Kind::LoadStatusRequest)?;
            Ok(encode_load_status(&h.load_status(), out)?)
        }
        IOCTL_WSKECHO_QUERY_SERVICES => {
            decode_empty_request(input, Kind::ServicesRequest)?;
            Ok(encode_service_states(
                h.service_count(),
                |i| h.service_state(i),
                out,
            )?)
        }
        _ => Err(ControlError::UnknownCode.into()),
    }
}
