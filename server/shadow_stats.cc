#include "server/shadow_stats.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bursar::server {

absl::string_view ShadowDifferenceName(uint32_t bit) {
  switch (bit) {
    case kShadowVerdict:
      return "verdict";
    case kShadowDenyRule:
      return "deny_rule";
    case kShadowModel:
      return "model";
    case kShadowMaxOutputTokens:
      return "max_output_tokens";
    case kShadowEstimatedCost:
      return "estimated_cost";
    case kShadowError:
      return "error";
    default:
      return "unknown";
  }
}

uint32_t ComparePlans(const absl::StatusOr<policy::CallPlan>& active,
                      const absl::StatusOr<policy::CallPlan>& shadow) {
  if (!active.ok() || !shadow.ok()) {
    return active.status().code() == shadow.status().code() ? 0 : kShadowError;
  }
  if (active->allowed != shadow->allowed) return kShadowVerdict;
  if (!active->allowed) {
    return active->deny_rule == shadow->deny_rule ? 0 : kShadowDenyRule;
  }
  uint32_t differences = 0;
  if (active->model != shadow->model) differences |= kShadowModel;
  if (active->max_output_tokens != shadow->max_output_tokens) {
    differences |= kShadowMaxOutputTokens;
  }
  if (active->estimated_cost_nanos != shadow->estimated_cost_nanos) {
    differences |= kShadowEstimatedCost;
  }
  return differences;
}

ShadowPlanSummary SummarizePlan(const absl::StatusOr<policy::CallPlan>& plan) {
  ShadowPlanSummary summary;
  if (!plan.ok()) {
    summary.error = absl::StrCat(absl::StatusCodeToString(plan.status().code()),
                                 ": ", plan.status().message());
    return summary;
  }
  summary.allowed = plan->allowed;
  summary.model = plan->model;
  summary.max_output_tokens = plan->max_output_tokens;
  summary.estimated_cost_nanos = plan->estimated_cost_nanos;
  summary.deny_rule = plan->deny_rule;
  summary.deny_message = plan->deny_message;
  return summary;
}

ShadowStats::ShadowStats(size_t sample_capacity)
    : capacity_(std::max<size_t>(sample_capacity, 1)), ring_(capacity_) {}

void ShadowStats::RecordSame() {
  absl::MutexLock lock(&mu_);
  ++counts_.compared;
}

void ShadowStats::RecordDifference(ShadowSample sample) {
  const uint32_t differences = sample.differences;
  // The old sample's strings are freed after the lock is released.
  ShadowSample evicted;
  absl::MutexLock lock(&mu_);
  ++counts_.compared;
  if (differences == 0) return;
  ++counts_.differing;
  for (int kind = 0; kind < kShadowDifferenceKinds; ++kind) {
    if ((differences >> kind) & 1u) ++counts_.by_kind[kind];
  }
  evicted = std::exchange(ring_[next_], std::move(sample));
  next_ = (next_ + 1) % capacity_;
  stored_ = std::min(stored_ + 1, capacity_);
}

ShadowSnapshot ShadowStats::Snapshot(size_t sample_limit) const {
  ShadowSnapshot snapshot;
  absl::MutexLock lock(&mu_);
  snapshot.counts = counts_;
  size_t count = stored_;
  if (sample_limit > 0) count = std::min(count, sample_limit);
  snapshot.samples.reserve(count);
  for (size_t i = 1; i <= count; ++i) {
    snapshot.samples.push_back(ring_[(next_ + capacity_ - i) % capacity_]);
  }
  return snapshot;
}

}  // namespace bursar::server
