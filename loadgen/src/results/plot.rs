//! `echoload plot`: pictures of one or more results, as an SVG (or an HTML page holding it).
//! In results/: it draws documents read by doc.rs (and merged by merge.rs).
//!
//! Top: latency by percentile, HdrHistogram style: the x axis is 1/(1-p) on a log scale, so
//! 90%, 99%, 99.9%… are evenly spaced and the tail gets the room. One curve per result, named
//! by its label. Bottom: throughput and p99 per reporting interval over time (schema v2
//! `intervals`; results without them are named in the panel instead).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;

use crate::results::doc::ResultDoc;

pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 900;

/// Curve colours, in legend order (distinct on screen and in greyscale prints).
pub const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The percentile curve of a result: (1/(1-p), latency µs) pairs, p < 1, from its histogram.
/// The last point is the largest percentile the sample count resolves (1/(1-p) ≤ count).
pub fn percentile_points(doc: &ResultDoc) -> Result<Vec<(f64, f64)>> {
    let hist = doc.histogram()?;
    let count = hist.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut pts: Vec<(f64, f64)> = Vec::new();
    for step in hist.iter_quantiles(5) {
        let q = step.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        let x = 1.0 / (1.0 - q);
        if x > count as f64 {
            break;
        }
        let y = hist.highest_equivalent(step.value_iterated_to()) as f64 / 1000.0;
        if pts.last().is_some_and(|p| p.0 >= x) {
            continue;
        }
        pts.push((x, y));
    }
    Ok(pts)
}

/// Points of one curve.
pub type Curve = Vec<(f64, f64)>;

/// Throughput (msg/s) and p99 (µs) of each stretch of contiguous intervals: a merged result
/// has no interval where no agent measured, and a line across that gap would draw data that
/// does not exist. A send-only result has no p99 curve (it measures no latency).
pub fn interval_segments(doc: &ResultDoc) -> Option<(Vec<Curve>, Vec<Curve>)> {
    let iv = doc.intervals.as_ref().filter(|v| !v.is_empty())?;
    let mut tp: Vec<Curve> = Vec::new();
    let mut p99: Vec<Curve> = Vec::new();
    let mut prev_end: Option<f64> = None;
    let latency = doc.latency_us.count > 0;
    for i in iv {
        let joined = prev_end.is_some_and(|e| (i.start_s - e).abs() < 1e-6);
        if !joined {
            tp.push(Vec::new());
            if latency {
                p99.push(Vec::new());
            }
        }
        tp.last_mut()?.push((i.end_s, i.msgs_per_s));
        if let Some(c) = p99.last_mut() {
            c.push((i.end_s, i.p99_us));
        }
        prev_end = Some(i.end_s);
    }
    Some((tp, p99))
}

/// Throughput (msg/s) and p99 (µs) per interval, at each interval's end (s from the start).
pub fn interval_points(doc: &ResultDoc) -> Option<(Curve, Curve)> {
    let iv = doc.intervals.as_ref().filter(|v| !v.is_empty())?;
    Some((
        iv.iter().map(|i| (i.end_s, i.msgs_per_s)).collect(),
        iv.iter().map(|i| (i.end_s, i.p99_us)).collect(),
    ))
}

/// "99.9%" for 1/(1-p) = 1000.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let mut s = format!("{p:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s}%")
}

/// Axis numbers without needless decimals: 12000 → "12k", 2.5 → "2.5".
fn compact(v: f64) -> String {
    let mag = v.abs();
    let (div, unit) = if mag >= 1e9 {
        (1e9, "G")
    } else if mag >= 1e6 {
        (1e6, "M")
    } else if mag >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let mut text = format!("{:.2}", v / div);
    while text.contains('.') && (text.ends_with('0') || text.ends_with('.')) {
        text.pop();
    }
    format!("{text}{unit}")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        1.0
    } else {
        v * 1.08
    }
}

