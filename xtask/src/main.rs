//! `cargo xtask driver`: build wskecho.sys for x86_64-pc-windows-msvc (rust-lld, no WDK),
//! package it with its INF into <target>/driver/, and check the PE.
//! `cargo xtask check-pe FILE`: run only the PE check on an image.
//! `cargo xtask check-inf FILE`: run only the INF check (primitive-driver rules, Parameters).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use xtask::{build, inf, mingw, pe_check};

const USAGE: &str = "usage: cargo xtask driver          build, package and check wskecho.sys
       cargo xtask check-pe FILE   check a driver image (imports, subsystem, checksum, ...)
       cargo xtask check-inf FILE  check a driver INF (primitive-driver rules, Parameters)";

fn main() -> ExitCode {
    match run(&std::env::args().skip(1).collect::<Vec<_>>()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("driver") => driver(),
        Some("check-pe") => {
            let Some(file) = args.get(1) else {
                bail!("{USAGE}")
            };
            let data = std::fs::read(file)?;
            let lists = mingw::ExportLists::load(&mingw::ensure_installed()?)?;
            match pe_check::check(&data, &lists) {
                Ok(report) => {
                    println!(
                        "{file}: OK, checksum {:#x}\n{}",
                        report.checksum,
                        report.import_summary()
                    );
                    Ok(())
                }
                Err(p) => bail!("{file} refused:\n{p}"),
            }
        }
        Some("check-inf") => {
            let Some(file) = args.get(1) else {
                bail!("{USAGE}")
            };
            let text = std::fs::read_to_string(file)?;
            match inf::check_package(&text, &["wskecho.sys"]) {
                Ok(()) => {
                    println!("{file}: OK");
                    Ok(())
                }
                Err(p) => bail!("{file} refused:\n{p}"),
            }
        }
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

fn driver() -> Result<()> {
    let target_dir = build::target_dir();
    let image = build::build_driver("wskecho", "wskecho", &target_dir)?;
    let out_dir: PathBuf = target_dir.join("driver");
    let inf = build::workspace_root().join("inf").join("wskecho.inf");
    let p = build::package_driver(&image, &out_dir, &inf)?;
    println!("driver: {}", p.sys.display());
    if let Some(inf) = &p.inf {
        println!("inf:    {}", inf.display());
    }
    if let Some(pdb) = &p.pdb {
        println!("pdb:    {}", pdb.display());
    }
    println!(
        "checks passed: AMD64, NATIVE subsystem, entry point {:#x}, checksum {:#x}{}, no TLS, NX_COMPAT, \
         relocations kept, no W+X section, exports {:?}, imports only kernel exports",
        p.report.entry_point,
        p.report.checksum,
        if p.checksum_fixed { " (written by xtask)" } else { " (from the linker)" },
        p.report.exports
    );
    println!(
        "imports (* = allow-listed, newer than mingw-w64's export lists):\n{}",
        p.report.import_summary()
    );
    Ok(())
}
