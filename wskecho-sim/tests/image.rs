//! The shipped image (target/driver/wskecho.sys) under the suites that matter most for a
//! binary nobody has run: a fault campaign over many seeds with a zero-leak unload after
//! each, and the real `sockperf` client in UDP and TCP ping-pong. The image is loaded by
//! wsk-sim's PE loader; nothing of the driver crate is linked into this test.
//!
//! Without the image these tests say so and pass, unless WSKECHO_REQUIRE_IMAGE=1 (CI sets
//! it after `cargo xtask driver`). Each prints its wall time; budgets are a few minutes on
//! two cores (the campaign's seed count is WSKECHO_IMAGE_FAULT_SEEDS, default 200).

#[path = "../src/image.rs"]
mod image;
// The real-sockperf runner echoload's interop tests use (one copy for both crates).
#[path = "../../loadgen/tests/support/sockperf.rs"]
mod sockperf_cli;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use control::stats::Counter;
use sockperf_cli::{number_after, observations, run_sockperf, sockperf_on_path};
use wsk_sim::registry::{set_value, RegValue};

fn image_path() -> Option<PathBuf> {
    let p = std::env::var_os("WSKECHO_SYS").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/driver/wskecho.sys"
            ))
        },
        PathBuf::from,
    );
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("WSKECHO_REQUIRE_IMAGE").as_deref() != Ok("1"),
        "{} missing (build it with `cargo xtask driver`)",
        p.display()
    );
    eprintln!(
        "SKIPPED: no driver image at {} (build it with `cargo xtask driver`)",
        p.display()
    );
    None
}

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

fn params() -> String {
    format!("{}\\Parameters", image::REGISTRY_PATH)
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u64)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7919))
                % 253) as u8
        })
        .collect()
}

/// For many seeds: random WSK call failures, pended and reordered completions, allocation
/// failures and peer resets, during a little TCP and UDP echo traffic; then DriverUnload,
/// and the sim must report nothing leaked and no rule broken (and the image is unmapped).
#[test]
fn image_fault_campaign() {
    let Some(path) = image_path() else { return };
    let seeds: u64 = std::env::var("WSKECHO_IMAGE_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let base: u64 = std::env::var("WSKECHO_FAULT_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1a6e_0000);
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let (mut ready, mut with_traffic, mut load_ms) = (0u64, 0u64, 0f64);
    let mut bases = std::collections::BTreeSet::new();
    for seed in base..base + seeds {
        let sim = wsk_sim::Config {
            seed,
            fail_rate: 0.02,
            fail_calls: {
                use wsk_sim::faults::Call;
                vec![
                    Call::WskSend,
                    Call::WskSendTo,
                    Call::WskReceive,
                    Call::WskDisconnect,
                    Call::WskSocket,
                    Call::WskBind,
                    Call::WskControlSocket,
                ]
            },
            alloc_fail_rate: 0.002,
            reset_rate: 0.01,
            pend_rate: 0.5,
            ..wsk_sim::Config::default()
        };
        let (tport, uport) = (free_port(), free_port());
        let run = image::load_with(&path, sim, || {
            set_value(
                &params(),
                "Services",
                RegValue::MultiSz(vec![
                    format!("echo,tcp,{tport},127.0.0.1"),
                    format!("echo,udp,{uport},127.0.0.1"),
                ]),
            );
            for (n, v) in [
                ("MaxConnections", 16),
                ("UdpSendContexts", 8),
                ("DisconnectTimeoutMs", 100),
            ] {
                set_value(&params(), n, RegValue::Dword(v));
            }
        });
        let run = match run {
            Ok(r) => r,
            // DriverEntry itself may fail under injected faults; the sim checked its unwind.
            Err(image::LoadFailure::EntryFailed { findings, .. }) if findings.is_empty() => {
                continue
            }
            Err(e) => {
                failures.push((seed, vec![e.to_string()]));
                continue;
            }
        };
        ready += u64::from(run.ready);
        load_ms += run.report.elapsed.as_secs_f64() * 1e3;
        bases.insert(run.image_base());
        let tcp = SocketAddr::from(([127, 0, 0, 1], tport));
        let udp = SocketAddr::from(([127, 0, 0, 1], uport));
        let mut clients = Vec::new();
        for i in 0..3u64 {
            clients.push(std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect_timeout(&tcp, Duration::from_millis(500)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = s.set_write_timeout(Some(Duration::from_millis(300)));
                let data = payload(seed ^ i, 3000);
                let mut echoed = false;
                for _ in 0..3 {
                    if s.write_all(&data).is_err() {
                        break;
                    }
                    let mut got = vec![0u8; data.len()];
                    if s.read_exact(&mut got).is_err() {
                        break;
                    }
                    // Faults may cut the echo short, never corrupt it.
                    assert_eq!(got, data, "corrupted echo with seed {seed:#x}");
                    echoed = true;
                }
                echoed
            }));
        }
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let sent: Vec<Vec<u8>> = (0..5u64).map(|i| payload(seed ^ (i << 8), 200)).collect();
        let mut udp_echoed = false;
        for d in &sent {
            let _ = u.send_to(d, udp);
            let mut b = [0u8; 512];
            if let Ok((n, _)) = u.recv_from(&mut b) {
                assert!(
                    sent.iter().any(|s| s[..] == b[..n]),
                    "UDP reply matches no datagram sent, seed {seed:#x}"
                );
                udp_echoed = true;
            }
        }
        let mut tcp_echoed = false;
        for c in clients {
            tcp_echoed |= c.join().expect("client thread");
        }
        with_traffic += u64::from(tcp_echoed || udp_echoed);
        let f = run.unload();
        if !f.is_empty() {
            failures.push((seed, f));
        }
    }
    let took = t0.elapsed();
    eprintln!(
        "image fault campaign: {seeds} seeds in {:.1} s ({:.0} ms/seed), {ready} started, \
         {with_traffic} echoed traffic, {} distinct load addresses, mean image load {:.2} ms",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / seeds as f64,
        bases.len(),
        load_ms / ready.max(1) as f64
    );
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        ready * 2 >= seeds && with_traffic * 2 >= seeds,
        "campaign too weak: {ready} ready, {with_traffic} with traffic"
    );
}

