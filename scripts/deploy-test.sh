#!/usr/bin/env bash
# deploy/ checks: every Kubernetes manifest (raw, kustomize-rendered base and overlay, and
# launch.sh's output) validates offline and strictly against the Kubernetes schemas
# (kubernetes-validate ships them); the FROM scratch image builds with a static echoload and
# one agent container runs against `echoload serve` on 127.0.0.1 (host network), with the
# Indexed Job's environment (JOB_COMPLETION_INDEX, ECHOLOAD_AGENT_COUNT) and a --start-at.
# Without a container runtime the static binary itself runs the same agent.
#   scripts/deploy-test.sh            needs: kubectl (kustomize), kubernetes-validate (pip),
#                                     podman + runc (optional), the musl target (installed)
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
tmp=$(mktemp -d)
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

k=deploy/kubernetes
for f in $k/base/job.yaml $k/overlays/example/agents.yaml; do
    if kubernetes-validate --strict --quiet "$f"; then ok "valid (strict): $f"; else bad "invalid: $f"; fi
done
if ! command -v kubectl >/dev/null; then
    # kustomize is built into kubectl; without it the rendered manifests cannot be checked.
    echo "note: no kubectl here: kustomize rendering and launch.sh not checked"
else
    kubectl kustomize $k/base > "$tmp/base.yaml"
    kubectl kustomize $k/overlays/example > "$tmp/example.yaml"
    $k/launch.sh -n 5 -l 120 --dry-run > "$tmp/launch.yaml" 2>/dev/null
    for f in "$tmp/base.yaml" "$tmp/example.yaml" "$tmp/launch.yaml"; do
        if kubernetes-validate --strict --quiet "$f"; then ok "valid (strict): ${f#"$tmp/"}"; else bad "invalid: $f"; fi
    done
    grep -q '^  completionMode: Indexed$' "$tmp/launch.yaml" && ok "Indexed Job" || bad "not an Indexed Job"
    [ "$(grep -cE '^  (completions|parallelism): 5$' "$tmp/launch.yaml")" = 2 ] && ok "completions = parallelism = 5" \
        || bad "launch.sh did not set completions/parallelism to 5"
    grep -q 'ECHOLOAD_AGENT_COUNT: "5"' "$tmp/launch.yaml" && ok "agent count 5 in the ConfigMap" || bad "agent count"
    start=$(sed -n 's/^  START_AT: "\(.*\)"$/\1/p' "$tmp/launch.yaml")
    delta=$(( $(date -d "$start" +%s) - $(date +%s) ))
    [ "$delta" -ge 100 ] && [ "$delta" -le 121 ] && ok "START_AT $start is ~120 s ahead" || bad "START_AT $start ($delta s ahead)"
    # A wrong manifest must fail the validator (the check can fail).
    sed 's/^  completionMode: Indexed$/  completionMode: Indexed\n  bogus: 1/' "$tmp/launch.yaml" > "$tmp/bad.yaml"
    kubernetes-validate --strict --quiet "$tmp/bad.yaml" >/dev/null 2>&1 && bad "an unknown field passed strict validation" \
        || ok "an unknown field fails strict validation"
fi

bin=target/x86_64-unknown-linux-musl/release/echoload
image=0
if command -v podman >/dev/null || command -v buildah >/dev/null; then
    deploy/build-image.sh echoload:deploy-test > "$tmp/build.log" 2>&1 && { image=1; ok "image built (FROM scratch, static musl)"; } \
        || { bad "image build"; cat "$tmp/build.log"; }
else
    echo "note: neither podman nor buildah here: no image built; the static binary is tested below"
    rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
    cargo build --release --quiet --target x86_64-unknown-linux-musl -p loadgen
fi
if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q '(NEEDED)'; then
    bad "echoload is not static"
else
    ok "echoload is statically linked (no interpreter, no shared libraries)"
fi

port=18707
"$bin" serve --echo-port $port --disable discard,source,sockperf --threads 1 > "$tmp/serve.log" 2>&1 &
srv=$!
sleep 0.5
start_at=$(( $(date +%s) + 3 ))
agent=(run --target 127.0.0.1:$port --conns 4 --duration 1s --warmup 0s -q --json-stdout --start-at "$start_at")
if [ $image = 1 ] && command -v podman >/dev/null && timeout 60 podman --runtime runc run --rm --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
        --network host -e JOB_COMPLETION_INDEX=1 -e ECHOLOAD_AGENT_COUNT=2 \
        echoload:deploy-test "${agent[@]}" > "$tmp/agent.json" 2> "$tmp/agent.err"; then
    ok "agent container ran (podman, runc, host network)"
else
    echo "note: containers cannot run here ($(tail -n 1 "$tmp/agent.err" 2>/dev/null)); running the static binary itself"
    start_at=$(( $(date +%s) + 2 ))
    agent=(run --target 127.0.0.1:$port --conns 4 --duration 1s --warmup 0s -q --json-stdout --start-at "$start_at")
    JOB_COMPLETION_INDEX=1 ECHOLOAD_AGENT_COUNT=2 timeout 60 "$bin" "${agent[@]}" > "$tmp/agent.json" \
        && ok "static agent ran" || bad "static agent"
fi
python3 - "$tmp/agent.json" "$start_at" <<'PY' && ok "agent result: 2 of 4 conns (index 1 of 2), clean, measured from --start-at" || bad "agent result"
import json, sys, datetime
d = json.load(open(sys.argv[1]))
assert d["conns"] == 2, d["conns"]
assert d["recv_msgs"] > 0 and all(v == 0 for v in d["errors"].values()), d["errors"]
if "agent" in d:
    assert d["agent"] == {"index": 1, "count": 2}, d["agent"]
if "started_at" in d:
    t = datetime.datetime.fromisoformat(d["started_at"].replace("Z", "+00:00")).timestamp()
    assert abs(t - int(sys.argv[2])) < 0.25, (t, sys.argv[2])  # a late wake-up under load
PY
exit $fail
