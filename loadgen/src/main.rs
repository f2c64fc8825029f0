//! `echoload`: see `echoload --help`.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use echoload::cli::{Cli, Cmd, DemoArgs, DiffArgs, MergeArgs, PlotArgs, RunArgs};
use echoload::client::{Measurement, RunConfig};
use echoload::output;
use echoload::results;
use echoload::results::report::{self, RunReport};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        None => demo(&DemoArgs::default()),
        Some(Cmd::Demo(d)) => demo(&d),
        Some(Cmd::Run(a)) => run(&a),
        Some(Cmd::Merge(m)) => merge(&m),
        Some(Cmd::Plot(p)) => plot(&p),
        Some(Cmd::Diff(d)) => diff(&d),
        Some(Cmd::Serve(s)) => echoload::server::run_with_metrics(
            &echoload::server::ServeConfig::from(&s),
            s.stats_every,
            s.metrics.as_deref(),
        )
        .map(|()| ExitCode::SUCCESS),
        Some(Cmd::Driver(d)) => {
            echoload::driverctl::run(d).map(|code| ExitCode::from(u8::try_from(code).unwrap_or(2)))
        }
    };
    r.unwrap_or_else(|e| {
        eprintln!("echoload: error: {e:#}");
        ExitCode::from(2)
    })
}

fn status(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(a: &RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(pair) = a.to_bidir_configs()? {
        return bidir(a, pair);
    }
    let mut cfg = a.to_config()?;
    if let Some(p) = &a.json {
        // Checked before any traffic: a typo in the path must not cost the run.
        check_writable(p)?;
    }
    echoload::signals::install();
    cfg.stop = Some(echoload::signals::flag());
    let mut r = if a.interval.is_some() {
        // With -J the JSON alone goes to stdout: interval lines to stderr.
        let to_stderr = a.json_stdout;
        let mut header = false;
        let style = report::LineStyle {
            half_rtt: a.half_rtt,
            ..report::LineStyle::of(&cfg)
        };
        let mut line = |iv: &echoload::client::Interval| {
            let mut text = String::new();
            if !header {
                header = true;
                text.push_str(&report::interval_header(&style));
                text.push('\n');
            }
            text.push_str(&report::interval_line(iv, &style));
            if to_stderr {
                eprintln!("{text}");
            } else {
                output::println(&text);
            }
        };
        run_maybe_metrics(&cfg, a, Some(&mut line))?
    } else {
        run_maybe_metrics(&cfg, a, None)?
    };
    let signal = echoload::signals::received();
    if let Some(sig) = signal {
        r.messages.push(format!(
            "stopped by {} after {:.2} s measured",
            echoload::signals::name(sig),
            r.duration_s
        ));
    }
    let clean = r.clean(a.allow_loss);
    let code = match signal {
        Some(sig) => echoload::signals::exit_status(sig),
        None => u8::from(!clean),
    };
    r.verdict = Some(report::Verdict {
        clean,
        exit_code: code,
        stopped_by: signal
            .map_or("duration", echoload::signals::name)
            .to_string(),
    });
    if a.json_stdout {
        output::println(&r.to_json());
    } else {
        output::print(&r.table_view(a.half_rtt));
    }
    if let Some(p) = &a.json {
        r.write_json(p)?;
    }
    if signal.is_some() {
        return Ok(ExitCode::from(code));
    }
    if !clean {
        eprintln!(
            "echoload: run not clean (no data moved, integrity errors or failed connections; see \
             the report)"
        );
    }
    Ok(status(clean))
}

/// `--bidir`: a sink and a source run at the same time; both reports, one JSON document
/// `{"schema_version": 2, "bidir": true, "send": REPORT, "receive": REPORT}`.
fn bidir(a: &RunArgs, (mut send, mut recv): (RunConfig, RunConfig)) -> anyhow::Result<ExitCode> {
    if let Some(p) = &a.json {
        check_writable(p)?;
    }
    echoload::signals::install();
    send.stop = Some(echoload::signals::flag());
    recv.stop = Some(echoload::signals::flag());
    // One progress bar would be drawn over by the other.
    recv.progress = false;
    let (mut s, mut r) = std::thread::scope(|sc| {
        let h = sc.spawn(|| echoload::run(&recv));
        let s = echoload::run(&send);
        let r = h.join().unwrap_or_else(|_| {
            RunReport::new(
                &recv,
                &Measurement::failed("the receiving run's thread panicked".into()),
            )
        });
        (s, r)
    });
    let signal = echoload::signals::received();
    if let Some(sig) = signal {
        for x in [&mut s, &mut r] {
            x.messages.push(format!(
                "stopped by {} after {:.2} s measured",
                echoload::signals::name(sig),
                x.duration_s
            ));
        }
    }
    let doc = serde_json::json!({"schema_version": report::SCHEMA_VERSION, "bidir": true, "send": s, "receive": r});
    if a.json_stdout {
        output::println(&serde_json::to_string_pretty(&doc)?);
    } else {
        output::print(&format!(
            "== send\n{}== receive\n{}",
            s.table_view(a.half_rtt),
            r.table_view(a.half_rtt)
        ));
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&doc)? + "\n")
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    if let Some(sig) = signal {
        return Ok(ExitCode::from(echoload::signals::exit_status(sig)));
    }
    let clean = s.clean(a.allow_loss) && r.clean(a.allow_loss);
    if !clean {
        eprintln!("echoload: bidirectional run not clean (see the reports)");
    }
    Ok(status(clean))
}

