//! The driver under test, built-in (the driver crate linked into this test) or the shipped
//! image (target/driver/wskecho.sys, mapped by wsk-sim's PE loader), reached the same way for
//! both: the control ABI through the device object's IRP_MJ_DEVICE_CONTROL, DriverUnload.
//! Both read their configuration from the sim registry, as on Windows.

use std::path::PathBuf;

use control::config::Config;
use control::ioctl::{self, LoadJob, LoadStatus, SetConfig};
use control::stats::Counters;
use wsk_sim::registry::{set_value, RegValue};

use crate::common::harness;
use crate::image;

pub enum Target {
    Builtin(harness::Loaded),
    Image(image::ImageRun),
}

/// The image to run, if built (`cargo xtask driver`); the driver suites' own lookup.
pub use crate::common::image_path;

/// Writes `cfg` to the driver's Parameters key in the sim registry.
fn write_registry(cfg: &Config) {
    let key = format!("{}\\Parameters", harness::REGISTRY_PATH);
    let services = cfg.services.as_slice().iter().map(ToString::to_string);
    set_value(&key, "Services", RegValue::MultiSz(services.collect()));
    let allowed = cfg.limits.allowed_sources().iter().map(ToString::to_string);
    set_value(&key, "AllowedSources", RegValue::MultiSz(allowed.collect()));
    for spec in control::config::DWORD_SPECS {
        let v = cfg.limits.dword(spec.name).expect("every spec has a value");
        set_value(&key, spec.name, RegValue::Dword(v));
    }
}

impl Target {
    /// Loads the driver with `cfg` in the registry; Err when it did not start.
    #[allow(clippy::large_types_passed_by_value)] // as harness::load
    pub fn load(
        image: Option<&PathBuf>,
        sim: wsk_sim::Config,
        cfg: &Config,
    ) -> Result<Target, String> {
        let sim = sim
            .with_unkind(harness::SUITE_UNKIND)
            .expect("SUITE_UNKIND");
        match image {
            None => {
                let l = harness::load_with(sim, None, || write_registry(cfg))?;
                if !l.ready {
                    return Err(format!("built-in driver did not start: {:?}", l.unload()));
                }
                Ok(Target::Builtin(l))
            }
            Some(p) => {
                let r =
                    image::load_with(p, sim, || write_registry(cfg)).map_err(|e| e.to_string())?;
                if !r.ready {
                    return Err(format!("image did not start: {:?}", r.unload()));
                }
                Ok(Target::Image(r))
            }
        }
    }

    /// One control request. STATUS_DEVICE_BUSY (the housekeeper holds the control path while
    /// it re-creates a killed socket) is retried for up to 5 s, as a user's tool would; a load
    /// start is not (busy there also means a job runs).
    pub fn ioctl(&self, code: u32, input: &[u8], out_len: usize) -> (i32, Vec<u8>) {
        let t0 = std::time::Instant::now();
        loop {
            let r = self.ioctl_once(code, input, out_len);
            if r.0 != ioctl::status::STATUS_DEVICE_BUSY
                || code == ioctl::IOCTL_WSKECHO_LOAD_START
                || t0.elapsed() > std::time::Duration::from_secs(5)
            {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn ioctl_once(&self, code: u32, input: &[u8], out_len: usize) -> (i32, Vec<u8>) {
        match self {
            Target::Builtin(l) => l.control(code, input, out_len),
            Target::Image(r) => {
                let mut out = vec![0u8; out_len];
                let (st, n) = r.control(code, input, &mut out);
                out.truncate(n);
                (st, out)
            }
        }
    }

    /// DriverUnload and the sim's findings (leaks, violations; empty = clean).
    pub fn unload(self) -> Vec<String> {
        match self {
            Target::Builtin(l) => l.unload(),
            Target::Image(r) => r.unload(),
        }
    }

    pub fn config(&self) -> Result<Config, String> {
        let mut req = [0u8; 64];
        let n = ioctl::encode_empty_request(ioctl::Kind::ConfigGetRequest, &mut req).unwrap();
        let (st, out) = self.ioctl(
            ioctl::IOCTL_WSKECHO_GET_CONFIG,
            &req[..n],
            ioctl::MAX_OUTPUT_BYTES,
        );
        if st != 0 {
            return Err(format!("config get: {:#x}", st as u32));
        }
        ioctl::decode_config_response(&out).map_err(|e| format!("config get: {e:?}"))
    }

    pub fn set_config(&self, change: &SetConfig) -> i32 {
        let mut buf = vec![0u8; change.encoded_len()];
        let n = change.encode(&mut buf).unwrap();
        self.ioctl(ioctl::IOCTL_WSKECHO_SET_CONFIG, &buf[..n], 0).0
    }

    pub fn counters(&self) -> Result<Counters, String> {
        let mut req = [0u8; ioctl::STATS_REQUEST_LEN];
        ioctl::StatsRequest {
            per_cpu: false,
            per_service: false,
        }
        .encode(&mut req)
        .unwrap();
        let (st, out) = self.ioctl(ioctl::IOCTL_WSKECHO_QUERY_STATS, &req, 4096);
        if st != 0 {
            return Err(format!("stats: {:#x}", st as u32));
        }
        ioctl::StatsView::parse(&out)
            .map(|v| v.global())
            .map_err(|e| format!("stats: {e:?}"))
    }

    /// The services with connections open (ConnActive > 0) and how many.
    pub fn services_with_connections(
        &self,
    ) -> Result<Vec<(control::config::Service, u64)>, String> {
        let mut req = [0u8; ioctl::STATS_REQUEST_LEN];
        ioctl::StatsRequest {
            per_cpu: false,
            per_service: true,
        }
        .encode(&mut req)
        .unwrap();
        let (st, out) = self.ioctl(
            ioctl::IOCTL_WSKECHO_QUERY_STATS,
            &req,
            ioctl::MAX_OUTPUT_BYTES,
        );
        if st != 0 {
            return Err(format!("stats: {:#x}", st as u32));
        }
        let v = ioctl::StatsView::parse(&out).map_err(|e| format!("stats: {e:?}"))?;
        Ok((0..v.service_count())
            .filter_map(|i| v.service(i))
            .map(|(s, c)| (s, c.get(control::stats::Counter::ConnActive)))
            .filter(|&(_, n)| n > 0)
            .collect())
    }

    /// `load start`: the NTSTATUS.
    pub fn job_start(&self, job: &LoadJob) -> i32 {
        let mut b = [0u8; 256];
        let n = ioctl::encode_load_start(job, &mut b).unwrap();
        self.ioctl(
            ioctl::IOCTL_WSKECHO_LOAD_START,
            &b[..n],
            ioctl::LOAD_START_RESPONSE_LEN,
        )
        .0
    }

    pub fn job_stop(&self) -> i32 {
        let mut b = [0u8; 64];
        let n = ioctl::encode_load_stop(0, &mut b).unwrap();
        self.ioctl(ioctl::IOCTL_WSKECHO_LOAD_STOP, &b[..n], 64).0
    }

    pub fn job_status(&self) -> Result<LoadStatus, String> {
        let mut b = [0u8; 64];
        let n = ioctl::encode_empty_request(ioctl::Kind::LoadStatusRequest, &mut b).unwrap();
        let (st, out) = self.ioctl(
            ioctl::IOCTL_WSKECHO_LOAD_STATUS,
            &b[..n],
            ioctl::LOAD_STATUS_RESPONSE_LEN,
        );
        if st != 0 {
            return Err(format!("load status: {:#x}", st as u32));
        }
        ioctl::decode_load_status(&out).map_err(|e| format!("load status: {e:?}"))
    }
}
