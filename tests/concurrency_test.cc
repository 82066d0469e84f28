// Many gateways asking at once never overshoot a budget, and the money
// charged adds up to the nano.

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// gpt-4.1 in policies/example: $2.00 input, $0.50 cached input, $8.00 output
// per 1M tokens, i.e. 2,000 / 500 / 8,000 nano-USD per token.
constexpr int64_t kGpt41InputNanos = 2'000;
constexpr int64_t kGpt41CachedNanos = 500;
constexpr int64_t kGpt41OutputNanos = 8'000;

// The price of a gpt-4.1 call by hand (every gpt-4.1 price is a whole number
// of nanos per token, so there is no rounding).
int64_t Gpt41CostNanos(int64_t input, int64_t cached, int64_t output) {
  return (input - cached) * kGpt41InputNanos + cached * kGpt41CachedNanos +
         output * kGpt41OutputNanos;
}

constexpr int64_t kInputTokens = 1'000;
constexpr int64_t kMaxOutputTokens = 500;
// 1,000 × 2,000 + 500 × 8,000.
constexpr int64_t kEstimateNanos = 6'000'000;
constexpr int kFits = 37;
constexpr int kCalls = 200;
constexpr int kThreads = 16;
constexpr char kBudget[] = "search-pool";

class ConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.sync = "group";
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  v1::GetBudgetResponse Budget(const std::string& name) {
    v1::GetBudgetRequest request;
    request.set_name(name);
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->GetBudget(request, &response));
    return response;
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
};

// Runs fn(i) for i in [0, n) on kThreads threads that start together.
template <typename Fn>
void RunConcurrently(int n, Fn fn) {
  std::atomic<int> next{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
    });
  }
  for (std::thread& thread : threads) thread.join();
}

TEST_F(ConcurrencyTest, ConcurrentChecksFillTheBudgetExactlyAndReportsAddUp) {
  ASSERT_EQ(Gpt41CostNanos(kInputTokens, 0, kMaxOutputTokens), kEstimateNanos);
  v1::SetBudgetRequest set;
  *set.mutable_budget() = MakeBudget(kBudget, {{"team", "search"}},
                                     v1::PERIOD_NONE, kFits * kEstimateNanos);
  v1::SetBudgetResponse set_response;
  BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));

  std::vector<grpc::Status> statuses(kCalls);
  std::vector<v1::CheckResponse> answers(kCalls);
  RunConcurrently(kCalls, [&](int i) {
    statuses[i] = server_->Check(
        MakeCheck("gpt-4.1", kInputTokens, kMaxOutputTokens,
                  {{"team", "search"}, {"user", "u" + std::to_string(i % 7)}}),
        &answers[i]);
  });

  std::vector<std::string> reservations;
  int denied = 0;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(statuses[i].ok())
        << "call " << i << ": " << StatusText(statuses[i]);
    const v1::CheckResponse& answer = answers[i];
    EXPECT_EQ(answer.estimated_cost_nanos(), kEstimateNanos) << "call " << i;
    if (answer.verdict() == v1::VERDICT_ALLOW) {
      EXPECT_FALSE(answer.reservation_id().empty()) << "call " << i;
      reservations.push_back(answer.reservation_id());
      continue;
    }
    ASSERT_EQ(answer.verdict(), v1::VERDICT_DENY) << "call " << i;
    ++denied;
    EXPECT_TRUE(answer.reservation_id().empty()) << "call " << i;
    ASSERT_THAT(answer.reasons(), SizeIs(1)) << "call " << i;
    EXPECT_EQ(answer.reasons(0).rule(), "budget:search-pool");
    // Every slot is held by then: nothing is left of $0.222.
    EXPECT_THAT(answer.reasons(0).message(),
                HasSubstr("budget \"search-pool\" has $0.00 of $0.222 left"));
    EXPECT_THAT(answer.reasons(0).message(), HasSubstr("$0.006"));
  }
  EXPECT_THAT(reservations, SizeIs(kFits));
  EXPECT_EQ(denied, kCalls - kFits);
  EXPECT_THAT(std::set<std::string>(reservations.begin(), reservations.end()),
              SizeIs(reservations.size()))
      << "reservation ids must be distinct";

  v1::GetBudgetResponse full = Budget(kBudget);
  EXPECT_EQ(full.held_nanos(), kFits * kEstimateNanos);
  EXPECT_EQ(full.spent_nanos(), 0);

  // Settle every reservation concurrently with a different actual usage.
  const int settled = static_cast<int>(reservations.size());
  std::vector<grpc::Status> report_statuses(settled);
  std::vector<v1::ReportResponse> reports(settled);
  std::vector<int64_t> expected_costs(settled);
  for (int k = 0; k < settled; ++k) {
    expected_costs[k] =
        Gpt41CostNanos(kInputTokens - 7 * k, 13 * k, kMaxOutputTokens - 11 * k);
  }
  RunConcurrently(settled, [&](int k) {
    report_statuses[k] =
        server_->Report(MakeReport(reservations[k], kInputTokens - 7 * k,
                                   13 * k, kMaxOutputTokens - 11 * k),
                        &reports[k]);
  });
  int64_t reported_sum = 0;
  for (int k = 0; k < settled; ++k) {
    ASSERT_TRUE(report_statuses[k].ok()) << StatusText(report_statuses[k]);
    EXPECT_EQ(reports[k].cost_nanos(), expected_costs[k]) << "report " << k;
    EXPECT_FALSE(reports[k].already_reported());
    reported_sum += reports[k].cost_nanos();
  }

  const v1::GetBudgetResponse after = Budget(kBudget);
  EXPECT_EQ(after.spent_nanos(), reported_sum);
  EXPECT_EQ(after.held_nanos(), 0);
  ASSERT_THAT(after.instances(), SizeIs(1));
  EXPECT_EQ(after.instances(0).remaining_nanos(),
            kFits * kEstimateNanos - reported_sum);

  // The money the answers did not use is available again, to the nano.
  const int64_t more = (kFits * kEstimateNanos - reported_sum) / kEstimateNanos;
  ASSERT_GT(more, 0);
  for (int64_t i = 0; i <= more; ++i) {
    v1::CheckResponse answer;
    BURSAR_ASSERT_OK(
        server_->Check(MakeCheck("gpt-4.1", kInputTokens, kMaxOutputTokens,
                                 {{"team", "search"}}),
                       &answer));
    EXPECT_EQ(answer.verdict(), i < more ? v1::VERDICT_ALLOW : v1::VERDICT_DENY)
        << "extra call " << i << " of " << more << " that fit";
  }
}

