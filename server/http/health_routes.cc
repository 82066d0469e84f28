#include "server/http/health_routes.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bursar::server::http {
namespace {

constexpr char kHealthzPath[] = "/healthz";
constexpr char kReadyzPath[] = "/readyz";

HttpReply ProbeReply(int http_status, absl::string_view status,
                     absl::string_view message = "") {
  HttpReply reply;
  reply.status = http_status;
  reply.body = absl::StrCat("{\"status\":", JsonQuote(status));
  if (!message.empty()) {
    absl::StrAppend(&reply.body, ",\"message\":", JsonQuote(message));
  }
  absl::StrAppend(&reply.body, "}\n");
  // A probe's answer is only true now.
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

}  // namespace

absl::string_view ServingStatusName(ServingStatus status) {
  switch (status) {
    case ServingStatus::kServing:
      return "SERVING";
    case ServingStatus::kNotServing:
      return "NOT_SERVING";
    case ServingStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
    case ServingStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

bool IsProbePath(absl::string_view path) {
  return path == kHealthzPath || path == kReadyzPath;
}

void AddHealthRoutes(HttpServer* server, ReadinessSource* readiness) {
  server->HandleGet(kHealthzPath, [] { return ProbeReply(200, "ALIVE"); });
  server->HandleGet(kReadyzPath, [readiness] {
    const absl::StatusOr<ServingStatus> status =
        readiness->ServerServingStatus();
    if (!status.ok()) {
      return ProbeReply(
          503, ServingStatusName(ServingStatus::kUnknown),
          absl::StrCat("the gRPC health service did not answer: ",
                       absl::StatusCodeToString(status.status().code()), ": ",
                       status.status().message()));
    }
    return ProbeReply(*status == ServingStatus::kServing ? 200 : 503,
                      ServingStatusName(*status));
  });
}

}  // namespace bursar::server::http
