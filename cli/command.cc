#include "cli/command.h"

#include <chrono>
#include <iostream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"

namespace bursar::cli {

std::string Command::Name() const { return absl::StrJoin(words, " "); }

int UsageError(absl::string_view command, absl::string_view problem) {
  std::cerr << "bursarctl " << command << ": " << problem << "\n"
            << "Run 'bursarctl help " << command << "' for its usage.\n";
  return kExitUsageError;
}

int RpcError(const CommandContext& context, const grpc::Status& status) {
  std::cerr << "bursarctl: "
            << absl::StatusCodeToString(
                   static_cast<absl::StatusCode>(status.error_code()))
            << ": " << status.error_message() << "\n";
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      std::cerr << "bursarctl: is bursard running at " << context.server
                << "? Set --server or BURSAR_SERVER. If it serves TLS, give "
                   "--tls_ca (and --tls_cert/--tls_key for mutual TLS).\n";
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      std::cerr << "bursarctl: give a token with --token_file, "
                   "$BURSAR_TOKEN or --token (docs/security.md).\n";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      std::cerr << "bursarctl: no answer from " << context.server
                << " within --timeout=" << absl::FormatDuration(context.timeout)
                << ".\n";
      break;
    default:
      break;
  }
  return kExitRpcError;
}

std::unique_ptr<grpc::ClientContext> NewCall(const CommandContext& context) {
  auto call = std::make_unique<grpc::ClientContext>();
  call->set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoNanoseconds(context.timeout));
  if (!context.token.empty()) {
    call->AddMetadata("authorization", "Bearer " + context.token);
  }
  return call;
}

std::unique_ptr<v1::Admin::Stub> AdminStub(const CommandContext& context) {
  return v1::Admin::NewStub(context.channel);
}

int PrintJson(const google::protobuf::Message& response) {
  absl::StatusOr<std::string> json = ToJson(response);
  if (!json.ok()) {
    std::cerr << "bursarctl: " << json.status().message() << "\n";
    return kExitRpcError;
  }
  std::cout << *json;
  return kExitOk;
}

}  // namespace bursar::cli
