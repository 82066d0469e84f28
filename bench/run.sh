#!/usr/bin/env bash
# End-to-end benchmark over gRPC on loopback (DESIGN.md section 7), in one run:
#   1. bursar-echo (no-op Decision server, same stack, same answer size):
#      its saturation throughput with bursar-load, the physical reference;
#   2. bursard --sync=none, fresh data dir: saturation, then Check latency at
#      half of its saturation rate;
#   3. bursard --sync=group, fresh data dir: the same;
#   4. bursar-echo again at bursard --sync=none's half-saturation rate: the
#      latency floor of the transport and the shared cores;
# then a summary: bursard/echo throughput (target ≥ 0.8), the cost of
# sync=group against sync=none (target ≤ 15%), p99 Check at half of
# saturation (target ≤ 2 ms).
#
# Usage: bench/run.sh            (or `make bench`)
# Environment: BUILD_DIR (default build; a RelWithDebInfo build dir),
#   BENCH_STEP (measured time per load step, default 1.5s),
#   BENCH_HALF (measured time per half-saturation run, default 3s),
#   BENCH_REPEATS (runs per reported point, default 3),
#   BENCH_CONNECTIONS (default 4), BENCH_START_RATE (Checks/s, default 1000),
#   BENCH_KEEP=1 keeps the work dir (server logs, bursar-load output).
# Every server listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
STEP=${BENCH_STEP:-1.5s}
HALF=${BENCH_HALF:-3s}
REPEATS=${BENCH_REPEATS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
START_RATE=${BENCH_START_RATE:-1000}

log() { printf '%s\n' "$*" >&2; }

# --- build: RelWithDebInfo (optimized, with symbols for profiling) ----------
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]] &&
   ! grep -q '^CMAKE_BUILD_TYPE:STRING=RelWithDebInfo$' "$BUILD_DIR/CMakeCache.txt"; then
  log "bench: $BUILD_DIR is not a RelWithDebInfo build; using $ROOT/build-bench"
  BUILD_DIR=$ROOT/build-bench
fi
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
cmake --build "$BUILD_DIR" --target bursard bursar-echo bursar-load >&2
BURSARD=$BUILD_DIR/server/bursard
ECHO=$BUILD_DIR/bench/load/bursar-echo
LOAD=$BUILD_DIR/bench/load/bursar-load

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bursar-bench.XXXXXX")
SERVER_PID=""

stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
cleanup() {
  stop_server
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
    log "bench: work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME COMMAND...: starts it on 127.0.0.1:0 with
# --ready_file, waits until it serves, and sets ADDR and SERVER_PID.
start_server() {
  local name=$1
  shift
  local ready=$WORK/$name.addr
  "$@" --listen=127.0.0.1:0 --ready_file="$ready" >"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    [[ -s "$ready" ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "bench: $name exited before serving:"; cat "$WORK/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [[ ! -s "$ready" ]]; then
    log "bench: $name did not serve within 20 s"; cat "$WORK/$name.log" >&2
    exit 1
  fi
  ADDR=$(head -n1 "$ready")
  case "$ADDR" in 127.0.0.1:*) ;; *) log "bench: unexpected address $ADDR"; exit 1 ;; esac
}

