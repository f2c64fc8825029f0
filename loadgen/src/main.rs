//! `echoload`: see `echoload --help`.

use std::process::ExitCode;

use clap::Parser;
use echoload::cli::{Cli, Cmd, DemoArgs, MergeArgs, PlotArgs, RunArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        None => demo(&DemoArgs::default()),
        Some(Cmd::Demo(d)) => demo(&d),
        Some(Cmd::Run(a)) => run(&a),
        Some(Cmd::Merge(m)) => merge(&m),
        Some(Cmd::Plot(p)) => plot(&p),
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
    let cfg = a.to_config()?;
    let r = match &a.multi.metrics {
        None => echoload::run(&cfg),
        Some(addr) => echoload::metrics::run_with_endpoint(&cfg, addr, &a.target)?,
    };
    if a.json_stdout {
        println!("{}", r.to_json());
    } else {
        print!("{}", r.table());
    }
    if let Some(p) = &a.json {
        r.write_json(p)?;
    }
    let clean = r.clean(a.allow_loss);
    if !clean {
        eprintln!(
            "echoload: run not clean (integrity errors or failed connections; see the report)"
        );
    }
    Ok(status(clean))
}

fn merge(m: &MergeArgs) -> anyhow::Result<ExitCode> {
    let stream = echoload::resultdoc::load(&m.files)?;
    report_skipped(&stream.skipped);
    let merged = echoload::align::merge(stream.docs)?;
    print!("{}", merged.table());
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
    let stream = echoload::resultdoc::load(&p.files)?;
    report_skipped(&stream.skipped);
    echoload::plot::write(&stream.docs, &p.output, &p.title)?;
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
    println!(
        "{}",
        if clean {
            "all demo runs clean"
        } else {
            "some demo runs had errors (see above)"
        }
    );
    Ok(status(clean))
}
