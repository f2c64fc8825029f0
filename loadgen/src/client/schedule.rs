//! Distributed runs: a common start instant (`--start-at`) and each agent's share of the load
//! (`--agent-index`/`--agent-count`). Here in the client because the engine waits for the
//! start and shortens the warm-up to meet it; the result documents only read the times back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};

/// How far in the past a start time may be and still be accepted (clock reading and process
/// start-up in a launcher take a moment).
pub const PAST_TOLERANCE: Duration = Duration::from_secs(1);

/// Parses `--start-at`: RFC 3339 (`2026-12-02T05:40:00Z`, fractions and offsets allowed) or
/// unix seconds (`1796190000`, `1796190000.25`).
pub fn parse_start_at(s: &str) -> Result<SystemTime> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let v: f64 = s
            .parse()
            .map_err(|_| anyhow!("--start-at {s:?}: not a number of unix seconds"))?;
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(v));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        // parse_rfc3339_weak takes no offset: it is only right for a `Z` or offset-less time.
        if s.ends_with('Z') || s.ends_with('z') {
            return Ok(t);
        }
    }
    parse_offset_time(s).ok_or_else(|| {
        anyhow!(
            "--start-at {s:?}: expected RFC 3339 (e.g. 2026-12-02T05:40:00Z or \
             2026-12-02T06:40:00+01:00) or unix seconds (e.g. 1796190000)"
        )
    })
}

