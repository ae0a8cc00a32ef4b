#!/usr/bin/env python3
"""brisk-trace record + report --json on programs whose allocation sites,
peak and leaks are known by construction (trace_sites_program.c with its
shared library and threads, trace_sites_cxx.cc): each site must be
attributed to the right function with the right bytes and count. Also:
recording changes nothing the program computes (while a signal handler
allocates and threads allocate during dlopen), convert round trips, and
truncated, foreign and future-version files are refused with a clear
error.

usage: test_trace_report.py BRISK_TRACE SITES_PROGRAM SITES_LIB [CXX_PROGRAM]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

tool, program, lib = sys.argv[1], sys.argv[2], sys.argv[3]
cxx = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
failures = checks = 0


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=240, **kw)


def report(path):
    p = run([tool, "report", "--json", "--top", "0", path])
    check(p.returncode == 0, f"report --json {path} succeeds", p.stderr)
    return json.loads(p.stdout) if p.returncode == 0 else None


def by_function(sites, function):
    """The sites (by stack) whose site function is `function`, summed."""
    chosen = [s for s in sites if s["function"] == function]
    return sum(s["bytes"] for s in chosen), sum(s["count"] for s in chosen), chosen


def merged(functions, function):
    for f in functions:
        if f["function"] == function:
            return f["bytes"], f["count"]
    return 0, 0


with tempfile.TemporaryDirectory() as tmp:
    # ---- the C program: sites in the program, its library and threads ----
    rec = os.path.join(tmp, "sites.btr")
    alone = run([program, lib])
    check(alone.returncode == 0, "the program runs alone", alone.stderr)
    p = run([tool, "record", "-o", rec, "--", program, lib])
    check(p.returncode == 0, "record exits with the program's status", p.stderr)
    check(p.stdout == alone.stdout and "checksum" in p.stdout,
          "recording does not change what the program computes", p.stdout + " vs " + alone.stdout)
    r = report(rec)
    if r is not None:
        peak = r["peak"]
        expected_peak = {"peak_big": (800000, 8), "peak_small": (100000, 4),
                         "lib_hold": (150000, 3), "thread_hold": (120000, 40),
                         "thread_leak": (4 * 1234, 4)}
        for fn, (nbytes, count) in expected_peak.items():
            got = by_function(peak["sites"], fn)[:2]
            check(got == (nbytes, count), f"peak: {fn} holds {nbytes} bytes in {count} blocks",
                  str(got))
            check(merged(peak["functions"], fn) == (nbytes, count),
                  f"peak by function: {fn}", str(peak["functions"]))
        ours = sum(b for b, _ in expected_peak.values())
        check(ours <= peak["bytes"] <= ours + 16384,
              "peak.bytes is the program's blocks plus at most 16 KiB of libc's",
              f"{peak['bytes']} vs {ours}")
        # The library's site: resolved in the shared library, called from peak_lib.
        _, _, lib_sites = by_function(peak["sites"], "lib_hold")
        check(lib_sites and lib_sites[0]["frames"][:2] == ["lib_hold", "peak_lib"] and
              "trace_sites_lib.c:" in lib_sites[0]["locations"][0],
              "the library's frame has its function, file and line, its caller next",
              json.dumps(lib_sites)[:600])
        _, _, big = by_function(peak["sites"], "peak_big")
        check(big and big[0]["frames"][:2] == ["peak_big", "main"],
              "frames innermost first", json.dumps(big)[:400])
        check(r["threads"] >= 1 + 4 + 2, "every thread is in the recording", str(r["threads"]))

        leaks = r["leaks"]
        expected_leaks = {"leak_here": (3 * 777, 3), "lib_leak": (2 * 4321, 2),
                          "aligned_leak": (640, 1), "thread_leak": (4 * 1234, 4)}
        for fn, (nbytes, count) in expected_leaks.items():
            check(by_function(leaks["sites"], fn)[:2] == (nbytes, count),
                  f"leaks: {fn} leaks {nbytes} bytes in {count} blocks",
                  str(by_function(leaks["sites"], fn)[:2]))
        for fn in ("peak_big", "peak_small", "lib_hold", "thread_hold", "temp_site", "grow_site"):
            check(by_function(leaks["sites"], fn)[1] == 0, f"leaks: nothing from {fn}")

        allocs = r["allocations"]["sites"]
        got = by_function(allocs, "temp_site")
        check(got[:2] == (64000, 1000) and sum(s["temporary"] for s in got[2]) == 1000,
              "temp_site: 1000 allocations of 64 bytes, all temporary", json.dumps(got[2])[:300])
        check(by_function(r["temporary"]["sites"], "temp_site")[1] == 1000,
              "the temporary list counts temp_site's 1000")
        got = by_function(allocs, "grow_site")
        check(got[:2] == (55000, 10), "grow_site: 10 reallocs, 1000 to 10000 bytes", str(got[:2]))
        check(r["calls"]["realloc"] >= 10 and r["calls"]["aligned_alloc"] >= 1 and
              r["calls"]["calloc"] >= 2, "the calls by function", str(r["calls"]))
        # The robustness part ran recorded: the allocating signal handler's
        # and the churn threads' allocations are there.
        check(by_function(allocs, "churn")[1] >= 40000, "both churn threads' 20000 allocations",
              str(by_function(allocs, "churn")[:2]))
        check(by_function(allocs, "allocating_handler")[1] > 0,
              "allocations in the signal handler are recorded", p.stderr)
        print("test_trace_report: " + p.stderr.strip().split("\n")[0])

        table = run([tool, "report", rec])
        check(table.returncode == 0 and "PEAK:" in table.stdout and "LEAKS:" in table.stdout and
              "peak_big (" in table.stdout, "the table names the peak's sites", table.stdout[:800])

    # ---- C++: operator new, containers ----
    if cxx:
        crec = os.path.join(tmp, "cxx.btr")
        p = run([tool, "record", "-o", crec, "--", cxx])
        check(p.returncode == 0 and "sum 8" in p.stdout, "the C++ program runs recorded", p.stderr)
        r = report(crec)
        if r is not None:
            check(by_function(r["peak"]["sites"], "cxx_peak()")[:2] == (9600, 1),
                  "C++ peak: new Node[100] in cxx_peak()", json.dumps(r["peak"]["sites"])[:500])
            check(by_function(r["peak"]["sites"], "cxx_vector()")[:2] == (40024, 2),
                  "C++ peak: the vector (24) and its reserve (40000) count at cxx_vector()",
                  json.dumps(r["peak"]["functions"]))
            got = by_function(r["leaks"]["sites"], "cxx_leak()")
            check(got[:2] == (480, 5), "C++ leaks: 5 Nodes from cxx_leak()", str(got[:2]))
            check(got[2] and got[2][0]["frames"][0].startswith("operator new") and
                  got[2][0]["frames"][1] == "cxx_leak()",
                  "C++ frames: operator new, then its caller", json.dumps(got[2])[:400])
    else:
        print("test_trace_report: no C++ compiler, the C++ program is not checked")

    # ---- convert, both ways ----
    text = os.path.join(tmp, "sites.rep")
    p = run([tool, "convert", rec, text])
    check(p.returncode == 0 and os.path.exists(text), "convert to text", p.stderr)
    p = run([tool, "replay", "--reps", "0", text, rec])
    check(p.returncode == 0, "the converted trace and the recording replay cleanly",
          p.stdout + p.stderr)
    back = os.path.join(tmp, "back.btr")
    p = run([tool, "convert", text, back])
    check(p.returncode == 0, "convert text to a recording", p.stderr)
    a, b = report(text), report(back)
    if r is not None and a is not None and b is not None:
        orig = report(rec)
        check(a["peak"]["bytes"] == b["peak"]["bytes"] == orig["peak"]["bytes"] and
              a["leaks"]["bytes"] == orig["leaks"]["bytes"],
              "the text round trip keeps peak and leaks",
              f"{a['peak']['bytes']} {b['peak']['bytes']} {orig['peak']['bytes']}")

    # ---- bad files: packed (what record keeps) and raw (--raw) ----
    data = open(rec, "rb").read()
    raw_rec = os.path.join(tmp, "raw.btr")
    p = run([tool, "record", "--raw", "-o", raw_rec, "--", program])
    check(p.returncode == 0, "record --raw", p.stderr)
    raw = open(raw_rec, "rb").read()
    check(raw[:8] == b"BRISKTRC" and data[:8] == b"BRISKPAK", "record packs unless --raw")
    rr = report(raw_rec)
    check(rr is not None and rr["leaks"]["count"] > 0, "a raw recording reports too")
    cases = [("truncated.btr", data[: len(data) // 2], "truncated: the compressed data ends early"),
             ("truncated-raw.btr", raw[: len(raw) // 2], "truncated"),
             ("headless.btr", data[:20], "truncated: the file ends inside its 32-byte header"),
             ("noend.btr", raw[: raw.rfind(b"CHNK")], "no end record"),
             ("future-raw.btr", raw[:8] + bytes([9, 0, 0, 0]) + raw[12:],
              "recording format version 9; this brisk-trace reads versions 1 to 3"),
             ("future.btr", data[:8] + bytes([9, 0, 0, 0]) + data[12:],
              "recording format version 9; this brisk-trace reads versions 1 to 3"),
             ("foreign.btr", open(sys.executable, "rb").read(4096),
              "not a brisk-trace recording: it starts with bytes 7f 45 4c 46")]
    for name, content, message in cases:
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(content)
        p = run([tool, "report", path])
        check(p.returncode == 1 and p.stderr.startswith(path + ":") and message in p.stderr,
              f"{name}: a clear error", p.stderr)

    # Allocator samples (version 2), in a recording made by hand: one
    # malloc, then a sample with one value more than this reader knows
    # (skipped); packing keeps it; a sample cut short is refused.
    def varints(*values):
        out = b""
        for v in values:
            while v >= 0x80:
                out += bytes([v & 0x7f | 0x80])
                v >>= 7
            out += bytes([v])
        return out

    def hand_made(sample):
        payload = bytes([1]) + varints(1, 500, 0x1000, 64, 0) + sample + bytes([0x43]) + varints(1, 0, 0)
        return (b"BRISKTRC" + (2).to_bytes(4, "little") + (32).to_bytes(4, "little") +
                (4242).to_bytes(8, "little") + (1000).to_bytes(8, "little") + b"CHNK" +
                len(payload).to_bytes(4, "little") + (7).to_bytes(4, "little") +
                (0).to_bytes(4, "little") + payload)

    sampled = os.path.join(tmp, "sampled.btr")
    with open(sampled, "wb") as f:
        f.write(hand_made(bytes([0x44]) + varints(2, 600, 9, 5 << 20, 12 << 20, 3, 4, 5, 6, 7, 8, 9)))
    packed = os.path.join(tmp, "sampled-packed.btr")
    p = run([tool, "convert", "--to", "recording", sampled, packed])
    check(p.returncode == 0, "a recording with a sample packs", p.stderr)
    for path in (sampled, packed):
        got = report(path)
        check(got is not None and got["events"] == 1 and got["allocator"] ==
              {"samples": 1, "mapped_bytes_most": 12 << 20, "resident_bytes_most": 5 << 20},
              f"{os.path.basename(path)}: the allocator sample is read",
              str(got and got["allocator"]))
    cut = os.path.join(tmp, "sample-cut.btr")
    with open(cut, "wb") as f:
        f.write(hand_made(bytes([0x44]) + varints(2, 600, 9, 1, 2)))
    p = run([tool, "report", cut])
    check(p.returncode == 1 and "the allocator sample runs past the end of its chunk" in p.stderr,
          "a sample cut short is refused", p.stderr)

    # Version 1 recordings (before allocator samples) are still read:
    # the same file marked version 1, packed and raw, reports the same.
    for name, content, original in (("v1.btr", data, rec), ("v1-raw.btr", raw, raw_rec)):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(content[:8] + bytes([1, 0, 0, 0]) + content[12:])
        old, now = report(path), report(original)
        check(old is not None and now is not None and
              {k: v for k, v in old.items() if k != "recording"} ==
              {k: v for k, v in now.items() if k != "recording"},
              f"{name}: a version 1 recording reads as before")

    # Times in a packed recording (the 'W' record): the raw ones rounded
    # down to the tick of 1 ms. By hand: malloc at 0.5 ms, malloc at
    # 2.7 ms (the peak), free at 5.2 ms.
    payload = (bytes([1]) + varints(1, 500000, 0x1000, 64, 0) +
               bytes([1]) + varints(1, 2200000, 0x2000, 100, 0) +
               bytes([10]) + varints(1, 2500000, 0x1000, 0) + bytes([0x43]) + varints(3, 0, 0))
    timed = os.path.join(tmp, "timed.btr")
    with open(timed, "wb") as f:
        f.write(b"BRISKTRC" + (2).to_bytes(4, "little") + (32).to_bytes(4, "little") +
                (4242).to_bytes(8, "little") + (1000).to_bytes(8, "little") + b"CHNK" +
                len(payload).to_bytes(4, "little") + (7).to_bytes(4, "little") +
                (0).to_bytes(4, "little") + payload)
    timed_packed = os.path.join(tmp, "timed-packed.btr")
    p = run([tool, "convert", "--to", "recording", timed, timed_packed])
    check(p.returncode == 0, "a hand-made recording packs", p.stderr)
    raw_r, packed_r = report(timed), report(timed_packed)
    check(raw_r is not None and raw_r["duration_ns"] == 5200000 and
          raw_r["peak"]["time_ns"] == 2700000, "the raw recording's times",
          str(raw_r and (raw_r["duration_ns"], raw_r["peak"])))
    check(packed_r is not None and packed_r["duration_ns"] == 5000000 and
          packed_r["peak"]["time_ns"] == 2000000 and packed_r["peak"]["bytes"] == 164 and
          packed_r["events"] == 3, "packed times are rounded down to 1 ms",
          str(packed_r and (packed_r["duration_ns"], packed_r["peak"])))

    # A packed file from before the 'W' record: times as 'K' records of
    # 0.1 ms among the events (made by hand; zstd's command compresses it).
    zstd = shutil.which("zstd")
    if zstd is not None:
        stream = (b"H" + varints(1, 7) + b"T" + varints(0) + b"K" + varints(27) +
                  bytes([1]) + varints(0, 64, 0) + b"K" + varints(25) + bytes([10]) +
                  varints(2, 0) + b"E" + varints(2, 0))
        z = subprocess.run([zstd, "-q", "-c"], input=stream, capture_output=True)
        old_packed = os.path.join(tmp, "old-packed.btr")
        with open(old_packed, "wb") as f:
            f.write(b"BRISKPAK" + (2).to_bytes(4, "little") + (32).to_bytes(4, "little") +
                    (4242).to_bytes(8, "little") + bytes(8) + z.stdout)
        got = report(old_packed)
        check(got is not None and got["events"] == 2 and got["duration_ns"] == 5200000 and
              got["peak"]["time_ns"] == 2700000 and got["peak"]["bytes"] == 64,
              "a packed file with 'K' records reads as before",
              str(got and (got["duration_ns"], got["peak"])))

print(f"test_trace_report: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures or checks == 0 else 0)
