#include "server/http/portkey_webhook.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace bursar::server::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kBefore[] = R"json({
  "request": {
    "json": {
      "model": "gpt-4.1",
      "max_tokens": 800,
      "temperature": 0.5,
      "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}]}
      ]
    },
    "text": "Hello there",
    "isStreamingRequest": false,
    "isTransformed": false
  },
  "response": {"json": {}, "text": "", "statusCode": null},
  "provider": "openai",
  "requestType": "chatComplete",
  "metadata": {"request_id": "call-1", "team": "search", "tenant": "acme",
               "_user": "ada", "_environment": "prod", "attempt_no": 2},
  "eventType": "beforeRequestHook"
})json";

constexpr char kAfter[] = R"json({
  "request": {"json": {"model": "gpt-4.1-mini", "max_tokens": 256,
                       "messages": []}, "isStreamingRequest": false},
  "response": {
    "json": {"id": "x", "choices": [],
             "usage": {"prompt_tokens": 30, "completion_tokens": 12,
                       "prompt_tokens_details": {"cached_tokens": 10}}},
    "statusCode": 200
  },
  "provider": "openai",
  "metadata": {"request_id": "call-1", "team": "search"},
  "eventType": "afterRequestHook"
})json";

PortkeyHookCall Parse(absl::string_view body) {
  absl::StatusOr<PortkeyHookCall> call = ParsePortkeyHookCall(body);
  EXPECT_TRUE(call.ok()) << call.status();
  return call.ok() ? *call : PortkeyHookCall{};
}

google::protobuf::Struct Json(const std::string& text) {
  google::protobuf::Struct out;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &out).ok())
      << text;
  return out;
}

TEST(ParsePortkeyHookCallTest, ReadsTheHookContext) {
  const PortkeyHookCall call = Parse(kBefore);
  EXPECT_EQ(call.event, PortkeyEvent::kBeforeRequest);
  EXPECT_EQ(call.provider, "openai");
  EXPECT_FALSE(call.streaming);
  EXPECT_TRUE(call.has_response_json);  // {} before the call
  EXPECT_EQ(call.request_json.fields().at("model").string_value(), "gpt-4.1");
  EXPECT_EQ(call.metadata.fields().at("team").string_value(), "search");

  const PortkeyHookCall after = Parse(kAfter);
  EXPECT_EQ(after.event, PortkeyEvent::kAfterRequest);
}

TEST(ParsePortkeyHookCallTest, RejectsWhatIsNotAHookCall) {
  EXPECT_THAT(ParsePortkeyHookCall("[1]").status().message(),
              HasSubstr("not a JSON object"));
  EXPECT_THAT(
      ParsePortkeyHookCall(R"({"request": {"json": {}}})").status().message(),
      HasSubstr("eventType"));
  EXPECT_THAT(ParsePortkeyHookCall(R"({"eventType": "onError",
                                       "request": {"json": {}}})")
                  .status()
                  .message(),
              HasSubstr("\"onError\""));
  EXPECT_THAT(ParsePortkeyHookCall(R"({"eventType": "beforeRequestHook"})")
                  .status()
                  .message(),
              HasSubstr("request.json"));
}

TEST(CheckRequestFromHookTest, LabelsModelTokensAndRequestId) {
  absl::StatusOr<v1::CheckRequest> check = CheckRequestFromHook(Parse(kBefore));
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->model(), "gpt-4.1");
  EXPECT_EQ(check->max_output_tokens(), 800);
  EXPECT_EQ(check->provider(), "openai");
  EXPECT_EQ(check->request_id(), "portkey:call-1");
  EXPECT_THAT(
      check->labels(),
      UnorderedElementsAre(Pair("team", "search"), Pair("tenant", "acme"),
                           Pair("user", "ada"), Pair("attempt_no", "2")));
  // "Be brief." (9) + "Hello there" (11) = 20 bytes -> 5, + 2 messages * 4
  // + 3.
  EXPECT_EQ(check->input_tokens(), 5 + 8 + 3);
}

TEST(CheckRequestFromHookTest, MetadataInputTokensAndPriorityWin) {
  PortkeyHookCall call = Parse(kBefore);
  (*call.metadata.mutable_fields())["input_tokens"].set_string_value("1234");
  (*call.metadata.mutable_fields())["priority"].set_string_value("critical");
  (*call.metadata.mutable_fields())["user"].set_string_value("grace");
  absl::StatusOr<v1::CheckRequest> check = CheckRequestFromHook(call);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->input_tokens(), 1234);
  EXPECT_EQ(check->priority(), "critical");
  EXPECT_EQ(check->labels().at("user"), "grace");
  EXPECT_EQ(check->labels().count("priority"), 0);
  EXPECT_EQ(check->labels().count("input_tokens"), 0);
}

