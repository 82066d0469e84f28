#include "bench/load/load_generator.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iterator>
#include <cstdio>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace bursar::load {
namespace {

int64_t NowNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

void SleepUntilNanos(int64_t t) {
  timespec ts;
  ts.tv_sec = t / 1'000'000'000;
  ts.tv_nsec = t % 1'000'000'000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }
}

// A wall-clock deadline for gRPC from a monotonic instant.
std::chrono::system_clock::time_point SystemDeadline(int64_t monotonic_nanos) {
  return std::chrono::system_clock::now() +
         std::chrono::nanoseconds(monotonic_nanos - NowNanos());
}

void Count(CallStats& stats, const grpc::Status& status, int64_t latency_nanos,
           int64_t response_bytes) {
  stats.latency_nanos.Record(latency_nanos);
  if (status.ok()) {
    ++stats.ok;
    stats.response_bytes += response_bytes;
  } else {
    ++stats.errors_by_code[static_cast<int>(status.error_code())];
  }
}

}  // namespace

int64_t CallStats::errors() const {
  int64_t n = 0;
  for (const auto& [code, count] : errors_by_code) n += count;
  return n;
}

std::string StatusCodeName(int code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) {
    return kNames[code];
  }
  return absl::StrCat("CODE_", code);
}

// Shared by the scheduler and every call of one Run; calls hold a reference
// so a late answer never touches freed memory.
struct LoadGenerator::RunState {
  std::shared_ptr<std::atomic<int64_t>> calls_started;
  int64_t measure_start_nanos = 0;
  int64_t deadline_nanos = 0;
  std::atomic<int64_t> in_flight{0};

  absl::Mutex mu;
  CallStats check ABSL_GUARDED_BY(mu);
  CallStats report ABSL_GUARDED_BY(mu);
  CallStats overall ABSL_GUARDED_BY(mu);
  int64_t last_answer_nanos ABSL_GUARDED_BY(mu) = 0;
};

class LoadGenerator::ReportCall {
 public:
  static void Start(std::shared_ptr<RunState> state, v1::Decision::Stub* stub,
                    const std::string& reservation_id, bool measured) {
    auto* call = new ReportCall(std::move(state), measured);
    call->request_.set_reservation_id(reservation_id);
    v1::Usage* usage = call->request_.mutable_usage();
    usage->set_input_tokens(1200);
    usage->set_cached_input_tokens(200);
    usage->set_output_tokens(350);
    call->request_.set_outcome(v1::OUTCOME_SUCCESS);
    call->request_.mutable_latency()->set_seconds(1);
    call->request_.mutable_latency()->set_nanos(800'000'000);
    call->context_.set_deadline(
        SystemDeadline(call->sent_nanos_ + call->state_->deadline_nanos));
    call->state_->in_flight.fetch_add(1, std::memory_order_relaxed);
    call->state_->calls_started->fetch_add(1, std::memory_order_relaxed);
    stub->async()->Report(&call->context_, &call->request_, &call->response_,
                          [call](grpc::Status status) { call->Done(status); });
  }

 private:
  ReportCall(std::shared_ptr<RunState> state, bool measured)
      : state_(std::move(state)),
        measured_(measured),
        sent_nanos_(NowNanos()) {}

  void Done(const grpc::Status& status) {
    const int64_t now = NowNanos();
    if (measured_) {
      const int64_t bytes = status.ok() ? response_.ByteSizeLong() : 0;
      absl::MutexLock lock(&state_->mu);
      Count(state_->report, status, now - sent_nanos_, bytes);
      Count(state_->overall, status, now - sent_nanos_, bytes);
      state_->last_answer_nanos = std::max(state_->last_answer_nanos, now);
    }
    state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
    delete this;
  }

  std::shared_ptr<RunState> state_;
  const bool measured_;
  // A Report is sent as soon as its Check answers: that is its intended
  // time.
  const int64_t sent_nanos_;
  grpc::ClientContext context_;
  v1::ReportRequest request_;
  v1::ReportResponse response_;
};

