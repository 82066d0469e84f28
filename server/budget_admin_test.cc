// BudgetAdmin over a real ledger (RocksDB in a temp dir): ListBudgets pages.

#include "server/budget_admin.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/rocks_ledger.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class BudgetAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = storage::SyncMode::kNone;
    auto ledger = storage::OpenRocksLedger(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    admin_ = std::make_unique<BudgetAdmin>(ledger_.get(), &clock_);
  }

  void Create(const std::string& name) {
    v1::SetBudgetRequest request;
    request.mutable_budget()->set_name(name);
    request.mutable_budget()->set_amount_nanos(1'000'000'000);
    request.mutable_budget()->set_period(v1::PERIOD_MONTH);
    v1::SetBudgetResponse response;
    const absl::Status s =
        admin_->SetBudget(request, auth::Caller(), &response);
    ASSERT_TRUE(s.ok()) << s;
  }

  void Delete(const std::string& name) {
    v1::DeleteBudgetRequest request;
    request.set_name(name);
    v1::DeleteBudgetResponse response;
    ASSERT_TRUE(admin_->DeleteBudget(request, auth::Caller(), &response).ok());
  }

  // One page: its budget names and its next_page_token.
  std::pair<std::vector<std::string>, std::string> Page(
      int page_size, const std::string& token) {
    v1::ListBudgetsRequest request;
    request.set_page_size(page_size);
    request.set_page_token(token);
    v1::ListBudgetsResponse response;
    const absl::Status s = admin_->ListBudgets(request, &response);
    EXPECT_TRUE(s.ok()) << s;
    std::vector<std::string> names;
    for (const v1::GetBudgetResponse& b : response.budgets()) {
      names.push_back(b.budget().name());
    }
    return {names, response.next_page_token()};
  }

  bursar::testing::TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'780'000'000)};
  std::unique_ptr<storage::Ledger> ledger_;
  std::unique_ptr<BudgetAdmin> admin_;
};

TEST_F(BudgetAdminTest, ListBudgetsPagesByNameUntilTheTokenIsEmpty) {
  for (const char* name : {"e", "a", "c", "b", "d"}) Create(name);
  auto [first, token] = Page(2, "");
  EXPECT_THAT(first, ElementsAre("a", "b"));
  ASSERT_FALSE(token.empty());
  // Created and deleted between pages: nothing is skipped or repeated.
  Delete("c");
  Create("bb");
  auto [second, token2] = Page(2, token);
  EXPECT_THAT(second, ElementsAre("bb", "d"));
  auto [last, token3] = Page(2, token2);
  EXPECT_THAT(last, ElementsAre("e"));
  EXPECT_TRUE(token3.empty());
  // Page size 0 is the largest page: everything here at once.
  auto [all, none] = Page(0, "");
  EXPECT_THAT(all, ElementsAre("a", "b", "bb", "d", "e"));
  EXPECT_TRUE(none.empty());
}

TEST_F(BudgetAdminTest, ListBudgetsCapsThePageAndRejectsANegativeSize) {
  for (int i = 0; i < BudgetAdmin::kMaxBudgetsPerPage + 1; ++i) {
    Create(absl::StrCat("b", 10'000 + i));
  }
  auto [page, token] = Page(BudgetAdmin::kMaxBudgetsPerPage * 5, "");
  EXPECT_EQ(page.size(), size_t{BudgetAdmin::kMaxBudgetsPerPage});
  EXPECT_EQ(token, page.back());
  auto [rest, none] = Page(0, token);
  EXPECT_THAT(rest, ElementsAre(absl::StrCat(
                        "b", 10'000 + BudgetAdmin::kMaxBudgetsPerPage)));
  EXPECT_TRUE(none.empty());

  v1::ListBudgetsRequest request;
  request.set_page_size(-1);
  v1::ListBudgetsResponse response;
  const absl::Status s = admin_->ListBudgets(request, &response);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("page_size"));
}

}  // namespace
}  // namespace bursar::server
