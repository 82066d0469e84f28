#ifndef BURSAR_POLICY_POLICY_TESTS_H_
#define BURSAR_POLICY_POLICY_TESTS_H_

// Policy tests: `kind: PolicyTest` documents (files named *_test.yaml) that
// state a situation (the clock, budgets and their usage, a request) and the
// answer the policy must give (verdict, model, output cap, rules fired).
// RunPolicyTests decides each case exactly as Check would: PlanCall, then
// for each plan its rate limits and pools (limits/, the server's engines),
// then a reservation against every budget the request matches, walking the
// on_exhausted chain while one cannot fit. Pure: no I/O.
//
//   apiVersion: bursar.dev/v1
//   kind: PolicyTest
//   metadata: { name: copilot-tests }
//   cases:
//     - name: afternoon overspend downgrades
//       now: "2026-03-10T15:30:00-05:00"       # default 2026-01-01T12:00:00Z
//       budgets:
//         - { name: daily, amount: "1000", spent: "910", period: day,
//             selector: { team: triage } }
//       request: { model: gpt-4.1, labels: { team: triage },
//                  input_tokens: 1000, max_output_tokens: 2000 }
//       rate_usage:                            # optional: counters now
//         - { rule: per-user-tpm, key: alice, window: minute,
//             tokens: 19000, requests: 5 }
//       in_flight:                             # optional: pool slots taken
//         - { pool: gpt41-slots, standard: 7, critical: 2 }
//       expect:
//         verdict: allow                       # allow | deny
//         model: gpt-4.1-mini
//         max_output_tokens: 512
//         fired: [slo:daily-spend-slo]          # exactly these, any order
//         retry_after: 63s                      # a rate-limit denial's wait

#include <string>
#include <vector>

#include "policy/compiled_policy.h"
#include "policy/loader.h"

namespace bursar::policy {

struct PolicyTestFailure {
  std::string path;
  int line = 0;  // of the case
  std::string case_name;
  std::string message;  // what was expected and what the policy answered
};

struct PolicyTestReport {
  int cases = 0;
  int passed = 0;
  std::vector<PolicyTestFailure> failures;
  // Mistakes in the test files themselves (file:line:column).
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return failures.empty() && diagnostics.empty(); }
};

// Runs every case of every *_test.yaml file in `files` (other files are
// ignored) against `policy`.
PolicyTestReport RunPolicyTests(const CompiledPolicy& policy,
                                const std::vector<SourceFile>& files);

// "copilot_test.yaml:12: afternoon overspend downgrades: <message>"
std::string FormatFailure(const PolicyTestFailure& failure);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_POLICY_TESTS_H_
