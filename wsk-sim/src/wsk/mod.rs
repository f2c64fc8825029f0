//! The WSK provider (NETIO.SYS's side of wsk.h) over host sockets.

pub(crate) mod addr;
pub(crate) mod clients;
pub(crate) mod complete;
pub(crate) mod connection;
pub(crate) mod control_calls;
pub(crate) mod datagram;
pub(crate) mod disguise;
pub(crate) mod dispatch;
pub(crate) mod events;
pub(crate) mod indication;
pub(crate) mod listen;
pub(crate) mod poller;
pub(crate) mod race;
pub(crate) mod registration;
pub(crate) mod release;
pub(crate) mod socket;
pub(crate) mod wake;

pub use indication::RELEASED_POISON;

/// Tears the provider's tables down between runs (drops host sockets, retained lists,
/// registrations).
pub(crate) fn reset() {
    socket::reset();
    indication::reset();
    clients::reset();
}

/// Starts a run: the socket dispatch tables and the provider threads (once per process), the readiness clock of
/// WskCaptureProviderNPI and the kernel's SeExports the provider's security checks read.
pub(crate) fn start_run() {
    socket::set_dispatch_tables(dispatch::for_kind);
    crate::kernel::preempt::set_hook(race::on_kernel_call);
    poller::ensure_started();
    clients::start_run();
}
