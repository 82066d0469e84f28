#ifndef BURSAR_POLICY_CALL_PLAN_H_
#define BURSAR_POLICY_CALL_PLAN_H_

// The policy half of Check: which model, how many output tokens, and what
// the call can cost at worst. The ledger half (reserving against budgets)
// lives in storage/; server/ joins the two.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "policy/compiled_policy.h"

namespace bursar::policy {

struct CallRequest {
  absl::string_view model;
  int64_t input_tokens = 0;
  // 0: the policy's defaults.max_output_tokens.
  int64_t max_output_tokens = 0;
};

struct CallPlan {
  // False when the policy refuses the call outright (e.g. an unknown model
  // under `unknown_model: deny`); deny_rule and deny_message say why.
  bool allowed = true;
  std::string deny_rule;
  std::string deny_message;

  std::string model;
  // Points into the policy's catalog; valid while the policy lives. Null
  // only when !allowed.
  const ModelPrice* price = nullptr;
  int64_t max_output_tokens = 0;
  // input_tokens at the input price (no cache discount assumed) plus
  // max_output_tokens at the output price, rounded up to the nano.
  int64_t estimated_cost_nanos = 0;
};

// Plans a call under `policy`. Errors: INVALID_ARGUMENT naming the field for
// an empty model, token counts outside [0, kMaxTokensPerCall], and an
// unknown model under `unknown_model: reject`.
absl::StatusOr<CallPlan> PlanCall(const CompiledPolicy& policy,
                                  const CallRequest& request);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_CALL_PLAN_H_