# load NAME OUT ARGS...: runs bursar-load against ADDR, keeps its output in
# $WORK/OUT.txt (shown indented) and prints its RESULT line on stdout.
load() {
  local name=$1 out=$2 times b0 b1 s0 s1 other
  shift 2
  b0=$(machine_ticks)
  s0=$(process_ticks "$SERVER_PID")
  times=$( { TIMEFORMAT='%3U %3S'; time "$LOAD" --target="$ADDR" \
      --label="$name" --connections="$CONNECTIONS" "$@" \
      >"$WORK/$out.txt" 2>&1; } 2>&1 ) || {
    log "bench: bursar-load failed:"; cat "$WORK/$out.txt" >&2; exit 1; }
  b1=$(machine_ticks)
  s1=$(process_ticks "$SERVER_PID")
  local result calls cpu
  result=$(grep '^RESULT' "$WORK/$out.txt" | tail -n1)
  calls=$(field "$result" calls_started)
  # CPU that neither the server nor bursar-load used while this ran, as a
  # share of the whole machine: other work that skews the figures. And the
  # CPU time per call of the server and of bursar-load (USER_HZ ticks).
  cpu=$(awk -v b="$b0 $b1" -v s0="$s0" -v s1="$s1" -v t="$times" \
      -v n="$calls" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    split(b, x, " "); split(t, u, " ")
    busy = x[3] - x[1]; total = x[4] - x[2]
    server = (s1 - s0) / hz; gen = u[1] + u[2]
    v = (total > 0) ? 100 * (busy - (s1 - s0) - gen * hz) / total : 0
    printf "other_cpu_pct=%.0f server_us_per_call=%.1f load_us_per_call=%.1f",
      (v < 0) ? 0 : v, (n > 0) ? 1e6 * server / n : 0,
      (n > 0) ? 1e6 * gen / n : 0 }')
  sed 's/^/    /' "$WORK/$out.txt" | grep -v '^    RESULT' >&2
  log "    (CPU: $cpu)"
  echo "$result $cpu"
}

