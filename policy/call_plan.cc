#include "policy/call_plan.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "policy/compiled_policy.h"
#include "policy/pricing.h"

namespace bursar::policy {
namespace {

// How many priced models an unknown-model error lists.
constexpr size_t kModelsToList = 5;

absl::Status CheckTokens(absl::string_view field, int64_t tokens) {
  if (tokens < 0 || tokens > kMaxTokensPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be between 0 and ", kMaxTokensPerCall,
                     ", got ", tokens));
  }
  return absl::OkStatus();
}

// `model "foo" has no price in policy 0123456789abcdef`
std::string NoPriceMessage(const CompiledPolicy& policy,
                           absl::string_view model) {
  return absl::StrCat("\"", model, "\" has no price in policy ",
                      policy.version());
}

// "gpt-4.1, gpt-4.1-mini, ... (12 more)": a few priced models, sorted so
// that the message is stable. Only built on the error path.
std::string SomePricedModels(const CompiledPolicy& policy) {
  std::vector<absl::string_view> models;
  models.reserve(policy.prices().size());
  for (const auto& [name, price] : policy.prices()) models.push_back(name);
  std::sort(models.begin(), models.end());
  const size_t total = models.size();
  if (total > kModelsToList) models.resize(kModelsToList);
  std::string list = absl::StrJoin(models, ", ");
  if (total > models.size()) {
    absl::StrAppend(&list, " (", total - models.size(), " more)");
  }
  return list;
}

}  // namespace

absl::StatusOr<CallPlan> PlanCall(const CompiledPolicy& policy,
                                  const CallRequest& request) {
  if (request.model.empty()) {
    return absl::InvalidArgumentError("model: must not be empty");
  }
  if (absl::Status s = CheckTokens("input_tokens", request.input_tokens);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckTokens("max_output_tokens", request.max_output_tokens);
      !s.ok()) {
    return s;
  }

  CallPlan plan;
  plan.model = std::string(request.model);
  plan.max_output_tokens = request.max_output_tokens > 0
                               ? request.max_output_tokens
                               : policy.defaults().max_output_tokens;
  plan.price = policy.FindPrice(request.model);
  if (plan.price == nullptr) {
    switch (policy.defaults().unknown_model) {
      case UnknownModelAction::kDeny:
        plan.allowed = false;
        plan.deny_rule = "unknown-model";
        plan.deny_message =
            absl::StrCat("model ", NoPriceMessage(policy, request.model));
        return plan;
      case UnknownModelAction::kReject:
        break;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("model: ", NoPriceMessage(policy, request.model),
                     "; priced models include ", SomePricedModels(policy)));
  }

  TokenCounts worst_case;
  worst_case.input_tokens = request.input_tokens;
  worst_case.cached_input_tokens = 0;  // no cache discount assumed
  worst_case.output_tokens = plan.max_output_tokens;
  absl::StatusOr<int64_t> cost = CostNanos(*plan.price, worst_case);
  if (!cost.ok()) return cost.status();
  plan.estimated_cost_nanos = *cost;
  return plan;
}

}  // namespace bursar::policy
