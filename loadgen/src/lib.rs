//! echoload: TCP/UDP load generator and the reference echo server.
//!
//! - [`cli`]: every command-line definition (`run`, `serve`, `merge`, `driver`, `demo`).
//! - [`client`]: the load engines (TCP, UDP); a run returns a [`client::Measurement`].
//! - [`report`]: the result document (JSON, table) built from a measurement; merging runs.
//! - [`output`]: stdout that tolerates a closed pipe.
//! - [`progress`]: the live progress line while a run goes on.
//! - [`runner`]: configuration → measurement → report, as `echoload run` does it.
//! - [`diff`]: two results side by side, with a verdict for CI.
//! - [`server`]: `echoload serve`, the user-mode reference server (echo, discard, source,
//!   sockperf).
//! - [`driverctl`]: `echoload driver`, the wskecho control-device client.
//! - [`payload`]: echoload's message format on the wire (sockperf's header, the service
//!   modes and the source pattern are in `control::protocol`, shared with the driver).
//! - [`signals`]: SIGINT/SIGTERM as a stop request.
//! - [`demo`]: the embedded default run (server and client on loopback).
//! - [`resultdoc`], [`align`]: reading result documents and merging a distributed run.
//! - [`schedule`]: a distributed run's common start and each agent's share of the load.
//! - [`plot`]: pictures of results (SVG/HTML); [`metrics`]: Prometheus endpoints.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod align;
pub mod cli;
pub mod client;
pub mod demo;
pub mod diff;
pub mod driverctl;
pub mod metrics;
pub mod output;
pub mod payload;
pub mod plot;
pub mod progress;
pub mod receiver;
pub mod report;
pub mod resultdoc;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod signals;

pub use runner::{run, run_with, try_run};
