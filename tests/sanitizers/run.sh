#!/usr/bin/env bash
# The test suite under sanitizers (docs/testing.md); `make test` runs `all`.
#
#   tests/sanitizers/run.sh asan SOURCE_DIR ASAN_BUILD_DIR [JOBS]
#       ASan + UBSan (-DBURSAR_SANITIZE=address, clang): the whole tree is
#       built in ASAN_BUILD_DIR, the fuzzers included (the libraries carry
#       libFuzzer's coverage too), and the whole ctest suite runs there
#       (every unit and integration test against the sanitized bursard, the
#       model-based and crash tests, the examples, Portkey, Helm and the
#       fuzz test on the fuzzers of this build).
#   tests/sanitizers/run.sh tsan SOURCE_DIR TSAN_BUILD_DIR [JOBS]
#       TSan (-DBURSAR_SANITIZE=thread, g++): bursard and the concurrency tests
#       (the limits/ and storage/ unit tests, tests/concurrency_test.cc,
#       tests/crash_test.cc) built and run in TSAN_BUILD_DIR; only those
#       targets are built.
#   tests/sanitizers/run.sh all SOURCE_DIR ASAN_BUILD_DIR TSAN_BUILD_DIR [JOBS]
#       Both, as CI runs them: the ASan build, then the ASan suite while the
#       TSan targets build beside it at the lowest priority (most of the
#       suite waits on processes and sockets, not on the CPU), then the TSan
#       tests. Fails if either fails; runs both either way.
#
# Every sanitizer report goes to a log file of this run as well; any report
# fails the run, also one from a bursard whose test did not notice.
set -euo pipefail

usage="usage: run.sh asan|tsan SOURCE_DIR BUILD_DIR [JOBS] | all SOURCE_DIR ASAN_DIR TSAN_DIR [JOBS]"
mode=${1:?$usage}
src=$(cd "${2:?$usage}" && pwd)

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# configure DIR SANITIZE COMPILER: a build directory of its own, configured
# once (again if it was configured with another compiler).
configure() {
  local compiler
  compiler=$(command -v "$3") || {
    echo "FAILED: $3 is not installed (scripts/install-deps.sh installs it)"
    return 1
  }
  if [ -f "$1/CMakeCache.txt" ] &&
     ! grep -qx "CMAKE_CXX_COMPILER:[A-Z]*=$compiler" "$1/CMakeCache.txt"; then
    rm -rf "$1"
  fi
  if [ ! -f "$1/build.ninja" ]; then
    cmake -S "$src" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$compiler" -DBURSAR_SANITIZE="$2" "${launcher[@]}"
  fi
}

# sanitizer_env DIR: the options of every sanitized process started from
# here; reports go to DIR/sanitizer-reports (emptied first).
sanitizer_env() {
  local reports="$1/sanitizer-reports"
  rm -rf "$reports"
  mkdir -p "$reports"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
  # Leaks: Debian's gRPC and protobuf keep process-lifetime singletons that
  # LeakSanitizer reports at every exit; the fuzzers check leaks instead
  # (tests/fuzz/run_fuzzers.sh sets its own options).
  export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$reports/asan"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$src/tests/sanitizers/tsan.supp:log_path=$reports/tsan"
}

# check_reports DIR: fails (and prints them) if any report was written.
check_reports() {
  local reports="$1/sanitizer-reports"
  if compgen -G "$reports/*" >/dev/null; then
    echo "FAILED: sanitizer reports (in $reports):"
    for f in "$reports"/*; do
      echo "---- $f"
      head -120 "$f"
    done
    return 1
  fi
}

readonly tsan_tests=(limits/bursar_limits_test storage/bursar_storage_test
                     tests/bursar_concurrency_test tests/bursar_crash_test)

tsan_build() {  # DIR JOBS
  configure "$1" thread g++
  cmake --build "$1" -j "$2" --target bursard "${tsan_tests[@]##*/}"
}

tsan_test() {  # DIR
  local failed=0
  (
    sanitizer_env "$1"
    rc=0
    for t in "${tsan_tests[@]}"; do
      echo "== TSan: $t"
      (cd "$1" && "./$t" --gtest_brief=1) || rc=1
    done
    exit "$rc"
  ) || failed=1
  check_reports "$1" || failed=1
  return "$failed"
}

asan_build() {  # DIR JOBS
  configure "$1" address clang++
  cmake --build "$1" -j "$2"
}

asan_test() {  # DIR JOBS
  local failed=0
  (
    sanitizer_env "$1"
    cd "$1" && ctest --output-on-failure -j "$2"
  ) || failed=1
  check_reports "$1" || failed=1
  return "$failed"
}

case "$mode" in
  asan)
    out=${3:?$usage}
    jobs=${4:-$(nproc)}
    asan_build "$out" "$jobs"
    asan_test "$(cd "$out" && pwd)" "$jobs"
    ;;
  tsan)
    out=${3:?$usage}
    jobs=${4:-$(nproc)}
    tsan_build "$out" "$jobs"
    tsan_test "$(cd "$out" && pwd)"
    ;;
  all)
    asan_dir=${3:?$usage}
    tsan_dir=${4:?$usage}
    jobs=${5:-$(nproc)}
    start=$SECONDS
    asan_build "$asan_dir" "$jobs"
    asan_dir=$(cd "$asan_dir" && pwd)
    echo "== ASan + UBSan build: $((SECONDS - start)) s"
    mkdir -p "$tsan_dir"
    tsan_dir=$(cd "$tsan_dir" && pwd)
    tsan_log="$tsan_dir/tsan-build.log"
    # At the lowest priority (inherited by ninja and the compilers), so
    # that it takes only the CPU the suite leaves idle while its tests wait
    # on processes and sockets, and every core once the suite is done.
    ( renice -n 19 -p "$BASHPID" >/dev/null
      tsan_build "$tsan_dir" "$jobs" ) >"$tsan_log" 2>&1 &
    tsan_pid=$!
    failed=0
    t=$SECONDS
    asan_test "$asan_dir" "$jobs" || failed=1
    echo "== ASan + UBSan suite: $((SECONDS - t)) s"
    t=$SECONDS
    if wait "$tsan_pid"; then
      echo "== TSan build (beside the suite; waited $((SECONDS - t)) s more)"
      t=$SECONDS
      tsan_test "$tsan_dir" || failed=1
      echo "== TSan tests: $((SECONDS - t)) s"
    else
      tail -60 "$tsan_log"
      echo "FAILED: the TSan build (log: $tsan_log)"
      failed=1
    fi
    echo "== sanitizers, all: $((SECONDS - start)) s"
    exit "$failed"
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
