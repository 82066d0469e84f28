#ifndef BURSAR_SERVER_LEDGER_USAGE_VIEW_H_
#define BURSAR_SERVER_LEDGER_USAGE_VIEW_H_

// policy::UsageView over the ledger for one request: a budget reads as the
// instance that request maps to, in the period containing `now`.

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "policy/usage_view.h"
#include "storage/labels.h"
#include "storage/ledger.h"

namespace bursar::server {

class LedgerUsageView final : public policy::UsageView {
 public:
  // All pointers must outlive the view.
  LedgerUsageView(const storage::Ledger* ledger,
                  const storage::LabelSet* labels, absl::Time now)
      : ledger_(ledger), labels_(labels), now_(now) {}

  std::optional<policy::BudgetUsage> Budget(
      absl::string_view name) const override;

 private:
  const storage::Ledger* ledger_;
  const storage::LabelSet* labels_;
  absl::Time now_;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_LEDGER_USAGE_VIEW_H_
