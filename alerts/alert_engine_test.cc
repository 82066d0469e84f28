// The alert engine over a real ledger and alert store (RocksDB in a temp
// dir), a compiled policy, and a fake KpiView whose figures the tests set.

#include "alerts/alert_engine.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "storage/labels.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::alerts {
namespace {

using ::bursar::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr int64_t kUsd = 1'000'000'000;

absl::Time Utc(int y, int mo, int d, int h = 0, int mi = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, 0),
                         absl::UTCTimeZone());
}

constexpr char kPricing[] = R"(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test }
pricing:
  gpt-4.1: { input: "2.00", output: "8.00" }
)";

std::shared_ptr<const policy::CompiledPolicy> Compile(const std::string& more) {
  policy::CompileResult result =
      policy::CompilePolicy({{"policy.yaml", kPricing + more}});
  std::string errors;
  for (const policy::Diagnostic& d : result.diagnostics) {
    absl::StrAppend(&errors, policy::FormatDiagnostic(d), "\n");
  }
  EXPECT_NE(result.policy, nullptr) << errors;
  return result.policy;
}

class FakeKpis final : public policy::KpiView {
 public:
  bool Figures(absl::string_view budget, absl::string_view instance,
               policy::KpiWindow window, absl::Time,
               policy::KpiFigures* out) const override {
    auto it = figures_.find(
        std::make_tuple(std::string(budget), std::string(instance), window));
    *out = it == figures_.end() ? policy::KpiFigures{} : it->second;
    return true;
  }
  void Set(const std::string& budget, policy::KpiWindow window,
           policy::KpiFigures figures) {
    figures_[std::make_tuple(budget, std::string(), window)] = figures;
  }

 private:
  std::map<std::tuple<std::string, std::string, policy::KpiWindow>,
           policy::KpiFigures>
      figures_;
};

class Recorder final : public AlertListener {
 public:
  void OnAlert(const storage::AlertEntry& alert) override {
    heard.push_back(alert.rule);
  }
  std::vector<std::string> heard;
};

class AlertEngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    engine_.reset();
    storage_ = storage::RocksStorage();
    storage::RocksLedgerOptions options;
    options.path = dir_.Sub("db");
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> opened =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    storage_ = *std::move(opened);
    engine_ = std::make_unique<AlertEngine>(
        storage_.ledger.get(), storage_.alerts.get(),
        [this] { return policy_; }, [this] { return now_; }, kpis_.get(),
        AlertEngineOptions{.outbox = outbox_});
    engine_->AddListener(&recorder_);
  }

  void SetBudget(const std::string& name, storage::Period period,
                 int64_t amount_nanos, std::string per_label = "") {
    storage::BudgetSpec spec;
    spec.name = name;
    spec.period = period;
    spec.amount_nanos = amount_nanos;
    spec.per_label = std::move(per_label);
    ASSERT_TRUE(
        storage_.ledger->SetBudget(spec, storage::Actor{"test"}, now_).ok());
  }

  void Spend(int64_t nanos, absl::string_view user = "") {
    storage::LabelSet labels;
    if (!user.empty()) labels.Add("user", user);
    storage::ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = nanos;
    absl::StatusOr<storage::ReserveResult> reserved =
        storage_.ledger->Reserve(request, now_);
    ASSERT_TRUE(reserved.ok()) << reserved.status();
    ASSERT_EQ(reserved->kind, storage::ReserveResult::Kind::kReserved);
    ASSERT_TRUE(
        storage_.ledger->Settle(reserved->reservation_id, nanos, now_, nullptr, {}, nullptr).ok());
  }

  // The rules that fired in one pass at now_.
  std::vector<std::string> Pass() {
    absl::StatusOr<std::vector<storage::AlertEntry>> fired =
        engine_->EvaluateOnce(now_);
    EXPECT_TRUE(fired.ok()) << fired.status();
    std::vector<std::string> rules;
    if (fired.ok()) {
      for (const storage::AlertEntry& a : *fired) {
        rules.push_back(absl::StrCat(a.rule, " ", a.scope));
        last_.push_back(a);
      }
    }
    return rules;
  }

  TempDir dir_;
  storage::RocksStorage storage_;
  std::unique_ptr<FakeKpis> kpis_ = std::make_unique<FakeKpis>();
  std::shared_ptr<const policy::CompiledPolicy> policy_ = Compile("");
  absl::Time now_ = Utc(2026, 3, 10, 9);
  Recorder recorder_;
  std::function<std::vector<std::string>(const storage::AlertEntry&)> outbox_;
  std::unique_ptr<AlertEngine> engine_;
  std::vector<storage::AlertEntry> last_;
};

