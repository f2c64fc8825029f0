#!/usr/bin/env python3
"""Test-only set-up for scripts/wine-kernel-test.sh: IMAGE OUTDIR.

- OUTDIR/wskecho.sys: the image with its import of "ntoskrnl.exe" renamed "wskshim.dll" (the
  one change; the code is the shipped code).
- OUTDIR/wskshim.def: the shim's exports: each function the image imports from ntoskrnl.exe,
  forwarded to Wine's ntoskrnl.exe, except those wskshim.c implements (what Wine lacks).
- OUTDIR/pkg/: the package Wine's setupapi installs: that image, and inf/wskecho.inf with the
  service ports in its Services line moved to WINE_KERNEL_PORT_BASE (7007 -> BASE+7, 7009 ->
  +9, 7019 -> +19, 11111 -> +111; nothing else changed), so nothing else on the machine
  answers there.
- OUTDIR/expected.json: that INF's Parameters, as `driver config get` must answer them.
"""
import json
import os
import re
import subprocess
import sys

# What Wine 8.0's ntoskrnl.exe lacks (see wskshim.c and docs/wine.md).
OWN = {
    "ExAllocatePool2",
    "ExInitializeRundownProtection",
    "ExAcquireRundownProtection",
    "ExReleaseRundownProtection",
    "ExWaitForRundownProtectionRelease",
    "SeExports",
}
DATA = {"SeExports"}


def imports(image):
    out = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", image], check=True,
                         capture_output=True, text=True).stdout
    names, on = [], False
    for line in out.splitlines():
        if "DLL Name:" in line:
            on = line.split()[-1].lower() == "ntoskrnl.exe"
            continue
        m = re.match(r"\s+[0-9a-f]+\s+\d+\s+(\S+)$", line)
        if on and m:
            names.append(m.group(1))
    return names


def inf_parameters(path):
    """[WskEcho.Parameters] lines: HKR,Parameters,NAME,FLAGS,VALUE[,VALUE...]."""
    params, section = {}, None
    for raw in open(path, encoding="utf-8"):
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section != "WskEcho.Parameters" or not line:
            continue
        f = [x.strip() for x in line.split(",")]
        # Quoted MULTI_SZ values contain commas: rejoin what the split cut.
        name, flags = f[2], int(f[3], 16)
        rest = re.findall(r'"([^"]*)"', line.split(",", 4)[4]) if flags == 0x10000 else [f[4]]
        params[name] = ("multi", rest) if flags == 0x10000 else ("dword", int(rest[0], 0))
    return params


def main():
    image, out = sys.argv[1], sys.argv[2]
    base = int(os.environ.get("WINE_KERNEL_PORT_BASE", "27300"))
    data = open(image, "rb").read()
    if data.count(b"ntoskrnl.exe\0") != 1:
        sys.exit("expected the import name ntoskrnl.exe exactly once in " + image)
    os.makedirs(os.path.join(out, "pkg"), exist_ok=True)
    open(os.path.join(out, "pkg", "wskecho.sys"), "wb").write(
        data.replace(b"ntoskrnl.exe\0", b"wskshim.dll\0\0"))

    names = imports(image)
    if not names:
        sys.exit("no ntoskrnl.exe imports found in " + image)
    lines = ["LIBRARY wskshim.dll", "EXPORTS"]
    for n in names:
        lines.append(f"  {n}" + (" DATA" if n in DATA else "") if n in OWN
                     else f"  {n} = ntoskrnl.exe.{n}")
    for n in sorted(OWN - set(names)):
        lines.append(f"  {n}" + (" DATA" if n in DATA else ""))
    open(os.path.join(out, "wskshim.def"), "w").write("\n".join(lines) + "\n")
    print("ntoskrnl.exe imports:", len(names), "; supplied by the shim:",
          ", ".join(sorted(OWN & set(names))) or "none")

    ports = {"7007": base + 7, "7009": base + 9, "7019": base + 19, "11111": base + 111}
    params = inf_parameters(os.path.join(os.path.dirname(__file__), "../../inf/wskecho.inf"))
    svcs = []
    for s in params["Services"][1]:
        f = s.split(",")
        f[2] = str(ports[f[2]])
        svcs.append(",".join(f))
    params["Services"] = ("multi", svcs)
    inf_src = os.path.join(os.path.dirname(__file__), "../../inf/wskecho.inf")
    text = open(inf_src, encoding="utf-8").read()
    line = next(l for l in text.splitlines() if l.startswith("HKR,Parameters,Services,"))
    moved = re.sub(r",(7007|7009|7019|11111),", lambda m: f",{ports[m.group(1)]},", line)
    open(os.path.join(out, "pkg", "wskecho.inf"), "w", encoding="utf-8", newline="").write(
        text.replace(line, moved))
    expected = {
        "services": [dict(zip(["mode", "proto", "port", "bind"], s.split(",")[:4])) for s in svcs],
        "limits": {k: v for k, (kind, v) in params.items() if kind == "dword"},
        "allowed_sources": params["AllowedSources"][1],
    }
    for s in expected["services"]:
        s["port"] = int(s["port"])
    json.dump(expected, open(os.path.join(out, "expected.json"), "w"), indent=1)
    print(len(svcs), "services,", len(expected["limits"]), "limits from the INF")


if __name__ == "__main__":
    main()
