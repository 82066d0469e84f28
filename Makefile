# The two commands of the README:
#   make run   install what is missing, build, start bursard (./data,
#              policies/example) on 127.0.0.1:8081, plaintext and without
#              authentication (--insecure: development only; see
#              docs/security.md for TLS and tokens)
#   make test  install what is missing, build, run every test with ctest;
#              with SANITIZERS=1 also the suite under ASan+UBSan
#              (build-asan/) and the concurrency tests under TSan
#              (build-tsan/) (docs/testing.md). Off by default: on a 2-core
#              machine the two extra builds take `make test` past CI's
#              20-minute budget; run them with `make test-sanitizers`.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
BURSARD_FLAGS ?=
SANITIZERS ?= 0

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

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
ifeq ($(SANITIZERS),1)
	$(MAKE) test-asan test-tsan
endif

# The sanitizer builds (tests/sanitizers/run.sh, cmake/sanitizers.cmake).
test-sanitizers: test-asan test-tsan

test-asan: deps
	tests/sanitizers/run.sh asan . build-asan $(JOBS) $(BUILD_DIR)

test-tsan: deps
	tests/sanitizers/run.sh tsan . build-tsan $(JOBS)

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan

# make bench: end-to-end gRPC benchmark (bench/run.sh): bursar-echo, then
# bursard --sync=none and --sync=group, with bursar-load; prints the ratios of
# DESIGN.md section 7. Takes about 3 minutes.
.PHONY: bench
bench: configure
	BUILD_DIR=$(BUILD_DIR) bench/run.sh
