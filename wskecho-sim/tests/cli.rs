//! The runner's command line and exit paths, run as a user runs them: the built binary, on
//! 127.0.0.1 ports picked free for each test, every run bounded in time.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wskecho-sim");
/// Longest a run may take before the test kills it (load, serve, unload).
const BOUND: Duration = Duration::from_secs(30);

/// A port free on 127.0.0.1 for both TCP and UDP right now.
fn free_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

fn echo_service(port: u16) -> String {
    format!("echo,tcp,{port},127.0.0.1")
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn spawn(args: &[&str], stdout: Stdio) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wskecho-sim")
}

/// Waits (bounded) for the child, collecting whatever output pipes it still has.
fn finish(mut c: Child) -> Run {
    let mut out = c.stdout.take();
    let mut err = c.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > BOUND {
            let _ = c.kill();
            let _ = c.wait();
            panic!("wskecho-sim did not end within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn run(args: &[&str]) -> Run {
    finish(spawn(args, Stdio::piped()))
}

#[test]
fn duration_takes_units_and_bare_seconds() {
    for d in ["300ms", "0.3", "1s"] {
        let svc = echo_service(free_port());
        let r = run(&["--duration", d, "--no-control", "--services", &svc]);
        assert!(
            r.status.success(),
            "--duration {d}: {:?}\n{}",
            r.status,
            r.stderr
        );
        assert!(r.stdout.contains("unload clean"), "{}", r.stdout);
    }
    let r = run(&["--duration", "2x", "--no-control"]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("bad --duration 2x"), "{}", r.stderr);
}

#[cfg(unix)]
#[test]
fn sigterm_prints_counters_and_verdict() {
    let svc = echo_service(free_port());
    let c = spawn(
        &["--duration", "20", "--no-control", "--services", &svc],
        Stdio::piped(),
    );
    // Serving: the port answers.
    let port: u16 = svc.split(',').nth(2).unwrap().parse().unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < BOUND, "never served");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = c.id().to_string();
    let k = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(k.success());
    let t_term = Instant::now();
    let r = finish(c);
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    assert!(
        t_term.elapsed() < Duration::from_secs(15),
        "SIGTERM not acted on"
    );
    assert!(r.stdout.contains("driver counters after"), "{}", r.stdout);
    assert!(r.stdout.contains("conn_accepted"), "{}", r.stdout);
    assert!(r.stdout.contains("unload clean"), "{}", r.stdout);
}

#[test]
fn no_service_started_is_an_error() {
    // The port is taken by this test, so the driver's only service cannot bind.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let svc = echo_service(port);
    let r = run(&["--duration", "2", "--no-control", "--services", &svc]);
    assert_eq!(r.status.code(), Some(1), "{:?}\n{}", r.status, r.stderr);
    assert!(
        r.stderr
            .contains("none of the 1 configured services could start"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("serving until"), "{}", r.stderr);
    drop(holder);
}

#[test]
fn some_services_started_is_a_warning() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let list = format!("{};{}", echo_service(taken), echo_service(free_port()));
    let r = run(&["--duration", "0.3", "--no-control", "--services", &list]);
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    assert!(
        r.stderr.contains("only 1 of 2 services started"),
        "{}",
        r.stderr
    );
    drop(holder);
}

#[test]
fn unknown_or_bad_param_is_refused() {
    let svc = echo_service(free_port());
    let cases = [
        ("Foo=1", "unknown --param Foo; known: MaxConnections"),
        ("MaxConnections=x", "bad --param MaxConnections=x"),
        (
            "MaxConnections=0",
            "bad --param MaxConnections=0: registry value",
        ),
    ];
    for (p, want) in cases {
        let r = run(&[
            "--duration",
            "1",
            "--no-control",
            "--services",
            &svc,
            "--param",
            p,
        ]);
        assert_eq!(r.status.code(), Some(2), "--param {p}: {}", r.stderr);
        assert!(r.stderr.contains(want), "--param {p}: {}", r.stderr);
    }
    // Each value valid, together not: the driver would fall back to its defaults.
    let r = run(&[
        "--duration",
        "1",
        "--no-control",
        "--services",
        &svc,
        "--param",
        "MaxRetainedBytesPerConnection=1048576",
        "--param",
        "MaxRetainedBytes=65536",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("bad --param combination"), "{}", r.stderr);
    // Known names work in any case (the registry's names are case-insensitive).
    let r = run(&[
        "--duration",
        "0.3",
        "--no-control",
        "--services",
        &svc,
        "--param",
        "maxconnections=64",
    ]);
    assert!(r.status.success(), "{}", r.stderr);
}

#[test]
fn malformed_services_are_refused() {
    let port = free_port();
    for list in [
        "echo,tcp".to_string(),
        format!("echo,tcp,{port},127.0.0.1;bogus,tcp,{port},127.0.0.1"),
        "echo,tcp,0,127.0.0.1".to_string(),
    ] {
        let r = run(&["--duration", "1", "--no-control", "--services", &list]);
        assert_eq!(r.status.code(), Some(2), "--services {list}: {}", r.stderr);
        assert!(
            r.stderr.contains("bad --services"),
            "--services {list}: {}",
            r.stderr
        );
        // Refused, not replaced by the defaults as the driver's log line would say.
        assert!(!r.stderr.contains("default used"), "{}", r.stderr);
    }
    let r = run(&["--duration", "1", "--no-control", "--services", ""]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("nothing to serve"), "{}", r.stderr);
}

#[test]
fn simulated_processors_are_labelled_and_set() {
    let svc = echo_service(free_port());
    let r = run(&[
        "--duration",
        "0.3",
        "--no-control",
        "--services",
        &svc,
        "--cpus",
        "3",
    ]);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.stderr.contains("3 simulated processors"), "{}", r.stderr);
    let r = run(&["--cpus", "0", "--no-control"]);
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("bad --cpus 0"), "{}", r.stderr);
}

#[test]
fn closed_stdout_ends_quietly_with_the_verdict() {
    let svc = echo_service(free_port());
    let mut c = spawn(
        &["--duration", "0.3", "--no-control", "--services", &svc],
        Stdio::piped(),
    );
    // As `| head -n 0`: the reader is gone before anything is written.
    drop(c.stdout.take());
    let r = finish(c);
    assert_eq!(r.status.code(), Some(0), "{:?}\n{}", r.status, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stderr.contains("stdout closed; unload clean"),
        "{}",
        r.stderr
    );
}

#[test]
fn closed_stdout_and_stderr_end_quietly() {
    // As `2>&1 | head -n 1` once head is gone: the driver's log lines (echoed on stderr from
    // inside its callbacks) and the report both meet a closed pipe.
    let svc = echo_service(free_port());
    let mut c = spawn(
        &["--duration", "0.3", "--no-control", "--services", &svc],
        Stdio::piped(),
    );
    drop(c.stdout.take());
    drop(c.stderr.take());
    let r = finish(c);
    assert_eq!(r.status.code(), Some(0), "{:?}", r.status);
}
