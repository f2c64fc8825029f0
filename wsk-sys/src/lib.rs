//! Hand-written raw FFI for the Winsock Kernel (wsk.h) and the wdm.h / ntddk.h subset a
//! WSK driver uses, x64 layout. Names mirror the C headers exactly (types, fields,
//! constants, functions), so code reads like the C documentation.
//!
//! Why hand-written, and how the imports link on Windows: see docs/architecture.md
//! ("Kernel FFI"). `#![no_std]`, no dependencies: this crate is linked into the .sys.
//!
//! Modules: [`ntdef`] basic types, [`status`] NTSTATUS codes, [`ke`] dispatcher objects /
//! IRQL / pool / registry, [`io`] IRP / IO_STACK_LOCATION / MDL / DRIVER_OBJECT /
//! DEVICE_OBJECT, [`se`] security, [`ws2def`] socket addresses, [`wsk`] wsk.h,
//! [`imports`] the imported functions by DLL, [`inline`] wdm.h macros written in Rust.
//! Everything is re-exported at the crate root.

#![no_std]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
#![allow(
    clippy::missing_safety_doc,
    clippy::struct_field_names,
    clippy::unreadable_literal
)]
// C names such as `__ss_pad1` and `_WSAIOR` are kept verbatim.
#![allow(clippy::pub_underscore_fields, clippy::used_underscore_items)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("wsk-sys describes the x64 kernel layout only");

pub mod imports;
pub mod inline;
pub mod io;
pub mod ke;
pub mod ntdef;
pub mod runtime;
pub mod se;
pub mod status;
pub mod ws2def;
pub mod wsk;

pub use imports::*;
pub use inline::*;
pub use io::*;
pub use ke::*;
pub use ntdef::*;
pub use runtime::*;
pub use se::*;
pub use status::*;
pub use ws2def::*;
pub use wsk::*;
