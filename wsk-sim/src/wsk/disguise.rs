//! Test-set disguises of datagram sources (the store behind `faults::disguise_datagrams`):
//! the datagram event path reads it, so it lives in the wsk layer, not in the test API above.

/// How datagrams from one host source port are presented.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Disguise {
    pub(crate) present_as: Option<std::net::SocketAddr>,
    pub(crate) flags: u32,
}

static DISGUISES: std::sync::Mutex<Vec<(u16, Disguise)>> = std::sync::Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<(u16, Disguise)>> {
    DISGUISES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Datagrams from host source port `from_port` are indicated as from `present_as` (when given)
/// with `flags` ORed into the callback's Flags.
pub(crate) fn set(from_port: u16, present_as: Option<std::net::SocketAddr>, flags: u32) {
    let mut d = lock();
    d.retain(|(p, _)| *p != from_port);
    d.push((from_port, Disguise { present_as, flags }));
}

/// The disguise of datagrams from host source port `port`, if a test set one.
pub(crate) fn of(port: u16) -> Option<Disguise> {
    lock().iter().find(|(p, _)| *p == port).map(|(_, d)| *d)
}

pub(crate) fn clear() {
    lock().clear();
}
