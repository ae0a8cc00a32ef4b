#!/usr/bin/env python3
"""brisk-trace on bad input: every malformed trace, missing file, bad
option, missing command and unwritable output stops with a clear
"FILE:LINE: what was wrong" (or "brisk-trace ...: ...") message and a
non-zero exit, never a crash.

usage: test_trace_errors.py BRISK_TRACE
"""
import os
import subprocess
import sys
import tempfile

tool = sys.argv[1]
failures = 0
checks = 0

GOOD_HEADER = "0\n4\n3\n1\n"

# (name, file text, expected message after "PATH:")
MALFORMED = [
    ("empty", "", "1: bad header: the file ends before the suggested heap size (header line 1 of 4)"),
    ("header-word", "lots\n4\n3\n1\n", "1: bad header: expected the suggested heap size (a non-negative integer), got 'lots'"),
    ("header-negative", "0\n-4\n3\n1\n", "2: bad header: expected the number of ids (a non-negative integer up to 268435456), got '-4'"),
    ("header-too-many-ids", "0\n999999999999\n3\n1\n", "2: bad header: expected the number of ids (a non-negative integer up to 268435456), got '999999999999'"),
    ("header-extra", "0\n4 5\n3\n1\n", "2: bad header: unexpected '5' after the number of ids"),
    ("header-short", "0\n4\n", "3: bad header: the file ends before the number of ops (header line 3 of 4)"),
    ("header-no-ids", "0\n0\n3\n1\na 0 1\n", "3: bad header: 3 ops but 0 ids"),
    ("unknown-op", GOOD_HEADER + "a 0 8\nx 0 8\nf 0\n", "6: unknown op 'x' (expected a, r or f)"),
    ("unknown-op-word", GOOD_HEADER + "alloc 0 8\n", "5: unknown op 'alloc' (expected a, r or f)"),
    ("unknown-op-control", GOOD_HEADER + "\x01\x1b 0 8\n", "5: unknown op '??' (expected a, r or f)"),
    ("id-out-of-range", GOOD_HEADER + "a 0 8\na 4 8\nf 0\n", "6: id 4 out of range: the header declares 4 ids (0 to 3)"),
    ("bad-id", GOOD_HEADER + "a zero 8\n", "5: bad id 'zero' (expected a non-negative integer)"),
    ("missing-id", GOOD_HEADER + "f\n", "5: 'f' without an id"),
    ("missing-size", GOOD_HEADER + "a 1\n", "5: 'a 1' without a size in bytes"),
    ("bad-size", GOOD_HEADER + "a 1 -5\n", "5: bad size '-5' (expected bytes, a non-negative integer up to 2^48)"),
    ("huge-size", GOOD_HEADER + "a 1 99999999999999999999\n", "5: bad size '99999999999999999999' (expected bytes, a non-negative integer up to 2^48)"),
    ("bad-alignment", GOOD_HEADER + "a 1 64 48\n", "5: bad alignment '48' (expected a power of two up to 2^30)"),
    ("trailing", GOOD_HEADER + "f 1 2\n", "5: 'f' of id 1"),  # checked below more precisely
    ("free-never-allocated", GOOD_HEADER + "a 0 8\nf 2\nf 0\n", "6: free of id 2, which was never allocated"),
    ("double-free", GOOD_HEADER + "a 0 8\nf 0\nf 0\n", "7: free of id 0, which was already freed at line 6"),
    ("realloc-never-allocated", GOOD_HEADER + "r 3 8\n", "5: realloc of id 3, which was never allocated"),
    ("alloc-live", GOOD_HEADER + "a 0 8\na 0 8\n", "6: alloc of id 0, which is still live (allocated at line 5)"),
    ("truncated", GOOD_HEADER + "a 0 8\nf 0\n", "7: truncated: the file ends after 2 of the 3 ops the header declares"),
    ("too-many-ops", GOOD_HEADER + "a 0 8\nf 0\na 1 8\nf 1\n", "8: more ops than the header declares (3)"),
    ("binary", "0\n1\n1\n1\n\0\0\0", "1: bad header: the file contains NUL bytes (not a text trace)"),
]
# "f 1 2": the trailing field is reported, not the life of id 1.
MALFORMED[[m[0] for m in MALFORMED].index("trailing")] = (
    "trailing", GOOD_HEADER + "a 1 8\nf 1 2\n", "6: unexpected '2' after the op")


def run(args, **kw):
    return subprocess.run([tool] + args, capture_output=True, text=True, timeout=60, **kw)


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def crashed(p):
    return p.returncode < 0 or "Sanitizer" in p.stderr or "runtime error" in p.stderr


