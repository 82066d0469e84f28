#include "server/http/http_server.h"

#include <httplib.h>

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/json_api.h"

namespace bursar::server::http {
namespace {

using ::testing::HasSubstr;

// Answers Check with a fixed verdict, or with `error` when it is set.
class FakeDecisions final : public DecisionCalls {
 public:
  absl::Status Check(const v1::CheckRequest& request,
                     v1::CheckResponse* response) override {
    ++checks;
    if (!error.ok()) return error;
    response->set_verdict(v1::VERDICT_ALLOW);
    response->set_model(request.model());
    response->set_max_output_tokens(request.max_output_tokens());
    response->set_reservation_id("r-1");
    return absl::OkStatus();
  }
  absl::Status Report(const v1::ReportRequest& request,
                      v1::ReportResponse* response) override {
    if (!error.ok()) return error;
    response->set_cost_nanos(request.usage().output_tokens() * 10);
    return absl::OkStatus();
  }

  absl::Status error;
  std::atomic<int> checks{0};
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AddDecisionRoutes(&server_, &decisions_);
    server_.HandleGet("/hello", [] {
      HttpReply reply;
      reply.content_type = "text/plain";
      reply.body = "hi\n";
      return reply;
    });
    ASSERT_TRUE(server_.Start("127.0.0.1:0").ok());
    ASSERT_GT(server_.port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_.port());
  }

  httplib::Result PostJson(const std::string& path, const std::string& body) {
    return client_->Post(path.c_str(), body, "application/json");
  }

  FakeDecisions decisions_;
  HttpServer server_{HttpServerOptions{.max_body_bytes = 4096}};
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, CheckAndReportRoundTrip) {
  httplib::Result check = PostJson(
      "/v1/check", R"({"model": "gpt-4.1", "max_output_tokens": 100})");
  ASSERT_TRUE(check);
  EXPECT_EQ(check->status, 200);
  EXPECT_EQ(check->get_header_value("Content-Type"), "application/json");
  v1::CheckResponse response;
  HttpRequest parsed;
  parsed.headers.emplace_back("content-type", "application/json");
  parsed.body = check->body;
  ASSERT_TRUE(ParseJsonBody(parsed, &response).ok()) << check->body;
  EXPECT_EQ(response.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(response.model(), "gpt-4.1");
  EXPECT_EQ(response.max_output_tokens(), 100);

  httplib::Result report =
      PostJson("/v1/report",
               R"({"reservation_id": "r-1", "usage": {"output_tokens": 7}})");
  ASSERT_TRUE(report);
  EXPECT_EQ(report->status, 200);
  EXPECT_THAT(report->body, HasSubstr("\"cost_nanos\":\"70\""));
}

TEST_F(HttpServerTest, ErrorStatusesBecomeHttpStatusesWithJsonBodies) {
  struct Case {
    absl::Status status;
    int http;
    std::string code;
  };
  for (const Case& c : {
           Case{absl::InvalidArgumentError("bad model"), 400,
                "INVALID_ARGUMENT"},
           Case{absl::FailedPreconditionError("no policy"), 400,
                "FAILED_PRECONDITION"},
           Case{absl::NotFoundError("no such reservation"), 404, "NOT_FOUND"},
           Case{absl::UnauthenticatedError("who?"), 401, "UNAUTHENTICATED"},
           Case{absl::PermissionDeniedError("not yours"), 403,
                "PERMISSION_DENIED"},
           Case{absl::ResourceExhaustedError("busy"), 429,
                "RESOURCE_EXHAUSTED"},
           Case{absl::UnavailableError("disk"), 503, "UNAVAILABLE"},
           Case{absl::DataLossError("corrupt"), 500, "DATA_LOSS"},
       }) {
    decisions_.error = c.status;
    httplib::Result res = PostJson("/v1/check", R"({"model": "m"})");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, c.http) << c.code;
    EXPECT_EQ(res->body,
              absl::StrCat("{\"code\":\"", c.code, "\",\"message\":\"",
                           c.status.message(), "\"}\n"));
  }
}

TEST_F(HttpServerTest, MalformedRequestsAreAnswered400NamingTheProblem) {
  httplib::Result res = PostJson("/v1/check", R"({"model": "m", "bogus": 1})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("bogus"));

  res = PostJson("/v1/check", R"({"model": )");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("INVALID_ARGUMENT"));

  res = client_->Post("/v1/check", R"({"model": "m"})", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("Content-Type must be application/json"));
  EXPECT_EQ(decisions_.checks.load(), 0);
}

TEST_F(HttpServerTest, WrongMethodIs405AndUnknownPathIs404) {
  httplib::Result res = client_->Get("/v1/check");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "POST");
  EXPECT_THAT(res->body, HasSubstr("METHOD_NOT_ALLOWED"));

  res = client_->Put("/v1/report", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);

  res = client_->Post("/hello", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET");

  res = client_->Get("/v1/nothing");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(res->body, HasSubstr("no such path: /v1/nothing"));
}

TEST_F(HttpServerTest, GetRoutesServeTheirHandler) {
  httplib::Result res = client_->Get("/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "hi\n");
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain");
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413) {
  const std::string big =
      absl::StrCat(R"({"model": ")", std::string(8000, 'x'), R"("})");
  httplib::Result res = PostJson("/v1/check", big);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_THAT(res->body, HasSubstr("larger than 4096 bytes"));
  EXPECT_EQ(decisions_.checks.load(), 0);
}

TEST(HttpServerGateTest, TheGateSeesHeadersBeforeAnyHandler) {
  FakeDecisions decisions;
  HttpServer server;
  AddDecisionRoutes(&server, &decisions);
  server.SetGate([](const HttpRequest& request) -> std::optional<HttpReply> {
    if (request.Header("Authorization") == "Bearer good") return std::nullopt;
    return JsonError(401, "UNAUTHENTICATED", "send a bearer token");
  });
  ASSERT_TRUE(server.Start("127.0.0.1:0").ok());
  httplib::Client client("127.0.0.1", server.port());
  httplib::Result res =
      client.Post("/v1/check", R"({"model": "m"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(decisions.checks.load(), 0);

  httplib::Headers headers = {{"Authorization", "Bearer good"}};
  res = client.Post("/v1/check", headers, R"({"model": "m"})",
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(decisions.checks.load(), 1);
  server.Stop();
  server.Stop();  // idempotent
}

TEST(HttpServerStartTest, ReportsBadAddressesAndBusyPorts) {
  HttpServer first;
  ASSERT_TRUE(first.Start("127.0.0.1:0").ok());
  HttpServer second;
  absl::Status busy = second.Start(first.bound_address());
  EXPECT_EQ(busy.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(busy.message(), HasSubstr(first.bound_address()));

  HttpServer third;
  EXPECT_EQ(third.Start("localhost").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(first.Start("127.0.0.1:0").ok());  // already started
}

TEST(ParseHostPortTest, AcceptsHostPortAndBracketedIpv6) {
  auto v4 = ParseHostPort("127.0.0.1:8082");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->first, "127.0.0.1");
  EXPECT_EQ(v4->second, 8082);
  auto v6 = ParseHostPort("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 0);
  for (const char* bad : {"8082", ":8082", "host:", "host:70000", "host:-1",
                          "host:80x", "[::1:80"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace bursar::server::http
