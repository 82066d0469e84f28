#!/usr/bin/env bash
# ctest entry point for the Helm chart test (tests/helm/helm_test.py):
#
#   tests/helm/helm_test.sh SOURCE_DIR TOOLS_DIR BURSARCTL BURSARD
#
# Fetches the pinned helm (scripts/fetch-helm.sh, cached in TOOLS_DIR), then
# runs the assertions with Debian's python3 (python3-yaml). Fails, never
# skips, when helm or PyYAML cannot be had.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 SOURCE_DIR TOOLS_DIR BURSARCTL BURSARD" >&2
  exit 2
fi
source_dir=$1
tools_dir=$2
bursarctl=$3
bursard=$4

helm=$("$source_dir/scripts/fetch-helm.sh" "$tools_dir")
python=/usr/bin/python3
if ! "$python" -c 'import yaml' 2>/dev/null; then
  echo "helm_test: $python has no PyYAML; run scripts/install-deps.sh (python3-yaml)" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bursar-helm-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
exec "$python" "$source_dir/tests/helm/helm_test.py" --helm "$helm" \
  --source "$source_dir" --bursarctl "$bursarctl" --bursard "$bursard" --work "$work"
