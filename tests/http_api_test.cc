// The HTTP/JSON side port of a real bursard: POST /v1/check and /v1/report
// with the protobuf JSON mapping, a denial, and every error class a client
// can meet (each with its HTTP status and a JSON body that names the
// problem).

#include <httplib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;

template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  const auto status =
      google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.message() << " in " << json;
  return message;
}

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
    const std::string& http = server_->http_address();
    ASSERT_EQ(http.rfind("127.0.0.1:", 0), 0) << "ready file gave " << http;
    int port = 0;
    ASSERT_TRUE(absl::SimpleAtoi(http.substr(10), &port)) << http;
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port);
    client_->set_read_timeout(10, 0);

    // $0.01 for team "search": gpt-4.1 with 1,000 in / 500 out ($0.006)
    // fits once.
    v1::SetBudgetRequest request;
    *request.mutable_budget() = MakeBudget("team-search", {{"team", "search"}},
                                           v1::PERIOD_NONE, 10'000'000);
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server_->SetBudget(request, &response));
  }

  httplib::Result Post(const std::string& path, const std::string& body) {
    return client_->Post(path.c_str(), body, "application/json");
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
  std::unique_ptr<httplib::Client> client_;
};

constexpr char kCheck[] = R"({"request_id": "h-1", "model": "gpt-4.1",
    "input_tokens": 1000, "max_output_tokens": 500,
    "labels": {"team": "search"}})";

TEST_F(HttpApiTest, CheckThenReportChargesTheBudget) {
  httplib::Result check = Post("/v1/check", kCheck);
  ASSERT_TRUE(check) << httplib::to_string(check.error());
  ASSERT_EQ(check->status, 200) << check->body;
  EXPECT_EQ(check->get_header_value("Content-Type"), "application/json");
  const auto answer = FromJson<v1::CheckResponse>(check->body);
  EXPECT_EQ(answer.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(answer.model(), "gpt-4.1");
  EXPECT_EQ(answer.estimated_cost_nanos(), 6'000'000);
  ASSERT_FALSE(answer.reservation_id().empty());
  // int64 fields are JSON strings in the protobuf mapping.
  EXPECT_THAT(check->body, HasSubstr("\"estimated_cost_nanos\":\"6000000\""));

  // The same request_id is the same reservation (gRPC and HTTP alike).
  httplib::Result again = Post("/v1/check", kCheck);
  ASSERT_TRUE(again);
  EXPECT_EQ(FromJson<v1::CheckResponse>(again->body).reservation_id(),
            answer.reservation_id());

  // 1,000 in (200 cached) / 100 out: 800 × 2,000 + 200 × 500 + 100 × 8,000.
  httplib::Result report =
      Post("/v1/report",
           absl::StrCat(R"({"reservation_id": ")", answer.reservation_id(),
                        R"(", "usage": {"input_tokens": 1000,
                   "cachedInputTokens": 200, "output_tokens": 100},
                   "outcome": "OUTCOME_SUCCESS", "latency": "1.5s"})"));
  ASSERT_TRUE(report);
  ASSERT_EQ(report->status, 200) << report->body;
  EXPECT_EQ(FromJson<v1::ReportResponse>(report->body).cost_nanos(), 2'500'000);

  v1::GetBudgetRequest get;
  get.set_name("team-search");
  v1::GetBudgetResponse budget;
  BURSAR_ASSERT_OK(server_->GetBudget(get, &budget));
  EXPECT_EQ(budget.spent_nanos(), 2'500'000);
  EXPECT_EQ(budget.held_nanos(), 0);
}

TEST_F(HttpApiTest, MetricsAreScrapedFromTheHttpPort) {
  httplib::Result check = Post("/v1/check", kCheck);
  ASSERT_TRUE(check);
  ASSERT_EQ(check->status, 200) << check->body;
  httplib::Result metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(metrics->body,
              HasSubstr("bursar_checks_total{verdict=\"allow\",rule=\"none\"} 1"));
  EXPECT_THAT(metrics->body,
              HasSubstr("bursar_budget_held_nanos{budget=\"team-search\"} 6000000"));
  EXPECT_THAT(metrics->body, HasSubstr("bursar_rate_limit_counters 0"));
}

TEST_F(HttpApiTest, ADenialIs200WithVerdictDeny) {
  httplib::Result first = Post("/v1/check", kCheck);
  ASSERT_TRUE(first);
  ASSERT_EQ(FromJson<v1::CheckResponse>(first->body).verdict(),
            v1::VERDICT_ALLOW);
  httplib::Result second =
      Post("/v1/check", R"({"model": "gpt-4.1", "input_tokens": 1000,
                      "max_output_tokens": 500, "labels": {"team": "search"}})");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200);
  const auto denied = FromJson<v1::CheckResponse>(second->body);
  EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
  EXPECT_TRUE(denied.reservation_id().empty());
  ASSERT_GT(denied.reasons_size(), 0);
  EXPECT_EQ(denied.reasons(0).rule(), "budget:team-search");
}

