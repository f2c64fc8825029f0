#!/usr/bin/env bash
# Runs every test of wskecho on a fresh Debian machine that has only rustup/cargo.
# Installs what it needs itself (rustup targets/components, Debian and PyPI packages).
# Each stage prints its time; every stage is bounded (timeout) so the whole run stays well under
# CI's budget on 2 cores. The last line is the total: "total: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target

T0=$(date +%s)
stage_start=$T0
stage_name=""
stage_times=()
# stage NAME: closes the previous stage (printing its time) and opens the next.
stage() {
    local now; now=$(date +%s)
    if [ -n "$stage_name" ]; then
        stage_times+=("$(printf '%5ds  %s' $((now - stage_start)) "$stage_name")")
        printf '== %s: %ds ==\n' "$stage_name" $((now - stage_start))
    fi
    stage_name=$1; stage_start=$now
    [ -n "$1" ] && printf '\n== %s ==\n' "$1"
    return 0
}

# Script stages count their steps here; cargo's own "test result:" lines are added at the end.
steps_pass=0; steps_fail=0
# step NAME BUDGET_SECONDS CMD...: one checked step, its output in target/step-NAME.log.
step() {
    local name=$1 budget=$2; shift 2
    local t=$(date +%s)
    if timeout "$budget" "$@" >"target/step-$name.log" 2>&1; then
        steps_pass=$((steps_pass + 1)); echo "step $name ... ok ($(( $(date +%s) - t ))s)"
    else
        steps_fail=$((steps_fail + 1)); echo "step $name ... FAILED ($(( $(date +%s) - t ))s)"
        tail -30 "target/step-$name.log"
    fi
}

stage "set-up"
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
for c in rustfmt clippy; do
    rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done

stage "format and lints"
step fmt 120 cargo fmt --all --check

stage "cross-check: echoload for Windows"
cargo check --quiet --target x86_64-pc-windows-msvc -p loadgen

stage "build + check wskecho.sys (PE, imports)"
cargo xtask driver

stage "host tests (all crates)"
# Every test binary bounds its own loops; the whole run stays well under CI's budget.
set +e
cargo test --workspace --release --no-fail-fast 2>&1 | tee target/test-output.txt
cargo_rc=${PIPESTATUS[0]}
set -e

stage "end to end: the README's binaries together (wskecho-sim + echoload)"
# The driver inside wsk-sim on non-default ports, driven by the echoload binary exactly as a user
# would: echo over TCP and UDP, the control ABI conformance suite, live stats; then the sim must
# report a clean unload. Every step is bounded (timeout) and talks to 127.0.0.1 only.
cargo build --release --quiet -p wskecho-sim -p loadgen
bin=target/release
ctl=127.0.0.1:17070
$bin/wskecho-sim --duration 25 --control $ctl \
    --services 'echo,tcp,17007,127.0.0.1;echo,udp,17007,127.0.0.1;discard,tcp,17009,127.0.0.1;sockperf,udp,17111,127.0.0.1' \
    >target/e2e-sim.log 2>&1 &
sim=$!
for _ in $(seq 50); do $bin/echoload driver --control $ctl status >/dev/null 2>&1 && break; sleep 0.2; done
step e2e-tcp_echo 60 $bin/echoload run --target 127.0.0.1:17007 --proto tcp --conns 4 --duration 1s --warmup 0s
step e2e-udp_echo 60 $bin/echoload run --target 127.0.0.1:17007 --proto udp --conns 2 --duration 1s --warmup 0s
step e2e-tcp_sink 60 $bin/echoload run --target 127.0.0.1:17009 --proto tcp --mode sink --size 16384 --duration 1s --warmup 0s
step e2e-udp_sockperf 60 $bin/echoload run --target 127.0.0.1:17111 --proto udp --wire sockperf --duration 1s --warmup 0s
step e2e-control_check 60 $bin/echoload driver --control $ctl check
step e2e-control_stats 60 $bin/echoload driver --control $ctl stats --watch --count 2 --json
wait $sim || true   # the sim stops by itself (--duration)
step e2e-unload_clean 10 grep -q 'unload clean' target/e2e-sim.log \
    || tail -30 target/e2e-sim.log

stage ""
echo
echo "stage times:"
printf '%s\n' "${stage_times[@]}"
printf '%5ds  all\n' $(( $(date +%s) - T0 ))

grep -E '^test result:' target/test-output.txt | awk -v ep="$steps_pass" -v ef="$steps_fail" -v rc="$cargo_rc" '
    { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
    END { p += ep; f += ef; if (rc != 0 && f == 0) f = 1
          printf "\ntotal: %d passed, %d failed\n", p, f; exit (f > 0) }'