class LoadGenerator::CheckCall {
 public:
  static void Start(std::shared_ptr<RunState> state, v1::Decision::Stub* stub,
                    const v1::CheckRequest& request_template,
                    const std::string& request_id, int64_t intended_nanos,
                    bool measured, bool report) {
    auto* call =
        new CheckCall(std::move(state), stub, intended_nanos, measured, report);
    call->request_ = request_template;
    if (!request_id.empty()) call->request_.set_request_id(request_id);
    call->context_.set_deadline(
        SystemDeadline(intended_nanos + call->state_->deadline_nanos));
    call->state_->in_flight.fetch_add(1, std::memory_order_relaxed);
    call->state_->calls_started->fetch_add(1, std::memory_order_relaxed);
    stub->async()->Check(&call->context_, &call->request_, &call->response_,
                         [call](grpc::Status status) { call->Done(status); });
  }

 private:
  CheckCall(std::shared_ptr<RunState> state, v1::Decision::Stub* stub,
            int64_t intended_nanos, bool measured, bool report)
      : state_(std::move(state)),
        stub_(stub),
        intended_nanos_(intended_nanos),
        measured_(measured),
        report_(report) {}

  void Done(const grpc::Status& status) {
    const int64_t now = NowNanos();
    if (measured_) {
      const int64_t bytes = status.ok() ? response_.ByteSizeLong() : 0;
      absl::MutexLock lock(&state_->mu);
      Count(state_->check, status, now - intended_nanos_, bytes);
      Count(state_->overall, status, now - intended_nanos_, bytes);
      state_->last_answer_nanos = std::max(state_->last_answer_nanos, now);
    }
    if (status.ok() && report_ && !response_.reservation_id().empty()) {
      ReportCall::Start(state_, stub_, response_.reservation_id(), measured_);
    }
    state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
    delete this;
  }

  std::shared_ptr<RunState> state_;
  v1::Decision::Stub* const stub_;
  const int64_t intended_nanos_;
  const bool measured_;
  const bool report_;
  grpc::ClientContext context_;
  v1::CheckRequest request_;
  v1::CheckResponse response_;
};

LoadGenerator::LoadGenerator(LoadOptions options)
    : options_(std::move(options)) {
  options_.connections = std::max(1, options_.connections);
  options_.users = std::max(1, options_.users);
  options_.teams = std::max(1, options_.teams);
  for (int i = 0; i < options_.connections; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments and a private subchannel pool: one TCP connection
    // per channel, not one shared by all.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("bursar.load.connection", i);
    channels_.push_back(grpc::CreateCustomChannel(
        options_.target, grpc::InsecureChannelCredentials(), args));
    stubs_.push_back(v1::Decision::NewStub(channels_.back()));
  }
  templates_.reserve(options_.users);
  for (int u = 0; u < options_.users; ++u) {
    v1::CheckRequest request;
    request.set_model(options_.model);
    request.set_input_tokens(1200);
    request.set_max_output_tokens(500);
    request.set_attempt(1);
    auto& labels = *request.mutable_labels();
    labels["team"] = absl::StrFormat("team-%02d", u % options_.teams);
    labels["user"] = absl::StrFormat("user-%06d", u);
    labels["app"] = "bench";
    labels["env"] = "prod";
    templates_.push_back(std::move(request));
  }
}

LoadGenerator::~LoadGenerator() = default;

bool LoadGenerator::Connect(absl::Duration timeout) {
  const auto deadline =
      std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
  for (const auto& channel : channels_) {
    if (!channel->WaitForConnected(deadline)) return false;
  }
  return true;
}