/// Fails unless `path` can be written (its directory exists, it is not a directory, we may
/// write there). Creates the file if it did not exist; it is written at the end of the run.
fn check_writable(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        anyhow::bail!(
            "--json {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("--json {}: cannot write there: {e}", path.display()))?;
    Ok(())
}

/// The run, with its live counters on `--metrics ADDR` when asked.
fn run_maybe_metrics(
    cfg: &echoload::client::RunConfig,
    a: &RunArgs,
    on_interval: Option<&mut dyn FnMut(&echoload::client::Interval)>,
) -> anyhow::Result<RunReport> {
    // The receiver's view: the server's counters of the target service around the run.
    let server = a.multi.server_metrics.as_deref();
    let before = server
        .map(|s| results::receiver::read(s, cfg.proto, cfg.target.port()))
        .transpose()?;
    let mut r = match &a.multi.metrics {
        None => echoload::run_with(cfg, on_interval),
        Some(addr) => echoload::session::metrics::run_with_endpoint(cfg, addr, on_interval)?,
    };
    if let (Some(s), Some(before)) = (server, before) {
        // The server may still be reading what was sent (and its workers publish once per
        // event batch): read until two readings 100 ms apart agree, 2 s at most.
        let mut last = None;
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = results::receiver::read(s, cfg.proto, cfg.target.port());
            let settled = matches!((&last, &now), (Some(Ok(a)), Ok(b)) if a == b);
            last = Some(now);
            if settled {
                break;
            }
        }
        match last {
            Some(Ok(after)) => r.receiver = Some(results::receiver::counts(s, &before, &after)),
            Some(Err(e)) => r.messages.push(format!("receiver counts: {e:#}")),
            None => {}
        }
    }
    Ok(r)
}

/// The runs of a result file: one, or the send and receive runs of a `--bidir` document.
fn read_reports(f: &Path) -> anyhow::Result<Vec<(&'static str, RunReport)>> {
    let text =
        std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
    let bad =
        |e: serde_json::Error| anyhow::anyhow!("{} is not an echoload result: {e}", f.display());
    let v: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
    match results::doc::bidir_parts(&v) {
        Some(parts) => parts
            .into_iter()
            .map(|(dir, p)| Ok((dir, serde_json::from_value(p.clone()).map_err(bad)?)))
            .collect(),
        None => Ok(vec![("", serde_json::from_value(v).map_err(bad)?)]),
    }
}

