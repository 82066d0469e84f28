#ifndef BURSAR_POLICY_USAGE_VIEW_H_
#define BURSAR_POLICY_USAGE_VIEW_H_

// How policy rules read budgets: the only window policy/ has on the ledger.
// The server implements it over storage/ for one request (a per_label
// budget answers with the instance that request maps to); policy tests
// implement it over the figures a test case states.

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace bursar::policy {

struct BudgetUsage {
  int64_t amount_nanos = 0;
  int64_t spent_nanos = 0;
  int64_t held_nanos = 0;
  // The current period; InfinitePast/InfiniteFuture for a budget without
  // periods.
  absl::Time period_start = absl::InfinitePast();
  absl::Time period_end = absl::InfiniteFuture();
};

class UsageView {
 public:
  virtual ~UsageView() = default;
  // The named budget as it applies to the request at hand; nullopt when
  // there is no such budget or it does not apply to the request.
  virtual std::optional<BudgetUsage> Budget(absl::string_view name) const = 0;
};

// A UsageView with no budgets.
class NoUsage final : public UsageView {
 public:
  std::optional<BudgetUsage> Budget(absl::string_view) const override {
    return std::nullopt;
  }
};

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_USAGE_VIEW_H_
