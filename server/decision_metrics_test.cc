#include "server/decision_metrics.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "server/decider.h"
#include "server/policy_registry.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPolicy[] = R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test }
pricing:
  gpt-4.1: { provider: openai, input: "2.00", cached_input: "0.50", output: "8.00" }
defaults: { max_output_tokens: 1000, unknown_model: reject }
)yaml";

// A real decider on a real ledger (RocksDB in a temp dir, --sync=always so
// that every write is fsynced), observed by DecisionMetrics.
class DecisionMetricsTest : public ::testing::Test {
 protected:
  virtual storage::SyncMode sync_mode() const {
    return storage::SyncMode::kAlways;
  }
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = sync_mode();
    absl::StatusOr<storage::RocksStorage> storage =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
    policy::CompileResult compiled =
        policy::CompilePolicy({{"p.yaml", kPolicy}});
    ASSERT_NE(compiled.policy, nullptr);
    policies_ = std::make_unique<PolicyRegistry>(compiled.policy);
    absl::StatusOr<std::unique_ptr<DecisionMetrics>> metrics =
        DecisionMetrics::Create(&registry_);
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    metrics_ = *std::move(metrics);
    DeciderOptions decider_options;
    decider_options.observer = metrics_.get();
    decider_ = std::make_unique<Decider>(storage_.ledger.get(), policies_.get(),
                                         &clock_, decider_options);
  }

  void SetBudget(const std::string& name, int64_t amount_nanos,
                 const std::string& team) {
    storage::BudgetSpec spec;
    spec.name = name;
    spec.amount_nanos = amount_nanos;
    spec.period = storage::Period::kMonth;
    spec.selector = {{"team", team}};
    ASSERT_TRUE(
        storage_.ledger->SetBudget(spec, {"test", ""}, clock_.Now()).ok());
  }

  v1::CheckRequest Request(const std::string& team) {
    v1::CheckRequest request;
    request.set_model("gpt-4.1");
    request.set_input_tokens(1000);
    request.set_max_output_tokens(1000);
    (*request.mutable_labels())["team"] = team;
    return request;
  }

  bursar::testing::TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'790'000'000)};
  storage::RocksStorage storage_;
  std::unique_ptr<PolicyRegistry> policies_;
  MetricsRegistry registry_;
  std::unique_ptr<DecisionMetrics> metrics_;
  std::unique_ptr<Decider> decider_;
};

