#!/usr/bin/env bash
# ctest entry point of the Node client example:
#
#   examples/node/run_test.sh SOURCE_DIR WORK_DIR BURSARD
#
# Installs the locked dependencies (npm ci) into WORK_DIR/node_modules (again
# only when package-lock.json changed), then runs bursar_guard.test.js with
# node's test runner. Fails, never skips, when npm ci fails.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 SOURCE_DIR WORK_DIR BURSARD" >&2
  exit 2
fi
source_dir=$(realpath "$1")
work_dir=$2
bursard=$(realpath "$3")
example="$source_dir/examples/node"

for tool in node npm; do
  command -v "$tool" >/dev/null ||
    { echo "example_node: $tool is missing; run scripts/install-deps.sh" >&2; exit 1; }
done

mkdir -p "$work_dir"
work_dir=$(realpath "$work_dir")
lock_sum=$(sha256sum "$example/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$work_dir/.lock-sha256" 2>/dev/null)" != "$lock_sum" ] ||
   [ ! -d "$work_dir/node_modules/@grpc/grpc-js" ]; then
  cp "$example/package.json" "$example/package-lock.json" "$work_dir/"
  (cd "$work_dir" && npm ci --no-audit --no-fund --ignore-scripts)
  echo "$lock_sum" > "$work_dir/.lock-sha256"
fi

export BURSARD="$bursard" BURSAR_SOURCE_DIR="$source_dir"
export BURSAR_PROTO_DIR="$source_dir/proto"
export NODE_PATH="$work_dir/node_modules"
cd "$work_dir"
exec node --test "$example/bursar_guard.test.js"
