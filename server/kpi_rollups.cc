#include "server/kpi_rollups.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace bursar::server {
namespace {

absl::Time HourOf(absl::Time t) {
  const int64_t s = absl::ToUnixSeconds(t);
  return absl::FromUnixSeconds(s - ((s % 3600) + 3600) % 3600);
}

absl::Duration Length(policy::KpiWindow window) {
  switch (window) {
    case policy::KpiWindow::kLast24Hours:
    case policy::KpiWindow::kPrevious24Hours:
      return absl::Hours(24);
    default:
      return absl::Hours(1);
  }
}

}  // namespace

absl::Time KpiWindowEnd(policy::KpiWindow window, absl::Time now) {
  switch (window) {
    case policy::KpiWindow::kLastHour:
    case policy::KpiWindow::kLast24Hours:
      return now;
    case policy::KpiWindow::kPreviousHour:
      return now - absl::Hours(1);
    case policy::KpiWindow::kPrevious24Hours:
      return now - absl::Hours(24);
    case policy::KpiWindow::kSameHourLastWeek:
      return now - absl::Hours(24 * 7);
  }
  return now;
}

absl::Time KpiWindowStart(policy::KpiWindow window, absl::Time now) {
  return KpiWindowEnd(window, now) - Length(window);
}

bool RollupKpiView::Figures(absl::string_view budget,
                            absl::string_view instance,
                            policy::KpiWindow window, absl::Time now,
                            policy::KpiFigures* out) const {
  *out = policy::KpiFigures();
  if (ledger_ != nullptr && !ledger_->GetBudget(budget).has_value()) {
    return false;
  }
  if (max_staleness_ <= absl::ZeroDuration()) {
    Compute(budget, instance, window, now, out);
    return true;
  }
  std::string key =
      absl::StrCat(budget, std::string(1, '\0'), instance, std::string(1, '\0'),
                   static_cast<int>(window));
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.computed_for <= now &&
        now - it->second.computed_for < max_staleness_ &&
        absl::Now() - it->second.computed_at < max_staleness_) {
      *out = it->second.figures;
      it->second.last_read = std::max(it->second.last_read, now);
      return true;
    }
  }
  // Computed without the lock: two readers of a stale entry may both read
  // RocksDB; the later write wins.
  const absl::Time computed_at = absl::Now();
  Compute(budget, instance, window, now, out);
  absl::MutexLock lock(&cache_mu_);
  if (cache_.size() >= kMaxCachedKpis && !cache_.contains(key)) cache_.clear();
  cache_[std::move(key)] = Cached{.budget = std::string(budget),
                                  .instance = std::string(instance),
                                  .window = window,
                                  .computed_for = now,
                                  .computed_at = computed_at,
                                  .last_read = now,
                                  .figures = *out};
  return true;
}

void RollupKpiView::Refresh(absl::Time now, absl::Duration idle) const {
  if (max_staleness_ <= absl::ZeroDuration()) return;
  std::vector<std::pair<std::string, Cached>> due;
  {
    absl::MutexLock lock(&cache_mu_);
    for (auto it = cache_.begin(); it != cache_.end();) {
      if (now - it->second.last_read >= idle) {
        cache_.erase(it++);
        continue;
      }
      due.emplace_back(it->first, it->second);
      ++it;
    }
  }
  if (ledger_ != nullptr) {
    absl::flat_hash_map<std::string, bool> budget_exists;
    auto deleted =
        std::remove_if(due.begin(), due.end(), [&](const auto& entry) {
          const std::string& budget = entry.second.budget;
          auto [known, added] = budget_exists.try_emplace(budget);
          if (added) known->second = ledger_->GetBudget(budget).has_value();
          if (known->second) return false;
          absl::MutexLock lock(&cache_mu_);
          cache_.erase(entry.first);
          return true;
        });
    due.erase(deleted, due.end());
  }
  if (due.empty()) return;
  const absl::Time computed_at = absl::Now();
  std::vector<storage::KpiRowsQuery> queries;
  queries.reserve(due.size());
  for (const auto& [key, entry] : due) {
    queries.push_back(
        QueryFor(entry.budget, entry.instance, entry.window, now));
  }
  absl::StatusOr<std::vector<storage::KpiRowList>> rows;
  if (usage_ != nullptr) {
    rows = usage_->ReadKpiRows(queries);
    // Left stale: the next read computes its entry itself.
    if (!rows.ok()) return;
  }
  for (size_t i = 0; i < due.size(); ++i) {
    auto& [key, entry] = due[i];
    entry.figures = policy::KpiFigures();
    FiguresFrom(usage_ != nullptr ? &(*rows)[i] : nullptr, entry.window, now,
                &entry.figures);
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(key);
    // Kept only if still cached and not computed for a later time since.
    if (it == cache_.end() || it->second.computed_for > now) continue;
    it->second.figures = entry.figures;
    it->second.computed_for = now;
    it->second.computed_at = computed_at;
  }
}

