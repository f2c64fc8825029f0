#!/usr/bin/env bash
# Runs every test of wskecho on a fresh Debian machine that has only rustup/cargo.
# Installs what it needs itself (rustup target/component, Debian packages).
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n== %s ==\n' "$*"; }

log "set-up"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need_pkgs=()
for p in mingw-w64-x86-64-dev sockperf iperf3; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
rustup target list --installed | grep -qx x86_64-pc-windows-msvc || rustup target add x86_64-pc-windows-msvc
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

log "cross-check: echoload for Windows"
cargo check --quiet --target x86_64-pc-windows-msvc -p loadgen

log "build + check wskecho.sys (PE, imports)"
cargo xtask driver

log "host tests (all crates)"
# Every test binary bounds its own loops; the whole run stays well under CI's budget.
cargo test --workspace --release --no-fail-fast 2>&1 | tee target/test-output.txt
grep -E '^test result:' target/test-output.txt | awk '
    { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
    END { printf "\nall crates: %d passed, %d failed\n", p, f; exit (f > 0) }'
