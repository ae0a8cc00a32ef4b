#!/usr/bin/env python3
"""What hardening costs: the same benchmark programs under the unchecked
build of the process allocator, the default level and the hardened level.

    python3 bench/harden/hardening_cost.py --build build [--runs 7] [--parts]
        [--only small,larson,...] [--scale 1] [--wall] [--markdown] [--programs]

The programs: the malloc benchmark suite of bench/malloc (malloc_bench:
small_churn, mixed_sizes, realloc_growth, large_blocks, producer_consumer,
many_threads, larson, binary_trees, string_hash) and the workloads of
bench/harden/workloads.c (small, mixed, fifo, threads, realloc, sparse). Each
benchmark runs as its own process with LD_PRELOAD of the library under
test and BRISK_OPTIONS set for the level.

--programs adds real programs, whose allocations are mixed with the work
they do between them, as users run them (the workloads the region heap's
traces were recorded from, bench/traces/workloads, repeated to about a
second each): python3 running python_workload.py, perl running
perl_workload.pl, sqlite3 running sqlite_session.sql on fresh in-memory
databases, and gcc -O2 compiling four of brisk's own sources (gcc forks
cc1 and as: LD_PRELOAD reaches them). Their time is the CPU time of the
whole process tree, start-up included; --wall is ignored for them. They
get a geometric mean of their own, printed apart from the benchmarks'.

Each run of a workload runs every configuration once, in an order that
rotates from run to run, so drift on a shared machine falls on all of them
alike. The time is what the workload program measured around its own loop
(not process start-up): CPU time by default, which a loaded machine
disturbs less than wall time (--wall for wall time). For each configuration the median, min and max of
the runs are printed, and two ratios of medians measured in this same
invocation:

    default / unchecked   the price of the always-on checks (budget 1.05)
    hardened / default    the price of BRISK_OPTIONS=hardened (budget 1.30)

--parts adds each hardened part alone (canary, wipe, guard, delay) with its
ratio to the default, --extra NAME=OPTIONS any other combination. The geometric mean of the per-workload ratios sums
the suite up.
"""
import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile

WORKLOADS = ["small", "mixed", "fifo", "threads", "realloc", "sparse"]
METRIC = "cpu"


def configurations(build, parts, extra):
    build = os.path.abspath(build)  # real programs run in another directory
    unchecked = os.path.join(build, "bench", "harden", "libbrisk_unchecked.so")
    checked = os.path.join(build, "libbrisk.so")
    configs = [
        ("unchecked", unchecked, ""),
        ("default", checked, ""),
        ("hardened", checked, "hardened"),
    ]
    if parts:
        for part in ("canary", "wipe", "guard", "delay"):
            configs.append((part, checked, part))
    for item in extra:
        name, _, options = item.partition("=")
        configs.append((name, checked, options))
    for _, lib, _ in configs:
        if not os.path.exists(lib):
            sys.exit(f"hardening_cost: {lib} is missing; build the bench-hardening target first")
    return configs


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def real_programs(root, scale):
    """name -> (argv, stdin text or None) for --programs (see the top)."""
    here = os.path.join(root, "bench", "traces", "workloads")
    reps = lambda n: max(1, round(n * scale))
    sql = open(os.path.join(here, "sqlite_session.sql")).read()
    sources = [os.path.join(root, f) for f in
               ("src/heap/heap.c", "src/malloc/malloc.c", "src/malloc/page.c", "tools/trace/replay.c")]
    includes = [f"-I{os.path.join(root, d)}" for d in ("include", "src", "tools/trace")]
    return {
        "python3": (["python3", "-c",
                     "import runpy, sys\n"
                     "for _ in range(int(sys.argv[2])): runpy.run_path(sys.argv[1])",
                     os.path.join(here, "python_workload.py"), str(reps(3))], None),
        "perl": (["perl", "-e", "for (1 .. $ARGV[1]) { do $ARGV[0]; die $@ if $@ }",
                  os.path.join(here, "perl_workload.pl"), str(reps(60))], None),
        "sqlite3": (["sqlite3"], ("\n.open :memory:\n" + sql) * reps(16)),
        "gcc": (["gcc", "-O2", "-c"] + includes + sources * reps(1), None),
    }


