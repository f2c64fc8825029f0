//! wskecho control plane: configuration, IOCTL codes and wire formats, shared by the driver
//! (`#![no_std]`, no allocation) and by `echoload driver ...`.
//!
//! - [`config`]: the driver's configuration (services, limits, allow-list) and its registry
//!   mapping.
//! - [`ioctl`]: the control device's IOCTL codes, message layouts, validation and dispatch.
//! - [`stats`]: the driver's counters, per CPU, global and per service.
//! - [`protocol`]: what goes on the data wire, one definition for the driver and echoload:
//!   the service [`protocol::Mode`], sockperf's header, the source pattern.
//! - [`transport`], [`mock`], [`conformance`] (feature `std`): the control ABI over TCP (for
//!   wskecho-sim), an in-memory reference handler, and the suite any implementation must pass.
//!
//! # Invariants the decoders enforce (each has a test in `tests/ioctl.rs` / `tests/prop.rs`)
//! 1. **No over-read.** Every read goes through a bounds-checked reader over the caller's
//!    slice; any byte string, of any length, decodes to a value or an error without panicking
//!    and without touching memory outside the slice.
//! 2. **Exact lengths.** A request's header length must equal the buffer length, and the
//!    buffer must be exactly the size its kind and counts imply: shorter is
//!    [`ioctl::ControlError::Short`], longer is [`ioctl::ControlError::Long`] (both
//!    STATUS_INFO_LENGTH_MISMATCH); an output buffer too small for the answer is
//!    STATUS_BUFFER_TOO_SMALL and nothing is written or done.
//! 3. **Unknown versions refused.** A header version other than [`ioctl::ABI_VERSION`] is
//!    STATUS_REVISION_MISMATCH; reserved fields and flag bits must be zero.
//! 4. **Ranges.** Ports are 1..=65535, address families AF_INET/AF_INET6 only (IPv4 leaves the
//!    unused 12 address bytes zero), prefixes fit the family, limits, counts, sizes,
//!    durations and rates are within the documented ranges.
//! 5. **No kernel pointer leaves the driver.** Responses are built field by field from typed
//!    values (counters, counts, ids that are counters, addresses, enums); there is no
//!    pointer-sized opaque field, every byte written is accounted for by a field or is a
//!    zeroed reserved byte, and decode(encode(x)) == x and encode(decode(b)) == b.
//! 6. **Unknown IOCTL codes** are STATUS_INVALID_DEVICE_REQUEST.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

pub mod config;
#[cfg(feature = "std")]
pub mod conformance;
pub mod ioctl;
#[cfg(feature = "std")]
pub mod mock;
pub mod protocol;
pub mod stats;
#[cfg(feature = "std")]
pub mod transport;
pub mod udp_guard;
