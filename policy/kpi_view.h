#ifndef BURSAR_POLICY_KPI_VIEW_H_
#define BURSAR_POLICY_KPI_VIEW_H_

// How policy rules and alerts read KPIs: the figures of one budget scope (a
// budget, or one per_label instance of it) over a rolling window. The server
// implements it over the usage rollups in storage/; policy tests implement
// it over the figures a test case states. Ratios (cost per request, retry
// rate, burn rate, ...) are derived from these counts by the reader, so
// every implementation agrees on them.

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace bursar::policy {

enum class KpiWindow {
  kLastHour,          // (now - 1h, now]
  kPreviousHour,      // (now - 2h, now - 1h]
  kLast24Hours,       // (now - 24h, now]
  kPrevious24Hours,   // (now - 48h, now - 24h]
  kSameHourLastWeek,  // (now - 7d - 1h, now - 7d]
};

// Counts over one window. Money in nano-USD.
struct KpiFigures {
  int64_t spend_nanos = 0;
  int64_t requests = 0;  // reported calls (any outcome)
  int64_t successes = 0;
  int64_t failures = 0;
  int64_t retries = 0;  // reported with OUTCOME_RETRY
  int64_t cancelled = 0;
  int64_t input_tokens = 0;
  int64_t cached_input_tokens = 0;
  int64_t output_tokens = 0;
  // 95th percentile of the reported latencies; zero when none was reported.
  absl::Duration p95_latency;
  // Reports that carried a quality score, and the sum of their scores in
  // millionths (the mean is quality_micros_sum / quality_reports / 1e6).
  int64_t quality_reports = 0;
  int64_t quality_micros_sum = 0;
  // The active policy version changed inside the window (anomaly alerts
  // about tokens per request only fire without a policy change).
  bool policy_changed = false;
};

class KpiView {
 public:
  virtual ~KpiView() = default;
  // The figures of `budget` (and its per_label `instance`, empty for a
  // budget without per_label) over `window` ending at `now`. False when
  // there is no such scope; zero figures when it had no traffic.
  virtual bool Figures(absl::string_view budget, absl::string_view instance,
                       KpiWindow window, absl::Time now,
                       KpiFigures* out) const = 0;
};

// What conditions read (`kpi.*`, `signal["name"]`) for the request or
// alert scope at hand: a budget reads as the instance that scope maps to.
// The server binds a KpiView to the request's labels; policy tests answer
// from the figures a case states.
class KpiReader {
 public:
  virtual ~KpiReader() = default;
  // As KpiView::Figures for the instance of `budget` that applies; false
  // when the budget does not exist or does not apply.
  virtual bool Figures(absl::string_view budget, KpiWindow window,
                       absl::Time now, KpiFigures* out) const = 0;
};

// The last value of each named quality signal (Admin.ReportSignal).
class SignalView {
 public:
  virtual ~SignalView() = default;
  // nullopt when the signal was never reported.
  virtual std::optional<double> Signal(absl::string_view name) const = 0;
};

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_KPI_VIEW_H_
