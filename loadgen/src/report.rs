//! Results: the JSON document, the human table, merging of several runs.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::{Errors, Measurement, Mode, Proto, RunConfig, Stats, Wire};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub bits_per_s: f64,
    pub bytes_per_s: f64,
    pub msgs_per_s: f64,
}

/// Latency percentiles in microseconds (0 when nothing was measured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// One run's result; serialized as the `--json` document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub target: String,
    pub proto: Proto,
    pub mode: Mode,
    pub wire: Wire,
    pub conns: usize,
    pub threads: usize,
    pub size: usize,
    /// Length of the measurement window actually covered (after warm-up).
    pub duration_s: f64,
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    /// Received traffic per second (sent traffic for sink mode).
    pub throughput: Throughput,
    /// Latency in µs, ns-resolution histogram.
    pub latency_us: Latency,
    pub errors: Errors,
    /// Human-readable descriptions of the first errors.
    pub messages: Vec<String>,
    /// HdrHistogram V2 serialization (ns values), base64.
    pub histogram: String,
}

pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut v = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut v)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(v)
}

pub fn decode_histogram(s: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("histogram is not base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram is not HdrHistogram V2: {e:?}"))?;
    Ok(h)
}

impl RunReport {
    /// The result document of a measurement made with `cfg`.
    pub fn new(cfg: &RunConfig, m: &Measurement) -> RunReport {
        RunReport::from_stats(cfg, &m.stats, m.duration_s)
    }

    fn from_stats(cfg: &RunConfig, st: &Stats, duration_s: f64) -> RunReport {
        let (msgs, bytes) = if cfg.mode == Mode::Sink {
            (st.sent_msgs, st.sent_bytes)
        } else {
            (st.recv_msgs, st.recv_bytes)
        };
        let per_s = |v: u64| {
            if duration_s > 0.0 {
                v as f64 / duration_s
            } else {
                0.0
            }
        };
        let mut messages = st.messages.clone();
        let moved = if cfg.mode == Mode::Sink {
            st.sent_bytes > 0
        } else {
            st.recv_bytes > 0
        };
        if !moved && messages.is_empty() {
            messages.push(if duration_s <= 0.0 {
                "nothing was measured (the measured window is empty)".to_string()
            } else if cfg.mode == Mode::Sink {
                "nothing was sent in the measured window".to_string()
            } else {
                format!(
                    "nothing was received in the measured window (is {} a {} service?)",
                    cfg.target,
                    match cfg.mode {
                        Mode::Source => "source",
                        _ => "echo",
                    }
                )
            });
        }
        RunReport {
            target: cfg.target.to_string(),
            proto: cfg.proto,
            mode: cfg.mode,
            wire: cfg.wire,
            conns: cfg.conns,
            threads: cfg.threads.min(cfg.conns),
            size: cfg.size,
            duration_s,
            sent_msgs: st.sent_msgs,
            recv_msgs: st.recv_msgs,
            sent_bytes: st.sent_bytes,
            recv_bytes: st.recv_bytes,
            throughput: Throughput {
                bits_per_s: per_s(bytes) * 8.0,
                bytes_per_s: per_s(bytes),
                msgs_per_s: per_s(msgs),
            },
            latency_us: Latency::from_histogram(&st.hist),
            errors: st.errors,
            messages,
            histogram: encode_histogram(&st.hist),
        }
    }

    /// Whether the measured window moved data: something sent (send-only runs) or received
    /// (every other mode expects replies or a stream).
    pub fn moved_data(&self) -> bool {
        if self.mode == Mode::Sink {
            self.sent_bytes > 0
        } else {
            self.recv_bytes > 0
        }
    }

    /// Data moved, no integrity error and no failed connection; loss/duplicates count unless
    /// `allow_loss`.
    pub fn clean(&self, allow_loss: bool) -> bool {
        let e = &self.errors;
        self.moved_data()
            && e.corrupted == 0
            && e.connect == 0
            && e.io == 0
            && (allow_loss || (e.lost == 0 && e.duplicated == 0))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    pub fn write_json(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} → {}  ({} {}{}, {} thread{}, {} B, wire {:?}, {:.2} s measured)",
            self.proto,
            self.mode,
            self.target,
            self.conns,
            if self.proto == Proto::Udp {
                "flow"
            } else {
                "conn"
            },
            if self.conns == 1 { "" } else { "s" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.size,
            self.wire,
            self.duration_s
        );
        let t = &self.throughput;
        let _ = writeln!(
            s,
            "  throughput  {:>12}  {:>12}  {:>14}",
            human(t.bits_per_s, "bit/s"),
            human(t.bytes_per_s, "B/s"),
            human(t.msgs_per_s, "msg/s")
        );
        let _ = writeln!(
            s,
            "  sent        {:>12} msgs {:>14} bytes",
            self.sent_msgs, self.sent_bytes
        );
        let _ = writeln!(
            s,
            "  received    {:>12} msgs {:>14} bytes",
            self.recv_msgs, self.recv_bytes
        );
        let l = &self.latency_us;
        if l.count > 0 {
            let _ = writeln!(s, "  latency µs  min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  ({} samples)", l.min, l.p50, l.p90, l.p99, l.p999, l.p9999, l.max, l.count);
        }
        let e = &self.errors;
        let _ = writeln!(
            s,
            "  errors      lost {}  duplicated {}  reordered {}  corrupted {}  connect {}  io {}",
            e.lost, e.duplicated, e.reordered, e.corrupted, e.connect, e.io
        );
        for m in &self.messages {
            let _ = writeln!(s, "  ! {m}");
        }
        s
    }
}

pub(crate) fn human(v: f64, unit: &str) -> String {
    let (d, p) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{:.2} {p}{unit}", v / d)
}

/// Combines runs made in parallel (e.g. from several machines): counts and rates add up, the
/// latency comes from the summed histograms, the duration is the longest one.
pub fn merge(reports: &[RunReport]) -> Result<RunReport> {
    let Some(first) = reports.first() else {
        bail!("nothing to merge")
    };
    let mut out = first.clone();
    let mut hist = decode_histogram(&first.histogram)?;
    for r in &reports[1..] {
        let h = decode_histogram(&r.histogram)?;
        hist.add(&h)
            .map_err(|e| anyhow::anyhow!("histograms cannot be merged: {e:?}"))?;
        if !out.target.split(',').any(|t| t == r.target) {
            out.target = format!("{},{}", out.target, r.target);
        }
        out.conns += r.conns;
        out.threads += r.threads;
        out.duration_s = out.duration_s.max(r.duration_s);
        out.sent_msgs += r.sent_msgs;
        out.recv_msgs += r.recv_msgs;
        out.sent_bytes += r.sent_bytes;
        out.recv_bytes += r.recv_bytes;
        out.throughput.bits_per_s += r.throughput.bits_per_s;
        out.throughput.bytes_per_s += r.throughput.bytes_per_s;
        out.throughput.msgs_per_s += r.throughput.msgs_per_s;
        out.errors.add(&r.errors);
        out.messages.extend(r.messages.iter().cloned());
    }
    out.latency_us = Latency::from_histogram(&hist);
    out.histogram = encode_histogram(&hist);
    Ok(out)
}
