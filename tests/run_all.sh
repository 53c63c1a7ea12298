#!/usr/bin/env bash
# The whole test suite: a release build with every CTest test, an ASan+UBSan
# build with every test (its differential soak on other seeds), then a ThreadSanitizer
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
# The release build runs everything, the differential soak included (label
# "soak": 400 random sequences per cache configuration, fixed seeds).
run build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# The sanitizer build runs every test too; its soak runs 200 other seeds
# per configuration (tests/reliability/CMakeLists.txt).
run build-asan -DCMAKE_BUILD_TYPE=Debug -DUPCACHE_SANITIZE=ON -DUPCACHE_BENCH=OFF

# ThreadSanitizer: core only (the shim is never built with TSan: a preloaded
# TSan runtime in foreign programs is not supported).
tsan_tests="cache_concurrency_test cache_test page_index_test eviction_test owner_test partial_page_test coherence_test"
echo "== configure build-tsan"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPCACHE_TSAN=ON -DUPCACHE_BENCH=OFF
echo "== build build-tsan ($tsan_tests)"
# shellcheck disable=SC2086
cmake --build build-tsan -j"$jobs" --target $tsan_tests
echo "== test build-tsan"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
  ctest --test-dir build-tsan --output-on-failure -j"$jobs" --timeout 900 \
    -R "^(CacheConcurrency|CacheTest|PartialPageTest|PageIndexTest|ClockTest|Arena|Owner|SpinLock|CoherenceTest)\\." -E "_NOT_BUILT"