TEST(CheckRequestFromHookTest, MaxCompletionTokensIsReadToo) {
  PortkeyHookCall call = Parse(kBefore);
  call.request_json.mutable_fields()->erase("max_tokens");
  (*call.request_json.mutable_fields())["max_completion_tokens"]
      .set_number_value(64);
  absl::StatusOr<v1::CheckRequest> check = CheckRequestFromHook(call);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->max_output_tokens(), 64);

  call.request_json.mutable_fields()->erase("max_completion_tokens");
  check = CheckRequestFromHook(call);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->max_output_tokens(), 0);  // the policy's default
}

TEST(CheckRequestFromHookTest, BadInputNamesTheField) {
  PortkeyHookCall call = Parse(kBefore);
  call.metadata.mutable_fields()->erase("request_id");
  EXPECT_THAT(CheckRequestFromHook(call).status().message(),
              HasSubstr("metadata.request_id: is missing"));

  call = Parse(kBefore);
  call.request_json.mutable_fields()->erase("model");
  EXPECT_THAT(CheckRequestFromHook(call).status().message(),
              HasSubstr("request.json.model"));

  call = Parse(kBefore);
  (*call.request_json.mutable_fields())["max_tokens"].set_number_value(2.5);
  EXPECT_THAT(CheckRequestFromHook(call).status().message(),
              HasSubstr("request.json.max_tokens"));

  call = Parse(kBefore);
  (*call.metadata.mutable_fields())["input_tokens"].set_string_value("lots");
  EXPECT_THAT(CheckRequestFromHook(call).status().message(),
              HasSubstr("metadata.input_tokens"));

  call = Parse(kBefore);
  (*call.metadata.mutable_fields())["team"].mutable_list_value();
  EXPECT_THAT(CheckRequestFromHook(call).status().message(),
              HasSubstr("metadata.team"));
}

TEST(EstimateInputTokensTest, CountsEveryTextTheModelReads) {
  EXPECT_EQ(EstimateInputTokens(Json("{}")), 3);
  EXPECT_EQ(EstimateInputTokens(Json(R"({"prompt": "12345678"})")), 2 + 3);
  EXPECT_EQ(EstimateInputTokens(Json(R"({"messages": [
      {"role": "user", "content": "1234", "name": "abcd"}]})")),
            2 + 4 + 3);
  // Tools count as their JSON text: {"a":1} is 7 bytes -> 2 tokens.
  EXPECT_EQ(EstimateInputTokens(Json(R"({"tools": {"a": 1}})")), 2 + 3);
  // Multi-byte text counts its UTF-8 bytes: 4 x 3 bytes -> 3 tokens.
  EXPECT_EQ(EstimateInputTokens(Json(R"({"input": "日本語です"})")), 4 + 3);
}

v1::CheckResponse Allow(const std::string& model, int64_t max_tokens) {
  v1::CheckResponse response;
  response.set_verdict(v1::VERDICT_ALLOW);
  response.set_model(model);
  response.set_max_output_tokens(max_tokens);
  response.set_reservation_id("res-7");
  response.set_reservation_expires_at("2026-01-01T00:10:00Z");
  return response;
}

google::protobuf::Struct AnswerJson(const std::string& answer) {
  return Json(answer);
}

TEST(BeforeHookAnswerTest, AllowRewritesModelAndMaxTokens) {
  const PortkeyHookCall call = Parse(kBefore);
  const google::protobuf::Struct answer =
      AnswerJson(BeforeHookAnswer(call, Allow("gpt-4.1-mini", 256)));
  EXPECT_TRUE(answer.fields().at("verdict").bool_value());
  const auto& json = answer.fields()
                         .at("transformedData")
                         .struct_value()
                         .fields()
                         .at("request")
                         .struct_value()
                         .fields()
                         .at("json")
                         .struct_value();
  EXPECT_EQ(json.fields().at("model").string_value(), "gpt-4.1-mini");
  EXPECT_EQ(json.fields().at("max_tokens").number_value(), 256);
  // The rest of the request is kept.
  EXPECT_EQ(json.fields().at("temperature").number_value(), 0.5);
  EXPECT_EQ(json.fields().at("messages").list_value().values_size(), 2);
  EXPECT_EQ(answer.fields()
                .at("data")
                .struct_value()
                .fields()
                .at("bursar")
                .struct_value()
                .fields()
                .at("reservation_id")
                .string_value(),
            "res-7");
}

