#!/usr/bin/env python3
"""`echoload plot` end to end: two real runs against `echoload serve` on 127.0.0.1, plotted
to SVG and HTML, the SVG rendered by librsvg's rsvg-convert (Debian librsvg2-bin) to PNG.
Checks: the PNG has the picture's size and is not blank, both curve colours are drawn, and the
SVG's polylines sit where the JSON values put them (per-interval throughput and p99 of each
run, read back from the points and matched to the data by an affine map per axis). Each run's
`histogram` is decoded by HdrHistogram's Python implementation (PyPI `hdrhistogram`, module
`hdrh`) to the sample count and percentiles the report shows.

Usage: scripts/plot_test.py BIN_DIR [OUT_DIR]   (OUT_DIR keeps report.svg/.png/.html)
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib

try:
    from hdrh.histogram import HdrHistogram
except ImportError:  # reported as a failure below
    HdrHistogram = None

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
OUT = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp()
ECHOLOAD = os.path.join(BIN, "echoload")
PORT = 18807
COLORS = ["#1F77B4", "#D62728"]  # the first two curve colours of echoload plot
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def png_pixels(path):
    """(width, height, rows of pixel tuples) of an 8-bit RGB or RGBA PNG (rsvg-convert's)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w, bpp = 8, b"", 0, 4
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"expected 8-bit RGB(A), got depth {depth} type {ctype}"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + bpp]) for i in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def polylines(svg):
    out = []
    for m in re.finditer(r"<polyline([^>]*)/>", svg):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', m.group(1)))
        pts = [tuple(map(float, p.split(","))) for p in attrs.get("points", "").split()]
        out.append((attrs.get("stroke", "").upper(), pts))
    return out


def hdrh_matches(d):
    """The run's histogram read by python hdrh: its count and percentiles are the report's."""
    if HdrHistogram is None:
        check(False, "python hdrh is installed (pip install hdrhistogram)")
        return
    try:
        h = HdrHistogram.decode(d["histogram"])
    except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
        check(False, f"{d['label']}: hdrh decodes the histogram ({e!r})")
        return
    lat = d["latency_us"]
    check(h.get_total_count() == lat["count"], f"{d['label']}: hdrh reads {h.get_total_count()} samples, the report {lat['count']}")
    for q, k in ((50, "p50"), (99, "p99")):
        got, want = h.get_value_at_percentile(q) / 1000, lat[k]
        check(abs(got - want) <= 0.01 * want + 0.001, f"{d['label']}: hdrh {k} {got:.3f} µs = report {want:.3f} µs")


def affine_ok(data, px, tol=1.5):
    if len(data) != len(px):
        return False
    for axis in (0, 1):
        d = [p[axis] for p in data]
        q = [p[axis] for p in px]
        lo, hi = d.index(min(d)), d.index(max(d))
        if d[hi] == d[lo]:
            if max(q) - min(q) > tol:
                return False
            continue
        scale = (q[hi] - q[lo]) / (d[hi] - d[lo])
        if any(abs(q[lo] + (v - d[lo]) * scale - p) > tol for v, p in zip(d, q)):
            return False
    return True


serve = subprocess.Popen([ECHOLOAD, "serve", "--bind", "127.0.0.1", "--echo-port", str(PORT),
                          "--disable", "discard,source,sockperf", "--threads", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    docs = []
    for label, extra in (("ping-pong 2 conns", []), ("rate 4k msg/s", ["--mode", "rate", "--rate", "4000"])):
        path = os.path.join(OUT, f"{len(docs)}.json")
        for _ in range(50):  # the server may still be binding
            r = subprocess.run([ECHOLOAD, "run", "--target", f"127.0.0.1:{PORT}", "--conns", "2",
                                "--duration", "2s", "--warmup", "0s", "--interval", "0.25s",
                                "--label", label, "-q", "--json", path] + extra,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                break
        check(r.returncode == 0, f"run {label!r}")
        docs.append(json.load(open(path)))
    svg_path, png_path, html_path = (os.path.join(OUT, f"report.{e}") for e in ("svg", "png", "html"))
    paths = [os.path.join(OUT, f"{i}.json") for i in range(len(docs))]
    subprocess.run([ECHOLOAD, "plot", *paths, "-o", svg_path, "--title", "plot test"], check=True, timeout=30)
    subprocess.run([ECHOLOAD, "plot", *paths, "-o", html_path], check=True, timeout=30)
    r = subprocess.run(["rsvg-convert", "-b", "white", svg_path, "-o", png_path], capture_output=True, text=True)
    check(r.returncode == 0, f"rsvg-convert renders the SVG {r.stderr.strip()}")

    w, h, rows = png_pixels(png_path)
    check((w, h) == (1100, 900), f"PNG is 1100x900 ({w}x{h})")
    pixels = [p for row in rows for p in row]
    ink = sum(1 for p in pixels if p[:3] != (255, 255, 255))
    check(ink > 0.02 * len(pixels), f"PNG is not blank ({100 * ink / len(pixels):.1f}% non-white)")
    for c in COLORS:
        rgb = tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
        n = sum(1 for p in pixels if all(abs(a - b) <= 40 for a, b in zip(p[:3], rgb)))
        check(n > 300, f"curve colour {c} drawn ({n} pixels)")

    svg = open(svg_path).read()
    lines = polylines(svg)
    for i, d in enumerate(docs):
        check(d["label"] in svg, f"legend names {d['label']!r}")
        iv = d["intervals"]
        mine = [p for s, p in lines if s == COLORS[i] and len(p) == len(iv)]
        tp = [(x["end_s"], x["msgs_per_s"]) for x in iv]
        p99 = [(x["end_s"], x["p99_us"]) for x in iv]
        tp_lines = [p for p in mine if affine_ok(tp, p)]
        check(tp_lines, f"{d['label']}: throughput points match the JSON ({len(iv)} intervals)")
        check(any(affine_ok(p99, p) for p in mine), f"{d['label']}: p99 points match the JSON")
        # A changed value must not match the line that matched. The check fits each axis from
        # the data's extremes, so it can only tell values apart where the line spans some
        # pixels: a line within the tolerance (flat on screen) fits any data. Comparing with
        # every line of the colour (the p99 one too, squashed flat under the other run's
        # spike) is what failed once in three CI runs.
        vals = [v for _, v in tp]
        discerning = [p for p in tp_lines if max(y for _, y in p) - min(y for _, y in p) > 10]
        if max(vals) - min(vals) > 0.1 * max(vals) and discerning:
            # the smallest and the largest value trade places
            lo, hi = vals.index(min(vals)), vals.index(max(vals))
            wrong = [(t, vals[hi] if k == lo else vals[lo] if k == hi else v) for k, (t, v) in enumerate(tp)]
            check(not any(affine_ok(wrong, p) for p in discerning), f"{d['label']}: a changed value would not match")
        hdrh_matches(d)
    html = open(html_path).read()
    check(html.count("<svg") == 1 and all(d["label"] in html for d in docs), "HTML page holds the SVG and a row per run")
finally:
    serve.terminate()
    serve.wait(timeout=5)
print(f"plot test: {len(failures)} failure(s); files in {OUT}")
sys.exit(1 if failures else 0)
