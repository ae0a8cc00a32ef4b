#!/usr/bin/env python3
"""libbrisk's sampled heap profiling (BRISK_OPTIONS=profile) read back by
brisk-trace report: on profile_mix.c, whose three sites allocate about
50/30/20% of the bytes (and keep known parts live), the sampled per-site
shares of allocated and of live bytes must be within 3 points of the
exact ones, and the estimated totals within 10%. Also: the dumps by
brisk_profile_dump, by SIGUSR2 and at exit; brisk_profile_dump's errors;
the options' errors; no file at all when profiling is off.

usage: test_profile.py BRISK_TRACE PROFILE_MIX
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

tool, program = sys.argv[1], sys.argv[2]
failures = checks = 0
SITES = ["site_small", "site_medium", "site_large"]


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def run(args, options=None, cwd=None):
    env = dict(os.environ)
    env.pop("BRISK_OPTIONS", None)
    if options is not None:
        env["BRISK_OPTIONS"] = options
    return subprocess.run(args, capture_output=True, text=True, timeout=100, env=env, cwd=cwd)


def report(path):
    p = run([tool, "report", "--json", "--top", "0", path])
    check(p.returncode == 0, f"report --json {path} succeeds", p.stderr)
    return json.loads(p.stdout) if p.returncode == 0 else None


def by_function(functions):
    return {f["function"]: f for f in functions}


def shares(values):
    total = sum(values)
    return [v / total if total else 0.0 for v in values]


def compare(profile, exact, label):
    """The sampled shares of the three sites against the exact ones."""
    for part, key in (("allocated", "allocated"), ("live", "live")):
        got = by_function(profile[part]["functions"])
        est = [got.get(name, {"bytes": 0})["bytes"] for name in SITES]
        want = exact[key]
        for name, e, w in zip(SITES, est, want):
            check(abs(e - w) <= 0.10 * w,
                  f"{label}: {part} bytes of {name} within 10% of the exact {w}", f"estimated {e}")
        for name, e, w in zip(SITES, shares(est), shares(want)):
            check(abs(e - w) <= 0.03,
                  f"{label}: {part} share of {name} within 3 points of the exact {w:.3f}",
                  f"sampled share {e:.3f}")
            print(f"{label}: {part:9} {name:12} exact {100 * w:5.1f}%  sampled {100 * e:5.1f}%")


with tempfile.TemporaryDirectory() as tmp:
    # ---- the mix, dumped by brisk_profile_dump ----------------------------
    path = os.path.join(tmp, "mix.btr")
    p = run([program, "mix", path], "profile=4096", cwd=tmp)
    check(p.returncode == 0, "the mix runs with profile=4096", p.stderr)
    check(p.stderr == "", "profiling writes nothing on stderr", p.stderr)
    exact = json.loads(p.stdout) if p.returncode == 0 else None
    prof = report(path) if os.path.exists(path) else None
    check(prof is not None, "brisk_profile_dump wrote the profile")
    if prof is not None and exact is not None:
        info = prof["profile"]
        check(info["sampled"] is True and info["rate"] == 4096, "the profile says it is sampled",
              str(info))
        # about 100 MiB at one sample per 4 KiB
        check(10000 < info["samples"] < 40000, "a plausible number of samples", str(info))
        compare(prof, exact, "brisk_profile_dump")
        sites = prof["live"]["sites"] + prof["allocated"]["sites"]
        check(all(s["frames"] and s["frames"][0] != "brisk_malloc" for s in sites),
              "stacks start at the program's frame, not in the allocator",
              json.dumps(sites[:2], indent=1))
        check(all("samples" in s for s in sites), "each site has its number of samples")
    # The table says the figures are estimates.
    t = run([tool, "report", path])
    check(t.returncode == 0 and "SAMPLED PROFILE" in t.stdout and "estimate" in t.stdout and
          "site_small" in t.stdout, "report's table labels the sampled estimates", t.stdout[:2000])
    # A profile has no calls: replay and convert say so; --to raw copies it.
    r = run([tool, "replay", "--reps", "0", path])
    check(r.returncode != 0 and "sampled profile" in r.stderr and "report" in r.stderr,
          "replay refuses a profile, naming report", r.stdout + r.stderr)
    r = run([tool, "convert", path, os.path.join(tmp, "c.btr")])
    check(r.returncode != 0 and "sampled profile" in r.stderr, "convert refuses to pack a profile",
          r.stderr)
    copy = os.path.join(tmp, "copy.btr")
    r = run([tool, "convert", "--to", "raw", path, copy])
    check(r.returncode == 0, "convert --to raw copies a profile", r.stderr)
    if r.returncode == 0 and prof is not None:
        again = report(copy)
        check(again is not None and again["profile"]["samples"] == prof["profile"]["samples"] and
              again["live"]["bytes"] == prof["live"]["bytes"] and
              again["allocated"]["bytes"] == prof["allocated"]["bytes"],
              "the raw copy reads as the same profile")
    # The exit dump went to the default name in the working directory.
    defaults = glob.glob(os.path.join(tmp, "brisk-profile.*.btr"))
    check(len(defaults) == 1, "the exit dump is brisk-profile.<pid>.btr in the cwd", str(defaults))
    for f in defaults:
        os.unlink(f)

    # ---- profile_path with %p: the process id ----------------------------
    pct = os.path.join(tmp, "pct")
    os.mkdir(pct)
    p = run([program, "small"], "profile,profile_path=" + os.path.join(pct, "run.%p.btr"))
    check(p.returncode == 0 and json.loads(p.stdout)["dump"] == 0,
          "brisk_profile_dump(NULL) writes to profile_path", p.stdout + p.stderr)
    named = os.listdir(pct)
    check(len(named) == 1 and named[0].startswith("run.") and named[0][4:-4].isdigit(),
          "profile_path's %p is the process id", str(named))

    # ---- SIGUSR2 ----------------------------------------------------------
    # At profile=1024: this mix is a third of the one above, and at 4096
    # its smallest site's live bytes had about 400 samples, whose 5%
    # standard error put the 10% bound at two of them (the check failed
    # about one run in 30); at 1024 the bound is four.
    target = os.path.join(tmp, "sig.btr")
    p = run([program, "signal", target], "profile=1024,profile_path=" + target, cwd=tmp)
    check(p.returncode == 0, "SIGUSR2 makes the program write its profile", p.stderr)
    if p.returncode == 0:
        sig = report(target + ".signal")
        if sig is not None:
            compare(sig, json.loads(p.stdout), "SIGUSR2")
    check(os.path.exists(target), "and the exit dump came after it")

    # ---- brisk_profile_dump's errors --------------------------------------
    p = run([program, "errors", os.path.join(tmp, "no", "such", "dir.btr")], "profile", cwd=tmp)
    check(p.returncode == 0, "the errors mode runs", p.stderr)
    if p.returncode == 0:
        e = json.loads(p.stdout)
        check(e["empty"] == e["einval"], "an empty path is EINVAL", p.stdout)
        check(e["missing_dir"] == e["enoent"], "a missing directory is ENOENT", p.stdout)

    # ---- profiling off: no file, and brisk_profile_dump says ENOTSUP ------
    off = os.path.join(tmp, "off")
    os.mkdir(off)
    for options in (None, "stats=0", "profile=0"):
        p = run([program, "small"], options, cwd=off)
        check(p.returncode == 0, f"the program runs with BRISK_OPTIONS={options}", p.stderr)
        if p.returncode == 0:
            r = json.loads(p.stdout)
            check(r["dump"] == r["enotsup"], f"brisk_profile_dump is ENOTSUP with {options}",
                  p.stdout)
        check(os.listdir(off) == [], f"no profile file with BRISK_OPTIONS={options}",
              str(os.listdir(off)))

    # ---- the options' errors: a warning, and profiling stays off ----------
    for options, message in (
            ("profile=abc", "profile=RATE needs a number of bytes, ignoring"),
            ("profile=-5", "profile=RATE needs a number of bytes, ignoring"),
            ("profile=2000000000000", "profile=RATE is more than 1 TiB, ignoring"),
            ("profile_path=", "profile_path needs a file name, ignoring"),
            ("profile_path=" + "x" * 300, "profile_path is longer than 255 bytes, ignoring")):
        p = run([program, "small"], options, cwd=off)
        check(p.returncode == 0, f"the program runs with BRISK_OPTIONS={options}", p.stderr)
        check(message in p.stderr, f"BRISK_OPTIONS={options} warns '{message}'", p.stderr)
        check(os.listdir(off) == [], f"no profile file with BRISK_OPTIONS={options}",
              str(os.listdir(off)))
    # A valid rate with a bad path item: profiling on, default name.
    p = run([program, "small"], "profile,profile_path=", cwd=off)
    check(p.returncode == 0 and json.loads(p.stdout)["dump"] == 0,
          "profile with a bad profile_path still profiles (to the default name)", p.stdout)
    check(len(glob.glob(os.path.join(off, "brisk-profile.*.btr"))) == 1,
          "at the default name", str(os.listdir(off)))

print(f"{checks - failures} of {checks} checks passed")
sys.exit(1 if failures else 0)