/// The real sockperf client, ping-pong over UDP then TCP, against the image's sockperf
/// services; the image's own counters (read through its IOCTL) must show the traffic, and
/// the unload must be clean.
#[test]
fn image_real_sockperf_ping_pong_udp_and_tcp() {
    let Some(path) = image_path() else { return };
    if !sockperf_on_path() {
        return;
    }
    let t0 = Instant::now();
    let port = free_port();
    let run = image::load_with(&path, wsk_sim::Config::default(), || {
        set_value(
            &params(),
            "Services",
            RegValue::MultiSz(vec![
                format!("sockperf,udp,{port},127.0.0.1"),
                format!("sockperf,tcp,{port},127.0.0.1"),
            ]),
        );
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.ready, "start-up did not open the services");
    let p = port.to_string();
    let mut lines = Vec::new();
    for tcp in [false, true] {
        let mut args = vec![
            "ping-pong",
            "-i",
            "127.0.0.1",
            "-p",
            &p,
            "-t",
            "2",
            "-m",
            "64",
        ];
        if tcp {
            args.push("--tcp");
        }
        let text = run_sockperf(&args);
        for bad in ["ERROR", "No messages were received", "Invalid", "error:"] {
            assert!(!text.contains(bad), "sockperf reported `{bad}`:\n{text}");
        }
        let lat = number_after(&text, "Summary: Latency is")
            .unwrap_or_else(|| panic!("no latency in:\n{text}"));
        let obs = observations(&text);
        assert!(lat > 0.0 && lat < 10_000.0, "latency {lat} us");
        assert!(obs >= 100.0, "only {obs} observations:\n{text}");
        lines.push(format!(
            "{}: {obs} round trips, mean latency {lat} us",
            if tcp { "TCP" } else { "UDP" }
        ));
    }
    let c = run.counters().expect("stats through the image's IOCTL");
    assert!(
        c.get(Counter::DatagramsIn) >= 100 && c.get(Counter::DatagramsOut) >= 100,
        "UDP ping-pong not counted by the image: {c:?}"
    );
    assert!(
        c.get(Counter::ConnAccepted) >= 1
            && c.get(Counter::BytesOut) > c.get(Counter::DatagramsOut),
        "TCP ping-pong not counted by the image: {c:?}"
    );
    let (findings, stack) = run.unload_with_stack();
    assert!(findings.is_empty(), "{findings:#?}");
    let (entries, unmeasured) = stack.expect("the runner loads with the stack probe");
    image::print_stack(&entries, unmeasured);
    assert_eq!(unmeasured, 0, "stack samples the unwinder could not walk");
    eprintln!(
        "image sockperf ping-pong in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        lines.join("; ")
    );
}
