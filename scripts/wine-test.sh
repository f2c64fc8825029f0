#!/usr/bin/env bash
# echoload's Windows build (x86_64-pc-windows-gnu, Debian's mingw-w64), run under Wine against
# Linux-native servers on 127.0.0.1: echoload serve, and the wskecho driver inside wskecho-sim.
# Installs what it needs (Debian packages, rustup target). Prints each step's result and time;
# exits non-zero on an unexpected failure. A step that fails only because of Wine is an
# expected failure (XFAIL, with the reason); if it starts passing (XPASS) the script says so
# and still exits 0, so a fixed Wine turns it green. See docs/wine.md.
#
# Environment: WINE_TEST_PORT_BASE (default 27100) picks the ten ports used; WINE_TEST_PROFILE
# (release or dev, default release) the cargo profile of both builds.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${WINE_TEST_PORT_BASE:-27100}
profile=${WINE_TEST_PROFILE:-release}
[ "$profile" = dev ] && pdir=debug || pdir=$profile
target=x86_64-pc-windows-gnu
work=target/wine-test
t_start=$SECONDS
pass=0; fail=0; xfail=0; xpass=0
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${WINEPREFIX:-}" ] && wineserver -k 2>/dev/null || true
}
trap cleanup EXIT

# Bound of every external command a step runs (wine runs take about 2 s each).
T="timeout 120"
# Bound of a build (a cold release build takes a few minutes on 2 cores) and of a server.
TB="timeout 1200"
TS="timeout 600"

# step NAME CMD...: runs CMD (a command or one of the functions below, each of which bounds
# what it runs with $T), logs to $work/NAME.log, prints ok/FAILED and the time.
step() {
    local name=$1; shift
    local t0=$SECONDS rc=0
    "$@" >"$work/$name.log" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf '%-34s ok      %3ds\n' "$name" $((SECONDS - t0))
    else
        fail=$((fail + 1)); printf '%-34s FAILED  %3ds (exit %d)\n' "$name" $((SECONDS - t0)) $rc
        tail -20 "$work/$name.log" | sed 's/^/    /'
    fi
}

# xfail NAME CODE REASON CMD...: a run known to fail under Wine only, with exit code CODE;
# another failure is a failure.
xfail() {
    local name=$1 code=$2 reason=$3; shift 3
    local t0=$SECONDS rc=0
    "$@" >"$work/$name.log" 2>&1 || rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne "$code" ]; then
        fail=$((fail + 1))
        printf '%-34s FAILED  %3ds (exit %d, expected %d: %s)\n' "$name" $((SECONDS - t0)) $rc "$code" "$reason"
        tail -20 "$work/$name.log" | sed 's/^/    /'
    elif [ $rc -eq 0 ]; then
        xpass=$((xpass + 1))
        printf '%-34s XPASS   %3ds (Wine no longer: %s; make it a normal step)\n' "$name" $((SECONDS - t0)) "$reason"
    else
        xfail=$((xfail + 1))
        printf '%-34s xfail   %3ds (exit %d: %s)\n' "$name" $((SECONDS - t0)) $rc "$reason"
    fi
}

mkdir -p "$work"
echo "== wine test: echoload.exe ($target, $profile) under Wine, ports $base-$((base + 9))"

# --- set-up --------------------------------------------------------------------------------
setup() {
    local need=()
    # `wine` holds the launcher (/usr/bin/wine); with Recommends as measured (about 50 s).
    for p in gcc-mingw-w64-x86-64 wine wine64; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            $SUDO apt-get install -y -qq "${need[@]}" || return
    fi
    rustup target list --installed | grep -qx $target || rustup target add $target
}
step setup setup

# --- builds ----------------------------------------------------------------------------------
step build_windows $TB cargo build --quiet --profile "$profile" --target $target -p loadgen
step build_native $TB cargo build --quiet --profile "$profile" -p loadgen -p wskecho-sim
# Wine 8.0 has no bcryptprimitives.dll; Rust's std imports ProcessPrng from it. The test-only
# stand-in goes beside a copy of the exe in $work/bin; $work/noshim has the exe alone.
step build_shim x86_64-w64-mingw32-gcc -shared -O2 -Wall -o "$work/bcryptprimitives.dll" \
    loadgen/tests/wine/bcryptprimitives.c -ladvapi32
mkdir -p "$work/bin" "$work/noshim"
cp target/$target/$pdir/echoload.exe "$work/bin/" && cp "$work/bcryptprimitives.dll" "$work/bin/"
cp target/$target/$pdir/echoload.exe "$work/noshim/"
if [ $fail -gt 0 ]; then
    echo "set-up or build failed; nothing run"; exit 1
fi

