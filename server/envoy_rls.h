#ifndef BURSAR_SERVER_ENVOY_RLS_H_
#define BURSAR_SERVER_ENVOY_RLS_H_

// Envoy's rate-limit service API (envoy.service.ratelimit.v3, wire-compatible)
// answered by the Decider, so Envoy's ratelimit filter and Envoy AI Gateway
// can use bursard as their rate-limit service. docs/integrations/envoy.md
// describes the mapping; docs/decisions/009 why the hit is settled at once.
//
// In short: every descriptor entry of the request becomes a label (the same
// key in two descriptors must carry the same value), the request's domain
// the label "domain"; the entry "model" names the model, "provider" the
// provider, "token_kind" (input | cached_input | output, default output)
// how the hits are priced. The hits (the descriptor's hits_addend, else the
// request's, where 0 means 1) are tokens. One Check decides for the whole
// request; with hits > 0 it is at once Reported with those tokens as usage,
// so the budgets are charged exactly what Envoy counted. Hits = 0 (a
// descriptor's explicit hits_addend of 0) is a dry run that charges nothing.
//
// Thread-safe (the Decider is).

#include "absl/status/status.h"
#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"
#include "envoy/service/ratelimit/v3/rls.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/auth/authenticator.h"
#include "server/decider.h"
#include "server/overload.h"

namespace bursar::server {

// Descriptor keys with a meaning of their own.
inline constexpr char kRlsModelKey[] = "model";
inline constexpr char kRlsProviderKey[] = "provider";
inline constexpr char kRlsTokenKindKey[] = "token_kind";
// The label that carries RateLimitRequest.domain (reserved as an entry key).
inline constexpr char kRlsDomainLabel[] = "domain";

// The plain-call part: RateLimitRequest in, RateLimitResponse out.
class EnvoyRateLimiter {
 public:
  // `decider` must outlive this object.
  explicit EnvoyRateLimiter(Decider* decider) : decider_(decider) {}

  // Over budget (or any Bursar denial) is an OK status with
  // overall_code OVER_LIMIT. INVALID_ARGUMENT, naming the descriptor and
  // entry, for a request Bursar cannot map (no domain, no descriptors, an
  // empty key or value, no "model" entry, conflicting values, a bad
  // token_kind, too many hits); the Decider's errors otherwise.
  absl::Status ShouldRateLimit(
      const envoy::service::ratelimit::v3::RateLimitRequest& request,
      envoy::service::ratelimit::v3::RateLimitResponse* response);

 private:
  Decider* const decider_;
};

// The gRPC adapter (callback API), served on bursard's main port. With a
// CallGate (bursard: the one of the Decision and Admin services) each call
// enters it first, as theirs do (server/overload.h): a call whose deadline
// has passed gets DEADLINE_EXCEEDED, one past --max_in_flight_calls
// RESOURCE_EXHAUSTED, and neither does any work; admitted calls run on the
// gate's workers. Without one (null) the call runs on gRPC's thread.
class EnvoyRateLimitService final
    : public envoy::service::ratelimit::v3::RateLimitService::CallbackService {
 public:
  // The pointers must outlive the service.
  EnvoyRateLimitService(EnvoyRateLimiter* limiter,
                        const auth::Authenticator* auth,
                        CallGate* gate = nullptr)
      : limiter_(limiter), auth_(auth), gate_(gate) {}

  grpc::ServerUnaryReactor* ShouldRateLimit(
      grpc::CallbackServerContext* context,
      const envoy::service::ratelimit::v3::RateLimitRequest* request,
      envoy::service::ratelimit::v3::RateLimitResponse* response) override;

 private:
  EnvoyRateLimiter* const limiter_;
  const auth::Authenticator* const auth_;
  CallGate* const gate_;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_ENVOY_RLS_H_