TEST_F(AlertEngineTest, ThresholdsFireOnceEachAndRearmInTheNextPeriod) {
  policy_ = Compile("alerting: { projected_exhaustion: false }\n");
  SetBudget("team", storage::Period::kDay, 100 * kUsd);
  Spend(50 * kUsd);
  EXPECT_THAT(Pass(), IsEmpty());
  Spend(36 * kUsd);  // 86%
  EXPECT_THAT(Pass(), ElementsAre("budget-threshold-85 budget:team"));
  EXPECT_EQ(last_.back().severity, "warning");
  EXPECT_THAT(last_.back().message, HasSubstr("$86.00 of $100.00"));
  EXPECT_EQ(last_.back().period_start, Utc(2026, 3, 10));
  EXPECT_THAT(Pass(), IsEmpty());
  // A restart and a policy push change nothing.
  Open();
  policy_ = Compile("alerting: { projected_exhaustion: false }\nalerts: []\n");
  EXPECT_THAT(Pass(), IsEmpty());
  Spend(14 * kUsd);  // 100%
  EXPECT_THAT(Pass(), ElementsAre("budget-threshold-100 budget:team"));
  EXPECT_EQ(last_.back().severity, "critical");
  EXPECT_THAT(Pass(), IsEmpty());
  // The next day re-arms both.
  now_ = Utc(2026, 3, 11, 1);
  Spend(100 * kUsd);
  EXPECT_THAT(Pass(), ElementsAre("budget-threshold-85 budget:team",
                                  "budget-threshold-100 budget:team"));
  EXPECT_THAT(recorder_.heard,
              ElementsAre("budget-threshold-85", "budget-threshold-100",
                          "budget-threshold-85", "budget-threshold-100"));
}

TEST_F(AlertEngineTest, FiredAlertsAreStoredWithTheirPendingDeliveries) {
  outbox_ = [](const storage::AlertEntry& alert) {
    std::vector<std::string> urls = {"http://a/hook"};
    if (alert.severity == "critical") urls.push_back("http://b/pager");
    return urls;
  };
  Open();
  policy_ = Compile("alerting: { projected_exhaustion: false }\n");
  SetBudget("team", storage::Period::kDay, 100 * kUsd);
  Spend(100 * kUsd);
  EXPECT_THAT(Pass(), ElementsAre("budget-threshold-85 budget:team",
                                  "budget-threshold-100 budget:team"));
  EXPECT_THAT(Pass(), IsEmpty());
  std::vector<std::string> pending;
  const std::vector<storage::PendingDelivery> stored =
      storage_.alerts->ListPendingDeliveries().value();
  for (const storage::PendingDelivery& p : stored) {
    pending.push_back(absl::StrCat(p.alert.rule, " ", p.url));
  }
  EXPECT_THAT(pending, ElementsAre("budget-threshold-85 http://a/hook",
                                   "budget-threshold-100 http://a/hook",
                                   "budget-threshold-100 http://b/pager"));
}

TEST_F(AlertEngineTest, PolicyRuleWithoutBudgetWatchesEveryScope) {
  policy_ = Compile(R"(
alerts:
  - name: half-spent
    when: budget.used_ratio >= 50%
    severity: info
  - name: ops-only
    budget: ops
    when: budget.spent > $1
    severity: critical
alerting: { budget_thresholds: false, projected_exhaustion: false }
)");
  SetBudget("team", storage::Period::kMonth, 10 * kUsd);
  SetBudget("per-user", storage::Period::kMonth, 10 * kUsd, "user");
  SetBudget("ops", storage::Period::kMonth, 1000 * kUsd);
  Spend(6 * kUsd, "alice");
  Spend(1 * kUsd, "bob");
  EXPECT_THAT(Pass(), UnorderedElementsAre("half-spent budget:team",
                                           "half-spent budget:per-user/alice",
                                           "ops-only budget:ops"));
  EXPECT_THAT(Pass(), IsEmpty());
}

