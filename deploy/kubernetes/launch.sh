#!/usr/bin/env bash
# Starts one distributed echoload run on Kubernetes: computes the start instant ONCE, writes
# it and the agent count into the run's ConfigMap (via the overlay's start.env, in a temporary
# copy), sets the Indexed Job's completions/parallelism to the same count, and applies it.
#
#   deploy/kubernetes/launch.sh [-n AGENTS] [-l LEAD_SECONDS] [--dry-run] [OVERLAY_DIR]
#
#   -n AGENTS        agents (pods, one per node); default: the overlay's ECHOLOAD_AGENT_COUNT
#   -l LEAD_SECONDS  time from now to the start; pods must be scheduled, pulled and connected
#                    by then (default 60)
#   --dry-run        print the manifests instead of applying them
#   OVERLAY_DIR      a kustomize directory with a start.env (default: overlays/example)
#
# Then collect and merge (no shared storage; each agent prints its JSON on stdout):
#   kubectl -n NS wait --for=condition=complete job/echoload-agents --timeout=10m
#   kubectl -n NS logs -l job-name=echoload-agents --tail=-1 --max-log-requests=AGENTS \
#       | echoload merge - --json merged.json
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
agents="" lead=60 dry=0 overlay="$here/overlays/example"
while [ $# -gt 0 ]; do
    case $1 in
        -n) agents=$2; shift 2 ;;
        -l) lead=$2; shift 2 ;;
        --dry-run) dry=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "launch.sh: unknown option $1" >&2; exit 2 ;;
        *) overlay=$1; shift ;;
    esac
done
overlay=$(cd "$overlay" && pwd)
[ -f "$overlay/start.env" ] || { echo "launch.sh: $overlay has no start.env" >&2; exit 2; }
if [ -z "$agents" ]; then
    agents=$(sed -n 's/^ECHOLOAD_AGENT_COUNT=//p' "$overlay/start.env")
fi
case $agents in ''|*[!0-9]*|0) echo "launch.sh: agent count must be a positive integer" >&2; exit 2 ;; esac
case $lead in ''|*[!0-9]*) echo "launch.sh: lead must be whole seconds" >&2; exit 2 ;; esac

# The overlay refers to its base by a relative path: copy the whole tree.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/." "$tmp/"
rel=${overlay#"$here"/}
[ "$rel" != "$overlay" ] || { echo "launch.sh: the overlay must be inside $here" >&2; exit 2; }
start=$(date -u -d "@$(( $(date +%s) + lead ))" +%Y-%m-%dT%H:%M:%SZ)
printf 'START_AT=%s\nECHOLOAD_AGENT_COUNT=%s\n' "$start" "$agents" > "$tmp/$rel/start.env"
kubectl kustomize "$tmp/$rel" \
    | sed -E "s/^(  (completions|parallelism)): [0-9]+\$/\\1: $agents/" > "$tmp/rendered.yaml"
echo "launch.sh: $agents agent(s), measuring from $start" >&2
if [ $dry -eq 1 ]; then
    cat "$tmp/rendered.yaml"
else
    kubectl apply -f "$tmp/rendered.yaml"
fi
