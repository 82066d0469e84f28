#include "policy/expr/program.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/expr/expr.h"
#include "policy/expr/test_schema.h"

namespace bursar::policy::expr {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr int64_t kUsd = 1'000'000'000;

class ProgramTest : public ::testing::Test {
 protected:
  std::unique_ptr<const Program> Compiled(const std::string& source,
                                          Type expected = Type::kBool) {
    CompileResult result = Compile(source, schema_, expected);
    EXPECT_THAT(result.errors, SizeIs(0))
        << source << ": " << result.errors[0].message << " at "
        << result.errors[0].offset;
    return std::move(result.program);
  }

  // Evaluates a condition: success iff it compiles, evaluates without a
  // runtime error, and is true.
  ::testing::AssertionResult Holds(const std::string& source) {
    std::unique_ptr<const Program> program = Compiled(source);
    if (program == nullptr) {
      return ::testing::AssertionFailure() << source << " does not compile";
    }
    bool ok = false;
    const bool value = program->EvalBool(activation_, &ok);
    if (!ok) {
      return ::testing::AssertionFailure() << source << " failed to evaluate";
    }
    if (!value) return ::testing::AssertionFailure() << source << " is false";
    return ::testing::AssertionSuccess() << source << " is true";
  }

  // Success iff it compiles and evaluates without error to false.
  ::testing::AssertionResult DoesNotHold(const std::string& source) {
    std::unique_ptr<const Program> program = Compiled(source);
    if (program == nullptr) {
      return ::testing::AssertionFailure() << source << " does not compile";
    }
    bool ok = false;
    const bool value = program->EvalBool(activation_, &ok);
    if (!ok) {
      return ::testing::AssertionFailure() << source << " failed to evaluate";
    }
    if (value) return ::testing::AssertionFailure() << source << " is true";
    return ::testing::AssertionSuccess() << source << " is false";
  }

  // Success iff it compiles and evaluating it is a runtime error.
  ::testing::AssertionResult IsRuntimeError(const std::string& source) {
    std::unique_ptr<const Program> program = Compiled(source);
    if (program == nullptr) {
      return ::testing::AssertionFailure() << source << " does not compile";
    }
    bool ok = true;
    const bool value = program->EvalBool(activation_, &ok);
    if (ok) {
      return ::testing::AssertionFailure()
             << source << " evaluated to " << value;
    }
    if (value) {
      return ::testing::AssertionFailure()
             << source << " is an error but EvalBool returned true";
    }
    return ::testing::AssertionSuccess();
  }

  Value ValueOf(const std::string& source, Type expected) {
    std::unique_ptr<const Program> program = Compiled(source, expected);
    if (program == nullptr) return Value();
    EXPECT_EQ(program->result_type(), expected);
    bool ok = false;
    const Value value = program->Eval(activation_, &ok);
    EXPECT_TRUE(ok) << source;
    EXPECT_EQ(value.type, expected) << source;
    return value;
  }

