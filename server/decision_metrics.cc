#include "server/decision_metrics.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace bursar::server {
namespace {

// Verdict label values of bursar_checks_total, in CounterFamily order.
enum VerdictIndex : size_t { kAllow = 0, kDeny = 1, kError = 2 };

// Decision latency buckets: 10 us .. 2.5 s.
std::vector<double> LatencyBoundsSeconds() {
  return {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
          0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
          0.1,     0.25,     0.5,     1,      2.5};
}

// "invalid_argument" for absl::StatusCode::kInvalidArgument.
std::string CodeLabel(size_t code) {
  return absl::AsciiStrToLower(
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code)));
}

constexpr const char* kOutcomeLabels[] = {"success", "success", "failure",
                                          "retry", "cancelled"};

template <size_t N>
MetricsRegistry::SampleFn CodeCounters(const std::array<Counter, N>* counters) {
  return [counters] {
    std::vector<MetricSample> samples;
    for (size_t code = 0; code < N; ++code) {
      const uint64_t count = (*counters)[code].Value();
      if (count == 0) continue;
      samples.push_back(
          {"", {{"code", CodeLabel(code)}}, static_cast<double>(count)});
    }
    return samples;
  };
}

}  // namespace

absl::StatusOr<std::unique_ptr<DecisionMetrics>> DecisionMetrics::Create(
    MetricsRegistry* registry) {
  std::unique_ptr<DecisionMetrics> m(new DecisionMetrics());
  absl::StatusOr<CounterFamily*> checks = registry->AddCounterFamily(
      "bursar_checks_total",
      "Checks by verdict (allow, deny, error) and by rule that fired (from "
      "the answer's reasons; rule=\"none\" when no rule fired, \"other\" "
      "past the first 200 rule names). A Check counts once per fired rule.",
      "verdict", {"allow", "deny", "error"}, "rule", kMaxRuleSeries);
  if (!checks.ok()) return checks.status();
  m->checks_ = *checks;
  if (absl::Status s = registry->AddCallback(
          "bursar_check_errors_total",
          "Checks answered with an error, by gRPC status code.",
          MetricType::kCounter, CodeCounters(&m->check_errors_));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Histogram*> check_duration = registry->AddHistogram(
      "bursar_check_duration_seconds",
      "Time bursard spent deciding a Check (validation, policy, reservation "
      "and its durable write), errors included.",
      LatencyBoundsSeconds());
  if (!check_duration.ok()) return check_duration.status();
  m->check_duration_ = *check_duration;

  DecisionMetrics* self = m.get();
  if (absl::Status s = registry->AddCallback(
          "bursar_reports_total",
          "Reports settled, by the outcome the gateway reported.",
          MetricType::kCounter,
          [self] {
            std::vector<MetricSample> samples;
            // Index 0 (unspecified) is counted with success, at index 1.
            for (size_t i = 1; i < self->reports_.size(); ++i) {
              samples.push_back(
                  {"",
                   {{"outcome", kOutcomeLabels[i]}},
                   static_cast<double>(self->reports_[i].Value())});
            }
            return samples;
          });
      !s.ok()) {
    return s;
  }
  if (absl::Status s = registry->AddCallback(
          "bursar_reports_special_total",
          "Reports that found their reservation already reported "
          "(kind=\"repeated\") or expired and charged its estimate "
          "(kind=\"after_expiry\").",
          MetricType::kCounter,
          [self] {
            return std::vector<MetricSample>{
                {"",
                 {{"kind", "repeated"}},
                 static_cast<double>(self->reports_repeated_.Value())},
                {"",
                 {{"kind", "after_expiry"}},
                 static_cast<double>(self->reports_after_expiry_.Value())}};
          });
      !s.ok()) {
    return s;
  }
  if (absl::Status s = registry->AddCallback(
          "bursar_report_errors_total",
          "Reports answered with an error, by gRPC status code.",
          MetricType::kCounter, CodeCounters(&m->report_errors_));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Counter*> cost = registry->AddCounter(
      "bursar_report_cost_nanos_total",
      "Actual cost charged by Reports, in nano-USD (1e-9 USD).");
  if (!cost.ok()) return cost.status();
  m->report_cost_nanos_ = *cost;
  absl::StatusOr<Histogram*> report_duration = registry->AddHistogram(
      "bursar_report_duration_seconds",
      "Time bursard spent settling a Report, errors included.",
      LatencyBoundsSeconds());
  if (!report_duration.ok()) return report_duration.status();
  m->report_duration_ = *report_duration;
  return m;
}

void DecisionMetrics::OnCheck(const v1::CheckRequest& /*request*/,
                              const v1::CheckResponse& response,
                              const absl::Status& status,
                              absl::Duration elapsed) {
  check_duration_->ObserveNanos(absl::ToInt64Nanoseconds(elapsed));
  if (!status.ok()) {
    const size_t code = static_cast<size_t>(status.code());
    if (code < kNumCodes) check_errors_[code].Increment();
    checks_->Increment(kError, "none");
    return;
  }
  const size_t verdict =
      response.verdict() == v1::VERDICT_ALLOW ? kAllow : kDeny;
  if (response.reasons_size() == 0) {
    checks_->Increment(verdict, "none");
    return;
  }
  for (const v1::Reason& reason : response.reasons()) {
    checks_->Increment(verdict, reason.rule());
  }
}

void DecisionMetrics::OnReport(const v1::ReportRequest& request,
                               const v1::ReportResponse& response,
                               const absl::Status& status,
                               absl::Duration elapsed) {
  report_duration_->ObserveNanos(absl::ToInt64Nanoseconds(elapsed));
  if (!status.ok()) {
    const size_t code = static_cast<size_t>(status.code());
    if (code < kNumCodes) report_errors_[code].Increment();
    return;
  }
  size_t outcome = static_cast<size_t>(request.outcome());
  if (outcome == 0 || outcome >= reports_.size()) outcome = 1;
  reports_[outcome].Increment();
  if (response.already_reported()) {
    reports_repeated_.Increment();
    return;
  }
  if (response.reported_after_expiry()) reports_after_expiry_.Increment();
  if (response.cost_nanos() > 0) {
    report_cost_nanos_->Increment(static_cast<uint64_t>(response.cost_nanos()));
  }
}

namespace {

// Per budget: the figures summed over its instances in the current period.
struct BudgetTotals {
  std::string name;
  double amount_nanos = 0;
  double spent_nanos = 0;
  double held_nanos = 0;
  double instances = 0;
};

struct LedgerSnapshot {
  std::vector<BudgetTotals> budgets;
  size_t not_exported = 0;
};

LedgerSnapshot ReadLedger(const storage::Ledger& ledger, absl::Time now,
                          size_t max_budgets) {
  LedgerSnapshot snapshot;
  const std::vector<std::string> names = ledger.ListBudgetNames();
  for (const std::string& name : names) {
    if (snapshot.budgets.size() >= max_budgets) {
      ++snapshot.not_exported;
      continue;
    }
    const std::optional<storage::BudgetSpec> found = ledger.GetBudget(name);
    if (!found.has_value()) continue;  // deleted since it was listed
    const storage::BudgetSpec& spec = *found;
    BudgetTotals totals;
    totals.name = spec.name;
    totals.amount_nanos = static_cast<double>(spec.amount_nanos);
    absl::StatusOr<std::vector<storage::Standing>> standings =
        ledger.LiveStandings(spec.name, "", now);
    if (standings.ok()) {
      for (const storage::Standing& s : *standings) {
        totals.spent_nanos += static_cast<double>(s.spent_nanos);
        totals.held_nanos += static_cast<double>(s.held_nanos);
        totals.instances += 1;
      }
    }
    snapshot.budgets.push_back(std::move(totals));
  }
  return snapshot;
}

// One ledger read shared by the bursar_budget_* callbacks: a scrape renders
// them one after another, and they should show the same moment. A snapshot
// younger than kLedgerSnapshotMaxAge is reused, which also bounds how often
// scrapes walk the ledger (Standings takes the ledger's lock).
constexpr absl::Duration kLedgerSnapshotMaxAge = absl::Seconds(1);

class LedgerSnapshots {
 public:
  LedgerSnapshots(const storage::Ledger* ledger, Clock* clock,
                  size_t max_budgets)
      : ledger_(ledger), clock_(clock), max_budgets_(max_budgets) {}

  std::shared_ptr<const LedgerSnapshot> Get() {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    const absl::Duration age = now - taken_at_;
    if (last_ == nullptr || age < absl::ZeroDuration() ||
        age >= kLedgerSnapshotMaxAge) {
      last_ = std::make_shared<const LedgerSnapshot>(
          ReadLedger(*ledger_, now, max_budgets_));
      taken_at_ = now;
    }
    return last_;
  }

 private:
  const storage::Ledger* const ledger_;
  Clock* const clock_;
  const size_t max_budgets_;
  absl::Mutex mu_;
  std::shared_ptr<const LedgerSnapshot> last_ ABSL_GUARDED_BY(mu_);
  absl::Time taken_at_ ABSL_GUARDED_BY(mu_);
};

MetricsRegistry::SampleFn BudgetField(
    std::shared_ptr<LedgerSnapshots> snapshots, double BudgetTotals::*field) {
  return [snapshots, field] {
    std::vector<MetricSample> samples;
    for (const BudgetTotals& totals : snapshots->Get()->budgets) {
      samples.push_back({"", {{"budget", totals.name}}, totals.*field});
    }
    return samples;
  };
}

}  // namespace

absl::Status RegisterLedgerMetrics(MetricsRegistry* registry,
                                   const storage::Ledger* ledger, Clock* clock,
                                   size_t max_budgets) {
  auto snapshots =
      std::make_shared<LedgerSnapshots>(ledger, clock, max_budgets);
  const std::string bound =
      absl::StrCat(" (the first ", max_budgets, " budgets by name).");
  struct Gauge {
    const char* name;
    std::string help;
    double BudgetTotals::*field;
  };
  const Gauge gauges[] = {
      {"bursar_budget_amount_nanos",
       "Amount of the budget per instance and period, in nano-USD" + bound,
       &BudgetTotals::amount_nanos},
      {"bursar_budget_spent_nanos",
       "Spent in the current period, summed over the budget's instances, in "
       "nano-USD" +
           bound,
       &BudgetTotals::spent_nanos},
      {"bursar_budget_held_nanos",
       "Held by open reservations in the current period, summed over the "
       "budget's instances, in nano-USD" +
           bound,
       &BudgetTotals::held_nanos},
      {"bursar_budget_instances",
       "Instances of the budget with spend or holds in the current period (1 "
       "for a budget without per_label)" +
           bound,
       &BudgetTotals::instances},
  };
  for (const Gauge& gauge : gauges) {
    if (absl::Status s = registry->AddGaugeCallback(
            gauge.name, gauge.help, BudgetField(snapshots, gauge.field));
        !s.ok()) {
      return s;
    }
  }
  return registry->AddGaugeCallback(
      "bursar_budgets_not_exported",
      absl::StrCat("Budgets left out of the bursar_budget_* metrics (past the "
                   "first ",
                   max_budgets, " by name)."),
      [snapshots] {
        return std::vector<MetricSample>{
            {"", {}, static_cast<double>(snapshots->Get()->not_exported)}};
      });
}

namespace {

std::vector<MetricSample> SummarySamples(const storage::LatencySummary& s) {
  return {
      {"", {{"quantile", "0.5"}}, s.p50_micros / 1e6},
      {"", {{"quantile", "0.95"}}, s.p95_micros / 1e6},
      {"", {{"quantile", "0.99"}}, s.p99_micros / 1e6},
      {"_sum", {}, static_cast<double>(s.sum_micros) / 1e6},
      {"_count", {}, static_cast<double>(s.count)},
  };
}

}  // namespace

absl::Status RegisterDatabaseMetrics(
    MetricsRegistry* registry, std::function<storage::DatabaseStats()> stats) {
  if (stats == nullptr) {
    return absl::InvalidArgumentError("RegisterDatabaseMetrics: no stats");
  }
  if (absl::Status s = registry->AddCallback(
          "bursar_rocksdb_write_seconds",
          "RocksDB write latency (DB_WRITE: WAL append and memtable insert, "
          "plus the fsync with --sync=always) since start-up.",
          MetricType::kSummary,
          [stats] { return SummarySamples(stats().write); });
      !s.ok()) {
    return s;
  }
  return registry->AddCallback(
      "bursar_rocksdb_wal_sync_seconds",
      "RocksDB write-ahead-log fsync latency (WAL_FILE_SYNC_MICROS) since "
      "start-up.",
      MetricType::kSummary,
      [stats] { return SummarySamples(stats().wal_file_sync); });
}

absl::Status RegisterLimitMetrics(MetricsRegistry* registry,
                                  const Decider* decider,
                                  const PolicyRegistry* policies) {
  if (absl::Status s = registry->AddGaugeCallback(
          "bursar_rate_limit_counters",
          "Rate-limit counters (rule, window, key) in memory; idle ones are "
          "evicted every second.",
          [decider] {
            return std::vector<MetricSample>{
                {"", {}, static_cast<double>(decider->rate_limiter().size())}};
          });
      !s.ok()) {
    return s;
  }
  auto pool_samples = [decider, policies](bool in_flight) {
    std::vector<MetricSample> samples;
    for (const policy::ConcurrencyPool& pool :
         policies->Active()->rules().concurrency) {
      samples.push_back(
          {"",
           {{"pool", pool.name}},
           static_cast<double>(in_flight ? decider->pools().in_flight(pool.name)
                                         : pool.max_in_flight)});
    }
    return samples;
  };
  if (absl::Status s = registry->AddGaugeCallback(
          "bursar_pool_in_flight",
          "Calls holding a slot of each concurrency pool of the active policy.",
          [pool_samples] { return pool_samples(true); });
      !s.ok()) {
    return s;
  }
  return registry->AddGaugeCallback(
      "bursar_pool_max_in_flight",
      "max_in_flight of each concurrency pool of the active policy.",
      [pool_samples] { return pool_samples(false); });
}

}  // namespace bursar::server
