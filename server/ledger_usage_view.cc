#include "server/ledger_usage_view.h"

#include <string>
#include <vector>

namespace bursar::server {

std::optional<policy::BudgetUsage> LedgerUsageView::Budget(
    absl::string_view name) const {
  const std::optional<storage::BudgetSpec> spec = ledger_->GetBudget(name);
  if (!spec.has_value()) return std::nullopt;
  for (const auto& [key, value] : spec->selector) {
    const std::optional<absl::string_view> got = labels_->Find(key);
    if (!got.has_value() || *got != value) return std::nullopt;
  }
  absl::string_view instance;
  if (!spec->per_label.empty()) {
    const std::optional<absl::string_view> got = labels_->Find(spec->per_label);
    if (!got.has_value()) return std::nullopt;
    instance = *got;
  }
  absl::StatusOr<std::vector<storage::Standing>> standings =
      ledger_->Standings(name, instance, now_);
  if (!standings.ok() || standings->empty()) return std::nullopt;
  const storage::Standing& standing = standings->front();
  policy::BudgetUsage usage;
  usage.amount_nanos = standing.amount_nanos;
  usage.spent_nanos = standing.spent_nanos;
  usage.held_nanos = standing.held_nanos;
  usage.period_start = standing.period_start;
  usage.period_end = standing.period_end;
  return usage;
}

}  // namespace bursar::server
