#!/usr/bin/env python3
"""The classic allocator patterns (bench/malloc/classic) under brisk, brisk
hardened, glibc, jemalloc, mimalloc, tcmalloc and LLVM's scudo.

    python3 bench/malloc/classic/run.py --build build [--runs 5] [--scale 1]
        [--only larson,cfrac,...] [--allocators brisk,glibc,...] [--raw FILE]
    python3 bench/malloc/classic/run.py --build build --smoke

Each program runs as its own process, under each allocator through
LD_PRELOAD (glibc: no preload; brisk hardened: libbrisk.so with
BRISK_OPTIONS=hardened). In every round each program runs once under
every allocator, in an order that rotates from program to program and
round to round, so drift in the machine's load falls on all of them
alike. The launcher bench/malloc/classic/measure.c measures the wall time
of the process, from fork to exit, its CPU time and its peak RSS
(ru_maxrss from wait4); the runner reads the result value
the program prints: it must be the same under every allocator and in every
run, or the runner says so and exits with status 1.

It prints per program the median wall time, CPU time and peak RSS of the runs
with their spread (± half the range, in percent of the median), the ratios
of medians to mimalloc's and to brisk's default level, the geometric means
over the programs that write their memory, a separate line for the
programs that allocate without touching, and the bars of issues 12 and 13.
A peer library that is not installed is left out, with a line saying so.

--allocators brisk,hardened,canary,wipe,guard,delay,nowipe adds each
hardening part alone (BRISK_OPTIONS=canary, ...) and every part but the
wipe (nowipe: canary,guard,delay), to see what each costs (issue 12).

--allocators brisk,profile,profile_hooks adds brisk under sampled heap
profiling (issue 15): BRISK_OPTIONS=profile at the default rate, and at a
rate that samples nothing (the hooks' cost alone); they are not in the
default set.

--smoke (the ctest test): every program once at scale 0.01 under glibc,
brisk and brisk hardened; only the result values are checked.
"""
import argparse
import glob
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = {  # name: (library, Debian package)
    "jemalloc": (LIBDIR + "/libjemalloc.so.2", "libjemalloc2"),
    "mimalloc": (LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0"),
    "tcmalloc": (LIBDIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "scudo": (None, "libclang-rt-14-dev"),
}
ALL_ALLOCATORS = ["brisk", "hardened", "glibc", "jemalloc", "mimalloc", "tcmalloc", "scudo"]
# Run only when asked for (--allocators): brisk with sampled heap
# profiling at its default rate, its exit profiles written to a temporary
# directory (the write is part of what profiling costs); and
# profile_hooks, the same at a rate of 1 TiB, which samples nothing: the
# cost of the hooks, start-up and the exit dump without the samples.
# And the hardening parts alone, and all but the wipe.
HARDENING_PARTS = {"canary": "canary", "wipe": "wipe", "guard": "guard", "delay": "delay",
                   "nowipe": "canary,guard,delay"}
EXTRA_ALLOCATORS = ["profile", "profile_hooks"] + list(HARDENING_PARTS)
PROFILE_DIR = None
TIMEOUT = 300  # seconds for one run of one program


def scudo_library():
    found = sorted(glob.glob("/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so"))
    found += sorted(glob.glob("/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so"))
    return found[0] if found else "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so"


def programs(ncpu):
    """(name, binary, arguments after SCALE, writes its memory?)."""
    n = str(max(2, ncpu))
    two_n = str(2 * max(2, ncpu))
    return [
        ("larson", "larson", [n], True),
        ("cfrac", "cfrac", [], True),
        ("espresso", "espresso", [], True),
        ("barnes", "barnes", [], True),
        ("mstress", "mstress", [two_n], True),
        ("rptest", "rptest", [n], True),
        ("alloc_test1", "alloc_test", ["1"], True),
        ("alloc_testN", "alloc_test", [n], True),
        ("xmalloc_test", "xmalloc_test", [n], True),
        ("cache_scratch1", "cache_scratch", ["1"], True),
        ("cache_scratchN", "cache_scratch", [n], True),
        ("cache_thrash1", "cache_thrash", ["1"], True),
        ("cache_thrashN", "cache_thrash", [n], True),
        ("glibc_simple", "glibc_simple", [], True),
        ("glibc_thread", "glibc_thread", [two_n], True),
        ("malloc_large", "malloc_large", [], True),
        ("thread_exit", "thread_exit", [], True),
        ("sparse_touch", "sparse_touch", [], True),
        ("simple_untouched", "glibc_simple", ["untouched"], False),
        ("large_untouched", "malloc_large", ["untouched"], False),
    ]


def configurations(build, wanted):
    """name -> (LD_PRELOAD or None, BRISK_OPTIONS or None); and notes."""
    brisk = os.path.join(build, "libbrisk.so")
    if not os.path.exists(brisk):
        sys.exit(f"run.py: {brisk} is missing: build brisk first (cmake --build {build})")
    global PROFILE_DIR
    configs, notes = {}, []
    for name in wanted:
        if name == "brisk":
            configs[name] = (brisk, None)
        elif name == "hardened":
            configs[name] = (brisk, "hardened")
        elif name in HARDENING_PARTS:
            configs[name] = (brisk, HARDENING_PARTS[name])
        elif name in ("profile", "profile_hooks"):
            PROFILE_DIR = PROFILE_DIR or tempfile.mkdtemp(prefix="brisk-bench-profiles-")
            rate = "profile" if name == "profile" else "profile=1099511627776"
            configs[name] = (brisk, rate + ",profile_path=" + os.path.join(PROFILE_DIR, "%p.btr"))
        elif name == "glibc":
            configs[name] = (None, None)
        else:
            lib, package = PEERS[name]
            if lib is None:
                lib = scudo_library()
            if os.path.exists(lib):
                configs[name] = (lib, None)
            else:
                notes.append(f"MISSING: {name} is left out: {lib} not found "
                             f"(install it with: apt-get install {package})")
    return configs, notes


def run_once(measure, binary, args, preload, options, scale):
    """(wall seconds, peak RSS KiB, CPU seconds, result or None, error or None).
    The program runs under the launcher `measure` (measure.c says why)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "BRISK_OPTIONS")}
    if options:
        env["BRISK_OPTIONS"] = options
    argv = [measure, "-t", str(TIMEOUT)] + (["-p", preload] if preload else []) + ["--", binary, str(scale)] + args
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace").strip().splitlines()
    measured = {}
    if proc.returncode == 0 and stderr and stderr[-1].startswith("measure: "):
        measured = dict(f.split("=", 1) for f in stderr[-1].split()[1:])
        stderr = stderr[:-1]
    if not measured:
        return 0.0, 0, 0.0, None, "measure failed: " + " | ".join(stderr[-3:])
    wall, cpu, maxrss, status = (float(measured["wall_seconds"]), float(measured["cpu_seconds"]),
                                 int(measured["maxrss_kib"]), int(measured["status"]))
    result = None
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].startswith("result="):
            result = fields[1][len("result="):]
    if status != 0 or result is None:
        why = (f"exit status {status}" if status >= 0
               else f"killed by signal {-status}" + (" (timeout)" if wall >= TIMEOUT else ""))
        tail = " | ".join((stderr or ["(no output)"])[-3:])
        return wall, maxrss, cpu, None, f"{why}: {tail}"
    return wall, maxrss, cpu, result, None


def median(v):
    return statistics.median(v)


def spread(v):
    m = median(v)
    return 0.0 if m == 0 else (max(v) - min(v)) / 2 / m * 100


def geomean(v):
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v and all(x > 0 for x in v) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the build directory (holds libbrisk.so)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each program under each allocator (default 5)")
    ap.add_argument("--scale", type=float, default=None, help="work multiplier for every program (default 1)")
    ap.add_argument("--only", default="", help="comma-separated programs (names as in the table)")
    ap.add_argument("--allocators", default="",
                    help="comma-separated, of: " + ",".join(ALL_ALLOCATORS + EXTRA_ALLOCATORS))
    ap.add_argument("--raw", default="", help="also write every measurement to this file")
    ap.add_argument("--smoke", action="store_true", help="once each at scale 0.01 under glibc and brisk; check results")
    opts = ap.parse_args()

    build = os.path.abspath(opts.build)
    bindir = os.path.join(build, "bench", "malloc", "classic")
    ncpu = os.cpu_count() or 2
    table = programs(ncpu)
    if opts.only:
        wanted = opts.only.split(",")
        unknown = [w for w in wanted if w not in [p[0] for p in table]]
        if unknown:
            sys.exit(f"run.py: --only: no program named {', '.join(unknown)} "
                     f"(there are: {', '.join(p[0] for p in table)})")
        table = [p for p in table if p[0] in wanted]
    measure = os.path.join(bindir, "measure")
    for binary in ["measure"] + [p[1] for p in table]:
        path = os.path.join(bindir, binary)
        if not os.access(path, os.X_OK):
            sys.exit(f"run.py: {path} is missing: build the classic_programs target first")
    if opts.runs < 1:
        sys.exit(f"run.py: --runs must be at least 1, not {opts.runs}")
    scale = opts.scale if opts.scale is not None else (0.01 if opts.smoke else 1.0)
    if not 0 < scale <= 100:
        sys.exit(f"run.py: --scale must be in (0, 100], not {scale}")
    names = ["glibc", "brisk", "hardened"] if opts.smoke else ALL_ALLOCATORS
    if opts.allocators:
        names = opts.allocators.split(",")
        known = ALL_ALLOCATORS + EXTRA_ALLOCATORS
        unknown = [a for a in names if a not in known]
        if unknown:
            sys.exit(f"run.py: --allocators: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    configs, notes = configurations(build, names)
    allocators = [a for a in names if a in configs]
    runs = 1 if opts.smoke else opts.runs

    if not opts.smoke:
        model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        print(f"classic allocator patterns: {runs} runs, scale {scale:g}, {ncpu} cores ({model}), "
              f"{platform.system()} {platform.release()}, load average {os.getloadavg()[0]:.2f} at the start")
        for a in allocators:
            preload, options = configs[a]
            print(f"  {a:<9} {preload or '(no preload: the C library)'}" + (f" BRISK_OPTIONS={options}" if options else ""))
    for note in notes:
        print(note)
    sys.stdout.flush()

    wall, rss, cpu, results, failures = {}, {}, {}, {}, []
    raw = open(opts.raw, "w") if opts.raw else None
    for r in range(runs):
        for i, (name, binary, args, _) in enumerate(table):
            n = len(allocators)
            for k in range(n):
                a = allocators[(k + i + r) % n]
                preload, options = configs[a]
                w, m, c, result, error = run_once(measure, os.path.join(bindir, binary), args,
                                                  preload, options, scale)
                if raw:
                    print(name, a, r, f"{w:.4f}", m, f"{c:.4f}", result or "FAILED", file=raw, flush=True)
                if error:
                    failures.append((name, a))
                    print(f"FAILED: {name} under {a}: {error}", flush=True)
                    continue
                wall.setdefault((name, a), []).append(w)
                rss.setdefault((name, a), []).append(m / 1024.0)
                cpu.setdefault((name, a), []).append(c)
                results.setdefault(name, {}).setdefault(result, set()).add(a)
        if not opts.smoke:
            print(f"round {r + 1}/{runs} done (load average {os.getloadavg()[0]:.2f})", flush=True)

    mismatches = {name: seen for name, seen in results.items() if len(seen) > 1}
    if opts.smoke:
        for name, _, _, _ in table:
            seen = results.get(name, {})
            if name not in mismatches and seen:
                value, = seen
                print(f"ok: {name} result={value} under {', '.join(sorted(seen[value]))}")
    else:
        report(table, allocators, wall, rss, cpu)
    for name, seen in mismatches.items():
        print(f"\nRESULT MISMATCH: {name} computed different values: " +
              "; ".join(f"{v} under {', '.join(sorted(s))}" for v, s in seen.items()))
    if failures or mismatches:
        print(f"\nrun.py: {len(failures)} failed runs, {len(mismatches)} programs with differing results")
        return 1
    return 0


def report(table, allocators, wall, rss, cpu):
    w = 13
    names = [p[0] for p in table]

    def row(label, cells):
        print(f"{label:<17}" + "".join(f"{c:>{w}}" for c in cells))

    def cell(data, key, fmt):
        v = data.get(key)
        return "FAILED" if not v else f"{fmt.format(median(v))} ±{spread(v):.0f}%"

    print("\nWall time, seconds: median ± half the range, in % of the median")
    row("program", allocators)
    for name in names:
        row(name, [cell(wall, (name, a), "{:.3f}") for a in allocators])
    print("\nCPU time (user + system, all threads), seconds: median ± half the range"
          " (less disturbed than wall time when other jobs share the cores)")
    row("program", allocators)
    for name in names:
        row(name, [cell(cpu, (name, a), "{:.3f}") for a in allocators])
    print("\nPeak RSS, MiB: median ± half the range")
    row("program", allocators)
    for name in names:
        row(name, [cell(rss, (name, a), "{:.1f}") for a in allocators])

    def ratio(data, name, a, b):
        if (name, a) not in data or (name, b) not in data:
            return None
        return median(data[(name, a)]) / median(data[(name, b)])

    def fmt(x):
        return "-" if x is None else f"{x:.2f}x"

    for what, data in (("time", wall), ("peak RSS", rss)):
        for base in ("mimalloc", "brisk"):
            if base not in allocators:
                continue
            print(f"\n{what} / {base}'s (ratio of medians)")
            row("program", allocators)
            for name in names:
                row(name, [fmt(ratio(data, name, a, base)) for a in allocators])

    groups = [("programs that write their memory", [p[0] for p in table if p[3]]),
              ("untouched (allocate, do not write)", [p[0] for p in table if not p[3]])]
    for title, group in groups:
        if not group:
            continue
        print(f"\nGeometric means, {title} ({len(group)}; an allocator with a failed program has none)")
        row("", allocators)
        means = {}
        for label, data, f in (("time, s", wall, "{:.3f}"), ("CPU time, s", cpu, "{:.3f}"),
                               ("peak RSS, MiB", rss, "{:.1f}")):
            means[label] = {a: (geomean([median(data[(n, a)]) for n in group])
                                if all((n, a) in data for n in group) else None) for a in allocators}
            row(label, ["-" if means[label][a] is None else f.format(means[label][a]) for a in allocators])
        for label, key in (("time", "time, s"), ("CPU", "CPU time, s"), ("RSS", "peak RSS, MiB")):
            for base in ("mimalloc", "brisk"):
                if base in allocators and means[key][base]:
                    row(f"{label} / {base}", [fmt(None if means[key][a] is None else means[key][a] / means[key][base])
                                              for a in allocators])

    touched = groups[0][1]
    if not touched or "brisk" not in allocators:
        return
    print("\nBars (over the programs that write their memory)")

    def gm_ratio(data, a, b):
        rs = [ratio(data, n, a, b) for n in touched]
        return None if any(x is None for x in rs) else geomean(rs)

    def verdict(ok):
        return "met" if ok else "MISSED"

    def above(data, a, b, limit):
        out = [f"{n} {ratio(data, n, a, b):.2f}x" for n in touched
               if ratio(data, n, a, b) is not None and ratio(data, n, a, b) > limit]
        return "none" if not out else ", ".join(out)

    if "mimalloc" in allocators:
        g = gm_ratio(rss, "brisk", "mimalloc")
        if g:
            print(f"  issue 13: geomean peak RSS <= 1.0x mimalloc's: {g:.2f}x, {verdict(g <= 1.0)}")
        print(f"  issue 13: no peak RSS above 1.5x mimalloc's: {above(rss, 'brisk', 'mimalloc', 1.5)}")
        g = gm_ratio(wall, "brisk", "mimalloc")
        if g:
            print(f"  issue 13: geomean time <= 0.9x mimalloc's: {g:.2f}x, {verdict(g <= 0.9)}")
            print(f"  issue 12: default level's geomean time <= 1.0x mimalloc's: {g:.2f}x, {verdict(g <= 1.0)}")
        print(f"  issue 13: no time above 1.1x mimalloc's: {above(wall, 'brisk', 'mimalloc', 1.1)}")
    if "hardened" in allocators:
        g = gm_ratio(wall, "hardened", "brisk")
        if g:
            print(f"  issue 12: hardened geomean time <= 1.3x the default's: {g:.2f}x, {verdict(g <= 1.3)}")
        print(f"  issue 12: no hardened time above 3x the default's: {above(wall, 'hardened', 'brisk', 3.0)}")
        if "scudo" in allocators:
            g = gm_ratio(wall, "hardened", "scudo")
            if g:
                print(f"  issue 12: hardened geomean time <= 0.5x scudo's: {g:.2f}x, {verdict(g <= 0.5)}")
    if "profile" in allocators:
        for label, data in (("time", wall), ("CPU time", cpu)):
            g = gm_ratio(data, "profile", "brisk")
            if g:
                print(f"  issue 15: profiling's geomean {label} <= 1.02x the default's: {g:.3f}x, "
                      f"{verdict(g <= 1.02)}")
        print(f"  issue 15: programs whose time under profiling is above 1.05x the default's: "
              f"{above(wall, 'profile', 'brisk', 1.05)}")
        if "profile_hooks" in allocators:
            for label, data in (("time", wall), ("CPU time", cpu)):
                g = gm_ratio(data, "profile_hooks", "brisk")
                if g:
                    print(f"  issue 15: of that, the hooks without samples (profile_hooks): geomean "
                          f"{label} {g:.3f}x the default's")
        written = len(os.listdir(PROFILE_DIR)) if PROFILE_DIR else 0
        print(f"  (the runs under profiling wrote {written} profiles in {PROFILE_DIR})")


if __name__ == "__main__":
    sys.exit(main())