# A fresh prefix each time, as on CI; no Mono/Gecko (console programs need neither).
rm -rf "$work/prefix"
export WINEPREFIX=$PWD/$work/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
prefix() {
    wineboot --init
    # Let wineboot's session end before the persistent server below starts.
    wineserver -w
}
step wine_prefix $T bash -c "$(declare -f prefix); prefix"
# One wineserver for the whole test, persistent until cleanup's `wineserver -k`. Debian's
# /usr/bin/wineserver wrapper starts the server with -p0: without this, every gap between two
# `wine` commands begins a shutdown (system processes told to exit, the server exiting about 2 s
# later), and a command that connects while the server exits has its connection reset at
# start-up ("wine client error:0: recvmsg: Connection reset by peer": CI once lost `serve` so).
# A later -p (no number) overrides the wrapper's -p0: never shut down by itself.
step wine_server $T wineserver -p
win=$work/bin/echoload.exe
winjson() { printf 'Z:%s' "$(realpath "$work")/$1.json" | tr / '\\'; }

# --- expected failures (Wine only) -------------------------------------------------------------
# Minimal reproduction: any Rust program built for x86_64-pc-windows-gnu, run without the shim.
xfail start_without_shim 53 "Wine lacks bcryptprimitives.dll (ProcessPrng), STATUS_DLL_NOT_FOUND = 53" \
    $T wine "$work/noshim/echoload.exe" --help
step start_with_shim $T wine "$win" --help

# --- runs ---------------------------------------------------------------------------------
# wrun NAME ARGS...: echoload.exe run, JSON written and checked: exit 0 (no integrity error,
# nothing lost), the JSON exists and received (or for sink: sent) something.
wrun() {
    local name=$1; shift
    local j; j=$(winjson "$name")
    rm -f "$work/$name.json"
    $T wine "$win" run --quiet --warmup 0s --duration 1s --json "$j" "$@" || return
    json_ok "$work/$name.json"
}
# wrun_lossy NAME ARGS...: as wrun for open-loop UDP, where a busy 2-core machine drops
# datagrams in the loopback queues (the Linux client loses as many): loss is allowed up to
# half of what was sent; corruption, duplicates and errors are not, and something must come
# back.
wrun_lossy() {
    local name=$1; shift
    local j; j=$(winjson "$name")
    rm -f "$work/$name.json"
    $T wine "$win" run --quiet --warmup 0s --duration 1s --allow-loss --json "$j" "$@" || return
    LOSSY=1 json_ok "$work/$name.json"
}
jnum() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$2" | head -n 1; }
json_ok() {
    local f=$1
    [ -s "$f" ] || { echo "no JSON written at $f"; return 1; }
    grep -q '"corrupted": 0,' "$f" && grep -q '"duplicated": 0,' "$f" \
        && grep -q '"connect": 0,' "$f" && grep -q '"io": 0' "$f" \
        || { echo "errors in $f:"; grep -A7 '"errors"' "$f"; return 1; }
    if [ -n "${LOSSY:-}" ]; then
        # "lost" (never arrived), not received-in-window: on a loaded machine replies to the
        # last messages arrive after the measured window and are not counted as received.
        local sent lost
        sent=$(jnum sent_msgs "$f"); lost=$(jnum lost "$f")
        [ $((lost * 2)) -le "$sent" ] || { echo "lost $lost of $sent"; return 1; }
    else
        grep -q '"lost": 0,' "$f" || { echo "lost in $f:"; grep -A7 '"errors"' "$f"; return 1; }
    fi
    if grep -q '"mode": "sink"' "$f"; then
        grep -Eq '"sent_msgs": [1-9]' "$f" || { echo "nothing sent"; return 1; }
    else
        grep -Eq '"recv_msgs": [1-9]' "$f" || { echo "nothing received"; return 1; }
    fi
}
wait_tcp() {  # wait_tcp PORT [LOG]: until something accepts on 127.0.0.1:PORT (bounded)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1"
    # The server's own log says why (it is overwritten by the next run).
    [ -n "${2:-}" ] && { echo "--- $2:"; cat "$2"; }
    return 1
}

bin=target/$pdir
e=$base d=$((base + 1)) s=$((base + 2)) sp=$((base + 3))
$TS $bin/echoload serve --echo-port $e --discard-port $d --source-port $s --sockperf-port $sp \
    --threads 2 >"$work/serve.log" 2>&1 &
