//! wrk2's habits in open-loop rate mode (issue 21): besides the latency from the intended
//! send time, the uncorrected latency (from the actual send time) and the send lag (actual -
//! intended), so a late client shows apart from a late server.

mod common;

use std::time::Duration;

use common::{addr, quick, server_on};
use control::protocol::Mode as Svc;
use echoload::client::{Mode, Proto};
use echoload::run;

/// A rate no client reaches (10^8 msg/s on one connection): every message goes out later
/// than intended, more so as the run goes on, so the send lag is large (at least 0.8 t at
/// time t for any client below 2·10^7 msg/s), the corrected latency carries it, and the
/// uncorrected one, counted from the actual send, does not.
#[test]
fn a_late_client_shows_as_send_lag_not_as_server_latency() {
    let srv = server_on("127.0.0.1");
    let mut cfg = quick(addr(&srv, Svc::Echo, Proto::Tcp), Proto::Tcp, Mode::Rate);
    cfg.rate = Some(1e8);
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_millis(400);
    let r = run(&cfg);
    let t = r.table();
    let lag = r.send_lag_us.expect("a paced run has a send lag");
    let u = r
        .latency_uncorrected_us
        .expect("and an uncorrected latency");
    assert_eq!(lag.count, r.sent_msgs, "{t}");
    assert!(lag.p50 > 50_000.0, "{t}");
    assert!(u.count > 0, "{t}");
    assert!(r.latency_us.p50 > 2.0 * u.p50, "{t}");
    assert!(
        t.contains("  send lag    p50 ") && t.contains("  uncorrected p50 "),
        "{t}"
    );
}

/// On time (UDP, 2,000 msg/s): every measured message has a lag sample, every reply an
/// uncorrected sample, and since each reply's corrected latency is its uncorrected one plus
/// its lag, no quantile of the uncorrected latency is above the corrected one.
#[test]
fn uncorrected_latency_never_exceeds_the_corrected_one() {
    let srv = server_on("127.0.0.1");
    let mut cfg = quick(addr(&srv, Svc::Echo, Proto::Udp), Proto::Udp, Mode::Rate);
    cfg.rate = Some(2_000.0);
    let r = run(&cfg);
    let t = r.table();
    let lag = r.send_lag_us.unwrap();
    let unc = r.latency_uncorrected_us.unwrap();
    let cor = r.latency_us;
    assert_eq!(lag.count, r.sent_msgs, "{t}");
    assert_eq!(unc.count, cor.count, "{t}");
    for (a, b) in [
        (unc.min, cor.min),
        (unc.p50, cor.p50),
        (unc.p99, cor.p99),
        (unc.max, cor.max),
    ] {
        assert!(a <= b, "uncorrected {a} > corrected {b}\n{t}");
    }
    // Not paced: neither figure.
    let pp = run(&quick(
        addr(&srv, Svc::Echo, Proto::Udp),
        Proto::Udp,
        Mode::Pingpong,
    ));
    assert!(pp.send_lag_us.is_none() && pp.latency_uncorrected_us.is_none());
}
