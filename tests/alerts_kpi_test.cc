// The KPI built-in alerts over REAL rollups: traffic goes through the
// ledger's settlement (Reserve, then Settle with the call's UsageUpdate, as
// the Decider does), the alert engine reads it through RollupKpiView, and
// policy changes come from the PolicyRegistry. Time is a fake clock moved
// by the test, so nothing depends on timing.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "alerts/alert_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "server/kpi_rollups.h"
#include "server/policy_registry.h"
#include "storage/labels.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kCent = 10'000'000;

// Monday 2026-03-16 00:00 UTC.
const absl::Time kDay0 =
    absl::FromCivil(absl::CivilDay(2026, 3, 16), absl::UTCTimeZone());

std::shared_ptr<const policy::CompiledPolicy> Compile(absl::string_view name) {
  const std::string yaml = absl::StrCat(
      "apiVersion: bursar.dev/v1\n"
      "kind: Policy\n"
      "metadata: { name: ",
      name,
      " }\n"
      "pricing:\n"
      "  gpt-4.1: { input: \"2.00\", output: \"8.00\" }\n"
      "alerting: { budget_thresholds: false, projected_exhaustion: false }\n");
  policy::CompileResult result = policy::CompilePolicy({{"policy.yaml", yaml}});
  EXPECT_NE(result.policy, nullptr);
  return result.policy;
}

class AlertsKpiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.Sub("db");
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> opened =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    storage_ = *std::move(opened);
    registry_ = std::make_unique<PolicyRegistry>(Compile("v1"));
    kpis_ = std::make_unique<RollupKpiView>(
        storage_.usage.get(), storage_.ledger.get(), registry_.get());
    engine_ = std::make_unique<alerts::AlertEngine>(
        storage_.ledger.get(), storage_.alerts.get(),
        [this] { return registry_->Active(); }, [this] { return now_; },
        kpis_.get());
    storage::BudgetSpec team;
    team.name = "team";
    team.period = storage::Period::kMonth;
    team.amount_nanos = 1'000'000 * 100 * kCent;
    ASSERT_TRUE(storage_.ledger->SetBudget(team, {"test"}, now_).ok());
  }

  // One call at now_ through the ledger's settlement, as the Decider
  // settles a Report: its cost, one request, its tokens.
  void Call(int64_t cost_nanos, int64_t output_tokens) {
    storage::LabelSet labels;
    storage::ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = cost_nanos;
    absl::StatusOr<storage::ReserveResult> reserved =
        storage_.ledger->Reserve(request, now_);
    ASSERT_TRUE(reserved.ok()) << reserved.status();
    ASSERT_EQ(reserved->kind, storage::ReserveResult::Kind::kReserved);
    storage::UsageUpdate usage;
    usage.time = now_;
    usage.model = "gpt-4.1";
    usage.provider = "openai";
    usage.budgets = {{"team", ""}};
    usage.counts.cost_nanos = cost_nanos;
    usage.counts.requests = 1;
    usage.counts.successes = 1;
    usage.counts.input_tokens = 1000;
    usage.counts.output_tokens = output_tokens;
    ASSERT_TRUE(
        storage_.ledger
            ->Settle(reserved->reservation_id, cost_nanos, now_, &usage, {}, nullptr)
            .ok());
  }

  // The alerts one pass at now_ fires, as "rule scope".
  std::vector<std::string> Pass() {
    absl::StatusOr<std::vector<storage::AlertEntry>> fired =
        engine_->EvaluateOnce(now_);
    EXPECT_TRUE(fired.ok()) << fired.status();
    std::vector<std::string> rules;
    if (fired.ok()) {
      for (const storage::AlertEntry& a : *fired) {
        rules.push_back(absl::StrCat(a.rule, " ", a.scope));
      }
    }
    return rules;
  }

  // From now_ for `length`: `per_minute` calls of `cost_nanos` each minute,
  // and (with `passes`) an alert pass every ten minutes; returns every alert
  // fired.
  std::vector<std::string> Traffic(absl::Duration length, int per_minute,
                                   int64_t cost_nanos, bool passes = true) {
    std::vector<std::string> fired;
    const absl::Time end = now_ + length;
    for (int minute = 0; now_ < end; ++minute) {
      for (int i = 0; i < per_minute; ++i) Call(cost_nanos, 500);
      now_ += absl::Minutes(1);
      if (passes && minute % 10 == 9) {
        for (std::string& rule : Pass()) fired.push_back(std::move(rule));
      }
    }
    return fired;
  }

  bursar::testing::TempDir dir_;
  storage::RocksStorage storage_;
  absl::Time now_ = kDay0 + absl::Hours(9);
  std::unique_ptr<PolicyRegistry> registry_;
  std::unique_ptr<RollupKpiView> kpis_;
  std::unique_ptr<alerts::AlertEngine> engine_;
};