# machine_ticks: "busy total" clock ticks of all cores so far (/proc/stat).
machine_ticks() {
  awk '/^cpu / { total = 0; for (i = 2; i <= 9; i++) total += $i
                 print total - $5 - $6, total; exit }' /proc/stat
}
# process_ticks PID: user + system clock ticks of a running process.
process_ticks() {
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

saturation() {  # NAME [bursar-load flags...]
  local name=$1
  shift
  log ""
  log "== $name: saturation (ramp from $START_RATE Checks/s ×1.5, $STEP steps, then $REPEATS runs at the rate found) =="
  # A small in-flight cap and deadline keep overloaded steps short: their
  # backlog drains within a second or two instead of growing for the whole
  # step (capped calls count as unsent; the step is not sustained).
  load "$name" "$name-saturation" --find_saturation --rate="$START_RATE" \
      --duration="$STEP" --warmup=0.5s --repeats="$REPEATS" --show_answer \
      --max_in_flight=1000 --deadline=2s "$@"
}

half() {  # NAME RATE [bursar-load flags...]
  local name=$1 rate=$2
  shift 2
  log ""
  log "== $name: Check latency at $rate Checks/s, $REPEATS × $HALF =="
  load "$name" "$name-half" --rate="$rate" --duration="$HALF" --warmup=1s \
      --repeats="$REPEATS" "$@"
}

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log ""
log "bench: $(nproc) cores ($CPU_MODEL), $(uname -sr); load average before: $LOAD_BEFORE"
log "bench: bursar-load and the server under test SHARE these $(nproc) cores; loopback only."

# 1. The reference.
start_server echo "$ECHO"
ECHO_SAT=$(saturation echo --setup_budgets=false)
stop_server

# 2, 3. bursard, each sync mode on a fresh data dir.
declare -A SAT HALFR
for sync in none group; do
  # --insecure: plaintext on loopback without authentication, as bursar-echo
  # (bursar-load sends no token).
  start_server "bursard-$sync" "$BURSARD" --insecure --http_listen= --data_dir="$WORK/data-$sync" \
      --policy_dir="$ROOT/policies/example" --sync="$sync"
  SAT[$sync]=$(saturation "bursard-$sync")
  rate=$(awk -v r="$(field "${SAT[$sync]}" check_rate)" 'BEGIN { printf "%.0f", r / 2 }')
  HALFR[$sync]=$(half "bursard-$sync" "$rate")
  stop_server
done

# 4. The floor for latency: bursar-echo at bursard --sync=none's half-saturation
# rate (same generator, same cores), so the p99 figures can be read against
# what the transport alone gives.
start_server echo-again "$ECHO"
ECHO_HALF=$(half echo "$(field "${HALFR[none]}" check_rate)" --setup_budgets=false)
stop_server

# --- summary -----------------------------------------------------------------
echo_calls=$(field "$ECHO_SAT" calls_per_s)
none_calls=$(field "${SAT[none]}" calls_per_s)
group_calls=$(field "${SAT[group]}" calls_per_s)
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
  ok = (op == "ge") ? (v >= t) : (v <= t); print ok ? "met" : "MISSED" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

r_none=$(ratio "$none_calls" "$echo_calls")
r_group=$(ratio "$group_calls" "$echo_calls")
cost=$(awk -v g="$group_calls" -v n="$none_calls" 'BEGIN { printf "%.1f", (n > 0) ? 100 * (1 - g / n) : 0 }')
p99_none=$(awk -v u="$(field "${HALFR[none]}" check_p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')
p99_group=$(awk -v u="$(field "${HALFR[group]}" check_p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')

cpu_ratio=$(ratio "$(field "$ECHO_SAT" server_us_per_call)" \
    "$(field "${SAT[none]}" server_us_per_call)")

row() {  # NAME RESULT-LINE
  printf '%-14s %9s %9s %10s %10s %6s %9s %9s %6s\n' "$1" \
      "$(field "$2" check_rate)" "$(field "$2" calls_per_s)" \
      "$(field "$2" check_p50_us)" "$(field "$2" check_p99_us)" \
      "$(field "$2" check_bytes)" "$(field "$2" server_us_per_call)" \
      "$(field "$2" load_us_per_call)" "$(field "$2" other_cpu_pct)%"
}
hrow() {  # NAME RESULT-LINE
  printf '%-14s %9s %9s %10s %10s %6s %9s %9s %6s\n' "$1" \
      "$(field "$2" check_rate)" "$(field "$2" calls_per_s)" \
      "$(field "$2" check_p50_us)" "$(field "$2" check_p99_us)" \
      "$(field "$2" check_p999_us)" "$(field "$2" server_us_per_call)" \
      "$(field "$2" load_us_per_call)" "$(field "$2" other_cpu_pct)%"
}

cat <<EOF

== Summary: end to end over gRPC on loopback ==
machine: $(nproc) cores ($CPU_MODEL), shared by bursar-load and the server
under test (each server measured alone, one after the other); load average
before the run: $LOAD_BEFORE. p50/p99: Check latency. "srv us/c" and
"gen us/c": CPU time of the server and of bursar-load per call over the
whole phase; "other": share of the machine used by other work meanwhile
(should be ~0%; more skews the figures). Medians of $REPEATS runs per point; rates
are Checks/s intended, calls/s achieved (each Check followed by a Report,
so calls = 2 × Checks); latency from the intended send time.

Saturation (highest sustained rate: ≥ 95% achieved, no unsent Check,
≤ 0.1% errors, Check p99 ≤ 50 ms):
$(printf '%-14s %9s %9s %10s %10s %6s %9s %9s %6s' server Checks/s calls/s 'p50 us' 'p99 us' bytes 'srv us/c' 'gen us/c' other)
$(row bursar-echo "$ECHO_SAT")
$(row bursard-none "${SAT[none]}")
$(row bursard-group "${SAT[group]}")

Half of saturation:
$(printf '%-14s %9s %9s %10s %10s %6s %9s %9s %6s' server Checks/s calls/s 'p50 us' 'p99 us' 'p99.9' 'srv us/c' 'gen us/c' other)
$(hrow bursard-none "${HALFR[none]}")
$(hrow bursard-group "${HALFR[group]}")
$(hrow "echo (floor)" "$ECHO_HALF")

Targets (DESIGN.md section 7):
  throughput bursard/echo, --sync=group (default): $r_group (target >= 0.80): $(verdict "$r_group" 0.80 ge)
  throughput bursard/echo, --sync=none:            $r_none (target >= 0.80): $(verdict "$r_none" 0.80 ge)
  --sync=group cost against --sync=none:           $cost% (target <= 15%): $(verdict "$cost" 15 le)
  p99 Check at half of saturation, --sync=group:   $p99_group ms (target <= 2 ms): $(verdict "$p99_group" 2 le)
  p99 Check at half of saturation, --sync=none:    $p99_none ms (target <= 2 ms): $(verdict "$p99_none" 2 le)
Server CPU per call during the saturation phase, echo / bursard --sync=none:
$cpu_ratio (about the throughput ratio if bursar-load ran on other cores; per-call
CPU at low rates is higher for both, as fewer calls share each wake-up).
EOF
