// libFuzzer target for the YAML policy loader. The input is one policy file,
// or two when it holds a NUL byte (split at the first one), so that merging
// across files (duplicate names, prices, settings) is exercised too. Any input
// must compile to a policy or to at least one error (never both, never
// neither), every diagnostic must say something, and a compiled policy must
// plan calls without crashing. Built with clang only (policy/CMakeLists.txt);
// run as
//   bursar_loader_fuzzer -max_total_time=30 policy/loader_fuzz_corpus
// tests/fuzz/run_fuzzers.sh runs it (and the expression fuzzer) from ctest.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "policy/call_plan.h"
#include "policy/compiled_policy.h"
#include "policy/loader.h"
#include "policy/usage_view.h"

namespace bursar::policy {
namespace {

// Every budget exists and is 95% spent, half way through its period, so
// that spend SLOs and budget conditions take their other branch too.
class NearlySpent final : public UsageView {
 public:
  std::optional<BudgetUsage> Budget(absl::string_view) const override {
    BudgetUsage usage;
    usage.amount_nanos = 100'000'000'000;
    usage.spent_nanos = 95'000'000'000;
    usage.period_start = absl::FromUnixSeconds(1'750'000'000);
    usage.period_end = absl::FromUnixSeconds(1'750'086'400);
    return usage;
  }
};

void PlanSomeCalls(const CompiledPolicy& policy) {
  static const NearlySpent* const usage = new NearlySpent();
  static const NoUsage* const no_usage = new NoUsage();
  const std::pair<absl::string_view, absl::string_view> labels[] = {
      {"task", "triage"}, {"team", "search"}, {"user", "ada"}};
  int planned = 0;
  for (const auto& [model, price] : policy.prices()) {
    if (++planned > 3) break;
    CallRequest request;
    request.model = model;
    request.labels = labels;
    request.input_tokens = 2000;
    for (const UsageView* view : {static_cast<const UsageView*>(no_usage),
                                  static_cast<const UsageView*>(usage)}) {
      DecisionContext context;
      context.usage = view;
      context.now = absl::FromUnixSeconds(1'750'050'000);
      absl::StatusOr<CallPlan> plan = PlanCall(policy, request, context);
      if (!plan.ok() || !plan->allowed) continue;
      // Walk the on_exhausted chain as the server would with nothing left.
      while (NextExhaustedStep(policy, request, 0, &*plan)) {
      }
    }
  }
}

}  // namespace
}  // namespace bursar::policy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bursar::policy;  // NOLINT(build/namespaces)
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<SourceFile> files;
  const size_t split = input.find('\0');
  if (split == absl::string_view::npos) {
    files.push_back({"policy.yaml", std::string(input)});
  } else {
    files.push_back({"a.yaml", std::string(input.substr(0, split))});
    files.push_back({"b.yaml", std::string(input.substr(split + 1))});
  }

  const CompileResult result = CompilePolicy(files);
  bool has_error = false;
  for (const Diagnostic& diagnostic : result.diagnostics) {
    if (diagnostic.message.empty()) __builtin_trap();
    if (diagnostic.line < 0 || diagnostic.column < 0) __builtin_trap();
    if (diagnostic.severity == Diagnostic::Severity::kError) has_error = true;
    FormatDiagnostic(diagnostic);
  }
  if ((result.policy == nullptr) != has_error) __builtin_trap();
  if (result.policy != nullptr) PlanSomeCalls(*result.policy);
  return 0;
}
