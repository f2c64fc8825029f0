//! Quantities on the command line: sizes (`64`, `1KiB`, `64K`), rates (`10k`, `1.5M`), bit
//! rates (`10G`, `100M`), durations (`5`, `1.5s`, `500ms`, `1h`, `1h30m`). Wrappers around
//! parse-size and humantime so that what worked before (a bare number of seconds, a decimal
//! `1.5s`) keeps working.

use std::time::Duration;

use parse_size::{ByteSuffix, Config};

/// A byte count: a number with an optional K/M/G suffix in powers of 1024, as iperf3 reads
/// `-l 64K` (`KiB`/`KB` alike; `64` is bytes).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let v = Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("`{s}` is not a size (e.g. 64, 1500, 1KiB, 64K): {e}"))?;
    usize::try_from(v).map_err(|_| format!("`{s}` is too large"))
}

/// Counts per second: a number with an optional k/M/G suffix in powers of 1000 (`10k`,
/// `1.5M`), or a plain decimal number.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let v = if let Ok(v) = t.parse::<f64>() {
        v
    } else {
        Config::new()
            .with_decimal()
            .with_byte_suffix(ByteSuffix::Deny)
            .parse_size(t)
            .map_err(|e| format!("`{s}` is not a rate (e.g. 5000, 10k, 1.5M): {e}"))? as f64
    };
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{s}`: a rate must be a positive number"));
    }
    Ok(v)
}

/// Bits per second, as iperf3's `-b`: `10G`, `100M`, `1.5k` (powers of 1000), optionally
/// followed by `bit/s` or `bps`.
pub fn parse_bitrate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = ["bit/s", "bps", "b/s"]
        .iter()
        .find_map(|u| t.strip_suffix(u))
        .unwrap_or(t);
    parse_rate(t).map_err(|_| format!("`{s}` is not a bit rate (e.g. 10G, 100M, 2.5G)"))
}

/// The longest duration accepted (about 115 days): beyond it a typo is likelier than intent.
const MAX_SECS: f64 = 1e7;

/// A duration: a bare number of seconds (`5`, `1.5`), a decimal number with one unit (`1.5s`,
/// `250ms`, `100us`, `2m`, `1h`) or anything humantime reads (`1h30m`, `2min`, `1day`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration (e.g. 10, 1.5s, 500ms, 2m, 1h)");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scaled = num.parse::<f64>().ok().and_then(|v| {
        let scale = match unit.trim() {
            "" | "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        Some(v * scale)
    });
    let secs = match scaled {
        Some(v) => v,
        None => humantime::parse_duration(t)
            .map_err(|_| bad())?
            .as_secs_f64(),
    };
    if !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!("`{s}` is out of range (0 to {MAX_SECS} s)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64K"), Ok(65_536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5000"), Ok(5000.0));
        assert_eq!(parse_rate("10k"), Ok(10_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_bitrate("10G"), Ok(1e10));
        assert_eq!(parse_bitrate("100Mbps"), Ok(1e8));
        assert_eq!(parse_bitrate("2.5G"), Ok(2.5e9));
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("5"), Duration::from_secs(5));
        assert_eq!(d("1.5"), Duration::from_millis(1500));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("100us"), Duration::from_micros(100));
        assert_eq!(d("2m"), Duration::from_mins(2));
        assert_eq!(d("1h"), Duration::from_hours(1));
        assert_eq!(d("1h30m"), Duration::from_mins(90));
        for bad in ["", "s", "-1s", "abc", "5x", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