void ExpectError(const httplib::Result& res, int status,
                 const std::string& code, const std::string& message_part) {
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, status) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_THAT(res->body, HasSubstr(absl::StrCat("\"code\":\"", code, "\"")));
  EXPECT_THAT(res->body, HasSubstr(message_part));
}

TEST_F(HttpApiTest, EachErrorClassHasItsStatusAndAJsonBody) {
  // The Decider's own validation: INVALID_ARGUMENT -> 400.
  ExpectError(Post("/v1/check", R"({"input_tokens": 10})"), 400,
              "INVALID_ARGUMENT", "model");
  // A model without a price (policies/example: unknown_model: reject).
  ExpectError(Post("/v1/check", R"({"model": "gpt-99"})"), 400,
              "INVALID_ARGUMENT", "gpt-99");
  // NOT_FOUND -> 404.
  ExpectError(Post("/v1/report", R"({"reservation_id": "nope"})"), 404,
              "NOT_FOUND", "nope");
  // Unknown field, malformed JSON, wrong type, wrong content type: 400.
  ExpectError(Post("/v1/check", R"({"model": "gpt-4.1", "max_tokens": 5})"),
              400, "INVALID_ARGUMENT", "max_tokens");
  ExpectError(Post("/v1/check", R"({"model": "gpt-4.1",)"), 400,
              "INVALID_ARGUMENT", "not a valid bursar.v1.CheckRequest");
  ExpectError(Post("/v1/report", R"({"reservation_id": 7})"), 400,
              "INVALID_ARGUMENT", "bursar.v1.ReportRequest");
  ExpectError(client_->Post("/v1/check", kCheck, "text/plain"), 400,
              "INVALID_ARGUMENT", "Content-Type must be application/json");
  ExpectError(Post("/v1/check", ""), 400, "INVALID_ARGUMENT",
              "the body is empty");
  // Routing: 405 with Allow, 404 for an unknown path.
  httplib::Result get = client_->Get("/v1/check");
  ExpectError(get, 405, "METHOD_NOT_ALLOWED", "use POST");
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  ExpectError(client_->Get("/v2/check"), 404, "NOT_FOUND", "/v2/check");
  // The body is bounded: 1 MiB.
  const std::string huge =
      absl::StrCat(R"({"model": "gpt-4.1", "request_id": ")",
                   std::string(1 << 20, 'x'), R"("})");
  ExpectError(Post("/v1/check", huge), 413, "PAYLOAD_TOO_LARGE",
              "larger than 1048576 bytes");
  // Nothing of the above reserved anything.
  v1::GetBudgetRequest request;
  request.set_name("team-search");
  v1::GetBudgetResponse budget;
  BURSAR_ASSERT_OK(server_->GetBudget(request, &budget));
  EXPECT_EQ(budget.held_nanos(), 0);
}

TEST_F(HttpApiTest, TheHttpPortStopsWithTheServer) {
  ASSERT_TRUE(client_->Post("/v1/check", kCheck, "application/json"));
  EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
  httplib::Result after = Post("/v1/check", kCheck);
  EXPECT_FALSE(after);
}

TEST_F(HttpApiTest, ABusyOrMalformedHttpAddressStopsStartUp) {
  BursardOptions busy;
  busy.data_dir = dir_.Sub("busy-data");
  busy.extra_flags = {absl::StrCat("--http_listen=", server_->http_address())};
  const std::string busy_dir = dir_.Sub("busy");
  std::filesystem::create_directories(busy_dir);
  BursardProcess second(busy, busy_dir);
  EXPECT_EQ(second.RunExpectingFailure(), 1);
  EXPECT_THAT(second.Log(), HasSubstr("cannot listen"));
  EXPECT_THAT(second.Log(), HasSubstr(server_->http_address()));

  BursardOptions malformed;
  malformed.data_dir = dir_.Sub("bad-data");
  malformed.extra_flags = {"--http_listen=localhost"};
  const std::string bad_dir = dir_.Sub("bad");
  std::filesystem::create_directories(bad_dir);
  BursardProcess third(malformed, bad_dir);
  EXPECT_EQ(third.RunExpectingFailure(), 2);
  EXPECT_THAT(third.Log(), HasSubstr("--http_listen"));
}

}  // namespace
}  // namespace bursar::testing
