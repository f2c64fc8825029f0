//! Thin wrappers over the ntoskrnl calls the driver makes. Each keeps the C call visible (no
//! hidden policy) and states the IRQL it needs.

pub mod irp;
pub mod lock;
pub mod log;
pub mod pool;
