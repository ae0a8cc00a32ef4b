#!/usr/bin/env bash
# Runs real programs with and without a preloaded malloc and checks that they
# behave exactly the same: same output, same exit status.
#
#   tests/real_programs.sh path/to/libbrisk.so [program...]
#
# Programs: python (Python's own regression tests), python_script, sqlite3,
# git, perl, gcc, xz (multi-threaded), sort (multi-threaded). With names
# after the library, runs only those. Each program prints PASS or FAIL (with
# what differed); the last line is "N passed, N failed", and the exit status
# is non-zero when anything failed or could not run.
#
# Every child process inherits LD_PRELOAD, so git's helpers, gcc's cc1, as
# and ld and Python's test workers all run on the preloaded allocator too.
# Inputs are generated deterministically here, outside the preload.
#
# Needs (Debian): python3 with its test package (libpython3.11-testsuite for
# Debian's python3), sqlite3, git, perl, gcc, xz-utils, coreutils, gawk or
# mawk. Takes about 2 minutes on 2 cores.
set -u -o pipefail

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 path/to/libbrisk.so [program...]" >&2
  exit 2
fi
lib=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
selected=("$@")

work=$(mktemp -d "${TMPDIR:-/tmp}/brisk-real-programs.XXXXXX")
# REAL_PROGRAMS_KEEP=1 keeps the work directory (inputs, outputs, logs).
if [ "${REAL_PROGRAMS_KEEP:-0}" = 1 ]; then
  echo "work directory: $work"
else
  trap 'rm -rf "$work"' EXIT
fi

passed=0
failed=0
skipped=0

if ! nm -D --defined-only "$lib" 2>/dev/null | awk '{print $NF}' | grep -qx malloc; then
  echo "note: $lib does not define malloc: both runs use the system allocator"
fi
# A library the dynamic loader refuses (wrong architecture, missing file)
# is skipped with only a warning, and every comparison would then pass
# vacuously: prove it is mapped into a preloaded process first.
if ! LD_PRELOAD="$lib" cat /proc/self/maps 2>/dev/null | grep -qF "$(basename "$(readlink -f "$lib")")"; then
  echo "FAIL preload: $lib is not mapped into a process started with LD_PRELOAD"
  echo "0 passed, 1 failed"
  exit 1
fi

# run MODE CMD...: runs CMD with the preloaded library when MODE is brisk.
run() {
  local mode=$1
  shift
  if [ "$mode" = brisk ]; then
    LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" "$@"
  else
    "$@"
  fi
}