/// Renders the report as an SVG document.
pub fn render_svg(docs: &[ResultDoc], title: &str) -> Result<String> {
    if docs.is_empty() {
        bail!("nothing to plot");
    }
    let mut curves = Vec::with_capacity(docs.len());
    for d in docs {
        curves.push(percentile_points(d)?);
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing: {e:?}");
        root.fill(&WHITE).map_err(e)?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|x| anyhow!("drawing: {x:?}"))?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2);
        let (left, right) = bottom.split_horizontally(WIDTH / 2);

        // Latency by percentile.
        let xmax = curves
            .iter()
            .filter_map(|c| c.last().map(|p| p.0))
            .fold(10.0, f64::max);
        let xmax = 10f64.powf(xmax.log10().ceil());
        // Latency on a log axis, as HdrHistogram plots draw it: a 25 µs median stays visible
        // under a 9 ms maximum.
        let ymax = nice_max(curves.iter().flatten().map(|p| p.1).fold(0.0, f64::max));
        let ymin = curves
            .iter()
            .flatten()
            .map(|p| p.1)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let ymin = if ymin.is_finite() {
            10f64.powf(ymin.log10().floor())
        } else {
            0.1
        };
        let ymax = if ymax > ymin { ymax } else { ymin * 10.0 };
        let mut chart = ChartBuilder::on(&top)
            .caption("latency by percentile", ("sans-serif", 18))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..xmax).log_scale(), (ymin..ymax).log_scale())
            .map_err(|x| anyhow!("drawing: {x:?}"))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (µs)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| compact(*y))
            .draw()
            .map_err(|x| anyhow!("drawing: {x:?}"))?;
        for (i, (d, c)) in docs.iter().zip(&curves).enumerate() {
            let col = color(i);
            let label = if d.latency_us.count == 0 {
                format!("{}  (no latency: a send-only run)", d.name())
            } else {
                format!(
                    "{}  (p99 {} µs, {} samples)",
                    d.name(),
                    compact(d.latency_us.p99),
                    d.latency_us.count
                )
            };
            chart
                .draw_series(LineSeries::new(c.iter().copied(), col.stroke_width(2)))
                .map_err(|x| anyhow!("drawing: {x:?}"))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|x| anyhow!("drawing: {x:?}"))?;

        // Throughput and p99 over time.
        let series: Vec<_> = docs.iter().map(interval_segments).collect();
        let tmax = nice_max(
            series
                .iter()
                .flatten()
                .flat_map(|(t, _)| t.iter().flatten().map(|p| p.0))
                .fold(0.0, f64::max),
        );
        let missing: Vec<String> = docs
            .iter()
            .zip(&series)
            .filter(|(_, s)| s.is_none())
            .map(|(d, _)| d.name())
            .collect();
        for (area, caption, ydesc, pick) in [
            (&left, "throughput per interval", "messages/s", 0usize),
            (&right, "p99 per interval", "p99 latency (µs)", 1),
        ] {
            let ymax = nice_max(
                series
                    .iter()
                    .flatten()
                    .flat_map(|s| {
                        if pick == 0 { &s.0 } else { &s.1 }
                            .iter()
                            .flatten()
                            .map(|p| p.1)
                    })
                    .fold(0.0, f64::max),
            );
            let mut ch = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(80)
                .build_cartesian_2d(0f64..tmax, 0f64..ymax)
                .map_err(|x| anyhow!("drawing: {x:?}"))?;
            ch.configure_mesh()
                .x_desc("time (s)")
                .y_desc(ydesc)
                .x_label_formatter(&|x| compact(*x))
                .y_label_formatter(&|y| compact(*y))
                .draw()
                .map_err(|x| anyhow!("drawing: {x:?}"))?;
            for (i, s) in series.iter().enumerate() {
                if let Some(s) = s {
                    for pts in if pick == 0 { &s.0 } else { &s.1 } {
                        ch.draw_series(LineSeries::new(
                            pts.iter().copied(),
                            color(i).stroke_width(2),
                        ))
                        .map_err(|x| anyhow!("drawing: {x:?}"))?;
                    }
                }
            }
            if !missing.is_empty() {
                area.draw(&Text::new(
                    format!("no intervals (schema v1): {}", missing.join(", ")),
                    (90, 40),
                    ("sans-serif", 14).into_font().color(&RED),
                ))
                .map_err(|x| anyhow!("drawing: {x:?}"))?;
            }
        }
        root.present().map_err(|x| anyhow!("drawing: {x:?}"))?;
    }
    Ok(svg)
}

