#!/usr/bin/env bash
# Runs wsk-sim's tests under AddressSanitizer (nightly toolchain, -Zsanitizer=address).
# Catches use-after-free of IRPs, MDLs, pool blocks and indication memory in the sim and in
# the test client. Not part of test.sh: it rebuilds everything instrumented (a few minutes).
# Usage: wsk-sim/asan.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/asan}"
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=address"
# Leak detection off: the sim deliberately keeps quarantined/leaked objects (thread
# objects, closed WSK_SOCKETs) for the life of the process; its own accounting reports
# real leaks.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
cargo +nightly test --target x86_64-unknown-linux-gnu -p wsk-sim --tests "$@"
