#!/usr/bin/env bash
# The test suite under sanitizers (docs/testing.md), for `make test`:
#
#   tests/sanitizers/run.sh asan SOURCE_DIR SAN_BUILD_DIR JOBS MAIN_BUILD_DIR
#       ASan + UBSan (-DBURSAR_SANITIZE=address): bursard, bursarctl and every
#       unit-test binary are built in SAN_BUILD_DIR and the unit tests run
#       there; then every integration test of MAIN_BUILD_DIR (tests/, a real
#       bursard per test) runs against the sanitized bursard
#       (BURSAR_TEST_BURSARD). Integration-test clients are not rebuilt: the
#       server is what they exercise.
#   tests/sanitizers/run.sh tsan SOURCE_DIR SAN_BUILD_DIR JOBS
#       TSan (-DBURSAR_SANITIZE=thread): bursard and the concurrency tests
#       (limits/ and storage/ unit tests, tests/concurrency_test.cc,
#       tests/crash_test.cc) built and run in SAN_BUILD_DIR.
#
# Every sanitizer report goes to a log file of this run as well; any report
# fails the run, also one from a bursard whose test did not notice.
set -euo pipefail

mode=${1:?usage: run.sh asan|tsan SOURCE_DIR SAN_BUILD_DIR [JOBS] [MAIN_BUILD_DIR]}
src=$(cd "${2:?SOURCE_DIR}" && pwd)
out=${3:?SAN_BUILD_DIR}
jobs=${4:-$(nproc)}
main_build=${5:-}

case "$mode" in
  asan) sanitize=address ;;
  tsan) sanitize=thread ;;
  *) echo "mode must be asan or tsan, not $mode" >&2; exit 2 ;;
esac
if [ "$mode" = asan ] && [ ! -x "$main_build/tests/bursar_concurrency_test" ]; then
  echo "asan needs the main build dir (with its integration tests built)" >&2
  exit 2
fi

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
if [ ! -f "$out/build.ninja" ]; then
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBURSAR_SANITIZE="$sanitize" "${launcher[@]}"
fi
out=$(cd "$out" && pwd)

reports="$out/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
# Leaks: Debian's gRPC and protobuf keep process-lifetime singletons that
# LeakSanitizer reports at every exit; the fuzzers check leaks instead.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$reports/asan"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$src/tests/sanitizers/tsan.supp:log_path=$reports/tsan"
# The model-based test is long; under a sanitizer a shorter run takes every
# path.
export BURSAR_MODEL_OPS=${BURSAR_MODEL_OPS:-400}

failed=0
if [ "$mode" = asan ]; then
  # The integration tests (tests/CMakeLists.txt) run from the main build.
  mapfile -t integration < <(sed -n -E \
    's/^bursar_integration_test\((bursar_[a-z_]+_test).*/\1/p' \
    "$src/tests/CMakeLists.txt")
  mapfile -t unit < <(cmake --build "$out" --target help |
    sed -n -E 's/^(bursar[a-z_]*_test|bursarctl_test): .*/\1/p' |
    grep -v -x -F "${integration[@]/#/-e}")
  cmake --build "$out" -j "$jobs" --target bursard bursarctl "${unit[@]}"
  (cd "$out" && ctest --output-on-failure -j "$jobs" -LE 'fuzz|deploy' \
    -E '^(portkey_e2e|example_python|example_node|helm_chart)$|NOT_BUILT') ||
    failed=1
  export BURSAR_TEST_BURSARD="$out/server/bursard"
  for t in "${integration[@]}"; do
    echo "== against the ASan bursard: $t"
    (cd "$main_build/tests" && "./$t" --gtest_brief=1) || failed=1
  done
else
  tsan_tests=(limits/bursar_limits_test storage/bursar_storage_test
              tests/bursar_concurrency_test tests/bursar_crash_test)
  cmake --build "$out" -j "$jobs" --target bursard "${tsan_tests[@]##*/}"
  for t in "${tsan_tests[@]}"; do
    echo "== TSan: $t"
    (cd "$out" && "./$t" --gtest_brief=1) || failed=1
  done
fi

if compgen -G "$reports/*" >/dev/null; then
  echo "FAILED: sanitizer reports (in $reports):"
  for f in "$reports"/*; do
    echo "---- $f"
    head -120 "$f"
  done
  failed=1
fi
exit "$failed"