fn diff(d: &DiffArgs) -> anyhow::Result<ExitCode> {
    let (a, b) = (read_reports(&d.a)?, read_reports(&d.b)?);
    if a.len() != b.len() {
        let (bidir, single) = if a.len() == 2 {
            (&d.a, &d.b)
        } else {
            (&d.b, &d.a)
        };
        anyhow::bail!(
            "{} is a --bidir result (a send and a receive run) and {} is one run: compare it \
             with another --bidir result",
            bidir.display(),
            single.display()
        );
    }
    let diffs: Vec<(&str, results::diff::Diff)> = a
        .iter()
        .zip(&b)
        .map(|((dir, x), (_, y))| (*dir, results::diff::diff(x, y, d.tolerance)))
        .collect();
    if d.json {
        let text = if let [(_, one)] = diffs.as_slice() {
            serde_json::to_string_pretty(one)?
        } else {
            let m: serde_json::Map<String, serde_json::Value> = diffs
                .iter()
                .map(|(dir, r)| Ok(((*dir).to_string(), serde_json::to_value(r)?)))
                .collect::<anyhow::Result<_>>()?;
            serde_json::to_string_pretty(&m)?
        };
        output::println(&text);
    } else {
        for (dir, r) in &diffs {
            let name = |p: &Path| {
                if dir.is_empty() {
                    p.display().to_string()
                } else {
                    format!("{} ({dir})", p.display())
                }
            };
            output::print(&r.table(&name(&d.a), &name(&d.b)));
        }
    }
    Ok(status(!diffs.iter().any(|(_, r)| r.worse())))
}

fn merge(m: &MergeArgs) -> anyhow::Result<ExitCode> {
    let stream = results::doc::load(&m.files)?;
    report_skipped(&stream.skipped);
    if !results::doc::is_stdin(&m.files) {
        // Files are named one by one: the same run twice is a mistake, not log noise.
        results::merge::refuse_duplicates(&stream.docs)?;
    }
    let merged = results::merge::merge(stream.docs)?;
    for w in &merged.warnings {
        eprintln!("echoload merge: warning: {w}");
    }
    output::print(&merged.table());
    if let Some(p) = &m.json {
        std::fs::write(p, serde_json::to_string_pretty(&merged.doc)? + "\n")
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    let e = &merged.doc.errors;
    let clean = ["corrupted", "connect", "io"]
        .iter()
        .all(|k| e.get(*k).copied().unwrap_or(0) == 0);
    Ok(status(clean && (!m.strict || merged.warnings.is_empty())))
}

fn report_skipped(skipped: &[String]) {
    for s in skipped.iter().take(5) {
        eprintln!("echoload: skipped {s}");
    }
    if skipped.len() > 5 {
        eprintln!("echoload: skipped {} more", skipped.len() - 5);
    }
}

fn plot(p: &PlotArgs) -> anyhow::Result<ExitCode> {
    let html = results::plot::output_is_html(&p.output)?;
    if p.bars {
        if html {
            anyhow::bail!("--bars draws an SVG only: give -o NAME.svg");
        }
        let mut items = Vec::new();
        for f in &p.files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
            items.extend(results::plot::parse_ratios(&text));
        }
        let svg = results::plot::render_bars(&items, &p.title)?;
        std::fs::write(&p.output, svg)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.output.display()))?;
        eprintln!("wrote {}", p.output.display());
        return Ok(ExitCode::SUCCESS);
    }
    let stream = results::doc::load(&p.files)?;
    report_skipped(&stream.skipped);
    results::plot::write(&stream.docs, &p.output, &p.title)?;
    eprintln!("wrote {}", p.output.display());
    Ok(ExitCode::SUCCESS)
}

fn demo(d: &DemoArgs) -> anyhow::Result<ExitCode> {
    let reports = echoload::demo::run(d.each, true)?;
    if let Some(p) = &d.json {
        let lines: Vec<String> = reports
            .iter()
            .map(|r| serde_json::to_string(r).expect("report serializes"))
            .collect();
        std::fs::write(p, lines.join("\n") + "\n")?;
    }
    let clean = reports.iter().all(|r| r.clean(false));
    output::println(if clean {
        "all demo runs clean"
    } else {
        "some demo runs had errors (see above)"
    });
    Ok(status(clean))
}