# wanted NAME: whether NAME is among the programs asked for (all when none
# were named).
wanted() {
  [ ${#selected[@]} -eq 0 ] && return 0
  local s
  for s in "${selected[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# check NAME: runs case_NAME once per mode, each in its own directory
# $work/NAME/MODE, and compares everything the case left in out/ plus its
# exit status.
check() {
  local name=$1
  wanted "$name" || return 0
  local mode dir status times=""
  for mode in system brisk; do
    dir=$work/$name/$mode
    mkdir -p "$dir/out"
    local start=$SECONDS
    (cd "$dir" && "case_$name" "$mode") >"$dir/out/stdout" 2>"$dir/stderr"
    status=$?
    echo "$status" >"$dir/out/status"
    times="$times $mode $((SECONDS - start))s"
  done
  local why=""
  if [ "$(cat "$work/$name/system/out/status")" != 0 ]; then
    why="the run without brisk failed (status $(cat "$work/$name/system/out/status")), so nothing can be compared"
    why="$why; its stderr: $(tail -5 "$work/$name/system/stderr" | tr '\n' ' ')"
  elif ! diff -r "$work/$name/system/out" "$work/$name/brisk/out" >"$work/$name/diff" 2>&1; then
    why="outputs differ: $(head -c 1500 "$work/$name/diff")"
    why="$why; stderr with brisk: $(tail -5 "$work/$name/brisk/stderr" | tr '\n' ' ')"
  fi
  if [ -z "$why" ]; then
    echo "PASS $name ($times )"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($times ): $why"
    failed=$((failed + 1))
  fi
}

# ---------------------------------------------------------------------------
# Python: a slice of CPython's own regression suite, plus a script whose
# output is compared byte for byte.
# ---------------------------------------------------------------------------

# The first python3 that has the regression test package: the one on PATH
# (for example a pyenv build, which includes it), else Debian's, which needs
# libpython3.11-testsuite.
find_python() {
  local candidate exe
  for candidate in python3 /usr/bin/python3; do
    exe=$(command -v "$candidate" 2>/dev/null) || continue
    # Resolve wrappers (pyenv shims) to the interpreter itself.
    exe=$("$exe" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
    if "$exe" -c 'import test.libregrtest' 2>/dev/null; then
      echo "$exe"
      return 0
    fi
  done
  return 1
}
python=$(find_python || true)

python_tests="test_list test_dict test_set test_unicode test_json test_re test_collections
test_bytes test_pickle test_string test_heapq test_bisect test_itertools test_sort
test_struct test_array test_deque test_functools test_textwrap test_csv"

case_python() {
  if [ -z "$python" ]; then
    echo "no python3 with the test package (Debian: apt-get install libpython3.11-testsuite)" >&2
    return 1
  fi
  # Timings differ between runs, so what is compared is the verdict: the
  # exit status and which tests passed.
  # shellcheck disable=SC2086
  run "$1" "$python" -m test -j2 $python_tests >log 2>&1
  local status=$?
  grep -E '^(Result|Tests result):|tests? OK\.|failed' log | sed 's/ in [0-9.]* sec//'
  [ $status = 0 ] || tail -30 log >&2
  return $status
}

case_python_script() {
  local interpreter=${python:-$(command -v python3)}
  if [ -z "$interpreter" ]; then
    echo "no python3 found" >&2
    return 1
  fi
  run "$1" "$interpreter" - <<'EOF'
import collections, json, re, random, hashlib
rng = random.Random(12345)
words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(1, 12)))
         for _ in range(200000)]
counts = collections.Counter(words)
print(len(counts), counts.most_common(5))
index = {}
for i, w in enumerate(words):
    index.setdefault(w[:3], []).append(i)
print(len(index), sum(len(v) for v in index.values()))
text = " ".join(words)
print(len(re.findall(r"\b[a-d]+\b", text)), len(re.sub(r"(a+)(b+)", r"\2\1", text)))
blob = json.dumps({w: [i, str(i) * 3] for i, w in enumerate(words[:50000])})
print(len(blob), hashlib.sha256(blob.encode()).hexdigest())
back = json.loads(blob)
print(len(back), sorted(back)[:3])
big = []
for i in range(300):
    big.append(bytearray(i * 997))
    if i % 3 == 0:
        big[i // 2] = None
print(sum(len(b) for b in big if b is not None))
s = set(words)
print(len(s), len(s & set(words[::7])), sorted(s)[-3:])
EOF
}

# ---------------------------------------------------------------------------
# sqlite3: 200k rows, indexes, joins, aggregates, sorts.
# ---------------------------------------------------------------------------
case_sqlite3() {
  cat >script.sql <<'EOF'
PRAGMA journal_mode = OFF;
CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT, city TEXT, born INTEGER);
CREATE TABLE item(id INTEGER PRIMARY KEY, title TEXT, price REAL);
CREATE TABLE sale(id INTEGER PRIMARY KEY, customer INTEGER, item INTEGER, qty INTEGER, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO customer SELECT i, 'customer-' || i || '-' || substr(hex(i * 7919), 1, 6),
  'city' || (i * 31 % 97), 1940 + i % 60 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO item SELECT i, printf('item %05d %s', i, substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26, 1 + i % 13)),
  (i * 37 % 1000) / 10.0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO sale SELECT i, 1 + (i * 7907) % 20000, 1 + (i * 104729) % 5000, 1 + i % 9,
  CASE WHEN i % 5 = 0 THEN replace(printf('%.*c', 1 + i % 200, 'x'), 'x', 'note ') ELSE NULL END FROM n;
CREATE INDEX sale_customer ON sale(customer);
CREATE INDEX sale_item ON sale(item);
CREATE INDEX customer_city ON customer(city, born);
SELECT count(*), sum(qty), total(length(note)) FROM sale;
SELECT c.city, count(*), sum(s.qty * i.price) AS revenue
  FROM sale s JOIN customer c ON c.id = s.customer JOIN item i ON i.id = s.item
  GROUP BY c.city ORDER BY revenue DESC, c.city LIMIT 15;
SELECT i.title, count(DISTINCT s.customer) FROM item i JOIN sale s ON s.item = i.id
  WHERE i.price > 50 GROUP BY i.id ORDER BY 2 DESC, 1 LIMIT 10;
SELECT born, count(*), group_concat(DISTINCT city) FROM customer
  WHERE id IN (SELECT customer FROM sale WHERE qty > 7) GROUP BY born ORDER BY born LIMIT 12;
SELECT name FROM customer ORDER BY substr(name, -6), id DESC LIMIT 10;
UPDATE sale SET note = upper(coalesce(note, 'none')) WHERE id % 3 = 0;
DELETE FROM sale WHERE id % 11 = 0;
SELECT count(*), sum(length(note)) FROM sale;
VACUUM;
PRAGMA integrity_check;
EOF
  run "$1" sqlite3 db.sqlite <script.sql
}

# ---------------------------------------------------------------------------
# git: many files and commits, then log, diff, gc, fsck. Fixed identities
# and dates make the commit hashes themselves comparable.
# ---------------------------------------------------------------------------
case_git() {
  local mode=$1
  export GIT_AUTHOR_NAME=Brisk GIT_AUTHOR_EMAIL=brisk@example.invalid
  export GIT_COMMITTER_NAME=Brisk GIT_COMMITTER_EMAIL=brisk@example.invalid
  export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD
  run "$mode" git init -q -b main repo || return 1
  cd repo || return 1
  local round
  mkdir -p dir0{0..9} dir1{0..9} dir2{0..9}
  for round in 1 2 3 4; do
    # 1500 files in 30 directories; each round rewrites a different share.
    awk -v round=$round 'BEGIN {
      for (f = 0; f < 1500; f++) {
        if (round > 1 && f % round != 0) continue
        dir = sprintf("dir%02d", f % 30)
        file = sprintf("%s/file%04d.txt", dir, f)
        for (l = 0; l < 20 + f % 50; l++)
          printf "line %d of file %d, round %d, %s\n", l, f, (l % 7 == 0 ? round : 0),
                 substr("the quick brown fox jumps over the lazy dog", 1 + (f + l) % 30) > file
        close(file)
      }
    }'
    export GIT_AUTHOR_DATE="2026-01-0$round 12:00:00 +0000" GIT_COMMITTER_DATE="2026-01-0$round 12:00:00 +0000"
    run "$mode" git add -A || return 1
    run "$mode" git commit -q -m "round $round" || return 1
  done
  run "$mode" git log --stat --format='%H %s' | md5sum
  run "$mode" git log --format='%H %an %ad %s'
  run "$mode" git diff --stat HEAD~3 HEAD | tail -3
  run "$mode" git diff HEAD~2 HEAD | md5sum
  run "$mode" git gc -q --aggressive || return 1
  run "$mode" git fsck --full --strict 2>&1
  run "$mode" git count-objects -v | grep -E '^(count|in-pack|packs)'
  run "$mode" git grep -c 'round 3' HEAD~1 | md5sum
}

