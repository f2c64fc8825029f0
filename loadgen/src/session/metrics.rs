//! `echoload run --metrics ADDR`: the run's live counters in the Prometheus format while it
//! goes on. Here with the session that runs the measurement and feeds the endpoint; the
//! format and the endpoint are `crate::metrics`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::client::{Interval, LiveCounts, RunConfig, Totals};
use crate::metrics::{Exposition, Kind, MetricsServer};
use crate::results::report::RunReport;

/// What `echoload run --metrics` shows besides the live counts.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub target: String,
    pub label: String,
    pub agent_index: u32,
    pub agent_count: u32,
}

/// `echoload run`'s live counters (measured window only: warm-up traffic is not counted), and
/// the run as of its last complete interval (`t`: none before the first).
pub fn client_exposition(
    l: &LiveCounts,
    elapsed: Duration,
    info: &RunInfo,
    t: Option<&Totals>,
) -> String {
    use Kind::{Counter as C, Gauge as G};
    let mut e = Exposition::default();
    let (idx, cnt) = (info.agent_index.to_string(), info.agent_count.to_string());
    e.family(
        "echoload_run_info",
        G,
        "The running load test (value 1); its target, label and agent identity as labels.",
    )
    .sample(
        "echoload_run_info",
        &[
            ("target", &info.target),
            ("label", &info.label),
            ("agent_index", &idx),
            ("agent_count", &cnt),
        ],
        1.0,
    );
    e.single(
        "echoload_run_sent_bytes_total",
        C,
        "Bytes sent in the measured window.",
        l.sent_bytes as f64,
    );
    e.single(
        "echoload_run_received_bytes_total",
        C,
        "Bytes received in the measured window.",
        l.recv_bytes as f64,
    );
    e.single(
        "echoload_run_messages_total",
        C,
        "Messages received in the measured window (sent, for send-only modes).",
        l.msgs as f64,
    );
    e.single(
        "echoload_run_elapsed_seconds",
        G,
        "Seconds since the run's clock started (warm-up included).",
        elapsed.as_secs_f64(),
    );
    client_totals(&mut e, &t.cloned().unwrap_or_default());
    e.finish()
}

/// The families built from the complete intervals: messages each way, loss, errors by kind,
/// the latency summary and (UDP) the jitter.
fn client_totals(e: &mut Exposition, t: &Totals) {
    use Kind::{Counter as C, Gauge as G};
    const AS_OF: &str = " Up to the last complete interval (-i, 1 s by default).";
    e.single(
        "echoload_run_sent_messages_total",
        C,
        &format!("Messages sent in the measured window.{AS_OF}"),
        t.sent_msgs as f64,
    );
    e.single(
        "echoload_run_received_messages_total",
        C,
        &format!("Replies (or source messages) received in the measured window.{AS_OF}"),
        t.recv_msgs as f64,
    );
    e.single(
        "echoload_run_lost_messages_total",
        C,
        &format!("Replies that never came (UDP: counted when a later reply shows the gap).{AS_OF}"),
        t.errors.lost as f64,
    );
    let expected = t.recv_msgs + t.errors.lost;
    e.single(
        "echoload_run_loss_ratio",
        G,
        &format!("Lost / (received + lost), 0 to 1.{AS_OF}"),
        if expected > 0 {
            t.errors.lost as f64 / expected as f64
        } else {
            0.0
        },
    );
    let name = "echoload_run_errors_total";
    e.family(
        name,
        C,
        &format!(
            "Integrity and connection errors, by kind (lost replies are counted apart).{AS_OF}"
        ),
    );
    let er = &t.errors;
    for (kind, v) in [
        ("corrupted", er.corrupted),
        ("duplicated", er.duplicated),
        ("reordered", er.reordered),
        ("connect", er.connect),
        ("io", er.io),
    ] {
        e.sample(name, &[("kind", kind)], v as f64);
    }
    let name = "echoload_run_latency_seconds";
    e.family(
        name,
        Kind::Summary,
        &format!("Round-trip latency (from the intended send time in rate mode).{AS_OF}"),
    );
    let h = &t.latency;
    for (q, label) in [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999")] {
        let v = if h.is_empty() {
            f64::NAN
        } else {
            h.value_at_quantile(q) as f64 / 1e9
        };
        e.sample(name, &[("quantile", label)], v);
    }
    let sum_s = if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / 1e9
    };
    e.sample("echoload_run_latency_seconds_sum", &[], sum_s);
    e.sample("echoload_run_latency_seconds_count", &[], h.len() as f64);
    if let Some(j) = t.jitter_ns {
        e.single(
            "echoload_run_jitter_seconds",
            G,
            &format!("UDP: RFC 3550 interarrival jitter, mean over the flows.{AS_OF}"),
            j / 1e9,
        );
    }
}

