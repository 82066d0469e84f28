#include "server/http/portkey_webhook.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"

namespace bursar::server::http {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// Token counts above this are surely a mistake (Decider's own bound).
constexpr double kMaxTokens = 100'000'000;

const Value* Field(const Struct& object, absl::string_view name) {
  auto it = object.fields().find(std::string(name));
  if (it == object.fields().end()) return nullptr;
  if (it->second.kind_case() == Value::kNullValue) return nullptr;
  return &it->second;
}

const Struct* ObjectField(const Struct& object, absl::string_view name) {
  const Value* value = Field(object, name);
  if (value == nullptr || value->kind_case() != Value::kStructValue) {
    return nullptr;
  }
  return &value->struct_value();
}

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

// A whole number of tokens in 0..kMaxTokens, from a JSON number or a string
// of digits.
absl::StatusOr<int64_t> TokenCount(const Value& value,
                                   absl::string_view field) {
  double number = -1;
  if (value.kind_case() == Value::kNumberValue) {
    number = value.number_value();
  } else if (value.kind_case() == Value::kStringValue) {
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(value.string_value(), &parsed)) {
      return Invalid(field, absl::StrCat("\"", value.string_value(),
                                         "\" is not a whole number"));
    }
    number = static_cast<double>(parsed);
  } else {
    return Invalid(field, "must be a whole number of tokens");
  }
  if (!(number >= 0 && number <= kMaxTokens) || std::floor(number) != number) {
    return Invalid(field, absl::StrCat(number, " is not a whole number in 0..",
                                       static_cast<int64_t>(kMaxTokens)));
  }
  return static_cast<int64_t>(number);
}

// The text of a metadata value for a label; an error for objects and lists.
absl::StatusOr<std::string> LabelValue(const Value& value,
                                       absl::string_view key) {
  switch (value.kind_case()) {
    case Value::kStringValue:
      return value.string_value();
    case Value::kBoolValue:
      return std::string(value.bool_value() ? "true" : "false");
    case Value::kNumberValue: {
      const double n = value.number_value();
      if (std::floor(n) == n && std::fabs(n) < 1e15) {
        return absl::StrCat(static_cast<int64_t>(n));
      }
      return absl::StrFormat("%g", n);
    }
    default:
      return Invalid(absl::StrCat("metadata.", key),
                     "must be a string, number or boolean to become a label");
  }
}

absl::StatusOr<std::string> RequestId(const PortkeyHookCall& call) {
  const Value* id = Field(call.metadata, kPortkeyRequestIdKey);
  if (id == nullptr) {
    return Invalid(
        "metadata.request_id",
        "is missing; send a unique request_id per call in the "
        "x-portkey-metadata header (it joins the before- and after-hook)");
  }
  absl::StatusOr<std::string> text = LabelValue(*id, kPortkeyRequestIdKey);
  if (!text.ok()) return text.status();
  if (text->empty()) return Invalid("metadata.request_id", "is empty");
  return *text;
}

size_t TextBytes(const Value& value);

size_t ListTextBytes(const ListValue& list) {
  size_t bytes = 0;
  for (const Value& item : list.values()) bytes += TextBytes(item);
  return bytes;
}

// The bytes of text a value carries for the model: strings, and the "text"
// of content parts.
size_t TextBytes(const Value& value) {
  switch (value.kind_case()) {
    case Value::kStringValue:
      return value.string_value().size();
    case Value::kListValue:
      return ListTextBytes(value.list_value());
    case Value::kStructValue: {
      const Value* text = Field(value.struct_value(), "text");
      return text != nullptr ? TextBytes(*text) : 0;
    }
    default:
      return 0;
  }
}

size_t JsonBytes(const Value& value) {
  std::string json;
  google::protobuf::util::MessageToJsonString(value, &json);
  return json.size();
}

}  // namespace

