#include "policy/expr/checker.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/expr/parser.h"
#include "policy/expr/test_schema.h"

namespace bursar::policy::expr {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

CheckResult Checked(const std::string& source, Type expected = Type::kBool) {
  static const TestSchema schema;
  ParseResult parsed = Parse(source, {});
  EXPECT_TRUE(parsed.errors.empty())
      << source << ": " << parsed.errors[0].message;
  return Check(std::move(parsed.ast), schema, expected);
}

// The type of the whole expression, or the first error's message.
std::string TypeOf(const std::string& source) {
  CheckResult result = Checked(source, Type::kBool);
  const int root = result.checked.ast.root;
  if (result.checked.types[root].has_value()) {
    return std::string(TypeName(*result.checked.types[root]));
  }
  return "error: " + result.errors[0].message;
}

void ExpectOk(const std::string& source, Type expected = Type::kBool) {
  CheckResult result = Checked(source, expected);
  EXPECT_THAT(result.errors, SizeIs(0))
      << source << ": " << result.errors[0].message;
}

// Expects exactly one error, at `offset`, whose message has `why`.
void ExpectError(const std::string& source, int offset, const std::string& why,
                 Type expected = Type::kBool) {
  CheckResult result = Checked(source, expected);
  ASSERT_THAT(result.errors, SizeIs(1)) << source;
  EXPECT_EQ(result.errors[0].offset, offset)
      << source << ": " << result.errors[0].message;
  EXPECT_THAT(result.errors[0].message, HasSubstr(why)) << source;
}

TEST(CheckerTest, ResolvesVariablesThroughTheSchema) {
  ExpectOk("request.model == \"gpt-4.1\"");
  ExpectOk("request.labels.team == \"search\"");
  ExpectOk("request.labels[\"cost-center\"] == \"42\"");
  ExpectOk("budgets[\"org-monthly\"].used_ratio >= 90%");
  ExpectOk("budgets['org'].remaining > $5");
  ExpectOk("now.hour >= 15 && now.weekday != \"Sun\"");
  ExpectOk("request.streaming");

  CheckResult result = Checked("request.labels[\"team\"] == request.labels.x");
  ASSERT_THAT(result.errors, SizeIs(0));
  ASSERT_THAT(result.checked.variables, SizeIs(2));
  EXPECT_EQ(result.checked.variables[0].key, "team");
  EXPECT_EQ(result.checked.variables[0].type, Type::kString);
  EXPECT_EQ(result.checked.variables[1].key, "x");
}

TEST(CheckerTest, UnknownVariablePassesTheSchemaMessageThrough) {
  ExpectError("now.hour > 3 && budget.used > 1", 16,
              "unknown variable \"budget.used\"; did you mean "
              "\"budget.used_ratio\"?");
  ExpectError("reqest.model == \"a\"", 0, "unknown variable \"reqest.model\"");
  ExpectError("budgets[\"a\"].spent > $1", 0,
              "unknown variable \"budgets[\"a\"].spent\"");
  ExpectError("request.labels == \"a\"", 0,
              "unknown variable \"request.labels\"");
}

TEST(CheckerTest, PathsNeedLiteralStringKeysAndVariableRoots) {
  ExpectError("budgets[request.model].used_ratio > 0.5", 8,
              "must be a string literal");
  ExpectError("budgets[1].used_ratio > 0.5", 8,
              "must be a string, e.g. [\"team\"], not int `1`");
  ExpectError("(1 + 2).x == 3", 7, "only variables have fields");
  ExpectError("\"abc\"[\"k\"] == \"a\"", 5, "only variables take keys");
  ExpectError("request.model.startsWith(\"a\").x", 29,
              "only variables have fields");
}

TEST(CheckerTest, ComparisonTypeMismatch) {
  ExpectError("budget.used_ratio >= \"high\"", 18,
              "cannot compare double `budget.used_ratio` with string "
              "`\"high\"`");
  ExpectError("request.model == 1", 14, "cannot compare string");
  ExpectError("now.hour < 90s", 9, "durations are written with a unit");
  ExpectError("true < false", 5, "does not apply to bools");
  ExpectOk("now.hour < 15.5");  // int and double mix
  ExpectOk("request.streaming == false");
  ExpectOk("\"a\" < request.model");
  ExpectOk("budget.period_elapsed >= 1h30m");
}

TEST(CheckerTest, BareNumberWithMoneySuggestsDollars) {
  ExpectError("budget.remaining < 100", 17, "write $100 for 100 USD");
  ExpectError("12.5 > request.estimated_cost", 5, "write $12.5 for 12.5 USD");
  ExpectError("budget.remaining + 1 > $2", 17, "write $1 for 1 USD");
  ExpectError("budget.remaining > now.hour", 17,
              "amounts of money are written with $, e.g. $100");
  ExpectError("budget.remaining in [1, 2]", 17, "write $1 for 1 USD");
  ExpectOk("budget.remaining < $100");
}

TEST(CheckerTest, LogicalOperatorsNeedBools) {
  ExpectError("request.input_tokens && true", 0,
              "operator && needs bool operands, not int "
              "`request.input_tokens`");
  ExpectError("true || \"yes\"", 8, "operator || needs bool operands");
  ExpectError("!now.hour", 0, "operator ! needs a bool, not int");
  CheckResult two = Checked("1 && true && \"x\"");
  ASSERT_THAT(two.errors, SizeIs(2));
  EXPECT_EQ(two.errors[0].offset, 0);
  EXPECT_EQ(two.errors[1].offset, 13);
}

TEST(CheckerTest, ArithmeticRules) {
  EXPECT_EQ(TypeOf("1 + 2 == 3"), "bool");
  ExpectOk("now.hour + 1 == 3", Type::kBool);
  ExpectOk("now.hour * 2", Type::kInt);
  ExpectOk("now.hour / 2", Type::kInt);
  ExpectOk("now.hour / 2.0", Type::kDouble);
  ExpectOk("budget.used_ratio - now.hour", Type::kDouble);
  ExpectOk("$1 + budget.remaining", Type::kMoney);
  ExpectOk("budget.remaining - $1", Type::kMoney);
  ExpectOk("budget.amount * 90%", Type::kMoney);
  ExpectOk("2 * budget.amount", Type::kMoney);
  ExpectOk("budget.amount * now.hour", Type::kMoney);
  ExpectOk("budget.remaining / budget.amount", Type::kDouble);
  ExpectOk("-budget.remaining", Type::kMoney);
  ExpectOk("budget.period_elapsed + 1h", Type::kDuration);
  ExpectOk("-1s", Type::kDuration);
  ExpectError("\"a\" + \"b\" == \"ab\"", 4,
              "operator + cannot combine string `\"a\"` and string");
  ExpectError("$1 * $2 > $0", 3, "cannot multiply money by money");
  ExpectError("budget.amount / 2 > $0", 14,
              "cannot divide money by int; multiply by a fraction");
  ExpectError("2 / budget.amount > 1", 2, "operator / cannot combine int");
  ExpectError("1s * 2 > 1s", 3, "operator * cannot combine duration");
  ExpectError("-\"a\" == \"a\"", 0, "operator - needs a number");
  ExpectError("-true", 0, "operator - needs a number");
  ExpectError("1h + 5 > 1h", 3, "durations are written with a unit");
}

TEST(CheckerTest, InNeedsOneElementTypeMatchingTheLeftSide) {
  ExpectOk("request.model in [\"a\", \"b\"]");
  ExpectOk("now.hour in [1, 2.5]");  // numbers mix
  ExpectOk("budget.used_ratio in [1, 2]");
  ExpectOk("budget.remaining in [$1, budget.amount]");
  ExpectError("request.model in [\"a\", 1, \"b\"]", 23,
              "the list mixes string `\"a\"` and int `1`");
  ExpectError("request.input_tokens in [\"a\"]", 21,
              "cannot look for int `request.input_tokens` in a list of "
              "string");
  ExpectError("request.model in [1]", 14, "cannot look for string");
}

TEST(CheckerTest, Methods) {
  ExpectOk("request.model.matches(\"^gpt-4(\\\\.1)?$\")");
  ExpectOk("request.model.startsWith(\"gpt\") && \"x\".endsWith('x')");
  ExpectOk("request.labels.team.contains(request.model)");
  ExpectError("now.hour.startsWith(\"1\")", 9,
              "method startsWith() applies to strings, not to int "
              "`now.hour`");
  ExpectError("request.model.size() > 1", 14,
              "unknown method 'size'; the string methods are matches, "
              "startsWith, endsWith and contains");
  ExpectError("request.model.contains()", 14,
              "contains() takes one string argument, got 0");
  ExpectError("request.model.endsWith(\"a\", \"b\")", 14, "got 2");
  ExpectError("request.model.startsWith(1)", 25,
              "the argument of startsWith() must be a string, not int");
  ExpectError("request.model.matches(request.labels.re)", 22,
              "the pattern of matches() must be a string literal");
  ExpectError("request.model.matches(1)", 22,
              "the pattern of matches() must be a string, not int");
  ExpectError("request.model.matches(\"gpt-(4\")", 22,
              "invalid regular expression `\"gpt-(4\"`: missing )");
  ExpectError("request.model.matches(\"a**\")", 22,
              "invalid regular expression");

  CheckResult result = Checked(
      "request.model.matches(\"a\") || "
      "request.model.matches(\"b\")");
  ASSERT_THAT(result.errors, SizeIs(0));
  EXPECT_THAT(result.checked.regexes, SizeIs(2));
}

TEST(CheckerTest, ResultMustHaveTheExpectedType) {
  ExpectError("request.input_tokens", 0,
              "expected a bool expression, but `request.input_tokens` has "
              "type int");
  ExpectError("budget.remaining", 0, "has type money", Type::kDouble);
  ExpectError("now.hour > 3", 0, "expected an int expression", Type::kInt);
  ExpectOk("now.hour", Type::kInt);
  ExpectOk("request.model", Type::kString);
  // An int is accepted where a double is expected.
  CheckResult promoted = Checked("now.hour * 2", Type::kDouble);
  ASSERT_THAT(promoted.errors, SizeIs(0));
  EXPECT_EQ(promoted.checked.result_type, Type::kDouble);
}

TEST(CheckerTest, ReportsEveryErrorButNoCascades) {
  CheckResult result =
      Checked("budget.used > 1 && request.modle == \"x\" && now.hour == \"3\"");
  ASSERT_THAT(result.errors, SizeIs(3));
  EXPECT_EQ(result.errors[0].offset, 0);
  EXPECT_EQ(result.errors[1].offset, 19);
  EXPECT_EQ(result.errors[2].offset, 52);
  // The unknown variable is the only error, not also the `+`, `>` or `&&`
  // above it.
  ExpectError("(budget.used + 1) > 2 && true", 1, "unknown variable");
}

}  // namespace
}  // namespace bursar::policy::expr
