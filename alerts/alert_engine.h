#ifndef BURSAR_ALERTS_ALERT_ENGINE_H_
#define BURSAR_ALERTS_ALERT_ENGINE_H_

// The alert engine: off the hot path, it walks every budget scope (a budget,
// or each per_label instance with spend in its current period) and raises
// the alerts of the active policy (docs/alerts.md):
//
//   - the policy's `alerts:` rules (a rule without `budget:` is tried for
//     every budget in turn);
//   - the built-ins of its `alerting:` section: budget thresholds, spend-SLO
//     breach and its escalation after N consecutive periods, projected
//     exhaustion, and (with a KpiView) spend +30% hour over hour, cost per
//     request +15% and tokens per request +25% in 24 h, daily burn
//     variation, retry rate.
//
// Every alert fires at most once per (rule, scope, period): the AlertStore
// decides, durably, so restarts and policy pushes do not repeat one. A fired
// alert then goes to the listeners (watchers, webhooks), which must not
// block.
//
// A background thread runs a pass every `interval` and soon after Wake()
// (which bursard calls after every Report); Wake never blocks on a pass.
// Check and Report never wait on the engine.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "policy/compiled_policy.h"
#include "policy/kpi_view.h"
#include "storage/alert_store.h"
#include "storage/ledger.h"

namespace bursar::alerts {

// Told about every alert that fired (once per alert). Called on the
// engine's thread: implementations must return quickly and never block on
// a network or a slow reader.
class AlertListener {
 public:
  virtual ~AlertListener() = default;
  virtual void OnAlert(const storage::AlertEntry& alert) = 0;
};

struct AlertEngineOptions {
  // A pass at least this often.
  absl::Duration interval = absl::Seconds(5);
  // A Wake() does not start a pass sooner than this after the last one
  // started, so a stream of Reports costs at most one pass per gap.
  absl::Duration min_gap = absl::Seconds(1);
  // Told about a pass that failed (I/O); may be empty.
  std::function<void(const absl::Status&)> on_error;
  // The webhook URLs a fired alert must reach (WebhookNotifier::
  // Destinations), stored as pending deliveries in the write that stores
  // the alert (the outbox); may be empty.
  std::function<std::vector<std::string>(const storage::AlertEntry&)> outbox;
  // Called first on the engine's own thread; may be empty (bursard lowers
  // the thread's scheduling priority there, so that passes yield the CPU to
  // Check and Report).
  std::function<void()> on_thread_start;
  // Called at the start of every pass, with the time the pass reads, before
  // it reads anything; may be empty. bursard refreshes the KPI figures the
  // passes read there, all of them in one read, as often as passes run.
  std::function<void(absl::Time now)> before_pass;
};

class AlertEngine {
 public:
  using PolicySource =
      std::function<std::shared_ptr<const policy::CompiledPolicy>()>;
  using Clock = std::function<absl::Time()>;

  // `ledger`, `store` and `kpis` must outlive the engine; `kpis` may be null
  // (the KPI built-ins and nothing else then stay quiet).
  AlertEngine(const storage::Ledger* ledger, storage::AlertStore* store,
              PolicySource policy, Clock clock, const policy::KpiView* kpis,
              AlertEngineOptions options = {});
  ~AlertEngine();
  AlertEngine(const AlertEngine&) = delete;
  AlertEngine& operator=(const AlertEngine&) = delete;

  // Before Start: `listener` (not owned) hears every alert fired.
  void AddListener(AlertListener* listener);

  // Starts the background thread; Stop (or the destructor) joins it.
  void Start();
  void Stop();
  // Asks for a pass soon. Never blocks on one.
  void Wake();

  // One pass at `now`, on the caller's thread (tests; the background thread
  // calls it too). Returns the alerts that fired in it. Passes never
  // overlap.
  absl::StatusOr<std::vector<storage::AlertEntry>> EvaluateOnce(absl::Time now);

  // Passes completed since the engine was made.
  int64_t passes() const;

 private:
  class Pass;
  void Loop();

  const storage::Ledger* const ledger_;
  storage::AlertStore* const store_;
  const PolicySource policy_;
  const Clock clock_;
  const policy::KpiView* const kpis_;
  const AlertEngineOptions options_;
  std::vector<AlertListener*> listeners_;

  // One pass at a time.
  absl::Mutex pass_mu_;

  mutable absl::Mutex mu_;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t passes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// "budget:<name>" or "budget:<name>/<instance>".
std::string BudgetScope(absl::string_view budget, absl::string_view instance);

// The rule name of a budget threshold: "budget-threshold-85",
// "budget-threshold-100", "budget-threshold-92.5".
std::string ThresholdRule(double threshold);

}  // namespace bursar::alerts

#endif  // BURSAR_ALERTS_ALERT_ENGINE_H_