TEST_F(DecisionMetricsTest, CountsVerdictsRulesOutcomesAndErrors) {
  SetBudget("search", 1'000'000'000, "search");
  SetBudget("tiny", 1, "tiny");

  v1::CheckResponse allowed;
  ASSERT_TRUE(decider_->Check(Request("search"), &allowed).ok());
  ASSERT_EQ(allowed.verdict(), v1::VERDICT_ALLOW);
  v1::CheckResponse denied;
  ASSERT_TRUE(decider_->Check(Request("tiny"), &denied).ok());
  ASSERT_EQ(denied.verdict(), v1::VERDICT_DENY);
  v1::CheckRequest bad = Request("search");
  bad.clear_model();
  v1::CheckResponse ignored;
  EXPECT_EQ(decider_->Check(bad, &ignored).code(),
            absl::StatusCode::kInvalidArgument);

  v1::ReportRequest report;
  report.set_reservation_id(allowed.reservation_id());
  report.mutable_usage()->set_input_tokens(1000);
  report.mutable_usage()->set_output_tokens(500);
  report.set_outcome(v1::OUTCOME_RETRY);
  v1::ReportResponse reported;
  ASSERT_TRUE(decider_->Report(report, &reported).ok());
  // 1000 x $2/1M + 500 x $8/1M = $0.006
  ASSERT_EQ(reported.cost_nanos(), 6'000'000);
  ASSERT_TRUE(decider_->Report(report, &reported).ok());  // a repeat
  v1::ReportRequest unknown;
  unknown.set_reservation_id("no-such-reservation");
  EXPECT_EQ(decider_->Report(unknown, &reported).code(),
            absl::StatusCode::kNotFound);

  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("bursar_checks_total{verdict=\"allow\","
                              "rule=\"none\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("bursar_checks_total{verdict=\"deny\","
                              "rule=\"budget:tiny\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("bursar_checks_total{verdict=\"error\","
                              "rule=\"none\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("bursar_check_errors_total{code=\"invalid_"
                              "argument\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("bursar_check_duration_seconds_count 3\n"));
  EXPECT_THAT(
      text, HasSubstr("bursar_check_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("bursar_reports_total{outcome=\"retry\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("bursar_reports_total{outcome=\"success\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("bursar_reports_special_total{kind=\"repeated\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("bursar_report_errors_total{code=\"not_found\"} 1\n"));
  // Charged once, not again for the repeat.
  EXPECT_THAT(text, HasSubstr("bursar_report_cost_nanos_total 6000000\n"));
  EXPECT_THAT(text, HasSubstr("bursar_report_duration_seconds_count 3\n"));
}

TEST_F(DecisionMetricsTest, BudgetFiguresAreReadAtScrapeTimeAndBounded) {
  ASSERT_TRUE(
      RegisterLedgerMetrics(&registry_, storage_.ledger.get(), &clock_, 2)
          .ok());
  SetBudget("a-search", 1'000'000'000, "search");
  SetBudget("b-ads", 2'000'000'000, "ads");
  SetBudget("c-left-out", 3'000'000'000, "other");

  v1::CheckResponse allowed;
  ASSERT_TRUE(decider_->Check(Request("search"), &allowed).ok());
  std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("bursar_budget_amount_nanos{budget=\"a-search\"} "
                              "1000000000\n"));
  // 1000 x $2/1M + 1000 x $8/1M = $0.01 held, nothing spent yet.
  EXPECT_THAT(text, HasSubstr("bursar_budget_held_nanos{budget=\"a-search\"} "
                              "10000000\n"));
  EXPECT_THAT(text, HasSubstr("bursar_budget_spent_nanos{budget=\"a-search\"} "
                              "0\n"));
  EXPECT_THAT(text, HasSubstr("bursar_budget_amount_nanos{budget=\"b-ads\"} "
                              "2000000000\n"));
  EXPECT_THAT(text, Not(HasSubstr("c-left-out")));
  EXPECT_THAT(text, HasSubstr("bursar_budgets_not_exported 1\n"));

  v1::ReportRequest report;
  report.set_reservation_id(allowed.reservation_id());
  report.mutable_usage()->set_output_tokens(1000);
  v1::ReportResponse reported;
  ASSERT_TRUE(decider_->Report(report, &reported).ok());
  // A scrape within a second of the last one reuses its ledger snapshot.
  EXPECT_THAT(registry_.Render(),
              HasSubstr("bursar_budget_held_nanos{budget=\"a-search\"} "
                        "10000000\n"));
  clock_.Advance(absl::Seconds(1));
  text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("bursar_budget_held_nanos{budget=\"a-search\"} "
                              "0\n"));
  EXPECT_THAT(text, HasSubstr("bursar_budget_spent_nanos{budget=\"a-search\"} "
                              "8000000\n"));
}

TEST_F(DecisionMetricsTest, RocksDbWriteLatencyComesFromItsStatistics) {
  ASSERT_TRUE(
      RegisterDatabaseMetrics(&registry_, storage_.database_stats).ok());
  const storage::DatabaseStats before = storage_.database_stats();
  SetBudget("search", 1'000'000'000, "search");
  v1::CheckResponse allowed;
  ASSERT_TRUE(decider_->Check(Request("search"), &allowed).ok());
  const storage::DatabaseStats after = storage_.database_stats();
  // The budget and the hold are two more writes, each fsynced (kAlways).
  EXPECT_GE(after.write.count, before.write.count + 2);
  EXPECT_GE(after.wal_file_sync.count, before.wal_file_sync.count + 2);
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE bursar_rocksdb_write_seconds summary\n"));
  EXPECT_THAT(text,
              HasSubstr("bursar_rocksdb_write_seconds{quantile=\"0.99\"} "));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("bursar_rocksdb_write_seconds_count ",
                                     after.write.count, "\n")));
  EXPECT_THAT(text, HasSubstr("bursar_rocksdb_wal_sync_seconds_count "));
  EXPECT_THAT(text,
              Not(HasSubstr("bursar_rocksdb_wal_sync_seconds_count 0\n")));
}

// With --sync=group the fsyncs are the group syncer's SyncWAL calls, which
// RocksDB does not time: the syncer reports them into the same histogram.
class DecisionMetricsGroupSyncTest : public DecisionMetricsTest {
 protected:
  storage::SyncMode sync_mode() const override {
    return storage::SyncMode::kGroup;
  }
};

TEST_F(DecisionMetricsGroupSyncTest, WalSyncLatencyCountsGroupSyncs) {
  const storage::DatabaseStats before = storage_.database_stats();
  SetBudget("search", 1'000'000'000, "search");
  const storage::DatabaseStats after = storage_.database_stats();
  EXPECT_GE(after.write.count, before.write.count + 1);
  EXPECT_GE(after.wal_file_sync.count, before.wal_file_sync.count + 1);
}

}  // namespace
}  // namespace bursar::server
