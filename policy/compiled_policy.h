#ifndef BURSAR_POLICY_COMPILED_POLICY_H_
#define BURSAR_POLICY_COMPILED_POLICY_H_

// The immutable, compiled form of a set of policy files. Built once by
// CompilePolicy (loader.h), then shared read-only between threads through
// std::shared_ptr<const CompiledPolicy>; every accessor is thread-safe.
// Conditions are compiled expr::Programs; evaluating them allocates nothing.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "limits/rate_limiter.h"
#include "policy/expr/expr.h"
#include "policy/pricing.h"
#include "policy/variables.h"

namespace bursar::policy {

// What Check does with a model that has no price.
enum class UnknownModelAction {
  kReject,  // INVALID_ARGUMENT naming the model (the default)
  kDeny,    // a VERDICT_DENY answer with reason "unknown-model"
};

struct Defaults {
  // Used when a request names no max_output_tokens.
  int64_t max_output_tokens = 4096;
  UnknownModelAction unknown_model = UnknownModelAction::kReject;
};

// A condition as written and as compiled.
struct Condition {
  std::string source;
  std::shared_ptr<const expr::Program> program;  // null: always true
};

using ModelMap = absl::flat_hash_map<std::string, std::string>;

// routes: the first route whose condition holds sends the call to
// `route_to`.
struct Route {
  std::string name;
  Condition when;
  std::string route_to;
};

// spend_slos: while `when` holds for `budget`, downgrade and/or cap.
struct SpendSlo {
  std::string name;
  std::string budget;
  Condition when;
  ModelMap downgrade;
  int64_t cap_output_tokens = 0;  // 0: no cap
  int escalate_after = 0;         // consecutive periods; 0: never
};

// One step of the on_exhausted chain, tried in order when a budget cannot
// fit the estimate.
struct ExhaustedStep {
  enum class Kind { kDowngrade, kCapToFit, kDeny };
  Kind kind = Kind::kDeny;
  ModelMap downgrade;             // kDowngrade
  int64_t min_output_tokens = 1;  // kCapToFit: smaller is useless
  std::string message;            // kDeny: optional words for the caller
};

// deny: refuse a call outright while `when` holds.
struct DenyRule {
  std::string name;
  Condition when;
  std::string message;
};

// rate_limits: while `when` holds, each call takes one request and its
// tokens (input + the output granted) from the counter of `key`'s value in
// every window; limits/rate_limiter.h is the engine.
struct RateLimitRule {
  std::string name;
  Condition when;
  Condition key;  // type string; program null: one shared counter
  // One entry per window length the rule limits, shortest first.
  std::vector<limits::WindowLimit> windows;
};

// concurrency: while `when` holds, each call takes a slot until it is
// reported; limits/concurrency_pools.h is the engine.
struct ConcurrencyPool {
  std::string name;
  Condition when;
  int64_t max_in_flight = 0;
  absl::flat_hash_map<std::string, int64_t> reserve;  // priority -> slots
};

// alerts: raised by the alert engine (alerts/) when `when` holds for a
// budget scope; without `budget`, every budget is tried in turn.
struct AlertRule {
  std::string name;
  std::string budget;  // optional: the budget `budget.*` refers to
  Condition when;
  std::string severity;  // info | warning | critical
};

// One built-in alert of the `alerting` section (docs/alerts.md): whether it
// runs, how severe it is, and its threshold. Which fields count depends on
// the alert (see AlertingSettings).
struct BuiltinAlert {
  bool enabled = true;
  std::string severity = "warning";  // info | warning | critical
  // The threshold as a fraction: an increase (0.30 is +30%), a variation, a
  // rate, or (projected_exhaustion) the part of the period that must have
  // passed before it projects.
  double ratio = 0;
  // Below these figures in the window looked at, the alert stays quiet
  // (little traffic makes ratios noisy). 0: no floor.
  int64_t min_requests = 0;
  int64_t min_spend_nanos = 0;
};

// alerting: the built-in alerts, each configurable and on by default.
struct AlertingSettings {
  // Each budget's alert_thresholds (85% and 100% by default); at 100% and
  // over the severity is critical.
  BuiltinAlert budget_thresholds{};
  // A spend SLO's condition holds for its budget; escalation after
  // SpendSlo::escalate_after consecutive periods of breach.
  BuiltinAlert spend_slo_breach{};
  std::string slo_escalation_severity = "critical";
  // Spend of the last hour vs the hour before.
  BuiltinAlert spend_hour_over_hour{true, "warning", 0.30, 0, 1'000'000'000};
  // Cost per request of the last 24 h vs the 24 h before.
  BuiltinAlert cost_per_request_24h{true, "warning", 0.15, 100, 0};
  // Tokens per request of the last 24 h vs the 24 h before, when the policy
  // did not change in either window.
  BuiltinAlert tokens_per_request_24h{true, "warning", 0.25, 100, 0};
  // Spend of the last 24 h vs the 24 h before, either way.
  BuiltinAlert daily_burn_variation{true, "info", 0.03, 0, 1'000'000'000};
  // The period's spend so far, projected linearly to its end, exceeds the
  // amount.
  BuiltinAlert projected_exhaustion{true, "warning", 0.10, 0, 0};
  // Retries over requests in the last hour.
  BuiltinAlert retry_rate{true, "warning", 0.02, 50, 0};
};
// attribution: the label keys usage rollups are kept by (besides budget,
// instance, model and provider), and how many distinct values of each get
// their own bucket per hour; later values go to kOtherValue.
struct Attribution {
  std::vector<std::string> dimensions;  // sorted, unique
  int64_t max_values_per_dimension = 1000;
};
inline constexpr absl::string_view kOtherValue = "other";
inline constexpr int64_t kMaxAttributionDimensions = 16;
inline constexpr int64_t kMaxValuesPerDimension = 100000;

// Everything a policy says, as the loader builds it.
struct PolicyRules {
  absl::flat_hash_map<std::string, ModelPrice> prices;
  Defaults defaults;
  absl::TimeZone timezone = absl::UTCTimeZone();
  std::string timezone_name = "UTC";
  std::vector<Route> routes;
  std::vector<SpendSlo> spend_slos;
  std::vector<ExhaustedStep> on_exhausted;  // empty: deny
  std::vector<DenyRule> deny;
  std::vector<RateLimitRule> rate_limits;
  std::vector<ConcurrencyPool> concurrency;
  std::vector<AlertRule> alerts;
  AlertingSettings alerting;
  Attribution attribution;
  // The slots the conditions above were compiled with (PolicySchema):
  // PlanCall and MatchLimits fill a VariableSlots table by it.
  VariableSlotLayout slots;
};

class CompiledPolicy {
 public:
  CompiledPolicy(std::string version, PolicyRules rules);
  // A policy of prices and defaults only.
  CompiledPolicy(std::string version,
                 absl::flat_hash_map<std::string, ModelPrice> prices,
                 Defaults defaults);

  // Content hash of the source files (16 lowercase hex digits), stable for
  // the same files whatever their order.
  const std::string& version() const { return version_; }
  const Defaults& defaults() const { return rules_.defaults; }
  // nullptr if the catalog has no price for `model`.
  const ModelPrice* FindPrice(absl::string_view model) const;
  const absl::flat_hash_map<std::string, ModelPrice>& prices() const {
    return rules_.prices;
  }
  const PolicyRules& rules() const { return rules_; }

 private:
  std::string version_;
  PolicyRules rules_;
};

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_COMPILED_POLICY_H_
