//! The control device's IOCTL ABI: codes, message layouts, validation and dispatch.
//!
//! Every message is little-endian, encoded and decoded field by field (no transmute of
//! untrusted bytes), and starts with a [`Header`]: `version: u16, kind: u16, length: u32`
//! where `length` is the whole message including the header. See the crate docs for the
//! invariants the decoders enforce.

mod dispatch;
mod error;
pub mod layout;
mod load;
mod msg;
mod services_msg;
mod stats_msg;
pub mod status;
pub(crate) mod wire;

pub use dispatch::{dispatch, ControlHandler, VersionInfo, VERSION_INFO_LEN};
pub use error::ControlError;
pub use load::*;
pub use msg::*;
pub use services_msg::*;
pub use stats_msg::*;

/// The ABI version this build speaks (requests with another version are refused with
/// STATUS_REVISION_MISMATCH). 3: the limits block grew IdleTimeoutMs, ProgressTimeoutMs and
/// RetainTimeoutMs (see [`LIMITS_LEN`]). 4: the load job grew `flows` (and a reserved word;
/// see [`LOAD_JOB_LEN`]). Additions that change no existing message (a new
/// code with kinds of its own) stay within the version and are announced by a feature bit in
/// the version answer instead ([`VersionInfo::features`]): IOCTL_WSKECHO_QUERY_SERVICES is
/// [`FEATURE_SERVICE_STATE`].
pub const ABI_VERSION: u16 = 4;

/// `\Device\WskEcho`; user mode opens `\\.\WskEcho`.
pub const DEVICE_NAME: &str = "\\Device\\WskEcho";
pub const DOS_DEVICE_NAME: &str = "\\DosDevices\\WskEcho";
pub const USER_DEVICE_PATH: &str = "\\\\.\\WskEcho";
/// Control device security: SYSTEM and Administrators, all access; nobody else.
pub const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// A device type in the customer range (0x8000..=0xFFFF), so our codes cannot collide with
/// Microsoft's FILE_DEVICE_NETWORK IOCTLs.
pub const FILE_DEVICE_WSKECHO: u32 = 0xA57E;
pub const METHOD_BUFFERED: u32 = 0;
pub const FILE_ANY_ACCESS: u32 = 0;
pub const FILE_READ_DATA: u32 = 1;
pub const FILE_WRITE_DATA: u32 = 2;

/// winioctl.h's CTL_CODE.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// Parts of an IOCTL code: (device type, function, method, access).
pub const fn ctl_code_parts(code: u32) -> (u32, u32, u32, u32) {
    (code >> 16, (code >> 2) & 0xFFF, code & 3, (code >> 14) & 3)
}

/// Queries need read access, changes need write access: the I/O manager checks the handle's
/// granted access against these bits before the driver sees the request.
pub const IOCTL_WSKECHO_QUERY_VERSION: u32 =
    ctl_code(FILE_DEVICE_WSKECHO, 0x800, METHOD_BUFFERED, FILE_READ_DATA);
pub const IOCTL_WSKECHO_QUERY_STATS: u32 =
    ctl_code(FILE_DEVICE_WSKECHO, 0x801, METHOD_BUFFERED, FILE_READ_DATA);
pub const IOCTL_WSKECHO_GET_CONFIG: u32 =
    ctl_code(FILE_DEVICE_WSKECHO, 0x802, METHOD_BUFFERED, FILE_READ_DATA);
pub const IOCTL_WSKECHO_SET_CONFIG: u32 = ctl_code(
    FILE_DEVICE_WSKECHO,
    0x803,
    METHOD_BUFFERED,
    FILE_READ_DATA | FILE_WRITE_DATA,
);
pub const IOCTL_WSKECHO_LOAD_START: u32 = ctl_code(
    FILE_DEVICE_WSKECHO,
    0x804,
    METHOD_BUFFERED,
    FILE_READ_DATA | FILE_WRITE_DATA,
);
pub const IOCTL_WSKECHO_LOAD_STOP: u32 =
    ctl_code(FILE_DEVICE_WSKECHO, 0x805, METHOD_BUFFERED, FILE_WRITE_DATA);
