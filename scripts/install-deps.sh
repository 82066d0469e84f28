#!/usr/bin/env bash
# Installs the Debian 12 packages Bursar builds and tests with. Idempotent and
# fast when everything is there: apt runs only for what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  grpc-proto librocksdb-dev libabsl-dev libre2-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # libcrypto (token hashes, TLS file checks) and the openssl command (the
  # TLS tests make a throwaway CA and certificates with it)
  libssl-dev openssl
  # clang and its libFuzzer/ASan runtime, for the fuzz test (tests/fuzz/)
  clang libclang-rt-14-dev
  # Debian's python3 with gRPC and YAML, and unzip: the Helm chart test
  # (tests/helm/) and the Python client example (examples/python/)
  python3 python3-grpcio python3-protobuf python3-yaml unzip
  # the HTTP/JSON side port (server/http/)
  libcpp-httplib-dev
  # the allocator of bursard (cmake/allocator.cmake)
  libjemalloc-dev
)
# Node.js and npm (the Node client example, fetching helm): Debian's only
# when no node/npm is on PATH (a NodeSource nodejs bundles npm and conflicts
# with Debian's npm package).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
# Node.js and npm for the Portkey gateway e2e test (tests/portkey/): any
# install that provides both commands will do (e.g. NodeSource's nodejs,
# which bundles npm), so Debian's packages only come in when one is missing.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
