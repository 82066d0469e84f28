#include "policy/call_plan.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "policy/compiled_policy.h"
#include "policy/money.h"
#include "policy/pricing.h"
#include "policy/variables.h"

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

absl::Status Estimate(CallPlan& plan, int64_t input_tokens) {
  TokenCounts worst_case;
  worst_case.input_tokens = input_tokens;
  worst_case.cached_input_tokens = 0;  // no cache discount assumed
  worst_case.output_tokens = plan.max_output_tokens;
  absl::StatusOr<int64_t> cost = CostNanos(*plan.price, worst_case);
  if (!cost.ok()) return cost.status();
  plan.estimated_cost_nanos = *cost;
  return absl::OkStatus();
}

bool Holds(const Condition& condition, const PolicyActivation& activation) {
  return condition.program == nullptr ||
         condition.program->EvalBool(activation);
}

std::string Percent(double ratio) {
  return absl::StrFormat("%.1f%%", ratio * 100);
}

}  // namespace

std::string FiredRule::message() const {
  switch (kind) {
    case Kind::kRoute:
      return absl::StrCat("routed ", from_model, " to ", to_model, " because ",
                          because);
    case Kind::kSlo: {
      std::string actions;
      if (!to_model.empty()) {
        absl::StrAppend(&actions, "downgraded ", from_model, " to ", to_model);
      }
      if (output_tokens > 0) {
        absl::StrAppend(&actions, actions.empty() ? "" : ", ",
                        "capped output at ", output_tokens, " tokens");
      }
      return absl::StrCat(actions, ": budget \"", budget, "\" is ",
                          Percent(used_ratio), " spent and ", because);
    }
    case Kind::kExhaustedDowngrade:
      return absl::StrCat("a budget has $", FormatUsdNanos(remaining_nanos),
                          " left, less than the $", FormatUsdNanos(before), " ",
                          from_model, " may cost; downgraded to ", to_model);
    case Kind::kCapToFit:
      return absl::StrCat("capped output from ", before, " to ", output_tokens,
                          " tokens to fit the $",
                          FormatUsdNanos(remaining_nanos),
                          " a budget has left");
  }
  return rule;
}

absl::CivilSecond LocalCivilTime(absl::Time now, absl::TimeZone zone) {
  struct Memo {
    absl::TimeZone zone;
    int64_t unix_seconds = 0;
    absl::CivilSecond civil;
    bool valid = false;
  };
  thread_local Memo memo;
  const int64_t unix_seconds = absl::ToUnixSeconds(now);  // floor
  if (!memo.valid || memo.unix_seconds != unix_seconds || memo.zone != zone) {
    memo.zone = zone;
    memo.unix_seconds = unix_seconds;
    memo.civil = absl::ToCivilSecond(now, zone);
    memo.valid = true;
  }
  return memo.civil;
}

