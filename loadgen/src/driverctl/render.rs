//! Text and JSON renderings of answers.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use control::config::{Config, DWORD_SPECS};
use control::ioctl::status::status_name;
use control::ioctl::{LoadStatus, ServiceState, ServiceStates};
use control::stats::{Counter, Counters};
use serde_json::{json, Value};

use super::Snapshot;

pub(super) fn rate(prev: &Counters, cur: &Counters, c: Counter, secs: f64) -> f64 {
    cur.get(c).wrapping_sub(prev.get(c)) as i64 as f64 / secs
}

const WATCH_COLUMNS: [Counter; 8] = [
    Counter::ConnActive,
    Counter::ConnAccepted,
    Counter::BytesIn,
    Counter::BytesOut,
    Counter::DatagramsIn,
    Counter::DatagramsOut,
    Counter::DropNoSendContext,
    Counter::RetainedBytes,
];

pub(super) fn column_title(c: Counter) -> String {
    if c.is_gauge() {
        c.name().to_string()
    } else {
        format!("{}/s", c.name())
    }
}

pub(super) fn watch_header() -> String {
    WATCH_COLUMNS
        .iter()
        .map(|&c| format!("{:>14}", column_title(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of --watch, each value right-aligned under its title.
pub(super) fn delta_line(prev: &Counters, cur: &Counters, secs: f64) -> String {
    WATCH_COLUMNS
        .iter()
        .map(|&c| {
            let w = column_title(c).len().max(14);
            if c.is_gauge() {
                format!("{:>w$}", cur.get(c) as i64)
            } else {
                format!("{:>w$.0}", rate(prev, cur, c, secs))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per-second rates of totals and current values of gauges.
pub(super) fn delta_json(prev: &Counters, cur: &Counters, secs: f64) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("interval_s".into(), json!(secs));
    for c in Counter::ALL {
        if c.is_gauge() {
            m.insert(c.name().into(), json!(cur.get(c) as i64));
        } else {
            m.insert(
                format!("{}_per_s", c.name()),
                json!(rate(prev, cur, c, secs)),
            );
        }
    }
    Value::Object(m)
}

pub(super) fn counters_json(c: &Counters) -> Value {
    let mut m = serde_json::Map::new();
    for k in Counter::ALL {
        // Gauges are signed sums of per-CPU deltas.
        let v = if k.is_gauge() {
            json!(c.get(k) as i64)
        } else {
            json!(c.get(k))
        };
        m.insert(k.name().into(), v);
    }
    Value::Object(m)
}

/// Per CPU the connection gauge is opened minus closed on that CPU: a connection may close on
/// another CPU than the one that accepted it, so one CPU's figure can be negative and only the
/// global sum counts active connections. Per-CPU blocks name it for what it is.
const CPU_CONN_DELTA: &str = "conn_active_delta";

fn cpu_counters_json(c: &Counters) -> Value {
    let mut v = counters_json(c);
    if let Some(m) = v.as_object_mut() {
        if let Some(x) = m.remove(Counter::ConnActive.name()) {
            m.insert(CPU_CONN_DELTA.into(), x);
        }
    }
    v
}

pub(super) fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "time_us": s.time_us,
        "global": counters_json(&s.global),
        "per_cpu": s.cpus.iter().map(cpu_counters_json).collect::<Vec<_>>(),
        "per_service": s.services.iter().map(|(svc, c)| json!({"service": svc.to_string(), "counters": counters_json(c)})).collect::<Vec<_>>(),
    })
}

pub(super) fn counters_text(c: &Counters, indent: &str) -> String {
    let mut t = String::new();
    for k in Counter::ALL {
        let v = if k.is_gauge() {
            (c.get(k) as i64).to_string()
        } else {
            c.get(k).to_string()
        };
        let _ = writeln!(t, "{indent}{:<22} {v}", k.name());
    }
    t
}

/// The UDP guard, visible: what the rate-limit drop counter means and how to lift the limit.
pub(super) fn guard_note(c: &Counters) -> Option<String> {
    let n = c.get(Counter::DropRateLimited);
    (n > 0).then(|| {
        format!(
            "note: {n} UDP datagrams dropped by the per-source rate limit (UdpRateLimitPerSource \
             per non-loopback source address); `echoload driver config set --limit \
             UdpRateLimitPerSource=0` lifts it\n"
        )
    })
}

pub(super) fn snapshot_text(s: &Snapshot) -> String {
    let mut t = String::from("global:\n");
    t += &counters_text(&s.global, "  ");
    t += &guard_note(&s.global).unwrap_or_default();
    for (i, c) in s.cpus.iter().enumerate() {
        let _ = writeln!(t, "cpu {i}:");
        t += &counters_text(c, "  ").replacen(
            &format!("  {:<22} ", Counter::ConnActive.name()),
            &format!("  {CPU_CONN_DELTA:<22} "),
            1,
        );
    }
    for (svc, c) in &s.services {
        let _ = writeln!(t, "service {svc}:");
        t += &counters_text(c, "  ");
    }
    t
}

pub(super) fn addr_text(a: IpAddr) -> String {
    a.to_string()
}

pub fn config_json(c: &Config) -> Value {
    let mut limits = serde_json::Map::new();
    for d in DWORD_SPECS {
        limits.insert(d.name.into(), json!(c.limits.dword(d.name)));
    }
    json!({
        "services": c.services.as_slice().iter().map(|s| json!({
            "mode": s.mode.name(), "proto": s.proto.name(), "port": s.port, "bind": addr_text(s.bind),
        })).collect::<Vec<_>>(),
        "limits": limits,
        "allowed_sources": c.limits.allowed_sources().iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

pub(super) fn config_text(c: &Config) -> String {
    let mut t = format!("services ({}):\n", c.services.len());
    for s in c.services.as_slice() {
        let _ = writeln!(
            t,
            "  {:<9} {} {}:{}",
            s.mode.name(),
            s.proto.name(),
            fmt_bind(s.bind),
            s.port
        );
    }
    t += "limits:\n";
    for d in DWORD_SPECS {
        let _ = writeln!(
            t,
            "  {:<30} {}",
            d.name,
            c.limits.dword(d.name).unwrap_or(0)
        );
    }
    let srcs: Vec<String> = c
        .limits
        .allowed_sources()
        .iter()
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(t, "  {:<30} {}", "AllowedSources", srcs.join(", "));
    t
}

pub(super) fn fmt_bind(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

pub(super) fn load_json(l: &LoadStatus) -> Value {
    json!({
        "job_id": l.job_id,
        "state": l.state.name(),
        "last_status": format!("0x{:08X}", l.last_status as u32),
        "elapsed_ms": l.elapsed_ms,
        "connections_open": l.connections_open,
        "connect_failures": l.connect_failures,
        "messages_sent": l.messages_sent,
        "messages_received": l.messages_received,
        "bytes_sent": l.bytes_sent,
        "bytes_received": l.bytes_received,
        "verify_failures": l.verify_failures,
        "job": l.job.map(|j| json!({
            "target": SocketAddr::new(j.target, j.port).to_string(),
            "proto": j.proto.name(),
            "pattern": j.pattern.name(),
            "connections": j.connections,
            "message_size": j.message_size,
            "duration_ms": j.duration_ms,
            "rate": j.rate,
            "stream": j.stream,
            "flows": j.flows,
        })),
    })
}

/// One service's state in words: "open", or "NOT OPEN: <status>[, retrying]".
fn state_words(s: &ServiceState) -> String {
    if s.is_open() {
        "open".into()
    } else {
        format!(
            "NOT OPEN: {}{}",
            status_text(s.status),
            if s.retrying { ", retrying" } else { "" }
        )
    }
}

/// `driver status`'s service-state section (None: the driver does not report it).
pub(super) fn service_states_text(s: Option<&ServiceStates>) -> String {
    let Some(s) = s else {
        return "service state: not reported by this driver\n".into();
    };
    let open = s.iter().filter(|x| x.is_open()).count();
    let mut t = format!("service state ({open} of {} open):\n", s.len());
    for x in s.iter() {
        let v = &x.service;
        let _ = writeln!(
            t,
            "  {:<9} {}{} {}:{}  {}",
            v.mode.name(),
            v.proto.name(),
            if v.stream { " (stream)" } else { "" },
            fmt_bind(v.bind),
            v.port,
            state_words(x)
        );
    }
    t
}

pub(super) fn service_states_json(s: &ServiceStates) -> Value {
    Value::Array(
        s.iter()
            .map(|x| {
                json!({
                    "proto": x.service.proto.name(),
                    "mode": x.service.mode.name(),
                    "bind": x.service.bind.to_string(),
                    "port": x.service.port,
                    "stream": x.service.stream,
                    "open": x.is_open(),
                    "status": match status_name(x.status) {
                        "NTSTATUS" => format!("0x{:08X}", x.status as u32),
                        name => name.to_string(),
                    },
                    "status_code": format!("0x{:08X}", x.status as u32),
                    "state": state_words(x),
                    "retrying": x.retrying,
                })
            })
            .collect(),
    )
}

/// An NTSTATUS as its name and hex value, or the hex value alone when it has no name here.
pub(super) fn status_text(s: i32) -> String {
    match status_name(s) {
        "NTSTATUS" => format!("0x{:08X}", s as u32),
        name => format!("{name} (0x{:08X})", s as u32),
    }
}

pub(super) fn load_line(l: &LoadStatus) -> String {
    match l.job {
        None => l.state.name().to_string(),
        Some(j) => format!(
            "{} #{} {} {} -> {} x{} {} B, {:.1}/{:.1} s, sent {} msgs / {} B, received {} msgs / {} B, {} verify failures, {} connect failures{}",
            l.state.name(),
            l.job_id,
            j.pattern.name(),
            if j.stream { "tcp (stream sockets)" } else { j.proto.name() },
            SocketAddr::new(j.target, j.port),
            j.connections,
            j.message_size,
            f64::from(l.elapsed_ms) / 1e3,
            f64::from(j.duration_ms) / 1e3,
            l.messages_sent,
            l.bytes_sent,
            l.messages_received,
            l.bytes_received,
            l.verify_failures,
            l.connect_failures,
            if l.last_status == 0 { String::new() } else { format!(", status {}", status_text(l.last_status)) }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: a service that failed to open shows as such, with its status in words, in
    /// the text and the JSON of `driver status`; an unnamed status as its hex value.
    #[test]
    fn service_states_say_what_failed() {
        use control::config::{Mode, Proto, Service};
        use control::ioctl::status::{STATUS_ADDRESS_ALREADY_EXISTS, STATUS_SUCCESS};
        let v4 = IpAddr::from([127, 0, 0, 1]);
        let st = [
            ServiceState {
                service: Service::new(Proto::Tcp, 7, Mode::Echo, v4),
                status: STATUS_SUCCESS,
                retrying: false,
            },
            ServiceState {
                service: Service::new(Proto::Udp, 7, Mode::Echo, v4),
                status: STATUS_ADDRESS_ALREADY_EXISTS,
                retrying: true,
            },
            ServiceState {
                service: Service::new(Proto::Udp, 9, Mode::Discard, v4),
                status: 0xC000_0236_u32 as i32,
                retrying: false,
            },
        ];
        let mut buf = [0u8; 512];
        let n = control::ioctl::encode_service_states(3, |i| st[i], &mut buf).unwrap();
        let s = control::ioctl::decode_service_states(&buf[..n]).unwrap();
        let text = service_states_text(Some(&s));
        assert!(text.starts_with("service state (1 of 3 open):\n"), "{text}");
        assert!(
            text.contains("  echo      tcp 127.0.0.1:7  open\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  echo      udp 127.0.0.1:7  NOT OPEN: STATUS_ADDRESS_ALREADY_EXISTS (0xC000020A), retrying\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  discard   udp 127.0.0.1:9  NOT OPEN: 0xC0000236\n"),
            "{text}"
        );
        let j = service_states_json(&s);
        assert_eq!(j[0]["open"], true);
        assert_eq!(j[1]["open"], false);
        assert_eq!(j[1]["status"], "STATUS_ADDRESS_ALREADY_EXISTS");
        assert_eq!(j[1]["status_code"], "0xC000020A");
        assert_eq!(j[1]["retrying"], true);
        assert_eq!(j[2]["status"], "0xC0000236");
        assert_eq!(
            service_states_text(None),
            "service state: not reported by this driver\n"
        );
    }

    /// Bug 9 (issue 11): an unnamed status printed as the word "NTSTATUS".
    #[test]
    fn unnamed_status_prints_hex() {
        assert_eq!(status_text(0xC000_0236_u32 as i32), "0xC0000236");
        assert_eq!(
            status_text(control::ioctl::status::STATUS_NOT_FOUND),
            "STATUS_NOT_FOUND (0xC0000225)"
        );
        let l = LoadStatus {
            state: control::ioctl::JobState::Failed,
            last_status: 0xC000_0236_u32 as i32,
            job: Some(control::ioctl::LoadJob {
                target: std::net::IpAddr::from([127, 0, 0, 1]),
                port: 7,
                proto: control::config::Proto::Tcp,
                pattern: control::ioctl::LoadPattern::Echo,
                connections: 1,
                message_size: 64,
                duration_ms: 1000,
                rate: 0,
                stream: false,
                flows: 0,
            }),
            ..LoadStatus::IDLE
        };
        let line = load_line(&l);
        assert!(line.contains("status 0xC0000236"), "{line}");
        assert!(!line.contains("NTSTATUS"), "{line}");
    }
}
