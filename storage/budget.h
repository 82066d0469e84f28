#ifndef BURSAR_STORAGE_BUDGET_H_
#define BURSAR_STORAGE_BUDGET_H_

// A budget as finance sets it: which requests it covers, for how long, and
// how much they may spend.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "storage/period.h"

namespace bursar::storage {

struct BudgetSpec {
  // 1..128 bytes of [A-Za-z0-9._-].
  std::string name;
  // Label equality, sorted by key, keys unique. Empty: every request.
  std::vector<std::pair<std::string, std::string>> selector;
  // Optional label key; each distinct value gets its own instance.
  std::string per_label;
  Period period = Period::kMonth;
  // IANA name; "UTC" when the caller gave none.
  std::string timezone = "UTC";
  int64_t amount_nanos = 0;
  // Each in (0, 1], ascending, unique.
  std::vector<double> alert_thresholds = {0.85, 1.0};
  // Set by the ledger on every change.
  absl::Time updated_at;
  std::string updated_by;

  bool operator==(const BudgetSpec& other) const;
};

// INVALID_ARGUMENT naming the field (`budget.name`, `budget.timezone`, ...)
// and what to fix. Sorts the selector and thresholds.
absl::Status NormalizeBudgetSpec(BudgetSpec& spec);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_BUDGET_H_
