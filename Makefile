# The two commands of the README:
#   make run   install what is missing, build build/ (plain RelWithDebInfo),
#              start bursard (./data, policies/example) on 127.0.0.1:8081,
#              plaintext and without authentication (--insecure: development
#              only; see docs/security.md for TLS and tokens)
#   make test  install what is missing, then what CI runs
#              (tests/sanitizers/run.sh all): build the whole tree with clang,
#              ASan + UBSan in build-test/ and run the whole ctest suite there
#              (unit, integration, model-based, crash, examples, Portkey, Helm,
#              the fuzzers of that same build); beside it, build bursard and
#              the concurrency tests with TSan in build-tsan/ and run those.
#              Any test failure or sanitizer report fails it (decision 018).
#   SANITIZERS=0 make test  the plain suite on build/ instead: a quicker
#              local loop (the fuzz test then makes its own clang build).
# make run and make bench use build/, never the sanitized builds.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
BURSARD_FLAGS ?=
SANITIZERS ?= 1
TEST_BUILD_DIR ?= build-test
TSAN_BUILD_DIR ?= build-tsan

.PHONY: all deps configure build run test test-asan test-tsan test-sanitizers clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/server/bursard --insecure --listen=127.0.0.1:8081 --data_dir=./data --policy_dir=policies/example $(BURSARD_FLAGS)

ifeq ($(SANITIZERS),0)
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
else
test: deps
	tests/sanitizers/run.sh all . $(TEST_BUILD_DIR) $(TSAN_BUILD_DIR) $(JOBS)
endif

# test-sanitizers: what `make test` runs by default;
# test-asan, test-tsan: one half each (tests/sanitizers/run.sh).
test-sanitizers: deps
	tests/sanitizers/run.sh all . $(TEST_BUILD_DIR) $(TSAN_BUILD_DIR) $(JOBS)

test-asan: deps
	tests/sanitizers/run.sh asan . $(TEST_BUILD_DIR) $(JOBS)

test-tsan: deps
	tests/sanitizers/run.sh tsan . $(TSAN_BUILD_DIR) $(JOBS)

clean:
	rm -rf $(BUILD_DIR) $(TEST_BUILD_DIR) $(TSAN_BUILD_DIR)

# make bench: end-to-end gRPC benchmark (bench/run.sh): bursar-echo, then
# bursard --sync=none and --sync=group, with bursar-load; prints the ratios of
# DESIGN.md section 7. Takes about 3 minutes.
.PHONY: bench
bench: configure
	BUILD_DIR=$(BUILD_DIR) bench/run.sh
