// Backups while serving and restoring them (decision 015,
// docs/operations.md): `bursarctl backup` while Checks and Reports run,
// then a new bursard started with --restore_from on a new data directory
// has the budgets, spend, open holds, policy versions and audit log.

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;

CliRun Bursarctl(const std::string& server, const std::string& args) {
  return RunBursarctl(BURSARCTL_PATH, server, args);
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Sub("backups"));
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.extra_flags = {absl::StrCat("--backup_dir=", dir_.Sub("backups"))};
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  v1::GetBudgetResponse Org(BursardProcess& server) {
    v1::GetBudgetRequest request;
    request.set_name("org");
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server.GetBudget(request, &response));
    return response;
  }

  v1::ListPolicyVersionsResponse Versions(BursardProcess& server) {
    grpc::ClientContext context;
    v1::ListPolicyVersionsResponse response;
    BURSAR_EXPECT_OK(server.admin().ListPolicyVersions(
        &context, v1::ListPolicyVersionsRequest(), &response));
    return response;
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(BackupTest, ABackupTakenWhileServingRestoresIntoANewDataDir) {
  v1::SetBudgetRequest set;
  *set.mutable_budget() =
      MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000'000);
  set.set_actor("finance");
  v1::SetBudgetResponse set_response;
  BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));
  // Spend, and a hold that stays open across the backup.
  v1::CheckResponse check;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'000, 500), &check));
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(check.reservation_id(), 1'000, 0, 300), &report));
  v1::CheckResponse open;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 2'000, 1'000), &open));
  ASSERT_EQ(open.verdict(), v1::VERDICT_ALLOW);
  const v1::GetBudgetResponse before = Org(*server_);

  // Checks and Reports keep coming while the backup is taken.
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t) {
    load.emplace_back([&] {
      while (!stop.load()) {
        v1::CheckResponse c;
        if (!server_->Check(MakeCheck("gpt-4.1", 100, 100), &c).ok()) continue;
        v1::ReportResponse r;
        if (server_->Report(MakeReport(c.reservation_id(), 100, 0, 50), &r)
                .ok()) {
          served.fetch_add(1);
        }
      }
    });
  }
  const CliRun backup = Bursarctl(server_->address(), "backup nightly");
  // A second backup under the same name is refused, naming it.
  const CliRun again = Bursarctl(server_->address(), "backup nightly");
  stop.store(true);
  for (std::thread& t : load) t.join();
  ASSERT_EQ(backup.exit_status, 0) << backup.output;
  const std::string path = dir_.Sub("backups/nightly");
  EXPECT_THAT(backup.output, HasSubstr(path));
  EXPECT_EQ(again.exit_status, 1) << again.output;
  EXPECT_THAT(again.output, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(again.output, HasSubstr("nightly"));
  EXPECT_GT(served.load(), 0);
  const v1::GetBudgetResponse after = Org(*server_);
  const v1::ListPolicyVersionsResponse versions = Versions(*server_);
  v1::ListAuditResponse audit;
  BURSAR_ASSERT_OK(server_->ListAudit(100, &audit));

  // Restoring into a data directory that holds anything else is refused.
  std::filesystem::create_directories(dir_.Sub("occupied"));
  WriteFile(dir_.Sub("occupied/keep-me"), "live data");
  {
    BursardOptions options;
    options.data_dir = dir_.Sub("occupied");
    options.extra_flags = {absl::StrCat("--restore_from=", path)};
    BursardProcess refused(options, dir_.Sub("occupied-run"));
    std::filesystem::create_directories(dir_.Sub("occupied-run"));
    EXPECT_NE(refused.RunExpectingFailure(), 0);
    EXPECT_THAT(refused.Log(), HasSubstr("is not empty"));
    EXPECT_EQ(ReadFile(dir_.Sub("occupied/keep-me")), "live data");
  }

  BursardOptions options;
  options.data_dir = dir_.Sub("restored");
  options.extra_flags = {absl::StrCat("--restore_from=", path)};
  std::filesystem::create_directories(dir_.Sub("restored-run"));
  auto restored =
      std::make_unique<BursardProcess>(options, dir_.Sub("restored-run"));
  ASSERT_TRUE(restored->Start());

  // The budget as of the backup: everything acknowledged before it, nothing
  // made after it; spend and holds never go backwards.
  const v1::GetBudgetResponse back = Org(*restored);
  EXPECT_EQ(back.budget().amount_nanos(), 1'000'000'000'000);
  EXPECT_GE(back.spent_nanos(), before.spent_nanos());
  EXPECT_LE(back.spent_nanos(), after.spent_nanos());
  EXPECT_GE(back.held_nanos(), open.estimated_cost_nanos());
  EXPECT_EQ(Versions(*restored).SerializeAsString(),
            versions.SerializeAsString());
  v1::ListAuditResponse restored_audit;
  BURSAR_ASSERT_OK(restored->ListAudit(100, &restored_audit));
  ASSERT_GE(restored_audit.records_size(), 1);
  EXPECT_EQ(restored_audit.records_size(), audit.records_size());

  // The hold that was open at backup time settles on the restored server.
  v1::ReportResponse settled;
  BURSAR_ASSERT_OK(restored->Report(
      MakeReport(open.reservation_id(), 2'000, 0, 400), &settled));
  EXPECT_GT(settled.cost_nanos(), 0);
  const int64_t spent_after_report = Org(*restored).spent_nanos();

  // A restart with the same flags carries on from the restored directory
  // (it does not copy the backup over it again).
  ASSERT_TRUE(restored->CrashAndRestart());
  EXPECT_EQ(Org(*restored).spent_nanos(), spent_after_report);
}

TEST_F(BackupTest, BackupsNeedTheBackupDirAndAPlainName) {
  const CliRun bad = Bursarctl(server_->address(), "backup ../escape");
  EXPECT_EQ(bad.exit_status, 1) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("escape")));

  BursardOptions options;
  options.data_dir = dir_.Sub("other-data");
  std::filesystem::create_directories(dir_.Sub("other-run"));
  BursardProcess without(options, dir_.Sub("other-run"));
  ASSERT_TRUE(without.Start());
  const CliRun off = Bursarctl(without.address(), "backup");
  EXPECT_EQ(off.exit_status, 1) << off.output;
  EXPECT_THAT(off.output, HasSubstr("--backup_dir"));
}

}  // namespace
}  // namespace bursar::testing
