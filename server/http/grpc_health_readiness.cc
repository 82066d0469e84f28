#include "server/http/grpc_health_readiness.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/slice.h"

namespace bursar::server::http {
namespace {

constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";

// Field 1 of grpc.health.v1.HealthCheckResponse: `ServingStatus status`.
constexpr int kStatusField = 1;

absl::StatusOr<ServingStatus> DecodeHealthCheckResponse(
    const grpc::ByteBuffer& response) {
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) {
    return absl::InternalError("cannot read the health check answer");
  }
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) {
    return absl::InternalError(
        "the health check answer is not a HealthCheckResponse");
  }
  // proto3: an absent status is 0 (UNKNOWN); the last occurrence wins.
  uint64_t status = 0;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& field = fields.field(i);
    if (field.number() != kStatusField) continue;
    if (field.type() != google::protobuf::UnknownField::TYPE_VARINT) {
      return absl::InternalError(
          "the health check answer's status is not an enum value");
    }
    status = field.varint();
  }
  switch (status) {
    case 0:
      return ServingStatus::kUnknown;
    case 1:
      return ServingStatus::kServing;
    case 2:
      return ServingStatus::kNotServing;
    case 3:
      return ServingStatus::kServiceUnknown;
    default:
      return absl::InternalError(
          absl::StrCat("the health check answered an unknown status ", status));
  }
}

}  // namespace

GrpcHealthReadiness::GrpcHealthReadiness(grpc::Server* server,
                                         absl::Duration timeout)
    : server_(server),
      channel_(server->InProcessChannel(grpc::ChannelArguments())),
      timeout_(timeout) {}

void GrpcHealthReadiness::Drain() {
  absl::MutexLock lock(&mu_);
  if (draining_) return;
  draining_ = true;
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService();
      health != nullptr) {
    health->Shutdown();
  }
  mu_.Await(absl::Condition(
      +[](int* reads) { return *reads == 0; }, &reads_in_progress_));
}

absl::StatusOr<ServingStatus> GrpcHealthReadiness::ServerServingStatus() {
  {
    absl::MutexLock lock(&mu_);
    // What the health service says for good once it is shut down.
    if (draining_) return ServingStatus::kNotServing;
    ++reads_in_progress_;
  }
  absl::StatusOr<ServingStatus> status = AskHealthService();
  absl::MutexLock lock(&mu_);
  --reads_in_progress_;
  return status;
}

absl::StatusOr<ServingStatus> GrpcHealthReadiness::AskHealthService() {
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  // HealthCheckRequest{service: ""} is the empty message.
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&context, kHealthCheckMethod, grpc::StubOptions(), &request,
                 &response, [&status, &done](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  // The deadline bounds the wait: the callback always runs.
  done.WaitForNotification();
  if (!status.ok()) {
    // grpc::StatusCode and absl::StatusCode share their numbers.
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  return DecodeHealthCheckResponse(response);
}

}  // namespace bursar::server::http
