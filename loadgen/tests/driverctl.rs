//! `echoload driver ...` against an in-process control server (control::transport::serve_until
#![allow(
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]
//! over control's MockDriver), as it talks to wskecho-sim; and through the real binary.
use clap::Parser;
use control::ioctl::{dispatch, IOCTL_WSKECHO_QUERY_STATS};
use control::mock::MockDriver;
use control::stats::Counter;
use echoload::cli::DriverArgs;
use echoload::driverctl::{run_to, EXIT_REFUSED, EXIT_UNREACHABLE};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: DriverArgs,
}

struct Fake {
    addr: SocketAddr,
    mock: Arc<Mutex<MockDriver>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// Every stats query first advances the mock by one second with 1000 bytes in per CPU.
    fn start() -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mock = Arc::new(Mutex::new(MockDriver::new(2)));
        let stop = Arc::new(AtomicBool::new(false));
        let (m2, s2) = (mock.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            control::transport::serve_until(&l, &s2, |code, i, o| {
                let mut m = m2.lock().unwrap();
                if code == IOCTL_WSKECHO_QUERY_STATS {
                    m.tick(Counter::BytesIn, 1000);
                }
                dispatch(&mut *m, code, i, o)
            })
            .unwrap();
        });
        Fake {
            addr,
            mock,
            stop,
            thread: Some(thread),
        }
    }

    fn run(&self, argv: &[&str]) -> (i32, String) {
        let mut full = vec![
            "driver".to_string(),
            "--control".into(),
            self.addr.to_string(),
        ];
        full.extend(argv.iter().map(ToString::to_string));
        let cli = Cli::try_parse_from(&full).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let mut out = Vec::new();
        let code = run_to(&cli.args, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    fn json(&self, argv: &[&str]) -> Value {
        let mut a = argv.to_vec();
        a.push("--json");
        let (code, out) = self.run(&a);
        assert_eq!(code, 0, "{argv:?}: {out}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{argv:?}: {e}: {out}"))
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn status_and_config_get() {
    let f = Fake::start();
    let j = f.json(&["status"]);
    assert_eq!(j["driver_version"], "0.1.0");
    assert_eq!(j["cpus"], 2);
    assert_eq!(j["load"]["state"], "idle");
    let svcs = j["config"]["services"].as_array().unwrap();
    assert_eq!(svcs.len(), 7);
    assert_eq!(svcs[0]["port"], 7007);
    assert_eq!(svcs[0]["bind"], "127.0.0.1");
    assert_eq!(j["config"]["limits"]["MaxConnections"], 1024);
    // Where each service stands (the mock opens every configured one).
    let states = j["services"].as_array().unwrap();
    assert_eq!(states.len(), 7);
    assert_eq!(states[0]["port"], 7007);
    assert_eq!(states[0]["open"], true);
    assert_eq!(states[0]["status"], "STATUS_SUCCESS");
    let (code, text) = f.run(&["status"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("wskecho 0.1.0") && text.contains("sockperf  udp 127.0.0.1:11111"),
        "{text}"
    );
    assert!(text.contains("service state (7 of 7 open):"), "{text}");
    let c = f.json(&["config", "get"]);
    assert_eq!(
        c["allowed_sources"],
        serde_json::json!(["0.0.0.0/0", "::/0"])
    );
}

#[test]
fn per_cpu_connection_gauge_is_a_labelled_delta() {
    let f = Fake::start();
    {
        // One connection accepted on CPU 0 and closed on CPU 1, one still open on CPU 0.
        let mut m = f.mock.lock().unwrap();
        m.cpus[0].set(Counter::ConnActive, 2);
        m.cpus[1].set(Counter::ConnActive, (-1i64) as u64);
    }
    let j = f.json(&["stats", "--per-cpu"]);
    assert_eq!(j["global"]["conn_active"], 1);
    assert_eq!(j["per_cpu"][1]["conn_active_delta"], -1);
    assert!(j["per_cpu"][1].get("conn_active").is_none(), "{j}");
    let (code, text) = f.run(&["stats", "--per-cpu"]);
    assert_eq!(code, 0);
    let cpu1 = text.split("cpu 1:").nth(1).expect("cpu 1 block");
    assert!(cpu1.contains("conn_active_delta      -1"), "{text}");
    assert!(
        !cpu1
            .lines()
            .any(|l| l.trim_start().starts_with("conn_active ")),
        "{text}"
    );
    let global = text.split("cpu 0:").next().unwrap();
    assert!(global.contains("conn_active            1"), "{text}");
}

#[test]
fn stats_once_and_watch() {
    let f = Fake::start();
    let j = f.json(&["stats", "--per-cpu", "--per-service"]);
    assert_eq!(j["global"]["bytes_in"], 2000);
    assert_eq!(j["per_cpu"].as_array().unwrap().len(), 2);
    assert_eq!(j["per_service"].as_array().unwrap().len(), 7);
    assert_eq!(j["per_service"][4]["service"], "source,tcp,7019,127.0.0.1");

    let (code, out) = f.run(&[
        "stats",
        "--watch",
        "--count",
        "3",
        "--interval",
        "20ms",
        "--json",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines {
        // Each sample is one mock second later with 2 CPUs x 1000 bytes more.
        assert_eq!(l["bytes_in_per_s"], 2000.0);
        assert_eq!(l["interval_s"], 1.0);
        assert_eq!(l["bytes_out_per_s"], 0.0);
    }
    let (code, out) = f.run(&["stats", "--watch", "--count", "2", "--interval", "10ms"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "header + 2 samples: {out}");
    assert!(
        out.lines().nth(1).unwrap().split_whitespace().nth(2) == Some("2000"),
        "{out}"
    );
}

#[test]
fn config_set_operations() {
    let f = Fake::start();
    // One add: sent as AddService.
    let c = f.json(&["config", "set", "--add", "echo,udp,9000,::1"]);
    assert_eq!(c["services"].as_array().unwrap().len(), 8);
    assert_eq!(c["services"][7]["bind"], "::1");
    // The same again conflicts in the driver: exit code 1.
    assert_eq!(
        f.run(&["config", "set", "--add", "discard,udp,9000,::1"]).0,
        EXIT_REFUSED
    );
    // One remove (mode not compared).
    let c = f.json(&["config", "set", "--remove", "discard,udp,9000,::1"]);
    assert_eq!(c["services"].as_array().unwrap().len(), 7);
    assert_eq!(
        f.run(&["config", "set", "--remove", "echo,udp,9000,::1"]).0,
        EXIT_REFUSED
    );
    // Limits only: SetLimits.
    let c = f.json(&[
        "config",
        "set",
        "--limit",
        "MaxConnections=10",
        "--allowed-sources",
        "10.0.0.0/8,::1/128",
    ]);
    assert_eq!(c["limits"]["MaxConnections"], 10);
    assert_eq!(
        c["allowed_sources"],
        serde_json::json!(["10.0.0.0/8", "::1/128"])
    );
    assert_eq!(c["services"].as_array().unwrap().len(), 7);
    // Several changes: one Replace.
    let c = f.json(&[
        "config",
        "set",
        "--replace-services",
        "--add",
        "echo,tcp,1,127.0.0.1",
        "--add",
        "echo,udp,1,127.0.0.1",
        "--limit",
        "SendRingBytes=8192",
    ]);
    assert_eq!(c["services"].as_array().unwrap().len(), 2);
    assert_eq!(c["limits"]["SendRingBytes"], 8192);
    assert_eq!(c["limits"]["MaxConnections"], 10, "other limits kept");
    assert_eq!(f.mock.lock().unwrap().config.services.len(), 2);
    // Busy port reported by the driver.
    f.mock.lock().unwrap().busy_ports.push(4444);
    assert_eq!(
        f.run(&["config", "set", "--add", "echo,tcp,4444,127.0.0.1"])
            .0,
        EXIT_REFUSED
    );
    // The ABI-3 timeouts: set by name (any case), shown in JSON and in the aligned text.
    let c = f.json(&[
        "config",
        "set",
        "--limit",
        "IdleTimeoutMs=0",
        "--limit",
        "progresstimeoutms=5000",
        "--limit",
        "RetainTimeoutMs=60000",
    ]);
    assert_eq!(c["limits"]["IdleTimeoutMs"], 0);
    assert_eq!(c["limits"]["ProgressTimeoutMs"], 5000);
    assert_eq!(c["limits"]["RetainTimeoutMs"], 60000);
    let l = f.mock.lock().unwrap().config.limits.clone();
    assert_eq!(
        (
            l.idle_timeout_ms,
            l.progress_timeout_ms,
            l.retain_timeout_ms
        ),
        (0, 5000, 60000)
    );
    let (code, text) = f.run(&["config", "get"]);
    assert_eq!(code, 0);
    for line in [
        "  IdleTimeoutMs                  0\n",
        "  ProgressTimeoutMs              5000\n",
        "  RetainTimeoutMs                60000\n",
        "  UdpDropPrivilegedSourcePorts   1\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let cli = Cli::try_parse_from([
        "driver",
        "--control",
        &f.addr.to_string(),
        "config",
        "set",
        "--limit",
        "RetainTimeoutMs=60001",
    ])
    .unwrap();
    let e = run_to(&cli.args, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("RetainTimeoutMs must be in 0..=60000"), "{e}");
    // Local validation errors are errors, not requests.
    let cli = Cli::try_parse_from([
        "driver",
        "--control",
        &f.addr.to_string(),
        "config",
        "set",
        "--limit",
        "SendRingBytes=5000",
    ])
    .unwrap();
    assert!(run_to(&cli.args, &mut Vec::new()).is_err());
    assert!(
        Cli::try_parse_from(["driver", "config", "set", "--add", "echo,tcp,0x,1.2.3.4"]).is_err()
    );
}

#[test]
fn load_start_status_stop() {
    let f = Fake::start();
    let j = f.json(&[
        "load",
        "start",
        "--target",
        "127.0.0.1:7007",
        "--conns",
        "8",
        "--size",
        "128",
        "--duration",
        "5s",
    ]);
    assert_eq!(j["job_id"], 1);
    assert_eq!(
        f.run(&["load", "start", "--target", "127.0.0.1:7007"]).0,
        EXIT_REFUSED,
        "busy"
    );
    let s = f.json(&["load", "status"]);
    assert_eq!(s["state"], "running");
    assert_eq!(s["job"]["connections"], 8);
    assert_eq!(s["job"]["duration_ms"], 5000);
    assert_eq!(s["job"]["target"], "127.0.0.1:7007");
    let s = f.json(&["load", "stop"]);
    assert_eq!(s["state"], "finished");
    assert_eq!(f.run(&["load", "stop"]).0, EXIT_REFUSED);
    // Checked locally before sending.
    let cli = Cli::try_parse_from([
        "driver",
        "--control",
        &f.addr.to_string(),
        "load",
        "start",
        "--target",
        "127.0.0.1:0",
    ])
    .unwrap();
    assert!(run_to(&cli.args, &mut Vec::new()).is_err());
    let j = f.json(&[
        "load",
        "start",
        "--target",
        "[::1]:7007",
        "--proto",
        "udp",
        "--pattern",
        "source",
        "--rate",
        "1000",
        "--flows",
        "6",
    ]);
    assert_eq!(j["job_id"], 2);
    // --flows reaches the job (a UDP job's sockets, so source ports).
    assert_eq!(f.json(&["load", "status"])["job"]["flows"], 6);
    // Out of its range (1..=64), or on a TCP job (its connections are its flows): refused
    // before anything is sent.
    f.json(&["load", "stop"]);
    for bad in [
        &["--proto", "udp", "--flows", "0"][..],
        &["--proto", "udp", "--flows", "65"],
        &["--flows", "2"],
    ] {
        let mut args = vec!["driver", "--control"];
        let addr = f.addr.to_string();
        args.push(&addr);
        args.extend(["load", "start", "--target", "127.0.0.1:7007"]);
        args.extend(bad);
        let refused = Cli::try_parse_from(&args)
            .map_or(true, |cli| run_to(&cli.args, &mut Vec::new()).is_err());
        assert!(refused, "{bad:?}");
    }
}

fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn unreachable_sim_is_exit_2() {
    let addr = closed_port();
    let cli = Cli::try_parse_from(["driver", "--control", &addr.to_string(), "status"]).unwrap();
    assert_eq!(
        run_to(&cli.args, &mut Vec::new()).unwrap(),
        EXIT_UNREACHABLE
    );
}

/// Through the real `echoload` binary: the CLI wiring, exit codes and messages.
#[test]
fn binary_end_to_end() {
    let f = Fake::start();
    let exe = env!("CARGO_BIN_EXE_echoload");
    let o = std::process::Command::new(exe)
        .args([
            "driver",
            "--control",
            &f.addr.to_string(),
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["abi"]["max"], control::ioctl::ABI_VERSION);
    let addr = closed_port();
    let o = std::process::Command::new(exe)
        .args(["driver", "--control", &addr.to_string(), "stats"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("wskecho-sim is not running at {addr}")),
        "{err}"
    );
}

#[test]
fn conformance_check_passes_against_the_mock() {
    let f = Fake::start();
    let j = f.json(&["check"]);
    assert_eq!(j["failed"], 0, "{j}");
    assert!(j["passed"].as_u64().unwrap() > 60);
    let (code, text) = f.run(&["check"]);
    assert_eq!(code, 0);
    assert!(
        text.lines().last().unwrap().starts_with("conformance: "),
        "{text}"
    );
}

#[test]
fn durations_parse() {
    use echoload::cli::units::parse_duration;
    use std::time::Duration;
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    for bad in ["", "s", "-1s", "abc", "1e9s"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn nothing_to_change_is_an_error_and_sends_nothing() {
    let f = Fake::start();
    let cli =
        Cli::try_parse_from(["driver", "--control", &f.addr.to_string(), "config", "set"]).unwrap();
    let e = run_to(&cli.args, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("nothing to change"), "{e}");
    let cli = Cli::try_parse_from([
        "driver",
        "--control",
        &f.addr.to_string(),
        "config",
        "set",
        "--replace-services",
        "--remove",
        "echo,tcp,7007,127.0.0.1",
    ])
    .unwrap();
    assert!(run_to(&cli.args, &mut Vec::new()).is_err());
    assert_eq!(
        f.mock.lock().unwrap().config,
        control::config::Config::default()
    );
}

/// Bug 8 (issue 11): `driver check` with nothing listening printed one FAIL line per case
/// (85) and exited 1; it is one transport error and exit 2 ("not reachable").
#[test]
fn check_with_nothing_listening_is_unreachable() {
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cli = Cli::try_parse_from(["driver", "--control", &free.to_string(), "check"]).unwrap();
    let mut out = Vec::new();
    let code = run_to(&cli.args, &mut out).unwrap();
    assert_eq!(code, EXIT_UNREACHABLE);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // The binary: one line on stderr.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_echoload"))
        .args(["driver", "--control", &free.to_string(), "check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE));
    assert!(o.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
}

/// Bug 11 (issue 11): a control address where something listens but never answers was
/// reported as "wskecho-sim is not running"; it timed out.
#[test]
fn silent_control_address_times_out() {
    // Connections complete in the backlog; nobody ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_echoload"))
        .args(["driver", "--control", &addr.to_string(), "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE), "{err}");
    assert!(err.contains("timed out"), "{err}");
    assert!(!err.contains("not running"), "{err}");
    drop(silent);
}
