#ifndef BURSAR_SERVER_KPI_ROLLUPS_H_
#define BURSAR_SERVER_KPI_ROLLUPS_H_

// KPIs over the usage rollups (storage/usage_store.h), for policy
// conditions (kpi.*, signal[...]) and alerts.
//
// Rollups are hourly, windows are rolling: a window (now - W, now] adds
// each hour bucket it overlaps, scaled by the share of the bucket's
// recorded time it covers (an hour still running has recorded up to `now`).
// Figures are exact when `now` is on the hour, and otherwise assume the
// calls of a partly covered hour were spread evenly over it. p95 latency
// reads as the upper bound of the log bucket the 95th percentile falls in
// (storage::LatencyBucketBound). docs/usage-and-kpis.md.

#include <cstddef>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "policy/kpi_view.h"
#include "server/policy_registry.h"
#include "storage/labels.h"
#include "storage/ledger.h"
#include "storage/usage_store.h"

namespace bursar::server {

// The start and end of `window` ending at `now`.
absl::Time KpiWindowStart(policy::KpiWindow window, absl::Time now);
absl::Time KpiWindowEnd(policy::KpiWindow window, absl::Time now);

class RollupKpiView final : public policy::KpiView {
 public:
  // Every pointer must outlive the view. Thread-safe. With `policies`,
  // KpiFigures::policy_changed says whether a policy change was noted
  // (PolicyRegistry::NoteChange) inside the window; without, it is false.
  //
  // With a positive `max_staleness`, figures are cached per (budget,
  // instance, window): a read at `now` returns the figures computed at an
  // earlier `now` less than max_staleness before it (and computed less than
  // max_staleness of real time ago), without reading
  // RocksDB, so each scope and window costs at most one range scan per
  // max_staleness however many Checks read it; with Refresh called more
  // often than max_staleness (bursard's background thread), Checks find
  // the entries they read fresh and only the first read of a scope and
  // window reads RocksDB. At most kMaxCachedKpis entries (the cache starts
  // empty again when full).
  static constexpr size_t kMaxCachedKpis = 10'000;
  RollupKpiView(const storage::UsageStore* usage, const storage::Ledger* ledger,
                const PolicyRegistry* policies = nullptr,
                absl::Duration max_staleness = absl::ZeroDuration())
      : usage_(usage),
        ledger_(ledger),
        policies_(policies),
        max_staleness_(max_staleness) {}

  // False for a budget the ledger does not have; zero figures (and true)
  // when reading the rollups fails, so a storage error never turns into
  // a decision.
  bool Figures(absl::string_view budget, absl::string_view instance,
               policy::KpiWindow window, absl::Time now,
               policy::KpiFigures* out) const override;

  // Recomputes, at `now`, every cached entry read within `idle` before
  // `now`, and drops the others (and those of deleted budgets). For a
  // background thread; no-op without a cache.
  void Refresh(absl::Time now, absl::Duration idle = absl::Minutes(1)) const;

 private:
  // What `window` ending at `now` reads of (budget, instance).
  static storage::KpiRowsQuery QueryFor(absl::string_view budget,
                                        absl::string_view instance,
                                        policy::KpiWindow window,
                                        absl::Time now);
  // Figures from the rollups, uncached.
  void Compute(absl::string_view budget, absl::string_view instance,
               policy::KpiWindow window, absl::Time now,
               policy::KpiFigures* out) const;
  // Adds to `out` the figures of `window` ending at `now` from the rows its
  // QueryFor read (null: none could be read; only policy_changed is set).
  void FiguresFrom(const storage::KpiRowList* rows, policy::KpiWindow window,
                   absl::Time now, policy::KpiFigures* out) const;

  const storage::UsageStore* usage_;
  const storage::Ledger* ledger_;
  const PolicyRegistry* policies_;
  const absl::Duration max_staleness_;

  struct Cached {
    std::string budget;
    std::string instance;
    policy::KpiWindow window;
    absl::Time computed_for;
    // absl::Now() when computed: an entry is also stale after max_staleness
    // of real time (a test clock may stand still).
    absl::Time computed_at;
    absl::Time last_read;
    policy::KpiFigures figures;
  };
  mutable absl::Mutex cache_mu_;
  // budget NUL instance NUL window -> figures.
  mutable absl::flat_hash_map<std::string, Cached> cache_
      ABSL_GUARDED_BY(cache_mu_);
};

// KPIs as one request sees them: a budget reads as the instance the
// request's labels select (its per_label value), and signals from the
// store.
class RequestKpis final : public policy::KpiReader, public policy::SignalView {
 public:
  // Every pointer must outlive this; `view` and `usage` may be null (all
  // KPIs zero, no signals).
  RequestKpis(const policy::KpiView* view, const storage::Ledger* ledger,
              const storage::UsageStore* usage, const storage::LabelSet* labels)
      : view_(view), ledger_(ledger), usage_(usage), labels_(labels) {}

  bool Figures(absl::string_view budget, policy::KpiWindow window,
               absl::Time now, policy::KpiFigures* out) const override;
  std::optional<double> Signal(absl::string_view name) const override;

 private:
  const policy::KpiView* view_;
  const storage::Ledger* ledger_;
  const storage::UsageStore* usage_;
  const storage::LabelSet* labels_;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_KPI_ROLLUPS_H_