absl::StatusOr<PortkeyHookCall> ParsePortkeyHookCall(absl::string_view body) {
  Struct root;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(body.data(), body.size()), &root);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the webhook body is not a JSON object: ",
                     parsed.message().ToString()));
  }
  PortkeyHookCall call;
  const Value* event = Field(root, "eventType");
  if (event == nullptr || event->kind_case() != Value::kStringValue) {
    return Invalid("eventType",
                   "is missing; expected beforeRequestHook or "
                   "afterRequestHook");
  }
  if (event->string_value() == "beforeRequestHook") {
    call.event = PortkeyEvent::kBeforeRequest;
  } else if (event->string_value() == "afterRequestHook") {
    call.event = PortkeyEvent::kAfterRequest;
  } else {
    return Invalid("eventType",
                   absl::StrCat("\"", event->string_value(),
                                "\" is neither beforeRequestHook nor "
                                "afterRequestHook"));
  }
  const Struct* request = ObjectField(root, "request");
  const Struct* request_json =
      request != nullptr ? ObjectField(*request, "json") : nullptr;
  if (request_json == nullptr) {
    return Invalid("request.json",
                   "is missing; the webhook expects Portkey's hook context");
  }
  call.request_json = *request_json;
  if (const Value* streaming = Field(*request, "isStreamingRequest");
      streaming != nullptr && streaming->kind_case() == Value::kBoolValue) {
    call.streaming = streaming->bool_value();
  }
  if (const Value* stream = Field(*request_json, "stream");
      stream != nullptr && stream->kind_case() == Value::kBoolValue &&
      stream->bool_value()) {
    call.streaming = true;
  }
  if (const Struct* response = ObjectField(root, "response");
      response != nullptr) {
    if (const Struct* json = ObjectField(*response, "json"); json != nullptr) {
      call.has_response_json = true;
      call.response_json = *json;
    }
  }
  if (const Value* metadata = Field(root, "metadata"); metadata != nullptr) {
    if (metadata->kind_case() != Value::kStructValue) {
      return Invalid("metadata", "must be a JSON object");
    }
    call.metadata = metadata->struct_value();
  }
  if (const Value* type = Field(root, "requestType");
      type != nullptr && type->kind_case() == Value::kStringValue) {
    call.request_type = type->string_value();
  }
  if (const Value* provider = Field(root, "provider");
      provider != nullptr && provider->kind_case() == Value::kStringValue) {
    call.provider = provider->string_value();
  }
  return call;
}

int64_t EstimateInputTokens(const Struct& request_json) {
  size_t bytes = 0;
  int64_t messages = 0;
  if (const Value* list = Field(request_json, "messages");
      list != nullptr && list->kind_case() == Value::kListValue) {
    for (const Value& message : list->list_value().values()) {
      ++messages;
      if (message.kind_case() != Value::kStructValue) continue;
      const Struct& fields = message.struct_value();
      if (const Value* content = Field(fields, "content")) {
        bytes += TextBytes(*content);
      }
      if (const Value* name = Field(fields, "name")) bytes += TextBytes(*name);
      if (const Value* calls = Field(fields, "tool_calls")) {
        bytes += JsonBytes(*calls);
      }
    }
  }
  for (const char* key : {"prompt", "input", "system"}) {
    if (const Value* text = Field(request_json, key)) bytes += TextBytes(*text);
  }
  for (const char* key : {"tools", "functions"}) {
    if (const Value* defs = Field(request_json, key)) bytes += JsonBytes(*defs);
  }
  const int64_t text_tokens = static_cast<int64_t>((bytes + 3) / 4);
  return text_tokens + 4 * messages + 3;
}

absl::StatusOr<v1::CheckRequest> CheckRequestFromHook(
    const PortkeyHookCall& call) {
  v1::CheckRequest check;
  const Value* model = Field(call.request_json, "model");
  if (model == nullptr || model->kind_case() != Value::kStringValue ||
      model->string_value().empty()) {
    return Invalid("request.json.model",
                   "is missing; Bursar prices calls by model");
  }
  check.set_model(model->string_value());
  absl::StatusOr<std::string> request_id = RequestId(call);
  if (!request_id.ok()) return request_id.status();
  check.set_request_id(absl::StrCat(kPortkeyRequestIdPrefix, *request_id));
  check.set_provider(call.provider);

  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    if (const Value* max = Field(call.request_json, key)) {
      absl::StatusOr<int64_t> tokens =
          TokenCount(*max, absl::StrCat("request.json.", key));
      if (!tokens.ok()) return tokens.status();
      check.set_max_output_tokens(*tokens);
      break;
    }
  }
  if (const Value* input = Field(call.metadata, kPortkeyInputTokensKey)) {
    absl::StatusOr<int64_t> tokens =
        TokenCount(*input, "metadata.input_tokens");
    if (!tokens.ok()) return tokens.status();
    check.set_input_tokens(*tokens);
  } else {
    check.set_input_tokens(EstimateInputTokens(call.request_json));
  }

  // Labels in key order, so the same metadata always makes the same Check.
  std::vector<std::string> keys;
  for (const auto& [key, value] : call.metadata.fields()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  auto& labels = *check.mutable_labels();
  for (const std::string& key : keys) {
    const Value& value = call.metadata.fields().at(key);
    if (value.kind_case() == Value::kNullValue) continue;
    if (key == kPortkeyRequestIdKey || key == kPortkeyInputTokensKey) continue;
    if (key == kPortkeyPriorityKey) {
      absl::StatusOr<std::string> priority = LabelValue(value, key);
      if (!priority.ok()) return priority.status();
      check.set_priority(*priority);
      continue;
    }
    std::string label = key;
    if (key == kPortkeyUserKey) {
      if (call.metadata.fields().count("user") > 0) continue;
      label = "user";
    } else if (!key.empty() && key.front() == '_') {
      continue;  // Portkey's own fields (_environment, _prompt, ...)
    }
    absl::StatusOr<std::string> text = LabelValue(value, key);
    if (!text.ok()) return text.status();
    labels[label] = *std::move(text);
  }
  return check;
}

