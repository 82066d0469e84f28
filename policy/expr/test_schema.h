#ifndef BURSAR_POLICY_EXPR_TEST_SCHEMA_H_
#define BURSAR_POLICY_EXPR_TEST_SCHEMA_H_

// A small world of variables for the tests, the benchmark and the fuzzer of
// policy/expr; not used by the library itself.
//
//   request.model: string              request.labels.<name>: string
//   request.labels["<name>"]: string   request.input_tokens: int
//   request.estimated_cost: money      request.streaming: bool
//   budget.used_ratio: double          budget.remaining: money
//   budget.amount: money               budget.period_elapsed: duration
//   budgets["<name>"].used_ratio: double
//   budgets["<name>"].remaining: money
//   now.hour: int                      now.weekday: string

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "policy/expr/expr.h"

namespace bursar::policy::expr {

// The ids TestSchema hands out.
enum class TestVariable {
  kModel = 1,
  kLabel,
  kInputTokens,
  kEstimatedCost,
  kStreaming,
  kUsedRatio,
  kRemaining,
  kAmount,
  kPeriodElapsed,
  kBudgetsUsedRatio,
  kBudgetsRemaining,
  kHour,
  kWeekday,
};

class TestSchema : public Schema {
 public:
  absl::StatusOr<VariableRef> Resolve(
      const std::vector<PathSegment>& path) const override {
    const std::string name = PathToString(path);
    struct Fixed {
      absl::string_view name;
      TestVariable id;
      Type type;
    };
    static constexpr Fixed kFixed[] = {
        {"request.model", TestVariable::kModel, Type::kString},
        {"request.input_tokens", TestVariable::kInputTokens, Type::kInt},
        {"request.estimated_cost", TestVariable::kEstimatedCost, Type::kMoney},
        {"request.streaming", TestVariable::kStreaming, Type::kBool},
        {"budget.used_ratio", TestVariable::kUsedRatio, Type::kDouble},
        {"budget.remaining", TestVariable::kRemaining, Type::kMoney},
        {"budget.amount", TestVariable::kAmount, Type::kMoney},
        {"budget.period_elapsed", TestVariable::kPeriodElapsed,
         Type::kDuration},
        {"now.hour", TestVariable::kHour, Type::kInt},
        {"now.weekday", TestVariable::kWeekday, Type::kString},
    };
    for (const Fixed& fixed : kFixed) {
      if (fixed.name == name)
        return VariableRef{static_cast<int>(fixed.id), "", fixed.type};
    }
    if (path.size() == 3 && IsIdent(path[0], "request") &&
        IsIdent(path[1], "labels")) {
      return VariableRef{static_cast<int>(TestVariable::kLabel), path[2].text,
                         Type::kString};
    }
    if (path.size() == 3 && IsIdent(path[0], "budgets") &&
        path[1].kind == PathSegment::Kind::kKey) {
      if (IsIdent(path[2], "used_ratio")) {
        return VariableRef{static_cast<int>(TestVariable::kBudgetsUsedRatio),
                           path[1].text, Type::kDouble};
      }
      if (IsIdent(path[2], "remaining")) {
        return VariableRef{static_cast<int>(TestVariable::kBudgetsRemaining),
                           path[1].text, Type::kMoney};
      }
    }
    std::string message = absl::StrCat("unknown variable \"", name, "\"");
    for (const Fixed& fixed : kFixed) {
      if (name.size() >= 4 && absl::StartsWith(fixed.name, name)) {
        absl::StrAppend(&message, "; did you mean \"", fixed.name, "\"?");
        break;
      }
    }
    return absl::InvalidArgumentError(message);
  }

 private:
  static bool IsIdent(const PathSegment& segment, absl::string_view text) {
    return segment.kind == PathSegment::Kind::kIdent && segment.text == text;
  }
};

// Values for TestSchema's variables; a label or budget that is not set reads
// as "" or zero. Get does not allocate.
struct TestActivation : public Activation {
  struct BudgetValues {
    std::string name;
    double used_ratio = 0;
    int64_t remaining_nanos = 0;
  };

  std::string model = "gpt-4.1";
  std::vector<std::pair<std::string, std::string>> labels;
  int64_t input_tokens = 0;
  int64_t estimated_cost_nanos = 0;
  bool streaming = false;
  double used_ratio = 0;
  int64_t remaining_nanos = 0;
  int64_t amount_nanos = 0;
  absl::Duration period_elapsed;
  std::vector<BudgetValues> budgets;
  int64_t hour = 0;
  std::string weekday = "Mon";

  Value Get(const VariableRef& ref) const override {
    switch (static_cast<TestVariable>(ref.id)) {
      case TestVariable::kModel:
        return Value::String(model);
      case TestVariable::kLabel:
        for (const auto& [key, value] : labels) {
          if (key == ref.key) return Value::String(value);
        }
        return Value::String("");
      case TestVariable::kInputTokens:
        return Value::Int(input_tokens);
      case TestVariable::kEstimatedCost:
        return Value::Money(estimated_cost_nanos);
      case TestVariable::kStreaming:
        return Value::Bool(streaming);
      case TestVariable::kUsedRatio:
        return Value::Double(used_ratio);
      case TestVariable::kRemaining:
        return Value::Money(remaining_nanos);
      case TestVariable::kAmount:
        return Value::Money(amount_nanos);
      case TestVariable::kPeriodElapsed:
        return Value::Duration(period_elapsed);
      case TestVariable::kBudgetsUsedRatio:
      case TestVariable::kBudgetsRemaining:
        for (const BudgetValues& budget : budgets) {
          if (budget.name != ref.key) continue;
          return static_cast<TestVariable>(ref.id) ==
                         TestVariable::kBudgetsUsedRatio
                     ? Value::Double(budget.used_ratio)
                     : Value::Money(budget.remaining_nanos);
        }
        return static_cast<TestVariable>(ref.id) ==
                       TestVariable::kBudgetsUsedRatio
                   ? Value::Double(0)
                   : Value::Money(0);
      case TestVariable::kHour:
        return Value::Int(hour);
      case TestVariable::kWeekday:
        return Value::String(weekday);
    }
    return Value();
  }
};

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_TEST_SCHEMA_H_