TEST(BeforeHookAnswerTest, SetsTheFieldTheRequestUsed) {
  PortkeyHookCall call = Parse(kBefore);
  call.request_json.mutable_fields()->erase("max_tokens");
  (*call.request_json.mutable_fields())["max_completion_tokens"]
      .set_number_value(900);
  const std::string answer = BeforeHookAnswer(call, Allow("gpt-4.1", 300));
  EXPECT_THAT(answer, HasSubstr("\"max_completion_tokens\":300"));
  EXPECT_THAT(answer, Not(HasSubstr("\"max_tokens\"")));
}

TEST(BeforeHookAnswerTest, EmbeddingsGetNoMaxTokens) {
  PortkeyHookCall call = Parse(kBefore);
  EXPECT_EQ(call.request_type, "chatComplete");
  call.request_type = "embed";
  call.request_json = Json(R"({"model": "gpt-4.1", "input": "text"})");
  const std::string answer =
      BeforeHookAnswer(call, Allow("gpt-4.1-mini", 1000));
  EXPECT_THAT(answer, HasSubstr("\"model\":\"gpt-4.1-mini\""));
  EXPECT_THAT(answer, Not(HasSubstr("max_tokens")));
}

TEST(BeforeHookAnswerTest, DenyIsVerdictFalseWithTheReasons) {
  v1::CheckResponse response;
  response.set_verdict(v1::VERDICT_DENY);
  v1::Reason* reason = response.add_reasons();
  reason->set_rule("budget:team-search");
  reason->set_message("the budget has $0.01 left");
  const std::string answer = BeforeHookAnswer(Parse(kBefore), response);
  const google::protobuf::Struct json = AnswerJson(answer);
  EXPECT_FALSE(json.fields().at("verdict").bool_value());
  EXPECT_EQ(json.fields().count("transformedData"), 0);
  EXPECT_THAT(answer, HasSubstr("budget:team-search: the budget has $0.01"));
}

TEST(ReportRequestFromHookTest, OpenAiUsage) {
  absl::StatusOr<v1::ReportRequest> report =
      ReportRequestFromHook(Parse(kAfter), "res-7");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->reservation_id(), "res-7");
  EXPECT_EQ(report->outcome(), v1::OUTCOME_SUCCESS);
  EXPECT_EQ(report->usage().input_tokens(), 30);
  EXPECT_EQ(report->usage().cached_input_tokens(), 10);
  EXPECT_EQ(report->usage().output_tokens(), 12);
}

TEST(ReportRequestFromHookTest, AnthropicUsage) {
  PortkeyHookCall call = Parse(kAfter);
  call.response_json = Json(R"({"usage": {"input_tokens": 5,
      "cache_read_input_tokens": 20, "cache_creation_input_tokens": 3,
      "output_tokens": 9}})");
  absl::StatusOr<v1::ReportRequest> report =
      ReportRequestFromHook(call, "res-7");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->usage().input_tokens(), 28);
  EXPECT_EQ(report->usage().cached_input_tokens(), 20);
  EXPECT_EQ(report->usage().output_tokens(), 9);
}

TEST(ReportRequestFromHookTest, StreamingHasNoUsage) {
  PortkeyHookCall call = Parse(kAfter);
  call.has_response_json = false;
  call.streaming = true;
  absl::StatusOr<v1::ReportRequest> report =
      ReportRequestFromHook(call, "res-7");
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("streaming"));
}

// Records the calls and answers with a fixed plan.
class RecordingDecisions final : public DecisionCalls {
 public:
  absl::Status Check(const v1::CheckRequest& request,
                     v1::CheckResponse* response) override {
    checks.push_back(request);
    if (deny) {
      response->set_verdict(v1::VERDICT_DENY);
      return absl::OkStatus();
    }
    *response = Allow("gpt-4.1-mini", 256);
    response->set_reservation_id(absl::StrCat("res-", checks.size()));
    return absl::OkStatus();
  }
  absl::Status Report(const v1::ReportRequest& request,
                      v1::ReportResponse* response) override {
    reports.push_back(request);
    response->set_cost_nanos(42);
    return absl::OkStatus();
  }
  bool deny = false;
  std::vector<v1::CheckRequest> checks;
  std::vector<v1::ReportRequest> reports;
};