/// RFC 3339 with a numeric offset (`+01:00`, `-05:30`), converted to UTC.
fn parse_offset_time(s: &str) -> Option<SystemTime> {
    let tpos = s.find(['T', 't', ' '])?;
    let tail = &s[tpos..];
    let sign_pos = tail.rfind(['+', '-'])?;
    let (local, off) = (&s[..tpos + sign_pos], &tail[sign_pos..]);
    let neg = off.starts_with('-');
    let (hours, minutes) = off[1..].split_once(':')?;
    let (hours, minutes): (u64, u64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let local_time = humantime::parse_rfc3339_weak(local).ok()?;
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    // local = utc + offset
    Some(if neg {
        local_time + offset
    } else {
        local_time - offset
    })
}

/// Formats a wall-clock time as the result schema does: RFC 3339 UTC, microseconds, `Z`.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Refuses a start time more than [`PAST_TOLERANCE`] in the past.
pub fn check_not_past(start: SystemTime, now: SystemTime) -> Result<()> {
    if let Err(e) = start.duration_since(now) {
        let late = e.duration();
        if late > PAST_TOLERANCE {
            bail!(
                "--start-at is {:.3} s in the past (now {}, start {}); give a time in the future \
                 (agents connect and warm up before it)",
                late.as_secs_f64(),
                format_time(now),
                format_time(start)
            );
        }
    }
    Ok(())
}

/// The warm-up of a run once every connection is set up: without a start time the one asked
/// for; with one, after sleeping until the warm-up must begin, the time left until `start`
/// (shorter than asked when connecting took longer; zero once `start` has passed, which the
/// command line refused beforehand when it was already past by more than the tolerance).
pub fn warmup_until(start: Option<SystemTime>, warmup: Duration) -> Duration {
    match start {
        Some(t) => wait_for_start(t, warmup),
        None => warmup,
    }
}

/// Sleeps until the warm-up must begin so that the measurement starts at `start`; returns the
/// warm-up left.
pub fn wait_for_start(start: SystemTime, warmup: Duration) -> Duration {
    let until = start.duration_since(SystemTime::now()).unwrap_or_default();
    if let Some(early) = until.checked_sub(warmup).filter(|d| !d.is_zero()) {
        std::thread::sleep(early);
        return start
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(warmup);
    }
    until
}

/// This agent's part of a total shared by `count` agents: integers are split so the parts
/// differ by at most one and add up exactly (the first `total % count` agents get one more).
pub fn split_count(total: u64, index: u32, count: u32) -> u64 {
    let (n, i) = (u64::from(count.max(1)), u64::from(index));
    total / n + u64::from(i < total % n)
}

/// This agent's part of a total rate: whole rates split as integers (exact), fractional ones
/// in equal parts with the last agent taking the rounding remainder.
pub fn split_rate(total: f64, index: u32, count: u32) -> f64 {
    let n = count.max(1);
    if total.fract() == 0.0 && total < 2f64.powi(53) {
        return split_count(total as u64, index, n) as f64;
    }
    let part = total / f64::from(n);
    if index + 1 == n {
        total - part * f64::from(n - 1)
    } else {
        part
    }
}

/// `--agent-index` / `--agent-count` after their environment defaults
/// (`JOB_COMPLETION_INDEX`, set by Kubernetes for an Indexed Job, and `ECHOLOAD_AGENT_COUNT`).
pub fn agent_identity(
    index: Option<u32>,
    count: Option<u32>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(u32, u32)> {
    let from_env = |name: &str| -> Result<Option<u32>> {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| anyhow!("{name}={v:?} is not a non-negative integer"))
            })
            .transpose()
    };
    let index = match index {
        Some(i) => i,
        None => from_env("JOB_COMPLETION_INDEX")?.unwrap_or(0),
    };
    let count = match count {
        Some(c) => c,
        None => from_env("ECHOLOAD_AGENT_COUNT")?.unwrap_or(1),
    };
    if count == 0 {
        bail!("--agent-count must be at least 1");
    }
    if index >= count {
        bail!("--agent-index {index} is not below --agent-count {count}");
    }
    Ok((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_parse_in_every_accepted_form() {
        let z = parse_start_at("2026-12-02T05:40:00Z").unwrap();
        assert_eq!(
            z.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_190_000
        );
        assert_eq!(parse_start_at("1796190000").unwrap(), z);
        assert_eq!(
            parse_start_at("1796190000.5").unwrap(),
            z + Duration::from_millis(500)
        );
        assert_eq!(
            parse_start_at("2026-12-02T05:40:00.250Z").unwrap(),
            z + Duration::from_millis(250)
        );
        assert_eq!(parse_start_at("2026-12-02T06:40:00+01:00").unwrap(), z);
        assert_eq!(parse_start_at("2026-12-02T00:10:00-05:30").unwrap(), z);
        for bad in [
            "",
            "soon",
            "2026-12-02",
            "2026-12-02T05:40:00",
            "2026-12-02T05:40:00+25:00",
            "1.2.3",
        ] {
            assert!(parse_start_at(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn past_start_times_are_refused_beyond_a_second() {
        let now = SystemTime::now();
        assert!(check_not_past(now - Duration::from_millis(900), now).is_ok());
        assert!(check_not_past(now + PAST_TOLERANCE * 60, now).is_ok());
        let e = check_not_past(now - Duration::from_secs(5), now).unwrap_err();
        assert!(e.to_string().contains("in the past"), "{e}");
        assert_eq!(
            wait_for_start(now - Duration::from_secs(3), Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn waiting_ends_at_the_start_minus_the_warmup() {
        let start = SystemTime::now() + Duration::from_millis(300);
        let warm = wait_for_start(start, Duration::from_millis(100));
        let left = start.duration_since(SystemTime::now()).unwrap_or_default();
        // woke about 100 ms before the start, and the returned warm-up reaches it
        assert!(
            warm <= Duration::from_millis(100) && warm > Duration::from_millis(40),
            "{warm:?}"
        );
        assert!(left <= warm, "{left:?} {warm:?}");
        // a warm-up longer than the time left is cut to it
        let soon = SystemTime::now() + Duration::from_millis(50);
        assert!(wait_for_start(soon, Duration::from_secs(5)) <= Duration::from_millis(50));
        assert_eq!(
            warmup_until(None, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn shares_add_up_exactly() {
        for (total, n) in [(10u64, 3u32), (3, 3), (1000, 7), (5, 1)] {
            let parts: Vec<u64> = (0..n).map(|i| split_count(total, i, n)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total);
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
        }
        assert_eq!(
            (0..3)
                .map(|i| split_rate(10_000.0, i, 3))
                .collect::<Vec<_>>(),
            vec![3334.0, 3333.0, 3333.0]
        );
        let r: f64 = (0..3).map(|i| split_rate(1000.5, i, 3)).sum();
        assert!((r - 1000.5).abs() < 1e-9, "{r}");
    }

    #[test]
    fn identity_defaults_come_from_the_environment() {
        let env = |k: &str| match k {
            "JOB_COMPLETION_INDEX" => Some("2".to_string()),
            "ECHOLOAD_AGENT_COUNT" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(agent_identity(None, None, env).unwrap(), (2, 3));
        assert_eq!(agent_identity(Some(0), None, env).unwrap(), (0, 3));
        assert_eq!(agent_identity(None, None, |_| None).unwrap(), (0, 1));
        assert!(agent_identity(Some(3), Some(3), |_| None).is_err());
        assert!(agent_identity(None, Some(0), |_| None).is_err());
        assert!(agent_identity(None, None, |_| Some("x".into())).is_err());
    }
}
