#!/usr/bin/env bash
# Short libFuzzer runs, for ctest (test fuzz_policy_parsers, label "fuzz"):
# builds the YAML loader, expression compiler and request-path
# (server/request_fuzzer.cc: Check/Report/SetBudget/PushPolicy from bytes)
# fuzzers with clang in a build directory of their own (every library
# instrumented: -DBURSAR_SANITIZE=fuzzer), then runs each for a few seconds
# on a fresh copy of its checked-in corpus. Fails on
# any crash, leak, timeout or out-of-memory; skips (exit 77, ctest's
# SKIP_RETURN_CODE) when clang++ or the libFuzzer runtime is missing.
#
#   tests/fuzz/run_fuzzers.sh [--in-tree] SOURCE_DIR FUZZ_BUILD_DIR [SECONDS_EACH]
#
# --in-tree: FUZZ_BUILD_DIR is a clang build whose libraries already carry
# the fuzzers' coverage (-DBURSAR_SANITIZE=address or fuzzer) and that built
# the fuzzers with everything else; they are run from there, nothing is
# configured or built.
#
# Findings (and the fuzzer's log) are written to FUZZ_BUILD_DIR/artifacts/;
# reproduce one with
#   FUZZ_BUILD_DIR/policy/bursar_loader_fuzzer \
#     FUZZ_BUILD_DIR/artifacts/loader-crash-...
set -euo pipefail

readonly kSkip=77
# Sanitizer options from outside (tests/sanitizers/run.sh: reports to log
# files, no leak checks) are not the fuzzers': here a finding goes to the
# fuzzer's log and a leak is a finding.
unset ASAN_OPTIONS UBSAN_OPTIONS
usage="usage: run_fuzzers.sh [--in-tree] SOURCE_DIR FUZZ_BUILD_DIR [SECONDS]"
in_tree=0
if [ "${1:-}" = "--in-tree" ]; then
  in_tree=1
  shift
fi
src=$(cd "${1:?$usage}" && pwd)
out=${2:?$usage}
seconds=${3:-30}

skip() {
  echo "SKIPPED: $*"
  echo "(scripts/install-deps.sh installs clang and libclang-rt-14-dev)"
  exit "$kSkip"
}

mkdir -p "$out"
# Scratch space of this run (the probe, corpus copies, logs), so that two
# runs on one build directory do not step on each other.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/bursar-fuzz.XXXXXX")
trap 'rm -rf "$run_dir"' EXIT
# build_fuzzers: the fuzzers in a clang build of their own, in $out.
build_fuzzers() {
  command -v clang++ >/dev/null 2>&1 || skip "clang++ is not installed"

  probe_dir="$run_dir/probe"
  mkdir -p "$probe_dir"
  printf '%s\n' \
    '#include <cstddef>' \
    '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' \
    >"$probe_dir/probe.cc"
  if ! clang++ -fsanitize=fuzzer,address "$probe_dir/probe.cc" \
      -o "$probe_dir/probe" >"$probe_dir/probe.log" 2>&1; then
    cat "$probe_dir/probe.log"
    skip "clang++ cannot link -fsanitize=fuzzer: the libFuzzer runtime is missing"
  fi

  # A build directory of its own: the main build may use another compiler.
  # Two jobs at most, so that the rest of ctest keeps a core when it runs
  # beside this test.
  # (Re)configured every time: cheap, and an older fuzz build dir gains the
  # instrumentation option.
  launcher=()
  if command -v ccache >/dev/null 2>&1; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBURSAR_SANITIZE=fuzzer \
    "${launcher[@]}" >"$out/configure.log" 2>&1 || {
    cat "$out/configure.log"
    echo "FAILED: configuring the clang build in $out"
    exit 1
  }
  cmake --build "$out" -j 2 \
    --target bursar_loader_fuzzer bursar_expr_compile_fuzzer \
    bursar_request_fuzzer
}

if [ "$in_tree" = 1 ]; then
  for target in policy/bursar_loader_fuzzer policy/bursar_expr_compile_fuzzer \
                tests/fuzz/bursar_request_fuzzer; do
    [ -x "$out/$target" ] || {
      echo "FAILED: --in-tree, but $out/$target was not built"
      exit 1
    }
  done
else
  build_fuzzers
fi

# name, binary, corpus
fuzzers=(
  "loader $out/policy/bursar_loader_fuzzer $src/policy/loader_fuzz_corpus"
  "expr $out/policy/bursar_expr_compile_fuzzer $src/policy/expr/fuzz_corpus"
  "request $out/tests/fuzz/bursar_request_fuzzer $src/tests/fuzz/request_corpus"
)
mkdir -p "$out/artifacts"
failed=0
for entry in "${fuzzers[@]}"; do
  read -r name binary corpus <<<"$entry"
  work="$run_dir/corpus-$name"
  log="$run_dir/$name.log"
  mkdir -p "$work"
  cp "$corpus"/* "$work"/
  echo "== $name: ${seconds}s on a copy of $corpus"
  # libFuzzer's own default exit code for a finding is 77, which ctest would
  # read as a skip; every finding exits 1 here.
  if "$binary" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$name-" "$work" >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' \
      "$log" || true
  else
    failed=1
    cp "$log" "$out/artifacts/$name-failure.log"
    echo "FAILED: $name fuzzer found a problem;" \
      "full log in $out/artifacts/$name-failure.log:"
    grep -v -E '^#[0-9]+' "$log" | tail -60
    ls -1 "$out/artifacts/$name-"* 2>/dev/null || true
  fi
done
exit "$failed"
