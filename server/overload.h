#ifndef BURSAR_SERVER_OVERLOAD_H_
#define BURSAR_SERVER_OVERLOAD_H_

// Load shedding for bursard's RPC handlers. Every handler (gRPC services,
// server/grpc_services.cc) enters the gate before doing any work:
//
// - a call whose deadline has already passed when its handler starts gets
//   DEADLINE_EXCEEDED and does nothing (no reservation, no write): its
//   caller has given up, and the gateway's retry carries the request_id;
// - past `max_in_flight_calls` calls admitted and not yet finished, a call
//   gets RESOURCE_EXHAUSTED at once instead of queueing behind a stalled
//   disk or a burst.
//
// Admitted calls run on the gate's own worker threads (Run), not on gRPC's:
// gRPC 1.51 runs callback handlers on a small pool of its own threads (two
// on a 2-core machine) and queues further requests inside gRPC, unbounded
// and unseen, while those threads wait (e.g. for a group fsync). With the
// work moved off them, gRPC's threads only admit or refuse, so the count
// here is every call bursard has taken on; see
// docs/decisions/015-overload-disk-failures-and-backups.md.
//
// Thread-safe; entering and leaving are one atomic add each.

#include <atomic>
#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"

namespace bursar::server {

class CallGate {
 public:
  // A place in the gate; leaving it (destruction) frees the place.
  class Pass {
   public:
    Pass() = default;
    ~Pass() { Leave(); }
    Pass(Pass&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    Pass& operator=(Pass&& other) noexcept {
      if (this != &other) {
        Leave();
        gate_ = other.gate_;
        other.gate_ = nullptr;
      }
      return *this;
    }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;

    // Frees the place now (idempotent).
    void Leave() {
      if (gate_ != nullptr) gate_->in_flight_.fetch_sub(1);
      gate_ = nullptr;
    }

   private:
    friend class CallGate;
    explicit Pass(CallGate* gate) : gate_(gate) {}
    CallGate* gate_ = nullptr;
  };

  // max_in_flight_calls >= 1 (bursard's --max_in_flight_calls);
  // worker_threads >= 0 (--worker_threads; 0: Run runs all work inline, on
  // the caller's thread); inline_calls >= 0 (see Run). Deadlines are
  // compared with `clock`; null: the system clock (bursard: deadlines are
  // the callers' wall-clock times, so a testing clock must not judge them).
  // The clock must outlive the gate.
  explicit CallGate(int max_in_flight_calls, int worker_threads = 0,
                    Clock* clock = nullptr, int inline_calls = 0);
  // Runs the work queued so far, then stops the workers.
  ~CallGate();
  CallGate(const CallGate&) = delete;
  CallGate& operator=(const CallGate&) = delete;

  // Admits a call whose deadline is `deadline` (InfiniteFuture: none) at
  // `now`: DeadlineExceeded if it has passed, ResourceExhausted if
  // max_in_flight_calls calls are in flight; both messages name the limit
  // and the value. On success *pass holds the place until it is destroyed.
  absl::Status Enter(absl::Time deadline, absl::Time now, Pass* pass);
  // As above at the clock's now.
  absl::Status Enter(absl::Time deadline, Pass* pass) {
    return Enter(deadline, clock_ != nullptr ? clock_->Now() : absl::Now(),
                 pass);
  }

  // Runs `work` on the caller's thread while fewer than `inline_calls`
  // pieces of work run that way, else on a worker thread (always inline
  // without workers). bursard lets one call at a time run on gRPC's own
  // threads (two on a 2-core machine): while the load is light no call is
  // handed to another thread, and even while a disk stalls one gRPC thread
  // is always free to admit or refuse calls. The queue is bounded by the
  // callers: each admitted call queues at most one piece of work.
  void Run(absl::AnyInvocable<void() &&> work);

  int max_in_flight_calls() const { return max_in_flight_calls_; }
  int in_flight() const { return in_flight_.load(); }
  // Calls refused so far, by reason (for logs and /metrics).
  int64_t refused_overload() const { return refused_overload_.load(); }
  int64_t refused_deadline() const { return refused_deadline_.load(); }

 private:
  void Work();

  const int max_in_flight_calls_;
  const int inline_calls_;
  Clock* const clock_;
  std::atomic<int> running_inline_{0};
  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  std::atomic<int> in_flight_{0};
  std::atomic<int64_t> refused_overload_{0};
  std::atomic<int64_t> refused_deadline_{0};
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_OVERLOAD_H_
