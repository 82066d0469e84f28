#ifndef BURSAR_POLICY_CALL_PLAN_H_
#define BURSAR_POLICY_CALL_PLAN_H_

// The policy half of Check: which model, how many output tokens, and what
// the call can cost at worst, after the policy's rules. The ledger half
// (reserving against budgets) lives in storage/; server/ joins the two:
//
//   plan = PlanCall(...)                      routes, spend SLOs, deny rules
//   while the ledger cannot fit plan.estimated_cost_nanos:
//     if !NextExhaustedStep(...) -> DENY      on_exhausted: downgrade,
//                                             cap_to_fit, deny
//
// Precedence: one route applies (the first whose condition holds); spend
// SLOs then downgrade and cap in order, the smallest cap wins (the
// request's own max_output_tokens included); deny rules see the final model
// and estimate, and a deny always wins.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "policy/compiled_policy.h"
#include "policy/usage_view.h"
#include "policy/variables.h"

namespace bursar::policy {

struct CallRequest {
  absl::string_view model;
  absl::string_view provider;
  absl::string_view priority;
  LabelSpan labels;  // sorted by key
  int64_t input_tokens = 0;
  // 0: the policy's defaults.max_output_tokens.
  int64_t max_output_tokens = 0;
  int64_t attempt = 1;
};

// What conditions may read besides the request.
struct DecisionContext {
  const UsageView* usage = nullptr;  // null: no budgets
  absl::Time now = absl::UnixEpoch();
  const KpiReader* kpis = nullptr;      // kpi.*; null: all zero
  const SignalView* signals = nullptr;  // signal[...]; null: all NaN
};

// A rule that shaped the answer. PlanCall formats no text: message() puts
// the reason into words when the caller wants them, from the figures kept
// here (views into the policy: call it while the policy lives).
struct FiredRule {
  std::string rule;  // "route:<name>", "slo:<name>", "deny:<name>",
                     // "on_exhausted:downgrade", ...
  // E.g. "routed gpt-4.1 to gpt-4.1-mini because request.labels.task ==
  // \"triage\"".
  std::string message() const;

  // What message() is made of.
  enum class Kind : char { kRoute, kSlo, kExhaustedDowngrade, kCapToFit };
  Kind kind = Kind::kRoute;
  std::string from_model;       // the model before (moved from the plan)
  absl::string_view to_model;   // the model after; empty: not downgraded
  absl::string_view because;    // the condition's source
  absl::string_view budget;     // kSlo: the SLO's budget
  double used_ratio = 0;        // kSlo: that budget's spent / amount
  int64_t output_tokens = 0;    // the output cap after; 0: not capped
  int64_t before = 0;           // kCapToFit: the cap before; kExhausted-
                                // Downgrade: the estimate before (nanos)
  int64_t remaining_nanos = 0;  // on_exhausted: what the budget has left
};

struct CallPlan {
  // False when the policy refuses the call outright; deny_rule and
  // deny_message say why.
  bool allowed = true;
  std::string deny_rule;
  std::string deny_message;

  std::string model;
  // Points into the policy's catalog; valid while the policy lives. Null
  // only when !allowed for an unpriced model.
  const ModelPrice* price = nullptr;
  int64_t max_output_tokens = 0;
  // input_tokens at the input price (no cache discount assumed) plus
  // max_output_tokens at the output price, rounded up to the nano.
  int64_t estimated_cost_nanos = 0;
  // Every rule that fired, in the order it did (two without a heap
  // block: a route and an SLO).
  absl::InlinedVector<FiredRule, 2> fired;
  // The next on_exhausted step to try.
  size_t next_exhausted_step = 0;
};

// Plans a call under `policy`. Errors: INVALID_ARGUMENT naming the field for
// an empty model, token counts outside [0, kMaxTokensPerCall], and an
// unknown model under `unknown_model: reject`.
absl::StatusOr<CallPlan> PlanCall(const CompiledPolicy& policy,
                                  const CallRequest& request,
                                  const DecisionContext& context = {});

// `now` as a civil time in `zone`, what now.* conditions read. A time-zone
// conversion costs tens of nanoseconds, so each thread remembers the last
// second it converted: the calls of one second (and a benchmark's fixed
// clock) convert once.
absl::CivilSecond LocalCivilTime(absl::Time now, absl::TimeZone zone);

// After the ledger could not fit `plan` (the tightest matching budget has
// `remaining_nanos` left), applies the next on_exhausted step that changes
// the plan and returns true; returns false when the chain ends in a denial
// (a `deny` step, or no step left), with plan->deny_* set.
bool NextExhaustedStep(const CompiledPolicy& policy, const CallRequest& request,
                       int64_t remaining_nanos, CallPlan* plan);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_CALL_PLAN_H_