TEST_F(AlertEngineTest, SpendSloBreachEscalatesAfterConsecutiveDays) {
  policy_ = Compile(R"(
spend_slos:
  - name: daily-slo
    budget: team
    when: budget.used_ratio >= 0.5
    then: { cap_output_tokens: 512 }
    escalate_after: 3
alerting: { budget_thresholds: false, projected_exhaustion: false }
)");
  SetBudget("team", storage::Period::kDay, 10 * kUsd);
  std::vector<std::string> fired;
  for (int day = 1; day <= 4; ++day) {
    now_ = Utc(2026, 3, day, 12);
    Spend(6 * kUsd);
    std::vector<std::string> pass = Pass();
    fired.push_back(absl::StrJoin(pass, ","));
  }
  EXPECT_THAT(fired, ElementsAre("slo-breach:daily-slo budget:team",
                                 "slo-breach:daily-slo budget:team",
                                 "slo-breach:daily-slo budget:team,"
                                 "slo-escalation:daily-slo budget:team",
                                 "slo-breach:daily-slo budget:team,"
                                 "slo-escalation:daily-slo budget:team"));
  // A day without breach breaks the run.
  now_ = Utc(2026, 3, 5, 12);
  Spend(1 * kUsd);
  EXPECT_THAT(Pass(), IsEmpty());
  now_ = Utc(2026, 3, 6, 12);
  Spend(6 * kUsd);
  EXPECT_THAT(Pass(), ElementsAre("slo-breach:daily-slo budget:team"));
}

