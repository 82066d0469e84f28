// libFuzzer target for the expression compiler: any input must compile to
// either a Program or at least one CompileError (never both, never neither)
// with offsets inside the source, and a Program must evaluate without
// crashing on ordinary and extreme variable values. Built with clang only
// (policy/CMakeLists.txt); run as
//   bursar_expr_compile_fuzzer -max_total_time=30 policy/expr/fuzz_corpus

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "policy/expr/expr.h"
#include "policy/expr/test_schema.h"

namespace bursar::policy::expr {
namespace {

const TestActivation& OrdinaryValues() {
  static const TestActivation* const activation = [] {
    auto* a = new TestActivation();
    a->model = "gpt-4.1-mini";
    a->labels = {{"team", "search"}, {"user", "ada@example.com"}};
    a->input_tokens = 1200;
    a->estimated_cost_nanos = 1500;
    a->used_ratio = 0.93;
    a->remaining_nanos = 5'000'000'000;
    a->amount_nanos = 100'000'000'000;
    a->period_elapsed = absl::Hours(15);
    a->budgets = {{"org-monthly", 0.4, 60'000'000'000}};
    a->hour = 15;
    return a;
  }();
  return *activation;
}

const TestActivation& ExtremeValues() {
  static const TestActivation* const activation = [] {
    auto* a = new TestActivation();
    a->model = "";
    a->input_tokens = std::numeric_limits<int64_t>::min();
    a->estimated_cost_nanos = std::numeric_limits<int64_t>::max();
    a->used_ratio = std::nan("");
    a->remaining_nanos = std::numeric_limits<int64_t>::min();
    a->amount_nanos = 0;
    a->period_elapsed = absl::Nanoseconds(std::numeric_limits<int64_t>::max());
    a->hour = 0;
    return a;
  }();
  return *activation;
}

}  // namespace
}  // namespace bursar::policy::expr

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bursar::policy::expr;  // NOLINT(build/namespaces)
  static const TestSchema* const schema = new TestSchema();
  const absl::string_view source(reinterpret_cast<const char*>(data), size);

  // The last byte, when there is one, also picks the expected type, so that
  // non-bool results and the int-to-double promotion are exercised too.
  const Type expected =
      size > 0 && data[size - 1] % 4 == 0 ? Type::kDouble : Type::kBool;
  const CompileResult result = Compile(source, *schema, expected);
  if ((result.program == nullptr) == result.errors.empty()) __builtin_trap();
  for (const CompileError& error : result.errors) {
    if (error.offset < 0 || static_cast<size_t>(error.offset) > size) {
      __builtin_trap();
    }
    if (error.message.empty()) __builtin_trap();
  }
  if (result.program != nullptr) {
    if (result.program->result_type() != expected) __builtin_trap();
    bool ok = false;
    const Value value = result.program->Eval(OrdinaryValues(), &ok);
    if (ok && value.type != expected) __builtin_trap();
    result.program->Eval(ExtremeValues(), &ok);
    result.program->EvalBool(ExtremeValues());
  }
  return 0;
}