def run_once(program, workload, scale, lib, options):
    """Seconds one run took: CPU time of the child (user + system, from
    getrusage) or, with --wall, the wall time the program printed.
    program is a benchmark binary (run as `program workload scale`) or,
    for a real program, its (argv, stdin) pair, always CPU-timed."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = lib
    env["BRISK_OPTIONS"] = options
    real = isinstance(program, tuple)
    argv, stdin = program if real else ([program, workload, str(scale)], None)
    before = children_cpu()
    out = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True,
                         timeout=600, cwd=tempfile.gettempdir() if real else None)
    cpu = children_cpu() - before
    if out.returncode != 0 or (real and out.stderr.strip()):
        sys.exit(f"hardening_cost: {workload} under {lib} [{options}] failed "
                 f"({out.returncode}): {out.stderr.strip()}")
    if METRIC == "cpu" or real:
        return cpu
    fields = out.stdout.replace("=", " ").split()
    return float(fields[fields.index("seconds") + 1])


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="work per benchmark, as a multiple of the default")
    parser.add_argument("--parts", action="store_true",
                        help="also each hardened part alone")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=OPTIONS",
                        help="also libbrisk.so with BRISK_OPTIONS=OPTIONS, reported as NAME "
                             "(e.g. nowipe=canary,guard,delay); repeatable")
    parser.add_argument("--only", default="",
                        help="comma-separated benchmark names (default: all)")
    parser.add_argument("--wall", action="store_true",
                        help="compare wall time instead of CPU time")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the table in docs/benchmarks.md's format")
    parser.add_argument("--programs", action="store_true",
                        help="also real programs (python3, perl, sqlite3, gcc), summed up apart")
    args = parser.parse_args()
    global METRIC
    METRIC = "seconds" if args.wall else "cpu"

    programs = {}
    suite = os.path.join(args.build, "bench", "malloc", "malloc_bench")
    if os.path.exists(suite):
        names = subprocess.run([suite, "list"], capture_output=True, text=True).stdout.split()
        for n in names:
            programs[n] = suite
    else:
        print(f"note: {suite} not built: the malloc suite is left out", file=sys.stderr)
    own = os.path.join(args.build, "bench", "harden", "hardening_workloads")
    if not os.path.exists(own):
        sys.exit(f"hardening_cost: {own} is missing; build the bench-hardening target first")
    for n in WORKLOADS:
        programs[n] = own
    real = set()
    if args.programs:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for n, spec in real_programs(root, args.scale).items():
            programs[n] = spec
            real.add(n)
    configs = configurations(args.build, args.parts, args.extra)
    workloads = [w for w in programs if not args.only or w in args.only.split(",")]
    if not workloads:
        sys.exit("hardening_cost: no benchmark selected")
    times = {(w, c[0]): [] for w in workloads for c in configs}

    for run in range(args.runs):
        for w in workloads:
            order = configs[run % len(configs):] + configs[:run % len(configs)]
            for name, lib, options in order:
                times[(w, name)].append(run_once(programs[w], w, args.scale, lib, options))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    names = [c[0] for c in configs]
    print(f"# {args.runs} runs per configuration, interleaved; {'wall' if args.wall else 'CPU'} "
          f"seconds of each benchmark (median [min..max])")
    header = "benchmark          " + "".join(f"{n:>26}" for n in names) + "   default/unchecked  hardened/default"
    header += "".join(f"  {n}/default" for n in names[3:])
    print(header)
    ratios = {"default/unchecked": [], "hardened/default": []}
    for n in names[3:]:
        ratios[f"{n}/default"] = []
    rows = []
    for w in workloads:
        med = {n: statistics.median(times[(w, n)]) for n in names}
        cells = "".join(
            f"{med[n]:>10.4f} [{min(times[(w, n)]):.4f}..{max(times[(w, n)]):.4f}]" for n in names)
        r_default = med["default"] / med["unchecked"]
        r_hardened = med["hardened"] / med["default"]
        ratios["default/unchecked"].append(r_default)
        ratios["hardened/default"].append(r_hardened)
        line = f"{w:<18} {cells}   {r_default:>17.3f}  {r_hardened:>16.3f}"
        part_ratios = []
        for n in names[3:]:
            r = med[n] / med["default"]
            ratios[f"{n}/default"].append(r)
            part_ratios.append(r)
            line += f"  {r:>{len(n) + 8}.3f}"
        print(line)
        rows.append((w, med, r_default, r_hardened, part_ratios))
    groups = [("geomean", [i for i, w in enumerate(workloads) if w not in real])]
    if real:
        groups[0] = ("geomean, benchmarks", groups[0][1])
        groups.append(("geomean, programs", [i for i, w in enumerate(workloads) if w in real]))
    groups = [(label, idx) for label, idx in groups if idx]
    for label, idx in groups:
        pick = lambda key: geomean([ratios[key][i] for i in idx])
        summary = f"{label:<19}" + " " * (26 * len(names)) + \
            f"   {pick('default/unchecked'):>17.3f}  {pick('hardened/default'):>16.3f}"
        for n in names[3:]:
            summary += f"  {pick(f'{n}/default'):>{len(n) + 8}.3f}"
        print(summary)

    if args.markdown:
        print()
        cols = ["benchmark", "unchecked (s)", "default (s)", "hardened (s)",
                "default / unchecked", "hardened / default"]
        cols += [f"{n} / default" for n in names[3:]]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for w, med, r_default, r_hardened, part_ratios in rows:
            cells = [w, f"{med['unchecked']:.4f}", f"{med['default']:.4f}", f"{med['hardened']:.4f}",
                     f"{r_default:.3f}", f"{r_hardened:.3f}"] + [f"{r:.3f}" for r in part_ratios]
            print("| " + " | ".join(cells) + " |")
        for label, idx in groups:
            pick = lambda key: geomean([ratios[key][i] for i in idx])
            cells = [label.replace("geomean", "geometric mean"), "", "", "",
                     f"{pick('default/unchecked'):.3f}", f"{pick('hardened/default'):.3f}"]
            cells += [f"{pick(f'{n}/default'):.3f}" for n in names[3:]]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
