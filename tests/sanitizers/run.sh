#!/usr/bin/env bash
# The test suite under sanitizers (docs/testing.md), for `make test`:
#
#   tests/sanitizers/run.sh asan SOURCE_DIR BUILD_DIR [JOBS]
#       ASan + UBSan: every C++ test binary, bursard and bursarctl built with
#       -DBURSAR_SANITIZE=address, then every ctest test except the ones that
#       are not our C++ (Portkey/Node/Python/Helm) and the fuzz label.
#   tests/sanitizers/run.sh tsan SOURCE_DIR BUILD_DIR [JOBS]
#       TSan: bursard and the concurrency tests (integration concurrency and
#       crash tests, limits/ and storage/ unit tests) built with
#       -DBURSAR_SANITIZE=thread, and those tests run.
#
# Any sanitizer report fails the test that produced it (halt_on_error /
# exitcode), and so this script. bursard started by an integration test is
# the sanitized one: the harness runs the bursard of its own build dir, and
# bursard's log (with any report) is printed by the failing test.
set -euo pipefail

mode=${1:?usage: run.sh asan|tsan SOURCE_DIR BUILD_DIR [JOBS]}
src=$(cd "${2:?SOURCE_DIR}" && pwd)
out=${3:?BUILD_DIR}
jobs=${4:-$(nproc)}

case "$mode" in
  asan) sanitize=address ;;
  tsan) sanitize=thread ;;
  *) echo "mode must be asan or tsan, not $mode" >&2; exit 2 ;;
esac

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
if [ ! -f "$out/build.ninja" ]; then
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBURSAR_SANITIZE="$sanitize" "${launcher[@]}"
fi

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Leaks: Debian's gRPC and protobuf keep process-lifetime singletons;
# LeakSanitizer would report those at every exit, so leaks are left to the
# fuzzers (which check them on our code paths, tests/fuzz/).
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$src/tests/sanitizers/tsan.supp"
# The model-based test is long; under a sanitizer a shorter run is enough to
# take every path.
export BURSAR_MODEL_OPS=${BURSAR_MODEL_OPS:-400}

if [ "$mode" = asan ]; then
  # Every test binary of the tree, bursard and bursarctl.
  mapfile -t targets < <(cmake --build "$out" --target help |
    sed -n -E 's/^(bursar[a-z_]*_test|bursard|bursarctl|bursarctl_test): .*/\1/p')
  cmake --build "$out" -j "$jobs" --target "${targets[@]}"
  cd "$out"
  ctest --output-on-failure -j "$jobs" -LE 'fuzz|deploy' \
    -E '^(portkey_e2e|example_python|example_node|helm_chart)$|NOT_BUILT'
else
  tsan_tests=(limits/bursar_limits_test storage/bursar_storage_test
              tests/bursar_concurrency_test tests/bursar_crash_test)
  cmake --build "$out" -j "$jobs" --target bursard "${tsan_tests[@]##*/}"
  cd "$out"
  failed=0
  for t in "${tsan_tests[@]}"; do
    echo "== TSan: $t"
    "./$t" --gtest_brief=1 || failed=1
  done
  exit "$failed"
fi