TEST_F(ConcurrencyTest, ConcurrentRetriesOfOneRequestReserveOnce) {
  v1::SetBudgetRequest set;
  *set.mutable_budget() =
      MakeBudget("org", {}, v1::PERIOD_NONE, 1'000 * kEstimateNanos);
  v1::SetBudgetResponse set_response;
  BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));

  // Every Check is a gateway retry of the same call.
  std::vector<grpc::Status> statuses(64);
  std::vector<v1::CheckResponse> answers(64);
  RunConcurrently(64, [&](int i) {
    statuses[i] = server_->Check(
        MakeCheck("gpt-4.1", kInputTokens, kMaxOutputTokens, {}, "gw-retry"),
        &answers[i]);
  });
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << StatusText(statuses[i]);
    EXPECT_EQ(answers[i].verdict(), v1::VERDICT_ALLOW);
    EXPECT_EQ(answers[i].reservation_id(), answers[0].reservation_id());
  }
  EXPECT_EQ(Budget("org").held_nanos(), kEstimateNanos);

  // So do concurrent retries of its Report: one charge.
  std::vector<v1::ReportResponse> reports(64);
  RunConcurrently(64, [&](int i) {
    statuses[i] = server_->Report(
        MakeReport(answers[0].reservation_id(), kInputTokens, 0, 100),
        &reports[i]);
  });
  int first_reports = 0;
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << StatusText(statuses[i]);
    EXPECT_EQ(reports[i].cost_nanos(), Gpt41CostNanos(kInputTokens, 0, 100));
    if (!reports[i].already_reported()) ++first_reports;
  }
  EXPECT_EQ(first_reports, 1);
  const v1::GetBudgetResponse org = Budget("org");
  EXPECT_EQ(org.spent_nanos(), Gpt41CostNanos(kInputTokens, 0, 100));
  EXPECT_EQ(org.held_nanos(), 0);
}

TEST_F(ConcurrencyTest, CostsMatchTheCatalogByHand) {
  v1::SetBudgetRequest set;
  *set.mutable_budget() =
      MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000);  // $1
  v1::SetBudgetResponse set_response;
  BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));

  // gpt-4.1, 1,200 in / 2,000 out: 1,200 × $2/1M + 2,000 × $8/1M = $0.0184.
  v1::CheckResponse check;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'200, 2'000), &check));
  ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(check.estimated_cost_nanos(), 18'400'000);
  EXPECT_EQ(check.model(), "gpt-4.1");
  EXPECT_EQ(check.max_output_tokens(), 2'000);
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(check.reservation_id(), 1'200, 0, 2'000), &report));
  EXPECT_EQ(report.cost_nanos(), 18'400'000);

  // gpt-4.1-mini ($0.40 / $0.10 cached / $1.60 per 1M): the estimate assumes
  // no cache; 200 of the 1,200 prompt tokens cached costs
  // 1,000 × 400 + 200 × 100 + 2,000 × 1,600 = 3,620,000 nanos.
  v1::CheckResponse mini;
  BURSAR_ASSERT_OK(
      server_->Check(MakeCheck("gpt-4.1-mini", 1'200, 2'000), &mini));
  ASSERT_EQ(mini.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(mini.estimated_cost_nanos(), 3'680'000);
  v1::ReportResponse mini_report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(mini.reservation_id(), 1'200, 200, 2'000), &mini_report));
  EXPECT_EQ(mini_report.cost_nanos(), 3'620'000);

  // No max_output_tokens: the policy default (4,096) is reserved.
  v1::CheckResponse defaulted;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'200, 0), &defaulted));
  EXPECT_EQ(defaulted.max_output_tokens(), 4'096);
  EXPECT_EQ(defaulted.estimated_cost_nanos(), 1'200 * 2'000 + 4'096 * 8'000);

  const v1::GetBudgetResponse org = Budget("org");
  EXPECT_EQ(org.spent_nanos(), 18'400'000 + 3'620'000);
  EXPECT_EQ(org.held_nanos(), defaulted.estimated_cost_nanos());
}

}  // namespace
}  // namespace bursar::testing
