#!/usr/bin/env bash
# The whole test suite: a release build and an ASan+UBSan build, each with
# every CTest test. Exits non-zero if any build or test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
run() {
  local dir=$1; shift
  echo "== configure $dir ($*)"
  cmake -S . -B "$dir" "$@"
  echo "== build $dir"
  cmake --build "$dir" -j"$jobs"
  echo "== test $dir"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600
}
run build -DCMAKE_BUILD_TYPE=RelWithDebInfo
run build-asan -DCMAKE_BUILD_TYPE=Debug -DUPCACHE_SANITIZE=ON -DUPCACHE_BENCH=OFF