storage::KpiRowsQuery RollupKpiView::QueryFor(absl::string_view budget,
                                              absl::string_view instance,
                                              policy::KpiWindow window,
                                              absl::Time now) {
  return {budget, instance, HourOf(KpiWindowStart(window, now)),
          KpiWindowEnd(window, now) + absl::Seconds(1)};
}

void RollupKpiView::Compute(absl::string_view budget,
                            absl::string_view instance,
                            policy::KpiWindow window, absl::Time now,
                            policy::KpiFigures* out) const {
  if (usage_ == nullptr) {
    FiguresFrom(nullptr, window, now, out);
    return;
  }
  const storage::KpiRowsQuery query = QueryFor(budget, instance, window, now);
  absl::StatusOr<std::vector<storage::KpiRowList>> rows =
      usage_->ReadKpiRows({&query, 1});
  FiguresFrom(rows.ok() ? &rows->front() : nullptr, window, now, out);
}

void RollupKpiView::FiguresFrom(const storage::KpiRowList* rows,
                                policy::KpiWindow window, absl::Time now,
                                policy::KpiFigures* out) const {
  const absl::Time start = KpiWindowStart(window, now);
  const absl::Time end = KpiWindowEnd(window, now);
  if (policies_ != nullptr) {
    out->policy_changed = policies_->ChangedBetween(start, end);
  }
  if (rows == nullptr) return;
  storage::UsageCounts total;
  for (const auto& [hour, counts] : *rows) {
    // The bucket has recorded [hour, min(hour + 1h, now)]; the window
    // covers (start, end] of it.
    const absl::Time recorded_end = std::min(hour + absl::Hours(1), now);
    const int64_t recorded = absl::ToInt64Seconds(recorded_end - hour);
    const int64_t covered = absl::ToInt64Seconds(std::min(recorded_end, end) -
                                                 std::max(hour, start));
    if (covered <= 0) continue;
    if (covered >= recorded) {
      total.Add(counts);
    } else {
      total.AddScaled(counts, covered, recorded);
    }
  }
  out->spend_nanos = total.cost_nanos;
  out->requests = total.requests;
  out->successes = total.successes;
  out->failures = total.failures;
  out->retries = total.retries;
  out->cancelled = total.cancelled;
  out->input_tokens = total.input_tokens;
  out->cached_input_tokens = total.cached_input_tokens;
  out->output_tokens = total.output_tokens;
  out->quality_reports = total.quality_reports;
  out->quality_micros_sum = total.quality_micros_sum;
  int64_t latencies = 0;
  for (int64_t n : total.latency_histogram) latencies += n;
  if (latencies > 0) {
    // The smallest bucket with at least 95% of the latencies at or below it.
    const int64_t rank = (latencies * 95 + 99) / 100;
    int64_t seen = 0;
    for (int b = 0; b < storage::kLatencyBuckets; ++b) {
      seen += total.latency_histogram[b];
      if (seen >= rank) {
        out->p95_latency = storage::LatencyBucketBound(b);
        break;
      }
    }
  }
}

bool RequestKpis::Figures(absl::string_view budget, policy::KpiWindow window,
                          absl::Time now, policy::KpiFigures* out) const {
  *out = policy::KpiFigures();
  if (view_ == nullptr || ledger_ == nullptr) return false;
  const std::optional<storage::BudgetSpec> spec = ledger_->GetBudget(budget);
  if (!spec.has_value()) return false;
  absl::string_view instance;
  if (!spec->per_label.empty()) {
    const std::optional<absl::string_view> value =
        labels_ != nullptr ? labels_->Find(spec->per_label) : std::nullopt;
    if (!value.has_value()) return false;  // the budget does not apply
    instance = *value;
  }
  return view_->Figures(budget, instance, window, now, out);
}

std::optional<double> RequestKpis::Signal(absl::string_view name) const {
  if (usage_ == nullptr) return std::nullopt;
  const std::optional<storage::Signal> signal = usage_->GetSignal(name);
  if (!signal.has_value()) return std::nullopt;
  return signal->value;
}

}  // namespace bursar::server
