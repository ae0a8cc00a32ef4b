#!/usr/bin/env bash
# The region heap's bar, measured: replays the traces recorded from real
# programs (bench/traces/, see record_real.sh there) through brisk's region
# heap and the system malloc in the same run, with enough timed
# repetitions for stable medians, and prints brisk-trace's table.
#
# The bar (docs/benchmarks.md): mean utilization >= 90% over these traces,
# and brisk's throughput >= the system malloc's. Two tables: the default
# heap (immediate merging), then the same traces with
# BRISK_HEAP_DEFER_MERGE (freed small blocks kept aside for reuse); each
# against the system malloc timed in the same run.
#
# Usage: bench/heap_traces.sh [BUILD_DIR] [extra brisk-trace replay options]
#   e.g. bench/heap_traces.sh build --reps 41 --json
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  build=$1
  shift
fi
cmake --build "$build" --target brisk-trace -j2 > /dev/null
traces=(gcc-cc1 perl-text python3-json sqlite3-session)
paths=()
for t in "${traces[@]}"; do paths+=("$root/bench/traces/$t.rep"); done
echo "brisk-trace replay over the real-program traces ($(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d))"
echo
echo "brisk's default heap (immediate merging):"
"$build/tools/brisk-trace" replay --reps 21 "$@" "${paths[@]}"
echo
echo "brisk_heap_create_ex(..., BRISK_HEAP_DEFER_MERGE):"
"$build/tools/brisk-trace" replay --reps 21 --defer-merge "$@" "${paths[@]}"
