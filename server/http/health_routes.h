#ifndef BURSAR_SERVER_HTTP_HEALTH_ROUTES_H_
#define BURSAR_SERVER_HTTP_HEALTH_ROUTES_H_

// GET /healthz and GET /readyz on the HTTP side port: health probes for
// clients that cannot use the gRPC health service, above all kubelet's
// httpGet probes (Kubernetes' `grpc:` probes cannot speak TLS, the HTTP side
// port is plaintext; docs/decisions/020).
//
//   GET /healthz  liveness: 200 {"status":"ALIVE"} whenever the HTTP port
//                 answers. It never looks at readiness: a draining bursard is
//                 alive and must not be restarted for draining.
//   GET /readyz   readiness: exactly what the gRPC health service
//                 (grpc.health.v1.Health/Check, service "": the whole server)
//                 says, never a second notion of readiness.
//                 200 {"status":"SERVING"} when it says SERVING;
//                 503 {"status":"NOT_SERVING"} (or the other status it
//                 says) otherwise, e.g. from the moment bursard starts
//                 draining on SIGTERM;
//                 503 {"status":"UNKNOWN","message":"..."} when it could not
//                 be asked (e.g. the gRPC server no longer takes calls).
//
// Both are GET routes, so the server's CallGate never counts or refuses
// them; bursard lets them through its authentication gate like /metrics
// (IsProbePath). Answers carry `Cache-Control: no-store`.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/http/http_server.h"

namespace bursar::server::http {

// The values of grpc.health.v1.HealthCheckResponse.ServingStatus (same
// numbers).
enum class ServingStatus {
  kUnknown = 0,
  kServing = 1,
  kNotServing = 2,
  kServiceUnknown = 3,
};

// "UNKNOWN", "SERVING", "NOT_SERVING" or "SERVICE_UNKNOWN".
absl::string_view ServingStatusName(ServingStatus status);

// Where /readyz reads readiness from: GrpcHealthReadiness
// (grpc_health_readiness.h) in bursard, fakes in tests. Thread-safe: the
// HTTP workers call it concurrently.
class ReadinessSource {
 public:
  virtual ~ReadinessSource() = default;
  // The serving status of the whole server, or why it could not be read.
  virtual absl::StatusOr<ServingStatus> ServerServingStatus() = 0;
};

// True for the probe paths "/healthz" and "/readyz".
bool IsProbePath(absl::string_view path);

// Adds GET /healthz and GET /readyz to `server`. `readiness` must outlive
// the server.
void AddHealthRoutes(HttpServer* server, ReadinessSource* readiness);

}  // namespace bursar::server::http

#endif  // BURSAR_SERVER_HTTP_HEALTH_ROUTES_H_