# ---------------------------------------------------------------------------
# perl: hashes, string building, regexes, sorting.
# ---------------------------------------------------------------------------
case_perl() {
  run "$1" perl -e '
    use strict; use warnings;
    my (%count, %by_len, @lines);
    my $seed = 42;
    sub next_rand { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed >> 12; }
    for my $i (1 .. 300000) {
      my $w = join "", map { chr(97 + next_rand() % 16) } 1 .. 1 + next_rand() % 10;
      $count{$w}++;
      push @{ $by_len{length $w} }, $w;
      push @lines, "$i:$w" if $i % 3 == 0;
    }
    print scalar(keys %count), "\n";
    for my $len (sort { $a <=> $b } keys %by_len) {
      printf "%d %d %s\n", $len, scalar @{ $by_len{$len} }, (sort @{ $by_len{$len} })[0];
    }
    my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9];
    print "@top\n";
    my $text = join " ", @lines;
    my $n = () = $text =~ /\b\d+:[a-c]+\b/g;
    (my $swapped = $text) =~ s/(\d+):(\w+)/$2=$1/g;
    print "$n ", length($swapped), " ", substr($swapped, 0, 60), "\n";
    my %inverse = reverse %count;
    print scalar(keys %inverse), "\n";
    delete $count{$_} for grep { /a/ } keys %count;
    print scalar(keys %count), "\n";
  '
}