absl::StatusOr<CallPlan> PlanCall(const CompiledPolicy& policy,
                                  const CallRequest& request,
                                  const DecisionContext& context) {
  // The plan is built in the object returned (every return below returns
  // `result`), so that it is not moved on the way out.
  absl::StatusOr<CallPlan> result(absl::in_place);
  if (request.model.empty()) {
    result = absl::InvalidArgumentError("model: must not be empty");
    return result;
  }
  if (absl::Status s = CheckTokens("input_tokens", request.input_tokens);
      !s.ok()) {
    result = std::move(s);
    return result;
  }
  if (absl::Status s =
          CheckTokens("max_output_tokens", request.max_output_tokens);
      !s.ok()) {
    result = std::move(s);
    return result;
  }
  const PolicyRules& rules = policy.rules();
  // Only conditions read the civil time (a policy without now.* needs none).
  const absl::CivilSecond local_now =
      rules.slots.reads_now ? LocalCivilTime(context.now, rules.timezone)
                            : absl::CivilSecond();

  CallPlan& plan = *result;
  plan.model = std::string(request.model);
  plan.max_output_tokens = request.max_output_tokens > 0
                               ? request.max_output_tokens
                               : policy.defaults().max_output_tokens;
  RequestFacts facts;
  facts.model = request.model;
  facts.provider = request.provider;
  facts.priority = request.priority;
  facts.labels = request.labels;
  facts.input_tokens = request.input_tokens;
  facts.max_output_tokens = plan.max_output_tokens;
  facts.attempt = request.attempt;
  plan.price = policy.FindPrice(request.model);
  // Whether plan.estimated_cost_nanos is the estimate for plan.price and
  // plan.max_output_tokens.
  bool estimated = false;
  if (plan.price != nullptr) {
    if (absl::Status s = Estimate(plan, request.input_tokens); !s.ok()) {
      result = std::move(s);
      return result;
    }
    facts.estimated_cost_nanos = plan.estimated_cost_nanos;
    estimated = true;
  }

  // The variables conditions read most, once for the call (refreshed
  // whenever facts change below).
  VariableSlots slots;
  slots.Fill(facts, local_now, rules.slots);

  // One route: the first whose condition holds.
  const KpiSources sources{context.kpis, context.signals, {}};
  const PolicyActivation request_view(&facts, context.usage, context.now,
                                      local_now, nullptr, &sources, &slots);
  for (const Route& route : rules.routes) {
    if (!Holds(route.when, request_view)) continue;
    if (route.route_to != plan.model) {
      FiredRule& fired = plan.fired.emplace_back();
      fired.rule = absl::StrCat("route:", route.name);
      fired.kind = FiredRule::Kind::kRoute;
      fired.from_model = std::move(plan.model);
      fired.to_model = route.route_to;
      fired.because = route.when.source;
      plan.model = route.route_to;
      plan.price = policy.FindPrice(plan.model);  // routes name priced models
      estimated = false;
    }
    break;
  }

  if (plan.price == nullptr) {
    switch (policy.defaults().unknown_model) {
      case UnknownModelAction::kDeny:
        plan.allowed = false;
        plan.deny_rule = "unknown-model";
        plan.deny_message =
            absl::StrCat("model ", NoPriceMessage(policy, request.model));
        return result;
      case UnknownModelAction::kReject:
        break;
    }
    result = absl::InvalidArgumentError(
        absl::StrCat("model: ", NoPriceMessage(policy, request.model),
                     "; priced models include ", SomePricedModels(policy)));
    return result;
  }
  if (!estimated) {
    if (absl::Status s = Estimate(plan, request.input_tokens); !s.ok()) {
      result = std::move(s);
      return result;
    }
  }

  // Spend SLOs: each may downgrade the current model and cap the output.
  // The facts (and their slots) follow the plan: `stale` says the plan
  // changed since they were last set. The model's hash serves every SLO's
  // downgrade map until an SLO changes the model.
  bool stale = true;
  size_t model_hash = ModelMap::hasher()(plan.model);
  for (const SpendSlo& slo : rules.spend_slos) {
    if (context.usage == nullptr) break;
    // An SLO that could neither downgrade the current model nor lower the
    // output cap changes nothing and is not reported, so its budget and
    // condition need no look.
    auto to = slo.downgrade.find(plan.model, model_hash);
    const bool can_downgrade = to != slo.downgrade.end();
    if (!(slo.cap_output_tokens > 0 &&
          slo.cap_output_tokens < plan.max_output_tokens) &&
        !can_downgrade) {
      continue;
    }
    const std::optional<BudgetUsage> usage = context.usage->Budget(slo.budget);
    if (!usage.has_value()) continue;  // the budget does not apply
    if (stale) {
      facts.model = plan.model;
      facts.max_output_tokens = plan.max_output_tokens;
      facts.estimated_cost_nanos = plan.estimated_cost_nanos;
      slots.Refresh(facts);
      stale = false;
    }
    const KpiSources slo_sources{context.kpis, context.signals, slo.budget};
    const PolicyActivation slo_view(&facts, context.usage, context.now,
                                    local_now, &*usage, &slo_sources, &slots);
    if (!Holds(slo.when, slo_view)) continue;
    const bool downgrade = can_downgrade;
    const bool cap = slo.cap_output_tokens > 0 &&
                     slo.cap_output_tokens < plan.max_output_tokens;
    if (!downgrade && !cap) continue;  // nothing left to change
    FiredRule& fired = plan.fired.emplace_back();
    fired.rule = absl::StrCat("slo:", slo.name);
    fired.kind = FiredRule::Kind::kSlo;
    fired.because = slo.when.source;
    fired.budget = slo.budget;
    fired.used_ratio =
        usage->amount_nanos > 0
            ? static_cast<double>(usage->spent_nanos) / usage->amount_nanos
            : 0.0;
    if (downgrade) {
      fired.from_model = std::move(plan.model);
      fired.to_model = to->second;
      plan.model = to->second;
      plan.price = policy.FindPrice(plan.model);
      model_hash = ModelMap::hasher()(plan.model);
    }
    if (cap) {
      fired.output_tokens = slo.cap_output_tokens;
      plan.max_output_tokens = slo.cap_output_tokens;
    }
    stale = true;
    if (absl::Status s = Estimate(plan, request.input_tokens); !s.ok()) {
      result = std::move(s);
      return result;
    }
  }

  // Deny rules see the final model and estimate; a deny always wins.
  facts.model = plan.model;
  facts.max_output_tokens = plan.max_output_tokens;
  facts.estimated_cost_nanos = plan.estimated_cost_nanos;
  slots.Refresh(facts);
  const PolicyActivation final_view(&facts, context.usage, context.now,
                                    local_now, nullptr, &sources, &slots);
  for (const DenyRule& rule : rules.deny) {
    if (!Holds(rule.when, final_view)) continue;
    plan.allowed = false;
    plan.deny_rule = absl::StrCat("deny:", rule.name);
    plan.deny_message = rule.message.empty()
                            ? absl::StrCat("denied by rule ", rule.name,
                                           " because ", rule.when.source)
                            : rule.message;
    break;
  }
  return result;
}

