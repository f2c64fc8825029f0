//! echoload: TCP/UDP load generator (client engines, reports) and the reference echo server.

pub mod align;
pub mod cli;
pub mod client;
pub mod demo;
pub mod driverctl;
pub mod payload;
pub mod report;
pub mod resultdoc;
pub mod schedule;
pub mod server;
pub mod sockperf;
