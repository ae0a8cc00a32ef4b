#!/usr/bin/env bash
# The install, as a user sees it: `cmake --install` into a scratch prefix,
# then a small program that uses the arena and the region heap is built
# against that prefix three ways, and each must compile, link and print
# "ok":
#   1. CMake's find_package(brisk), linking brisk::brisk (the shared library);
#   2. the same with brisk::brisk_static;
#   3. pkg-config --cflags --libs brisk (skipped, and said, when pkg-config
#      is not installed; .ci/apt-packages installs it).
# The prefix is not the one the build was configured with, so this also
# proves the installed files name their own location, not the build's.
#
#   usage: install_consumer.sh BUILD_DIR C_COMPILER
set -euo pipefail
build=$1
cc=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" > "$work/install.log"

mkdir "$work/src"
cat > "$work/src/main.c" <<'C'
#include <brisk.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    brisk_arena *arena = brisk_arena_create(1 << 16);
    brisk_heap *heap = brisk_heap_create(1 << 16);
    if (arena == NULL || heap == NULL)
        return 1;
    char *a = brisk_arena_alloc(arena, 16);
    char *h = brisk_heap_alloc(heap, 16);
    if (a == NULL || h == NULL)
        return 2;
    strcpy(a, "ok");
    memcpy(h, a, 3);
    brisk_heap_free(heap, h);
    if (brisk_heap_check(heap) != 0)
        return 3;
    puts(a);
    brisk_heap_destroy(heap);
    brisk_arena_destroy(arena);
    return 0;
}
C
cat > "$work/src/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(brisk_consumer C)
find_package(brisk REQUIRED)
add_executable(consumer_shared main.c)
target_link_libraries(consumer_shared PRIVATE brisk::brisk)
add_executable(consumer_static main.c)
target_link_libraries(consumer_static PRIVATE brisk::brisk_static)
CM

expect_ok() { # WHAT COMMAND...
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    echo "FAIL: $what: the program failed: $out" >&2
    exit 1
  fi
  if [ "$out" != ok ]; then
    echo "FAIL: $what: printed \"$out\", expected \"ok\"" >&2
    exit 1
  fi
  echo "ok: $what"
}

if ! cmake -S "$work/src" -B "$work/b" -DCMAKE_C_COMPILER="$cc" \
       -DCMAKE_PREFIX_PATH="$prefix" > "$work/configure.log" 2>&1 ||
   ! cmake --build "$work/b" > "$work/build.log" 2>&1; then
  echo "FAIL: find_package(brisk) from $prefix:" >&2
  cat "$work/configure.log" "$work/build.log" >&2 2>/dev/null || true
  exit 1
fi
libdir=$(dirname "$(find "$prefix" -name 'libbrisk.so' | head -1)")
expect_ok "find_package, brisk::brisk" env LD_LIBRARY_PATH="$libdir" "$work/b/consumer_shared"
expect_ok "find_package, brisk::brisk_static" "$work/b/consumer_static"

if ! command -v pkg-config > /dev/null; then
  echo "pkg-config is not installed: its part is skipped"
  exit 0
fi
pcdir=$(dirname "$(find "$prefix" -name brisk.pc | head -1)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs brisk)
case "$flags" in
  *"$prefix"*) ;;
  *) echo "FAIL: pkg-config names another prefix than $prefix: $flags" >&2; exit 1 ;;
esac
# shellcheck disable=SC2086
"$cc" "$work/src/main.c" $flags -o "$work/consumer_pc"
expect_ok "pkg-config --cflags --libs brisk" env LD_LIBRARY_PATH="$libdir" "$work/consumer_pc"
