//! The client's own threads stay asleep while a run measures (issue 20: UDP ping-pong p50 vs
//! sockperf, whose client is one thread that nothing wakes): the thread that started the run
//! only joins the workers, and a stop request (Ctrl-C) is seen by the workers' own end checks.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{addr, quick, server_on};
use control::protocol::Mode as ServiceMode;
use echoload::client::{measure, Mode, Proto};

/// Voluntary context switches of the calling thread so far (each sleep is one).
#[cfg(target_os = "linux")]
fn my_sleeps() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_THREAD is valid on Linux.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &raw mut ru), 0);
        ru.ru_nvcsw
    }
}

/// With a stop flag (the CLI always gives one, for Ctrl-C) and nothing to observe, the
/// starting thread used to wake every 20 ms to look at the flag: ~30 sleeps in this 0.6 s
/// run, each a wake-up on one of the cores the round trips run on. Now it sleeps in the
/// start barriers and the join only.
#[cfg(target_os = "linux")]
#[test]
fn starting_thread_sleeps_through_the_run() {
    static NEVER: AtomicBool = AtomicBool::new(false);
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Udp);
    let mut cfg = quick(t, Proto::Udp, Mode::Pingpong);
    cfg.duration = Duration::from_millis(600);
    cfg.stop = Some(&NEVER);
    let before = my_sleeps();
    let m = measure(&cfg, None).unwrap();
    let sleeps = my_sleeps() - before;
    assert!(m.stats.recv_msgs > 0, "no replies: {:?}", m.stats.messages);
    // Two barriers and one join (3-5 seen), plus room for contended locks.
    assert!(
        sleeps <= 10,
        "the starting thread slept {sleeps} times during the run"
    );
}

/// The stop flag still ends a run early without an observer: a blocking UDP ping-pong (the
/// single-flow path) stops soon after the flag turns true and reports what it measured.
#[test]
fn stop_flag_ends_a_blocking_pingpong_without_an_observer() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Udp);
    let mut cfg = quick(t, Proto::Udp, Mode::Pingpong);
    cfg.duration = Duration::from_secs(30);
    cfg.stop = Some(&STOP);
    let setter = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(400));
        STOP.store(true, Ordering::SeqCst);
    });
    let began = Instant::now();
    let m = measure(&cfg, None).unwrap();
    setter.join().unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "the stop was not seen: ran {:?}",
        began.elapsed()
    );
    assert!(m.duration_s < 15.0, "measured {} s", m.duration_s);
    assert!(m.stats.recv_msgs > 0, "no replies: {:?}", m.stats.messages);
    assert_eq!(m.stats.errors.lost, 0, "{:?}", m.stats.messages);
}

/// Ctrl-C on the CLI's UDP ping-pong: the signal handler (SA_RESTART) only sets the flag, the
/// blocked receive resumes, and the next round's end check ends the run: exit 130 with the
/// report and the JSON of the measured part.
#[cfg(unix)]
#[test]
fn sigint_stops_a_udp_pingpong_and_reports() {
    use std::process::{Command, Stdio};
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Udp).to_string();
    let json = std::env::temp_dir().join(format!("echoload-quiet-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let child = Command::new(common::bin())
        .args([
            "run",
            "--target",
            &t,
            "--proto",
            "udp",
            "--mode",
            "pingpong",
            "--duration",
            "20s",
            "--warmup",
            "0.2s",
            "-q",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: kill() on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let d = v["duration_s"].as_f64().unwrap();
    assert!(d < 15.0, "measured {d} s of 20");
    assert!(v["recv_msgs"].as_u64().unwrap() > 0, "{v}");
    let _ = std::fs::remove_file(&json);
}
