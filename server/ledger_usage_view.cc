#include "server/ledger_usage_view.h"

namespace bursar::server {

std::optional<policy::BudgetUsage> LedgerUsageView::Budget(
    absl::string_view name) const {
  absl::StatusOr<std::optional<storage::BudgetFigures>> figures =
      ledger_->Peek(name, *labels_, now_);
  // A budget that cannot be read does not apply; the reservation that
  // follows reports the I/O error.
  if (!figures.ok() || !figures->has_value()) return std::nullopt;
  policy::BudgetUsage usage;
  usage.amount_nanos = (*figures)->amount_nanos;
  usage.spent_nanos = (*figures)->spent_nanos;
  usage.held_nanos = (*figures)->held_nanos;
  usage.period_start = (*figures)->period_start;
  usage.period_end = (*figures)->period_end;
  return usage;
}

}  // namespace bursar::server