/// `NAME RATIO` lines (bench/compare's output); `#` lines, blanks and non-numbers are skipped.
pub fn parse_ratios(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, v) = (it.next()?, it.next()?.parse::<f64>().ok()?);
            (it.next().is_none() && v.is_finite()).then(|| (name.to_string(), v))
        })
        .collect()
}

/// Whether a smaller ratio is the better one (latencies: names with p50/p99/latency).
pub fn lower_is_better(name: &str) -> bool {
    ["p50", "p90", "p99", "latency", "rtt"]
        .iter()
        .any(|k| name.contains(k))
}

/// Horizontal bars, one per ratio (ours / theirs), with the parity line at 1; green where
/// echoload is ahead (higher, or lower for latencies), red where it is behind.
pub fn render_bars(items: &[(String, f64)], title: &str) -> Result<String> {
    if items.is_empty() {
        bail!("no NAME RATIO lines to draw");
    }
    let n = items.len();
    let height = 120 + 60 * n as u32;
    let xmax = nice_max(items.iter().map(|i| i.1).fold(1.0, f64::max));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| anyhow!("drawing: {x:?}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(0f64..xmax, 0f64..n as f64)
            .map_err(|x| anyhow!("drawing: {x:?}"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("ratio (echoload / other tool); 1 = parity")
            .x_label_formatter(&|x| compact(*x))
            .draw()
            .map_err(|x| anyhow!("drawing: {x:?}"))?;
        let good = RGBColor(0x2c, 0xa0, 0x2c);
        let bad = RGBColor(0xd6, 0x27, 0x28);
        for (i, (name, v)) in items.iter().enumerate() {
            // first item on top
            let y = (n - 1 - i) as f64;
            let ahead = if lower_is_better(name) {
                *v <= 1.0
            } else {
                *v >= 1.0
            };
            let col = if ahead { good } else { bad };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y + 0.15), (*v, y + 0.55)],
                    col.filled(),
                )))
                .map_err(|x| anyhow!("drawing: {x:?}"))?;
            let label = format!(
                "{name}  {v:.2}  ({} is better)",
                if lower_is_better(name) {
                    "lower"
                } else {
                    "higher"
                }
            );
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (xmax * 0.01, y + 0.9),
                    ("sans-serif", 15).into_font(),
                )))
                .map_err(|x| anyhow!("drawing: {x:?}"))?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(1.0, 0.0), (1.0, n as f64)],
                BLACK.stroke_width(2),
            )))
            .map_err(|x| anyhow!("drawing: {x:?}"))?;
        root.present().map_err(|x| anyhow!("drawing: {x:?}"))?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An HTML page with the SVG inline and a summary table per result.
pub fn render_html(docs: &[ResultDoc], title: &str) -> Result<String> {
    let svg = render_svg(docs, title)?;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 10px;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}</style></head><body>\n<h1>{t}</h1>\n{svg}\n\
         <table><tr><th>result</th><th>started</th><th>msg/s</th><th>bit rate</th><th>p50 µs</th>\
         <th>p99 µs</th><th>p99.9 µs</th><th>max µs</th><th>samples</th><th>errors</th></tr>\n",
        t = escape(title)
    );
    for d in docs {
        let l = &d.latency_us;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td>\
             <td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.name()),
            escape(d.started_at.as_deref().unwrap_or("-")),
            d.throughput.msgs_per_s,
            escape(&crate::results::report::human(
                d.throughput.bits_per_s,
                "bit/s"
            )),
            l.p50,
            l.p99,
            l.p999,
            l.max,
            l.count,
            d.error_total()
        );
    }
    h.push_str("</table>\n</body></html>\n");
    Ok(h)
}

/// What `out` asks for: an HTML page (.html/.htm) or an SVG (.svg); any other name is
/// refused rather than filled with SVG text it does not announce.
pub fn output_is_html(out: &Path) -> Result<bool> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => Ok(true),
        "svg" => Ok(false),
        _ => bail!(
            "-o {}: echoload plot writes .svg or .html; for a PNG, write an .svg and convert \
             it (e.g. rsvg-convert -b white x.svg -o x.png)",
            out.display()
        ),
    }
}