pub const IOCTL_WSKECHO_LOAD_STATUS: u32 =
    ctl_code(FILE_DEVICE_WSKECHO, 0x806, METHOD_BUFFERED, FILE_READ_DATA);
/// Whether each configured service is open, and why not ([`FEATURE_SERVICE_STATE`]).
pub const IOCTL_WSKECHO_QUERY_SERVICES: u32 =
    ctl_code(FILE_DEVICE_WSKECHO, 0x807, METHOD_BUFFERED, FILE_READ_DATA);

pub const ALL_CODES: [u32; 8] = [
    IOCTL_WSKECHO_QUERY_VERSION,
    IOCTL_WSKECHO_QUERY_STATS,
    IOCTL_WSKECHO_GET_CONFIG,
    IOCTL_WSKECHO_SET_CONFIG,
    IOCTL_WSKECHO_LOAD_START,
    IOCTL_WSKECHO_LOAD_STOP,
    IOCTL_WSKECHO_LOAD_STATUS,
    IOCTL_WSKECHO_QUERY_SERVICES,
];

/// Largest input any request may have (a full replace-config) — the driver may refuse
/// anything longer before looking at it.
pub const MAX_INPUT_BYTES: usize = msg::config_body_len(
    crate::config::MAX_ALLOWED_SOURCES,
    crate::config::MAX_SERVICES,
) + HEADER_LEN
    + 8;

/// Output capacity that always suffices for any response.
pub const MAX_OUTPUT_BYTES: usize = stats_len(MAX_STATS_CPUS, crate::config::MAX_SERVICES);

/// Message kinds (the header's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    VersionInfo = 1,
    StatsRequest = 2,
    StatsResponse = 3,
    ConfigGetRequest = 4,
    ConfigResponse = 5,
    SetConfigRequest = 6,
    LoadStartRequest = 7,
    LoadStartResponse = 8,
    LoadStopRequest = 9,
    LoadStatusRequest = 10,
    LoadStatusResponse = 11,
    ServicesRequest = 12,
    ServicesResponse = 13,
}

pub const HEADER_LEN: usize = 8;

/// The common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub kind: u16,
    pub length: u32,
}

impl Header {
    /// Reads and checks the header of `buf`, which must be exactly one message of `kind`:
    /// version first (so a newer client learns it is talking to an older driver), then the
    /// length field against the buffer, then the kind.
    pub(crate) fn check(buf: &[u8], kind: Kind) -> Result<wire::Reader<'_>, ControlError> {
        let mut r = wire::Reader::new(buf);
        let version = r.u16()?;
        let k = r.u16()?;
        let length = r.u32()?;
        if version != ABI_VERSION {
            return Err(ControlError::Version);
        }
        if length as usize != buf.len() {
            return Err(ControlError::LengthField);
        }
        if k != kind as u16 {
            return Err(ControlError::Kind);
        }
        Ok(r)
    }

    pub(crate) fn write(w: &mut wire::Writer<'_>, kind: Kind, length: usize) {
        w.u16(ABI_VERSION);
        w.u16(kind as u16);
        w.u32(length as u32);
    }
}

/// Header-only requests (get-config, load-status): 8 bytes.
pub fn encode_empty_request(kind: Kind, out: &mut [u8]) -> Result<usize, ControlError> {
    let mut w = wire::Writer::new(out);
    Header::write(&mut w, kind, HEADER_LEN);
    w.done()
}

pub(crate) fn decode_empty_request(buf: &[u8], kind: Kind) -> Result<(), ControlError> {
    if buf.len() < HEADER_LEN {
        return Err(ControlError::Short);
    }
    let r = Header::check(buf, kind)?;
    r.finish()
}
