# Sanitizer builds (docs/testing.md): configure a build directory of its own
# with -DBURSAR_SANITIZE=address (ASan + UBSan) or -DBURSAR_SANITIZE=thread
# (TSan). `make test` does both (build-test/, build-tsan/;
# tests/sanitizers/run.sh).
#
# Every target of the tree, our libraries and tests, is instrumented; the
# Debian libraries we link (gRPC, protobuf, abseil, RocksDB) are not.
# - ASan/UBSan need nothing more: uninstrumented code is simply not checked.
# - TSan needs to see the happens-before of absl::Mutex, which lives in
#   Debian's uninstrumented libabsl: cmake/tsan/absl_mutex_annotations.cc
#   wraps its entry points with TSan annotations, and is linked first into
#   every binary. tests/tsan.supp silences reports inside the uninstrumented
#   libraries themselves.
# BURSAR_FUZZERS_IN_TREE: set below when the libraries of this tree carry
# libFuzzer's coverage, so that the fuzz test runs the fuzzers built here.
set(BURSAR_FUZZERS_IN_TREE OFF)
# BURSAR_TEST_CODE_OPTIONS: compile options of code only tests and benchmarks
# run (test binaries, the test harness, bench/). In the sanitizer builds that
# code compiles at -O0, still instrumented: it is over half of the tree's
# compile time and nearly twice as fast to build at -O0, while the code under
# test keeps -O1 (make test's CI time, decision 018).
set(BURSAR_TEST_CODE_OPTIONS "")
set(BURSAR_SANITIZE "" CACHE STRING
    "empty, address (ASan+UBSan), thread (TSan) or fuzzer (clang, tests/fuzz/)")

if(NOT BURSAR_SANITIZE STREQUAL "")
  set(BURSAR_TEST_CODE_OPTIONS -O0)
endif()

# -O1 -g1 for the sanitizer builds: they exist to run tests, and -O1 with
# line tables only (all a sanitizer report needs for file:line) compiles
# markedly faster than -O2 -g (docs/testing.md, "CI time").
if(BURSAR_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all -O1 -g1)
  add_link_options(-fsanitize=address,undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # Coverage for libFuzzer as well, so that the fuzzers are built in this
    # same tree and the fuzz test needs no build of its own (make test, CI
    # time). Without libFuzzer linked, the coverage hooks are the sanitizer
    # runtime's no-ops.
    add_compile_options(-fsanitize=fuzzer-no-link)
    set(BURSAR_FUZZERS_IN_TREE ON)
  endif()
elseif(BURSAR_SANITIZE STREQUAL "thread")
  # Headers must lay classes out as the uninstrumented libraries do:
  # protobuf's MapFieldBase grows two fields under __SANITIZE_THREAD__
  # (map_field.h), which makes our code and libprotobuf disagree and crash.
  # BURSAR_TSAN stands in for the __SANITIZE_THREAD__ this takes away
  # (storage/rocks_database.h).
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer
                      -U__SANITIZE_THREAD__ -O1 -g1)
  add_compile_definitions(BURSAR_TSAN=1)
  add_link_options(-fsanitize=thread)
  add_library(bursar_tsan_absl_mutex SHARED
              ${CMAKE_CURRENT_LIST_DIR}/tsan/absl_mutex_annotations.cc)
  target_link_libraries(bursar_tsan_absl_mutex PRIVATE absl::synchronization
                        ${CMAKE_DL_LIBS})
  # Ahead of every other library of every later target, so that its
  # definitions of absl::Mutex::Lock and friends win the symbol lookup.
  link_libraries(bursar_tsan_absl_mutex)
elseif(BURSAR_SANITIZE STREQUAL "fuzzer")
  # clang only: coverage for libFuzzer and ASan in every library; the fuzzer
  # targets link -fsanitize=fuzzer themselves (tests/fuzz/run_fuzzers.sh).
  add_compile_options(-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer
                      -O1 -g1)
  add_link_options(-fsanitize=address)
  set(BURSAR_FUZZERS_IN_TREE ON)
elseif(NOT BURSAR_SANITIZE STREQUAL "")
  message(FATAL_ERROR "BURSAR_SANITIZE must be empty, address, thread or "
                      "fuzzer, not \"${BURSAR_SANITIZE}\"")
endif()
