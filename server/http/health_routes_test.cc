#include "server/http/health_routes.h"

#include <httplib.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "server/http/grpc_health_readiness.h"

namespace bursar::server::http {
namespace {

using ::testing::HasSubstr;

// Readiness a test can flip.
class FakeReadiness final : public ReadinessSource {
 public:
  void Set(absl::StatusOr<ServingStatus> status) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(status);
  }
  absl::StatusOr<ServingStatus> ServerServingStatus() override {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  absl::Mutex mu_;
  absl::StatusOr<ServingStatus> status_ ABSL_GUARDED_BY(mu_) =
      ServingStatus::kServing;
};

HttpRequest Get(const std::string& path) {
  HttpRequest request;
  request.method = "GET";
  request.path = path;
  return request;
}

class HealthRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override { AddHealthRoutes(&server_, &readiness_); }

  FakeReadiness readiness_;
  HttpServer server_;
};

TEST_F(HealthRoutesTest, ReadyzFollowsTheHealthStatus) {
  HttpReply ready = server_.Dispatch(Get("/readyz"));
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.content_type, "application/json");
  EXPECT_EQ(ready.body, "{\"status\":\"SERVING\"}\n");

  readiness_.Set(ServingStatus::kNotServing);
  HttpReply draining = server_.Dispatch(Get("/readyz"));
  EXPECT_EQ(draining.status, 503);
  EXPECT_EQ(draining.body, "{\"status\":\"NOT_SERVING\"}\n");

  readiness_.Set(ServingStatus::kServiceUnknown);
  EXPECT_EQ(server_.Dispatch(Get("/readyz")).status, 503);
  readiness_.Set(ServingStatus::kUnknown);
  EXPECT_EQ(server_.Dispatch(Get("/readyz")).status, 503);

  readiness_.Set(ServingStatus::kServing);
  EXPECT_EQ(server_.Dispatch(Get("/readyz")).status, 200);
}

TEST_F(HealthRoutesTest, ReadyzIs503WhenTheHealthServiceCannotBeAsked) {
  readiness_.Set(absl::UnavailableError("the server is shutting down"));
  HttpReply reply = server_.Dispatch(Get("/readyz"));
  EXPECT_EQ(reply.status, 503);
  EXPECT_THAT(reply.body, HasSubstr("\"status\":\"UNKNOWN\""));
  EXPECT_THAT(reply.body,
              HasSubstr("the gRPC health service did not answer: "
                        "UNAVAILABLE: the server is shutting down"));
}

TEST_F(HealthRoutesTest, HealthzIsAliveWhatEverTheReadiness) {
  for (const absl::StatusOr<ServingStatus>& status :
       {absl::StatusOr<ServingStatus>(ServingStatus::kServing),
        absl::StatusOr<ServingStatus>(ServingStatus::kNotServing),
        absl::StatusOr<ServingStatus>(absl::UnavailableError("down"))}) {
    readiness_.Set(status);
    HttpReply reply = server_.Dispatch(Get("/healthz"));
    EXPECT_EQ(reply.status, 200);
    EXPECT_EQ(reply.body, "{\"status\":\"ALIVE\"}\n");
  }
}

TEST_F(HealthRoutesTest, ProbesAreNotCachedAndOnlyGet) {
  for (const char* path : {"/healthz", "/readyz"}) {
    HttpReply reply = server_.Dispatch(Get(path));
    ASSERT_EQ(reply.headers.size(), 1u) << path;
    EXPECT_EQ(reply.headers[0].first, "Cache-Control");
    EXPECT_EQ(reply.headers[0].second, "no-store");
    HttpRequest head = Get(path);
    head.method = "HEAD";
    EXPECT_EQ(server_.Dispatch(head).status, 200) << path;
    HttpRequest post = Get(path);
    post.method = "POST";
    EXPECT_EQ(server_.Dispatch(post).status, 405) << path;
  }
}

TEST(IsProbePathTest, OnlyTheTwoProbes) {
  EXPECT_TRUE(IsProbePath("/healthz"));
  EXPECT_TRUE(IsProbePath("/readyz"));
  EXPECT_FALSE(IsProbePath("/metrics"));
  EXPECT_FALSE(IsProbePath("/healthz/"));
  EXPECT_FALSE(IsProbePath("/v1/check"));
  EXPECT_FALSE(IsProbePath(""));
}

TEST_F(HealthRoutesTest, ServedOverHttp) {
  ASSERT_TRUE(server_.Start("127.0.0.1:0").ok());
  httplib::Client client("127.0.0.1", server_.port());
  httplib::Result ready = client.Get("/readyz");
  ASSERT_TRUE(ready) << httplib::to_string(ready.error());
  EXPECT_EQ(ready->status, 200);
  readiness_.Set(ServingStatus::kNotServing);
  httplib::Result draining = client.Get("/readyz");
  ASSERT_TRUE(draining);
  EXPECT_EQ(draining->status, 503);
  EXPECT_EQ(draining->body, "{\"status\":\"NOT_SERVING\"}\n");
  httplib::Result alive = client.Get("/healthz");
  ASSERT_TRUE(alive);
  EXPECT_EQ(alive->status, 200);
}

// GrpcHealthReadiness against a real grpc::Server and gRPC's default health
// service, through the server's in-process channel (as bursard reads it).
class GrpcHealthReadinessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    // A server needs one service of its own; an unused generic one will do.
    builder.RegisterCallbackGenericService(&unused_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(server_->GetHealthCheckService(), nullptr);
    readiness_ = std::make_unique<GrpcHealthReadiness>(server_.get());
  }
  void TearDown() override {
    if (readiness_ != nullptr) readiness_->Drain();
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::CallbackGenericService unused_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<GrpcHealthReadiness> readiness_;
};

TEST_F(GrpcHealthReadinessTest, ReadsWhatTheHealthServiceSays) {
  absl::StatusOr<ServingStatus> status = readiness_->ServerServingStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, ServingStatus::kServing);

  server_->GetHealthCheckService()->SetServingStatus(false);
  status = readiness_->ServerServingStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, ServingStatus::kNotServing);

  server_->GetHealthCheckService()->SetServingStatus(true);
  status = readiness_->ServerServingStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, ServingStatus::kServing);
}

TEST_F(GrpcHealthReadinessTest, DrainMakesTheHealthServiceNotServingForGood) {
  // A second reader of the same server, to look past the first one's drain.
  GrpcHealthReadiness other(server_.get());
  readiness_->Drain();
  EXPECT_EQ(readiness_->ServerServingStatus().value_or(ServingStatus::kServing),
            ServingStatus::kNotServing);
  // The health service itself says so (gRPC health clients see the same).
  absl::StatusOr<ServingStatus> status = other.ServerServingStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, ServingStatus::kNotServing);
  // For good: nobody can set it back to SERVING.
  server_->GetHealthCheckService()->SetServingStatus(true);
  status = other.ServerServingStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, ServingStatus::kNotServing);
  other.Drain();
}

TEST_F(GrpcHealthReadinessTest, NoCallAfterTheDrainSoAStoppedServerIsSafe) {
  readiness_->Drain();
  server_->Shutdown();
  // A call on the in-process channel of a stopped server would crash
  // (gRPC 1.51): the drained reader answers without one.
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ServingStatus> status = readiness_->ServerServingStatus();
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, ServingStatus::kNotServing);
  }
}

}  // namespace
}  // namespace bursar::server::http
