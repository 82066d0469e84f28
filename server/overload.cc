#include "server/overload.h"

#include <pthread.h>

#include "absl/strings/str_cat.h"

namespace bursar::server {

CallGate::CallGate(int max_in_flight_calls, int worker_threads, Clock* clock,
                   int inline_calls)
    : max_in_flight_calls_(max_in_flight_calls),
      inline_calls_(inline_calls),
      clock_(clock) {
  for (int i = 0; i < worker_threads; ++i) {
    workers_.emplace_back([this] { Work(); });
  }
}

CallGate::~CallGate() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& worker : workers_) worker.join();
}

void CallGate::Run(absl::AnyInvocable<void() &&> work) {
  if (workers_.empty()) {
    std::move(work)();
    return;
  }
  if (running_inline_.fetch_add(1) < inline_calls_) {
    std::move(work)();
    running_inline_.fetch_sub(1);
    return;
  }
  running_inline_.fetch_sub(1);
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

void CallGate::Work() {
  pthread_setname_np(pthread_self(), "gate-worker");
  while (true) {
    absl::AnyInvocable<void() &&> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(work)();
  }
}

absl::Status CallGate::Enter(absl::Time deadline, absl::Time now, Pass* pass) {
  if (deadline <= now) {
    refused_deadline_.fetch_add(1);
    return absl::DeadlineExceededError(absl::StrCat(
        "the call's deadline passed ", absl::FormatDuration(now - deadline),
        " before bursard started it; nothing was done (give calls a deadline "
        "that covers the network and queueing, e.g. 200ms or more)"));
  }
  const int before = in_flight_.fetch_add(1);
  if (before >= max_in_flight_calls_) {
    in_flight_.fetch_sub(1);
    refused_overload_.fetch_add(1);
    return absl::ResourceExhaustedError(absl::StrCat(
        "bursard is overloaded: ", before,
        " calls in flight, at most --max_in_flight_calls=",
        max_in_flight_calls_,
        "; nothing was done, retry with backoff (same request_id)"));
  }
  *pass = Pass(this);
  return absl::OkStatus();
}

}  // namespace bursar::server
