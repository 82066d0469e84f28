#!/usr/bin/env bash
# ctest's portkey_e2e: installs the pinned Portkey gateway (npm ci from
# package-lock.json, cached in the build directory and redone when the lock
# file changes) and runs e2e_test.mjs. A failed install fails the test.
#   run_e2e.sh SOURCE_DIR CACHE_DIR BURSARD BURSARCTL
set -euo pipefail
src=$1
cache=$2
bursard=$3
bursarctl=$4

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "portkey_e2e: $tool is not installed (scripts/install-deps.sh installs it)" >&2
    exit 1
  fi
done

mkdir -p "$cache"
if ! cmp -s "$src/package-lock.json" "$cache/installed.lock" ||
   [ ! -f "$cache/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
  rm -f "$cache/installed.lock"
  cp "$src/package.json" "$src/package-lock.json" "$cache/"
  # --ignore-scripts: the gateway's only install script is patch-package,
  # with no patches shipped.
  if ! (cd "$cache" && npm ci --ignore-scripts --no-audit --no-fund); then
    echo "portkey_e2e: npm ci of @portkey-ai/gateway failed" >&2
    exit 1
  fi
  cp "$src/package-lock.json" "$cache/installed.lock"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node "$src/e2e_test.mjs" "$bursard" "$bursarctl" "$cache/node_modules" \
  "$work" "$src/policy"
