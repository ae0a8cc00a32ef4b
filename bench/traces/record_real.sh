#!/usr/bin/env bash
# Re-records the real-program traces in bench/traces/ with brisk-trace:
#   python3-json.rep    /usr/bin/python3 running workloads/python_workload.py
#   sqlite3-session.rep sqlite3 running workloads/sqlite_session.sql
#   gcc-cc1.rep         cc1, the compiler proper, as gcc -O2 compiles
#                       tools/trace/replay.c (gcc forks cc1: its recording
#                       is the child's FILE.PID.btr, the one with most events)
#   perl-text.rep       perl running workloads/perl_workload.pl
# Each is recorded, then converted to a malloc-lab text trace of its first
# MAX_OPS ops (default 60000) to keep the directory small.
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
  "$tool" record -o "$work/$name.btr" -- "$@" > /dev/null
}
to_text() { # RECORDING TRACE
  "$tool" convert --to text --max-ops "$max_ops" "$1" "$2"
}

record python3-json /usr/bin/python3 "$here/workloads/python_workload.py"
record sqlite3-session sh -c "exec sqlite3 :memory: < '$here/workloads/sqlite_session.sql'"
record perl-text perl "$here/workloads/perl_workload.pl"
record gcc gcc -O2 -I"$root/include" -I"$root/src" -I"$root/tools/trace" -c \
  "$root/tools/trace/replay.c" -o "$work/replay.o"

for name in python3-json sqlite3-session perl-text; do
  to_text "$work/$name.btr" "$here/$name.rep"
done
# gcc's own process is the driver; cc1 is the child with the most events.
cc1=$(for f in "$work"/gcc.*.btr; do
        echo "$("$tool" report --json "$f" | sed -n 's/^  "events": \([0-9]*\),/\1/p') $f"
      done | sort -n | tail -1 | cut -d' ' -f2)
to_text "$cc1" "$here/gcc-cc1.rep"
ls -l "$here"/*.rep
