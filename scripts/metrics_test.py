#!/usr/bin/env python3
"""Scrapes the three /metrics endpoints during real traffic and parses them with the
prometheus_client text parser (pip install prometheus_client):

  echoload serve --metrics         counters move with a run against it
  echoload run --metrics           counters move while the run goes on
  echoload driver exporter         wskecho-sim's counters (global, per CPU, per service)

Usage: scripts/metrics_test.py BIN_DIR   (BIN_DIR holds echoload and wskecho-sim)
Loopback only; every process is bounded in time and killed at the end, even on failure.
"""
import os
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
ECHOLOAD = os.path.join(BIN, "echoload")
SIM = os.path.join(BIN, "wskecho-sim")
HOST = "127.0.0.1"
SERVE_ECHO, SERVE_METRICS = 18407, 18490
RUN_METRICS = 18491
SIM_ECHO, SIM_CONTROL, EXPORTER = 18507, 18570, 18590

procs = []
failures = []


def start(*args):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(p)
    return p


def scrape(port):
    """{(name, frozenset(labels)): value} and {family name: type}, via the real parser."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    if "# HELP" not in text or "# TYPE" not in text:
        raise AssertionError("HELP/TYPE lines missing")
    return samples, types


def wait_scrape(port, deadline=10.0):
    end = time.time() + deadline
    while True:
        try:
            return scrape(port)
        except Exception:  # not listening yet
            if time.time() > end:
                raise
            time.sleep(0.1)


def val(samples, name, **labels):
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main():
    # 1. echoload serve --metrics
    start(ECHOLOAD, "serve", "--bind", HOST, "--echo-port", str(SERVE_ECHO), "--disable",
          "discard,source,sockperf", "--threads", "1", "--metrics", f"{HOST}:{SERVE_METRICS}")
    s0, types = wait_scrape(SERVE_METRICS)
    check(types.get("echoload_server_received_bytes") == "counter",
          "serve: received bytes is a counter (parser strips _total)")
    check(types.get("echoload_server_tcp_connections_open") == "gauge", "serve: open connections is a gauge")
    rx0 = val(s0, "echoload_server_received_bytes_total")
    check(rx0 == 0, f"serve: no bytes before traffic ({rx0})")

    # 2. echoload run --metrics against it, scraped twice while it runs
    run = start(ECHOLOAD, "run", "--target", f"{HOST}:{SERVE_ECHO}", "--conns", "2", "--duration", "3s", "--warmup", "0s", "-q",
                "--json-stdout", "--metrics", f"{HOST}:{RUN_METRICS}")
    r1, rtypes = wait_scrape(RUN_METRICS)
    time.sleep(1.0)
    r1, _ = scrape(RUN_METRICS)
    mid_srv, _ = scrape(SERVE_METRICS)
    time.sleep(1.0)
    r2, _ = scrape(RUN_METRICS)
    a = val(r1, "echoload_run_sent_bytes_total")
    b = val(r2, "echoload_run_sent_bytes_total")
    check(a is not None and b is not None and b > a > 0, f"run: sent bytes move during the run ({a} -> {b})")
    check(val(r2, "echoload_run_messages_total") > val(r1, "echoload_run_messages_total"), "run: messages move")
    check(rtypes.get("echoload_run_elapsed_seconds") == "gauge", "run: elapsed is a gauge")
    check(val(r1, "echoload_run_info", target=f"{HOST}:{SERVE_ECHO}", label="", agent_index=0,
              agent_count=1) == 1.0, "run: info labels")
    # Issue 21: latency as a summary in seconds with p50/p99/p99.9, sent vs received
    # messages, loss and errors, as of the last complete interval.
    check(rtypes.get("echoload_run_latency_seconds") == "summary", "run: latency is a summary")
    q = {x: val(r2, "echoload_run_latency_seconds", quantile=x) for x in ("0.5", "0.99", "0.999")}
    check(all(v is not None for v in q.values()) and 0 < q["0.5"] <= q["0.99"] <= q["0.999"] < 1,
          f"run: latency quantiles p50 <= p99 <= p99.9, in seconds ({q})")
    cnt = val(r2, "echoload_run_latency_seconds_count")
    tot = val(r2, "echoload_run_latency_seconds_sum")
    check(cnt and cnt > 0 and 0 < tot / cnt < 1, f"run: latency _count {cnt} and _sum {tot} s")
    for name in ("echoload_run_sent_messages", "echoload_run_received_messages",
                 "echoload_run_lost_messages", "echoload_run_errors"):
        check(rtypes.get(name) == "counter", f"run: {name}_total is a counter")
    sm = val(r2, "echoload_run_sent_messages_total")
    rm = val(r2, "echoload_run_received_messages_total")
    check(sm and rm and 0 <= sm - rm <= 2 and rm == cnt,
          f"run: sent {sm} vs received {rm} messages (2 conns: at most 2 in flight), "
          f"= latency samples {cnt}")
    check(val(r2, "echoload_run_lost_messages_total") == 0, "run: nothing lost")
    check(val(r2, "echoload_run_errors_total", kind="corrupted") == 0, "run: errors by kind")
    check(val(mid_srv, "echoload_server_received_bytes_total") > 0, "serve: counters move during the run")
    out, _ = run.communicate(timeout=30)
    check(run.returncode == 0, f"run exit status {run.returncode}")
    import json
    doc = json.loads(out[out.index("{"):])
    time.sleep(0.3)  # server workers publish once per event batch
    s1, _ = scrape(SERVE_METRICS)
    rx1 = val(s1, "echoload_server_received_bytes_total")
    tx1 = val(s1, "echoload_server_sent_bytes_total")
    check(rx1 >= doc["sent_bytes"] and rx1 - doc["sent_bytes"] <= 2 * doc["size"],
          f"serve: received bytes {rx1} = the run's sent bytes {doc['sent_bytes']} (+ in flight)")
    check(tx1 >= doc["recv_bytes"], f"serve: sent bytes {tx1} >= the run's received bytes {doc['recv_bytes']}")
    check(val(s1, "echoload_server_tcp_connections_accepted_total") == 2, "serve: 2 connections accepted")
    # Per service and protocol, TCP message counts included (no warm-up: the server's count
    # is the run's, give or take what was in flight at the end).
    lab = dict(service="echo", proto="tcp", port=SERVE_ECHO)
    srx = val(s1, "echoload_server_service_received_messages_total", **lab)
    stx = val(s1, "echoload_server_service_sent_messages_total", **lab)
    check(srx is not None and srx >= doc["sent_msgs"] and srx - doc["sent_msgs"] <= 2,
          f"serve: echo/tcp received messages {srx} = the run's sent messages {doc['sent_msgs']}")
    check(stx is not None and stx >= doc["recv_msgs"] and stx <= srx,
          f"serve: echo/tcp sent messages {stx} >= the run's received {doc['recv_msgs']}")
    check(val(s1, "echoload_server_service_received_bytes_total", **lab) == rx1,
          "serve: the only service's bytes are the total")
    check(val(s1, "echoload_server_service_udp_dropped_total", service="echo", proto="udp",
              port=SERVE_ECHO) == 0, "serve: echo/udp labelled apart")

    # 3. the driver (inside wskecho-sim) through echoload driver exporter
    start(SIM, "--draws", "--duration", "30", "--control", f"{HOST}:{SIM_CONTROL}", "--services",
          f"echo,tcp,{SIM_ECHO},{HOST}")
    for _ in range(50):
        if subprocess.run([ECHOLOAD, "driver", "--control", f"{HOST}:{SIM_CONTROL}", "status"],
                          capture_output=True, timeout=10).returncode == 0:
            break
        time.sleep(0.2)
    start(ECHOLOAD, "driver", "--control", f"{HOST}:{SIM_CONTROL}", "exporter", "--listen",
          f"{HOST}:{EXPORTER}", "--duration", "25s")
    d0, dtypes = wait_scrape(EXPORTER)
    check(val(d0, "wskecho_up") == 1.0, "driver: up")
    subprocess.run([ECHOLOAD, "run", "--target", f"{HOST}:{SIM_ECHO}", "--conns", "2", "--duration", "1s", "--warmup", "0s", "-q"],
                   check=True, capture_output=True, timeout=30)
    d1, _ = scrape(EXPORTER)
    g0 = val(d0, "wskecho_received_bytes_total")
    g1 = val(d1, "wskecho_received_bytes_total")
    check(g1 > g0, f"driver: received bytes move with traffic ({g0} -> {g1})")
    cpu = sum(v for (n, l), v in d1.items() if n == "wskecho_cpu_received_bytes_total")
    check(cpu == g1, f"driver: per-CPU received bytes add up to the global counter ({cpu} vs {g1})")
    svc = val(d1, "wskecho_service_received_bytes_total", mode="echo", proto="tcp", port=SIM_ECHO,
              address=HOST)
    check(svc is not None and svc > 0, f"driver: per-service counter of echo/tcp/{SIM_ECHO} ({svc})")
    check(dtypes.get("wskecho_connections_active") == "gauge", "driver: active connections is a gauge")
    check(val(d1, "wskecho_connections_accepted_total") >= 2, "driver: connections accepted")


try:
    main()
except Exception as e:  # a crash is a failure too, with its reason
    failures.append(repr(e))
    print("FAIL", repr(e))
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
print(f"metrics test: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
