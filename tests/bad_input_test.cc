// Bad input gets INVALID_ARGUMENT (or NOT_FOUND) with a message naming the
// field, and changes nothing already recorded. Retries are idempotent.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr int64_t kAbsurdTokens = 100'000'001;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());

    // Something recorded: a budget with spend and an open hold.
    v1::SetBudgetRequest set;
    *set.mutable_budget() =
        MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000, "Europe/Berlin");
    set.mutable_budget()->add_alert_thresholds(0.5);
    set.set_actor("finance");
    v1::SetBudgetResponse set_response;
    BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));
    v1::CheckResponse check;
    BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'000, 500), &check));
    ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
    v1::ReportResponse report;
    BURSAR_ASSERT_OK(server_->Report(
        MakeReport(check.reservation_id(), 1'000, 200, 300), &report));
    BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 500, 500), &open_));
    ASSERT_EQ(open_.verdict(), v1::VERDICT_ALLOW);
    before_ = State();
  }

  // Budgets with spend and holds, and the audit log.
  std::pair<v1::ListBudgetsResponse, v1::ListAuditResponse> State() {
    std::pair<v1::ListBudgetsResponse, v1::ListAuditResponse> state;
    BURSAR_EXPECT_OK(server_->ListBudgets(&state.first));
    BURSAR_EXPECT_OK(server_->ListAudit(1000, &state.second));
    return state;
  }

  ::testing::AssertionResult Unchanged() {
    const auto after = State();
    std::string diff;
    MessageDifferencer differencer;
    differencer.ReportDifferencesToString(&diff);
    if (!differencer.Compare(before_.first, after.first)) {
      return ::testing::AssertionFailure() << "budgets changed: " << diff;
    }
    if (!differencer.Compare(before_.second, after.second)) {
      return ::testing::AssertionFailure() << "audit log changed: " << diff;
    }
    return ::testing::AssertionSuccess();
  }

  // The call failed with `code` and a message mentioning `field`.
  static ::testing::AssertionResult Rejected(const grpc::Status& status,
                                             grpc::StatusCode code,
                                             const std::string& field) {
    if (status.error_code() != code) {
      return ::testing::AssertionFailure()
             << "expected code " << code << ", got " << StatusText(status);
    }
    if (status.error_message().find(field) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message does not name \"" << field
             << "\": " << StatusText(status);
    }
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult CheckRejected(const v1::CheckRequest& request,
                                           const std::string& field) {
    v1::CheckResponse response;
    return Rejected(server_->Check(request, &response),
                    grpc::StatusCode::INVALID_ARGUMENT, field);
  }

  ::testing::AssertionResult SetBudgetRejected(const v1::Budget& budget,
                                               const std::string& field) {
    v1::SetBudgetRequest request;
    *request.mutable_budget() = budget;
    request.set_actor("mallory");
    v1::SetBudgetResponse response;
    return Rejected(server_->SetBudget(request, &response),
                    grpc::StatusCode::INVALID_ARGUMENT, field);
  }

  v1::GetBudgetResponse Org() {
    v1::GetBudgetRequest request;
    request.set_name("org");
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->GetBudget(request, &response));
    return response;
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
  v1::CheckResponse open_;
  std::pair<v1::ListBudgetsResponse, v1::ListAuditResponse> before_;
};

