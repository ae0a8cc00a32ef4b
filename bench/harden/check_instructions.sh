#!/bin/sh
# What the default level's checks cost in instructions, which unlike time
# does not depend on what else the machine is doing:
#
#   bench/harden/check_instructions.sh BUILD [SCALE [BENCHMARK...]]
#
# runs each malloc_bench benchmark (default: small_churn mixed_sizes
# binary_trees larson many_threads, at SCALE 0.05) under valgrind's
# cachegrind with LD_PRELOAD of the unchecked build
# (bench/harden/libbrisk_unchecked.so, -DBRISK_CHECKS=0) and of
# libbrisk.so, and prints the instructions each executed (the whole
# process, the benchmark's own loop included) and their ratio. For
# small_churn, where every iteration is one malloc and (once the slots are
# full) one free, it also prints the difference per iteration: the checks'
# instructions per malloc + free pair. Needs valgrind and the
# bench-hardening libraries (cmake --build BUILD --target brisk_unchecked
# brisk_shared malloc_bench).
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD [SCALE [BENCHMARK...]]" >&2
    exit 2
fi
build=$1
scale=${2:-0.05}
if [ $# -ge 2 ]; then shift 2; else shift 1; fi
[ $# -gt 0 ] || set -- small_churn mixed_sizes binary_trees larson many_threads

bench=$build/bench/malloc/malloc_bench
unchecked=$build/bench/harden/libbrisk_unchecked.so
checked=$build/libbrisk.so
for f in "$bench" "$unchecked" "$checked"; do
    if [ ! -e "$f" ]; then
        echo "$0: $f is missing; build brisk_unchecked, brisk_shared and malloc_bench" >&2
        exit 1
    fi
done
command -v valgrind >/dev/null || { echo "$0: valgrind is not installed" >&2; exit 1; }

# Instructions executed by one run of benchmark $1 under library $2.
instructions() {
    LD_PRELOAD=$2 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$bench" "$1" "$scale" 2>&1 >/dev/null |
        awk '/I +refs:/ { gsub(",", "", $NF); print $NF }'
}

printf '%-14s %14s %14s %8s\n' benchmark unchecked default ratio
for name in "$@"; do
    u=$(instructions "$name" "$unchecked")
    d=$(instructions "$name" "$checked")
    if [ -z "$u" ] || [ -z "$d" ]; then
        echo "$0: $name did not run under valgrind" >&2
        exit 1
    fi
    awk -v n="$name" -v u="$u" -v d="$d" -v s="$scale" 'BEGIN {
        printf "%-14s %14d %14d %8.3f", n, u, d, d / u
        if (n == "small_churn")
            printf "   (%.1f more per malloc + free)", (d - u) / (2.4e7 * s)
        printf "\n"
    }'
done