with tempfile.TemporaryDirectory() as tmp:
    for name, text, expected in MALFORMED:
        path = os.path.join(tmp, name + ".rep")
        with open(path, "w") as f:
            f.write(text)
        p = run(["replay", "--reps", "0", path])
        want = f"{path}:{expected}"
        check(p.returncode == 1 and not crashed(p), f"{name}: exit status 1",
              f"got {p.returncode}; stderr: {p.stderr}")
        check(p.stderr.strip() == want, f"{name}: message",
              f"want: {want}\ngot:  {p.stderr.strip()}")

    # A bad trace after a good one still stops everything, naming the bad one.
    good = os.path.join(tmp, "good.rep")
    with open(good, "w") as f:
        f.write("0\n2\n4\n1\na 0 100\na 1 200\nf 0\nf 1\n")
    p = run(["replay", "--reps", "0", good])
    check(p.returncode == 0 and "good" in p.stdout, "a good trace replays", p.stderr)
    p = run(["replay", "--reps", "0", good, os.path.join(tmp, "truncated.rep")])
    check(p.returncode == 1 and "truncated.rep:7: truncated" in p.stderr,
          "second trace bad", p.stderr)

    # A header declaring far more ids than the trace uses costs nothing
    # per declared id (it once took minutes, freeing leftovers by id).
    sparse = os.path.join(tmp, "sparse.rep")
    with open(sparse, "w") as f:
        f.write("0\n16777216\n2\n1\na 16777215 10\nf 16777215\n")
    p = run(["replay", "--reps", "1", sparse])
    check(p.returncode == 0 and "sparse" in p.stdout, "a sparse trace replays", p.stderr)

    missing = os.path.join(tmp, "nope.rep")
    p = run(["replay", missing])
    check(p.returncode == 1 and p.stderr.strip() == f"{missing}: cannot open: No such file or directory",
          "missing trace file", p.stderr)
    p = run(["replay", tmp])
    check(p.returncode == 1 and p.stderr.startswith(f"{tmp}: cannot read: Is a directory"),
          "directory as trace", p.stderr)

    # Unwritable outputs fail before any replay.
    bad_out = os.path.join(tmp, "no-such-dir", "map.svg")
    for opt in ("--svg", "--html"):
        p = run(["replay", opt, bad_out, good])
        check(p.returncode == 1 and
              p.stderr.strip() == f"brisk-trace replay: cannot write {bad_out}: No such file or directory",
              f"unwritable {opt}", p.stderr)

    # Usage errors: exit 2 with the usage text.
    for args, msg in [
        (["replay"], "brisk-trace: replay: no trace given"),
        (["replay", "--reps", "-1", good], "brisk-trace: replay: bad --reps '-1'"),
        (["replay", "--capacity", "lots", good], "brisk-trace: replay: bad --capacity 'lots'"),
        (["replay", "--frobnicate", good], "brisk-trace: replay: unknown option '--frobnicate'"),
        (["replay", "--svg"], "brisk-trace: replay: --svg needs a value"),
        (["record", "-o", os.path.join(tmp, "x.rep")], "brisk-trace: record: no command given after --"),
        (["record", "-o", os.path.join(tmp, "x.rep"), "--"], "brisk-trace: record: no command given after --"),
        (["record", "--", "true"], "brisk-trace: record: no output file (-o FILE.btr)"),
        (["record", "--max-ops", "1", "-o", "x.btr", "--", "true"], "brisk-trace: record: unknown option '--max-ops'"),
        (["report"], "brisk-trace: report: no recording given"),
        (["report", "--top", "x", "r.btr"], "brisk-trace: report: --top needs a number"),
        (["report", "a.btr", "b.btr"], "brisk-trace: report: one recording at a time"),
        (["convert", "a.btr"], "brisk-trace: convert: needs IN and OUT"),
        (["convert", "--to", "pdf", "a", "b"], "brisk-trace: convert: --to needs 'text', 'recording' or 'raw'"),
        (["frob"], "brisk-trace: unknown subcommand 'frob'"),
        ([], "brisk-trace: record any program's allocations"),
    ]:
        p = run(args)
        check(p.returncode == 2 and p.stderr.startswith(msg) and not crashed(p),
              f"usage error {args}", f"got {p.returncode}: {p.stderr}")
    p = run(["replay", "--map", "other", good])
    check(p.returncode == 1 and "--map 'other' names none of the traces given" in p.stderr,
          "--map of an unknown trace", p.stderr)

    # record: unwritable output, a command that does not exist.
    p = run(["record", "-o", bad_out, "--", "true"])
    check(p.returncode == 1 and
          p.stderr.strip() == f"brisk-trace record: cannot write {bad_out}: No such file or directory",
          "record: unwritable output", p.stderr)
    p = run(["record", "-o", os.path.join(tmp, "y.rep"), "--", "/no/such/program"])
    check(p.returncode == 127 and
          "brisk-trace record: cannot run '/no/such/program': No such file or directory" in p.stderr,
          "record: missing program", p.stderr)

    # Help: the whole tool and each subcommand.
    for args, needle in [(["--help"], "usage:"), (["help", "record"], "FILE.PID.btr"),
                         (["record", "--help"], "--no-free-stacks"),
                         (["help", "report"], "--json"), (["convert", "--help"], "--to text"), (["replay", "--help"], "--html FILE"),
                         (["help", "replay"], "--capacity SIZE")]:
        p = run(args)
        check(p.returncode == 0 and needle in p.stdout, f"help {args}", p.stdout + p.stderr)

print(f"test_trace_errors: {checks - failures} passed, {failures} failed")
sys.exit(1 if failures or checks == 0 else 0)