/// What the run's endpoint renders: the live counts, the time, the run as of its last
/// complete interval.
type LiveState = (LiveCounts, Duration, Option<Totals>);

/// `echoload run --metrics ADDR`: the run, with its live counters on ADDR while it goes on.
pub fn run_with_endpoint(
    cfg: &RunConfig,
    addr: &str,
    on_interval: Option<&mut dyn FnMut(&Interval)>,
) -> Result<RunReport> {
    let info = RunInfo {
        target: cfg.target.to_string(),
        label: cfg.label.clone(),
        agent_index: cfg.agent.index,
        agent_count: cfg.agent.count,
    };
    let state: Arc<std::sync::Mutex<LiveState>> = Arc::new(std::sync::Mutex::new((
        LiveCounts::default(),
        Duration::ZERO,
        None,
    )));
    let shared = state.clone();
    let server = MetricsServer::start(addr, move || {
        let s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        client_exposition(&s.0, s.1, &info, s.2.as_ref())
    })?;
    eprintln!("metrics on http://{}/metrics", server.addr());
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut observe = |l: LiveCounts, t: Duration| {
        let mut s = lock();
        (s.0, s.1) = (l, t);
    };
    let mut totals = |t: &Totals| lock().2 = Some(t.clone());
    Ok(super::run_watched(
        cfg,
        on_interval,
        Some(&mut observe),
        Some(&mut totals),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::check::well_formed;

    #[test]
    fn the_exposition_is_well_formed_and_carries_the_values() {
        let l = LiveCounts {
            sent_bytes: 7,
            recv_bytes: 8,
            msgs: 9,
        };
        let info = RunInfo {
            target: "198.18.0.1:7007".into(),
            label: "a\"b".into(),
            agent_index: 1,
            agent_count: 3,
        };
        let t = client_exposition(&l, Duration::from_secs(2), &info, None);
        well_formed(&t);
        // The run so far: messages each way, loss, errors by kind, latency in seconds.
        let mut tot = Totals {
            sent_msgs: 1000,
            recv_msgs: 990,
            jitter_ns: Some(2_500.0),
            ..Default::default()
        };
        tot.errors.lost = 10;
        tot.errors.corrupted = 2;
        for us in 1..=1000u64 {
            tot.latency.record(us * 1000).unwrap();
        }
        let t = client_exposition(&l, Duration::from_secs(2), &info, Some(&tot));
        well_formed(&t);
        for want in [
            "\nechoload_run_sent_messages_total 1000\n",
            "\nechoload_run_received_messages_total 990\n",
            "\nechoload_run_lost_messages_total 10\n",
            "\nechoload_run_loss_ratio 0.01\n",
            "\nechoload_run_errors_total{kind=\"corrupted\"} 2\n",
            "# TYPE echoload_run_latency_seconds summary\n",
            "\nechoload_run_latency_seconds{quantile=\"0.5\"} 0.0005",
            "\nechoload_run_latency_seconds{quantile=\"0.999\"} 0.000999",
            "\nechoload_run_latency_seconds_count 1000\n",
            "\nechoload_run_jitter_seconds 0.0000025\n",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
        assert!(t.contains("echoload_run_info{target=\"198.18.0.1:7007\",label=\"a\\\"b\",agent_index=\"1\",agent_count=\"3\"} 1\n"));
        assert!(t.contains("\nechoload_run_messages_total 9\n"));
    }
}
