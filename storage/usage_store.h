#ifndef BURSAR_STORAGE_USAGE_STORE_H_
#define BURSAR_STORAGE_USAGE_STORE_H_

// Usage rollups and quality signals: what finance reads with GetUsage and
// what KPIs are computed from. Hourly buckets of counters, kept apart from
// the ledger (which decides) but written in the ledger's settlement batch:
// Ledger::Settle takes a UsageUpdate and applies it atomically with the
// charge, so rollup totals equal the settled costs to the nano, also across
// a crash. The RocksDB store writes one compact record per update there and
// folds the records into the rows in the background (decision 022); every
// read still sees every update applied before it started. Key layout and
// encodings: storage/README.md ("usage").
//
// Two kinds of rows, both per UTC hour:
// - attribution rows: (budget, instance, model, provider, dimensions). A
//   call adds one row with an empty budget (the call itself, counted once)
//   and one per budget instance it was charged to.
// - KPI rows: (budget, instance), with a latency histogram and quality sums.
//
// Thread-safe; every method may be called concurrently.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace bursar::storage {

// Latency histogram: bucket 0 holds latencies under 1 ms, bucket i (1..21)
// holds [2^(i-1), 2^i) ms, and the last bucket everything from 2^21 ms on.
inline constexpr int kLatencyBuckets = 23;
// The bucket of a latency, and the upper bound of a bucket (the value a
// percentile that falls in it reads as; the last bucket reads as its lower
// bound).
int LatencyBucket(absl::Duration latency);
absl::Duration LatencyBucketBound(int bucket);

// Counters of one row. Money in nano-USD.
struct UsageCounts {
  int64_t cost_nanos = 0;
  int64_t requests = 0;  // reports (any outcome)
  int64_t successes = 0;
  int64_t failures = 0;
  int64_t retries = 0;
  int64_t cancelled = 0;
  // Reservations that expired unreported, and the estimates charged for
  // them. A late Report of one also counts as a request with its cost.
  int64_t expired = 0;
  int64_t expired_estimate_nanos = 0;
  int64_t input_tokens = 0;
  int64_t cached_input_tokens = 0;
  int64_t output_tokens = 0;
  // KPI rows only: reports that carried a latency / a quality score, the
  // sum of the scores in millionths, and the latency histogram.
  int64_t latency_reports = 0;
  int64_t quality_reports = 0;
  int64_t quality_micros_sum = 0;
  std::array<int64_t, kLatencyBuckets> latency_histogram{};

  void Add(const UsageCounts& other);
  // Adds other * numerator / denominator (rounded toward zero); for the
  // part of an hour bucket a rolling window covers.
  void AddScaled(const UsageCounts& other, int64_t numerator,
                 int64_t denominator);
  bool operator==(const UsageCounts& other) const;
};

// One attribution row as stored.
struct UsageRowKey {
  absl::Time hour;       // start of the UTC hour
  std::string budget;    // "" for the call itself
  std::string instance;  // the per_label value; "" without per_label
  std::string model;
  std::string provider;
  // The policy's attribution dimensions as they applied, sorted by key;
  // a missing label has value "".
  std::vector<std::pair<std::string, std::string>> dimensions;
};

struct UsageRow {
  UsageRowKey key;
  UsageCounts counts;
};

// What one Report or one expiry adds.
struct UsageUpdate {
  absl::Time time;  // which hour it lands in
  std::string model;
  std::string provider;
  std::vector<std::pair<std::string, std::string>> dimensions;  // sorted
  // The budget instances the call was charged to.
  std::vector<std::pair<std::string, std::string>> budgets;
  // Added to the call's row, to each budget's attribution row, and (with
  // the latency and quality fields) to each budget's KPI row.
  UsageCounts counts;
};

// The last value of a named quality signal.
struct Signal {
  std::string name;
  double value = 0;
  std::string scope;  // what it measured, e.g. "model:gpt-4.1-mini"
  absl::Time time;
  std::string reported_by;
};

// How a usage store that buffers writes folds them (decision 022).
struct UsageStoreOptions {
  // How often the background folder folds the usage log into the rows;
  // InfiniteDuration (or zero) runs no folder thread: then only reads,
  // DeleteBefore and FoldPending fold (tests).
  absl::Duration fold_interval = absl::Milliseconds(100);
};

// The KPI rows of one (budget, instance) in [start, end) of hours.
struct KpiRowsQuery {
  absl::string_view budget;
  absl::string_view instance;
  absl::Time start;
  absl::Time end;
};
// KPI rows with their hours, oldest first.
using KpiRowList = std::vector<std::pair<absl::Time, UsageCounts>>;

class UsageStore {
 public:
  virtual ~UsageStore() = default;

  // Applies an update that no settlement carries (an expired reservation)
  // in its own write, durable per the sync mode when this returns.
  virtual absl::Status Record(const UsageUpdate& update) = 0;

  // Folds what was written but not folded into the rows yet. Reads see
  // every applied update whether or not it was folded, so this is never
  // needed for correctness; a store that does not buffer does nothing.
  // Unavailable when the fold cannot be written (nothing is lost: the
  // records stay and the next fold takes them).
  virtual absl::Status FoldPending() { return absl::OkStatus(); }

  // Every attribution row whose hour lies in [start, end) (hours that
  // start before `start` are left out), in key order.
  virtual absl::StatusOr<std::vector<UsageRow>> Rows(absl::Time start,
                                                     absl::Time end) const = 0;

  // The KPI rows of (budget, instance) whose hour lies in [start, end),
  // oldest first, with their hours.
  absl::StatusOr<KpiRowList> KpiRows(absl::string_view budget,
                                     absl::string_view instance,
                                     absl::Time start, absl::Time end) const {
    const KpiRowsQuery query{budget, instance, start, end};
    absl::StatusOr<std::vector<KpiRowList>> rows = ReadKpiRows({&query, 1});
    if (!rows.ok()) return rows.status();
    return std::move(rows->front());
  }
  // KpiRows of every query, in the order of `queries`, all read at one
  // point in time. Many queries cost one pass over the updates not folded
  // yet and one seek per query, not one pass per query.
  virtual absl::StatusOr<std::vector<KpiRowList>> ReadKpiRows(
      absl::Span<const KpiRowsQuery> queries) const = 0;

  // Deletes every row (attribution and KPI) whose hour started before the
  // hour containing `cutoff` (range deletes; the retention of the rollups).
  // Signals are kept.
  virtual absl::Status DeleteBefore(absl::Time cutoff) = 0;

  // Signals: the last value per name, kept until overwritten.
  virtual absl::Status PutSignal(const Signal& signal) = 0;
  virtual std::vector<Signal> ListSignals() const = 0;
  virtual std::optional<Signal> GetSignal(absl::string_view name) const = 0;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_USAGE_STORE_H_
