//! An in-memory [`ControlHandler`] (feature `std`): the control ABI's reference behaviour
//! for tests of clients (echoload) when no driver or wskecho-sim runs. It keeps a
//! configuration, counters that the test can bump, and a load job that finishes when told.

use crate::config::{Config, Service};
use crate::ioctl::status::STATUS_ADDRESS_ALREADY_EXISTS;
use crate::ioctl::{ControlError, ControlHandler, JobState, LoadJob, LoadStatus, StatsSource};
use crate::stats::{Counter, Counters};
use std::vec::Vec;

#[derive(Debug, Clone)]
pub struct MockDriver {
    pub config: Config,
    /// One block per CPU.
    pub cpus: Vec<Counters>,
    /// Per-service blocks, parallel to `config.services`.
    pub per_service: Vec<Counters>,
    pub time_us: u64,
    pub status: LoadStatus,
    next_job: u32,
    /// Ports `set_config` will refuse as "in use", to test the error path.
    pub busy_ports: Vec<u16>,
}

impl MockDriver {
    pub fn new(cpus: usize) -> Self {
        let config = Config::default();
        MockDriver {
            per_service: std::vec![Counters::default(); config.services.len()],
            config,
            cpus: std::vec![Counters::default(); cpus],
            time_us: 0,
            status: LoadStatus::IDLE,
            next_job: 1,
            busy_ports: Vec::new(),
        }
    }

    /// Simulates traffic: every CPU and every service gains `n` of `c`; time moves 1 s.
    pub fn tick(&mut self, c: Counter, n: u64) {
        for b in self.cpus.iter_mut().chain(self.per_service.iter_mut()) {
            b.set(c, b.get(c).wrapping_add(n));
        }
        self.time_us += 1_000_000;
        if self.status.state == JobState::Running {
            self.status.elapsed_ms += 1000;
            self.status.messages_sent += n;
            self.status.messages_received += n;
            if let Some(j) = self.status.job {
                self.status.bytes_sent += n * u64::from(j.message_size);
                self.status.bytes_received += n * u64::from(j.message_size);
                if self.status.elapsed_ms >= j.duration_ms {
                    self.status.state = JobState::Finished;
                    self.status.connections_open = 0;
                }
            }
        }
    }
}

impl StatsSource for MockDriver {
    fn cpu_count(&self) -> usize {
        self.cpus.len()
    }
    fn cpu(&self, index: usize) -> Counters {
        self.cpus.get(index).copied().unwrap_or_default()
    }
    fn global(&self) -> Counters {
        let mut g = Counters::default();
        for c in &self.cpus {
            g.add(c);
        }
        g
    }
    fn service_count(&self) -> usize {
        self.config.services.len()
    }
    fn service(&self, index: usize) -> (Service, Counters) {
        (
            self.config.services.as_slice()[index],
            self.per_service.get(index).copied().unwrap_or_default(),
        )
    }
    fn time_us(&self) -> u64 {
        self.time_us
    }
}

impl ControlHandler for MockDriver {
    fn driver_version(&self) -> (u16, u16, u16) {
        (0, 1, 0)
    }
    fn config(&self) -> Config {
        self.config.clone()
    }
    fn set_config(&mut self, new: &Config) -> Result<(), i32> {
        let busy = {
            let (_, mut added) = crate::ioctl::services_diff(&self.config, new);
            added.any(|s| self.busy_ports.contains(&s.port))
        };
        if busy {
            return Err(STATUS_ADDRESS_ALREADY_EXISTS);
        }
        // Counters follow their service; new services start at zero.
        let per: Vec<Counters> = new
            .services
            .as_slice()
            .iter()
            .map(|s| {
                self.config
                    .services
                    .as_slice()
                    .iter()
                    .position(|o| o == s)
                    .and_then(|i| self.per_service.get(i).copied())
                    .unwrap_or_default()
            })
            .collect();
        self.config = new.clone();
        self.per_service = per;
        Ok(())
    }
    fn load_start(&mut self, job: &LoadJob) -> Result<u32, i32> {
        if matches!(self.status.state, JobState::Running | JobState::Stopping) {
            return Err(ControlError::JobRunning.ntstatus());
        }
        let id = self.next_job;
        self.next_job += 1;
        self.status = LoadStatus {
            job_id: id,
            state: JobState::Running,
            connections_open: job.connections,
            job: Some(*job),
            ..LoadStatus::IDLE
        };
        Ok(id)
    }
    fn load_stop(&mut self, job_id: u32) -> Result<(), i32> {
        let running = self.status.state == JobState::Running;
        if !running || (job_id != 0 && job_id != self.status.job_id) {
            return Err(ControlError::NoJob.ntstatus());
        }
        self.status.state = JobState::Finished;
        self.status.connections_open = 0;
        Ok(())
    }
    fn load_status(&self) -> LoadStatus {
        self.status
    }
    /// The mock opens a service or refuses the whole change (a busy port): every configured
    /// service is open.
    fn service_state(&self, index: usize) -> crate::ioctl::ServiceState {
        let service = self
            .config
            .services
            .as_slice()
            .get(index)
            .copied()
            .unwrap_or(Service::new(
                crate::config::Proto::Tcp,
                1,
                crate::config::Mode::Discard,
                core::net::IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
            ));
        crate::ioctl::ServiceState {
            service,
            status: crate::ioctl::status::STATUS_SUCCESS,
            retrying: false,
        }
    }
}