TEST_F(BadInputTest, BadChecksAreRejectedNamingTheField) {
  EXPECT_TRUE(CheckRejected(MakeCheck("gpt-4.1", -1, 500), "input_tokens"));
  EXPECT_TRUE(
      CheckRejected(MakeCheck("gpt-4.1", kAbsurdTokens, 500), "input_tokens"));
  EXPECT_TRUE(CheckRejected(MakeCheck("gpt-4.1", 1'000, kAbsurdTokens),
                            "max_output_tokens"));
  EXPECT_TRUE(
      CheckRejected(MakeCheck("gpt-4.1", 1'000, -5), "max_output_tokens"));
  EXPECT_TRUE(CheckRejected(MakeCheck("", 1'000, 500), "model"));

  // A model without a price is refused, never priced at zero.
  EXPECT_TRUE(CheckRejected(MakeCheck("gpt-9000", 1'000, 500), "model"));
  EXPECT_TRUE(CheckRejected(MakeCheck("gpt-9000", 1'000, 500), "gpt-9000"));

  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 33; ++i) many.emplace_back("k" + std::to_string(i), "v");
  EXPECT_TRUE(CheckRejected(MakeCheck("gpt-4.1", 1'000, 500, many), "labels"));
  // 32 is fine.
  many.pop_back();
  v1::CheckRequest thirty_two = MakeCheck("gpt-4.1", 1'000, 500, many);
  thirty_two.set_dry_run(true);
  v1::CheckResponse ok;
  BURSAR_EXPECT_OK(server_->Check(thirty_two, &ok));

  EXPECT_TRUE(CheckRejected(
      MakeCheck("gpt-4.1", 1'000, 500, {{std::string(65, 'k'), "v"}}),
      "labels"));
  EXPECT_TRUE(CheckRejected(
      MakeCheck("gpt-4.1", 1'000, 500, {{"team", std::string(257, 'v')}}),
      "labels[team]"));

  EXPECT_TRUE(
      CheckRejected(MakeCheck("gpt-4.1", 1'000, 500, {}, std::string(129, 'r')),
                    "request_id"));
  v1::CheckRequest negative_attempt = MakeCheck("gpt-4.1", 1'000, 500);
  negative_attempt.set_attempt(-1);
  EXPECT_TRUE(CheckRejected(negative_attempt, "attempt"));

  EXPECT_TRUE(Unchanged());
}

TEST_F(BadInputTest, BadReportsAreRejected) {
  v1::ReportResponse response;
  EXPECT_TRUE(
      Rejected(server_->Report(MakeReport(open_.reservation_id(), 100, 101, 10),
                               &response),
               grpc::StatusCode::INVALID_ARGUMENT, "cached_input_tokens"));
  EXPECT_TRUE(Rejected(
      server_->Report(MakeReport(open_.reservation_id(), -1, 0, 10), &response),
      grpc::StatusCode::INVALID_ARGUMENT, "input_tokens"));
  EXPECT_TRUE(Rejected(server_->Report(MakeReport("", 100, 0, 10), &response),
                       grpc::StatusCode::INVALID_ARGUMENT, "reservation_id"));

  v1::ReportRequest bad_outcome = MakeReport(open_.reservation_id(), 10, 0, 1);
  bad_outcome.set_outcome(static_cast<v1::Outcome>(99));
  EXPECT_TRUE(Rejected(server_->Report(bad_outcome, &response),
                       grpc::StatusCode::INVALID_ARGUMENT, "outcome"));
  v1::ReportRequest negative_latency =
      MakeReport(open_.reservation_id(), 10, 0, 1);
  negative_latency.mutable_latency()->set_seconds(-3);
  EXPECT_TRUE(Rejected(server_->Report(negative_latency, &response),
                       grpc::StatusCode::INVALID_ARGUMENT, "latency"));
  v1::ReportRequest bad_quality = MakeReport(open_.reservation_id(), 10, 0, 1);
  bad_quality.set_quality_score(1.5);
  EXPECT_TRUE(Rejected(server_->Report(bad_quality, &response),
                       grpc::StatusCode::INVALID_ARGUMENT, "quality_score"));

  const grpc::Status unknown = server_->Report(
      MakeReport("r-00000000000000000000000000000000", 100, 0, 10), &response);
  EXPECT_TRUE(Rejected(unknown, grpc::StatusCode::NOT_FOUND,
                       "r-00000000000000000000000000000000"));
  EXPECT_THAT(unknown.error_message(), HasSubstr("never issued"));

  EXPECT_TRUE(Unchanged());
  // The open reservation is still open and can be settled.
  EXPECT_EQ(Org().held_nanos(), open_.estimated_cost_nanos());
}

TEST_F(BadInputTest, BadBudgetsAreRejectedNamingTheField) {
  // Each replaces the existing "org" budget if it were accepted.
  v1::Budget budget =
      MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000, "Europe/Berlin");

  v1::Budget negative = budget;
  negative.set_amount_nanos(-1);
  EXPECT_TRUE(SetBudgetRejected(negative, "amount_nanos"));

  v1::Budget mars = budget;
  mars.set_timezone("Mars/Olympus");
  EXPECT_TRUE(SetBudgetRejected(mars, "timezone"));
  EXPECT_TRUE(SetBudgetRejected(mars, "Mars/Olympus"));

  v1::Budget unspecified = budget;
  unspecified.set_period(v1::PERIOD_UNSPECIFIED);
  EXPECT_TRUE(SetBudgetRejected(unspecified, "period"));

  for (const std::string& name :
       {std::string(""), std::string("org budget"), std::string("org/x"),
        std::string(129, 'a')}) {
    v1::Budget bad_name = budget;
    bad_name.set_name(name);
    EXPECT_TRUE(SetBudgetRejected(bad_name, "name"))
        << "name \"" << name << "\"";
  }

  for (double threshold : {0.0, -0.1, 1.01, 85.0}) {
    v1::Budget bad_threshold = budget;
    bad_threshold.add_alert_thresholds(0.5);
    bad_threshold.add_alert_thresholds(threshold);
    EXPECT_TRUE(SetBudgetRejected(bad_threshold, "alert_thresholds"))
        << threshold;
  }

  v1::Budget empty_key = budget;
  (*empty_key.mutable_selector())[""] = "x";
  EXPECT_TRUE(SetBudgetRejected(empty_key, "selector"));
  v1::Budget long_per_label = budget;
  long_per_label.set_per_label(std::string(65, 'u'));
  EXPECT_TRUE(SetBudgetRejected(long_per_label, "per_label"));

  v1::SetBudgetRequest missing;
  v1::SetBudgetResponse response;
  EXPECT_TRUE(Rejected(server_->SetBudget(missing, &response),
                       grpc::StatusCode::INVALID_ARGUMENT, "budget"));

  EXPECT_TRUE(Unchanged());
  EXPECT_EQ(Org().budget().amount_nanos(), 1'000'000'000);
  EXPECT_EQ(Org().budget().timezone(), "Europe/Berlin");
}

TEST_F(BadInputTest, UnknownBudgetsAreNotFound) {
  v1::GetBudgetRequest get;
  get.set_name("no-such-budget");
  v1::GetBudgetResponse got;
  EXPECT_TRUE(Rejected(server_->GetBudget(get, &got),
                       grpc::StatusCode::NOT_FOUND, "no-such-budget"));
  // "org" has no per_label: asking for an instance is a mistake.
  get.set_name("org");
  get.set_instance("alice");
  EXPECT_TRUE(Rejected(server_->GetBudget(get, &got),
                       grpc::StatusCode::INVALID_ARGUMENT, "instance"));

  v1::DeleteBudgetRequest del;
  del.set_name("no-such-budget");
  v1::DeleteBudgetResponse deleted;
  grpc::ClientContext context;
  EXPECT_TRUE(Rejected(server_->admin().DeleteBudget(&context, del, &deleted),
                       grpc::StatusCode::NOT_FOUND, "no-such-budget"));
  EXPECT_TRUE(Unchanged());
}

TEST_F(BadInputTest, ReportTwiceReturnsTheFirstCost) {
  v1::ReportResponse first;
  BURSAR_ASSERT_OK(
      server_->Report(MakeReport(open_.reservation_id(), 500, 0, 100), &first));
  EXPECT_FALSE(first.already_reported());
  EXPECT_EQ(first.cost_nanos(), 500 * 2'000 + 100 * 8'000);
  const v1::GetBudgetResponse settled = Org();
  EXPECT_EQ(settled.held_nanos(), 0);

  // A retried Report, even with different usage, changes nothing.
  v1::ReportResponse second;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(open_.reservation_id(), 500, 0, 500), &second));
  EXPECT_TRUE(second.already_reported());
  EXPECT_EQ(second.cost_nanos(), first.cost_nanos());
  EXPECT_TRUE(MessageDifferencer::Equals(Org(), settled));
}

TEST_F(BadInputTest, CheckIsIdempotentByRequestId) {
  const v1::GetBudgetResponse before = Org();
  const v1::CheckRequest request =
      MakeCheck("gpt-4.1", 2'000, 1'000, {{"team", "search"}}, "gw-req-42");
  v1::CheckResponse first;
  BURSAR_ASSERT_OK(server_->Check(request, &first));
  ASSERT_EQ(first.verdict(), v1::VERDICT_ALLOW);
  for (int i = 0; i < 3; ++i) {
    v1::CheckResponse retry;
    BURSAR_ASSERT_OK(server_->Check(request, &retry));
    EXPECT_EQ(retry.verdict(), v1::VERDICT_ALLOW);
    EXPECT_EQ(retry.reservation_id(), first.reservation_id());
    EXPECT_EQ(retry.estimated_cost_nanos(), first.estimated_cost_nanos());
  }
  // Held once.
  EXPECT_EQ(Org().held_nanos(),
            before.held_nanos() + first.estimated_cost_nanos());

  // A different request_id is a different call.
  v1::CheckResponse other;
  BURSAR_ASSERT_OK(server_->Check(
      MakeCheck("gpt-4.1", 2'000, 1'000, {{"team", "search"}}, "gw-req-43"),
      &other));
  EXPECT_NE(other.reservation_id(), first.reservation_id());
  EXPECT_EQ(Org().held_nanos(), before.held_nanos() +
                                    first.estimated_cost_nanos() +
                                    other.estimated_cost_nanos());
}

// RocksDB's memory flags take at least 1 MiB; anything less stops start-up
// with the flag named, before the data directory is touched.
TEST_F(BadInputTest, BadRocksDbMemoryFlagsStopStartUp) {
  for (const std::string flag :
       {"--rocksdb_memtable_mb=0", "--rocksdb_block_cache_mb=-4"}) {
    BursardOptions options;
    options.data_dir = dir_.Sub("memory-data");
    options.extra_flags = {flag};
    const std::string run_dir = dir_.Sub(flag.substr(2, 10));
    std::filesystem::create_directories(run_dir);
    BursardProcess refused(options, run_dir);
    EXPECT_EQ(refused.RunExpectingFailure(), 2) << flag;
    EXPECT_THAT(refused.Log(), HasSubstr(flag.substr(0, flag.find('='))));
    EXPECT_THAT(refused.Log(), HasSubstr("give at least 1"));
    EXPECT_FALSE(std::filesystem::exists(options.data_dir)) << flag;
  }
  BursardOptions small;
  small.data_dir = dir_.Sub("memory-data");
  small.extra_flags = {"--rocksdb_memtable_mb=1", "--rocksdb_block_cache_mb=1"};
  const std::string run_dir = dir_.Sub("small-memory");
  std::filesystem::create_directories(run_dir);
  BursardProcess started(small, run_dir);
  ASSERT_TRUE(started.Start());
  v1::CheckResponse check;
  BURSAR_EXPECT_OK(started.Check(MakeCheck("gpt-4.1", 1'000, 500), &check));
  EXPECT_EQ(check.verdict(), v1::VERDICT_ALLOW);
}

}  // namespace
}  // namespace bursar::testing
