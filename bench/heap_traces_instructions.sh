#!/usr/bin/env bash
# Instructions per op, brisk's region heap against the system malloc, on
# the traces recorded from real programs: a repeatable companion to
# bench/heap_traces.sh, whose wall-clock ratios swing with the machine's
# load. Runs `brisk-trace replay --reps 1` under callgrind, counting only
# inside the timed replay (both allocators, same process, same run), and
# sums the inclusive instruction counts of each backend's alloc, realloc
# and free calls.
#
# Ir/op divides by the ops the timed replay makes: (rounds + 1 warm-up) x
# the trace's ops, where rounds = ceil(1,000,000 / ops); the frees of the
# blocks left live after each round are counted in too (the same for both
# allocators). Needs valgrind (callgrind, callgrind_annotate).
#
# Usage: bench/heap_traces_instructions.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
command -v valgrind > /dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cmake --build "$build" --target brisk-trace -j2 > /dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-18s %12s %12s %14s\n' trace "brisk Ir/op" "system Ir/op" "brisk/system"
for t in gcc-cc1 perl-text python3-json sqlite3-session; do
  rep=$root/bench/traces/$t.rep
  valgrind --tool=callgrind --toggle-collect=replay_timed --callgrind-out-file="$out/$t.cg" \
    "$build/tools/brisk-trace" replay --reps 1 "$rep" > /dev/null 2>&1
  ops=$(sed -n 3p "$rep") # header: heap size hint, ids, ops, weight
  callgrind_annotate --inclusive=yes --auto=no "$out/$t.cg" 2> /dev/null |
    awk -v t="$t" -v ops="$ops" '
      /backend_brisk\.c:heap_backend_(alloc|realloc|free) / { gsub(",", "", $1); b += $1 }
      /backend_system\.c:system_(alloc|realloc|free) /      { gsub(",", "", $1); s += $1 }
      END {
        rounds = int((1000000 + ops - 1) / ops) + 1
        n = rounds * ops
        printf "%-18s %12.1f %12.1f %14.3f\n", t, b / n, s / n, b / s
      }'
done
