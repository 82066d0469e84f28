#include "storage/usage_delta_log.h"

#include <algorithm>

namespace bursar::storage {

UsageDeltaLog::Guard& UsageDeltaLog::Guard::operator=(Guard&& other) noexcept {
  if (this != &other) {
    if (log_ != nullptr) log_->End(sequence_);
    log_ = other.log_;
    sequence_ = other.sequence_;
    other.log_ = nullptr;
  }
  return *this;
}

UsageDeltaLog::Guard::~Guard() {
  if (log_ != nullptr) log_->End(sequence_);
}

UsageDeltaLog::Guard UsageDeltaLog::Begin() {
  absl::MutexLock lock(&mu_);
  if (!attached_) return Guard();
  const uint64_t sequence = next_sequence_++;
  in_flight_.insert(sequence);
  return Guard(this, sequence);
}

void UsageDeltaLog::End(uint64_t sequence) {
  absl::MutexLock lock(&mu_);
  in_flight_.erase(sequence);
}

void UsageDeltaLog::Attach(uint64_t next_sequence) {
  absl::MutexLock lock(&mu_);
  attached_ = true;
  next_sequence_ = std::max(next_sequence_, next_sequence);
}

void UsageDeltaLog::Detach() {
  absl::MutexLock lock(&mu_);
  attached_ = false;
}

uint64_t UsageDeltaLog::SettledBelow() const {
  absl::MutexLock lock(&mu_);
  uint64_t below = next_sequence_;
  for (const uint64_t sequence : in_flight_) below = std::min(below, sequence);
  return below;
}

}  // namespace bursar::storage
