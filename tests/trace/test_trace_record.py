#!/usr/bin/env python3
"""brisk-trace record on real programs: a C program with a known pattern
(every allocation function, two threads, a forked child), and a Python 3
interpreter. Each recording, converted to the malloc-lab text format,
must hold what the program did, and replay cleanly through brisk's heap
and the system malloc.

usage: test_trace_record.py BRISK_TRACE TRACE_TEST_PROGRAM
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

tool, program = sys.argv[1], sys.argv[2]
failures = checks = 0


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def read_trace(recording):
    path = recording + ".rep"
    p = subprocess.run([tool, "convert", "--to", "text", recording, path], capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0, f"convert {recording}", p.stderr)
    with open(path) as f:
        lines = f.read().split("\n")
    header = [int(x) for x in lines[:4]]
    ops = [l.split() for l in lines[4:] if l.strip()]
    return header, ops


def replay(paths):
    return subprocess.run([tool, "replay", "--reps", "0"] + paths, capture_output=True,
                          text=True, timeout=120)


with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "prog.btr")
    p = subprocess.run([tool, "record", "-o", out, "--", program], capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0, "record exits with the program's status", p.stderr)
    m = re.search(r"child (\d+)", p.stdout)
    check(m is not None, "the program printed its child's pid", p.stdout)
    child_pid = m.group(1) if m else "0"
    child = os.path.join(tmp, f"prog.{child_pid}.btr")
    check(f"brisk-trace: recorded" in p.stderr and "in " + out in p.stderr,
          "the tool names the main trace", p.stderr)
    check(f"child process {child_pid}: {child}" in p.stderr,
          "the tool names the child's recording FILE.PID.btr", p.stderr)
    check(os.path.exists(out) and os.path.exists(child), "both recordings exist",
          str(os.listdir(tmp)))

    header, ops = read_trace(out)
    check(header[2] == len(ops), "header op count matches", f"{header} vs {len(ops)}")
    check(header[1] == sum(1 for o in ops if o[0] == "a"), "one id per allocation")
    allocs = [o for o in ops if o[0] == "a"]
    sizes = [(o[2], o[3] if len(o) > 3 else None) for o in allocs]
    for size, align, what in [("12345", None, "malloc"), ("330", None, "calloc"),
                              ("40", None, "realloc(NULL, n)"), ("1000", "64", "posix_memalign"),
                              ("256", "128", "aligned_alloc"), ("100", "256", "memalign"),
                              ("101", "64", "memalign(48): the alignment honoured"),
                              ("10", str(os.sysconf("SC_PAGE_SIZE")), "valloc")]:
        check((size, align) in sizes, f"{what} recorded as a {size} {align or ''}", str(sizes[:12]))
    check(["r", "2", "50000"] in ops, "realloc recorded as r", str(ops[:12]))
    check(sum(1 for o in allocs if o[2] == "4242") == 2000, "both threads' 2000 allocations",
          str(sum(1 for o in allocs if o[2] == "4242")))
    check(not any(o[2] == "777" for o in allocs), "the child's blocks are not in the parent's trace")
    freed = {o[1] for o in ops if o[0] == "f"}
    check(all(o[1] in freed for o in allocs if o[2] in ("12345", "4242")),
          "frees of known blocks recorded")

    cheader, cops = read_trace(child)
    check([o[2] for o in cops if o[0] == "a"] == ["777"] * 10, "the child's trace holds its 10 blocks",
          str(cops))
    check(sum(1 for o in cops if o[0] == "f") == 10,
          "the child's free of a pre-fork block is not recorded", str(cops))

    r = replay([out, child])
    check(r.returncode == 0, "both traces replay cleanly", r.stdout + r.stderr)
    check("prog " in r.stdout and f"prog.{child_pid}" in r.stdout, "both in the table", r.stdout)

    # Recording again at once under the same name: the first run's child
    # recording (packed, and written less than a second ago) is not the
    # new run's, and is left alone.
    p = subprocess.run([tool, "record", "-o", out, "--", program], capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0 and "brisk-trace record:" not in p.stderr and
          f"child process {child_pid}:" not in p.stderr,
          "a second run names only its own child", p.stderr)
    check(read_trace(child)[1] == cops, "and the first run's child recording is intact")

    # A real interpreter (the test's own Python, run directly, not through
    # a wrapper script, so it is one process).
    py = os.path.join(tmp, "py.btr")
    code = "d = {i: str(i) * 10 for i in range(20000)}\nl = [bytes(i % 300) for i in range(5000)]\ndel d\n"
    p = subprocess.run([tool, "record", "-o", py, "--", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0 and os.path.exists(py), "python recorded", p.stderr)
    if os.path.exists(py):
        header, ops = read_trace(py)
        check(header[2] > 2000, "python's trace has its allocations", str(header))
        r = replay([py])
        check(r.returncode == 0, "python's trace replays cleanly", r.stdout + r.stderr)

    # Frees without stacks: the same calls, a smaller file.
    lean = os.path.join(tmp, "lean.btr")
    p = subprocess.run([tool, "record", "-o", lean, "--no-free-stacks", "--", program],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "record --no-free-stacks", p.stderr)
    header, ops = read_trace(lean)
    check(sum(1 for o in ops if o[0] == "a" and o[2] == "4242") == 2000,
          "--no-free-stacks records every call", str(header))
    r = replay([lean])
    check(r.returncode == 0, "the --no-free-stacks recording replays cleanly", r.stdout + r.stderr)

print(f"test_trace_record: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures or checks == 0 else 0)
