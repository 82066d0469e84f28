#ifndef BURSAR_BENCH_LOAD_LOAD_GENERATOR_H_
#define BURSAR_BENCH_LOAD_LOAD_GENERATOR_H_

// An open-loop gRPC load generator for bursar.v1.Decision.
//
// One scheduler thread starts Check calls at intended send times spaced
// 1/rate apart, whether or not earlier calls have answered (the callback
// client API keeps many calls in flight). Latency is measured from the
// INTENDED send time, so a server (or a generator) that falls behind shows
// up in the figures instead of silently slowing the schedule down (no
// coordinated omission). A fraction of answered Checks is followed at once
// by a Report of their reservation, on the same connection.
//
// Calls are spread round-robin over `connections` channels; each channel has
// its own ChannelArguments (and a local subchannel pool), so each is a
// separate HTTP/2 connection.
//
// Thread safety: a LoadGenerator runs one Run() at a time; Run() blocks.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/load/histogram.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace bursar::load {

struct LoadOptions {
  // host:port of the server (loopback in bench/run.sh).
  std::string target;
  // Separate HTTP/2 connections.
  int connections = 4;
  // Fraction (0..1) of allowed Checks followed by a Report.
  double report_mix = 1.0;
  // Distinct "user" label values; teams are users % teams.
  int users = 1000;
  int teams = 10;
  // The model every Check asks for (must be priced by the server's policy).
  std::string model = "gpt-4.1-mini";
  // Give every Check a unique request_id (as an idempotent gateway would).
  bool request_ids = true;
  // When this many calls are in flight, the scheduler waits; the wait counts
  // in the latency of the calls it delays (they keep their intended times).
  int max_in_flight = 20000;
  // Per-call deadline, from the intended send time.
  absl::Duration deadline = absl::Seconds(10);
};

// Figures for one kind of call (or all of them), for calls whose Check was
// intended inside the measured window.
struct CallStats {
  explicit CallStats(int significant_digits = 3)
      : latency_nanos(int64_t{600} * 1'000'000'000, significant_digits) {}
  Histogram latency_nanos;  // every finished call, OK or not
  int64_t ok = 0;
  std::map<int, int64_t> errors_by_code;  // grpc::StatusCode → count
  int64_t response_bytes = 0;             // sum over OK answers
  int64_t errors() const;
};

struct RunResult {
  double intended_check_rate = 0;  // Checks/s asked for
  absl::Duration measured;         // the window of intended send times
  // From the window's start to the last answer of a measured call (at least
  // the window): the denominator of the achieved rates.
  absl::Duration elapsed;
  double achieved_check_rate = 0;   // OK Checks/s
  double achieved_report_rate = 0;  // OK Reports/s
  double achieved_call_rate() const {
    return achieved_check_rate + achieved_report_rate;
  }
  CallStats check, report, overall;
  // Checks intended in the window that were never sent: the scheduler was
  // held at max_in_flight until the window ended.
  int64_t unsent = 0;
  // Calls still unanswered when Run gave up waiting (should be 0).
  int64_t unfinished = 0;
  // The scheduler's worst lateness against an intended send time.
  absl::Duration max_send_lag;
};

class LoadGenerator {
 public:
  explicit LoadGenerator(LoadOptions options);
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  // Waits until every connection is ready; false after `timeout`.
  bool Connect(absl::Duration timeout);

  // One synchronous Check of the first user's request (no request_id).
  grpc::Status CheckOnce(v1::CheckResponse* answer);

  // Sends Checks at `check_rate` per second for `warmup` (not recorded) and
  // then `duration` (recorded), waits for the answers, and returns the
  // figures.
  RunResult Run(double check_rate, absl::Duration warmup,
                absl::Duration duration);

  const LoadOptions& options() const { return options_; }

  // Calls started so far by this generator (every Run, warmups included),
  // for CPU-per-call figures.
  int64_t calls_started() const {
    return calls_started_->load(std::memory_order_relaxed);
  }

 private:
  struct RunState;
  class CheckCall;
  class ReportCall;

  LoadOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Decision::Stub>> stubs_;
  // One realistic request per user, copied for each call.
  std::vector<v1::CheckRequest> templates_;
  int64_t run_number_ = 0;
  // Shared with calls, which may start Reports after Run returned.
  std::shared_ptr<std::atomic<int64_t>> calls_started_ =
      std::make_shared<std::atomic<int64_t>>(0);
};

// Human-readable name of a grpc::StatusCode number, e.g. "UNAVAILABLE".
std::string StatusCodeName(int code);

}  // namespace bursar::load

#endif  // BURSAR_BENCH_LOAD_LOAD_GENERATOR_H_
