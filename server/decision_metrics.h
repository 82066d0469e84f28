#ifndef BURSAR_SERVER_DECISION_METRICS_H_
#define BURSAR_SERVER_DECISION_METRICS_H_

// bursard's own metrics on a MetricsRegistry (docs/metrics.md):
// - DecisionMetrics, the DecisionObserver that counts Checks by verdict and
//   fired rule, Reports by outcome, errors by code, and times decisions;
// - RegisterLedgerMetrics: spend, holds and amount per budget, read from
//   the ledger at scrape time;
// - RegisterDatabaseMetrics: RocksDB's write and WAL fsync latencies.

#include <array>
#include <cstddef>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/clock.h"
#include "server/decider.h"
#include "server/decision_observer.h"
#include "server/metrics.h"
#include "server/policy_registry.h"
#include "storage/database_stats.h"
#include "storage/ledger.h"

namespace bursar::server {

// How many distinct rule names bursar_checks_total keeps apart; further
// rules count under rule="other".
inline constexpr size_t kMaxRuleSeries = 200;

// Counts and times Check and Report. OnCheck/OnReport are lock-free and
// allocation-free. Must outlive every Render() of the registry it was
// created on (its callbacks read it).
class DecisionMetrics final : public DecisionObserver {
 public:
  // Registers bursar_checks_total, bursar_check_errors_total,
  // bursar_check_duration_seconds, bursar_reports_total,
  // bursar_report_errors_total, bursar_report_cost_nanos_total and
  // bursar_report_duration_seconds. Errors if any of those names is taken.
  static absl::StatusOr<std::unique_ptr<DecisionMetrics>> Create(
      MetricsRegistry* registry);

  void OnCheck(const v1::CheckRequest& request,
               const v1::CheckResponse& response, const absl::Status& status,
               absl::Duration elapsed) override;
  void OnReport(const v1::ReportRequest& request,
                const v1::ReportResponse& response, const absl::Status& status,
                absl::Duration elapsed) override;

 private:
  // absl::StatusCode values are 0..16.
  static constexpr size_t kNumCodes = 17;

  DecisionMetrics() = default;

  CounterFamily* checks_ = nullptr;
  Histogram* check_duration_ = nullptr;
  Histogram* report_duration_ = nullptr;
  Counter* report_cost_nanos_ = nullptr;
  std::array<Counter, kNumCodes> check_errors_;
  std::array<Counter, kNumCodes> report_errors_;
  // By v1::Outcome (unspecified counts as success).
  std::array<Counter, 5> reports_;
  Counter reports_after_expiry_;
  Counter reports_repeated_;
};

// Registers bursar_budget_amount_nanos, bursar_budget_spent_nanos,
// bursar_budget_held_nanos and bursar_budget_instances, labelled by
// budget, for the first `max_budgets` budgets in name order (figures summed
// over a per_label budget's instances in the current period), and
// bursar_budgets_not_exported with how many budgets were left out. Read
// from the ledger at scrape time. `ledger` and `clock` must outlive every
// Render() of the registry.
absl::Status RegisterLedgerMetrics(MetricsRegistry* registry,
                                   const storage::Ledger* ledger, Clock* clock,
                                   size_t max_budgets);

// Registers bursar_rocksdb_write_seconds and
// bursar_rocksdb_wal_sync_seconds (summaries: quantiles 0.5, 0.95, 0.99,
// sum and count since start-up) from `stats`, called at scrape time.
absl::Status RegisterDatabaseMetrics(
    MetricsRegistry* registry, std::function<storage::DatabaseStats()> stats);

// Registers bursar_rate_limit_counters (rate-limit counters in memory) and
// bursar_pool_in_flight / bursar_pool_max_in_flight, labelled by pool, for
// the pools of the active policy. `decider` and `policies` must outlive
// every Render() of the registry.
absl::Status RegisterLimitMetrics(MetricsRegistry* registry,
                                  const Decider* decider,
                                  const PolicyRegistry* policies);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_DECISION_METRICS_H_
