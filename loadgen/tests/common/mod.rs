//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use control::protocol::Mode as ServiceMode;
use echoload::client::{Mode, Proto, RunConfig};
use echoload::server::{self, ServeConfig, ServerHandle};

pub fn server_on(ip: &str) -> ServerHandle {
    let mut cfg = ServeConfig::loopback_ephemeral();
    cfg.bind = ip.parse::<IpAddr>().unwrap();
    server::spawn(cfg).expect("reference server starts")
}

pub fn addr(h: &ServerHandle, svc: ServiceMode, proto: Proto) -> SocketAddr {
    let p = if proto == Proto::Tcp {
        server::Proto::Tcp
    } else {
        server::Proto::Udp
    };
    h.addr(svc, p)
        .unwrap_or_else(|| panic!("server offers {svc:?} {proto:?}"))
}

/// A short run: 0.3 s measured, 0.05 s warm-up.
pub fn quick(target: SocketAddr, proto: Proto, mode: Mode) -> RunConfig {
    RunConfig {
        target,
        proto,
        mode,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        rate: (mode == Mode::Rate).then_some(20_000.0),
        ..RunConfig::default()
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_echoload")
}
