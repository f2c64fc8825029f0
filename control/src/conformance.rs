//! A conformance suite for the control ABI (feature `std`): runs well-formed and malformed
//! requests against any implementation — the mock, the driver inside wsk-sim, a live driver
//! through `echoload driver check` — and reports each case. Every malformed case must be
//! refused with its specific NTSTATUS and must change nothing (the suite compares the
//! configuration and the load-job state before and after).

use crate::config::{Mode, Proto, Service};
use crate::ioctl::status::{
    status_name, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_ADDRESS,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH,
    STATUS_SUCCESS,
};
use crate::ioctl::{
    decode_config_response, decode_load_status, encode_empty_request, encode_load_start,
    encode_load_stop, ControlError, Kind, LoadJob, LoadPattern, SetConfig, StatsRequest, StatsView,
    VersionInfo, ABI_VERSION, IOCTL_WSKECHO_GET_CONFIG, IOCTL_WSKECHO_LOAD_START,
    IOCTL_WSKECHO_LOAD_STATUS, IOCTL_WSKECHO_LOAD_STOP, IOCTL_WSKECHO_QUERY_STATS,
    IOCTL_WSKECHO_QUERY_VERSION, IOCTL_WSKECHO_SET_CONFIG, LOAD_START_RESPONSE_LEN,
    LOAD_STATUS_RESPONSE_LEN, MAX_OUTPUT_BYTES, VERSION_INFO_LEN,
};
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

/// One request and what came back.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub expected: i32,
    pub got: i32,
    /// Empty when the case passed.
    pub problem: String,
}

impl Case {
    pub fn passed(&self) -> bool {
        self.problem.is_empty()
    }
}

/// Sends one IOCTL: (code, input, output capacity) -> (NTSTATUS, output) or a transport error.
pub type Call<'a> = dyn FnMut(u32, &[u8], usize) -> Result<(i32, Vec<u8>), String> + 'a;

fn enc(f: impl FnOnce(&mut [u8]) -> Result<usize, ControlError>) -> Vec<u8> {
    let mut b = vec![0u8; crate::ioctl::MAX_INPUT_BYTES];
    let n = f(&mut b).unwrap_or(0);
    b.truncate(n);
    b
}

fn fix_len(b: &mut [u8]) {
    let n = b.len() as u32;
    if b.len() >= 8 {
        b[4..8].copy_from_slice(&n.to_le_bytes());
    }
}

struct Suite<'c, 'a> {
    call: &'c mut Call<'a>,
    cases: Vec<Case>,
}

impl Suite<'_, '_> {
    fn expect(
        &mut self,
        name: &str,
        code: u32,
        input: &[u8],
        cap: usize,
        expected: i32,
    ) -> Option<Vec<u8>> {
        let (got, out, mut problem) = match (self.call)(code, input, cap) {
            Ok((s, o)) => (s, o, String::new()),
            Err(e) => (0, Vec::new(), format!("transport: {e}")),
        };
        if problem.is_empty() && got != expected {
            problem = format!(
                "expected {} (0x{:08X}), got {} (0x{:08X})",
                status_name(expected),
                expected as u32,
                status_name(got),
                got as u32
            );
        }
        if problem.is_empty() && got != STATUS_SUCCESS && !out.is_empty() {
            problem = format!("error status with {} output bytes", out.len());
        }
        if problem.is_empty() && out.len() > cap {
            problem = format!("{} output bytes for capacity {cap}", out.len());
        }
        let ok = problem.is_empty();
        self.cases.push(Case {
            name: name.to_string(),
            expected,
            got,
            problem,
        });
        ok.then_some(out)
    }

    fn fail(&mut self, name: &str, problem: String) {
        self.cases.push(Case {
            name: name.to_string(),
            expected: 0,
            got: 0,
            problem,
        });
    }

