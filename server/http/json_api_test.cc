#include "server/http/json_api.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::server::http {
namespace {

using ::testing::HasSubstr;

TEST(HttpStatusForTest, MapsEveryCodeTheApiUses) {
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDataLoss), 500);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnknown), 500);
}

TEST(StatusReplyTest, CarriesCodeNameAndEscapedMessage) {
  const HttpReply reply =
      StatusReply(absl::NotFoundError("no reservation \"r-1\"\nsorry"));
  EXPECT_EQ(reply.status, 404);
  EXPECT_EQ(reply.content_type, "application/json");
  EXPECT_EQ(reply.body,
            "{\"code\":\"NOT_FOUND\",\"message\":\"no reservation "
            "\\\"r-1\\\"\\nsorry\"}\n");
}

HttpRequest JsonPost(std::string body,
                     std::string content_type = "application/json") {
  HttpRequest request;
  request.method = "POST";
  request.path = "/v1/check";
  request.headers.emplace_back("content-type", std::move(content_type));
  request.body = std::move(body);
  return request;
}

TEST(ParseJsonBodyTest, AcceptsProtoAndCamelCaseNames) {
  v1::CheckRequest check;
  ASSERT_TRUE(ParseJsonBody(JsonPost(R"({"model": "gpt-4.1",
      "max_output_tokens": 10, "inputTokens": "20",
      "labels": {"team": "search"}})"),
                            &check)
                  .ok());
  EXPECT_EQ(check.model(), "gpt-4.1");
  EXPECT_EQ(check.max_output_tokens(), 10);
  EXPECT_EQ(check.input_tokens(), 20);
  EXPECT_EQ(check.labels().at("team"), "search");
}

TEST(ParseJsonBodyTest, ContentTypeParametersAreFine) {
  v1::CheckRequest check;
  EXPECT_TRUE(ParseJsonBody(JsonPost(R"({"model": "m"})",
                                     "Application/JSON; charset=utf-8"),
                            &check)
                  .ok());
}

TEST(ParseJsonBodyTest, RejectsWithAMessageThatSaysWhatToFix) {
  v1::CheckRequest check;
  absl::Status s = ParseJsonBody(JsonPost("{}", "text/plain"), &check);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("Content-Type must be application/json"));

  s = ParseJsonBody(JsonPost(""), &check);
  EXPECT_THAT(s.message(), HasSubstr("the body is empty"));

  s = ParseJsonBody(JsonPost(R"({"model": )"), &check);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("not a valid bursar.v1.CheckRequest"));

  s = ParseJsonBody(JsonPost(R"({"model": "m", "modle": "x"})"), &check);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("modle"));

  s = ParseJsonBody(JsonPost(R"({"input_tokens": "many"})"), &check);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST(MessageToJsonTest, UsesProtoNamesAndPrintsDefaults) {
  v1::CheckResponse response;
  response.set_verdict(v1::VERDICT_DENY);
  response.set_estimated_cost_nanos(120);
  const std::string json = MessageToJson(response);
  EXPECT_THAT(json, HasSubstr("\"verdict\":\"VERDICT_DENY\""));
  EXPECT_THAT(json, HasSubstr("\"estimated_cost_nanos\":\"120\""));
  EXPECT_THAT(json, HasSubstr("\"reservation_id\":\"\""));
}

}  // namespace
}  // namespace bursar::server::http
