#!/usr/bin/env bash
# Many machines, simulated with network namespaces (root needed): a server namespace and three
# agent namespaces joined by a bridge that lives in a namespace of its own, addresses from the
# benchmarking range 198.18.0.0/15 and no default route, so no packet leaves these namespaces.
#
# Two phases, each: three `echoload run` agents with one --start-at and the load split by
# --agent-index/--agent-count, their JSON merged with `echoload merge -`, then checked:
#   - merged sent/received messages and bytes = the sums of the agents' documents
#   - the server's own counters, scraped from its Prometheus endpoint before the start and
#     after the end, agree with the merged totals within 1%
#   - the merged intervals add up to the totals; every agent's intervals add up to its totals
#   - the agents' windows overlap (skew below one interval)
# Phase 1 serves with `echoload serve --metrics`, phase 2 with wskecho-sim (the driver in the
# simulator) and `echoload driver exporter`. Between them, the UDP guard made visible (issue
# 21): an agent sending 3,000 datagrams/s to the server's UDP echo (its default limit is 1,000
# per non-loopback source) is told the server may be limiting per source, and the server says
# once that it limits that agent's address.
#
#   scripts/netns-test.sh [BIN_DIR]     (default target/release; needs echoload, wskecho-sim,
#                                        iproute2, python3 with prometheus_client)
# Every step is bounded by timeout; namespaces, links and processes go away on exit (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${1:-target/release}" && pwd)
[ "$(id -u)" = 0 ] || { echo "netns-test: needs root (network namespaces)"; exit 1; }
for b in echoload wskecho-sim; do [ -x "$bin/$b" ] || { echo "netns-test: $bin/$b missing"; exit 1; }; done

tag=wke$$
br=$tag-br srv=$tag-srv agents=($tag-a0 $tag-a1 $tag-a2)
srv_ip=198.18.0.1
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "$srv" "${agents[@]}" "$br"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
t0=$(date +%s.%N)
stage() {  # prints the time the previous stage took
    local t; t=$(date +%s.%N)
    awk -v a="$t" -v b="$t0" -v s="$*" 'BEGIN { printf "== %s (previous stage: %.1f s)\n", s, a - b }'
    t0=$t
}

stage "namespaces"
ip netns add "$br"
ip -n "$br" link add br0 type bridge
ip -n "$br" link set br0 up
ip -n "$br" link set lo up
i=0
for ns in "$srv" "${agents[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # veth pair created inside the bridge namespace, one end moved into the host namespace
    ip -n "$br" link add "p$i" type veth peer name eth0
    ip -n "$br" link set eth0 netns "$ns"
    ip -n "$br" link set "p$i" master br0
    ip -n "$br" link set "p$i" up
    if [ "$ns" = "$srv" ]; then addr=$srv_ip; else addr=198.18.0.$((10 + i)); fi
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    i=$((i + 1))
done
for ns in "${agents[@]}"; do
    if ip -n "$ns" route | grep -q default; then bad "$ns has a default route"; exit 1; fi
done
ok "server + 3 agent namespaces on a bridge, 198.18.0.0/24, no default route"

scrape() {  # scrape PORT OUT.json: the unlabelled samples of http://srv_ip:PORT/metrics, parsed
    # (from an agent namespace: the scrape crosses the bridge like the load does)
    timeout 10 ip netns exec "${agents[0]}" python3 - "$srv_ip" "$1" > "$2" <<'PY'
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/metrics", timeout=5).read().decode()
out = {}
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        if not s.labels:
            out[s.name] = s.value
print(json.dumps(out))
PY
}
wait_port() {  # wait_port PORT: until the server namespace answers /metrics there
    for _ in $(seq 50); do scrape "$1" /dev/null 2>/dev/null && return 0; sleep 0.2; done
    return 1
}

