#ifndef BURSAR_POLICY_LIMIT_ASKS_H_
#define BURSAR_POLICY_LIMIT_ASKS_H_

// The policy half of rate limits and concurrency pools: which counters and
// pools a planned call must fit, and the words for a denial. The engines
// that hold the counts are in limits/; Check (server/decider.cc) and the
// policy test runner join the two.

#include <cstdint>
#include <string>

#include "absl/container/inlined_vector.h"
#include "limits/concurrency_pools.h"
#include "limits/rate_limiter.h"
#include "policy/call_plan.h"
#include "policy/compiled_policy.h"

namespace bursar::policy {

struct LimitAsks {
  // Views into the policy and the request: valid while both live.
  absl::InlinedVector<limits::RateAsk, 4> rates;
  absl::InlinedVector<limits::PoolAsk, 2> pools;
  // What a call takes from token limits: its input tokens plus the output
  // tokens the plan grants.
  int64_t tokens = 0;
};

// Fills `asks` for `plan` (the model and output cap Check would answer):
// every rate limit and pool whose `when` holds. A rate limit whose key
// evaluates to an error is skipped (like a condition that cannot be
// decided); an empty key value is a counter of its own. Allocates nothing
// for up to four limits and two pools.
void MatchLimits(const CompiledPolicy& policy, const CallRequest& request,
                 const CallPlan& plan, absl::Time now, LimitAsks* asks);

// The rule names a denial is listed under in `reasons`.
std::string RateLimitRuleName(const limits::RateDenial& denial);
std::string PoolRuleName(const limits::PoolDenial& denial);

// "rate limit \"per-user\" for \"alice\": 49,800 of 50,000 tokens per
// minute used; this call needs 2,000; retry in 12.4s"
std::string RateDenialMessage(const limits::RateDenial& denial);
// "pool \"gpt41\" has 140 of 200 slots in flight; 60 are reserved for other
// priorities"
std::string PoolDenialMessage(const limits::PoolDenial& denial,
                              absl::string_view priority);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_LIMIT_ASKS_H_
