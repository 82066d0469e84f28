#ifndef BURSAR_SERVER_HTTP_JSON_API_H_
#define BURSAR_SERVER_HTTP_JSON_API_H_

// The HTTP/JSON face of the Decision API: POST /v1/check and POST /v1/report
// take and return the protobuf JSON mapping of CheckRequest/CheckResponse and
// ReportRequest/ReportResponse (docs: README "HTTP/JSON port",
// docs/decisions/010). Requests accept both the proto field names
// (`max_output_tokens`) and their lowerCamelCase JSON names; answers use the
// proto field names and print every field, defaults included. int64 fields
// are JSON strings, as the mapping says (e.g. "estimated_cost_nanos": "120").
//
// Errors are absl::Status codes mapped to HTTP statuses (HttpStatusFor) with
// the body {"code": "INVALID_ARGUMENT", "message": "..."}.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "bursar/v1/decision.pb.h"
#include "google/protobuf/message.h"
#include "server/decider.h"
#include "server/http/http_server.h"

namespace bursar::server::http {

// INVALID_ARGUMENT 400, FAILED_PRECONDITION 400 (as google.rpc maps it: the
// request cannot run in the current state, and retrying it unchanged will
// not help), NOT_FOUND 404, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, OK 200,
// anything else 500.
int HttpStatusFor(absl::StatusCode code);

// The error reply for a non-OK status: its HTTP status and
// {"code": "<absl code name>", "message": "<status message>"}.
HttpReply StatusReply(const absl::Status& status);

// A 200 reply with `message` in the JSON mapping (proto field names, every
// field printed).
HttpReply MessageReply(const google::protobuf::Message& message);

// Parses a JSON request body into `message`. INVALID_ARGUMENT naming the
// problem: a Content-Type other than application/json, an empty body,
// malformed JSON, an unknown field, a value of the wrong type.
absl::Status ParseJsonBody(const HttpRequest& request,
                           google::protobuf::Message* message);

// JSON text of a message (proto field names, every field printed).
std::string MessageToJson(const google::protobuf::Message& message);

// What the decision routes call: server::Decider in bursard (DeciderCalls),
// fakes in tests. Thread-safe.
class DecisionCalls {
 public:
  virtual ~DecisionCalls() = default;
  virtual absl::Status Check(const v1::CheckRequest& request,
                             v1::CheckResponse* response) = 0;
  virtual absl::Status Report(const v1::ReportRequest& request,
                              v1::ReportResponse* response) = 0;
};

// The Decider the gRPC service also calls. `decider` must outlive it.
class DeciderCalls final : public DecisionCalls {
 public:
  explicit DeciderCalls(Decider* decider) : decider_(decider) {}
  absl::Status Check(const v1::CheckRequest& request,
                     v1::CheckResponse* response) override {
    return decider_->Check(request, response);
  }
  absl::Status Report(const v1::ReportRequest& request,
                      v1::ReportResponse* response) override {
    return decider_->Report(request, response);
  }

 private:
  Decider* const decider_;
};

// Adds POST /v1/check and POST /v1/report to `server`. `calls` must outlive
// the server.
void AddDecisionRoutes(HttpServer* server, DecisionCalls* calls);

}  // namespace bursar::server::http

#endif  // BURSAR_SERVER_HTTP_JSON_API_H_
