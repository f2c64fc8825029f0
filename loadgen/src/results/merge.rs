//! `echoload merge`: combines the results of agents that ran at the same time (one
//! distributed run) into one document. Totals add up, the HDR histograms are merged, the
//! agents' `intervals` are aligned on the wall clock (`started_at`) and summed interval by
//! interval, and the merge says what it could not trust: skewed windows, missing agents,
//! duplicates, documents without intervals. In results/ with the reader (doc.rs) and the
//! writer (report.rs) of the documents it combines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::results::doc::{format_time, secs_between, Interval, ResultDoc};
use crate::results::report::{encode_histogram, Latency, Throughput};

/// One agent's line of the per-agent table (also in the merged JSON, `merge.agents`).
#[derive(Clone, Debug, Serialize)]
pub struct AgentRow {
    pub name: String,
    pub index: Option<u32>,
    pub host: Option<String>,
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    /// Seconds after the earliest agent's start.
    pub offset_s: Option<f64>,
    pub duration_s: f64,
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    /// Share of the merged received messages (sent, for send-only runs), in percent.
    pub share_pct: f64,
    pub msgs_per_s: f64,
    pub p99_us: f64,
    pub errors: u64,
}

#[derive(Debug)]
pub struct Merged {
    pub doc: ResultDoc,
    pub agents: Vec<AgentRow>,
    pub warnings: Vec<String>,
}

/// Refuses the same run given twice (by `run_id`), for results named one by one.
pub fn refuse_duplicates(docs: &[ResultDoc]) -> Result<()> {
    for (i, d) in docs.iter().enumerate() {
        let Some(id) = &d.run_id else { continue };
        if let Some(o) = docs[..i].iter().find(|o| o.run_id.as_ref() == Some(id)) {
            bail!(
                "{} and {} are the same run (run_id {id}): merge each run once",
                o.origin(),
                d.origin()
            );
        }
    }
    Ok(())
}