std::string BeforeHookAnswer(const PortkeyHookCall& call,
                             const v1::CheckResponse& response) {
  const std::string decision = MessageToJson(response);
  if (response.verdict() != v1::VERDICT_ALLOW) {
    std::string explanation = "denied by Bursar";
    for (const v1::Reason& reason : response.reasons()) {
      absl::StrAppend(&explanation, "; ", reason.rule(), ": ",
                      reason.message());
    }
    return absl::StrCat(
        "{\"verdict\":false,\"data\":{\"explanation\":", JsonQuote(explanation),
        ",\"bursar\":", decision, "}}\n");
  }
  Struct json = call.request_json;
  auto& fields = *json.mutable_fields();
  fields["model"].set_string_value(response.model());
  if (call.request_type != "embed") {
    const char* max_field =
        Field(call.request_json, "max_completion_tokens") != nullptr
            ? "max_completion_tokens"
            : "max_tokens";
    fields[max_field].set_number_value(
        static_cast<double>(response.max_output_tokens()));
  }
  std::string request_json;
  google::protobuf::util::MessageToJsonString(json, &request_json);
  return absl::StrCat(
      "{\"verdict\":true,\"transformedData\":{\"request\":{\"json\":",
      request_json, "}},\"data\":{\"explanation\":",
      JsonQuote(absl::StrCat("allowed by Bursar: ", response.model(),
                             ", at most ", response.max_output_tokens(),
                             " output tokens")),
      ",\"bursar\":", decision, "}}\n");
}

absl::StatusOr<v1::ReportRequest> ReportRequestFromHook(
    const PortkeyHookCall& call, const std::string& reservation_id) {
  const Struct* usage = call.has_response_json
                            ? ObjectField(call.response_json, "usage")
                            : nullptr;
  if (usage == nullptr) {
    return absl::FailedPreconditionError(
        call.streaming
            ? "a streaming response: Portkey's after-hook does not see its "
              "usage"
            : "the response carries no usage");
  }
  v1::ReportRequest report;
  report.set_reservation_id(reservation_id);
  report.set_outcome(v1::OUTCOME_SUCCESS);
  v1::Usage& out = *report.mutable_usage();
  auto count = [&](const Struct& object,
                   absl::string_view key) -> absl::StatusOr<int64_t> {
    const Value* value = Field(object, key);
    if (value == nullptr) return 0;
    return TokenCount(*value, absl::StrCat("response.json.usage.", key));
  };
  if (Field(*usage, "prompt_tokens") != nullptr ||
      Field(*usage, "completion_tokens") != nullptr) {
    // OpenAI: prompt_tokens counts cached ones too.
    absl::StatusOr<int64_t> input = count(*usage, "prompt_tokens");
    absl::StatusOr<int64_t> output = count(*usage, "completion_tokens");
    if (!input.ok()) return input.status();
    if (!output.ok()) return output.status();
    int64_t cached = 0;
    if (const Struct* details = ObjectField(*usage, "prompt_tokens_details")) {
      absl::StatusOr<int64_t> c = count(*details, "cached_tokens");
      if (!c.ok()) return c.status();
      cached = std::min(*c, *input);
    }
    out.set_input_tokens(*input);
    out.set_cached_input_tokens(cached);
    out.set_output_tokens(*output);
  } else {
    // Anthropic: input_tokens leaves out the cache reads and writes.
    absl::StatusOr<int64_t> input = count(*usage, "input_tokens");
    absl::StatusOr<int64_t> read = count(*usage, "cache_read_input_tokens");
    absl::StatusOr<int64_t> written =
        count(*usage, "cache_creation_input_tokens");
    absl::StatusOr<int64_t> output = count(*usage, "output_tokens");
    for (const auto* s : {&input, &read, &written, &output}) {
      if (!s->ok()) return s->status();
    }
    out.set_input_tokens(*input + *read + *written);
    out.set_cached_input_tokens(*read);
    out.set_output_tokens(*output);
  }
  return report;
}

