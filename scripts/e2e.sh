#!/usr/bin/env bash
# End to end: the README's binaries together. Runs the given simulator command (the
# built-in driver, `target/release/wskecho-sim`, or the shipped image,
# `target/release/wskecho-sim --sys target/driver/wskecho.sys`) on non-default ports and
# drives it with the echoload binary exactly as a user would: echo over TCP and UDP, a TCP
# sink, the sockperf wire, the control ABI conformance suite, live stats; then the sim must
# report a clean unload. Every step is bounded (timeout) and talks to 127.0.0.1 only.
#
#   usage: [E2E_LABEL=NAME] [E2E_PORT_BASE=N] [ECHOLOAD=PATH] scripts/e2e.sh SIM_CMD [ARGS...]
#
# Ports are E2E_PORT_BASE (default 17000) + 7 (echo), + 9 (discard), + 111 (sockperf),
# + 70 (control). Two steps make sure the traffic reached the driver under test and not
# some other server on those ports: services_opened (no service failed to open) and
# driver_counted_traffic (the driver's own counters show the connections and datagrams).
# Prints one "e2e STEP ... ok|FAILED" line per step and a summary line; exits non-zero if a
# step failed. Logs go to target/e2e-$E2E_LABEL-*.log. Build first:
#   cargo build --release -p wskecho-sim -p loadgen   (and `cargo xtask driver` for --sys)
set -uo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
label=${E2E_LABEL:-e2e}
echoload=${ECHOLOAD:-target/release/echoload}
logs=target/e2e-$label
mkdir -p target
pass=0; fail=0
step() {  # step NAME CMD...
    local name=$1; shift
    if timeout 60 "$@" >"$logs-$name.log" 2>&1; then
        pass=$((pass + 1)); echo "e2e $name ... ok"
    else
        fail=$((fail + 1)); echo "e2e $name ... FAILED"; tail -20 "$logs-$name.log"
    fi
}
base=${E2E_PORT_BASE:-17000}
echo_port=$((base + 7)); discard_port=$((base + 9)); sockperf_port=$((base + 111))
ctl=127.0.0.1:$((base + 70))
t0=$(date +%s%N)
"$@" --duration 25 --control "$ctl" \
    --services "echo,tcp,$echo_port,127.0.0.1;echo,udp,$echo_port,127.0.0.1;discard,tcp,$discard_port,127.0.0.1;sockperf,udp,$sockperf_port,127.0.0.1" \
    >"$logs-sim.log" 2>&1 &
sim=$!
# The runner opens the control address only once the driver's start-up thread has opened
# the services.
for _ in $(seq 50); do
    "$echoload" driver --control "$ctl" status >/dev/null 2>&1 && break
    sleep 0.2
done
# shellcheck disable=SC2016
step services_opened bash -c '! grep "socket failed" "$1"' _ "$logs-sim.log"
step tcp_echo "$echoload" run --target 127.0.0.1:$echo_port --proto tcp --conns 4 --duration 1s --warmup 0s
step udp_echo "$echoload" run --target 127.0.0.1:$echo_port --proto udp --conns 2 --duration 1s --warmup 0s
step tcp_sink "$echoload" run --target 127.0.0.1:$discard_port --proto tcp --mode sink --size 16384 --duration 1s --warmup 0s
step udp_sockperf "$echoload" run --target 127.0.0.1:$sockperf_port --proto udp --wire sockperf --duration 1s --warmup 0s
# 4 echo connections + 1 sink accepted, datagrams from the UDP steps, all counted by the driver.
# shellcheck disable=SC2016
step driver_counted_traffic bash -c '
    j=$("$1" driver --control "$2" --json stats) || exit 1
    echo "$j"
    n() { grep -o "\"$1\":[0-9]*" <<<"$j" | head -1 | cut -d: -f2; }
    [ "$(n conn_accepted)" -ge 5 ] && [ "$(n datagrams_in)" -ge 1 ] && [ "$(n bytes_out)" -ge 1 ]' \
    _ "$echoload" "$ctl"
step control_check "$echoload" driver --control "$ctl" check
step control_stats "$echoload" driver --control "$ctl" stats --watch --count 2 --json
if wait $sim && grep -q 'unload clean' "$logs-sim.log"; then
    pass=$((pass + 1)); echo "e2e unload_clean ... ok"
else
    fail=$((fail + 1)); echo "e2e unload_clean ... FAILED"; tail -30 "$logs-sim.log"
fi
ms=$((($(date +%s%N) - t0) / 1000000))
printf 'e2e (%s: %s): %d passed, %d failed in %d.%01d s\n' "$label" "$*" "$pass" "$fail" \
    $((ms / 1000)) $((ms % 1000 / 100))
[ "$fail" -eq 0 ]
