// SIGTERM stops bursard cleanly (exit 0, data dir released, nothing lost),
// one bursard owns a data dir at a time, and the gRPC health service answers.

#include <cstdint>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

#ifdef BURSAR_HAVE_HEALTH_PROTO
#include "grpc/health/v1/health.grpc.pb.h"
#endif

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;

class ShutdownTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(options_, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  v1::GetBudgetResponse Org() {
    v1::GetBudgetRequest request;
    request.set_name("org");
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->GetBudget(request, &response));
    return response;
  }

  TempDir dir_;
  BursardOptions options_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(ShutdownTest, SigtermExitsZeroAndReleasesTheDataDir) {
  v1::SetBudgetRequest set;
  *set.mutable_budget() = MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000);
  v1::SetBudgetResponse set_response;
  BURSAR_ASSERT_OK(server_->SetBudget(set, &set_response));
  v1::CheckResponse check;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'000, 500), &check));
  ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(check.reservation_id(), 1'000, 0, 200), &report));
  v1::CheckResponse open;
  BURSAR_ASSERT_OK(server_->Check(MakeCheck("gpt-4.1", 1'000, 500), &open));
  ASSERT_EQ(open.verdict(), v1::VERDICT_ALLOW);

  // While it runs, a second bursard on the same data dir refuses to start.
  TempDir other_work;
  BursardProcess second(options_, other_work.path());
  const int second_exit = second.RunExpectingFailure();
  EXPECT_NE(second_exit, 0) << "a second bursard served the same data dir";
  EXPECT_NE(second_exit, -1) << "the second bursard did not exit; log:\n"
                             << second.Log();
  EXPECT_THAT(second.Log(), HasSubstr("cannot open the ledger"));

  EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
  EXPECT_THAT(server_->Log(), HasSubstr("stopped"));

  // The directory is free again and nothing was lost.
  ASSERT_TRUE(server_->Start());
  const v1::GetBudgetResponse org = Org();
  EXPECT_EQ(org.spent_nanos(), report.cost_nanos());
  EXPECT_EQ(org.held_nanos(), open.estimated_cost_nanos());
  v1::ReportResponse late;
  BURSAR_ASSERT_OK(
      server_->Report(MakeReport(open.reservation_id(), 1'000, 0, 100), &late));
  EXPECT_FALSE(late.already_reported());
  EXPECT_EQ(Org().held_nanos(), 0);
  EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
}

TEST_F(ShutdownTest, HealthServiceReportsServing) {
#ifndef BURSAR_HAVE_HEALTH_PROTO
  GTEST_SKIP() << "grpc/health/v1/health.proto was not found at configure "
                  "time; the health check is not built";
#else
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(server_->channel());
  grpc::health::v1::HealthCheckRequest request;  // "": the whole server
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  const grpc::Status status = health->Check(&context, request, &response);
  ASSERT_TRUE(status.ok()) << StatusText(status);
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  grpc::ClientContext unknown_context;
  unknown_context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::seconds(10));
  request.set_service("no.such.Service");
  EXPECT_EQ(health->Check(&unknown_context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
#endif
}

}  // namespace
}  // namespace bursar::testing
