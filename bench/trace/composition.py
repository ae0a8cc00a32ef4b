#!/usr/bin/env python3
"""A packed recording's record stream by record kind: how many records of
each kind and how many of the uncompressed bytes they take (the grammar is
tools/trace/pack.c's). Shows what a file's bytes are before zstd; the
compressed share of a kind is not separable, but a kind that breaks up
repeats (as inline time records did) shows as many small records.

usage: composition.py FILE.btr   (needs the zstd command)
"""
import collections
import subprocess
import sys

data = open(sys.argv[1], "rb").read()
if data[:8] != b"BRISKPAK":
    sys.exit(f"{sys.argv[1]}: not a packed recording")
raw = subprocess.run(["zstd", "-dc"], input=data[32:], capture_output=True, check=True).stdout
ALIGNED = {5, 6, 7, 12}  # kinds with an alignment field
p = 0


def var():
    global p
    v = shift = 0
    while True:
        b = raw[p]
        p += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v


def skip(n):
    for _ in range(n):
        var()


count, size = collections.Counter(), collections.Counter()
while p < len(raw):
    at, k = p, raw[p]
    p += 1
    c = chr(k) if k >= 0x40 else ""
    if c in ("C", "M"):
        n = var()
        p += n
    elif c == "H":
        skip(var())
    elif c == "S":
        var()
        skip(var())
    elif c in ("T", "X", "K"):
        var()
    elif c == "A":
        var()
        skip(var())
    elif c == "R":
        skip(2 * var())
    elif c == "W":
        var()
        skip(2 * var())
    elif c == "E":
        skip(2)
    else:
        kind = k & 0x7F
        if 10 <= kind <= 12:  # frees: ref [size] [alignment] stack
            skip(1 + (kind != 10) + (kind in ALIGNED) + 1)
            c = "free"
        elif kind in (8, 9):  # reallocs: oldref new [size | size stack]
            var()
            w = var()
            skip(1 if w == 1 else 2 if w == 2 else 0)
            c = "realloc"
        else:  # allocations: info [size [alignment] stack]
            if var() == 0:
                skip(1 + (kind in ALIGNED) + 1)
                c = "alloc, new info"
            else:
                c = "alloc"
    count[c] += 1
    size[c] += p - at
print(f"{sys.argv[1]}: {len(data)} bytes, {len(raw)} bytes uncompressed")
for c in sorted(size, key=lambda c: -size[c]):
    print(f"  {c:16} {count[c]:9} records {size[c]:10} bytes")