  TestSchema schema_;
  TestActivation activation_;
};

TEST_F(ProgramTest, Booleans) {
  EXPECT_TRUE(Holds("true"));
  EXPECT_TRUE(DoesNotHold("false"));
  EXPECT_TRUE(Holds("!false"));
  EXPECT_TRUE(Holds("true == true"));
  EXPECT_TRUE(Holds("true != false"));
  EXPECT_TRUE(Holds("!request.streaming"));
  activation_.streaming = true;
  EXPECT_TRUE(Holds("request.streaming"));
  EXPECT_TRUE(Holds("request.streaming == true"));
  EXPECT_TRUE(Holds("request.streaming in [false, true]"));
  EXPECT_TRUE(DoesNotHold("request.streaming in [false]"));
}

TEST_F(ProgramTest, LogicalOperators) {
  activation_.hour = 16;
  activation_.used_ratio = 0.95;
  EXPECT_TRUE(Holds("budget.used_ratio >= 90% && now.hour >= 15"));
  EXPECT_TRUE(DoesNotHold("budget.used_ratio >= 90% && now.hour >= 17"));
  EXPECT_TRUE(Holds("budget.used_ratio >= 99% || now.hour >= 15"));
  EXPECT_TRUE(DoesNotHold("budget.used_ratio >= 99% || now.hour >= 17"));
  EXPECT_TRUE(Holds("now.hour > 1 && now.hour > 2 && now.hour > 3"));
  EXPECT_TRUE(DoesNotHold("now.hour > 1 && now.hour > 20 && now.hour > 3"));
  EXPECT_TRUE(Holds("now.hour > 20 || now.hour > 30 || now.hour > 3"));
  EXPECT_TRUE(Holds("!(now.hour > 20) && (now.hour < 3 || now.hour == 16)"));
}

TEST_F(ProgramTest, IntArithmeticAndComparison) {
  activation_.input_tokens = 7;
  EXPECT_EQ(ValueOf("request.input_tokens + 3", Type::kInt).int_value, 10);
  EXPECT_EQ(ValueOf("request.input_tokens - 10", Type::kInt).int_value, -3);
  EXPECT_EQ(ValueOf("request.input_tokens * 6", Type::kInt).int_value, 42);
  EXPECT_EQ(ValueOf("request.input_tokens / 2", Type::kInt).int_value, 3);
  EXPECT_EQ(ValueOf("-request.input_tokens / 2", Type::kInt).int_value, -3);
  EXPECT_EQ(ValueOf("1 + 2 * 3 - 4 / 2", Type::kInt).int_value, 5);
  EXPECT_EQ(ValueOf("(1 + 2) * 3", Type::kInt).int_value, 9);
  EXPECT_TRUE(Holds("request.input_tokens == 7"));
  EXPECT_TRUE(Holds("request.input_tokens != 8"));
  EXPECT_TRUE(Holds("request.input_tokens < 8"));
  EXPECT_TRUE(Holds("request.input_tokens <= 7"));
  EXPECT_TRUE(Holds("request.input_tokens > 6"));
  EXPECT_TRUE(Holds("request.input_tokens >= 7"));
  EXPECT_TRUE(DoesNotHold("request.input_tokens > 7"));
  EXPECT_TRUE(Holds("request.input_tokens in [1, 7, 9]"));
  EXPECT_TRUE(DoesNotHold("request.input_tokens in [1, 9]"));
  EXPECT_TRUE(Holds("-request.input_tokens == -7"));
}

TEST_F(ProgramTest, DoubleArithmeticAndIntPromotion) {
  activation_.used_ratio = 0.5;
  activation_.hour = 3;
  EXPECT_DOUBLE_EQ(ValueOf("budget.used_ratio * 3", Type::kDouble).double_value,
                   1.5);
  EXPECT_DOUBLE_EQ(ValueOf("budget.used_ratio + 1", Type::kDouble).double_value,
                   1.5);
  EXPECT_DOUBLE_EQ(ValueOf("1 - budget.used_ratio", Type::kDouble).double_value,
                   0.5);
  EXPECT_DOUBLE_EQ(ValueOf("now.hour / 2.0", Type::kDouble).double_value, 1.5);
  EXPECT_EQ(ValueOf("now.hour / 2", Type::kInt).int_value, 1);
  EXPECT_DOUBLE_EQ(ValueOf("-budget.used_ratio", Type::kDouble).double_value,
                   -0.5);
  // An int result is converted when a double is asked for.
  EXPECT_DOUBLE_EQ(ValueOf("now.hour", Type::kDouble).double_value, 3.0);
  EXPECT_DOUBLE_EQ(ValueOf("now.hour * 2", Type::kDouble).double_value, 6.0);
  EXPECT_TRUE(Holds("budget.used_ratio == 50%"));
  EXPECT_TRUE(Holds("now.hour < 3.5 && now.hour > 2.5 && now.hour == 3.0"));
  EXPECT_TRUE(Holds("budget.used_ratio < 1"));
  EXPECT_TRUE(Holds("budget.used_ratio in [0.25, 0.5]"));
  EXPECT_TRUE(Holds("now.hour in [1.5, 3]"));
  EXPECT_TRUE(Holds("now.hour in [2.5, 3.0]"));
  EXPECT_TRUE(Holds("90% == 0.9 && 12.5% == 0.125 && 100% == 1"));
}

TEST_F(ProgramTest, DoublesFollowIeee754) {
  activation_.used_ratio = 0;
  EXPECT_TRUE(Holds("1 / budget.used_ratio > 1000000"));  // +inf
  activation_.used_ratio = std::nan("");
  EXPECT_TRUE(DoesNotHold("budget.used_ratio == budget.used_ratio"));
  EXPECT_TRUE(Holds("budget.used_ratio != budget.used_ratio"));
  EXPECT_TRUE(DoesNotHold("budget.used_ratio >= 0"));
}

TEST_F(ProgramTest, Strings) {
  activation_.model = "gpt-4.1-mini";
  activation_.labels = {{"team", "search"}, {"cost-center", "42"}};
  EXPECT_TRUE(Holds("request.model == \"gpt-4.1-mini\""));
  EXPECT_TRUE(Holds("request.model != 'gpt-4.1'"));
  EXPECT_TRUE(Holds("request.model < \"gpt-5\""));
  EXPECT_TRUE(Holds("request.model > \"gpt-4.1\""));
  EXPECT_TRUE(Holds("request.model <= request.model"));
  EXPECT_TRUE(Holds("\"a\" >= \"a\""));
  EXPECT_TRUE(Holds("request.labels.team in [\"ads\", \"search\"]"));
  EXPECT_TRUE(DoesNotHold("request.labels.team in [\"ads\"]"));
  EXPECT_TRUE(Holds("request.labels[\"cost-center\"] == \"42\""));
  EXPECT_TRUE(Holds("request.labels[\"team\"] == request.labels.team"));
  EXPECT_TRUE(Holds("request.labels.missing == \"\""));
  EXPECT_TRUE(Holds("\"a\\\"b\" == 'a\"b'"));
}

TEST_F(ProgramTest, StringMethods) {
  activation_.model = "gpt-4.1-mini";
  activation_.labels = {{"prefix", "gpt"}};
  EXPECT_TRUE(Holds("request.model.startsWith(\"gpt-4\")"));
  EXPECT_TRUE(DoesNotHold("request.model.startsWith(\"o4\")"));
  EXPECT_TRUE(Holds("request.model.endsWith(\"-mini\")"));
  EXPECT_TRUE(DoesNotHold("request.model.endsWith(\"-nano\")"));
  EXPECT_TRUE(Holds("request.model.contains(\"4.1\")"));
  EXPECT_TRUE(DoesNotHold("request.model.contains(\"4.5\")"));
  EXPECT_TRUE(Holds("request.model.startsWith(request.labels.prefix)"));
  EXPECT_TRUE(Holds("request.model.startsWith(\"\")"));
  // matches() is an unanchored RE2 search; anchor with ^ and $.
  EXPECT_TRUE(Holds("request.model.matches(\"4\\\\.1\")"));
  EXPECT_TRUE(Holds("request.model.matches(\"^gpt-4(\\\\.1)?(-mini)?$\")"));
  EXPECT_TRUE(DoesNotHold("request.model.matches(\"^4\")"));
  EXPECT_TRUE(Holds("!request.model.matches(\"(?i)CLAUDE\")"));
  activation_.model = "Claude-3";
  EXPECT_TRUE(Holds("request.model.matches(\"(?i)CLAUDE\")"));
}

TEST_F(ProgramTest, Money) {
  activation_.remaining_nanos = 12 * kUsd + kUsd / 2;  // $12.50
  activation_.amount_nanos = 100 * kUsd;
  activation_.estimated_cost_nanos = 1500;  // $0.0000015
  EXPECT_TRUE(Holds("budget.remaining == $12.50"));
  EXPECT_TRUE(Holds("budget.remaining == $12.5"));
  EXPECT_TRUE(Holds("budget.remaining < $100 && budget.remaining > $12"));
  EXPECT_TRUE(Holds("request.estimated_cost == $0.0000015"));
  EXPECT_TRUE(Holds("request.estimated_cost <= $0.000001500"));
  EXPECT_TRUE(Holds("budget.remaining in [$1, $12.50]"));
  EXPECT_EQ(ValueOf("budget.remaining + $0.25", Type::kMoney).int_value,
            12'750'000'000);
  EXPECT_EQ(ValueOf("budget.remaining - $20", Type::kMoney).int_value,
            -7'500'000'000);
  EXPECT_EQ(ValueOf("-budget.remaining", Type::kMoney).int_value,
            -12'500'000'000);
  EXPECT_EQ(ValueOf("budget.remaining * 3", Type::kMoney).int_value,
            37'500'000'000);
  EXPECT_EQ(ValueOf("3 * budget.remaining", Type::kMoney).int_value,
            37'500'000'000);
  EXPECT_EQ(ValueOf("budget.amount * 90%", Type::kMoney).int_value, 90 * kUsd);
  EXPECT_EQ(ValueOf("0.333 * budget.amount", Type::kMoney).int_value,
            33'300'000'000);
  EXPECT_DOUBLE_EQ(
      ValueOf("budget.remaining / budget.amount", Type::kDouble).double_value,
      0.125);
  EXPECT_TRUE(Holds("budget.remaining / budget.amount < 15%"));
  EXPECT_TRUE(Holds("budget.remaining < budget.amount * 20%"));
}

TEST_F(ProgramTest, MoneyTimesDoubleRoundsHalfAwayFromZero) {
  activation_.remaining_nanos = 1;
  EXPECT_EQ(ValueOf("budget.remaining * 0.5", Type::kMoney).int_value, 1);
  EXPECT_EQ(ValueOf("budget.remaining * 0.49", Type::kMoney).int_value, 0);
  EXPECT_EQ(ValueOf("budget.remaining * -0.5", Type::kMoney).int_value, -1);
  activation_.remaining_nanos = 3;
  EXPECT_EQ(ValueOf("budget.remaining * 0.5", Type::kMoney).int_value, 2);
  EXPECT_EQ(ValueOf("-budget.remaining * 0.5", Type::kMoney).int_value, -2);
  // Exact for large amounts: 9e18 nanos does not fit a double's mantissa.
  activation_.remaining_nanos = 9'000'000'000'000'000'001;
  EXPECT_EQ(ValueOf("budget.remaining * 1.0", Type::kMoney).int_value,
            9'000'000'000'000'000'001);
}

TEST_F(ProgramTest, Durations) {
  activation_.period_elapsed = absl::Hours(1) + absl::Minutes(30);
  EXPECT_TRUE(Holds("budget.period_elapsed == 1h30m"));
  EXPECT_TRUE(Holds("budget.period_elapsed == 90m"));
  EXPECT_TRUE(Holds("budget.period_elapsed == 5400s"));
  EXPECT_TRUE(
      Holds("budget.period_elapsed > 1h && budget.period_elapsed < 2h"));
  EXPECT_TRUE(Holds("budget.period_elapsed >= 89m59s999ms"));
  EXPECT_TRUE(Holds("budget.period_elapsed + 30m == 2h"));
  EXPECT_TRUE(Holds("budget.period_elapsed - 2h == -30m"));
  EXPECT_TRUE(Holds("budget.period_elapsed in [1h, 90m]"));
  EXPECT_TRUE(Holds("250ms < 1s && 2d == 48h && -1s < 0s"));
  EXPECT_EQ(ValueOf("budget.period_elapsed", Type::kDuration).int_value,
            absl::ToInt64Nanoseconds(absl::Minutes(90)));
}

TEST_F(ProgramTest, BudgetsByName) {
  activation_.budgets = {{"org-monthly", 0.5, 40 * kUsd},
                         {"team", 0.95, 5 * kUsd}};
  EXPECT_TRUE(Holds("budgets[\"org-monthly\"].used_ratio == 50%"));
  EXPECT_TRUE(Holds("budgets['team'].used_ratio > 90%"));
  EXPECT_TRUE(
      Holds("budgets[\"org-monthly\"].remaining < $100 || "
            "request.estimated_cost > $0.50"));
  EXPECT_TRUE(
      Holds("budgets[\"team\"].remaining + "
            "budgets[\"org-monthly\"].remaining == $45"));
}

TEST_F(ProgramTest, ExamplesFromTheHeader) {
  activation_.used_ratio = 0.92;
  activation_.hour = 15;
  activation_.model = "gpt-4o";
  activation_.labels = {{"team", "ads"}};
  EXPECT_TRUE(Holds("budget.used_ratio >= 90% && now.hour >= 15"));
  EXPECT_TRUE(
      Holds("request.labels.team in [\"search\", \"ads\"] && "
            "request.model.startsWith(\"gpt-4\")"));
}

TEST_F(ProgramTest, AndOrShortCircuitPastRuntimeErrors) {
  activation_.input_tokens = 0;
  EXPECT_TRUE(IsRuntimeError("100 / request.input_tokens > 1"));
  EXPECT_TRUE(
      DoesNotHold("request.input_tokens != 0 && "
                  "100 / request.input_tokens > 1"));
  EXPECT_TRUE(
      Holds("request.input_tokens == 0 || "
            "100 / request.input_tokens > 1"));
  // Left to right: an error reached before the deciding operand is the
  // result.
  EXPECT_TRUE(IsRuntimeError("100 / request.input_tokens > 1 && false"));
  EXPECT_TRUE(IsRuntimeError("100 / request.input_tokens > 1 || true"));
  EXPECT_TRUE(IsRuntimeError("true && 100 / request.input_tokens > 1"));
  // `in` stops at the first equal element.
  EXPECT_TRUE(Holds("0 in [request.input_tokens, 1 / request.input_tokens]"));
  EXPECT_TRUE(IsRuntimeError("5 in [1 / request.input_tokens, 5]"));
}

TEST_F(ProgramTest, RuntimeErrors) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  activation_.input_tokens = 0;
  EXPECT_TRUE(IsRuntimeError("now.hour / request.input_tokens == 0"));
  activation_.input_tokens = kMax;
  EXPECT_TRUE(IsRuntimeError("request.input_tokens + 1 > 0"));
  EXPECT_TRUE(IsRuntimeError("request.input_tokens * 2 > 0"));
  EXPECT_TRUE(IsRuntimeError("-request.input_tokens - 2 < 0"));
  EXPECT_TRUE(Holds("-request.input_tokens - 1 < 0"));  // exactly kMin
  activation_.input_tokens = kMin;
  EXPECT_TRUE(IsRuntimeError("-request.input_tokens > 0"));
  EXPECT_TRUE(IsRuntimeError("request.input_tokens / -1 > 0"));

  activation_.remaining_nanos = kMax;
  activation_.amount_nanos = 0;
  activation_.input_tokens = 2;
  EXPECT_TRUE(IsRuntimeError("budget.remaining + $0.000000001 > $0"));
  EXPECT_TRUE(IsRuntimeError("budget.remaining * request.input_tokens > $0"));
  EXPECT_TRUE(IsRuntimeError("budget.remaining * 1.5 > $0"));
  EXPECT_TRUE(IsRuntimeError("budget.remaining / budget.amount > 0.5"));
  EXPECT_TRUE(IsRuntimeError("-budget.amount - budget.remaining - $1 < $0"));
  activation_.used_ratio = std::nan("");
  EXPECT_TRUE(IsRuntimeError("budget.remaining * budget.used_ratio > $0"));
  activation_.period_elapsed = absl::Nanoseconds(kMax);
  EXPECT_TRUE(IsRuntimeError("budget.period_elapsed + 1ms > 0s"));

  // Eval reports the same through *ok, and tolerates a null ok.
  std::unique_ptr<const Program> program =
      Compiled("budget.period_elapsed + 1ms > 0s");
  ASSERT_NE(program, nullptr);
  bool ok = true;
  program->Eval(activation_, &ok);
  EXPECT_FALSE(ok);
  program->Eval(activation_, nullptr);
  EXPECT_FALSE(program->EvalBool(activation_));
  activation_.period_elapsed = absl::Seconds(1);
  program->Eval(activation_, &ok);
  EXPECT_TRUE(ok);
  EXPECT_TRUE(program->EvalBool(activation_));
}

TEST_F(ProgramTest, ConstantsAreFolded) {
  auto count = [&](const std::string& source) {
    std::unique_ptr<const Program> program = Compiled(source);
    return program == nullptr ? -1 : InstructionCount(*program);
  };
  EXPECT_EQ(count("1 + 2 * 3 == 7"), 1);
  EXPECT_EQ(count("\"gpt-4.1\".startsWith(\"gpt\") && 90% > 0.5"), 1);
  EXPECT_EQ(count("\"abc\".matches(\"^a\")"), 1);
  EXPECT_EQ(count("2 in [1, 1 + 1]"), 1);
  EXPECT_EQ(count("now.hour >= 15"), 3);
  EXPECT_EQ(count("now.hour >= 10 + 5"), 3);
  EXPECT_EQ(count("now.hour >= 15.0"), 4);  // var, to-double, const, compare
  // Constant operands of && and ||: a non-deciding one is dropped, a
  // deciding one ends the chain.
  EXPECT_EQ(count("true && now.hour >= 15"), 3);
  EXPECT_EQ(count("now.hour >= 15 && true"), 3);
  EXPECT_EQ(count("false && now.hour >= 15"), 1);
  EXPECT_EQ(count("now.hour >= 15 && false && now.hour < 3"), 5);
  EXPECT_EQ(count("1 > 2 || now.hour >= 15 || 3 > 2 || now.hour < 3"), 5);
  EXPECT_EQ(count("true && true"), 1);

  activation_.hour = 16;
  EXPECT_TRUE(Holds("true && now.hour >= 15"));
  EXPECT_TRUE(DoesNotHold("now.hour >= 15 && false && now.hour < 3"));
  EXPECT_TRUE(Holds("1 > 2 || now.hour >= 15 || 3 > 2 || now.hour < 3"));
  EXPECT_TRUE(Holds("true && true"));
  EXPECT_TRUE(DoesNotHold("false || false"));
}

TEST(ProgramCompileTest, ConstantRuntimeErrorsAreCompileErrors) {
  TestSchema schema;
  CompileResult result = Compile("now.hour > 1 / 0", schema);
  EXPECT_EQ(result.program, nullptr);
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].offset, 13);
  EXPECT_THAT(result.errors[0].message,
              HasSubstr("division by zero in the constant expression `1 / "
                        "0`"));

  result = Compile("9223372036854775807 + 1 > 0", schema);
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].offset, 20);
  EXPECT_THAT(result.errors[0].message, HasSubstr("arithmetic overflow"));

  result = Compile("$9000000000 * 2 > $0", schema);
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_THAT(result.errors[0].message, HasSubstr("arithmetic overflow"));

  // A constant that is never reached is not evaluated.
  result = Compile("false && 1 / 0 == 1", schema);
  EXPECT_THAT(result.errors, SizeIs(0));
}

// Slots (VariableRef::slot): TestSchema's variables, with request.model in
// slot 0, request.input_tokens in slot 1 and budget.used_ratio in slot 2.
class SlottedSchema final : public Schema {
 public:
  absl::StatusOr<VariableRef> Resolve(
      const std::vector<PathSegment>& path) const override {
    absl::StatusOr<VariableRef> ref = schema_.Resolve(path);
    if (!ref.ok()) return ref;
    switch (static_cast<TestVariable>(ref->id)) {
      case TestVariable::kModel:
        ref->slot = 0;
        break;
      case TestVariable::kInputTokens:
        ref->slot = 1;
        break;
      case TestVariable::kUsedRatio:
        ref->slot = 2;
        break;
      default:
        break;
    }
    return ref;
  }

 private:
  TestSchema schema_;
};

// Reads slotted variables from `slots` (when not null); asks `get` for the
// others and counts those calls.
class SlottedActivation final : public Activation {
 public:
  SlottedActivation(const Value* slots, const TestActivation* get)
      : Activation(slots), get_(get) {}
  Value Get(const VariableRef& ref) const override {
    ++gets;
    return get_->Get(ref);
  }
  mutable int gets = 0;

 private:
  const TestActivation* get_;
};

class SlotTest : public ::testing::Test {
 protected:
  SlotTest() {
    get_.model = "from-get";
    get_.input_tokens = 1;
    get_.used_ratio = 0.1;
    get_.estimated_cost_nanos = 7;
  }

  // Evaluates `source` against the slot table and against Get alone; the
  // results in *from_slots and *from_get, and the Get calls of the first.
  void Eval(const std::string& source, bool* from_slots, bool* from_get,
            int* gets) {
    CompileResult result = Compile(source, schema_);
    ASSERT_TRUE(result.errors.empty()) << source;
    const SlottedActivation slotted(slots_, &get_);
    const SlottedActivation unslotted(nullptr, &get_);
    bool ok = false;
    *from_slots = result.program->EvalBool(slotted, &ok);
    EXPECT_TRUE(ok) << source;
    *from_get = result.program->EvalBool(unslotted, &ok);
    EXPECT_TRUE(ok) << source;
    *gets = slotted.gets;
  }

  SlottedSchema schema_;
  TestActivation get_;
  Value slots_[3] = {Value::String("from-slot"), Value::Int(9),
                     Value::Double(0.5)};
};

TEST_F(SlotTest, SlottedVariablesAreReadFromTheTableNotFromGet) {
  const std::string conditions[] = {
      "request.model == \"from-slot\"",           // a specialised leaf
      "request.model in [\"x\", \"from-slot\"]",  // `in` of literals
      "request.model.startsWith(\"from-s\")",     // an operand
      "request.input_tokens > 5",                 // int leaf
      "request.input_tokens + 1 == 10",           // arithmetic
      "budget.used_ratio >= 50%",                 // double leaf
      "!(budget.used_ratio < 0.5)",
  };
  for (const std::string& source : conditions) {
    bool from_slots = false, from_get = true;
    int gets = -1;
    Eval(source, &from_slots, &from_get, &gets);
    EXPECT_TRUE(from_slots) << source;
    EXPECT_FALSE(from_get) << source;
    EXPECT_EQ(gets, 0) << source;
  }
}

TEST_F(SlotTest, VariablesWithoutASlotAreAskedOfGet) {
  bool from_slots = false, from_get = false;
  int gets = 0;
  Eval("request.estimated_cost == $0.000000007 && request.model != \"x\"",
       &from_slots, &from_get, &gets);
  EXPECT_TRUE(from_slots);
  EXPECT_TRUE(from_get);
  EXPECT_EQ(gets, 1);
}

// The specialised leaves decide `variable <cmp> literal` from an outcome
// mask: every comparison, on each side of the literal, and NaN.
TEST_F(SlotTest, EveryComparisonOfAVariableWithALiteral) {
  const char* ops[] = {"==", "!=", "<", "<=", ">", ">="};
  auto expect = [](absl::string_view op, double a, double b) {
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "<") return a < b;
    if (op == "<=") return a <= b;
    if (op == ">") return a > b;
    return a >= b;
  };
  for (const char* op : ops) {
    for (int64_t tokens : {8, 9, 10}) {
      slots_[1] = Value::Int(tokens);
      for (const bool literal_first : {false, true}) {
        // `9 < x` is `x > 9`.
        const std::string source =
            literal_first ? absl::StrCat("9 ", op, " request.input_tokens")
                          : absl::StrCat("request.input_tokens ", op, " 9");
        bool from_slots = false, from_get = false;
        int gets = 0;
        Eval(source, &from_slots, &from_get, &gets);
        const bool want =
            literal_first ? expect(op, 9, tokens) : expect(op, tokens, 9);
        EXPECT_EQ(from_slots, want) << source << " with " << tokens;
      }
    }
    for (double ratio : {0.25, 0.5, 0.75, std::nan("")}) {
      slots_[2] = Value::Double(ratio);
      const std::string source = absl::StrCat("budget.used_ratio ", op, " 0.5");
      bool from_slots = false, from_get = false;
      int gets = 0;
      Eval(source, &from_slots, &from_get, &gets);
      EXPECT_EQ(from_slots, expect(op, ratio, 0.5))
          << source << " with " << ratio;
    }
  }
}

// Conditions that are one leaf, or `&&` / `||` of leaves, are decided by
// one loop over copies of the leaves (CompiledProgram::EvalChain): every
// combination of three leaves, through the table and through Get.
TEST_F(SlotTest, ChainsOfLeavesDecideLikeTheirOperators) {
  for (int mask = 0; mask < 8; ++mask) {
    const bool a = mask & 1, b = mask & 2, c = mask & 4;
    slots_[0] = Value::String(a ? "from-slot" : "other");
    slots_[1] = Value::Int(b ? 9 : 1);
    slots_[2] = Value::Double(c ? 0.5 : 0.1);
    const std::string leaves[] = {"request.model in [\"x\", \"from-slot\"]",
                                  "request.input_tokens >= 9",
                                  "budget.used_ratio == 50%"};
    for (const char* op : {" && ", " || "}) {
      const std::string source =
          absl::StrCat(leaves[0], op, leaves[1], op, leaves[2]);
      bool from_slots = false, from_get = false;
      int gets = 0;
      Eval(source, &from_slots, &from_get, &gets);
      const bool want =
          std::string(op) == " && " ? (a && b && c) : (a || b || c);
      EXPECT_EQ(from_slots, want) << source << " with " << mask;
      EXPECT_FALSE(from_get) << source;  // Get's values fail every leaf
      EXPECT_EQ(gets, 0) << source;
    }
    bool from_slots = false, from_get = true;
    int gets = 0;
    Eval(leaves[1], &from_slots, &from_get, &gets);
    EXPECT_EQ(from_slots, b) << leaves[1];
    EXPECT_FALSE(from_get);
  }
}

}  // namespace
}  // namespace bursar::policy::expr
