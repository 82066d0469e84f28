#include "server/http/json_api.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace bursar::server::http {

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpReply StatusReply(const absl::Status& status) {
  return JsonError(HttpStatusFor(status.code()),
                   absl::StatusCodeToString(status.code()), status.message());
}

std::string MessageToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Printing a valid message cannot fail.
  google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

HttpReply MessageReply(const google::protobuf::Message& message) {
  HttpReply reply;
  reply.body = MessageToJson(message);
  reply.body += "\n";
  return reply;
}

absl::Status ParseJsonBody(const HttpRequest& request,
                           google::protobuf::Message* message) {
  const std::string content_type =
      absl::AsciiStrToLower(request.Header("content-type"));
  const absl::string_view media_type = absl::StripAsciiWhitespace(
      absl::string_view(content_type).substr(0, content_type.find(';')));
  if (media_type != "application/json") {
    return absl::InvalidArgumentError(
        absl::StrCat("Content-Type must be application/json, not \"",
                     request.Header("content-type"), "\""));
  }
  if (absl::StripAsciiWhitespace(request.body).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is empty; send a JSON object (",
                     message->GetTypeName(), ")"));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(request.body, message,
                                                  options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not a valid ", message->GetTypeName(),
                     " in JSON: ", parsed.message().ToString()));
  }
  return absl::OkStatus();
}

void AddDecisionRoutes(HttpServer* server, DecisionCalls* calls) {
  server->HandlePost("/v1/check", [calls](const HttpRequest& request) {
    v1::CheckRequest check;
    if (absl::Status s = ParseJsonBody(request, &check); !s.ok()) {
      return StatusReply(s);
    }
    v1::CheckResponse response;
    if (absl::Status s = calls->Check(check, &response); !s.ok()) {
      return StatusReply(s);
    }
    return MessageReply(response);
  });
  server->HandlePost("/v1/report", [calls](const HttpRequest& request) {
    v1::ReportRequest report;
    if (absl::Status s = ParseJsonBody(request, &report); !s.ok()) {
      return StatusReply(s);
    }
    v1::ReportResponse response;
    if (absl::Status s = calls->Report(report, &response); !s.ok()) {
      return StatusReply(s);
    }
    return MessageReply(response);
  });
}

}  // namespace bursar::server::http
