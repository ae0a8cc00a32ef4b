#!/usr/bin/env python3
"""One benchmark under several builds of libbrisk.so (or several
BRISK_OPTIONS), interleaved run by run: for trying a change against the
build without it before committing to either.

    python3 bench/harden/compare_builds.py --build build [--runs 5] [--scale 0.3]
        BENCHMARK LIB[:OPTIONS] ...

BENCHMARK is one of malloc_bench's (small_churn, mixed_sizes, ...) or of
hardening_workloads' (small, mixed, fifo, threads, realloc), both taken
from --build. Each LIB is a libbrisk.so (for example one built with a
change in another build directory), preloaded with BRISK_OPTIONS set to
what follows the colon. It prints, per configuration, the median CPU time
(user + system) of the runs and their min..max, and the ratio of each
median to the first configuration's.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys

WORKLOADS = ["small", "mixed", "fifo", "threads", "realloc"]


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("benchmark")
    parser.add_argument("configs", nargs="+", metavar="LIB[:OPTIONS]")
    args = parser.parse_args()

    if args.benchmark in WORKLOADS:
        program = os.path.join(args.build, "bench", "harden", "hardening_workloads")
    else:
        program = os.path.join(args.build, "bench", "malloc", "malloc_bench")
    if not os.path.exists(program):
        sys.exit(f"compare_builds: {program} is missing; build the bench-hardening target first")
    configs = []
    for item in args.configs:
        lib, _, options = item.partition(":")
        if not os.path.exists(lib):
            sys.exit(f"compare_builds: {lib} is missing")
        configs.append((item, lib, options))

    times = {item: [] for item, _, _ in configs}
    for run in range(args.runs):
        order = configs[run % len(configs):] + configs[:run % len(configs)]
        for item, lib, options in order:
            env = dict(os.environ, LD_PRELOAD=lib, BRISK_OPTIONS=options)
            before = children_cpu()
            out = subprocess.run([program, args.benchmark, str(args.scale)], env=env,
                                 capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                sys.exit(f"compare_builds: {args.benchmark} under {item} failed "
                         f"({out.returncode}): {out.stderr.strip()}")
            times[item].append(children_cpu() - before)

    first = statistics.median(times[configs[0][0]])
    print(f"# {args.benchmark} at scale {args.scale}: CPU seconds, median [min..max] of "
          f"{args.runs} interleaved runs, and the ratio to the first configuration")
    for item, _, _ in configs:
        med = statistics.median(times[item])
        print(f"{item:<50} {med:8.4f} [{min(times[item]):.4f}..{max(times[item]):.4f}]"
              f"  {med / first:6.3f}")


if __name__ == "__main__":
    main()
