#!/usr/bin/env bash
# Runs the malloc benchmarks under the system allocator, jemalloc, mimalloc,
# tcmalloc and brisk (all through LD_PRELOAD on the same binary) and prints
# per benchmark the median wall time (with the min-max spread), the median
# CPU time (user + system of all threads: less disturbed than wall time
# when other processes share the cores), the median peak RSS, the
# geometric means, the ratios to mimalloc, and where brisk misses its
# targets.
#
#   bench/malloc/run.sh BUILD_DIR [RUNS]
#
# RUNS (default 5, or $BENCH_RUNS) runs of every benchmark under every
# allocator; within a round the allocators take turns, in a rotating order,
# so drift in the machine's load spreads over all of them.
# Optional: BENCH_ONLY="small_churn larson" runs only those benchmarks;
# BENCH_ALLOCATORS="system brisk" only those allocators; BENCH_SCALE=0.5
# scales every benchmark's work; BENCH_RAW=file keeps the raw results.
#
# The peers come from Debian (libjemalloc2, libmimalloc2.0,
# libtcmalloc-minimal4): installed with apt-get when missing and running
# as root, otherwise looked up in /usr/lib/x86_64-linux-gnu; a peer that
# cannot be found is left out with a note.
set -u -o pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 BUILD_DIR [RUNS]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
runs=${2:-${BENCH_RUNS:-5}}
scale=${BENCH_SCALE:-1}
bench=$build/bench/malloc/malloc_bench
if [ ! -x "$bench" ]; then
  echo "$0: $bench not found: build it first (cmake --build $1)" >&2
  exit 2
fi
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: RUNS must be a positive integer, not \"$runs\"" >&2
  exit 2
fi

libdir=/usr/lib/x86_64-linux-gnu
declare -A lib=(
  [system]=""
  [jemalloc]=$libdir/libjemalloc.so.2
  [mimalloc]=$libdir/libmimalloc.so.2
  [tcmalloc]=$libdir/libtcmalloc_minimal.so.4
  [brisk]=$(ls "$build"/libbrisk.so 2>/dev/null)
)
declare -A package=([jemalloc]=libjemalloc2 [mimalloc]=libmimalloc2.0 [tcmalloc]=libtcmalloc-minimal4)

missing=()
for a in jemalloc mimalloc tcmalloc; do
  [ -f "${lib[$a]}" ] || missing+=("${package[$a]}")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null 2>&1; }
fi

allocators=()
for a in ${BENCH_ALLOCATORS:-system jemalloc mimalloc tcmalloc brisk}; do
  if [ "$a" != system ] && [ ! -f "${lib[$a]:-}" ]; then
    echo "note: no library for $a (${lib[$a]:-unknown allocator}): left out"
    continue
  fi
  allocators+=("$a")
done
benchmarks=(${BENCH_ONLY:-$("$bench" list)})

raw=${BENCH_RAW:-$(mktemp "${TMPDIR:-/tmp}/malloc-bench.XXXXXX")}
[ -n "${BENCH_RAW:-}" ] || trap 'rm -f "$raw"' EXIT
: >"$raw"

echo "malloc benchmarks: $runs runs, scale $scale, $(nproc) cores, $(uname -srm)"
for a in "${allocators[@]}"; do
  echo "  $a: ${lib[$a]:-(no preload: $(ldd "$bench" | awk '/libc.so/ {print $3}'))}"
done

