//! Thin wrappers over the ntoskrnl calls the driver makes. Each keeps the C call visible (no
//! hidden policy) and states the IRQL it needs.
//!
//! - `pool`: tagged non-paged allocation; `free_list`: a fixed free-index stack.
//! - `irp`: driver-owned IRPs and the synchronous call helper; `lock`: the spin lock.
//! - `log`: DbgPrintEx from Rust formatting; `time`: the performance counter and sleeps.
//! - `bugcheck`: the panic path (log, then KeBugCheckEx with the location).

pub(crate) mod bugcheck;
pub(crate) mod free_list;
pub(crate) mod irp;
pub(crate) mod lock;
pub(crate) mod log;
pub(crate) mod pool;
pub(crate) mod time;
