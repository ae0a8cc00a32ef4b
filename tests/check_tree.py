#!/usr/bin/env python3
"""Checks the rules of the source tree that no compiler checks (issue 11):

  1. No two static functions in the library (src/) share a name: a static
     function is defined in one place only (a .c file, or once in a header
     as static inline), so that a name means one thing library-wide.
  2. Each allocator (src/arena, src/heap, src/malloc) stands on src/common
     alone: none of its files includes a file of another allocator's
     folder, and src/common includes none of theirs.
  3. The same for calls, when given the library's archive (--archive,
     with --nm): no object of one allocator's folder refers to a symbol
     defined by another's, and src/common's objects refer to none of
     theirs. A prototype written by hand would pass rule 2, not this.

Usage: check_tree.py SOURCE_ROOT [--archive libbrisk_static_debug.a --nm nm]
Prints each violation with its file and line and exits 1; prints what it
checked and exits 0 when every rule holds.
"""
import argparse
import os
import re
import subprocess
import sys

ALLOCATORS = ("arena", "heap", "malloc")
BASE = "common"


def strip_comments_and_strings(text):
    """The text with comments and string and character literals blanked
    (newlines kept, so line numbers stay right)."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)

    def blank(match):
        s = match.group(0)
        if s.startswith('"') or s.startswith("'"):
            return s[0] + " " * (len(s) - 2) + s[-1]
        return re.sub(r"[^\n]", " ", s)

    return pattern.sub(blank, text)


# A declaration at the start of a line that begins with `static` and names
# a function: the first identifier followed by "(" that is not "(*" (a
# pointer to function is a variable), before any ; { or =.
STATIC_DECL = re.compile(r"^static\b([^;{=]*?)\b([A-Za-z_]\w*)\s*\((?!\s*\*)", re.M)
ATTRIBUTE = re.compile(r"__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)")
INCLUDE_START = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"', re.M)
INCLUDE = re.compile(r'[ \t]*#[ \t]*include[ \t]*"([^"]+)"')


def source_files(src):
    for folder, _, names in sorted(os.walk(src)):
        for name in sorted(names):
            if name.endswith((".c", ".h")):
                yield os.path.join(folder, name)


def part_of(src, path):
    """The folder of src that path lies in (common, arena, ...), or None."""
    rel = os.path.relpath(path, src)
    head = rel.split(os.sep)[0]
    return head if head in ALLOCATORS + (BASE,) else None


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def check_static_names(root, src, problems):
    seen = {}  # name -> (file, line) of its first definition
    count = 0
    for path in source_files(src):
        with open(path, encoding="utf-8") as f:
            text = strip_comments_and_strings(f.read())
        text = ATTRIBUTE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
        for match in STATIC_DECL.finditer(text):
            name = match.group(2)
            where = (os.path.relpath(path, root), line_of(text, match.start(2)))
            first = seen.get(name)
            if first is None:
                seen[name] = where
                count += 1
            elif first[0] != where[0]:
                problems.append("%s:%d: static function %s is also defined at %s:%d: "
                                "no two static functions in the library share a name"
                                % (where[0], where[1], name, first[0], first[1]))
    return count


def resolve_include(root, src, path, name):
    for base in (os.path.dirname(path), src, os.path.join(root, "include")):
        candidate = os.path.normpath(os.path.join(base, name))
        if os.path.exists(candidate):
            return candidate
    return None


def allowed(user, used):
    """Whether files of part `user` may use part `used`."""
    if used is None or used == user:
        return True
    return used == BASE and user in ALLOCATORS


def check_includes(root, src, problems):
    count = 0
    for path in source_files(src):
        user = part_of(src, path)
        if user is None:
            continue
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        text = strip_comments_and_strings(raw)
        # The include's name is a string literal, blanked above: read it
        # from the raw text at the same offset.
        for match in INCLUDE_START.finditer(text):
            name_match = INCLUDE.match(raw, match.start())
            if name_match is None:
                continue
            count += 1
            target = resolve_include(root, src, path, name_match.group(1))
            used = part_of(src, target) if target is not None and target.startswith(src + os.sep) else None
            if not allowed(user, used):
                problems.append("%s:%d: includes \"%s\" (src/%s): files of src/%s may use only %s"
                                % (os.path.relpath(path, root), line_of(raw, match.start()), name_match.group(1),
                                   used, user, "src/common" if user != BASE else "themselves"))
    return count


def check_symbols(root, src, archive, nm, problems):
    """Rule 3, from the archive's symbol tables."""
    sources = {}  # object basename (without .o) -> part
    for path in source_files(src):
        if path.endswith(".c"):
            sources[os.path.basename(path)] = part_of(src, path)
    out = subprocess.run([nm, "-A", "-P", archive], check=True, capture_output=True, text=True).stdout
    defined = {}  # symbol -> (part, member)
    undefined = []  # (part, member, symbol)
    parts = {}
    member_line = re.compile(r"^.*\[([^\]]+)\]: (\S+) (\S)")
    for line in out.splitlines():
        # POSIX format: archive[member]: name type [value size]
        match = member_line.match(line)
        if match is None:
            continue
        member, symbol, kind = match.groups()
        base = member[:-2] if member.endswith(".o") else member
        part = sources.get(base)
        if part is None:
            problems.append("%s: archive member %s matches no source file of src/" % (archive, member))
            continue
        parts[member] = part
        if kind == "U":
            undefined.append((part, member, symbol))
        elif kind.isupper():
            defined[symbol] = (part, member)
    missing = [part for part in ALLOCATORS + (BASE,) if part not in parts.values()]
    if not defined or missing:
        problems.append("%s: no symbols read for src/%s (is it the library built from every file of src/?)"
                        % (archive, ", src/".join(missing) if missing else "any part"))
    for part, member, symbol in undefined:
        owner = defined.get(symbol)
        if owner is not None and not allowed(part, owner[0]):
            problems.append("%s (src/%s) refers to %s, defined in %s (src/%s): files of src/%s may use only %s"
                            % (member, part, symbol, owner[1], owner[0], part,
                               "src/common" if part != BASE else "themselves"))
    return len(parts), len(undefined)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the source tree's root (holding src/ and include/)")
    parser.add_argument("--archive", help="a static library built from every file of src/")
    parser.add_argument("--nm", default="nm", help="the nm to read it with")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    src = os.path.join(root, "src")
    if not os.path.isdir(src):
        print("check_tree: %s has no src/ folder" % root)
        return 2
    problems = []
    statics = check_static_names(root, src, problems)
    includes = check_includes(root, src, problems)
    summary = "%d static functions, %d includes" % (statics, includes)
    if args.archive:
        objects, references = check_symbols(root, src, args.archive, args.nm, problems)
        summary += ", %d references from %d objects" % (references, objects)
    for problem in problems:
        print(problem)
    if problems:
        print("check_tree: %d violation(s) of the tree's rules (%s checked)" % (len(problems), summary))
        return 1
    print("check_tree: %s checked: every static function's name is its own, and each allocator uses only "
          "src/common" % summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
