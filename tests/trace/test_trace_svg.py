#!/usr/bin/env python3
"""The SVG heap map is well-formed XML with one shape per chunk: the
number of chunk paths equals the chunk count the tool reports and the
chunk count of the peak snapshot in the HTML page's data (same run), and
the chunks tile the drawn rows in address order.

usage: test_trace_svg.py BRISK_TRACE GEN_SYNTHETIC_PY
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

tool, gen = sys.argv[1], sys.argv[2]
failures = checks = 0
SVG = "{http://www.w3.org/2000/svg}"


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def unpack_chunks(text, n, granule):
    """A snapshot's chunks as the page gets them (html.c): base64 of
    varints, (size / granule) * 2 + free, then for a live chunk its trace
    id as a zigzag difference from the previous live one's. Returns
    [(size, live, id)]."""
    data, pos = base64.b64decode(text), 0

    def varint():
        nonlocal pos
        v = shift = 0
        while True:
            b = data[pos]
            pos += 1
            v |= (b & 127) << shift
            shift += 7
            if not b & 128:
                return v

    out, last = [], -1
    for _ in range(n):
        word = varint()
        if word & 1:
            out.append((word // 2 * granule, False, -1))
            continue
        z = varint()
        last += -(z + 1) // 2 if z & 1 else z // 2
        out.append((word // 2 * granule, True, last))
    check(pos == len(data), "the packed chunks end where the data does", f"{pos} of {len(data)}")
    return out


with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, gen, "--out-dir", tmp, "--scale", "0.2"], check=True,
                   capture_output=True)
    traces = sorted(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".rep"))
    check(len(traces) == 4, "the generator wrote four traces", str(traces))
    for name in ("synth-random", "synth-alternating"):
        svg = os.path.join(tmp, name + ".svg")
        html = os.path.join(tmp, name + ".html")
        p = subprocess.run([tool, "replay", "--reps", "0", "--map", name, "--svg", svg,
                            "--html", html] + traces, capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, f"{name}: replay with --svg", p.stdout + p.stderr)
        m = re.search(r"wrote the heap map of (\S+) at peak use \((\d+) chunks\) to (\S+)", p.stderr)
        check(m is not None and m.group(1) == name and m.group(3) == svg,
              f"{name}: the tool reports the map", p.stderr)
        reported = int(m.group(2)) if m else -1

        try:
            root = ET.parse(svg).getroot()
        except ET.ParseError as e:
            check(False, f"{name}: the SVG parses as XML", str(e))
            continue
        check(root.tag == SVG + "svg", f"{name}: root is <svg>", root.tag)
        chunks = [e for e in root.iter(SVG + "path") if e.get("class", "").startswith("chunk ")]
        check(len(chunks) == reported, f"{name}: one shape per chunk",
              f"{len(chunks)} shapes, tool reported {reported}")
        used = [c for c in chunks if c.get("class") in ("chunk used", "chunk used alt")]
        free = [c for c in chunks if c.get("class") == "chunk free"]
        check(len(used) > 0 and len(free) > 0 and len(used) + len(free) == len(chunks),
              f"{name}: used and free chunks", f"{len(used)} used, {len(free)} free")
        check(all(c.find(SVG + "title") is not None for c in chunks), f"{name}: every chunk titled")
        # Each title names the chunk's offset: they must increase (address
        # order) and tile (each starts where the previous ended).
        offsets = []
        for c in chunks:
            t = c.find(SVG + "title").text
            mm = re.search(r"at offset (\d+) \(0x[0-9a-f]+\), ", t)
            offsets.append(int(mm.group(1)) if mm else -1)
        check(offsets == sorted(offsets) and offsets[0] == 0, f"{name}: chunks in address order")
        # Every piece is at least a hairline wide.
        widths = [float(w) for c in chunks for w in re.findall(r"h(-?[0-9.]+)v", c.get("d"))]
        check(widths and min(widths) >= 1.0, f"{name}: every chunk at least 1px wide",
              str(min(widths) if widths else None))
        check(root.find(f".//{SVG}line[@class='hw']") is not None, f"{name}: high-water mark drawn")

        with open(html) as f:
            page = f.read()
        data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
        check(data is not None, f"{name}: the page embeds its data")
        if data:
            d = json.loads(data.group(1))
            t = [t for t in d["traces"] if t["name"] == name][0]
            peak = t["snapshots"][t["peak"]]
            packed = unpack_chunks(peak["c"], peak["n"], t["granule"])
            check(len(packed) == reported, f"{name}: page's peak snapshot has as many chunks",
                  f"{len(packed)} vs {reported}")
            # The packed chunks are the SVG's, one for one: same offsets,
            # states and trace ids.
            from_svg = []
            for c in chunks:
                mm = re.search(r"^(live|free) chunk at offset (\d+) .*?(?:, trace id (\d+))?$",
                               c.find(SVG + "title").text)
                from_svg.append((int(mm.group(2)), mm.group(1) == "live",
                                 int(mm.group(3)) if mm.group(3) else -1) if mm else None)
            at, from_page = 0, []
            for size, live, ident in packed:
                from_page.append((at, live, ident))
                at += size
            check(from_page == from_svg, f"{name}: the page's packed chunks are the SVG's",
                  f"first difference at {next((i for i, (a, b) in enumerate(zip(from_page, from_svg)) if a != b), None)}")
            check(len(t["snapshots"]) >= 30, f"{name}: snapshots along the trace",
                  str(len(t["snapshots"])))
            check("http://" not in page.replace("http://www.w3.org", "") and
                  "https://" not in page and "<link" not in page and " src=" not in page,
                  f"{name}: the page loads nothing from elsewhere")

print(f"test_trace_svg: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures or checks == 0 else 0)
