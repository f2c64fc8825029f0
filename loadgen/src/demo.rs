//! The embedded default: the reference server on loopback and a short mixed test against it.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::client::{Mode, Proto, RunConfig};
use crate::results::report::RunReport;
use crate::server::{self, ServeConfig};
use control::protocol::Mode as ServiceMode;

/// One test of the demo: (title, proto, mode, service, size, rate).
type Step = (&'static str, Proto, Mode, ServiceMode, usize, Option<f64>);

const PLAN: [Step; 5] = [
    (
        "TCP ping-pong, 64 B",
        Proto::Tcp,
        Mode::Pingpong,
        ServiceMode::Echo,
        64,
        None,
    ),
    (
        "UDP ping-pong, 64 B",
        Proto::Udp,
        Mode::Pingpong,
        ServiceMode::Echo,
        64,
        None,
    ),
    (
        "TCP stream, 64 KiB messages, every byte verified",
        Proto::Tcp,
        Mode::Stream,
        ServiceMode::Echo,
        65_536,
        None,
    ),
    (
        "UDP open loop at 50k msg/s, 256 B (latency from intended send time)",
        Proto::Udp,
        Mode::Rate,
        ServiceMode::Echo,
        256,
        Some(50_000.0),
    ),
    (
        "UDP sink, 64 B, sendmmsg + GSO into discard",
        Proto::Udp,
        Mode::Sink,
        ServiceMode::Discard,
        64,
        None,
    ),
];

/// Runs the demo, printing each report; returns the reports (all must be clean for exit 0).
pub fn run(each: Duration, progress: bool) -> Result<Vec<RunReport>> {
    let cfg = ServeConfig::loopback_ephemeral();
    let srv = server::spawn(cfg).context("starting the embedded reference server on 127.0.0.1")?;
    crate::output::println(&format!("echoload demo: reference server on 127.0.0.1 (OS-assigned ports); {} tests of {:.1} s each\n", PLAN.len(), each.as_secs_f64()));
    let mut out = Vec::new();
    for (title, proto, mode, svc, size, rate) in PLAN {
        let sproto = if proto == Proto::Tcp {
            server::Proto::Tcp
        } else {
            server::Proto::Udp
        };
        let Some(target) = srv.addr(svc, sproto) else {
            crate::output::println(&format!(
                "== {title}: skipped ({proto} {svc:?} not offered by the server)\n"
            ));
            continue;
        };
        let rc = RunConfig {
            target,
            proto,
            mode,
            size,
            rate,
            duration: each,
            warmup: Duration::from_millis(200),
            window_bytes: 4 << 20,
            progress,
            ..RunConfig::default()
        };
        crate::output::println(&format!("== {title}"));
        let before = srv.counters();
        let r = crate::run(&rc);
        crate::output::print(&r.table());
        if mode == Mode::Sink {
            // What was sent is not what arrived: loopback drops what the server cannot take.
            let got = srv.counters().rx_msgs.saturating_sub(before.rx_msgs);
            crate::output::println(&format!(
                "  server      received {got} datagrams over the whole run (warm-up included)"
            ));
        }
        crate::output::println("");
        out.push(r);
    }
    let _ = srv.stop();
    Ok(out)
}