# ---------------------------------------------------------------------------
# gcc: compile a generated C program (and link it: as, ld); the object
# files must be identical and the program must print the same.
# ---------------------------------------------------------------------------
case_gcc() {
  awk 'BEGIN {
    print "#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>"
    for (f = 0; f < 400; f++) {
      printf "struct s%d { int a[%d]; double d; const char *name; };\n", f, 1 + f % 17
      printf "static unsigned long fn%d(unsigned long x) {\n", f
      printf "  struct s%d v; memset(&v, 0, sizeof v); v.name = \"fn%d\";\n", f, f
      printf "  for (int i = 0; i < %d; i++) { v.a[i %% %d] += (int)(x >> (i %% 13)); x = x * %d + %d; }\n", 10 + f % 30, 1 + f % 17, 2 * f + 3, f
      printf "  switch (x %% 5) { case 0: x ^= %dUL; break; case 1: x += strlen(v.name); break; default: x -= %d; }\n", f * 7919, f
      printf "  return x + (unsigned long)v.a[0];\n}\n"
    }
    print "int main(void) {\n  unsigned long x = 1;"
    for (f = 0; f < 400; f++) printf "  x = fn%d(x);\n", f
    print "  printf(\"%lu\\n\", x);\n  return 0;\n}"
  }' >program.c
  run "$1" gcc -O2 -g -Wall -ffile-prefix-map="$PWD"=. -c program.c -o out/program.o || return 1
  run "$1" gcc -O2 program.c -o program || return 1
  ./program
}

# ---------------------------------------------------------------------------
# Threads: xz -T2 (two compressing threads), sort --parallel=2.
# ---------------------------------------------------------------------------
make_text() {
  # ~13 MB of lines with repetition, for the compressors and sort.
  awk 'BEGIN { srand(7); for (i = 0; i < 300000; i++)
    printf "%08d %s %d %s\n", int(rand() * 1e8), substr("alpha beta gamma delta epsilon zeta eta theta", 1 + int(rand() * 30)), i, (i % 9 ? "" : "ninth line with a longer tail") }' >input.txt
}

case_xz() {
  make_text
  run "$1" xz -T2 -3 --block-size=1MiB -c input.txt >out/input.txt.xz || return 1
  run "$1" xz -T2 -d -c out/input.txt.xz | cmp - input.txt || return 1
  echo "round trip ok"
}

case_sort() {
  make_text
  run "$1" sort --parallel=2 -S 64M input.txt | md5sum
  run "$1" sort --parallel=2 -S 64M -k2,2 -k1,1n -s input.txt | md5sum
}

# missing NAME WHAT: case NAME cannot run because WHAT is not installed.
# On a machine without it (the README promises the suite runs with only a
# compiler, CMake and Python 3) that is a visible SKIP; under CI, whose
# .ci/run installs everything, it is a failure.
missing() {
  wanted "$1" || return 0
  if [ "${CI:-}" = true ]; then
    echo "FAIL $1: $2 is not installed"
    failed=$((failed + 1))
  else
    echo "SKIP $1: $2 is not installed (.ci/apt-packages lists what to apt-get install)"
    skipped=$((skipped + 1))
  fi
}

# check_needing NAME WHAT PROGRAM...: check NAME when every PROGRAM is
# installed, else report WHAT as missing.
check_needing() {
  local name=$1 what=$2 prog
  shift 2
  for prog in "$@"; do
    command -v "$prog" >/dev/null 2>&1 || { missing "$name" "$what"; return 0; }
  done
  check "$name"
}

if [ -n "$python" ]; then
  check python
else
  missing python "a python3 with its regression tests (Debian: libpython3.11-testsuite)"
fi
check python_script
check_needing sqlite3 sqlite3 sqlite3
check_needing git git git
check_needing perl perl perl
check_needing gcc gcc gcc
check_needing xz xz xz
check_needing sort "sort, awk and md5sum" sort awk md5sum

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
