#include "policy/expr/expr.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/expr/test_schema.h"

namespace bursar::policy::expr {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

TEST(TypeNameTest, NamesEveryType) {
  EXPECT_EQ(TypeName(Type::kBool), "bool");
  EXPECT_EQ(TypeName(Type::kInt), "int");
  EXPECT_EQ(TypeName(Type::kDouble), "double");
  EXPECT_EQ(TypeName(Type::kString), "string");
  EXPECT_EQ(TypeName(Type::kDuration), "duration");
  EXPECT_EQ(TypeName(Type::kMoney), "money");
}

TEST(PathToStringTest, WritesIdentsAndKeys) {
  using Kind = PathSegment::Kind;
  EXPECT_EQ(PathToString({{Kind::kIdent, "request"},
                          {Kind::kIdent, "labels"},
                          {Kind::kIdent, "team"}}),
            "request.labels.team");
  EXPECT_EQ(PathToString({{Kind::kIdent, "budgets"},
                          {Kind::kKey, "org \"x\""},
                          {Kind::kIdent, "used_ratio"}}),
            "budgets[\"org \\\"x\\\"\"].used_ratio");
  EXPECT_EQ(PathToString({}), "");
}

TEST(CompileTest, ProgramIffNoErrors) {
  TestSchema schema;
  CompileResult good = Compile("now.hour >= 15", schema);
  EXPECT_NE(good.program, nullptr);
  EXPECT_THAT(good.errors, SizeIs(0));
  EXPECT_EQ(good.program->result_type(), Type::kBool);

  // One error from each phase.
  for (const char* source :
       {"now.hour >= $", "now.hour >=", "now.hour >= \"3\"", "1 / 0 > 1"}) {
    CompileResult bad = Compile(source, schema);
    EXPECT_EQ(bad.program, nullptr) << source;
    EXPECT_THAT(bad.errors, SizeIs(1)) << source;
  }
}

TEST(CompileTest, LimitsArePassedThrough) {
  TestSchema schema;
  Limits limits;
  limits.max_source_bytes = 8;
  CompileResult result = Compile("now.hour >= 15", schema, Type::kBool, limits);
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_THAT(result.errors[0].message, HasSubstr("too long"));
}

TEST(CompileTest, ProgramsOutliveTheirSource) {
  TestSchema schema;
  std::unique_ptr<const Program> program;
  {
    std::string source =
        "request.model == \"gpt-4.1\" && "
        "request.labels[\"team\"].matches(\"^se\")";
    program = Compile(source, schema).program;
    source.assign(source.size(), 'x');
  }
  ASSERT_NE(program, nullptr);
  TestActivation activation;
  activation.labels = {{"team", "search"}};
  EXPECT_TRUE(program->EvalBool(activation));
}

// The examples of docs/expressions.md compile.
TEST(CompileTest, DocumentedExamples) {
  TestSchema schema;
  for (const char* source : {
           "budget.used_ratio >= 90% && now.hour >= 15",
           "request.labels.task == \"triage\" && request.model == \"gpt-4.1\"",
           "request.labels.team in [\"search\", \"ads\"] && "
           "request.model.startsWith(\"gpt-4\")",
           "request.model.matches(\"^o[0-9]+(-mini)?$\")",
           "request.labels[\"cost-center\"].endsWith(\"-eu\")",
           "budgets[\"org-monthly\"].remaining < $100 || "
           "request.estimated_cost > $0.50",
           "request.estimated_cost > budget.remaining * 10%",
           "budget.remaining / budget.amount < 5%",
           "now.weekday in [\"Sat\", \"Sun\"] || now.hour < 8 || "
           "now.hour >= 20",
           "budget.period_elapsed < 6h && budget.used_ratio > 50%",
           "request.input_tokens > 0 && "
           "request.estimated_cost / $0.000001 > 5000",
           "request.model.matches(\"^gpt-4\\\\.1$\")",
           "-$5 < $0",
       }) {
    CompileResult result = Compile(source, schema);
    EXPECT_THAT(result.errors, SizeIs(0))
        << source << ": " << result.errors[0].message;
  }
}

TEST(EvalBoolTest, NonBoolProgramsAreNotTrue) {
  TestSchema schema;
  CompileResult result = Compile("now.hour", schema, Type::kInt);
  ASSERT_NE(result.program, nullptr);
  TestActivation activation;
  activation.hour = 1;
  bool ok = true;
  EXPECT_FALSE(result.program->EvalBool(activation, &ok));
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace bursar::policy::expr