HttpRequest Post(const std::string& body) {
  HttpRequest request;
  request.method = "POST";
  request.path = "/v1/portkey/webhook";
  request.headers.emplace_back("content-type", "application/json");
  request.body = body;
  return request;
}

class PortkeyWebhookTest : public ::testing::Test {
 protected:
  FakeClock clock_{absl::FromUnixSeconds(1767225600)};  // 2026-01-01
  RecordingDecisions decisions_;
  PortkeyWebhook webhook_{&decisions_, &clock_};
};

TEST_F(PortkeyWebhookTest, AfterHookReportsTheBeforeHooksReservation) {
  HttpReply before = webhook_.Handle(Post(kBefore));
  EXPECT_EQ(before.status, 200);
  EXPECT_THAT(before.body, HasSubstr("\"verdict\":true"));
  EXPECT_EQ(webhook_.open_reservations(), 1);

  HttpReply after = webhook_.Handle(Post(kAfter));
  EXPECT_EQ(after.status, 200);
  EXPECT_THAT(after.body, HasSubstr("\"reported\":true"));
  ASSERT_EQ(decisions_.reports.size(), 1);
  EXPECT_EQ(decisions_.reports[0].reservation_id(), "res-1");
  EXPECT_EQ(decisions_.reports[0].usage().output_tokens(), 12);
  EXPECT_EQ(webhook_.open_reservations(), 0);

  // A second after-hook for the same call reports nothing.
  after = webhook_.Handle(Post(kAfter));
  EXPECT_EQ(after.status, 200);
  EXPECT_THAT(after.body, HasSubstr("\"reported\":false"));
  EXPECT_EQ(decisions_.reports.size(), 1);
}

TEST_F(PortkeyWebhookTest, DenialsAreNotRemembered) {
  decisions_.deny = true;
  HttpReply before = webhook_.Handle(Post(kBefore));
  EXPECT_EQ(before.status, 200);
  EXPECT_THAT(before.body, HasSubstr("\"verdict\":false"));
  EXPECT_EQ(webhook_.open_reservations(), 0);
}

TEST_F(PortkeyWebhookTest, ExpiredReservationsAreForgotten) {
  ASSERT_EQ(webhook_.Handle(Post(kBefore)).status, 200);
  clock_.Advance(absl::Minutes(11));  // past 00:10, the reservation's expiry
  std::string second = kBefore;
  second.replace(second.find("call-1"), 6, "call-2");
  ASSERT_EQ(webhook_.Handle(Post(second)).status, 200);
  EXPECT_EQ(webhook_.open_reservations(), 1);
  EXPECT_THAT(webhook_.Handle(Post(kAfter)).body,
              HasSubstr("\"reported\":false"));
}

TEST_F(PortkeyWebhookTest, BadCallsAre400WithAMessage) {
  std::string no_id = kBefore;
  no_id.replace(no_id.find("\"request_id\": \"call-1\","), 23, "");
  HttpReply reply = webhook_.Handle(Post(no_id));
  EXPECT_EQ(reply.status, 400);
  EXPECT_THAT(reply.body, HasSubstr("metadata.request_id"));
  EXPECT_TRUE(decisions_.checks.empty());

  HttpRequest text = Post(kBefore);
  text.headers[0].second = "text/plain";
  EXPECT_EQ(webhook_.Handle(text).status, 400);
}

TEST_F(PortkeyWebhookTest, StreamingAfterHookLeavesTheHold) {
  ASSERT_EQ(webhook_.Handle(Post(kBefore)).status, 200);
  std::string streaming = kAfter;
  const std::string response_json =
      streaming.substr(streaming.find("\"json\": {\"id\""));
  streaming = R"json({"request": {"json": {"model": "gpt-4.1-mini",
      "stream": true}, "isStreamingRequest": true},
      "response": {"json": null, "statusCode": 200},
      "metadata": {"request_id": "call-1"},
      "eventType": "afterRequestHook"})json";
  HttpReply reply = webhook_.Handle(Post(streaming));
  EXPECT_EQ(reply.status, 200);
  EXPECT_THAT(reply.body, HasSubstr("streaming"));
  EXPECT_THAT(reply.body, HasSubstr("charged its estimate"));
  EXPECT_TRUE(decisions_.reports.empty());
}

}  // namespace
}  // namespace bursar::server::http
