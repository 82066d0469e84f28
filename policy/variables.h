#ifndef BURSAR_POLICY_VARIABLES_H_
#define BURSAR_POLICY_VARIABLES_H_

// The variables policy conditions may read, and how they get their values:
//
//   request.model, request.provider, request.priority          string
//   request.labels.<key>, request.labels["<key>"]              string ("" if
//   absent) request.input_tokens, request.max_output_tokens, request.attempt
//   int request.estimated_cost                                    money
//   budget.amount, .spent, .held, .remaining                  money
//   budget.used_ratio, budget.period_elapsed_ratio            double
//   budgets["<name>"].<any budget field>                      as budget.*
//   now.hour, now.minute, now.day_of_month, now.month         int
//   now.weekday                                               string ("monday")
//   kpi.<metric>_<window>                                     see below
//   kpi.burn_rate                                             double
//   kpi.projected_spend                                       money
//   signal["<name>"]                                          double (NaN if
//                                                             never reported)
//
// `budget.*` and `kpi.*` mean the rule's own budget and exist only in
// sections that name one (spend_slos, alerts). `now.*` is local time in the
// policy's timezone. A budget that does not exist or does not apply reads as
// zero (used_ratio 0), and so do its KPIs.
//
// KPI metrics: spend, cost_per_request, cost_per_success (money); requests,
// successes, failures, retries, input_tokens, cached_input_tokens,
// output_tokens (int); tokens_per_request, retry_rate, error_rate (double);
// p95_latency (duration); quality_score (double: the mean reported
// quality_score, NaN without any). Windows (policy::KpiWindow): 1h, prev_1h,
// 24h, prev_24h, 1h_last_week; e.g. kpi.spend_1h, kpi.error_rate_prev_24h. A
// ratio over zero requests is 0. docs/usage-and-kpis.md has the details.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "policy/expr/expr.h"
#include "policy/kpi_view.h"
#include "policy/usage_view.h"

namespace bursar::policy {

// Which section a condition is written in decides which variables exist.
struct VariableScope {
  bool has_own_budget = false;  // budget.*, kpi.*
};

// Slots (expr::VariableRef::slot; docs/decisions/026-variable-slots.md):
// the variables of the request and the clock are read from a table filled
// once per call (VariableSlots) instead of through PolicyActivation::Get.
// The request.* and now.* fields have fixed slots; each label key a policy
// reads gets one of kMaxLabelSlots more, in the order they are first named
// (later keys are read through Get). One layout per policy: every
// condition of a policy is compiled against it.
inline constexpr int kMaxLabelSlots = 8;
struct VariableSlotLayout {
  // The label key of slot kFirstLabelSlot + i.
  std::vector<std::string> label_keys;
  // Whether a condition reads now.* (else the call needs no civil time),
  // and now.weekday in particular.
  bool reads_now = false;
  bool reads_weekday = false;
};

class PolicySchema final : public expr::Schema {
 public:
  // With a layout, variables get slots in it (and new label keys are added
  // to it); without one, none does.
  explicit PolicySchema(VariableScope scope,
                        VariableSlotLayout* layout = nullptr)
      : scope_(scope), layout_(layout) {}
  absl::StatusOr<expr::VariableRef> Resolve(
      const std::vector<expr::PathSegment>& path) const override;

 private:
  // The variable `path` names, without a slot.
  absl::StatusOr<expr::VariableRef> ResolveName(
      const std::vector<expr::PathSegment>& path) const;

  VariableScope scope_;
  VariableSlotLayout* layout_;
};

// Labels sorted by key (as storage::LabelSet::entries() gives them).
using LabelSpan =
    absl::Span<const std::pair<absl::string_view, absl::string_view>>;

// What a condition sees of the request being decided. Views only: the
// caller keeps the strings alive while conditions evaluate.
struct RequestFacts {
  absl::string_view model;
  absl::string_view provider;
  absl::string_view priority;
  LabelSpan labels;
  int64_t input_tokens = 0;
  int64_t max_output_tokens = 0;
  int64_t estimated_cost_nanos = 0;
  int64_t attempt = 1;
};

// Where `kpi.*` and `signal[...]` read from; any pointer may be null (the
// variables then read as zero, and signals as NaN).
struct KpiSources {
  const KpiReader* kpis = nullptr;
  const SignalView* signals = nullptr;
  // The rule's own budget, which kpi.* reads.
  absl::string_view own_budget_name;
};

// The slot table of one call: the values of request.* (from RequestFacts),
// now.* and the layout's labels, as PolicyActivation::Get would give them.
// Fill once per call; after the facts of the request change (PlanCall's
// model, output cap and estimate), Refresh before evaluating again. No
// allocation.
class VariableSlots {
 public:
  // Every slot: request.* from `request`, now.* from `local_now` (when the
  // layout reads now.*), each label of the layout from request.labels.
  void Fill(const RequestFacts& request, absl::CivilSecond local_now,
            const VariableSlotLayout& layout);
  // request.model, request.max_output_tokens and request.estimated_cost
  // again from `request`.
  void Refresh(const RequestFacts& request);
  const expr::Value* data() const { return storage_.values; }

  // The first label slot; the ones before are request.* and now.*.
  static constexpr int kFirstLabelSlot = 13;
  static constexpr int kSlots = kFirstLabelSlot + kMaxLabelSlots;

 private:
  // Left uninitialised until Fill: a slot Fill skips (now.* when the layout
  // does not read it, labels past the layout's) is never read.
  union Storage {
    Storage() {}
    expr::Value values[kSlots];
  };
  Storage storage_;
};

// Feeds one evaluation of a condition. Cheap to build per rule; allocates
// nothing itself (a KpiReader may, when a kpi.* variable is read).
class PolicyActivation final : public expr::Activation {
 public:
  // `own_budget` is what `budget.*` reads (spend_slos, alerts): the figures
  // the caller already looked up, so conditions do not look them up again.
  // `slots`, if any, must have been filled from `*request` and `local_now`
  // with the layout the conditions were compiled against (and refreshed
  // since `*request` last changed).
  PolicyActivation(const RequestFacts* request, const UsageView* usage,
                   absl::Time now, absl::CivilSecond local_now,
                   const BudgetUsage* own_budget = nullptr,
                   const KpiSources* kpi = nullptr,
                   const VariableSlots* slots = nullptr)
      : expr::Activation(slots == nullptr ? nullptr : slots->data()),
        request_(request),
        usage_(usage),
        now_(now),
        local_now_(local_now),
        own_budget_(own_budget),
        kpi_(kpi) {}

  expr::Value Get(const expr::VariableRef& ref) const override;

 private:
  expr::Value BudgetField(int field, const BudgetUsage& figures) const;
  expr::Value NamedBudgetField(int field, absl::string_view name) const;
  expr::Value KpiField(int id) const;
  expr::Value SignalValue(absl::string_view name) const;

  const RequestFacts* request_;
  const UsageView* usage_;
  absl::Time now_;
  absl::CivilSecond local_now_;
  const BudgetUsage* own_budget_;
  const KpiSources* kpi_;
};

// The value of a KPI metric (e.g. "cost_per_request") from the counts of a
// window, as conditions read it; false for an unknown metric. Shared by the
// alert engine so alerts and conditions agree.
bool KpiMetricValue(absl::string_view metric, const KpiFigures& figures,
                    expr::Value* out);

// The value of `key` among sorted labels, "" if absent.
absl::string_view FindLabel(LabelSpan labels, absl::string_view key);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_VARIABLES_H_
