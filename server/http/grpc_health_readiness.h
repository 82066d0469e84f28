#ifndef BURSAR_SERVER_HTTP_GRPC_HEALTH_READINESS_H_
#define BURSAR_SERVER_HTTP_GRPC_HEALTH_READINESS_H_

// Readiness as a grpc::Server's own health service states it: every read is
// a grpc.health.v1.Health/Check call for the service "" (the whole server)
// over the server's in-process channel, so /readyz and gRPC health clients
// can never disagree. The call is generic (raw bytes): no health.proto stubs
// are needed, and the answer is decoded with protobuf's wire-format reader.
//
// With gRPC's default health service (grpc::EnableDefaultHealthCheckService)
// the status is SERVING from BuildAndStart until Drain().
//
// Drain() must come before grpc::Server::Shutdown(): gRPC 1.51 crashes
// (SIGSEGV in grpc_call_stack_init) when a call is created on the in-process
// channel of a server that has shut down, so after Drain() no call is made
// and reads answer NOT_SERVING, which is what the health service then says
// for good.

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"
#include "server/http/health_routes.h"

namespace bursar::server::http {

class GrpcHealthReadiness final : public ReadinessSource {
 public:
  // Reads the health of `server` (started; it must outlive this object
  // unless Drain() was called); every read waits at most `timeout` for the
  // answer.
  explicit GrpcHealthReadiness(grpc::Server* server,
                               absl::Duration timeout = absl::Seconds(1));

  // The status the health service answers for "". Errors: the call's
  // status (e.g. DEADLINE_EXCEEDED after `timeout`, NOT_FOUND or
  // UNIMPLEMENTED without a health service); INTERNAL for an answer that is
  // not a HealthCheckResponse. NOT_SERVING after Drain(). Thread-safe.
  absl::StatusOr<ServingStatus> ServerServingStatus() override;

  // Starts the server's drain: its health service answers NOT_SERVING from
  // now on, for good (grpc::HealthCheckServiceInterface::Shutdown(), for
  // gRPC health clients as for /readyz); waits for the reads in progress and
  // makes no more calls. Idempotent; thread-safe.
  void Drain();

 private:
  // One Health/Check call.
  absl::StatusOr<ServingStatus> AskHealthService();

  grpc::Server* const server_;
  const std::shared_ptr<grpc::Channel> channel_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int reads_in_progress_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace bursar::server::http

#endif  // BURSAR_SERVER_HTTP_GRPC_HEALTH_READINESS_H_
