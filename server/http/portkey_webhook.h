#ifndef BURSAR_SERVER_HTTP_PORTKEY_WEBHOOK_H_
#define BURSAR_SERVER_HTTP_PORTKEY_WEBHOOK_H_

// Bursar as a webhook guardrail of Portkey's open-source gateway
// (docs/integrations/portkey.md, docs/decisions/010).
//
// Portkey POSTs the same hook context to the webhook before the LLM call
// (eventType "beforeRequestHook") and after a successful one
// ("afterRequestHook"):
//   {"request": {"json": {...the OpenAI-style request...},
//                "isStreamingRequest": false, ...},
//    "response": {"json": {...the provider's answer, with usage...},
//                 "statusCode": 200, ...},
//    "provider": "openai", "requestType": "chatComplete",
//    "metadata": {...the caller's x-portkey-metadata...},
//    "eventType": "beforeRequestHook"}
// Caller headers are not forwarded to hooks; identity travels in metadata.
//
// Before-hook -> Check: labels from metadata, model and max_tokens from
// request.json, input tokens from metadata.input_tokens or an estimate from
// the request's text (EstimateInputTokens). The answer is
//   {"verdict": false, "data": {...}}                   to deny, or
//   {"verdict": true, "transformedData": {"request": {"json": {...}}}, ...}
// with the model and max_tokens Bursar chose.
// After-hook -> Report with response.json.usage. The two hooks are joined by
// metadata.request_id, which the caller must send (a unique id per call):
// it is also Check's request_id ("portkey:<id>"), so a retried call gets the
// same reservation.
//
// The translation is plain functions; PortkeyWebhook adds the one piece of
// state, the open reservations by request id.

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bursar/v1/decision.pb.h"
#include "google/protobuf/struct.pb.h"
#include "server/clock.h"
#include "server/http/http_server.h"
#include "server/http/json_api.h"

namespace bursar::server::http {

// Metadata keys with a meaning of their own; every other key becomes a label.
inline constexpr char kPortkeyRequestIdKey[] = "request_id";
inline constexpr char kPortkeyInputTokensKey[] = "input_tokens";
inline constexpr char kPortkeyPriorityKey[] = "priority";
// Portkey's own user field; it becomes the label "user" (unless "user" is
// also sent).
inline constexpr char kPortkeyUserKey[] = "_user";
// Check's request_id is this prefix + metadata.request_id.
inline constexpr char kPortkeyRequestIdPrefix[] = "portkey:";

enum class PortkeyEvent { kBeforeRequest, kAfterRequest };

// One hook call as Portkey sends it.
struct PortkeyHookCall {
  PortkeyEvent event = PortkeyEvent::kBeforeRequest;
  // request.json: the request body the gateway will send (after earlier
  // hooks' transformations).
  google::protobuf::Struct request_json;
  // response.json; absent before the call, and for streaming responses.
  bool has_response_json = false;
  google::protobuf::Struct response_json;
  google::protobuf::Struct metadata;
  // The provider Portkey routes to ("openai"); may be empty.
  std::string provider;
  // requestType: "chatComplete", "complete", "messages", "embed", ...
  std::string request_type;
  // request.isStreamingRequest, or request.json.stream == true.
  bool streaming = false;
};

// Parses a webhook body. INVALID_ARGUMENT naming the problem: not JSON, an
// unknown eventType, a missing request.json.
absl::StatusOr<PortkeyHookCall> ParsePortkeyHookCall(absl::string_view body);

// A conservative estimate of a request's prompt tokens when the caller sends
// none: every text the model reads (messages[].content strings and text
// parts, name, tool calls' arguments, prompt, input, system, and the JSON of
// tools/functions), in UTF-8 bytes, divided by 4 and rounded up, plus 4 per
// message and 3 for the reply's priming. English averages about 4 bytes per
// token, so this is near for English and high for code and most other
// languages; it never reads the model's tokenizer.
int64_t EstimateInputTokens(const google::protobuf::Struct& request_json);

// The Check a before-hook asks for. INVALID_ARGUMENT naming the field: no
// request.json.model, no metadata.request_id, a max_tokens or
// metadata.input_tokens that is not a non-negative integer, a metadata value
// that is an object or a list.
absl::StatusOr<v1::CheckRequest> CheckRequestFromHook(
    const PortkeyHookCall& call);

// The webhook answer (JSON) to a before-hook for Check's `response`: a
// denial, or an allow whose transformedData carries request.json with
// Bursar's model and max_tokens (always present, so the provider is held to
// what was reserved). The output-token field the request used
// (max_completion_tokens or max_tokens) is the one set; max_tokens if none.
// Embeddings ("embed") produce no output tokens: only their model is set.
std::string BeforeHookAnswer(const PortkeyHookCall& call,
                             const v1::CheckResponse& response);

// The Report for an after-hook of the call Check reserved `reservation_id`
// for. Usage comes from response.json.usage in OpenAI's shape (prompt_tokens,
// completion_tokens, prompt_tokens_details.cached_tokens) or Anthropic's
// (input_tokens, output_tokens, cache_read_input_tokens,
// cache_creation_input_tokens). FAILED_PRECONDITION when the hook carries no
// usage (a streaming response, or a provider that sends none).
absl::StatusOr<v1::ReportRequest> ReportRequestFromHook(
    const PortkeyHookCall& call, const std::string& reservation_id);

// Options of the webhook route.
struct PortkeyWebhookOptions {
  // At most this many open reservations are remembered; past it the oldest
  // are forgotten (their holds expire and are charged at their estimate).
  size_t max_open_reservations = 1 << 20;
};

// POST handler for Portkey's webhook guardrail: Check on the before-hook,
// Report on the after-hook (see the top of this file). Thread-safe.
class PortkeyWebhook {
 public:
  // `calls` and `clock` must outlive it.
  PortkeyWebhook(DecisionCalls* calls, Clock* clock,
                 PortkeyWebhookOptions options = {});

  HttpReply Handle(const HttpRequest& request);

  // Reservations waiting for their after-hook.
  size_t open_reservations() const;

 private:
  HttpReply Before(const PortkeyHookCall& call);
  HttpReply After(const PortkeyHookCall& call);
  void Remember(const std::string& request_id,
                const std::string& reservation_id, absl::Time expires_at);
  // Drops the oldest remembered id (order_ must not be empty).
  void ForgetOldest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes and returns the reservation for `request_id`; empty if unknown.
  std::string Take(const std::string& request_id);

  struct Open {
    std::string reservation_id;
    absl::Time expires_at;
  };

  DecisionCalls* const calls_;
  Clock* const clock_;
  const PortkeyWebhookOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Open> open_ ABSL_GUARDED_BY(mu_);
  // Request ids in the order remembered, for pruning expired entries (a
  // stale id whose entry was replaced or taken is skipped).
  std::deque<std::pair<std::string, absl::Time>> order_ ABSL_GUARDED_BY(mu_);
};

// Adds POST /v1/portkey/webhook, served by `webhook` (which must outlive the
// server).
void AddPortkeyRoutes(HttpServer* server, PortkeyWebhook* webhook);

}  // namespace bursar::server::http

#endif  // BURSAR_SERVER_HTTP_PORTKEY_WEBHOOK_H_
