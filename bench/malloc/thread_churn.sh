#!/usr/bin/env bash
# Runs bench/malloc/thread_churn (100,000 short-lived threads, each leaving
# one block that the main thread frees 1,000 threads later) under glibc,
# jemalloc, mimalloc, tcmalloc and brisk, taking turns in a rotating order
# RUNS times (default 5, or $BENCH_RUNS), and prints per allocator the
# medians (min-max) of the resident set after the first 10% of the
# threads, after the last, and at peak, the wall time, and the issue's
# bars for brisk: peak at most 2x glibc's, after the last at most 1.2x
# after the first 10% (docs/benchmarks.md).
#
#   bench/malloc/thread_churn.sh BUILD_DIR [RUNS]
#
# CHURN_THREADS overrides the thread count (e.g. 20000 for a quick look);
# BENCH_ALLOCATORS="system brisk" runs only those.
set -u -o pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 BUILD_DIR [RUNS]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
runs=${2:-${BENCH_RUNS:-5}}
threads=${CHURN_THREADS:-100000}
bench=$build/bench/malloc/thread_churn
if [ ! -x "$bench" ]; then
  echo "$0: $bench not found: build it first (cmake --build $1)" >&2
  exit 2
fi
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: RUNS must be a positive integer, not \"$runs\"" >&2
  exit 2
fi
if ! [[ $threads =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: CHURN_THREADS must be a positive integer, not \"$threads\"" >&2
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
allocators=()
for a in ${BENCH_ALLOCATORS:-system jemalloc mimalloc tcmalloc brisk}; do
  if [ "$a" != system ] && [ ! -f "${lib[$a]:-}" ]; then
    echo "note: no library for $a (${lib[$a]:-unknown allocator}): left out"
    continue
  fi
  allocators+=("$a")
done

raw=$(mktemp "${TMPDIR:-/tmp}/thread-churn.XXXXXX")
trap 'rm -f "$raw"' EXIT
echo "thread_churn: $threads threads, $runs runs, $(nproc) cores, $(uname -srm)"
n=${#allocators[@]}
for ((r = 0; r < runs; r++)); do
  for ((i = 0; i < n; i++)); do
    a=${allocators[$(((i + r) % n))]}
    out=$(LD_PRELOAD=${lib[$a]} "$bench" "$threads" 2>&1)
    status=$?
    line=$(grep "^thread_churn threads=" <<<"$out")
    if [ $status != 0 ] || [ -z "$line" ]; then
      echo "FAILED: under $a (exit status $status): $(tail -3 <<<"$out" | tr '\n' ' ')"
      continue
    fi
    echo "$a $line" >>"$raw"
  done
  echo "round $((r + 1))/$runs done"
done

python3 - "$raw" "${allocators[@]}" <<'PY'
import statistics, sys
raw, allocators = sys.argv[1], sys.argv[2:]
runs = {}
for line in open(raw):
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[2:])
    runs.setdefault(f[0], []).append(kv)
checks = {a: {r["check"] for r in v} for a, v in runs.items()}
allchecks = set().union(*checks.values()) if checks else set()
if len(allchecks) > 1:
    print("WARNING: the allocators computed different results: " +
          "; ".join(f"{a} {sorted(c)}" for a, c in checks.items()))

def cell(a, key, scale=1.0, fmt="{:.1f}"):
    v = [float(r[key]) * scale for r in runs.get(a, [])]
    if not v:
        return "FAILED", None
    m = statistics.median(v)
    return (fmt.format(m) + " (" + fmt.format(min(v)) + "-" + fmt.format(max(v)) + ")"), m

cols = [("RSS after 10%, MiB", "rss_first_kib", 1 / 1024), ("RSS after last, MiB", "rss_last_kib", 1 / 1024),
        ("peak RSS, MiB", "peak_kib", 1 / 1024), ("seconds", "seconds", 1.0)]
print("\nmedian (min-max) of %s runs" % max((len(v) for v in runs.values()), default=0))
print(f"{'allocator':<10}" + "".join(f"{c[0]:>24}" for c in cols) + f"{'last/10%':>10}")
med = {}
for a in allocators:
    cells = []
    for title, key, scale in cols:
        text, m = cell(a, key, scale, "{:.2f}" if key == "seconds" else "{:.1f}")
        med[(a, key)] = m
        cells.append(text)
    ratio = "-"
    if med[(a, "rss_first_kib")] and med[(a, "rss_last_kib")] is not None:
        ratio = f"{med[(a, 'rss_last_kib')] / med[(a, 'rss_first_kib')]:.2f}x"
    print(f"{a:<10}" + "".join(f"{c:>24}" for c in cells) + f"{ratio:>10}")
if "brisk" in allocators and med.get(("brisk", "peak_kib")):
    print("\nbrisk against its bars")
    if med.get(("system", "peak_kib")):
        r = med[("brisk", "peak_kib")] / med[("system", "peak_kib")]
        print(f"  peak RSS <= 2x glibc's: {r:.2f}x, " + ("met" if r <= 2.0 else "MISSED"))
    r = med[("brisk", "rss_last_kib")] / med[("brisk", "rss_first_kib")]
    print(f"  RSS after the last thread <= 1.2x after the first 10%: {r:.2f}x, " + ("met" if r <= 1.2 else "MISSED"))
    if med.get(("mimalloc", "peak_kib")):
        print(f"  (peak RSS / mimalloc's: {med[('brisk', 'peak_kib')] / med[('mimalloc', 'peak_kib')]:.2f}x)")
PY
