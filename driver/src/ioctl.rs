//! The control handler: the IOCTL ABI of `control::ioctl` answered from the driver state
//! (statistics, configuration, load jobs). The device object and its IRP plumbing are in
//! `device`; every check of a request lives in the control crate.

use core::sync::atomic::Ordering;

use control::config::{Config, Service, Services};
use control::ioctl::{self, ControlHandler, LoadJob, LoadStatus, StatsSource};
use control::stats::{Counter as C, Counters};
use wsk_sys::{KeQueryActiveProcessorCountEx, STATUS_DEVICE_NOT_READY};

use crate::driver::Driver;
use crate::handoff::{self, Request};
use crate::kernel::time;
use crate::load;
use crate::stats::{Counter, MAX_CPUS};

/// How long a control request waits for the control lock before it is answered
/// STATUS_DEVICE_BUSY. PASSIVE_LEVEL waits (the IOCTL arrives on the caller's thread).
const CONTROL_LOCK_WAIT_MS: u64 = 250;

/// The control ABI over any transport (IOCTL here, TCP in wskecho-sim). PASSIVE_LEVEL.
/// Requests are serialised (one that finds the lock held for longer than CONTROL_LOCK_WAIT_MS
/// gets STATUS_DEVICE_BUSY); unload takes the
/// control path for good before closing sockets.
///
/// # Safety
/// `d` is the loaded driver.
pub(crate) unsafe fn control_dispatch(
    d: *mut Driver,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> (i32, usize) {
    // SAFETY: per the caller.
    let busy = unsafe { &(*d).control_busy };
    // The housekeeper holds the lock for a few milliseconds while it re-creates a dead socket
    // or retries a service that failed to open (every REOPEN_EVERY_TICKS ticks for as long as
    // one fails): a request that arrives then waits for it, bounded (C38: waits reached from user
    // requests are bounded), rather than fail busy. Another control request holds it longer: that
    // one is still answered busy.
    if !time::wait_until(CONTROL_LOCK_WAIT_MS, || !busy.swap(true, Ordering::SeqCst)) {
        return (control::ioctl::status::STATUS_DEVICE_BUSY, 0);
    }
    let mut h = Handler {
        d,
        // SAFETY: per the caller; the control lock is held, so nothing changes the services.
        services: unsafe { (*d).config.services.clone() },
        lock_handed_over: false,
    };
    let r = ioctl::dispatch(&mut h, code, input, output);
    // A request that timed out left the lock to the system thread, which releases it when
    // done (handoff): unload and the next request wait until then.
    if !h.lock_handed_over {
        busy.store(false, Ordering::SeqCst);
    }
    r
}

struct Handler {
    d: *mut Driver,
    /// The services as this request found them: `service_count` and `service(i)` answer from
    /// one list, so an index can never fall outside it.
    services: Services,
    /// Set when a request handed to the system thread timed out (see `handoff::call`).
    lock_handed_over: bool,
}

impl Handler {
    fn hand_off(&mut self, request: &Request) -> Result<u32, i32> {
        let a = handoff::call(self.drv(), request);
        self.lock_handed_over |= a.lock_handed_over;
        a.result
    }
}

impl Handler {
    fn drv(&self) -> &Driver {
        // SAFETY: the loaded driver, alive while the control path is held.
        unsafe { &*self.d }
    }
}

fn map(c: &[u64; crate::stats::NUM_COUNTERS]) -> Counters {
    let g = |k: Counter| c[k as usize];
    let mut o = Counters::default();
    o.set(C::ConnAccepted, g(Counter::ConnAccepted));
    o.set(C::ConnRefused, g(Counter::ConnRefused));
    // Per-CPU values are deltas (a connection may close on another CPU): wrapping keeps the
    // sum exact.
    o.set(
        C::ConnActive,
        g(Counter::ConnAccepted).wrapping_sub(g(Counter::ConnClosed)),
    );
    o.set(C::BytesIn, g(Counter::TcpBytesIn) + g(Counter::UdpBytesIn));
    o.set(
        C::BytesOut,
        g(Counter::TcpBytesOut) + g(Counter::UdpBytesOut),
    );
    o.set(C::DatagramsIn, g(Counter::UdpDatagramsIn));
    o.set(C::DatagramsOut, g(Counter::UdpDatagramsOut));
    o.set(C::DropNoSendContext, g(Counter::UdpDropNoContext));
    o.set(C::DropRateLimited, g(Counter::UdpDropRate));
    o.set(C::DropNotAllowed, g(Counter::UdpDropFiltered));
    o.set(
        C::DropMalformed,
        g(Counter::UdpDropService) + g(Counter::UdpDropTooBig),
    );
    o.set(C::SendErrors, g(Counter::SendErrors));
    o.set(C::ZeroCopySends, g(Counter::ZeroCopySends));
    o.set(C::CopySends, g(Counter::CopySends));
    o.set(C::Backpressure, g(Counter::RxBackpressure));
    o.set(C::DropBroadcast, g(Counter::UdpDropBroadcast));
    o.set(C::DropPrivilegedPort, g(Counter::UdpDropPrivilegedPort));
    o.set(C::DropServicePort, g(Counter::UdpDropServicePort));
    o.set(C::DropSpecialSource, g(Counter::UdpDropSpecialSource));
    o.set(C::TcpIdleTimeouts, g(Counter::TcpIdleTimeouts));
    o.set(C::TcpProgressTimeouts, g(Counter::TcpProgressTimeouts));
    o.set(C::TcpRetainTimeouts, g(Counter::TcpRetainTimeouts));
    o
}

impl StatsSource for Handler {
    fn cpu_count(&self) -> usize {
        // SAFETY: any IRQL; ALL_PROCESSOR_GROUPS.
        (unsafe { KeQueryActiveProcessorCountEx(0xffff) } as usize).clamp(1, MAX_CPUS)
    }

    fn cpu(&self, index: usize) -> Counters {
        map(&self.drv().dp.stats.cpu_snapshot(index))
    }

    fn global(&self) -> Counters {
        let mut c = map(&self.drv().dp.stats.snapshot());
        c.set(C::RetainedBytes, self.drv().dp.budget.used() as u64);
        c
    }

    fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Summed over CPUs from the service's own per-CPU slot. RetainedBytes is a global gauge
    /// only (the retention budget is shared): it reads 0 in a service block. An index past
    /// the list (never asked by the encoder, which stops at `service_count`) reads as an
    /// empty entry rather than panicking.
    fn service(&self, index: usize) -> (Service, Counters) {
        let Some(&svc) = self.services.as_slice().get(index) else {
            let none = Service::new(
                control::config::Proto::Tcp,
                0,
                control::config::Mode::Discard,
                core::net::IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
            );
            return (none, Counters::default());
        };
        let mut c = Counters::default();
        if let Some(v) = self.drv().service_counters(&svc) {
            for (k, x) in C::ALL.iter().zip(v) {
                c.set(*k, x);
            }
        }
        (svc, c)
    }

    fn time_us(&self) -> u64 {
        let f = self.drv().dp.perf_freq.max(1);
        (u128::from(time::now()) * 1_000_000 / u128::from(f)) as u64
    }
}

impl ControlHandler for Handler {
    fn driver_version(&self) -> (u16, u16, u16) {
        (0, 1, 0)
    }

    /// From the request's snapshot of the services and the socket tables, which change only
    /// under the control lock this request holds (start-up opens the services holding it).
    fn service_state(&self, index: usize) -> ioctl::ServiceState {
        let (service, _) = self.service(index);
        let d = self.drv();
        let (status, retrying) = if !d.captured {
            // No provider yet: nothing was tried.
            (STATUS_DEVICE_NOT_READY, false)
        } else if d.is_open(&service) {
            (ioctl::status::STATUS_SUCCESS, false)
        } else if let Some(st) = d.reopen.status_of(&service) {
            (st, true)
        } else {
            // Not open and not waiting to be retried: only if the retry list was full.
            (STATUS_DEVICE_NOT_READY, false)
        };
        ioctl::ServiceState {
            service,
            status,
            retrying,
        }
    }

    fn config(&self) -> Config {
        self.drv().config.clone()
    }

    fn set_config(&mut self, new: &Config) -> Result<(), i32> {
        let d = self.drv();
        if !d.captured || d.dp.stopping.load(Ordering::SeqCst) {
            return Err(STATUS_DEVICE_NOT_READY);
        }
        // Sockets are made by the system thread (see handoff).
        self.hand_off(&Request::Reconfigure(new.clone()))
            .map(|_| ())
    }

    fn load_start(&mut self, job: &LoadJob) -> Result<u32, i32> {
        let d = self.drv();
        if !d.captured || d.dp.stopping.load(Ordering::SeqCst) {
            return Err(STATUS_DEVICE_NOT_READY);
        }
        // Sockets are made by the system thread (see handoff).
        self.hand_off(&Request::LoadStart(*job))
    }

    fn load_stop(&mut self, _job_id: u32) -> Result<(), i32> {
        load::stop(&self.drv().dp);
        Ok(())
    }

    fn load_status(&self) -> LoadStatus {
        load::status(&self.drv().dp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `service(i)` answers from the request's own snapshot of the
    /// services, and an index past it (the list shrank since the count was read, or a
    /// caller's mistake) reads an empty entry: no panic, and the driver state is not touched
    /// for it (the handler here has none).
    #[test]
    fn service_past_the_snapshot_is_empty_not_a_panic() {
        let h = Handler {
            d: core::ptr::null_mut(),
            services: Services::empty(),
            lock_handed_over: false,
        };
        assert_eq!(h.service_count(), 0);
        let (s, c) = h.service(3);
        assert_eq!(s.port, 0);
        assert_eq!(c, Counters::default());
    }
}
