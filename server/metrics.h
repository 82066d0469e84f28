#ifndef BURSAR_SERVER_METRICS_H_
#define BURSAR_SERVER_METRICS_H_

// A small Prometheus metrics registry (text exposition format 0.0.4), since
// Debian 12 packages no Prometheus client library.
//
// Two kinds of metric:
// - hot-path metrics (Counter, CounterFamily, Histogram) that request
//   threads update with atomics only: no lock, no allocation;
// - callbacks (AddGaugeCallback, AddCallback) that compute their samples
//   when /metrics is scraped, e.g. from the ledger or from RocksDB.
// Render() walks all of them in registration order and may allocate.
//
// Cardinality is bounded by construction: a CounterFamily has a fixed set of
// values for its first label and a fixed number of slots for its second; a
// value that finds no slot is counted under "other".
//
// Thread-safe. Registration takes a mutex (do it at start-up); metrics
// returned by the registry live as long as the registry.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace bursar::server {

// The value every label value is replaced by once a family is full.
inline constexpr absl::string_view kOverflowLabelValue = "other";

// A count that only goes up. Lock-free.
class Counter {
 public:
  void Increment(uint64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Counters keyed by two labels: the first (`fixed_label`, e.g. verdict)
// takes one of the values given at registration, the second
// (`open_label`, e.g. rule) any value, up to `max_open_values` distinct
// ones (and at most kMaxOpenValueBytes long); later or longer values count
// under "other". Increment is lock-free and allocation-free: the open values
// live in a fixed table whose slots are claimed once, with a CAS, and never
// freed.
class CounterFamily {
 public:
  static constexpr size_t kMaxOpenValueBytes = 120;

  CounterFamily(std::vector<std::string> fixed_values, size_t max_open_values);
  CounterFamily(const CounterFamily&) = delete;
  CounterFamily& operator=(const CounterFamily&) = delete;

  // `fixed_index` indexes the fixed values given at registration; an index
  // out of range is ignored (and counted nowhere).
  void Increment(size_t fixed_index, absl::string_view open_value,
                 uint64_t n = 1);

  // For rendering and tests: (fixed value, open value, count) of every
  // series counted so far, "other" last.
  struct Series {
    std::string fixed_value;
    std::string open_value;
    uint64_t count;
  };
  std::vector<Series> Snapshot() const;

 private:
  struct Slot {
    // 0 empty, 1 being written by the thread that claimed it, 2 ready.
    std::atomic<int> state{0};
    uint32_t size = 0;
    std::array<char, kMaxOpenValueBytes> name;
    std::unique_ptr<std::atomic<uint64_t>[]> counts;
  };
  // The slot for `value` (claiming one if needed); nullptr when full.
  Slot* Find(absl::string_view value);

  const std::vector<std::string> fixed_values_;
  std::vector<Slot> slots_;
  std::unique_ptr<std::atomic<uint64_t>[]> overflow_;
};

// A histogram with fixed bucket upper bounds, in seconds. Lock-free.
class Histogram {
 public:
  // `upper_bounds_seconds` must be increasing; +Inf is implied.
  explicit Histogram(std::vector<double> upper_bounds_seconds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void ObserveNanos(int64_t nanos);

  const std::vector<double>& upper_bounds_seconds() const {
    return upper_bounds_seconds_;
  }
  // Cumulative counts per bound (the last one is +Inf, i.e. the count).
  std::vector<uint64_t> CumulativeCounts() const;
  uint64_t Count() const;
  double SumSeconds() const;

 private:
  const std::vector<double> upper_bounds_seconds_;
  std::vector<int64_t> upper_bounds_nanos_;
  // One per bound, plus +Inf; not cumulative.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> sum_nanos_{0};
};

// One sample a callback returns.
struct MetricSample {
  // Appended to the metric's name, e.g. "_sum" or "_count" for a summary.
  std::string suffix;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

enum class MetricType { kCounter, kGauge, kSummary, kHistogram, kUntyped };

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registration. Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
  // [a-zA-Z_][a-zA-Z0-9_]* (not starting with "__"), and be unique in the
  // registry; otherwise InvalidArgument (AlreadyExists for a duplicate),
  // naming the problem. The returned pointers live as long as the registry.
  absl::StatusOr<Counter*> AddCounter(absl::string_view name,
                                      absl::string_view help);
  absl::StatusOr<CounterFamily*> AddCounterFamily(
      absl::string_view name, absl::string_view help,
      absl::string_view fixed_label, std::vector<std::string> fixed_values,
      absl::string_view open_label, size_t max_open_values);
  absl::StatusOr<Histogram*> AddHistogram(
      absl::string_view name, absl::string_view help,
      std::vector<double> upper_bounds_seconds);

  // A metric whose samples `fn` computes at scrape time (called from the
  // scraping thread, possibly concurrently with request threads; it must be
  // thread-safe and may allocate). `fn` must not call back into the
  // registry.
  using SampleFn = std::function<std::vector<MetricSample>()>;
  absl::Status AddCallback(absl::string_view name, absl::string_view help,
                           MetricType type, SampleFn fn);
  // The same with type gauge: for saturation, queue depths, alert counts.
  absl::Status AddGaugeCallback(absl::string_view name, absl::string_view help,
                                SampleFn fn) {
    return AddCallback(name, help, MetricType::kGauge, std::move(fn));
  }

  // Every metric in Prometheus text format 0.0.4 (Content-Type
  // "text/plain; version=0.0.4; charset=utf-8").
  std::string Render() const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    MetricType type;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<CounterFamily> family;
    std::string fixed_label;
    std::string open_label;
    std::unique_ptr<Histogram> histogram;
    SampleFn fn;
  };
  absl::Status CheckNewName(absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// The content type of Render()'s output, for the HTTP handler.
inline constexpr absl::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// Text-format helpers, exposed for tests and callers that render by hand.
// A label value with \, " and newline escaped.
std::string EscapeLabelValue(absl::string_view value);
// A sample value: integers without exponent, +Inf/-Inf/NaN spelled out.
std::string FormatSampleValue(double value);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_METRICS_H_