PortkeyWebhook::PortkeyWebhook(DecisionCalls* calls, Clock* clock,
                               PortkeyWebhookOptions options)
    : calls_(calls), clock_(clock), options_(options) {}

HttpReply PortkeyWebhook::Handle(const HttpRequest& request) {
  Struct ignored;
  if (absl::Status s = ParseJsonBody(request, &ignored); !s.ok()) {
    return StatusReply(s);
  }
  absl::StatusOr<PortkeyHookCall> call = ParsePortkeyHookCall(request.body);
  if (!call.ok()) return StatusReply(call.status());
  return call->event == PortkeyEvent::kBeforeRequest ? Before(*call)
                                                     : After(*call);
}

HttpReply PortkeyWebhook::Before(const PortkeyHookCall& call) {
  absl::StatusOr<v1::CheckRequest> check = CheckRequestFromHook(call);
  if (!check.ok()) return StatusReply(check.status());
  v1::CheckResponse response;
  if (absl::Status s = calls_->Check(*check, &response); !s.ok()) {
    return StatusReply(s);
  }
  if (response.verdict() == v1::VERDICT_ALLOW &&
      !response.reservation_id().empty()) {
    absl::Time expires_at;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, response.reservation_expires_at(),
                         &expires_at, &error)) {
      expires_at = clock_->Now() + absl::Hours(1);
    }
    Remember(check->request_id(), response.reservation_id(), expires_at);
  }
  HttpReply reply;
  reply.body = BeforeHookAnswer(call, response);
  return reply;
}

HttpReply PortkeyWebhook::After(const PortkeyHookCall& call) {
  absl::StatusOr<std::string> request_id = RequestId(call);
  if (!request_id.ok()) return StatusReply(request_id.status());
  const std::string key = absl::StrCat(kPortkeyRequestIdPrefix, *request_id);
  const std::string reservation_id = Take(key);
  HttpReply reply;
  if (reservation_id.empty()) {
    reply.body = absl::StrCat(
        "{\"verdict\":true,\"data\":{\"reported\":false,\"explanation\":",
        JsonQuote(absl::StrCat(
            "no open reservation for request_id ", *request_id,
            " (no before-hook with it, already reported, or bursard "
            "restarted since); nothing reported")),
        "}}\n");
    return reply;
  }
  absl::StatusOr<v1::ReportRequest> report =
      ReportRequestFromHook(call, reservation_id);
  if (!report.ok()) {
    reply.body = absl::StrCat(
        "{\"verdict\":true,\"data\":{\"reported\":false,\"reservation_id\":",
        JsonQuote(reservation_id), ",\"explanation\":",
        JsonQuote(absl::StrCat(
            report.status().message(),
            "; the reservation stays held and is charged its estimate when "
            "it expires")),
        "}}\n");
    return reply;
  }
  v1::ReportResponse response;
  if (absl::Status s = calls_->Report(*report, &response); !s.ok()) {
    return StatusReply(s);
  }
  reply.body = absl::StrCat(
      "{\"verdict\":true,\"data\":{\"reported\":true,\"reservation_id\":",
      JsonQuote(reservation_id), ",\"bursar\":", MessageToJson(response),
      "}}\n");
  return reply;
}

void PortkeyWebhook::Remember(const std::string& request_id,
                              const std::string& reservation_id,
                              absl::Time expires_at) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);

  while (!order_.empty() && order_.front().second < now) ForgetOldest();
  while (!order_.empty() && open_.size() >= options_.max_open_reservations) {
    ForgetOldest();
  }
  open_[request_id] = Open{reservation_id, expires_at};
  order_.emplace_back(request_id, expires_at);
}

void PortkeyWebhook::ForgetOldest() {
  auto it = open_.find(order_.front().first);
  // An entry replaced by a later Remember of the same id stays.
  if (it != open_.end() && it->second.expires_at == order_.front().second) {
    open_.erase(it);
  }
  order_.pop_front();
}

std::string PortkeyWebhook::Take(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(request_id);
  if (it == open_.end()) return "";
  std::string reservation_id = std::move(it->second.reservation_id);
  open_.erase(it);
  return reservation_id;
}

size_t PortkeyWebhook::open_reservations() const {
  absl::MutexLock lock(&mu_);
  return open_.size();
}

void AddPortkeyRoutes(HttpServer* server, PortkeyWebhook* webhook) {
  server->HandlePost("/v1/portkey/webhook", [webhook](const HttpRequest& r) {
    return webhook->Handle(r);
  });
}

}  // namespace bursar::server::http