/// Merges the documents of one distributed run. Runs of another protocol, mode, size or wire
/// are refused; duplicates (same `run_id`, as a log collected twice holds) are dropped with a
/// warning; everything else that looks wrong is a warning too, never a silent fix.
pub fn merge(docs: Vec<ResultDoc>) -> Result<Merged> {
    if let Some(first) = docs.first() {
        for d in &docs[1..] {
            if d.kind() != first.kind() {
                bail!(
                    "cannot merge {} ({}) with {} ({}): merged runs must share protocol, mode, \
                     size and wire",
                    d.origin(),
                    d.kind(),
                    first.origin(),
                    first.kind()
                );
            }
        }
    }
    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    let mut kept = Vec::with_capacity(docs.len());
    for d in docs {
        if let Some(id) = &d.run_id {
            if !seen.insert(id.clone()) {
                warnings.push(format!(
                    "duplicate result of run_id {id} ({}) ignored",
                    d.name()
                ));
                continue;
            }
        }
        kept.push(d);
    }
    let docs = kept;
    let Some(first) = docs.first() else {
        bail!("nothing to merge (no echoload result documents found)")
    };

    let labels: BTreeSet<&str> = docs.iter().map(|d| d.label.as_str()).collect();
    if labels.len() > 1 {
        warnings.push(format!(
            "the results carry different labels ({}): are they one run?",
            labels
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    check_agents(&docs, &mut warnings);

    // Totals and the merged histogram.
    let mut hist = first.histogram()?;
    for d in &docs[1..] {
        hist.add(d.histogram()?)
            .map_err(|e| anyhow::anyhow!("histograms of {} cannot be merged: {e:?}", d.name()))?;
    }
    let mut out = first.clone();
    // Named after every run it holds, not the first one's label alone.
    let named: Vec<&str> = labels.iter().copied().filter(|l| !l.is_empty()).collect();
    if named.len() > 1 {
        out.label = named.join(" + ");
    }
    out.schema_version = out.schema_version.max(2);
    // The first run's verdict is not the merge's; nor is its `--spin` count (one flow's).
    out.rest.remove("verdict");
    out.rest.remove("spin");
    out.run_id = None;
    out.agent = None;
    let mut targets: Vec<String> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    out.conns = 0;
    out.threads = 0;
    out.duration_s = 0.0;
    out.sent_msgs = 0;
    out.recv_msgs = 0;
    out.sent_bytes = 0;
    out.recv_bytes = 0;
    out.throughput = Throughput::default();
    out.errors = BTreeMap::new();
    out.messages = Vec::new();
    for d in &docs {
        for t in d.target.split(',') {
            if !targets.iter().any(|x| x == t) {
                targets.push(t.to_string());
            }
        }
        if let Some(h) = &d.host {
            if !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
        out.conns += d.conns;
        out.threads += d.threads;
        out.duration_s = out.duration_s.max(d.duration_s);
        out.sent_msgs += d.sent_msgs;
        out.recv_msgs += d.recv_msgs;
        out.sent_bytes += d.sent_bytes;
        out.recv_bytes += d.recv_bytes;
        out.throughput.bits_per_s += d.throughput.bits_per_s;
        out.throughput.bytes_per_s += d.throughput.bytes_per_s;
        out.throughput.msgs_per_s += d.throughput.msgs_per_s;
        for (k, v) in &d.errors {
            *out.errors.entry(k.clone()).or_default() += v;
        }
        for m in &d.messages {
            out.messages.push(format!("{}: {m}", d.name()));
        }
    }
    out.target = targets.join(",");
    out.host = (!hosts.is_empty()).then(|| hosts.join(","));
    out.latency_us = Latency::from_histogram(&hist);
    out.histogram = encode_histogram(&hist);
    for k in ["loss_pct", "requested_rate"] {
        let vals: Vec<f64> = docs
            .iter()
            .filter_map(|d| d.rest.get(k).and_then(Value::as_f64))
            .collect();
        if !vals.is_empty() {
            let v = if k == "loss_pct" {
                let lost = out.errors.get("lost").copied().unwrap_or(0) as f64;
                let expected = docs.iter().map(|d| d.sent_msgs).sum::<u64>() as f64;
                if expected > 0.0 {
                    100.0 * lost / expected
                } else {
                    0.0
                }
            } else {
                vals.iter().sum()
            };
            out.rest.insert(k.into(), json!(v));
        }
    }

    let send_only = docs.iter().all(|d| d.recv_msgs == 0);
    let total = if send_only {
        out.sent_msgs
    } else {
        out.recv_msgs
    };
    let timeline = align(&docs, &mut warnings)?;
    let mut agents = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        let mine = if send_only { d.sent_msgs } else { d.recv_msgs };
        agents.push(AgentRow {
            name: d.name(),
            index: d.agent.map(|a| a.index),
            host: d.host.clone(),
            run_id: d.run_id.clone(),
            started_at: d.started_at.clone(),
            offset_s: timeline.as_ref().map(|t| t.offsets[i]),
            duration_s: d.duration_s,
            sent_msgs: d.sent_msgs,
            recv_msgs: d.recv_msgs,
            share_pct: if total > 0 {
                100.0 * mine as f64 / total as f64
            } else {
                0.0
            },
            msgs_per_s: d.throughput.msgs_per_s,
            p99_us: d.latency_us.p99,
            errors: d.error_total(),
        });
    }
    let mut info = json!({
        "agents": agents,
        "warnings": warnings,
    });
    match timeline {
        Some(t) => {
            out.started_at = Some(format_time(t.origin));
            out.intervals = Some(t.intervals);
            info["interval_s"] = json!(t.len);
            info["window_skew_s"] = json!(t.skew);
            info["overlap_s"] = json!(t.overlap);
        }
        None => out.intervals = None,
    }
    out.rest.insert("merge".into(), info);
    Ok(Merged {
        doc: out,
        agents,
        warnings,
    })
}

/// Missing, surplus or repeated agent indices.
fn check_agents(docs: &[ResultDoc], warnings: &mut Vec<String>) {
    let counts: BTreeSet<u32> = docs
        .iter()
        .filter_map(|d| d.agent.map(|a| a.count))
        .collect();
    if counts.len() > 1 {
        warnings.push(format!(
            "the agents disagree on the agent count ({counts:?})"
        ));
    }
    let Some(&n) = counts.iter().max() else {
        return;
    };
    let mut by_index: BTreeMap<u32, usize> = BTreeMap::new();
    for d in docs {
        if let Some(a) = d.agent {
            *by_index.entry(a.index).or_default() += 1;
        }
    }
    let missing: Vec<u32> = (0..n).filter(|i| !by_index.contains_key(i)).collect();
    if !missing.is_empty() {
        warnings.push(format!(
            "missing agent(s) {missing:?} of {n}: the totals cover {} agent(s) only",
            n as usize - missing.len()
        ));
    }
    for (i, c) in &by_index {
        if *c > 1 {
            warnings.push(format!(
                "agent index {i} appears {c} times with different run_ids"
            ));
        }
        if *i >= n {
            warnings.push(format!("agent index {i} is outside 0..{n}"));
        }
    }
}

struct Timeline {
    origin: std::time::SystemTime,
    len: f64,
    offsets: Vec<f64>,
    skew: f64,
    overlap: f64,
    intervals: Vec<Interval>,
}

/// Places every agent's intervals on a common grid that starts at the earliest `started_at`
/// and steps by the interval length; an interval goes to the grid slot it overlaps most.
/// `None` when no document has intervals with a start time.
fn align(docs: &[ResultDoc], warnings: &mut Vec<String>) -> Result<Option<Timeline>> {
    let mut starts = Vec::with_capacity(docs.len());
    for d in docs {
        let start = d.start_time()?.filter(|_| d.intervals.is_some());
        if start.is_none() {
            warnings.push(format!(
                "{} has no intervals/started_at (schema v{}): it counts in the totals but \
                 not in the per-interval figures",
                d.name(),
                d.schema_version
            ));
        }
        starts.push(start);
    }
    let Some(origin) = starts.iter().flatten().min().copied() else {
        return Ok(None);
    };
    let lens: Vec<f64> = docs
        .iter()
        .zip(&starts)
        .filter(|(_, s)| s.is_some())
        .filter_map(|(d, _)| d.interval_len())
        .collect();
    let Some(&len) = lens.first() else {
        return Ok(None);
    };
    if lens.iter().any(|l| (l - len).abs() > len * 0.01) {
        warnings.push(format!(
            "the agents used different reporting intervals ({lens:?} s); aligned on {len} s"
        ));
    }
    let offsets: Vec<f64> = starts
        .iter()
        .map(|s| s.map_or(0.0, |t| secs_between(origin, t)))
        .collect();
    let present: Vec<(usize, f64)> = starts
        .iter()
        .zip(&offsets)
        .enumerate()
        .filter(|(_, (s, _))| s.is_some())
        .map(|(i, (_, o))| (i, *o))
        .collect();
    let skew = present.iter().map(|(_, o)| *o).fold(0.0, f64::max);
    if skew > len {
        let late: Vec<String> = present
            .iter()
            .filter(|(_, o)| *o > len)
            .map(|(i, o)| format!("{} +{o:.3} s", docs[*i].name()))
            .collect();
        warnings.push(format!(
            "agent windows are skewed by {skew:.3} s, more than one interval ({len} s): {}; \
             were they started with one --start-at?",
            late.join(", ")
        ));
    }
    let earliest_end = present
        .iter()
        .map(|(i, o)| o + docs[*i].duration_s)
        .fold(f64::INFINITY, f64::min);
    let overlap = earliest_end - skew;
    if overlap <= 0.0 {
        warnings.push(
            "the agents' measured windows do not overlap: their rates are summed as if they \
             ran together"
                .into(),
        );
    }

    let mut slots: BTreeMap<i64, Interval> = BTreeMap::new();
    for (i, o) in &present {
        for iv in docs[*i].intervals.iter().flatten() {
            let slot = ((o + iv.start_s) / len).round() as i64;
            let s = slots.entry(slot).or_insert_with(|| Interval {
                start_s: slot as f64 * len,
                end_s: slot as f64 * len,
                ..Interval::default()
            });
            s.end_s = s.end_s.max(slot as f64 * len + (iv.end_s - iv.start_s));
            s.sent_msgs += iv.sent_msgs;
            s.recv_msgs += iv.recv_msgs;
            s.sent_bytes += iv.sent_bytes;
            s.recv_bytes += iv.recv_bytes;
            s.lost += iv.lost;
            s.errors += iv.errors;
            // Agents ran side by side: their rates add up.
            s.bits_per_s += iv.bits_per_s;
            s.msgs_per_s += iv.msgs_per_s;
            // Per-interval histograms are not in the documents: the largest agent percentile
            // bounds the merged one from above (a merged p99 never exceeds every part's p99).
            s.p50_us = s.p50_us.max(iv.p50_us);
            s.p99_us = s.p99_us.max(iv.p99_us);
            s.retransmits = match (s.retransmits, iv.retransmits) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            // The same bound for the jitter (the agents' flows are not in the document).
            s.jitter_us = s.jitter_us.max(iv.jitter_us);
        }
    }
    for s in slots.values_mut() {
        if s.lost > 0 {
            s.loss_pct = 100.0 * s.lost as f64 / (s.recv_msgs + s.lost) as f64;
        }
    }
    Ok(Some(Timeline {
        origin,
        len,
        offsets,
        skew,
        overlap,
        intervals: slots.into_values().collect(),
    }))
}

impl Merged {
    /// The human report: totals, per-agent table, per-interval table, warnings.
    pub fn table(&self) -> String {
        let d = &self.doc;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "merged {} result{}{}  → {}",
            self.agents.len(),
            if self.agents.len() == 1 { "" } else { "s" },
            if d.label.is_empty() {
                String::new()
            } else {
                format!(" of {:?}", d.label)
            },
            d.target
        );
        let _ = writeln!(
            s,
            "  sent {} msgs {} B   received {} msgs {} B   {}  {}",
            d.sent_msgs,
            d.sent_bytes,
            d.recv_msgs,
            d.recv_bytes,
            crate::results::report::human(d.throughput.msgs_per_s, "msg/s"),
            crate::results::report::human(d.throughput.bits_per_s, "bit/s")
        );
        let l = &d.latency_us;
        if l.count > 0 {
            let _ = writeln!(
                s,
                "  latency µs (merged histogram)  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)",
                l.p50, l.p90, l.p99, l.p999, l.max, l.count
            );
        }
        let errs: Vec<String> = d
            .errors
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "  errors  {}",
            if errs.is_empty() {
                "none".to_string()
            } else {
                errs.join("  ")
            }
        );
        let _ = writeln!(
            s,
            "\n  {:<14} {:<16} {:>9} {:>12} {:>12} {:>7} {:>12} {:>10} {:>7}",
            "agent", "host", "offset s", "sent", "received", "share", "msg/s", "p99 µs", "errors"
        );
        for a in &self.agents {
            let _ = writeln!(
                s,
                "  {:<14} {:<16} {:>9} {:>12} {:>12} {:>6.1}% {:>12.0} {:>10.1} {:>7}",
                a.index.map_or_else(|| a.name.clone(), |i| format!("{i}")),
                a.host.as_deref().unwrap_or("-"),
                a.offset_s.map_or("-".into(), |o| format!("{o:.3}")),
                a.sent_msgs,
                a.recv_msgs,
                a.share_pct,
                a.msgs_per_s,
                a.p99_us,
                a.errors
            );
        }
        if let Some(iv) = &d.intervals {
            let _ = writeln!(
                s,
                "\n  {:>7} {:>7} {:>12} {:>12} {:>12} {:>10}",
                "from s", "to s", "sent", "received", "msg/s", "p99≤ µs"
            );
            for i in iv {
                let _ = writeln!(
                    s,
                    "  {:>7.2} {:>7.2} {:>12} {:>12} {:>12.0} {:>10.1}",
                    i.start_s, i.end_s, i.sent_msgs, i.recv_msgs, i.msgs_per_s, i.p99_us
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::doc::fixtures::agent;

    const T0: &str = "2026-12-02T05:40:00.000000Z";

    #[test]
    fn aligned_agents_sum_per_interval_and_in_total() {
        let docs = vec![
            agent(0, 3, T0, 3, 100, 50),
            agent(1, 3, "2026-12-02T05:40:00.020000Z", 3, 200, 60),
            agent(2, 3, "2026-12-02T05:40:00.010000Z", 3, 300, 70),
        ];
        let m = merge(docs.clone()).unwrap();
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        let d = &m.doc;
        assert_eq!(d.sent_msgs, 1800);
        assert_eq!(d.recv_bytes, 180_000);
        assert_eq!(d.latency_us.count, 1800);
        let iv = d.intervals.as_ref().unwrap();
        assert_eq!(iv.len(), 3);
        for i in iv {
            assert_eq!(i.sent_msgs, 600);
            assert!((i.msgs_per_s - 600.0).abs() < 1e-9);
        }
        assert_eq!(iv.iter().map(|i| i.recv_msgs).sum::<u64>(), d.recv_msgs);
        // the merged histogram holds every sample: max of the merged = max of the parts
        let maxes: f64 = docs.iter().map(|d| d.latency_us.max).fold(0.0, f64::max);
        assert!((d.latency_us.max - maxes).abs() < maxes * 0.001);
        assert!((m.agents[2].share_pct - 50.0).abs() < 1e-9);
        assert!((m.agents[1].offset_s.unwrap() - 0.02).abs() < 1e-6);
        assert_eq!(d.started_at.as_deref(), Some(T0));
        assert!(m.table().contains("merged 3 results"));
    }

    #[test]
    fn a_late_agent_lands_in_later_slots_and_is_reported() {
        // agent 1 started 2.1 s late: its first interval is the merged third one.
        let m = merge(vec![
            agent(0, 2, T0, 4, 100, 50),
            agent(1, 2, "2026-12-02T05:40:02.100000Z", 4, 10, 50),
        ])
        .unwrap();
        let iv = m.doc.intervals.as_ref().unwrap();
        assert_eq!(
            iv.iter().map(|i| i.sent_msgs).collect::<Vec<_>>(),
            vec![100, 100, 110, 110, 10, 10]
        );
        assert!(
            m.warnings.iter().any(|w| w.contains("skewed by 2.100")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn missing_and_duplicate_agents_are_warned_about() {
        let a0 = agent(0, 3, T0, 2, 10, 50);
        let m = merge(vec![a0.clone(), a0, agent(2, 3, T0, 2, 10, 50)]).unwrap();
        assert_eq!(m.agents.len(), 2);
        assert_eq!(m.doc.sent_msgs, 40);
        assert!(
            m.warnings.iter().any(|w| w.contains("duplicate result")),
            "{:?}",
            m.warnings
        );
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("missing agent(s) [1] of 3")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn different_kinds_of_runs_are_refused_and_duplicates_found() {
        let a = agent(0, 2, T0, 2, 10, 50);
        let mut udp = agent(1, 2, T0, 2, 10, 50);
        udp.rest.insert("proto".into(), "udp".into());
        let e = merge(vec![a.clone(), udp]).unwrap_err().to_string();
        assert!(
            e.contains("cannot merge") && e.contains("udp pingpong 100 B"),
            "{e}"
        );
        let mut dup = a.clone();
        dup.source = "copy.json".into();
        let e = refuse_duplicates(&[a.clone(), dup])
            .unwrap_err()
            .to_string();
        assert!(e.contains("same run") && e.contains("copy.json"), "{e}");
        assert!(refuse_duplicates(&[a, agent(1, 2, T0, 2, 10, 50)]).is_ok());
    }

    #[test]
    fn windows_that_do_not_overlap_are_reported() {
        let m = merge(vec![
            agent(0, 2, T0, 2, 10, 50),
            agent(1, 2, "2026-12-02T05:40:05Z", 2, 10, 50),
        ])
        .unwrap();
        assert!(
            m.warnings.iter().any(|w| w.contains("do not overlap")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn v1_documents_merge_in_totals_only() {
        let mut old = agent(1, 2, T0, 2, 10, 50);
        old.intervals = None;
        old.started_at = None;
        old.schema_version = 1;
        let m = merge(vec![agent(0, 2, T0, 2, 10, 50), old]).unwrap();
        assert_eq!(m.doc.sent_msgs, 40);
        assert_eq!(
            m.doc
                .intervals
                .as_ref()
                .unwrap()
                .iter()
                .map(|i| i.sent_msgs)
                .sum::<u64>(),
            20
        );
        assert!(
            m.warnings.iter().any(|w| w.contains("schema v1")),
            "{:?}",
            m.warnings
        );
        assert!(merge(vec![]).is_err());
    }
}
