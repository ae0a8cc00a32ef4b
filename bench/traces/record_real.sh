#!/usr/bin/env bash
# Re-records the real-program traces in bench/traces/ with brisk-trace:
#   python3-json.rep    /usr/bin/python3 running workloads/python_workload.py
#   sqlite3-session.rep sqlite3 running workloads/sqlite_session.sql
#   gcc-cc1.rep         cc1, the compiler proper, as gcc -O2 compiles
#                       tools/trace/replay.c (gcc forks cc1: its trace is
#                       the child's FILE.PID.rep, the largest one)
#   perl-text.rep       perl running workloads/perl_workload.pl
# Each is capped at MAX_OPS ops (default 60000) to keep the directory small.
# Usage: bench/traces/record_real.sh [BUILD_DIR]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
tool=$build/tools/brisk-trace
here=$root/bench/traces
max_ops=${MAX_OPS:-60000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

record() { # NAME COMMAND...
  local name=$1; shift
  "$tool" record --max-ops "$max_ops" -o "$work/$name.rep" -- "$@" > /dev/null
}

record python3-json /usr/bin/python3 "$here/workloads/python_workload.py"
record sqlite3-session sh -c "exec sqlite3 :memory: < '$here/workloads/sqlite_session.sql'"
record perl-text perl "$here/workloads/perl_workload.pl"
record gcc gcc -O2 -I"$root/include" -I"$root/src" -I"$root/tools/trace" -c \
  "$root/tools/trace/replay.c" -o "$work/replay.o"

cp "$work/python3-json.rep" "$work/sqlite3-session.rep" "$work/perl-text.rep" "$here/"
# gcc's own process is the driver; cc1 is the child with the most ops.
cc1=$(for f in "$work"/gcc.*.rep; do echo "$(sed -n 3p "$f") $f"; done | sort -n | tail -1 | cut -d' ' -f2)
cp "$cc1" "$here/gcc-cc1.rep"
ls -l "$here"/*.rep
