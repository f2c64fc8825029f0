//! Reading result documents for `merge` and `plot`: a lenient view of the `echoload run` JSON
//! (schema v1 and v2, see `docs/many-machines.md`), and the stream reader behind `merge -`.
//! In results/ as the reading side of the document report.rs writes.
//!
//! The view keeps every key it does not interpret (`rest`), so a merged document still carries
//! them, and it never needs the writer's exact struct: agents of different versions merge.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::results::report::{decode_histogram, Latency, Throughput};

/// `agent` of a v2 document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub index: u32,
    pub count: u32,
}

/// The schema's time format; defined with the start-time logic that also prints it.
pub use crate::client::schedule::format_time;
/// One reporting interval (schema v2), times in seconds from `started_at`: the one the runs
/// write (missing fields read as 0).
pub use crate::client::Interval;

fn v1() -> u32 {
    1
}

/// The keys merge and plot interpret; everything else stays in `rest`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResultDoc {
    #[serde(default = "v1")]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default)]
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    pub target: String,
    #[serde(default)]
    pub conns: u64,
    #[serde(default)]
    pub threads: u64,
    pub duration_s: f64,
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub throughput: Throughput,
    pub latency_us: Latency,
    /// Error counters by name (summed key by key, whatever the writer's set is).
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub messages: Vec<String>,
    pub histogram: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<Interval>>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// Where the document came from (file name, or position in a stream), for messages.
    #[serde(skip)]
    pub source: String,
}

