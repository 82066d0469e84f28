#ifndef BURSAR_SERVER_CLOCK_H_
#define BURSAR_SERVER_CLOCK_H_

// Where bursard's time comes from. Everything below server/ takes time as an
// argument; this is the one place that reads a clock, so tests can stand at
// "15:00 on the last day of the month".

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace bursar::server {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
};

class SystemClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
};

// A clock the test moves by hand. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

// For integration tests of the real binary (bursard --testing_clock_file):
// the time is an RFC 3339 instant read from a file whenever the file
// changes; the clock stands still between changes. Thread-safe.
class FileClock final : public Clock {
 public:
  explicit FileClock(std::string path) : path_(std::move(path)) {}
  absl::Time Now() override;

 private:
  const std::string path_;
  absl::Mutex mu_;
  std::string last_text_ ABSL_GUARDED_BY(mu_);
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::UnixEpoch();
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_CLOCK_H_
