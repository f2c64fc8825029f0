#!/usr/bin/env bash
# Runs wsk-sim's tests under AddressSanitizer (nightly toolchain, -Zsanitizer=address; the
# prebuilt std is used as is, so no rust-src/-Zbuild-std is needed). Catches use-after-free
# and overflows of IRPs, MDLs, pool blocks and indication memory in the sim and in the test
# client. About a minute from a clean target/asan on 2 cores.
# Tests run one at a time (RUST_TEST_THREADS=1): they share the sim's process-global state
# and take turns on its lock anyway, and one thread keeps the interleavings ASan sees close
# to those of a plain run.
# Usage: wsk-sim/asan.sh [extra cargo test args, e.g. -p wskecho to add the driver's suites]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/asan}"
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=address"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
# Leak detection off: the sim deliberately keeps quarantined/leaked objects (thread
# objects, closed WSK_SOCKETs) for the life of the process; its own accounting reports
# real leaks.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
cargo +nightly test --target x86_64-unknown-linux-gnu -p wsk-sim --tests "$@"
