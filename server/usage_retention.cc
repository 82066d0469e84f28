#include "server/usage_retention.h"

namespace bursar::server {

absl::StatusOr<bool> UsageRetention::MaybePrune() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  if (last_ != absl::InfinitePast() && now - last_ < every_ && now >= last_) {
    return false;
  }
  if (absl::Status s = usage_->DeleteBefore(now - retention_); !s.ok()) {
    return s;
  }
  last_ = now;
  return true;
}

}  // namespace bursar::server
