#!/usr/bin/env python3
"""Recording overhead: brisk-trace record side by side with heaptrack.

For each workload: the wall-clock time alone, under `brisk-trace record`
and under `heaptrack` (its interpreter included, as a user waits for it),
RUNS times each with the three taking turns (a different one first each
round); prints the medians, half the range as +-%, the slowdowns (median
over median alone, same run) and the file sizes (brisk-trace: the
recording, children included; heaptrack: its .zst file).

usage: overhead.py BUILD_DIR [RUNS] [WORKLOAD...]
  (bench/CMakeLists.txt builds alloc_heavy and mt_alloc into BUILD_DIR/bench/trace)
"""
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

build = os.path.abspath(sys.argv[1])
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
only = sys.argv[3:]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tool = os.path.join(build, "tools", "brisk-trace")
workloads_dir = os.path.join(root, "bench", "traces", "workloads")
heaptrack = shutil.which("heaptrack")
cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True, text=True).stdout.strip()
# cc1 (the compiler proper, one process) on a file gcc -E preprocessed.
scratch = tempfile.mkdtemp(prefix="overhead-")
preprocessed = os.path.join(scratch, "replay.i")
subprocess.run(["gcc", "-E", "-I", os.path.join(root, "tools", "trace"), "-I",
                os.path.join(root, "include"), os.path.join(root, "tools", "trace", "replay.c"),
                "-o", preprocessed], check=True)

WORKLOADS = [
    ("alloc-heavy C", [os.path.join(build, "bench", "trace", "alloc_heavy")], None),
    ("python3", ["/usr/bin/python3", os.path.join(workloads_dir, "python_workload.py")], None),
    ("git log -p", ["git", "-C", root, "log", "-p", "-n", "300", "--no-color"], None),
    ("sqlite3", ["sqlite3", ":memory:"], os.path.join(workloads_dir, "sqlite_session.sql")),
    ("gcc (cc1)", [cc1, "-fpreprocessed", "-quiet", "-O2", preprocessed, "-o", "/dev/null"],
     None),
    ("4 threads", [os.path.join(build, "bench", "trace", "mt_alloc")], None),
]


def timed(cmd, stdin_path, cwd):
    stdin = open(stdin_path) if stdin_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    elapsed = time.perf_counter() - t0
    if stdin_path:
        stdin.close()
    if p.returncode != 0:
        sys.exit(f"overhead.py: {cmd[:3]} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return elapsed


def spread(values):
    m = statistics.median(values)
    return m, (max(values) - min(values)) / 2 / m * 100 if m else 0.0


def mib(n):
    return f"{n / 1048576:.2f} MiB" if n >= 104858 else f"{n / 1024:.1f} KiB"


if heaptrack is None:
    sys.exit("overhead.py: heaptrack is not installed (Debian: apt-get install heaptrack)")
print(f"recording overhead, {runs} runs each, modes taking turns; wall clock on this machine "
      f"({os.cpu_count()} cores, shared with other work: medians, +- half the range)")
print(f"{'workload':<15} {'alone':>14} {'brisk-trace':>14} {'heaptrack':>14} {'slowdown bt':>12} "
      f"{'slowdown ht':>12} {'file bt':>11} {'file ht':>11}")
for name, cmd, stdin_path in WORKLOADS:
    if only and name not in only:
        continue
    times = {"alone": [], "brisk": [], "heaptrack": []}
    sizes = {"brisk": [], "heaptrack": []}
    for k in range(runs):
        order = ["alone", "brisk", "heaptrack"]
        order = order[k % 3:] + order[:k % 3]
        for mode in order:
            with tempfile.TemporaryDirectory() as tmp:
                if mode == "alone":
                    times[mode].append(timed(cmd, stdin_path, tmp))
                elif mode == "brisk":
                    out = os.path.join(tmp, "rec.btr")
                    times[mode].append(timed([tool, "record", "-o", out, "--"] + cmd, stdin_path, tmp))
                    sizes[mode].append(sum(os.path.getsize(f) for f in glob.glob(os.path.join(tmp, "rec*.btr"))))
                else:
                    out = os.path.join(tmp, "ht")
                    times[mode].append(timed([heaptrack, "-o", out] + cmd, stdin_path, tmp))
                    sizes[mode].append(sum(os.path.getsize(f) for f in glob.glob(out + "*")))
    a, ap = spread(times["alone"])
    b, bp = spread(times["brisk"])
    h, hp = spread(times["heaptrack"])
    print(f"{name:<15} {a:8.3f}s ±{ap:3.0f}% {b:8.3f}s ±{bp:3.0f}% {h:8.3f}s ±{hp:3.0f}% "
          f"{b / a:11.1f}x {h / a:11.1f}x {mib(statistics.median(sizes['brisk'])):>11} "
          f"{mib(statistics.median(sizes['heaptrack'])):>11}", flush=True)
shutil.rmtree(scratch)
