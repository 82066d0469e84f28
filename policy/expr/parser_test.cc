#include "policy/expr/parser.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/expr/ast.h"

namespace bursar::policy::expr {
namespace {

using ::testing::HasSubstr;

// The tree as a fully parenthesized string.
std::string Dump(const Ast& ast, int index) {
  const Node& n = ast.node(index);
  auto dump_all = [&](int from, absl::string_view separator) {
    std::vector<std::string> parts;
    for (size_t i = from; i < n.children.size(); ++i) {
      parts.push_back(Dump(ast, n.children[i]));
    }
    return absl::StrJoin(parts, separator);
  };
  switch (n.kind) {
    case NodeKind::kLiteral:
      switch (n.value.type) {
        case Type::kBool:
          return n.value.bool_value ? "true" : "false";
        case Type::kInt:
          return absl::StrCat(n.value.int_value);
        case Type::kDouble:
          return absl::StrCat(n.value.double_value);
        case Type::kString:
          return absl::StrCat("\"", n.text, "\"");
        case Type::kDuration:
          return absl::StrCat(n.value.int_value, "ns");
        case Type::kMoney:
          return absl::StrCat(n.value.int_value, "n$");
      }
      return "?";
    case NodeKind::kIdent:
      return n.text;
    case NodeKind::kMember:
      return absl::StrCat(Dump(ast, n.children[0]), ".", n.text);
    case NodeKind::kIndex:
      return absl::StrCat(Dump(ast, n.children[0]), "[",
                          Dump(ast, n.children[1]), "]");
    case NodeKind::kCall:
      return absl::StrCat(Dump(ast, n.children[0]), ".", n.text, "(",
                          dump_all(1, ", "), ")");
    case NodeKind::kUnary:
      return absl::StrCat("(", UnaryOpText(n.unary_op),
                          Dump(ast, n.children[0]), ")");
    case NodeKind::kBinary:
      return absl::StrCat("(", Dump(ast, n.children[0]), " ",
                          BinaryOpText(n.binary_op), " ",
                          Dump(ast, n.children[1]), ")");
    case NodeKind::kAnd:
      return absl::StrCat("(", dump_all(0, " && "), ")");
    case NodeKind::kOr:
      return absl::StrCat("(", dump_all(0, " || "), ")");
    case NodeKind::kIn:
      return absl::StrCat("(", Dump(ast, n.children[0]), " in ",
                          Dump(ast, n.children[1]), ")");
    case NodeKind::kList:
      return absl::StrCat("[", dump_all(0, ", "), "]");
  }
  return "?";
}

std::string Parsed(const std::string& source, const Limits& limits = {}) {
  ParseResult result = Parse(source, limits);
  if (!result.errors.empty()) {
    return absl::StrCat("error at ", result.errors[0].offset, ": ",
                        result.errors[0].message);
  }
  return Dump(result.ast, result.ast.root);
}

void ExpectError(const std::string& source, int offset, const std::string& why,
                 const Limits& limits = {}) {
  ParseResult result = Parse(source, limits);
  ASSERT_EQ(result.errors.size(), 1u)
      << "accepted: " << source << " as " << Dump(result.ast, result.ast.root);
  EXPECT_EQ(result.errors[0].offset, offset)
      << source << ": " << result.errors[0].message;
  EXPECT_THAT(result.errors[0].message, HasSubstr(why)) << source;
}

TEST(ParserTest, PrecedenceFromLoosestToTightest) {
  EXPECT_EQ(Parsed("a || b && c"), "(a || (b && c))");
  EXPECT_EQ(Parsed("a && b || c"), "((a && b) || c)");
  EXPECT_EQ(Parsed("a && b == c"), "(a && (b == c))");
  EXPECT_EQ(Parsed("a == b < c"), "(a == (b < c))");
  EXPECT_EQ(Parsed("a < b + c"), "(a < (b + c))");
  EXPECT_EQ(Parsed("a + b * c"), "(a + (b * c))");
  EXPECT_EQ(Parsed("a * -b"), "(a * (-b))");
  EXPECT_EQ(Parsed("-a.b"), "(-a.b)");
  EXPECT_EQ(Parsed("!a.b.startsWith(\"x\")"), "(!a.b.startsWith(\"x\"))");
  EXPECT_EQ(Parsed("a + 1 in [2, 3]"), "((a + 1) in [2, 3])");
  EXPECT_EQ(Parsed("a in [1] == b"), "((a in [1]) == b)");
  EXPECT_EQ(Parsed("a < b == c < d"), "((a < b) == (c < d))");
  EXPECT_EQ(Parsed("a || b && c == d < e + f * -g.h"),
            "(a || (b && (c == (d < (e + (f * (-g.h)))))))");
}

TEST(ParserTest, Associativity) {
  EXPECT_EQ(Parsed("a - b - c"), "((a - b) - c)");
  EXPECT_EQ(Parsed("a / b * c"), "((a / b) * c)");
  EXPECT_EQ(Parsed("!!a"), "(!(!a))");
  EXPECT_EQ(Parsed("--1"), "(-(-1))");
}

TEST(ParserTest, LogicalChainsAreOneNode) {
  EXPECT_EQ(Parsed("a && b && c && d"), "(a && b && c && d)");
  EXPECT_EQ(Parsed("a || b || c"), "(a || b || c)");
  ParseResult result = Parse("a && b && c", {});
  ASSERT_TRUE(result.errors.empty());
  EXPECT_EQ(result.ast.node(result.ast.root).children.size(), 3u);
  EXPECT_EQ(result.ast.node(result.ast.root).depth, 2);
}

TEST(ParserTest, Parentheses) {
  EXPECT_EQ(Parsed("(a || b) && c"), "((a || b) && c)");
  EXPECT_EQ(Parsed("a * (b + c)"), "(a * (b + c))");
  EXPECT_EQ(Parsed("((a))"), "a");
}

TEST(ParserTest, Literals) {
  EXPECT_EQ(Parsed("x == 15"), "(x == 15)");
  EXPECT_EQ(Parsed("x == 2.5"), "(x == 2.5)");
  EXPECT_EQ(Parsed("x == 90%"), "(x == 0.9)");
  EXPECT_EQ(Parsed("x == 'it'"), "(x == \"it\")");
  EXPECT_EQ(Parsed("x == true"), "(x == true)");
  EXPECT_EQ(Parsed("x < 250ms"), "(x < 250000000ns)");
  EXPECT_EQ(Parsed("x < $0.0000015"), "(x < 1500n$)");
}

TEST(ParserTest, PostfixMembersIndexesAndMethods) {
  EXPECT_EQ(Parsed("request.labels.team"), "request.labels.team");
  EXPECT_EQ(Parsed("budgets[\"org\"].used_ratio"),
            "budgets[\"org\"].used_ratio");
  EXPECT_EQ(Parsed("request.labels[\"cost-center\"]"),
            "request.labels[\"cost-center\"]");
  EXPECT_EQ(Parsed("m.matches(\"^gpt\")"), "m.matches(\"^gpt\")");
  EXPECT_EQ(Parsed("m.endsWith('x') && m.contains(\"y\")"),
            "(m.endsWith(\"x\") && m.contains(\"y\"))");
  EXPECT_EQ(Parsed("m.f()"), "m.f()");  // arity is the checker's business
  EXPECT_EQ(Parsed("m.f(a, b)"), "m.f(a, b)");
  // A name without parentheses is a field, even if it names a method.
  EXPECT_EQ(Parsed("request.labels.contains"), "request.labels.contains");
}

TEST(ParserTest, InTakesAListLiteral) {
  EXPECT_EQ(Parsed("m in [\"a\", \"b\"]"), "(m in [\"a\", \"b\"])");
  EXPECT_EQ(Parsed("m in [\"a\",]"), "(m in [\"a\"])");  // trailing comma
  EXPECT_EQ(Parsed("m in [a.b, 1 + 2]"), "(m in [a.b, (1 + 2)])");
}

TEST(ParserTest, SourceRangesCoverTheSubexpression) {
  ParseResult result = Parse("x && (a.b + 1) > 2", {});
  ASSERT_TRUE(result.errors.empty());
  const Ast& ast = result.ast;
  const Node& conj = ast.node(ast.root);
  EXPECT_EQ(conj.offset, 2);
  const int compare = conj.children[1];
  EXPECT_EQ(ast.Text(compare), "(a.b + 1) > 2");
  EXPECT_EQ(ast.node(compare).offset, 15);  // the operator
  const int sum = ast.node(compare).children[0];
  EXPECT_EQ(ast.Text(sum), "(a.b + 1)");
  EXPECT_EQ(ast.node(sum).offset, 10);
  EXPECT_EQ(ast.Text(ast.node(sum).children[0]), "a.b");
}

TEST(ParserTest, SyntaxErrorsPointAtTheOffendingToken) {
  ExpectError("", 0, "empty expression");
  ExpectError("   ", 3, "empty expression");
  ExpectError("a <", 3, "unexpected end of expression where an operand");
  ExpectError("(a", 2,
              "expected ')' to close the '(' at offset 0, found "
              "end of expression");
  ExpectError("a b", 2, "unexpected 'b' after the end of the expression");
  ExpectError("a)", 1, "unexpected ')'");
  ExpectError("a and b", 2, "write && for logical and");
  ExpectError("a or b", 2, "write || for logical or");
  ExpectError("not a", 0, "write ! for not");
  ExpectError("[1, 2]", 0, "allowed only after 'in'");
  ExpectError("a in b", 5, "expected a list such as");
  ExpectError("a in [1 2]", 8, "expected ',' or ']' in the list, found '2'");
  ExpectError("a in []", 5, "empty");
  ExpectError("a < b < c", 6, "comparisons do not chain");
  ExpectError("a == b == c", 7, "comparisons do not chain");
  ExpectError("a in [1] in [true]", 9, "comparisons do not chain");
  ExpectError("size(x) > 1", 0, "unknown function 'size'");
  ExpectError("a.", 2, "expected a field or method name after '.'");
  ExpectError("a.in", 2, "write [\"name\"] for a key that is a keyword");
  ExpectError("a[\"k\"", 5, "expected ']' to close '['");
  ExpectError("m.f(1,", 6, "where an operand was expected");
  ExpectError("m.f(1", 5, "expected ')' to close the argument list");
  ExpectError("* 2", 0, "unexpected '*' where an operand was expected");
  ExpectError("x == 'a very long string that goes on and on and on' b", 53,
              "'b' after");
  // Lexer errors come through Parse too.
  ExpectError("x = 1", 2, "write == to compare");
}

TEST(ParserTest, SourceSizeLimit) {
  Limits limits;
  limits.max_source_bytes = 10;
  EXPECT_EQ(Parsed("a == 12345", limits), "(a == 12345)");
  ExpectError("a == 123456", 10, "too long: 11 bytes; at most 10", limits);
  ExpectError(std::string(5000, ' '), 4096, "too long");
}

TEST(ParserTest, DepthLimitCountsParenthesesAndOperators) {
  Limits limits;
  limits.max_depth = 4;
  EXPECT_EQ(Parsed("((((a))))", limits), "a");
  ExpectError("(((((a)))))", 4, "nested too deeply: more than 4", limits);
  EXPECT_EQ(Parsed("!!!a", limits), "(!(!(!a)))");
  ExpectError("!!!!!a", 4, "nested too deeply", limits);
  EXPECT_EQ(Parsed("a + b + c + d", limits), "(((a + b) + c) + d)");
  ExpectError("a + b + c + d + e", 14, "nested too deeply", limits);
  // An && chain counts once however long it is.
  EXPECT_EQ(Parsed("a && b && c && d && e && f", limits),
            "(a && b && c && d && e && f)");
  ExpectError("a in [[1]]", 6, "allowed only after 'in'", limits);
  ExpectError("a[b[c[d[e]]]]", 1, "nested too deeply", limits);

  // The default limit is 32: 32 parentheses pass, 33 do not.
  EXPECT_EQ(Parsed(std::string(32, '(') + "a" + std::string(32, ')')), "a");
  ExpectError(std::string(33, '(') + "a" + std::string(33, ')'), 32,
              "nested too deeply");
  // Deep input fails cleanly rather than exhausting the stack.
  ExpectError(std::string(100000 / 2, '('), 32, "nested too deeply",
              Limits{1 << 20, 32, 512});
  ExpectError(std::string(4000, '!') + "a", 32, "nested too deeply");
}

TEST(ParserTest, NodeLimit) {
  Limits limits;
  limits.max_nodes = 5;
  EXPECT_EQ(Parsed("a + b + c", limits), "((a + b) + c)");  // 5 nodes
  ExpectError("a + b + c + d", 12, "too large: more than 5 nodes", limits);
  // The default is 512: `x` and 511 elements fit, the 512th does not.
  std::string big = "x in [0";
  for (int i = 1; i < 600; ++i) absl::StrAppend(&big, ", ", i);
  big += "]";
  ExpectError(big, static_cast<int>(big.find(", 511,")) + 2,
              "more than 512 nodes");
}

TEST(ParserTest, ExamplesFromTheDesign) {
  EXPECT_EQ(Parsed("request.labels.task == \"triage\" && request.model == "
                   "\"gpt-4.1\""),
            "((request.labels.task == \"triage\") && (request.model == "
            "\"gpt-4.1\"))");
  EXPECT_EQ(Parsed("budget.used_ratio >= 0.90 && now.hour >= 15"),
            "((budget.used_ratio >= 0.9) && (now.hour >= 15))");
  EXPECT_EQ(Parsed("budgets[\"org-monthly\"].remaining < $100 || "
                   "request.estimated_cost > $0.50"),
            "((budgets[\"org-monthly\"].remaining < 100000000000n$) || "
            "(request.estimated_cost > 500000000n$))");
}

}  // namespace
}  // namespace bursar::policy::expr