failures=0
for ((r = 0; r < runs; r++)); do
  for b in "${benchmarks[@]}"; do
    n=${#allocators[@]}
    for ((i = 0; i < n; i++)); do
      a=${allocators[$(((i + r) % n))]}
      if [ -n "${lib[$a]}" ]; then
        out=$(LD_PRELOAD=${lib[$a]} "$bench" "$b" "$scale" 2>&1)
      else
        out=$("$bench" "$b" "$scale" 2>&1)
      fi
      status=$?
      line=$(grep "^$b seconds=" <<<"$out")
      if [ $status != 0 ] || [ -z "$line" ]; then
        echo "FAILED: $b under $a (exit status $status): $(tail -3 <<<"$out" | tr '\n' ' ')"
        echo "$b $a $r fail" >>"$raw"
        failures=$((failures + 1))
        continue
      fi
      echo "$b $a $r $(sed 's/^[^ ]* //; s/seconds=//; s/maxrss_kib=//; s/check=//; s/cpu_seconds=//' <<<"$line")" >>"$raw"
    done
  done
  echo "round $((r + 1))/$runs done"
done

python3 - "$raw" "${allocators[@]}" <<'EOF'
import math, statistics, sys
raw, allocators = sys.argv[1], sys.argv[2:]
times, cpu, rss, checks, failed, order = {}, {}, {}, {}, set(), []
for line in open(raw):
    f = line.split()
    b, a = f[0], f[1]
    if b not in order:
        order.append(b)
    if f[3] == "fail":
        failed.add((b, a))
        continue
    times.setdefault((b, a), []).append(float(f[3]))
    rss.setdefault((b, a), []).append(int(f[4]) / 1024.0)
    cpu.setdefault((b, a), []).append(float(f[6]))
    checks.setdefault(b, {}).setdefault(f[5], set()).add(a)

def med(v):
    return statistics.median(v)

w = 20
def row(name, cells):
    print(f"{name:<18}" + "".join(f"{c:>{w}}" for c in cells))

print("\nWall time, seconds: median (min-max)")
row("benchmark", allocators)
for b in order:
    cells = []
    for a in allocators:
        t = times.get((b, a))
        cells.append("FAILED" if not t else f"{med(t):.3f} ({min(t):.2f}-{max(t):.2f})")
    row(b, cells)

print("\nCPU time (user + system, all threads), seconds: median (min-max)")
row("benchmark", allocators)
for b in order:
    cells = []
    for a in allocators:
        t = cpu.get((b, a))
        cells.append("FAILED" if not t else f"{med(t):.3f} ({min(t):.2f}-{max(t):.2f})")
    row(b, cells)

print("\nPeak RSS, MiB: median")
row("benchmark", allocators)
for b in order:
    row(b, ["FAILED" if (b, a) not in rss else f"{med(rss[(b, a)]):.1f}" for a in allocators])

def geomean(table, a):
    v = [med(table[(b, a)]) for b in order if (b, a) in table]
    if len(v) < len(order):
        return None
    return math.exp(sum(math.log(x) for x in v) / len(v))

gt = {a: geomean(times, a) for a in allocators}
gr = {a: geomean(rss, a) for a in allocators}
gc = {a: geomean(cpu, a) for a in allocators}
print("\nGeometric means over all benchmarks (an allocator with a failed benchmark has none)")
row("", allocators)
row("time, s", ["-" if gt[a] is None else f"{gt[a]:.3f}" for a in allocators])
row("CPU time, s", ["-" if gc[a] is None else f"{gc[a]:.3f}" for a in allocators])
row("peak RSS, MiB", ["-" if gr[a] is None else f"{gr[a]:.1f}" for a in allocators])
if "mimalloc" in allocators and gt["mimalloc"] and gr["mimalloc"]:
    row("time / mimalloc", ["-" if gt[a] is None else f"{gt[a] / gt['mimalloc']:.2f}x" for a in allocators])
    row("CPU / mimalloc", ["-" if gc[a] is None else f"{gc[a] / gc['mimalloc']:.2f}x" for a in allocators])
    row("RSS / mimalloc", ["-" if gr[a] is None else f"{gr[a] / gr['mimalloc']:.2f}x" for a in allocators])

for b, seen in checks.items():
    if len(seen) > 1:
        print(f"\nWARNING: {b} computed different results: " +
              "; ".join(f"{c} under {', '.join(sorted(s))}" for c, s in seen.items()))

if "brisk" in allocators:
    print("\nbrisk against its targets")
    if "system" in allocators:
        for what, table in (("wall", times), ("CPU", cpu)):
            slower = []
            for b in order:
                if (b, "brisk") in table and (b, "system") in table:
                    ratio = med(table[(b, "brisk")]) / med(table[(b, "system")])
                    if ratio > 1.0:
                        slower.append(f"{b} {ratio:.2f}x")
            print(f"  no benchmark slower than the system allocator ({what} time): " +
                  ("met" if not slower else "MISSED: " + ", ".join(slower)))
    if "mimalloc" in allocators and gt["mimalloc"] and gt["brisk"]:
        r = gt["brisk"] / gt["mimalloc"]
        print(f"  geometric-mean time <= 1.1x mimalloc: {r:.2f}x, " + ("met" if r <= 1.1 else "MISSED"))
        r = gc["brisk"] / gc["mimalloc"]
        print(f"  (by CPU time: {r:.2f}x)")
    if "mimalloc" in allocators and gr["mimalloc"] and gr["brisk"]:
        r = gr["brisk"] / gr["mimalloc"]
        print(f"  geometric-mean peak RSS <= 1.1x mimalloc: {r:.2f}x, " + ("met" if r <= 1.1 else "MISSED"))
    for b in order:
        if (b, "brisk") in failed:
            print(f"  FAILED under brisk: {b}")
EOF
[ "$failures" = 0 ]