/// Writes an SVG, or an HTML page when `out` ends in .html/.htm.
pub fn write(docs: &[ResultDoc], out: &Path, title: &str) -> Result<()> {
    let html = output_is_html(out)?;
    let text = if html {
        render_html(docs, title)?
    } else {
        render_svg(docs, title)?
    };
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
pub(crate) mod svgparse {
    //! Reads the plotted polylines back out of an SVG, to check them against the data.

    /// (stroke colour, points) of every `<polyline>`.
    pub fn polylines(svg: &str) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut out = Vec::new();
        for el in svg.split("<polyline").skip(1) {
            let el = &el[..el.find("/>").unwrap_or(el.len())];
            let attr = |name: &str| {
                let k = format!("{name}=\"");
                el.find(&k).map(|i| {
                    let v = &el[i + k.len()..];
                    v[..v.find('"').unwrap_or(v.len())].to_string()
                })
            };
            let pts = attr("points")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| {
                    let (x, y) = p.split_once(',')?;
                    Some((x.parse().ok()?, y.parse().ok()?))
                })
                .collect();
            out.push((attr("stroke").unwrap_or_default(), pts));
        }
        out
    }

    /// Checks that `px` is an affine image of `data` on each axis (within `tol` pixels),
    /// with the map taken from the two points farthest apart on that axis.
    pub fn affine_match(data: &[(f64, f64)], px: &[(f64, f64)], tol: f64) -> Result<(), String> {
        if data.len() != px.len() {
            return Err(format!("{} data points, {} plotted", data.len(), px.len()));
        }
        for axis in 0..2 {
            let get = |p: &(f64, f64)| if axis == 0 { p.0 } else { p.1 };
            let (lo, hi) = (0..data.len()).fold((0, 0), |(lo, hi), i| {
                (
                    if get(&data[i]) < get(&data[lo]) {
                        i
                    } else {
                        lo
                    },
                    if get(&data[i]) > get(&data[hi]) {
                        i
                    } else {
                        hi
                    },
                )
            });
            if get(&data[hi]) - get(&data[lo]) <= 0.0 {
                let spread = px.iter().map(get).fold(f64::NAN, f64::max)
                    - px.iter().map(get).fold(f64::NAN, f64::min);
                if spread > tol {
                    return Err(format!(
                        "axis {axis}: equal values plotted {spread} px apart"
                    ));
                }
                continue;
            }
            let scale = (get(&px[hi]) - get(&px[lo])) / (get(&data[hi]) - get(&data[lo]));
            for (d, p) in data.iter().zip(px) {
                let want = get(&px[lo]) + (get(d) - get(&data[lo])) * scale;
                if (want - get(p)).abs() > tol {
                    return Err(format!(
                        "axis {axis}: value {} plotted at {} instead of {want:.1}",
                        get(d),
                        get(p)
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::svgparse::{affine_match, polylines};
    use super::*;
    use crate::results::doc::fixtures::agent;

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    fn find(lines: &[(String, Vec<(f64, f64)>)], col: RGBColor, n: usize) -> Vec<&Vec<(f64, f64)>> {
        lines
            .iter()
            .filter(|(s, p)| s.eq_ignore_ascii_case(&hex(col)) && p.len() == n)
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn percentile_points_follow_the_histogram() {
        let d = agent(0, 1, "2026-12-02T05:40:00Z", 4, 1000, 100);
        let pts = percentile_points(&d).unwrap();
        let h = d.histogram().unwrap();
        assert!(pts.len() > 10);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        // every point carries the histogram's value at its percentile
        // (within one sample's worth of quantile: iteration and lookup round differently)
        let step = 1.0 / h.len() as f64;
        for &(x, y) in &pts {
            let q = 1.0 - 1.0 / x;
            let at = |q: f64| {
                h.highest_equivalent(h.value_at_quantile(q.clamp(0.0, 1.0))) as f64 / 1000.0
            };
            assert!(
                at(q - step) <= y && y <= at(q + step),
                "at {x}: {y} vs {}..{}",
                at(q - step),
                at(q + step)
            );
        }
        assert!(
            pts.iter().any(|p| (50.0..200.0).contains(&p.0)),
            "a point near 99%"
        );
        assert!(pts.last().unwrap().0 <= 4000.0);
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(compact(12000.0), "12k");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(3_000_000.0), "3M");
    }

    #[test]
    fn the_svg_carries_every_curve_at_the_data_positions() {
        let mut a = agent(0, 1, "2026-12-02T05:40:00Z", 5, 400, 80);
        a.label = "run A".into();
        // distinct per-interval figures, so a wrong point would show
        for (k, iv) in a.intervals.as_mut().unwrap().iter_mut().enumerate() {
            iv.msgs_per_s = [400.0, 900.0, 650.0, 100.0, 820.0][k];
            iv.p99_us = [120.0, 95.0, 300.0, 180.0, 240.0][k];
        }
        let mut b = agent(1, 1, "2026-12-02T05:40:00Z", 3, 300, 200);
        b.label = "run B".into();
        let svg = render_svg(&[a.clone(), b.clone()], "test").unwrap();
        assert!(
            svg.contains("run A") && svg.contains("run B"),
            "legend names"
        );
        let lines = polylines(&svg);
        for (i, d) in [&a, &b].into_iter().enumerate() {
            let pts = percentile_points(d).unwrap();
            let want: Vec<(f64, f64)> = pts.iter().map(|p| (p.0.log10(), p.1.log10())).collect();
            let got = find(&lines, color(i), pts.len());
            assert_eq!(got.len(), 1, "percentile curve of {}", d.name());
            affine_match(&want, got[0], 1.5).unwrap();
            let (tp, p99) = interval_points(d).unwrap();
            let got = find(&lines, color(i), tp.len());
            assert_eq!(got.len(), 2, "throughput and p99 curves of {}", d.name());
            // throughput and p99 panels share x but not y: each curve matches its own data
            assert!(got.iter().any(|g| affine_match(&tp, g, 1.5).is_ok()));
            assert!(got.iter().any(|g| affine_match(&p99, g, 1.5).is_ok()));
        }
        // and a wrong value is caught by the check
        let (mut tp, _) = interval_points(&a).unwrap();
        tp[2].1 = 700.0;
        assert!(find(&lines, color(0), tp.len())
            .iter()
            .all(|g| affine_match(&tp, g, 1.5).is_err()));
    }

    #[test]
    fn ratio_bars_are_proportional_and_coloured_by_direction() {
        let text = "# raw figures\nudp64_rate_vs_sockperf 4.50\ntcp_stream_vs_iperf3 0.90\n\
                    udp_pingpong_p50_vs_sockperf 0.80\nbroken nan\nnot a ratio line\n";
        let items = parse_ratios(text);
        assert_eq!(items.len(), 3, "{items:?}");
        let svg = render_bars(&items, "bench").unwrap();
        // <rect x=".." y=".." width="W" height=".." fill="#RRGGBB" …/> for each bar
        let bars: Vec<(f64, String)> = svg
            .split("<rect")
            .skip(1)
            .filter_map(|r| {
                let attr = |k: &str| {
                    let i = r.find(&format!(" {k}=\""))? + k.len() + 3;
                    Some(r[i..i + r[i..].find('"')?].to_string())
                };
                Some((attr("width")?.parse().ok()?, attr("fill")?))
            })
            .filter(|(_, f)| f == "#2CA02C" || f == "#D62728")
            .collect();
        assert_eq!(bars.len(), 3, "{bars:?}");
        assert!((bars[0].0 / bars[1].0 - 4.5 / 0.9).abs() < 0.05, "{bars:?}");
        assert!((bars[2].0 / bars[1].0 - 0.8 / 0.9).abs() < 0.05, "{bars:?}");
        // ahead: rate 4.5 (higher), p50 0.8 (lower); behind: stream 0.9
        let fills: Vec<&str> = bars.iter().map(|b| b.1.as_str()).collect();
        assert_eq!(fills, ["#2CA02C", "#D62728", "#2CA02C"]);
        assert!(svg.contains("udp64_rate_vs_sockperf  4.50"));
        assert!(render_bars(&[], "x").is_err());
    }

    #[test]
    fn v1_results_plot_percentiles_and_say_what_is_missing() {
        let mut old = agent(0, 1, "2026-12-02T05:40:00Z", 2, 100, 50);
        old.intervals = None;
        old.label = "old".into();
        let svg = render_svg(&[old], "v1").unwrap();
        assert!(svg.contains("no intervals (schema v1): old"));
        let html = render_html(&[agent(0, 1, "2026-12-02T05:40:00Z", 2, 100, 50)], "a<b").unwrap();
        assert!(
            html.contains("<svg") && html.contains("a&lt;b") && html.contains("<td>fixture</td>")
        );
        assert!(render_svg(&[], "x").is_err());
    }

    /// Issue 21 bug 8: a merge of labels A and B was labelled "A"; the merged throughput was
    /// drawn straight across a gap with no data; a sink result showed in the latency legend as
    /// "p99 0.0 µs, 0 samples"; the latency axis was linear (a 25 µs p50 at 0 under 9 ms).
    #[test]
    fn gaps_send_only_runs_and_small_latencies_are_drawn_truthfully() {
        let mut a = agent(0, 2, "2026-12-02T05:40:00Z", 2, 400, 25);
        a.label = "A".into();
        let mut b = agent(1, 2, "2026-12-02T05:40:05Z", 2, 300, 25);
        b.label = "B".into();
        let m = crate::results::merge::merge(vec![a, b]).unwrap().doc;
        assert_eq!(m.name(), "A + B");
        // intervals 0-2 s and 5-7 s: two throughput lines, none across 2-5 s
        let svg = render_svg(std::slice::from_ref(&m), "gap").unwrap();
        let lines = polylines(&svg);
        let blue: Vec<_> = lines
            .iter()
            .filter(|(s, _)| s.eq_ignore_ascii_case(&hex(color(0))))
            .map(|(_, p)| p.len())
            .collect();
        // two throughput and two p99 segments, and the legend's sample line
        assert_eq!(blue.iter().filter(|n| **n == 2).count(), 5, "{blue:?}");
        assert!(!blue.contains(&4), "{blue:?}");
        // a send-only run: no p99 legend figures, no p99 line
        let mut sink = agent(0, 1, "2026-12-02T05:40:00Z", 3, 100, 50);
        sink.label = "sink".into();
        sink.latency_us = crate::results::report::Latency::default();
        sink.histogram =
            crate::results::report::encode_histogram(&crate::client::Stats::default().hist);
        let svg = render_svg(&[sink], "sink").unwrap();
        assert!(svg.contains("no latency"), "legend");
        assert!(!svg.contains("0 samples"), "legend");
        let red_or_blue = polylines(&svg)
            .iter()
            .filter(|(s, p)| s.eq_ignore_ascii_case(&hex(color(0))) && p.len() == 3)
            .count();
        assert_eq!(red_or_blue, 1, "throughput only");
        // log latency axis: 25 µs and 9 ms are apart by log10(360) of the axis, not 0.3 %
        let mut spike = agent(0, 1, "2026-12-02T05:40:00Z", 1, 1000, 25);
        let mut h = spike.histogram().unwrap();
        h.record(9_000_000).unwrap();
        spike.histogram = crate::results::report::encode_histogram(&h);
        let pts = percentile_points(&spike).unwrap();
        let svg = render_svg(&[spike], "log").unwrap();
        let line = polylines(&svg)
            .into_iter()
            .find(|(s, p)| s.eq_ignore_ascii_case(&hex(color(0))) && p.len() == pts.len())
            .unwrap()
            .1;
        let want: Vec<(f64, f64)> = pts.iter().map(|p| (p.0.log10(), p.1.log10())).collect();
        affine_match(&want, &line, 1.5).unwrap();
    }

    /// Issue 21 bug 7: `plot -o x.png` wrote SVG text into x.png and exited 0.
    #[test]
    fn only_svg_and_html_outputs_are_accepted() {
        assert!(!output_is_html(Path::new("x.svg")).unwrap());
        assert!(output_is_html(Path::new("x.HTML")).unwrap());
        let e = output_is_html(Path::new("x.png")).unwrap_err().to_string();
        assert!(e.contains("rsvg-convert"), "{e}");
        assert!(output_is_html(Path::new("x")).is_err());
    }
}