grpc::Status LoadGenerator::CheckOnce(v1::CheckResponse* answer) {
  grpc::ClientContext context;
  context.set_deadline(
      SystemDeadline(NowNanos() + absl::ToInt64Nanoseconds(options_.deadline)));
  calls_started_->fetch_add(1, std::memory_order_relaxed);
  return stubs_[0]->Check(&context, templates_[0], answer);
}

RunResult LoadGenerator::Run(double check_rate, absl::Duration warmup,
                             absl::Duration duration) {
  ++run_number_;
  auto state = std::make_shared<RunState>();
  state->calls_started = calls_started_;
  state->deadline_nanos = absl::ToInt64Nanoseconds(options_.deadline);
  const int64_t start = NowNanos() + 2'000'000;
  const int64_t measure_start = start + absl::ToInt64Nanoseconds(warmup);
  const int64_t end = measure_start + absl::ToInt64Nanoseconds(duration);
  state->measure_start_nanos = measure_start;
  // A scheduler that has fallen this far behind stops; the calls it did not
  // send count as unsent.
  const int64_t give_up =
      end + std::max<int64_t>(100'000'000, (end - measure_start) / 10);
  const double interval_nanos = 1e9 / std::max(check_rate, 1e-3);
  const std::string id_prefix =
      absl::StrFormat("load-%d-%d-", getpid(), run_number_);

  int64_t unsent = 0;
  int64_t max_lag = 0;
  int64_t next_user = 0;
  for (int64_t i = 0;; ++i) {
    const int64_t intended =
        start + static_cast<int64_t>(static_cast<double>(i) * interval_nanos);
    if (intended >= end) break;
    int64_t now = NowNanos();
    if (now < intended) {
      SleepUntilNanos(intended);
      now = NowNanos();
    }
    while (state->in_flight.load(std::memory_order_relaxed) >=
               options_.max_in_flight &&
           now < give_up) {
      SleepUntilNanos(now + 50'000);
      now = NowNanos();
    }
    if (now >= give_up) {
      for (int64_t j = i;; ++j) {
        const int64_t t = start + static_cast<int64_t>(static_cast<double>(j) *
                                                       interval_nanos);
        if (t >= end) break;
        if (t >= measure_start) ++unsent;
      }
      break;
    }
    max_lag = std::max(max_lag, now - intended);
    // The i-th Check is followed by a Report when the running count of
    // reports crosses an integer: exactly report_mix of them, spread evenly.
    const bool report =
        static_cast<int64_t>(static_cast<double>(i + 1) * options_.report_mix) >
        static_cast<int64_t>(static_cast<double>(i) * options_.report_mix);
    // Users in a scattered but deterministic order.
    next_user = (next_user + 7919) % options_.users;
    CheckCall::Start(
        state, stubs_[i % stubs_.size()].get(), templates_[next_user],
        options_.request_ids ? absl::StrCat(id_prefix, i) : std::string(),
        intended, intended >= measure_start, report);
  }

  // Every call has a deadline, so this ends.
  const int64_t wait_until = NowNanos() + state->deadline_nanos + 5'000'000'000;
  while (state->in_flight.load(std::memory_order_relaxed) > 0 &&
         NowNanos() < wait_until) {
    SleepUntilNanos(NowNanos() + 1'000'000);
  }

  RunResult result;
  result.intended_check_rate = check_rate;
  result.measured = duration;
  result.unsent = unsent;
  result.unfinished = state->in_flight.load(std::memory_order_relaxed);
  result.max_send_lag = absl::Nanoseconds(max_lag);
  absl::MutexLock lock(&state->mu);
  const int64_t elapsed =
      std::max(end, state->last_answer_nanos) - measure_start;
  result.elapsed = absl::Nanoseconds(elapsed);
  result.check = state->check;
  result.report = state->report;
  result.overall = state->overall;
  result.achieved_check_rate = result.check.ok * 1e9 / elapsed;
  result.achieved_report_rate = result.report.ok * 1e9 / elapsed;
  return result;
}

}  // namespace bursar::load
