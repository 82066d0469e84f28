#!/usr/bin/env bash
# ctest entry point of the Python client example:
#
#   examples/python/run_test.sh SOURCE_DIR WORK_DIR BURSARD
#
# Generates the Python stubs of proto/bursar/v1 into WORK_DIR/gen (protoc
# --python_out, /usr/bin/grpc_python_plugin; the folder is not named "grpc",
# which would shadow the grpc module), then runs bursar_guard_test.py with
# Debian's python3 (the first python3 on PATH may lack python3-grpcio).
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 SOURCE_DIR WORK_DIR BURSARD" >&2
  exit 2
fi
source_dir=$(realpath "$1")
work_dir=$2
bursard=$(realpath "$3")
python=/usr/bin/python3
plugin=/usr/bin/grpc_python_plugin

if ! "$python" -c 'import grpc, google.protobuf' 2>/dev/null; then
  echo "example_python: $python lacks grpc/protobuf; run scripts/install-deps.sh (python3-grpcio python3-protobuf)" >&2
  exit 1
fi
[ -x "$plugin" ] || { echo "example_python: $plugin missing (protobuf-compiler-grpc)" >&2; exit 1; }

gen="$work_dir/gen"
rm -rf "$gen"
mkdir -p "$gen"
protoc -I "$source_dir/proto" --python_out="$gen" --grpc_out="$gen" \
  --plugin=protoc-gen-grpc="$plugin" \
  "$source_dir"/proto/bursar/v1/decision.proto \
  "$source_dir"/proto/bursar/v1/admin.proto

export BURSARD="$bursard" BURSAR_SOURCE_DIR="$source_dir"
export PYTHONPATH="$gen:$source_dir/examples/python"
cd "$work_dir"
exec "$python" "$source_dir/examples/python/bursar_guard_test.py"