TEST_F(AlertsKpiTest, SteadyHoursRaiseNoSpikeAndADoubledHourRaisesOne) {
  // Two hours of history first (a window compares with the hour before
  // it, which must be full of the same traffic).
  Traffic(absl::Hours(2), 1, 10 * kCent, /*passes=*/false);
  // Two steady hours, passes every ten minutes: nothing.
  EXPECT_THAT(Traffic(absl::Hours(2), 1, 10 * kCent), IsEmpty());
  // Twice the calls for an hour, then steady again: exactly one spike
  // alert, for the spike's hour (the rolling window still holds the spike
  // in the next clock hour: that is the same spike, not a new one).
  EXPECT_THAT(Traffic(absl::Hours(1), 2, 10 * kCent),
              ElementsAre("spend-hour-over-hour budget:team"));
  EXPECT_THAT(Traffic(absl::Hours(2), 1, 10 * kCent), IsEmpty());
  absl::StatusOr<std::vector<storage::AlertEntry>> stored =
      storage_.alerts->List(10);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].period_start, kDay0 + absl::Hours(13));
}

TEST_F(AlertsKpiTest, TokensPerRequestJumpAlertsOnlyWithoutAPolicyChange) {
  // Day one: 5 calls an hour of 500 output tokens; day two: 1000 output
  // tokens per call (+33% tokens per request), same cost and count.
  now_ = kDay0 + absl::Hours(24);
  for (int hour = 0; hour < 24; ++hour) {
    for (int i = 0; i < 5; ++i) Call(10 * kCent, 500);
    now_ += absl::Hours(1);
  }
  for (int hour = 0; hour < 24; ++hour) {
    for (int i = 0; i < 5; ++i) Call(10 * kCent, 1000);
    now_ += absl::Hours(1);
  }
  EXPECT_THAT(Pass(), ElementsAre("tokens-per-request-24h budget:team"));
}

TEST_F(AlertsKpiTest, TokensPerRequestJumpAfterAPushRaisesNothing) {
  now_ = kDay0 + absl::Hours(24);
  for (int hour = 0; hour < 24; ++hour) {
    for (int i = 0; i < 5; ++i) Call(10 * kCent, 500);
    now_ += absl::Hours(1);
  }
  // A push at the start of day two explains the change.
  registry_->Activate(Compile("v2"), now_ + absl::Minutes(5));
  for (int hour = 0; hour < 24; ++hour) {
    for (int i = 0; i < 5; ++i) Call(10 * kCent, 1000);
    now_ += absl::Hours(1);
  }
  EXPECT_THAT(Pass(), IsEmpty());
}

TEST(PolicyRegistryChangesTest, ChangedBetweenIsHalfOpenAndSeedsFromAudit) {
  PolicyRegistry registry(Compile("v1"));
  EXPECT_FALSE(
      registry.ChangedBetween(absl::InfinitePast(), absl::InfiniteFuture()));
  registry.Activate(Compile("v2"), kDay0);
  EXPECT_TRUE(registry.ChangedBetween(kDay0 - absl::Hours(1), kDay0));
  EXPECT_FALSE(registry.ChangedBetween(kDay0, kDay0 + absl::Hours(1)));
  std::vector<storage::AuditEntry> audit(3);
  audit[0].time = kDay0 + absl::Hours(5);
  audit[0].action = "policy.activate";
  audit[1].time = kDay0 + absl::Hours(6);
  audit[1].action = "budget.set";
  audit[2].time = kDay0 - absl::Hours(48);
  audit[2].action = "policy.push";
  PolicyRegistry restarted(Compile("v1"));
  NotePolicyChanges(audit, kDay0 - absl::Hours(24), &restarted);
  EXPECT_TRUE(restarted.ChangedBetween(kDay0, kDay0 + absl::Hours(5)));
  EXPECT_FALSE(restarted.ChangedBetween(kDay0 + absl::Hours(5),
                                        kDay0 + absl::Hours(24)));
  EXPECT_FALSE(restarted.ChangedBetween(kDay0 - absl::Hours(72), kDay0));
}

}  // namespace
}  // namespace bursar::server