pids+=($!)
step serve_up wait_tcp $e "$work/serve.log"
step serve_tcp_pingpong wrun serve_tcp_pingpong --target 127.0.0.1:$e --proto tcp --mode pingpong
step serve_tcp_pingpong_4x2 wrun serve_tcp_pingpong_4x2 --target 127.0.0.1:$e --proto tcp --conns 4 --threads 2
step serve_tcp_stream wrun serve_tcp_stream --target 127.0.0.1:$e --proto tcp --mode stream
step serve_tcp_rate wrun serve_tcp_rate --target 127.0.0.1:$e --proto tcp --mode rate --rate 2000
step serve_tcp_sink wrun serve_tcp_sink --target 127.0.0.1:$d --proto tcp --mode sink --size 16384
step serve_tcp_source wrun serve_tcp_source --target 127.0.0.1:$s --proto tcp --mode source
step serve_udp_pingpong wrun serve_udp_pingpong --target 127.0.0.1:$e --proto udp --mode pingpong
step serve_udp_pingpong_4x2 wrun serve_udp_pingpong_4x2 --target 127.0.0.1:$e --proto udp --conns 4 --threads 2
step serve_udp_stream wrun_lossy serve_udp_stream --target 127.0.0.1:$e --proto udp --mode stream --rate 20000
step serve_udp_rate wrun_lossy serve_udp_rate --target 127.0.0.1:$e --proto udp --mode rate --rate 2000
step serve_udp_sockperf wrun serve_udp_sockperf --target 127.0.0.1:$sp --proto udp --wire sockperf

# The Windows server path (thread per service) driven by the Linux client.
we=$((base + 4)) wd=$((base + 5)) ws=$((base + 6)) wsp=$((base + 7))
$TS wine "$win" serve --echo-port $we --discard-port $wd --source-port $ws --sockperf-port $wsp \
    --threads 2 >"$work/wine-serve.log" 2>&1 &
pids+=($!)
step wine_serve_up wait_tcp $we "$work/wine-serve.log"
lrun() {  # lrun NAME ARGS...: the Linux echoload against echoload.exe serve
    local name=$1; shift
    $T $bin/echoload run --quiet --warmup 0s --duration 1s --json "$work/$name.json" "$@" \
        && json_ok "$work/$name.json"
}
step wine_serve_tcp_pingpong lrun wine_serve_tcp_pingpong --target 127.0.0.1:$we --proto tcp
step wine_serve_tcp_stream lrun wine_serve_tcp_stream --target 127.0.0.1:$we --proto tcp --mode stream
step wine_serve_udp_pingpong lrun wine_serve_udp_pingpong --target 127.0.0.1:$we --proto udp

# The driver inside wsk-sim (as in test.sh's end-to-end stage).
se=$((base + 8)) sd=$((base + 9))
$bin/wskecho-sim --draws --duration 300 --no-control \
    --services "echo,tcp,$se,127.0.0.1;echo,udp,$se,127.0.0.1;discard,tcp,$sd,127.0.0.1" \
    >"$work/sim.log" 2>&1 &
sim=$!
pids+=($sim)
step sim_up wait_tcp $se "$work/sim.log"
step sim_tcp_pingpong wrun sim_tcp_pingpong --target 127.0.0.1:$se --proto tcp --mode pingpong
step sim_tcp_pingpong_4x2 wrun sim_tcp_pingpong_4x2 --target 127.0.0.1:$se --proto tcp --conns 4 --threads 2
step sim_tcp_stream wrun sim_tcp_stream --target 127.0.0.1:$se --proto tcp --mode stream
step sim_tcp_rate wrun sim_tcp_rate --target 127.0.0.1:$se --proto tcp --mode rate --rate 2000
step sim_tcp_sink wrun sim_tcp_sink --target 127.0.0.1:$sd --proto tcp --mode sink --size 16384
step sim_udp_pingpong wrun sim_udp_pingpong --target 127.0.0.1:$se --proto udp --mode pingpong
step sim_udp_stream wrun_lossy sim_udp_stream --target 127.0.0.1:$se --proto udp --mode stream --rate 20000
step sim_udp_rate wrun_lossy sim_udp_rate --target 127.0.0.1:$se --proto udp --mode rate --rate 2000
sim_unload() {  # SIGTERM ends wskecho-sim with the counters and the leak verdict
    ( sleep 30; kill -KILL "$sim" 2>/dev/null ) &
    local guard=$!
    kill -TERM "$sim" && wait "$sim"
    local rc=$?
    kill "$guard" 2>/dev/null; wait "$guard" 2>/dev/null
    cat "$work/sim.log"
    [ $rc -eq 0 ] && grep -q 'unload clean' "$work/sim.log"
}
step sim_unload_clean sim_unload

printf '\nwine test: %d passed, %d failed, %d expected failures, %d unexpected passes (%ds)\n' \
    $pass $fail $xfail $xpass $((SECONDS - t_start))
[ $fail -eq 0 ]
