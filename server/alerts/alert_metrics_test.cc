// bursar_alerts_fired_total and bursar_alert_deliveries_total as /metrics
// renders them.

#include "server/alerts/alert_metrics.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

storage::AlertEntry Alert(std::string rule, std::string severity,
                          std::string scope) {
  storage::AlertEntry alert;
  alert.rule = std::move(rule);
  alert.severity = std::move(severity);
  alert.scope = std::move(scope);
  return alert;
}

TEST(AlertMetricsTest, CountsFiredAlertsByRuleAndSeverityWithoutScope) {
  MetricsRegistry registry;
  alerts::WebhookStats stats;
  absl::StatusOr<std::unique_ptr<AlertMetrics>> metrics =
      AlertMetrics::Create(&registry, [&stats] { return stats; });
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  (*metrics)->OnAlert(Alert("budget-threshold-85", "warning", "budget:a/u1"));
  (*metrics)->OnAlert(Alert("budget-threshold-85", "warning", "budget:a/u2"));
  (*metrics)->OnAlert(Alert("budget-threshold-100", "critical", "budget:a"));
  (*metrics)->OnAlert(Alert("spend-hour-over-hour", "warning", "budget:a"));
  stats.delivered = 3;
  stats.retries = 2;
  stats.dead_letters = 1;
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE bursar_alerts_fired_total counter\n"));
  EXPECT_THAT(text, HasSubstr("bursar_alerts_fired_total{severity=\"warning\","
                              "rule=\"budget-threshold-85\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("bursar_alerts_fired_total{severity=\"critical\","
                              "rule=\"budget-threshold-100\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("bursar_alerts_fired_total{severity=\"warning\","
                              "rule=\"spend-hour-over-hour\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("u1")));
  EXPECT_THAT(text,
              HasSubstr("# TYPE bursar_alert_deliveries_total counter\n"));
  EXPECT_THAT(
      text,
      HasSubstr("bursar_alert_deliveries_total{result=\"delivered\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("bursar_alert_deliveries_total{result=\"retry\"} 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr("bursar_alert_deliveries_total{result=\"dead_letter\"} 1\n"));
}

TEST(AlertMetricsTest, RuleNamesAreBounded) {
  MetricsRegistry registry;
  absl::StatusOr<std::unique_ptr<AlertMetrics>> metrics =
      AlertMetrics::Create(&registry, nullptr);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  for (size_t i = 0; i < kMaxAlertRuleSeries + 5; ++i) {
    (*metrics)->OnAlert(Alert(absl::StrCat("rule-", i), "info", "budget:a"));
  }
  EXPECT_THAT(registry.Render(),
              HasSubstr("bursar_alerts_fired_total{severity=\"info\","
                        "rule=\"other\"} 5\n"));
  // A second registration of the same names fails.
  EXPECT_FALSE(AlertMetrics::Create(&registry, nullptr).ok());
}

}  // namespace
}  // namespace bursar::server
