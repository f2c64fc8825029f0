//! Configured services without an open socket because their last attempt to open failed (the
//! port held by another socket, the address not on this machine, a transient failure), each
//! with that attempt's NTSTATUS. The housekeeper tries them again every `REOPEN_EVERY_TICKS`
//! ticks until one opens or a reconfiguration removes it, and the control
//! path reports them with their status (`driver status`). Changed and read only under
//! the control lock.

use control::config::{Service, MAX_SERVICES};
use wsk_sys::NTSTATUS;

pub(crate) struct Reopen {
    items: [Option<(Service, NTSTATUS)>; MAX_SERVICES],
}

impl Reopen {
    pub(crate) const fn empty() -> Self {
        Reopen {
            items: [None; MAX_SERVICES],
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.iter().all(Option::is_none)
    }

    /// Records that `service` failed to open with `status` (the newest status replaces an
    /// older one). Only configured services are recorded and `retain` drops the others, so
    /// the MAX_SERVICES entries suffice; false (nothing recorded) if they did not.
    pub(crate) fn add(&mut self, service: Service, status: NTSTATUS) -> bool {
        if let Some(e) = self.items.iter_mut().flatten().find(|e| e.0 == service) {
            e.1 = status;
            return true;
        }
        match self.items.iter_mut().find(|e| e.is_none()) {
            Some(free) => {
                *free = Some((service, status));
                true
            }
            None => false,
        }
    }

    /// The status of `service`'s last failed open, if it is waiting to be opened again.
    pub(crate) fn status_of(&self, service: &Service) -> Option<NTSTATUS> {
        self.items
            .iter()
            .flatten()
            .find(|e| e.0 == *service)
            .map(|e| e.1)
    }

    /// Keeps only the entries `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Service) -> bool) {
        for e in &mut self.items {
            if e.is_some_and(|(s, _)| !keep(&s)) {
                *e = None;
            }
        }
    }

    /// The services waiting, in no particular order.
    pub(crate) fn services(&self) -> impl Iterator<Item = Service> + '_ {
        self.items.iter().flatten().map(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::config::{Mode, Proto};

    fn svc(port: u16) -> Service {
        Service::new(
            Proto::Udp,
            port,
            Mode::Echo,
            core::net::IpAddr::V4(core::net::Ipv4Addr::LOCALHOST),
        )
    }

    #[test]
    fn newest_status_wins_and_retain_drops() {
        let mut r = Reopen::empty();
        assert!(r.is_empty());
        assert!(r.add(svc(1), 5));
        assert!(r.add(svc(2), 6));
        assert!(r.add(svc(1), 7));
        assert_eq!(r.status_of(&svc(1)), Some(7));
        assert_eq!(r.services().count(), 2);
        r.retain(|s| s.port == 2);
        assert_eq!(r.status_of(&svc(1)), None);
        assert_eq!(r.status_of(&svc(2)), Some(6));
        for p in 3..=(MAX_SERVICES as u16 + 1) {
            assert!(r.add(svc(p), 1));
        }
        assert!(!r.add(svc(999), 1), "full");
    }
}
