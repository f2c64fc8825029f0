#!/usr/bin/env bash
# End to end: the README's binaries together. Runs the given simulator command (the
# built-in driver, `target/release/wskecho-sim`, or the shipped image,
# `target/release/wskecho-sim --sys target/driver/wskecho.sys`) on non-default ports and
# runs `echoload driver selftest` against its control socket: the one step list a user runs
# on Windows (echo over TCP and UDP, half-close, sink, sockperf wire, the driver's own
# counters, control conformance, live stats; see loadgen/src/driverctl/selftest.rs). Then the
# sim must report a clean unload. Every step is bounded and talks to 127.0.0.1 only.
#
#   usage: [E2E_LABEL=NAME] [E2E_PORT_BASE=N] [ECHOLOAD=PATH] scripts/e2e.sh SIM_CMD [ARGS...]
#
# Ports are E2E_PORT_BASE (default 17000) + 7 (echo), + 9 (discard), + 111 (sockperf),
# + 70 (control). Prints one "e2e STEP ... ok|FAILED" line per step (the self-test's lines,
# renamed; a step the self-test reports "unavailable" is FAILED here: in CI every service
# must open) and a summary line; exits non-zero if a step failed. Logs go to
# target/e2e-$E2E_LABEL-*.log. Build first:
#   cargo build --release -p wskecho-sim -p loadgen   (and `cargo xtask driver` for --sys)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
label=${E2E_LABEL:-e2e}
echoload=${ECHOLOAD:-target/release/echoload}
logs=target/e2e-$label
mkdir -p target
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
# Each load run lasts 1 s; the whole self-test about 5 s. The bound is for a hung driver.
timeout 120 "$echoload" driver --control "$ctl" selftest >"$logs-selftest.log" 2>&1
rc=$?
sed -n -E 's/^selftest ([a-z_]+) \.\.\. (ok|FAILED)$/e2e \1 ... \2/p; s/^selftest ([a-z_]+) \.\.\. unavailable$/e2e \1 ... FAILED/p' \
    "$logs-selftest.log"
pass=$(grep -c -E '^selftest [a-z_]+ \.\.\. ok$' "$logs-selftest.log")
fail=$(grep -c -E '^selftest [a-z_]+ \.\.\. (FAILED|unavailable)$' "$logs-selftest.log")
if [ "$rc" -ne 0 ] || [ "$fail" -ne 0 ] || [ "$pass" -eq 0 ]; then
    echo "e2e: echoload driver selftest exited $rc:"
    cat "$logs-selftest.log"
    # A self-test that died before its steps (exit 2: nothing answered) still fails here.
    [ "$fail" -eq 0 ] && { fail=1; echo "e2e selftest ... FAILED"; }
fi
# SIGTERM ends the sim with its counters and the leak verdict (--duration is the backstop).
kill -TERM $sim 2>/dev/null
if wait $sim && grep -q 'unload clean' "$logs-sim.log"; then
    pass=$((pass + 1)); echo "e2e unload_clean ... ok"
else
    fail=$((fail + 1)); echo "e2e unload_clean ... FAILED"; tail -30 "$logs-sim.log"
fi
ms=$((($(date +%s%N) - t0) / 1000000))
printf 'e2e (%s: %s): %d passed, %d failed in %d.%01d s\n' "$label" "$*" "$pass" "$fail" \
    $((ms / 1000)) $((ms % 1000 / 100))
[ "$fail" -eq 0 ]
