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
set +e
cargo test --workspace --release --no-fail-fast 2>&1 | tee target/test-output.txt
cargo_rc=${PIPESTATUS[0]}
set -e

log "end to end: the README's binaries together (wskecho-sim + echoload)"
# The driver inside wsk-sim on non-default ports, driven by the echoload binary exactly as a user
# would: echo over TCP and UDP, the control ABI conformance suite, live stats; then the sim must
# report a clean unload. Every step is bounded (timeout) and talks to 127.0.0.1 only.
cargo build --release --quiet -p wskecho-sim -p loadgen
e2e_pass=0; e2e_fail=0
e2e() {  # e2e NAME CMD...
    local name=$1; shift
    if timeout 60 "$@" >"target/e2e-$name.log" 2>&1; then
        e2e_pass=$((e2e_pass + 1)); echo "e2e $name ... ok"
    else
        e2e_fail=$((e2e_fail + 1)); echo "e2e $name ... FAILED"; tail -20 "target/e2e-$name.log"
    fi
}
bin=target/release
ctl=127.0.0.1:17070
$bin/wskecho-sim --duration 25 --control $ctl \
    --services 'echo,tcp,17007,127.0.0.1;echo,udp,17007,127.0.0.1;discard,tcp,17009,127.0.0.1;sockperf,udp,17111,127.0.0.1' \
    >target/e2e-sim.log 2>&1 &
sim=$!
for _ in $(seq 50); do $bin/echoload driver --control $ctl status >/dev/null 2>&1 && break; sleep 0.2; done
e2e tcp_echo $bin/echoload run --target 127.0.0.1:17007 --proto tcp --conns 4 --duration 1s --warmup 0s
e2e udp_echo $bin/echoload run --target 127.0.0.1:17007 --proto udp --conns 2 --duration 1s --warmup 0s
e2e tcp_sink $bin/echoload run --target 127.0.0.1:17009 --proto tcp --mode sink --size 16384 --duration 1s --warmup 0s
e2e udp_sockperf $bin/echoload run --target 127.0.0.1:17111 --proto udp --wire sockperf --duration 1s --warmup 0s
e2e control_check $bin/echoload driver --control $ctl check
e2e control_stats $bin/echoload driver --control $ctl stats --watch --count 2 --json
wait $sim && grep -q 'unload clean' target/e2e-sim.log && e2e_pass=$((e2e_pass + 1)) && echo "e2e unload_clean ... ok" \
    || { e2e_fail=$((e2e_fail + 1)); echo "e2e unload_clean ... FAILED"; tail -30 target/e2e-sim.log; }

grep -E '^test result:' target/test-output.txt | awk -v ep="$e2e_pass" -v ef="$e2e_fail" -v rc="$cargo_rc" '
    { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
    END { p += ep; f += ef; if (rc != 0 && f == 0) f = 1
          printf "\ntotal: %d passed, %d failed\n", p, f; exit (f > 0) }'
