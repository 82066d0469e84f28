#ifndef BURSAR_SERVER_USAGE_RETENTION_H_
#define BURSAR_SERVER_USAGE_RETENTION_H_

// The retention of the usage rollups (--usage_retention_days,
// docs/usage-and-kpis.md): rows whose hour is older than the retention are
// range-deleted (UsageStore::DeleteBefore) from bursard's background
// thread, at most once per `every` of the clock's time. Signals are kept.

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"
#include "storage/usage_store.h"

namespace bursar::server {

class UsageRetention {
 public:
  // `usage` and `clock` must outlive this. `retention` must be positive.
  UsageRetention(storage::UsageStore* usage, Clock* clock,
                 absl::Duration retention,
                 absl::Duration every = absl::Hours(1))
      : usage_(usage), clock_(clock), retention_(retention), every_(every) {}

  // Deletes the rows older than now - retention if the last pruning is at
  // least `every` ago (the first call always prunes). Returns whether it
  // pruned. Thread-safe.
  absl::StatusOr<bool> MaybePrune();

  absl::Duration retention() const { return retention_; }

 private:
  storage::UsageStore* const usage_;
  Clock* const clock_;
  const absl::Duration retention_;
  const absl::Duration every_;
  absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_USAGE_RETENTION_H_