/// The two runs of a `run --bidir` document (`{"bidir": true, "send": R, "receive": R}`),
/// each with its direction; None for any other document.
pub fn bidir_parts(v: &Value) -> Option<[(&'static str, &Value); 2]> {
    if v.get("bidir").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some([("send", v.get("send")?), ("receive", v.get("receive")?)])
}

/// One document, or both directions of a `--bidir` one, each labelled with its direction.
fn docs_of(v: Value, what: &str) -> Result<Vec<ResultDoc>> {
    let Some(parts) = bidir_parts(&v) else {
        return Ok(vec![ResultDoc::from_value(v, what)?]);
    };
    let mut out = Vec::with_capacity(2);
    for (dir, part) in parts {
        let mut d = ResultDoc::from_value(part.clone(), &format!("{what} ({dir})"))?;
        d.label = if d.label.is_empty() {
            dir.to_string()
        } else {
            format!("{} {dir}", d.label)
        };
        d.source = format!("{what} ({dir})");
        out.push(d);
    }
    Ok(out)
}

impl ResultDoc {
    /// Parses one document; `what` names it in errors.
    pub fn from_value(v: Value, what: &str) -> Result<ResultDoc> {
        serde_json::from_value(v).map_err(|e| anyhow!("{what} is not an echoload result: {e}"))
    }

    pub fn from_file(path: &Path) -> Result<ResultDoc> {
        let mut all = Self::all_from_file(path)?;
        if all.len() != 1 {
            bail!(
                "{} is a --bidir result (a send and a receive run): read it with \
                 all_from_file",
                path.display()
            );
        }
        Ok(all.remove(0))
    }

    /// The results of a file: one, or two for a `--bidir` document.
    pub fn all_from_file(path: &Path) -> Result<Vec<ResultDoc>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{} is not JSON: {e}", path.display()))?;
        let what = path.display().to_string();
        let mut docs = docs_of(v, &what)?;
        if docs.len() == 1 {
            docs[0].source = what;
        }
        Ok(docs)
    }

    /// The source if known, else the name.
    pub fn origin(&self) -> String {
        if self.source.is_empty() {
            self.name()
        } else {
            self.source.clone()
        }
    }

    /// Protocol, mode, message size and wire: runs merge only when these agree.
    pub fn kind(&self) -> String {
        let get = |k: &str| match self.rest.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "?".into(),
        };
        format!(
            "{} {} {} B wire {}",
            get("proto"),
            get("mode"),
            get("size"),
            get("wire")
        )
    }

    /// The wall-clock start of the measured window, if the document has one.
    pub fn start_time(&self) -> Result<Option<SystemTime>> {
        self.started_at
            .as_deref()
            .map(|s| {
                humantime::parse_rfc3339(s)
                    .map_err(|e| anyhow!("started_at {s:?} is not RFC 3339 UTC: {e}"))
            })
            .transpose()
    }

    /// How the document is named in tables and legends: label, else agent index, else target.
    pub fn name(&self) -> String {
        if !self.label.is_empty() {
            return self.label.clone();
        }
        match self.agent {
            Some(a) if a.count > 1 => format!("agent {}", a.index),
            _ => self.target.clone(),
        }
    }

    pub fn histogram(&self) -> Result<hdrhistogram::Histogram<u64>> {
        decode_histogram(&self.histogram).with_context(|| format!("histogram of {}", self.name()))
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The reporting interval length: the config's, else the first full interval's.
    pub fn interval_len(&self) -> Option<f64> {
        let from_config = self
            .rest
            .get("config")
            .and_then(|c| c.get("interval_s").or_else(|| c.get("interval")))
            .and_then(Value::as_f64)
            .filter(|v| *v > 0.0);
        from_config.or_else(|| {
            self.intervals
                .as_ref()?
                .first()
                .map(|i| i.end_s - i.start_s)
                .filter(|d| *d > 0.0)
        })
    }
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Adds possibly negative seconds to a time.
pub fn add_secs(t: SystemTime, s: f64) -> SystemTime {
    if s >= 0.0 {
        t + Duration::from_secs_f64(s)
    } else {
        t - Duration::from_secs_f64(-s)
    }
}

/// What a stream held: the result documents, and a note for everything skipped.
#[derive(Debug, Default)]
pub struct Stream {
    pub docs: Vec<ResultDoc>,
    pub skipped: Vec<String>,
}

/// Reads every JSON object in `text` (one per line or pretty-printed, as `kubectl logs` of
/// several pods prints them) and skips what is not one: log lines, progress text, truncated
/// documents. JSON objects that are not echoload results are skipped with a note.
pub fn read_stream(text: &str) -> Stream {
    let mut out = Stream::default();
    let mut pos = 0;
    let mut line_no = 1;
    while pos < text.len() {
        let rest = &text[pos..];
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let trimmed = rest[..line_end].trim_start();
        if trimmed.starts_with('{') {
            let start = pos + (line_end - trimmed.len());
            let mut it = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
            if let Some(Ok(v)) = it.next() {
                let used = it.byte_offset();
                let consumed = &text[start..start + used];
                let what = format!("document at line {line_no}");
                match docs_of(v, &what) {
                    Ok(mut ds) => {
                        if let [d] = ds.as_mut_slice() {
                            d.source = what;
                        }
                        out.docs.extend(ds);
                    }
                    Err(e) => out.skipped.push(format!("{e:#}")),
                }
                line_no += consumed.matches('\n').count();
                pos = start + used;
                continue;
            }
        }
        if !rest[..line_end].trim().is_empty() {
            out.skipped.push(format!("line {line_no}: not JSON"));
        }
        pos += line_end;
        line_no += 1;
    }
    out
}

/// Whether the file list means "read stdin".
pub fn is_stdin(files: &[std::path::PathBuf]) -> bool {
    files.len() == 1 && files[0].as_os_str() == "-"
}

/// Documents from files, or from stdin when the only name is `-`.
pub fn load(files: &[std::path::PathBuf]) -> Result<Stream> {
    if files.is_empty() {
        bail!("no result files given (use - to read them from stdin)");
    }
    if is_stdin(files) {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
        return Ok(read_stream(&text));
    }
    let mut s = Stream::default();
    for f in files {
        s.docs.extend(ResultDoc::all_from_file(f)?);
    }
    Ok(s)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Schema v2 documents built from real histograms, for merge and plot tests.
    use super::*;
    use crate::results::report::encode_histogram;

    /// An agent that sent `per_s` messages of 100 B each second for `secs` intervals of 1 s,
    /// all echoed, with latencies around `lat_us`.
    pub fn agent(
        index: u32,
        count: u32,
        started_at: &str,
        secs: usize,
        per_s: u64,
        lat_us: u64,
    ) -> ResultDoc {
        let mut h = crate::client::Stats::default().hist;
        let mut intervals = Vec::new();
        for i in 0..secs {
            for k in 0..per_s {
                h.record(lat_us * 1000 + (k % 50) * 1000 * (i as u64 + 1))
                    .unwrap();
            }
            intervals.push(Interval {
                start_s: i as f64,
                end_s: i as f64 + 1.0,
                sent_msgs: per_s,
                recv_msgs: per_s,
                sent_bytes: per_s * 100,
                recv_bytes: per_s * 100,
                lost: 0,
                errors: 0,
                bits_per_s: (per_s * 800) as f64,
                msgs_per_s: per_s as f64,
                p50_us: (lat_us + 25 * (i as u64 + 1)) as f64,
                p99_us: (lat_us + 49 * (i as u64 + 1)) as f64,
                ..Interval::default()
            });
        }
        let n = per_s * secs as u64;
        let v = serde_json::json!({
            "schema_version": 2,
            "run_id": format!("{:032x}", 0xabc0 + index as u64),
            "label": "fixture",
            "started_at": started_at,
            "host": format!("node-{index}"),
            "version": "0.1.0",
            "config": {"interval_s": 1.0},
            "requested_rate": null,
            "loss_pct": 0.0,
            "agent": {"index": index, "count": count},
            "target": "198.18.0.1:7007", "proto": "tcp", "mode": "pingpong", "wire": "echoload",
            "conns": 2, "threads": 1, "size": 100, "duration_s": secs as f64,
            "sent_msgs": n, "recv_msgs": n, "sent_bytes": n * 100, "recv_bytes": n * 100,
            "throughput": {"bits_per_s": (n * 800) as f64 / secs as f64, "bytes_per_s": (n * 100) as f64 / secs as f64, "msgs_per_s": n as f64 / secs as f64},
            "latency_us": serde_json::to_value(Latency::from_histogram(&h)).unwrap(),
            "errors": {"lost": 0, "duplicated": 0, "reordered": 0, "corrupted": 0, "connect": 0, "io": 0},
            "messages": [],
            "histogram": encode_histogram(&h),
            "intervals": intervals,
        });
        ResultDoc::from_value(v, "fixture").unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_skips_noise_and_reads_pretty_and_compact_documents() {
        let a = serde_json::to_string_pretty(&fixtures::agent(
            0,
            2,
            "2026-12-02T05:40:00.000000Z",
            2,
            10,
            50,
        ))
        .unwrap();
        let b = serde_json::to_string(&fixtures::agent(
            1,
            2,
            "2026-12-02T05:40:00.000000Z",
            2,
            10,
            50,
        ))
        .unwrap();
        let text = format!(
            "connecting to 198.18.0.1:7007\n{a}\n  {{ not json\n{{\"other\": 1}}\n{b}\nwarning: done\n{{\"truncated\": "
        );
        let s = read_stream(&text);
        assert_eq!(s.docs.len(), 2, "{:?}", s.skipped);
        assert_eq!(s.docs[0].agent, Some(Agent { index: 0, count: 2 }));
        assert_eq!(s.docs[1].agent, Some(Agent { index: 1, count: 2 }));
        // connecting…, "{ not json", {"other"} (not a result), "warning", the truncated doc
        assert_eq!(s.skipped.len(), 5, "{:?}", s.skipped);
        assert!(s
            .skipped
            .iter()
            .any(|m| m.contains("not an echoload result")));
    }

    #[test]
    fn v1_documents_read_without_v2_keys() {
        let mut v =
            serde_json::to_value(fixtures::agent(0, 1, "2026-12-02T05:40:00Z", 1, 5, 10)).unwrap();
        for k in [
            "schema_version",
            "run_id",
            "label",
            "started_at",
            "host",
            "agent",
            "intervals",
            "config",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        let d = ResultDoc::from_value(v, "v1").unwrap();
        assert_eq!(d.schema_version, 1);
        assert!(d.intervals.is_none() && d.start_time().unwrap().is_none());
        assert_eq!(d.name(), "198.18.0.1:7007");
        assert_eq!(d.interval_len(), None);
    }

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let d = fixtures::agent(0, 1, "2026-12-02T05:40:00Z", 1, 5, 10);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(d.interval_len(), Some(1.0));
    }

    #[test]
    fn times() {
        let d = fixtures::agent(0, 1, "2026-12-02T05:40:00.250000Z", 1, 5, 10);
        let t = d.start_time().unwrap().unwrap();
        assert_eq!(format_time(t), "2026-12-02T05:40:00.250000Z");
        assert!((secs_between(t, add_secs(t, -1.5)) + 1.5).abs() < 1e-9);
        let mut bad = d.clone();
        bad.started_at = Some("yesterday".into());
        assert!(bad.start_time().is_err());
    }
}
