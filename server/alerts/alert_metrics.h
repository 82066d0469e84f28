#ifndef BURSAR_SERVER_ALERTS_ALERT_METRICS_H_
#define BURSAR_SERVER_ALERTS_ALERT_METRICS_H_

// Alert counts for Prometheus (docs/metrics.md, "Alerts"):
// - bursar_alerts_fired_total{severity, rule}: alerts fired, counted as the
//   engine hands them to its listeners. Rule names come from the policy and
//   the built-ins (no scope label, so per_label budgets add no series); at
//   most kMaxAlertRuleSeries names, later ones count under rule="other".
// - bursar_alert_deliveries_total{result}: webhook delivery attempts that
//   were accepted (delivered), failed and are tried again (retry), and
//   alerts given up on (dead_letter), read from the notifier at scrape time.

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "alerts/alert_engine.h"
#include "alerts/webhook_notifier.h"
#include "server/metrics.h"
#include "storage/alert_store.h"

namespace bursar::server {

inline constexpr size_t kMaxAlertRuleSeries = 200;

// An AlertListener that counts fired alerts; OnAlert is lock-free and
// allocation-free. Must outlive every Render() of the registry it was
// created on.
class AlertMetrics final : public alerts::AlertListener {
 public:
  // Registers both metrics. `deliveries` (thread-safe, e.g.
  // WebhookNotifier::stats) is called at scrape time. Errors if a name is
  // taken.
  static absl::StatusOr<std::unique_ptr<AlertMetrics>> Create(
      MetricsRegistry* registry,
      std::function<alerts::WebhookStats()> deliveries);

  void OnAlert(const storage::AlertEntry& alert) override;

 private:
  AlertMetrics() = default;
  CounterFamily* fired_ = nullptr;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_ALERTS_ALERT_METRICS_H_
