#include "policy/policy_tests.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"

namespace bursar::policy {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: t }
pricing:
  big:   { input: "2.00", output: "8.00" }
  small: { input: "0.40", output: "1.60" }
routes:
  - { name: to-small, when: 'request.labels.task == "triage"', route_to: small }
)yaml";

std::shared_ptr<const CompiledPolicy> Compile() {
  CompileResult result = CompilePolicy({{"p.yaml", kPolicy}});
  EXPECT_NE(result.policy, nullptr);
  return result.policy;
}

TEST(PolicyTestsTest, PassingAndFailingCasesAreCounted) {
  const std::string tests = R"yaml(apiVersion: bursar.dev/v1
kind: PolicyTest
metadata: { name: t }
cases:
  - name: routed
    request: { model: big, labels: { task: triage }, input_tokens: 10 }
    expect: { verdict: allow, model: small, fired: [route:to-small] }
  - name: wrong on purpose
    request: { model: big, input_tokens: 10 }
    expect: { model: small }
)yaml";
  const PolicyTestReport report =
      RunPolicyTests(*Compile(), {{"p_test.yaml", tests}});
  EXPECT_TRUE(report.diagnostics.empty());
  EXPECT_EQ(report.cases, 2);
  EXPECT_EQ(report.passed, 1);
  ASSERT_EQ(report.failures.size(), 1u);
  EXPECT_EQ(FormatFailure(report.failures[0]),
            "p_test.yaml:8: wrong on purpose: expected model small, got big");
}

TEST(PolicyTestsTest, BudgetsDecideLikeTheLedger) {
  const std::string tests = R"yaml(apiVersion: bursar.dev/v1
kind: PolicyTest
metadata: { name: t }
cases:
  - name: over budget
    budgets: [ { name: b, amount: "0.001", spent: "0.0009" } ]
    request: { model: big, input_tokens: 100, max_output_tokens: 100 }
    expect: { verdict: deny, fired: [budget:b] }
  - name: other selector
    budgets: [ { name: b, amount: "0", selector: { team: x } } ]
    request: { model: big, labels: { team: y }, input_tokens: 100 }
    expect: { verdict: allow }
)yaml";
  const PolicyTestReport report =
      RunPolicyTests(*Compile(), {{"p_test.yaml", tests}});
  for (const auto& f : report.failures) ADD_FAILURE() << FormatFailure(f);
  EXPECT_EQ(report.passed, 2);
}

TEST(PolicyTestsTest, MistakesInTestFilesAreDiagnostics) {
  const std::string tests = R"yaml(apiVersion: bursar.dev/v1
kind: PolicyTest
metadata: { name: t }
cases:
  - name: typo
    request: { model: big, input_tokens: 10 }
    expect: { verdikt: allow }
)yaml";
  const PolicyTestReport report =
      RunPolicyTests(*Compile(), {{"p_test.yaml", tests}});
  ASSERT_FALSE(report.diagnostics.empty());
  EXPECT_THAT(FormatDiagnostic(report.diagnostics[0]),
              HasSubstr("p_test.yaml:7:"));
  EXPECT_THAT(report.diagnostics[0].message, HasSubstr("verdikt"));
  EXPECT_FALSE(report.ok());
}

// yaml-cpp 0.7's LoadAll loops forever on a stray ','; the reader refuses it.
TEST(PolicyTestsTest, StrayCommaIsADiagnosticNotAHang) {
  const PolicyTestReport report =
      RunPolicyTests(*Compile(), {{"p_test.yaml", "cases: []\n,\n"}});
  ASSERT_FALSE(report.diagnostics.empty());
  EXPECT_THAT(report.diagnostics[0].message, HasSubstr("not valid YAML"));
  EXPECT_FALSE(report.ok());
}

}  // namespace
}  // namespace bursar::policy
