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
# allocators). The last column is brisk's Ir/op again with
# BRISK_HEAP_DEFER_MERGE (a second replay, replay --defer-merge). Needs
# valgrind (callgrind, callgrind_annotate).
#
# Usage: bench/heap_traces_instructions.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
command -v valgrind > /dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cmake --build "$build" --target brisk-trace -j2 > /dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Ir/op of one replay's backend calls: brisk's ($1 = brisk) or the system
# malloc's, from callgrind output $2, for a trace of $3 ops.
ir_per_op() {
  callgrind_annotate --inclusive=yes --auto=no "$2" 2> /dev/null |
    awk -v which="$1" -v ops="$3" '
      which == "brisk" && /backend_brisk\.c:heap_backend_(alloc|realloc|free) / { gsub(",", "", $1); n += $1 }
      which == "system" && /backend_system\.c:system_(alloc|realloc|free) /   { gsub(",", "", $1); n += $1 }
      END { printf "%.1f", n / ((int((1000000 + ops - 1) / ops) + 1) * ops) }'
}
printf '%-18s %12s %12s %14s %14s\n' trace "brisk Ir/op" "system Ir/op" "brisk/system" "defer Ir/op"
for t in gcc-cc1 perl-text python3-json sqlite3-session; do
  rep=$root/bench/traces/$t.rep
  ops=$(sed -n 3p "$rep") # header: heap size hint, ids, ops, weight
  valgrind --tool=callgrind --toggle-collect=replay_timed --callgrind-out-file="$out/$t.cg" \
    "$build/tools/brisk-trace" replay --reps 1 "$rep" > /dev/null 2>&1
  valgrind --tool=callgrind --toggle-collect=replay_timed --callgrind-out-file="$out/$t.defer.cg" \
    "$build/tools/brisk-trace" replay --reps 1 --defer-merge "$rep" > /dev/null 2>&1
  b=$(ir_per_op brisk "$out/$t.cg" "$ops")
  s=$(ir_per_op system "$out/$t.cg" "$ops")
  d=$(ir_per_op brisk "$out/$t.defer.cg" "$ops")
  awk -v t="$t" -v b="$b" -v s="$s" -v d="$d" 'BEGIN { printf "%-18s %12.1f %12.1f %14.3f %14.1f\n", t, b, s, b / s, d }'
done
