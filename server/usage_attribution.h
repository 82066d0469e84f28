#ifndef BURSAR_SERVER_USAGE_ATTRIBUTION_H_
#define BURSAR_SERVER_USAGE_ATTRIBUTION_H_

// What a Report (or an expired reservation) adds to the usage rollups, with
// the cardinality of every attribution dimension bounded: per UTC hour, the
// first `max_values_per_dimension` distinct values of a dimension get their
// own rows and later ones are counted under "other" (policy::kOtherValue).
// After a restart the values already in the current hour's rows are read
// back, so the bound holds across restarts. Thread-safe.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bursar/v1/decision.pb.h"
#include "storage/ledger.h"
#include "storage/usage_store.h"

namespace bursar::server {

class HoldTerms;  // server/hold_terms.proto

class UsageAttribution {
 public:
  // `store` must outlive this; null: nothing is recorded.
  explicit UsageAttribution(storage::UsageStore* store) : store_(store) {}

  storage::UsageStore* store() const { return store_; }

  // The update of a Report of `hold` (with `terms`) costing `cost_nanos`,
  // at `now`, with the policy's current bound.
  storage::UsageUpdate ForReport(const storage::HoldView& hold,
                                 const HoldTerms& terms,
                                 const v1::ReportRequest& report,
                                 int64_t cost_nanos, absl::Time now,
                                 int64_t max_values_per_dimension);
  // The update of `hold` expiring unreported at `now`.
  storage::UsageUpdate ForExpiry(const storage::HoldView& hold,
                                 const HoldTerms& terms, absl::Time now,
                                 int64_t max_values_per_dimension);

 private:
  void Fill(const storage::HoldView& hold, const HoldTerms& terms,
            absl::Time now, int64_t max_values, storage::UsageUpdate* update);
  // `value`, or "other" when the dimension has its bound of other values
  // this hour.
  std::string Bound(const std::string& dimension, const std::string& value,
                    absl::Time hour, int64_t max_values)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the values of the hour's stored rows (after a restart).
  void LoadHour(absl::Time hour) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::UsageStore* const store_;
  absl::Mutex mu_;
  absl::Time hour_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> seen_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_USAGE_ATTRIBUTION_H_
