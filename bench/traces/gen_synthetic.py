#!/usr/bin/env python3
"""Regenerates the synthetic traces in bench/traces/ (Python 3 stdlib only).

Each trace is a classic hard pattern for an allocator, in the CS:APP
malloc-lab format brisk-trace reads (see docs/trace.md):

  synth-alternating  small and large blocks alternate; the large ones are
                     freed, then requests slightly larger than the holes
                     come in (holes that cannot be reused: fragmentation)
  synth-coalescing   adjacent pairs are freed together and a block of
                     their combined size follows (needs merging)
  synth-random       log-uniform random sizes, random frees, a bounded
                     live set (general churn)
  synth-realloc      several blocks grown step by step by realloc,
                     interleaved with small allocations (in-place growth)

Usage: gen_synthetic.py [--out-dir DIR] [--scale X] [--seed N]
The output is deterministic for a given seed and scale.
"""
import argparse
import os
import random


class TraceWriter:
    """Collects ops, tracking live bytes for the header's heap size."""

    def __init__(self):
        self.ops = []
        self.sizes = {}
        self.next_id = 0
        self.live = 0
        self.peak = 0

    def alloc(self, size, align=0):
        i = self.next_id
        self.next_id += 1
        self.ops.append(f"a {i} {size} {align}" if align else f"a {i} {size}")
        self.sizes[i] = size
        self._grow(size)
        return i

    def realloc(self, i, size):
        self.ops.append(f"r {i} {size}")
        self._grow(size - self.sizes[i])
        self.sizes[i] = size

    def free(self, i):
        self.ops.append(f"f {i}")
        self.live -= self.sizes.pop(i)

    def _grow(self, delta):
        self.live += delta
        self.peak = max(self.peak, self.live)

    def write(self, path):
        with open(path, "w") as f:
            f.write(f"{self.peak}\n{self.next_id}\n{len(self.ops)}\n1\n")
            f.write("\n".join(self.ops))
            f.write("\n")


def alternating(rng, scale):
    t = TraceWriter()
    n = int(2000 * scale)
    small, large = [], []
    for _ in range(n):
        small.append(t.alloc(rng.choice((16, 24, 32, 48, 64))))
        large.append(t.alloc(rng.randrange(2048, 8192, 16)))
    for i in large:
        t.free(i)
    # Each request is a little larger than the largest hole.
    later = [t.alloc(rng.randrange(8448, 12288, 16)) for _ in range(n // 2)]
    for i in small + later:
        t.free(i)
    return t


def coalescing(rng, scale):
    t = TraceWriter()
    rounds = int(1500 * scale)
    keep = []
    for _ in range(rounds):
        x = rng.randrange(32, 2048, 16)
        y = rng.randrange(32, 2048, 16)
        a = t.alloc(x)
        b = t.alloc(y)
        keep.append(t.alloc(rng.choice((16, 32))))  # a fence after the pair
        t.free(a)
        t.free(b)
        keep.append(t.alloc(x + y))
        if len(keep) > 400:
            t.free(keep.pop(rng.randrange(len(keep))))
    for i in keep:
        t.free(i)
    return t


def random_churn(rng, scale):
    t = TraceWriter()
    live = []
    for _ in range(int(12000 * scale)):
        if live and (len(live) > 1500 or rng.random() < 0.45):
            t.free(live.pop(rng.randrange(len(live))))
        else:
            size = int(2 ** rng.uniform(3, 14))
            align = 64 if rng.random() < 0.02 else 0
            live.append(t.alloc(size, align))
    for i in live:
        t.free(i)
    return t


def realloc_growth(rng, scale):
    t = TraceWriter()
    growing = [t.alloc(rng.randrange(16, 256)) for _ in range(8)]
    small = []
    for step in range(int(3000 * scale)):
        i = rng.choice(growing)
        t.realloc(i, t.sizes[i] + rng.randrange(16, 512))
        small.append(t.alloc(rng.randrange(8, 128)))
        if len(small) > 64:
            t.free(small.pop(0))
        if t.sizes[i] > 256 * 1024:  # start that buffer over
            t.free(i)
            growing[growing.index(i)] = t.alloc(rng.randrange(16, 256))
    for i in growing + small:
        t.free(i)
    return t


PATTERNS = {
    "synth-alternating": alternating,
    "synth-coalescing": coalescing,
    "synth-random": random_churn,
    "synth-realloc": realloc_growth,
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default=here)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the number of ops")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for name, make in PATTERNS.items():
        rng = random.Random(f"{args.seed}:{name}")
        trace = make(rng, args.scale)
        path = os.path.join(args.out_dir, name + ".rep")
        trace.write(path)
        print(f"{path}: {len(trace.ops)} ops, {trace.next_id} ids, peak live {trace.peak} bytes")


if __name__ == "__main__":
    main()
