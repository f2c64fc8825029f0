//! Why a control request was refused, and the NTSTATUS each reason maps to.

use super::status::{
    STATUS_ADDRESS_ALREADY_EXISTS, STATUS_BUFFER_TOO_SMALL, STATUS_DEVICE_BUSY,
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND,
    STATUS_REVISION_MISMATCH, STATUS_TOO_MANY_ADDRESSES,
};
use crate::config::{LimitError, ServiceError};
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The IOCTL code is not one of ours.
    UnknownCode,
    /// Input shorter than its header or its declared contents.
    Short,
    /// Input longer than its declared contents.
    Long,
    /// The header's length field differs from the buffer's length.
    LengthField,
    /// ABI version this build does not speak.
    Version,
    /// The message kind does not belong to this IOCTL.
    Kind,
    /// A reserved field or flag bit is not zero.
    Reserved,
    /// Unknown set-config operation, protocol, mode or load pattern.
    BadEnum,
    /// Port 0 where a port is required.
    BadPort,
    /// Address family other than AF_INET / AF_INET6.
    BadFamily,
    /// Address bytes past the family's length not zero, prefix too long, or an unusable target.
    BadAddress,
    /// A count, size, duration or rate outside its range.
    OutOfRange,
    /// A limit outside its range (see [`crate::config::LimitError`]).
    Limit(LimitError),
    /// A service that cannot be added (see [`crate::config::ServiceError`]).
    Service(ServiceError),
    /// Remove of a service that is not configured.
    NoSuchService,
    /// The output buffer cannot hold the response.
    OutputTooSmall,
    /// A load job is already running.
    JobRunning,
    /// Stop of a job that is not running (or another job id).
    NoJob,
}

impl ControlError {
    /// The NTSTATUS the driver completes the IRP with.
    pub const fn ntstatus(self) -> i32 {
        match self {
            ControlError::UnknownCode => STATUS_INVALID_DEVICE_REQUEST,
            ControlError::Short | ControlError::Long | ControlError::LengthField => {
                STATUS_INFO_LENGTH_MISMATCH
            }
            ControlError::Version => STATUS_REVISION_MISMATCH,
            ControlError::Kind
            | ControlError::Reserved
            | ControlError::BadEnum
            | ControlError::BadPort
            | ControlError::OutOfRange
            | ControlError::Limit(_)
            | ControlError::Service(
                ServiceError::PortZero | ServiceError::ModeNotAllowed | ServiceError::StreamNotTcp,
            ) => STATUS_INVALID_PARAMETER,
            ControlError::BadFamily | ControlError::BadAddress => STATUS_INVALID_ADDRESS,
            ControlError::Service(ServiceError::Conflict) => STATUS_ADDRESS_ALREADY_EXISTS,
            ControlError::Service(ServiceError::TooMany) => STATUS_TOO_MANY_ADDRESSES,
            ControlError::NoSuchService => STATUS_NOT_FOUND,
            ControlError::OutputTooSmall => STATUS_BUFFER_TOO_SMALL,
            ControlError::JobRunning => STATUS_DEVICE_BUSY,
            ControlError::NoJob => STATUS_INVALID_DEVICE_STATE,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ControlError::UnknownCode => "unknown IOCTL code",
            ControlError::Short => "input too short",
            ControlError::Long => "input too long",
            ControlError::LengthField => "header length differs from the buffer length",
            ControlError::Version => "unsupported ABI version",
            ControlError::Kind => "message kind does not match the IOCTL",
            ControlError::Reserved => "reserved field not zero",
            ControlError::BadEnum => "unknown operation, protocol, mode or pattern",
            ControlError::BadPort => "port 0",
            ControlError::BadFamily => "unknown address family",
            ControlError::BadAddress => "malformed or unusable address",
            ControlError::OutOfRange => "value out of range",
            ControlError::Limit(_) => "limit out of range",
            ControlError::Service(e) => crate::config::service_error_text(*e),
            ControlError::NoSuchService => "no such service",
            ControlError::OutputTooSmall => "output buffer too small",
            ControlError::JobRunning => "a load job is already running",
            ControlError::NoJob => "no such load job running",
        };
        f.write_str(s)
    }
}