bool NextExhaustedStep(const CompiledPolicy& policy, const CallRequest& request,
                       int64_t remaining_nanos, CallPlan* plan) {
  const std::vector<ExhaustedStep>& steps = policy.rules().on_exhausted;
  while (plan->next_exhausted_step < steps.size()) {
    const ExhaustedStep& step = steps[plan->next_exhausted_step++];
    switch (step.kind) {
      case ExhaustedStep::Kind::kDowngrade: {
        auto to = step.downgrade.find(plan->model);
        if (to == step.downgrade.end()) continue;
        const int64_t before = plan->estimated_cost_nanos;
        std::string from = plan->model;
        plan->model = to->second;
        plan->price = policy.FindPrice(plan->model);
        if (!Estimate(*plan, request.input_tokens).ok()) continue;
        FiredRule& fired = plan->fired.emplace_back();
        fired.rule = "on_exhausted:downgrade";
        fired.kind = FiredRule::Kind::kExhaustedDowngrade;
        fired.from_model = std::move(from);
        fired.to_model = to->second;
        fired.before = before;
        fired.remaining_nanos = remaining_nanos;
        return true;
      }
      case ExhaustedStep::Kind::kCapToFit: {
        const ModelPrice& price = *plan->price;
        if (price.output_nanos_per_mtok <= 0) continue;
        // The largest k with ceil((input*in + k*out) / 1e6) <= remaining.
        const __int128 room =
            static_cast<__int128>(remaining_nanos) * 1'000'000 -
            static_cast<__int128>(request.input_tokens) *
                price.input_nanos_per_mtok;
        if (room < 0) continue;
        const __int128 fit = room / price.output_nanos_per_mtok;
        if (fit < step.min_output_tokens || fit >= plan->max_output_tokens) {
          continue;
        }
        const int64_t before = plan->max_output_tokens;
        plan->max_output_tokens = static_cast<int64_t>(fit);
        if (!Estimate(*plan, request.input_tokens).ok()) continue;
        FiredRule& fired = plan->fired.emplace_back();
        fired.rule = "on_exhausted:cap_to_fit";
        fired.kind = FiredRule::Kind::kCapToFit;
        fired.output_tokens = plan->max_output_tokens;
        fired.before = before;
        fired.remaining_nanos = remaining_nanos;
        return true;
      }
      case ExhaustedStep::Kind::kDeny:
        plan->allowed = false;
        plan->deny_rule = "on_exhausted:deny";
        plan->deny_message = step.message;
        return false;
    }
  }
  plan->allowed = false;
  return false;
}

}  // namespace bursar::policy
