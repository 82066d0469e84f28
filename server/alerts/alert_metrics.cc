#include "server/alerts/alert_metrics.h"

#include <string>
#include <utility>
#include <vector>

namespace bursar::server {
namespace {

// The fixed values of the severity label, in this order.
constexpr absl::string_view kSeverities[] = {"info", "warning", "critical"};

}  // namespace

absl::StatusOr<std::unique_ptr<AlertMetrics>> AlertMetrics::Create(
    MetricsRegistry* registry,
    std::function<alerts::WebhookStats()> deliveries) {
  std::unique_ptr<AlertMetrics> m(new AlertMetrics());
  absl::StatusOr<CounterFamily*> fired = registry->AddCounterFamily(
      "bursar_alerts_fired_total",
      "Alerts fired (each once per rule, scope and period), by severity and "
      "rule; rule=\"other\" past the first 200 rule names.",
      "severity",
      std::vector<std::string>(std::begin(kSeverities), std::end(kSeverities)),
      "rule", kMaxAlertRuleSeries);
  if (!fired.ok()) return fired.status();
  m->fired_ = *fired;
  if (absl::Status s = registry->AddCallback(
          "bursar_alert_deliveries_total",
          "Webhook deliveries of alerts: attempts accepted (delivered), "
          "attempts that failed and are tried again (retry), and alerts "
          "given up on and stored as dead letters (dead_letter).",
          MetricType::kCounter,
          [deliveries = std::move(deliveries)] {
            const alerts::WebhookStats stats =
                deliveries ? deliveries() : alerts::WebhookStats();
            return std::vector<MetricSample>{
                {"",
                 {{"result", "delivered"}},
                 static_cast<double>(stats.delivered)},
                {"", {{"result", "retry"}}, static_cast<double>(stats.retries)},
                {"",
                 {{"result", "dead_letter"}},
                 static_cast<double>(stats.dead_letters)}};
          });
      !s.ok()) {
    return s;
  }
  return m;
}

void AlertMetrics::OnAlert(const storage::AlertEntry& alert) {
  size_t severity = 0;
  for (size_t i = 0; i < std::size(kSeverities); ++i) {
    if (alert.severity == kSeverities[i]) severity = i;
  }
  fired_->Increment(severity, alert.rule);
}

}  // namespace bursar::server
