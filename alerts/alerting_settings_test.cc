// The policy's `alerting:` section (policy/loader.cc): defaults, overrides,
// and errors that say what to write.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"

namespace bursar::policy {
namespace {

using ::testing::HasSubstr;

constexpr char kPricing[] = R"(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test }
pricing:
  gpt-4.1: { input: "2.00", output: "8.00" }
)";

CompileResult CompileWith(const std::string& more) {
  return CompilePolicy({{"p.yaml", kPricing + more}});
}

std::string Errors(const CompileResult& result) {
  std::string out;
  for (const Diagnostic& d : result.diagnostics) {
    absl::StrAppend(&out, FormatDiagnostic(d), "\n");
  }
  return out;
}

TEST(AlertingSettingsTest, DefaultsMatchTheDocumentedBuiltins) {
  CompileResult result = CompileWith("");
  ASSERT_NE(result.policy, nullptr) << Errors(result);
  const AlertingSettings& a = result.policy->rules().alerting;
  EXPECT_TRUE(a.budget_thresholds.enabled);
  EXPECT_DOUBLE_EQ(a.spend_hour_over_hour.ratio, 0.30);
  EXPECT_DOUBLE_EQ(a.cost_per_request_24h.ratio, 0.15);
  EXPECT_DOUBLE_EQ(a.tokens_per_request_24h.ratio, 0.25);
  EXPECT_DOUBLE_EQ(a.daily_burn_variation.ratio, 0.03);
  EXPECT_DOUBLE_EQ(a.retry_rate.ratio, 0.02);
  EXPECT_EQ(a.slo_escalation_severity, "critical");
}

TEST(AlertingSettingsTest, ReadsOverrides) {
  CompileResult result = CompileWith(R"(
alerting:
  budget_thresholds: false
  spend_slo_breach: { severity: info, escalation_severity: warning }
  spend_hour_over_hour: { increase: 50%, min_spend: "5.00", severity: critical }
  cost_per_request_24h: { increase: 0.2, min_requests: 10 }
  retry_rate: { enabled: false }
  projected_exhaustion: { min_elapsed: 25% }
)");
  ASSERT_NE(result.policy, nullptr) << Errors(result);
  const AlertingSettings& a = result.policy->rules().alerting;
  EXPECT_FALSE(a.budget_thresholds.enabled);
  EXPECT_EQ(a.spend_slo_breach.severity, "info");
  EXPECT_EQ(a.slo_escalation_severity, "warning");
  EXPECT_DOUBLE_EQ(a.spend_hour_over_hour.ratio, 0.5);
  EXPECT_EQ(a.spend_hour_over_hour.min_spend_nanos, 5'000'000'000);
  EXPECT_EQ(a.spend_hour_over_hour.severity, "critical");
  EXPECT_DOUBLE_EQ(a.cost_per_request_24h.ratio, 0.2);
  EXPECT_EQ(a.cost_per_request_24h.min_requests, 10);
  EXPECT_FALSE(a.retry_rate.enabled);
  EXPECT_DOUBLE_EQ(a.projected_exhaustion.ratio, 0.25);
  EXPECT_TRUE(a.daily_burn_variation.enabled);
}

TEST(AlertingSettingsTest, ErrorsNameTheFieldAndWhatToWrite) {
  struct Case {
    std::string yaml;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"alerting: { spend_spike: true }\n",
       "alerting.spend_spike: unknown built-in alert \"spend_spike\"; "
       "expected one of: budget_thresholds"},
      {"alerting: { retry_rate: { max: 200% } }\n",
       "alerting.retry_rate.max: expected a percentage such as 30% or a "
       "fraction such as 0.3, above 0 and at most 100%, got \"200%\""},
      {"alerting: { retry_rate: { increase: 10% } }\n",
       "alerting.retry_rate.increase: unknown field \"increase\"; expected "
       "one of: enabled, severity, max, min_requests"},
      {"alerting: { spend_hour_over_hour: { min_spend: 1.5e3 } }\n",
       "alerting.spend_hour_over_hour.min_spend: expected USD"},
      {"alerting: { retry_rate: { severity: page } }\n",
       "expected info, warning or critical, got \"page\""},
      {"alerting: { retry_rate: { enabled: yes } }\n",
       "alerting.retry_rate.enabled: expected true or false"},
      {"alerting: [ retry_rate ]\n", "alerting: expected a mapping"},
  };
  for (const Case& c : cases) {
    CompileResult result = CompileWith(c.yaml);
    EXPECT_EQ(result.policy, nullptr) << c.yaml;
    EXPECT_THAT(Errors(result), HasSubstr(c.error)) << c.yaml;
  }
}

TEST(AlertingSettingsTest, SetOnceAcrossFiles) {
  CompileResult result = CompilePolicy(
      {{"a.yaml", std::string(kPricing) + "alerting: { retry_rate: false }\n"},
       {"b.yaml",
        "apiVersion: bursar.dev/v1\nkind: Policy\nmetadata: { name: b }\n"
        "alerting: { retry_rate: true }\n"}});
  EXPECT_EQ(result.policy, nullptr);
  EXPECT_THAT(Errors(result), HasSubstr("alerting is already set at a.yaml"));
}

}  // namespace
}  // namespace bursar::policy