phase() {  # phase NAME PORT METRICS_PORT RX_METRIC TX_METRIC
    local name=$1 port=$2 mport=$3 rx=$4 tx=$5
    local dir=$tmp/$name
    mkdir -p "$dir"
    scrape "$mport" "$dir/before.json" || { bad "$name: no metrics before the run"; return; }
    local start_at
    start_at=$(date -u -d "@$(( $(date +%s) + 3 ))" +%Y-%m-%dT%H:%M:%SZ)
    local a=0 apids=()
    for ns in "${agents[@]}"; do
        timeout 60 ip netns exec "$ns" "$bin/echoload" run --target "$srv_ip:$port" --conns 6 --threads 1 --duration 3s \
            --warmup 0s --interval 1s --label "netns-$name" --start-at "$start_at" --agent-index $a --agent-count 3 \
            --json-stdout -q > "$dir/agent$a.out" 2> "$dir/agent$a.err" &
        apids+=($!)
        a=$((a + 1))
    done
    local rc=0
    for p in "${apids[@]}"; do wait "$p" || rc=1; done
    [ $rc = 0 ] && ok "$name: 3 agents ran (one --start-at $start_at)" \
        || { bad "$name: an agent failed"; for e in "$dir"/agent*.err; do tail -n 5 "$e"; done; }
    sleep 0.5  # server workers publish their counters once per event batch
    scrape "$mport" "$dir/after.json" || bad "$name: no metrics after the run"
    # as kubectl logs would deliver them: interleaved documents with noise between
    { for f in "$dir"/agent*.out; do echo "log: agent output follows"; cat "$f"; done; } \
        | "$bin/echoload" merge - --json "$dir/merged.json" > "$dir/merge.txt" 2>&1 \
        || { bad "$name: merge failed"; cat "$dir/merge.txt"; return; }
    grep -q '^warning' "$dir/merge.txt" && { bad "$name: merge warned"; grep '^warning' "$dir/merge.txt"; }
    python3 - "$dir" "$rx" "$tx" <<'PY' || fail=1
import glob, json, sys
d, rx, tx = sys.argv[1], sys.argv[2], sys.argv[3]
agents = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/agent*.out"))]
m = json.load(open(f"{d}/merged.json"))
before, after = json.load(open(f"{d}/before.json")), json.load(open(f"{d}/after.json"))
bad = []
def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        bad.append(what)
name = d.rsplit("/", 1)[1]
for k in ("sent_msgs", "recv_msgs", "sent_bytes", "recv_bytes"):
    check(m[k] == sum(a[k] for a in agents), f"{name}: merged {k} {m[k]} = sum of agents")
check(sorted(a["conns"] for a in agents) == [2, 2, 2], f"{name}: --conns 6 split 2/2/2")
check(m["recv_msgs"] > 1000, f"{name}: traffic flowed ({m['recv_msgs']} echoes)")
srx, stx = after[rx] - before[rx], after[tx] - before[tx]
for what, server, merged in (("received", srx, m["sent_bytes"]), ("sent", stx, m["recv_bytes"])):
    dev = abs(server - merged) / max(merged, 1)
    check(dev <= 0.01, f"{name}: server {what} bytes {server:.0f} vs merged {merged} ({100 * dev:.3f}% apart)")
iv = m.get("intervals") or []
check(len(iv) >= 3, f"{name}: merged document has {len(iv)} intervals")
for k in ("sent_msgs", "recv_msgs", "sent_bytes", "recv_bytes"):
    check(sum(i[k] for i in iv) == m[k], f"{name}: merged intervals add up to {k}")
    check(all(sum(i[k] for i in a.get("intervals") or []) == a[k] for a in agents),
          f"{name}: every agent's intervals add up to its {k}")
info = m.get("merge", {})
skew, overlap = info.get("window_skew_s"), info.get("overlap_s")
check(skew is not None and skew < info.get("interval_s", 0),
      f"{name}: windows skewed by {skew} s (< one interval)")
check(overlap is not None and overlap > 0.9 * min(a["duration_s"] for a in agents),
      f"{name}: windows overlap for {overlap} s")
sys.exit(1 if bad else 0)
PY
}

stage "phase 1: echoload serve"
ip netns exec "$srv" timeout 120 "$bin/echoload" serve --bind $srv_ip --echo-port 7007 \
    --disable discard,source,sockperf --threads 1 --metrics $srv_ip:9464 > "$tmp/serve.log" 2>&1 &
pids+=($!)
wait_port 9464 || { bad "echoload serve metrics did not come up"; cat "$tmp/serve.log"; exit 1; }
phase serve 7007 9464 echoload_server_received_bytes_total echoload_server_sent_bytes_total

stage "the UDP guard, visible (echoload serve, a non-loopback source)"
guard_out=$(timeout 30 ip netns exec "${agents[0]}" "$bin/echoload" run "$srv_ip:7007" -u -m rate \
    -r 3000 -t 1 -O 0 -q --allow-loss 2>&1) || bad "guard: the run failed: $guard_out"
if grep -q "the server may be limiting per source" <<<"$guard_out"; then
    ok "guard: the client says the server may be limiting per source"
else
    bad "guard: no hint in the client's report"; echo "$guard_out"
fi
limited=$(grep -c "UDP from 198.18.0.11 is over 1000 datagrams/s" "$tmp/serve.log" || true)
if [ "$limited" = 1 ] && grep -q -- "--udp-rate-limit-per-source 0 lifts it" "$tmp/serve.log"; then
    ok "guard: echoload serve announced the limited source once, with the option that lifts it"
else
    bad "guard: echoload serve announced 198.18.0.11 $limited times"; cat "$tmp/serve.log"
fi

stage "phase 2: wskecho-sim + driver exporter"
ip netns exec "$srv" timeout 120 "$bin/wskecho-sim" --draws --duration 100 --control 127.0.0.1:7070 \
    --services "echo,tcp,7107,$srv_ip" > "$tmp/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    ip netns exec "$srv" "$bin/echoload" driver --control 127.0.0.1:7070 status >/dev/null 2>&1 && break
    sleep 0.2
done
ip netns exec "$srv" timeout 120 "$bin/echoload" driver --control 127.0.0.1:7070 exporter \
    --listen $srv_ip:9465 --duration 100s > "$tmp/exporter.log" 2>&1 &
pids+=($!)
wait_port 9465 || { bad "driver exporter did not come up"; cat "$tmp/exporter.log" "$tmp/sim.log"; exit 1; }
phase sim 7107 9465 wskecho_received_bytes_total wskecho_sent_bytes_total

stage "cleanup"
cleanup
trap - EXIT
for ns in "$srv" "${agents[@]}" "$br"; do
    ip netns list | grep -qw "$ns" && bad "namespace $ns left behind"
done
echo "netns test: $([ $fail = 0 ] && echo passed || echo FAILED)"
exit $fail
