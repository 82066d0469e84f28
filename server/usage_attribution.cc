#include "server/usage_attribution.h"

#include <algorithm>

#include "policy/compiled_policy.h"
#include "server/hold_terms.pb.h"

namespace bursar::server {
namespace {

absl::Time HourOf(absl::Time t) {
  return absl::FromUnixSeconds(absl::ToUnixSeconds(t) -
                               ((absl::ToUnixSeconds(t) % 3600) + 3600) % 3600);
}

}  // namespace

void UsageAttribution::LoadHour(absl::Time hour) {
  seen_.clear();
  hour_ = hour;
  if (store_ == nullptr) return;
  absl::StatusOr<std::vector<storage::UsageRow>> rows =
      store_->Rows(hour, hour + absl::Hours(1));
  if (!rows.ok()) return;  // the bound is then per process for this hour
  for (const storage::UsageRow& row : *rows) {
    for (const auto& [dimension, value] : row.key.dimensions) {
      seen_[dimension].insert(value);
    }
  }
}

std::string UsageAttribution::Bound(const std::string& dimension,
                                    const std::string& value, absl::Time hour,
                                    int64_t max_values) {
  if (hour != hour_) LoadHour(hour);
  absl::flat_hash_set<std::string>& seen = seen_[dimension];
  if (seen.contains(value)) return value;
  // "other" itself and the missing label ("") never use up the bound.
  const int64_t own = static_cast<int64_t>(seen.size()) -
                      (seen.contains(policy::kOtherValue) ? 1 : 0) -
                      (seen.contains("") ? 1 : 0);
  if (value.empty() || own < max_values) {
    seen.insert(value);
    return value;
  }
  return std::string(policy::kOtherValue);
}

void UsageAttribution::Fill(const storage::HoldView& hold,
                            const HoldTerms& terms, absl::Time now,
                            int64_t max_values, storage::UsageUpdate* update) {
  update->time = now;
  update->model = terms.model();
  update->provider = terms.provider();
  update->budgets = hold.charges;
  std::vector<std::pair<std::string, std::string>> dimensions(
      terms.dimensions().begin(), terms.dimensions().end());
  std::sort(dimensions.begin(), dimensions.end());
  absl::MutexLock lock(&mu_);
  const absl::Time hour = HourOf(now);
  for (auto& [dimension, value] : dimensions) {
    value = Bound(dimension, value, hour, max_values);
  }
  update->dimensions = std::move(dimensions);
}

storage::UsageUpdate UsageAttribution::ForReport(
    const storage::HoldView& hold, const HoldTerms& terms,
    const v1::ReportRequest& report, int64_t cost_nanos, absl::Time now,
    int64_t max_values_per_dimension) {
  storage::UsageUpdate update;
  Fill(hold, terms, now, max_values_per_dimension, &update);
  storage::UsageCounts& c = update.counts;
  c.cost_nanos = cost_nanos;
  c.requests = 1;
  switch (report.outcome()) {
    case v1::OUTCOME_FAILURE:
      c.failures = 1;
      break;
    case v1::OUTCOME_RETRY:
      c.retries = 1;
      break;
    case v1::OUTCOME_CANCELLED:
      c.cancelled = 1;
      break;
    default:
      c.successes = 1;
      break;
  }
  c.input_tokens = report.usage().input_tokens();
  c.cached_input_tokens = report.usage().cached_input_tokens();
  c.output_tokens = report.usage().output_tokens();
  if (report.has_latency()) {
    const absl::Duration latency = absl::Seconds(report.latency().seconds()) +
                                   absl::Nanoseconds(report.latency().nanos());
    c.latency_reports = 1;
    c.latency_histogram[storage::LatencyBucket(latency)] = 1;
  }
  if (report.has_quality_score()) {
    c.quality_reports = 1;
    c.quality_micros_sum =
        static_cast<int64_t>(report.quality_score() * 1'000'000 + 0.5);
  }
  return update;
}

storage::UsageUpdate UsageAttribution::ForExpiry(
    const storage::HoldView& hold, const HoldTerms& terms, absl::Time now,
    int64_t max_values_per_dimension) {
  storage::UsageUpdate update;
  Fill(hold, terms, now, max_values_per_dimension, &update);
  update.counts.expired = 1;
  update.counts.expired_estimate_nanos = hold.estimate_nanos;
  return update;
}

}  // namespace bursar::server