    /// The generic malformations of a well-formed request.
    fn malformed(&mut self, what: &str, code: u32, good: &[u8]) {
        let cap = MAX_OUTPUT_BYTES;
        for n in [0, 4, 7] {
            self.expect(
                &format!("{what}: {n}-byte input"),
                code,
                &good[..n.min(good.len())],
                cap,
                STATUS_INFO_LENGTH_MISMATCH,
            );
        }
        if good.len() > 8 {
            let cut = &good[..good.len() - 1];
            self.expect(
                &format!("{what}: one byte short"),
                code,
                cut,
                cap,
                STATUS_INFO_LENGTH_MISMATCH,
            );
            let mut b = cut.to_vec();
            fix_len(&mut b);
            self.expect(
                &format!("{what}: one byte short, header agrees"),
                code,
                &b,
                cap,
                STATUS_INFO_LENGTH_MISMATCH,
            );
        }
        let mut b = good.to_vec();
        b.push(0);
        self.expect(
            &format!("{what}: one byte long"),
            code,
            &b,
            cap,
            STATUS_INFO_LENGTH_MISMATCH,
        );
        fix_len(&mut b);
        self.expect(
            &format!("{what}: one byte long, header agrees"),
            code,
            &b,
            cap,
            STATUS_INFO_LENGTH_MISMATCH,
        );
        for v in [0, ABI_VERSION + 1] {
            let mut b = good.to_vec();
            b[0..2].copy_from_slice(&v.to_le_bytes());
            self.expect(
                &format!("{what}: ABI version {v}"),
                code,
                &b,
                cap,
                STATUS_REVISION_MISMATCH,
            );
        }
        let mut b = good.to_vec();
        b[2] ^= 0x20;
        self.expect(
            &format!("{what}: wrong message kind"),
            code,
            &b,
            cap,
            STATUS_INVALID_PARAMETER,
        );
    }

    /// `good` with bytes at `off` replaced, expecting `status`.
    fn patched(
        &mut self,
        name: &str,
        code: u32,
        good: &[u8],
        off: usize,
        bytes: &[u8],
        status: i32,
    ) {
        let mut b = good.to_vec();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        self.expect(name, code, &b, 64, status);
    }
}