TEST_F(AlertEngineTest, HourOverHourSpikeFiresAndSteadyTrafficDoesNot) {
  policy_ = Compile("alerting: { budget_thresholds: false }\n");
  SetBudget("team", storage::Period::kMonth, 100'000 * kUsd);
  Spend(1 * kUsd);
  policy::KpiFigures steady;
  steady.spend_nanos = 10 * kUsd;
  steady.requests = 1000;
  steady.successes = 1000;
  kpis_->Set("team", policy::KpiWindow::kPreviousHour, steady);
  steady.spend_nanos = 12 * kUsd;  // +20%: under 30%
  kpis_->Set("team", policy::KpiWindow::kLastHour, steady);
  EXPECT_THAT(Pass(), IsEmpty());
  policy::KpiFigures spike = steady;
  spike.spend_nanos = 13 * kUsd;  // +30%
  kpis_->Set("team", policy::KpiWindow::kLastHour, spike);
  EXPECT_THAT(Pass(), ElementsAre("spend-hour-over-hour budget:team"));
  EXPECT_THAT(last_.back().message, HasSubstr("+30%"));
  EXPECT_EQ(last_.back().period_start, Utc(2026, 3, 10, 9));
  EXPECT_THAT(Pass(), IsEmpty());
  // The next hour may fire again.
  now_ += absl::Hours(1);
  EXPECT_THAT(Pass(), ElementsAre("spend-hour-over-hour budget:team"));
}

TEST_F(AlertEngineTest, BeforePassRunsAtThePassTimeBeforeKpisAreRead) {
  policy_ = Compile("alerting: { budget_thresholds: false }\n");
  SetBudget("team", storage::Period::kMonth, 100'000 * kUsd);
  Spend(1 * kUsd);
  std::vector<absl::Time> refreshed_at;
  engine_ = std::make_unique<AlertEngine>(
      storage_.ledger.get(), storage_.alerts.get(), [this] { return policy_; },
      [this] { return now_; }, kpis_.get(),
      AlertEngineOptions{.before_pass = [&](absl::Time now) {
        refreshed_at.push_back(now);
        // What a refresh finds: a spike, which this pass must see.
        policy::KpiFigures figures;
        figures.spend_nanos = 10 * kUsd;
        figures.requests = 1000;
        kpis_->Set("team", policy::KpiWindow::kPreviousHour, figures);
        figures.spend_nanos = 20 * kUsd;
        kpis_->Set("team", policy::KpiWindow::kLastHour, figures);
      }});
  EXPECT_THAT(Pass(), ElementsAre("spend-hour-over-hour budget:team"));
  EXPECT_THAT(refreshed_at, ElementsAre(now_));
  now_ += absl::Seconds(5);
  EXPECT_THAT(Pass(), IsEmpty());
  EXPECT_THAT(refreshed_at, ElementsAre(now_ - absl::Seconds(5), now_));
}

TEST_F(AlertEngineTest, TwentyFourHourKpiAlerts) {
  policy_ = Compile("alerting: { budget_thresholds: false }\n");
  SetBudget("team", storage::Period::kMonth, 100'000 * kUsd);
  Spend(1 * kUsd);
  policy::KpiFigures before;
  before.spend_nanos = 100 * kUsd;
  before.requests = 1000;
  before.input_tokens = 1'000'000;
  before.output_tokens = 200'000;
  kpis_->Set("team", policy::KpiWindow::kPrevious24Hours, before);
  policy::KpiFigures same = before;
  same.spend_nanos = 102 * kUsd;  // +2%: no burn variation
  kpis_->Set("team", policy::KpiWindow::kLast24Hours, same);
  EXPECT_THAT(Pass(), IsEmpty());

  policy::KpiFigures after = before;
  after.spend_nanos = 120 * kUsd;  // cost per request +20%, burn +20%
  after.output_tokens = 600'000;   // tokens per request +33%
  after.policy_changed = true;     // ... but the policy changed
  kpis_->Set("team", policy::KpiWindow::kLast24Hours, after);
  EXPECT_THAT(Pass(), UnorderedElementsAre("cost-per-request-24h budget:team",
                                           "daily-burn-variation budget:team"));
  after.policy_changed = false;
  kpis_->Set("team", policy::KpiWindow::kLast24Hours, after);
  EXPECT_THAT(Pass(), ElementsAre("tokens-per-request-24h budget:team"));
  EXPECT_THAT(last_.back().message, HasSubstr("no policy change"));
}

TEST_F(AlertEngineTest, RetryRateNeedsEnoughRequests) {
  policy_ = Compile(
      "alerting: { budget_thresholds: false, retry_rate: { max: 2%, "
      "min_requests: 100, severity: critical } }\n");
  SetBudget("team", storage::Period::kMonth, 100'000 * kUsd);
  Spend(1 * kUsd);
  policy::KpiFigures few;
  few.requests = 50;
  few.retries = 10;
  kpis_->Set("team", policy::KpiWindow::kLastHour, few);
  EXPECT_THAT(Pass(), IsEmpty());
  policy::KpiFigures many;
  many.requests = 1000;
  many.retries = 21;
  kpis_->Set("team", policy::KpiWindow::kLastHour, many);
  EXPECT_THAT(Pass(), ElementsAre("retry-rate budget:team"));
  EXPECT_EQ(last_.back().severity, "critical");
}

TEST_F(AlertEngineTest, ProjectedExhaustionBeforePeriodEnd) {
  policy_ = Compile("alerting: { budget_thresholds: false }\n");
  SetBudget("team", storage::Period::kDay, 100 * kUsd);
  now_ = Utc(2026, 3, 10, 6);  // a quarter of the day
  Spend(20 * kUsd);            // pace: $80 by midnight
  EXPECT_THAT(Pass(), IsEmpty());
  Spend(10 * kUsd);  // pace: $120
  EXPECT_THAT(Pass(), ElementsAre("projected-exhaustion budget:team"));
  EXPECT_THAT(last_.back().message,
              HasSubstr("runs out about 2026-03-10T20:00"));
}

TEST_F(AlertEngineTest, DisabledBuiltinsStayQuiet) {
  policy_ = Compile(
      "alerting: { budget_thresholds: { enabled: false }, "
      "projected_exhaustion: false }\n");
  SetBudget("team", storage::Period::kDay, 10 * kUsd);
  Spend(10 * kUsd);
  EXPECT_THAT(Pass(), IsEmpty());
}

TEST_F(AlertEngineTest, BackgroundThreadRunsPassesWhenWoken) {
  policy_ = Compile("alerting: { projected_exhaustion: false }\n");
  engine_.reset();
  AlertEngineOptions options;
  options.interval = absl::Hours(1);
  options.min_gap = absl::ZeroDuration();
  engine_ = std::make_unique<AlertEngine>(
      storage_.ledger.get(), storage_.alerts.get(), [this] { return policy_; },
      [this] { return now_; }, nullptr, options);
  engine_->AddListener(&recorder_);
  SetBudget("team", storage::Period::kDay, 10 * kUsd);
  Spend(9 * kUsd);
  engine_->Start();
  // Without Wake the first pass runs at once (nothing ran before); after
  // it, a Wake is what brings the next one.
  while (engine_->passes() < 1) absl::SleepFor(absl::Milliseconds(5));
  Spend(1 * kUsd);
  engine_->Wake();
  while (engine_->passes() < 2) absl::SleepFor(absl::Milliseconds(5));
  engine_->Stop();
  EXPECT_THAT(recorder_.heard,
              ElementsAre("budget-threshold-85", "budget-threshold-100"));
}

}  // namespace
}  // namespace bursar::alerts
