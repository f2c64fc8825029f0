//! A service whose own block cannot be allocated fails to start and leaves nothing behind:
//! the IRP each socket context owns is allocated only once its block exists (it used to be
//! built into the value handed to the block allocation, and dropped unfreed when that failed:
//! the image fault campaign's seed 443416683 leaked it).

mod common;

use std::net::SocketAddr;

use common::harness::{config_with, load_with};
use common::*;
use control::config::{Mode, Proto};

/// Pool tags of the driver's listener and UDP socket blocks (driver/src/kernel/pool.rs).
const TAG_LISTEN: u32 = u32::from_le_bytes(*b"WEls");
const TAG_UDP: u32 = u32::from_le_bytes(*b"WEud");

#[test]
fn a_service_block_that_cannot_be_allocated_leaks_nothing() {
    for (tag, proto) in [(TAG_LISTEN, Proto::Tcp), (TAG_UDP, Proto::Udp)] {
        let (cfg, ports) = config_with(V4, &[(proto, Mode::Echo), (Proto::Tcp, Mode::Discard)]);
        let drv = load_with(wsk_sim::Config::default(), Some(cfg), || {
            wsk_sim::faults::fail_next_alloc_tagged(tag, 1);
        })
        .unwrap();
        assert!(drv.ready, "the other service starts");
        // The other service works.
        let mut d = connect(SocketAddr::new(V4, ports[1]));
        std::io::Write::write_all(&mut d, b"discarded").unwrap();
        drop(d);
        let log = wsk_sim::take_dbg_output();
        assert!(
            log.contains(&format!("{}", ports[0])),
            "the failed {proto:?} service is logged: {log}"
        );
        assert_clean(&drv.unload());
    }
}