/// Runs the suite. `free_port` must be a TCP port on 127.0.0.1 nobody listens on: it goes
/// into requests that must be refused (so nothing may bind or connect to it).
pub fn run(call: &mut Call<'_>, free_port: u16) -> Vec<Case> {
    let mut s = Suite {
        call,
        cases: Vec::new(),
    };
    let get = enc(|b| encode_empty_request(Kind::ConfigGetRequest, b));
    let status_req = enc(|b| encode_empty_request(Kind::LoadStatusRequest, b));
    let stats_req = enc(|b| {
        StatsRequest {
            per_cpu: true,
            per_service: true,
        }
        .encode(b)
    });

    // Well-formed queries, and the state to compare with at the end.
    let before_cfg = s
        .expect(
            "get config",
            IOCTL_WSKECHO_GET_CONFIG,
            &get,
            MAX_OUTPUT_BYTES,
            STATUS_SUCCESS,
        )
        .and_then(|o| decode_config_response(&o).ok());
    let before_job = s
        .expect(
            "load status",
            IOCTL_WSKECHO_LOAD_STATUS,
            &status_req,
            LOAD_STATUS_RESPONSE_LEN,
            STATUS_SUCCESS,
        )
        .and_then(|o| decode_load_status(&o).ok());
    if before_cfg.is_none() || before_job.is_none() {
        s.fail(
            "decode config and load status answers",
            "missing or malformed".into(),
        );
    }
    let mut features = 0;
    if let Some(o) = s.expect(
        "query version",
        IOCTL_WSKECHO_QUERY_VERSION,
        &[],
        VERSION_INFO_LEN,
        STATUS_SUCCESS,
    ) {
        match VersionInfo::decode(&o) {
            Ok(v) if v.compatible() => features = v.features,
            Ok(v) => s.fail(
                "version compatible",
                format!(
                    "driver ABI {}..={}, we speak {ABI_VERSION}",
                    v.abi_min, v.abi_max
                ),
            ),
            Err(e) => s.fail("version decodes", e.to_string()),
        }
    }
    if features & crate::ioctl::FEATURE_SERVICE_STATE != 0 {
        let req = enc(|b| encode_empty_request(Kind::ServicesRequest, b));
        let cap = crate::ioctl::service_states_len(crate::config::MAX_SERVICES);
        if let Some(o) = s.expect(
            "service states",
            crate::ioctl::IOCTL_WSKECHO_QUERY_SERVICES,
            &req,
            cap,
            STATUS_SUCCESS,
        ) {
            match crate::ioctl::decode_service_states(&o) {
                Ok(d) => {
                    let same = before_cfg.as_ref().is_none_or(|c| {
                        d.len() == c.services.len()
                            && d.iter()
                                .zip(c.services.as_slice())
                                .all(|(x, y)| x.service == *y)
                    });
                    if !same {
                        s.fail(
                            "service states list the configured services in order",
                            format!("{} states", d.len()),
                        );
                    }
                    s.expect(
                        "service states, capacity one short",
                        crate::ioctl::IOCTL_WSKECHO_QUERY_SERVICES,
                        &req,
                        o.len() - 1,
                        STATUS_BUFFER_TOO_SMALL,
                    );
                }
                Err(e) => s.fail("service states decode", e.to_string()),
            }
        }
    }
    if let Some(o) = s.expect(
        "stats per CPU and service",
        IOCTL_WSKECHO_QUERY_STATS,
        &stats_req,
        MAX_OUTPUT_BYTES,
        STATUS_SUCCESS,
    ) {
        match StatsView::parse(&o) {
            Ok(_) => {
                s.expect(
                    "stats, exact capacity",
                    IOCTL_WSKECHO_QUERY_STATS,
                    &stats_req,
                    o.len(),
                    STATUS_SUCCESS,
                );
                s.expect(
                    "stats, capacity one short",
                    IOCTL_WSKECHO_QUERY_STATS,
                    &stats_req,
                    o.len() - 1,
                    STATUS_BUFFER_TOO_SMALL,
                );
            }
            Err(e) => s.fail("stats decode", e.to_string()),
        }
    }

    // Codes and lengths.
    s.expect(
        "unknown IOCTL code",
        0x0022_2000,
        &[],
        64,
        STATUS_INVALID_DEVICE_REQUEST,
    );
    s.expect(
        "version query with input",
        IOCTL_WSKECHO_QUERY_VERSION,
        &[0],
        64,
        STATUS_INFO_LENGTH_MISMATCH,
    );
    s.expect(
        "version, capacity one short",
        IOCTL_WSKECHO_QUERY_VERSION,
        &[],
        VERSION_INFO_LEN - 1,
        STATUS_BUFFER_TOO_SMALL,
    );
    s.expect(
        "get config, capacity 8",
        IOCTL_WSKECHO_GET_CONFIG,
        &get,
        8,
        STATUS_BUFFER_TOO_SMALL,
    );
    s.expect(
        "load status, capacity one short",
        IOCTL_WSKECHO_LOAD_STATUS,
        &status_req,
        LOAD_STATUS_RESPONSE_LEN - 1,
        STATUS_BUFFER_TOO_SMALL,
    );

    let lo = "127.0.0.1".parse().expect("literal");
    let add = enc(|b| {
        SetConfig::AddService(Service::new(Proto::Tcp, free_port, Mode::Echo, lo)).encode(b)
    });
    let job = LoadJob {
        target: lo,
        port: free_port,
        proto: Proto::Tcp,
        pattern: LoadPattern::Source,
        connections: 1,
        message_size: 64,
        duration_ms: 100,
        rate: 1,
        stream: false,
        flows: 0,
    };
    let start = enc(|b| encode_load_start(&job, b));
    let stop = enc(|b| encode_load_stop(0, b));
    s.malformed("get config", IOCTL_WSKECHO_GET_CONFIG, &get);
    s.malformed("load status", IOCTL_WSKECHO_LOAD_STATUS, &status_req);
    s.malformed("stats", IOCTL_WSKECHO_QUERY_STATS, &stats_req);
    s.malformed("set config (add)", IOCTL_WSKECHO_SET_CONFIG, &add);
    s.malformed("load start", IOCTL_WSKECHO_LOAD_START, &start);
    s.malformed("load stop", IOCTL_WSKECHO_LOAD_STOP, &stop);

    // Fields. Offsets: set-config service at 16 (proto 16, mode 17, port 18, family 20,
    // reserved 22, address 24..40); load job at 8 (family 8, address 12..28, port 28, proto 30,
    // pattern 31, connections 32, size 36, duration 40, rate 44).
    let sc = IOCTL_WSKECHO_SET_CONFIG;
    s.patched(
        "add service: port 0",
        sc,
        &add,
        18,
        &[0, 0],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "add service: family 7",
        sc,
        &add,
        20,
        &[7, 0],
        STATUS_INVALID_ADDRESS,
    );
    s.patched(
        "add service: IPv4 tail not zero",
        sc,
        &add,
        39,
        &[1],
        STATUS_INVALID_ADDRESS,
    );
    s.patched(
        "add service: reserved not zero",
        sc,
        &add,
        22,
        &[1],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "add service: protocol 9",
        sc,
        &add,
        16,
        &[9],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "add service: mode 9",
        sc,
        &add,
        17,
        &[9],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "add service: UDP source",
        sc,
        &add,
        16,
        &[1, 2],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "set config: operation 9",
        sc,
        &add,
        8,
        &[9],
        STATUS_INVALID_PARAMETER,
    );
    let ls = IOCTL_WSKECHO_LOAD_START;
    s.patched(
        "load start: port 0",
        ls,
        &start,
        28,
        &[0, 0],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "load start: family 99",
        ls,
        &start,
        8,
        &[99, 0],
        STATUS_INVALID_ADDRESS,
    );
    s.patched(
        "load start: unspecified target",
        ls,
        &start,
        12,
        &[0, 0, 0, 0],
        STATUS_INVALID_ADDRESS,
    );
    s.patched(
        "load start: 0 connections",
        ls,
        &start,
        32,
        &[0, 0, 0, 0],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "load start: 0-byte messages",
        ls,
        &start,
        36,
        &[0, 0, 0, 0],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "load start: 2 MiB messages",
        ls,
        &start,
        36,
        &(2u32 << 20).to_le_bytes(),
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "load start: duration 0",
        ls,
        &start,
        40,
        &[0, 0, 0, 0],
        STATUS_INVALID_PARAMETER,
    );
    s.patched(
        "load start: pattern 7",
        ls,
        &start,
        31,
        &[7],
        STATUS_INVALID_PARAMETER,
    );
    s.expect(
        "load start, capacity one short",
        ls,
        &start,
        LOAD_START_RESPONSE_LEN - 1,
        STATUS_BUFFER_TOO_SMALL,
    );

    // Nothing above may have changed anything.
    let after_cfg = s
        .expect(
            "get config again",
            IOCTL_WSKECHO_GET_CONFIG,
            &get,
            MAX_OUTPUT_BYTES,
            STATUS_SUCCESS,
        )
        .and_then(|o| decode_config_response(&o).ok());
    let after_job = s
        .expect(
            "load status again",
            IOCTL_WSKECHO_LOAD_STATUS,
            &status_req,
            LOAD_STATUS_RESPONSE_LEN,
            STATUS_SUCCESS,
        )
        .and_then(|o| decode_load_status(&o).ok());
    if before_cfg != after_cfg {
        s.fail(
            "configuration unchanged by refused requests",
            format!("{before_cfg:?} -> {after_cfg:?}"),
        );
    }
    if before_job.map(|j| j.job_id) != after_job.map(|j| j.job_id) {
        s.fail(
            "no load job started by refused requests",
            format!("{before_job:?} -> {after_job:?}"),
        );
    }
    s.cases
}
