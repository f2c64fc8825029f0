//! echoload: TCP/UDP load generator and the reference echo server.
//!
//! Rooms from the top floor down; each imports only from rooms below it (tests/layout.rs
//! checks that no import circle forms):
//!
//! - [`demo`]: the embedded default run (server and client on loopback).
//! - [`driverctl`]: `echoload driver`, the wskecho control-device client (and its metrics).
//! - [`cli`]: every command-line definition (`run`, `serve`, `merge`, `driver`, `demo`).
//! - [`session`]: one `echoload run`, from configuration to report, with its live watchers
//!   (progress line, interval lines, the `--metrics` endpoint).
//! - [`server`]: `echoload serve`, the user-mode reference server (echo, discard, source,
//!   sockperf), with its metrics.
//! - [`results`]: the result document (JSON, table) built from a measurement, reading result
//!   documents back, merging a distributed run, diffing two results, plotting them.
//! - [`client`]: the load engines (TCP, UDP); a run returns a [`client::Measurement`]; a
//!   distributed run's common start and each agent's share of the load.
//! - [`metrics`]: the Prometheus text format and the `/metrics` HTTP endpoint.
//! - [`payload`]: echoload's message format on the wire (sockperf's header, the service
//!   modes and the source pattern are in `control::protocol`, shared with the driver).
//! - [`output`]: stdout that tolerates a closed pipe.
//! - [`signals`]: SIGINT/SIGTERM as a stop request.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod client;
pub mod demo;
pub mod driverctl;
pub mod metrics;
pub mod output;
pub mod payload;
pub mod results;
pub mod server;
pub mod session;
pub mod signals;

pub use session::{run, run_with, try_run};
