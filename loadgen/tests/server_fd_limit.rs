//! `echoload serve` out of file descriptors (a connection flood beyond `ulimit -n`): extra
//! connections are reset at once, the server neither hangs them in the backlog nor spins, and
//! it serves again once descriptors are free. Runs the real binary under a low `ulimit -n`.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Outcome {
    Served(TcpStream),
    Refused,
}

fn try_echo(addr: SocketAddr) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Outcome::Refused,
        Err(e) => panic!("connect: {e}"),
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"x");
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Outcome::Served(s),
        Ok(_) => Outcome::Refused,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Outcome::Refused,
        Err(e) => panic!("connection neither served nor refused: {e}"),
    }
}

#[test]
fn out_of_descriptors_resets_then_recovers() {
    let bin = env!("CARGO_BIN_EXE_echoload");
    let script = format!(
        "ulimit -n 40 && exec '{bin}' serve --bind 127.0.0.1 --echo-port 0 --discard-port 0 \
         --source-port 0 --sockperf-port 0 --threads 1 --max-conns 1000"
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh starts");
    let mut guard = Kill(child);
    let out = guard.0.stdout.take().unwrap();
    let mut addr = None;
    for line in BufReader::new(out).lines().take(20) {
        let line = line.unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() == 3 && w[0] == "echo" && w[1] == "tcp" {
            addr = Some(w[2].parse::<SocketAddr>().unwrap());
            break;
        }
    }
    let addr = addr.expect("serve printed its echo address");
    let start = Instant::now();
    let (mut served, mut refused) = (Vec::new(), 0);
    for _ in 0..60 {
        match try_echo(addr) {
            Outcome::Served(s) => served.push(s),
            Outcome::Refused => refused += 1,
        }
    }
    assert!(served.len() >= 10, "only {} served", served.len());
    assert!(
        refused >= 20,
        "only {refused} refused of 60 with ulimit -n 40"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // Descriptors come back when clients leave.
    served.clear();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match try_echo(addr) {
            Outcome::Served(_) => break,
            Outcome::Refused if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Outcome::Refused => panic!("server did not recover after clients closed"),
        }
    }
}
