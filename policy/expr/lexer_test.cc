#include "policy/expr/lexer.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::policy::expr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kSecond = 1'000'000'000;

std::vector<TokenKind> Kinds(const LexResult& result) {
  std::vector<TokenKind> kinds;
  for (const Token& token : result.tokens) kinds.push_back(token.kind);
  return kinds;
}

// Lexes a single-literal source and returns its token.
Token One(const std::string& source) {
  LexResult result = Lex(source);
  EXPECT_TRUE(result.errors.empty())
      << source << ": " << result.errors[0].message;
  EXPECT_EQ(result.tokens.size(), 2u) << source;
  if (result.tokens.empty()) return Token();
  return result.tokens[0];
}

// Lexes `source`, expecting an error at `offset` whose message contains
// `why`.
void ExpectError(const std::string& source, int offset,
                 const std::string& why) {
  LexResult result = Lex(source);
  ASSERT_EQ(result.errors.size(), 1u) << "accepted: " << source;
  EXPECT_EQ(result.errors[0].offset, offset)
      << source << ": " << result.errors[0].message;
  EXPECT_THAT(result.errors[0].message, HasSubstr(why)) << source;
  EXPECT_TRUE(result.tokens.empty());
}

TEST(LexerTest, OperatorsAndPunctuation) {
  LexResult result = Lex("== != < <= > >= && || ! + - * / ( ) [ ] , . in");
  ASSERT_TRUE(result.errors.empty());
  EXPECT_THAT(
      Kinds(result),
      ElementsAre(TokenKind::kEq, TokenKind::kNe, TokenKind::kLt,
                  TokenKind::kLe, TokenKind::kGt, TokenKind::kGe,
                  TokenKind::kAnd, TokenKind::kOr, TokenKind::kNot,
                  TokenKind::kPlus, TokenKind::kMinus, TokenKind::kStar,
                  TokenKind::kSlash, TokenKind::kLParen, TokenKind::kRParen,
                  TokenKind::kLBracket, TokenKind::kRBracket, TokenKind::kComma,
                  TokenKind::kDot, TokenKind::kIn, TokenKind::kEnd));
}

TEST(LexerTest, OffsetsAndLengthsAreBytesIntoTheSource) {
  LexResult result = Lex("budget.used_ratio >= 90%\n\t&& now.hour>=15");
  ASSERT_TRUE(result.errors.empty());
  ASSERT_EQ(result.tokens.size(), 12u);
  EXPECT_EQ(result.tokens[0].offset, 0);
  EXPECT_EQ(result.tokens[0].length, 6);
  EXPECT_EQ(result.tokens[0].text, "budget");
  EXPECT_EQ(result.tokens[1].offset, 6);   // .
  EXPECT_EQ(result.tokens[2].offset, 7);   // used_ratio
  EXPECT_EQ(result.tokens[3].offset, 18);  // >=
  EXPECT_EQ(result.tokens[3].length, 2);
  EXPECT_EQ(result.tokens[4].offset, 21);  // 90%
  EXPECT_EQ(result.tokens[4].length, 3);
  EXPECT_EQ(result.tokens[5].offset, 26);  // && after a newline and a tab
  EXPECT_EQ(result.tokens[8].kind, TokenKind::kIdent);  // hour
  EXPECT_EQ(result.tokens[9].offset, 37);               // >= without spaces
  EXPECT_EQ(result.tokens[10].offset, 39);              // 15
  EXPECT_EQ(result.tokens.back().kind, TokenKind::kEnd);
}

TEST(LexerTest, Identifiers) {
  LexResult result = Lex("a _b1 request labels2 inx");
  ASSERT_TRUE(result.errors.empty());
  ASSERT_EQ(result.tokens.size(), 6u);
  EXPECT_EQ(result.tokens[1].text, "_b1");
  EXPECT_EQ(result.tokens[4].kind, TokenKind::kIdent);  // not the keyword
  EXPECT_EQ(result.tokens[4].text, "inx");
}

TEST(LexerTest, Booleans) {
  EXPECT_EQ(One("true").kind, TokenKind::kBool);
  EXPECT_EQ(One("true").int_value, 1);
  EXPECT_EQ(One("false").int_value, 0);
  EXPECT_EQ(One("truex").kind, TokenKind::kIdent);
}

TEST(LexerTest, IntegersAndDoubles) {
  EXPECT_EQ(One("0").kind, TokenKind::kInt);
  EXPECT_EQ(One("15").int_value, 15);
  EXPECT_EQ(One("9223372036854775807").int_value, INT64_MAX);
  EXPECT_EQ(One("3.25").kind, TokenKind::kDouble);
  EXPECT_DOUBLE_EQ(One("3.25").double_value, 3.25);
  EXPECT_EQ(One("0.1").double_value, 0.1);
}

TEST(LexerTest, PercentagesAreDoubles) {
  EXPECT_EQ(One("90%").kind, TokenKind::kDouble);
  EXPECT_EQ(One("90%").double_value, 0.9);
  EXPECT_EQ(One("12.5%").double_value, 0.125);
  EXPECT_EQ(One("12.3%").double_value, 0.123);  // nearest double, exactly
  EXPECT_EQ(One("100%").double_value, 1.0);
  EXPECT_EQ(One("0%").double_value, 0.0);
}

TEST(LexerTest, Strings) {
  EXPECT_EQ(One("\"gpt-4.1\"").kind, TokenKind::kString);
  EXPECT_EQ(One("\"gpt-4.1\"").text, "gpt-4.1");
  EXPECT_EQ(One("'single'").text, "single");
  EXPECT_EQ(One("\"\"").text, "");
  EXPECT_EQ(One(R"("a\"b\\c\nd\te")").text, "a\"b\\c\nd\te");
  EXPECT_EQ(One(R"('it\'s')").text, "it's");
  EXPECT_EQ(One(R"('say "hi"')").text, "say \"hi\"");
}

TEST(LexerTest, Durations) {
  EXPECT_EQ(One("250ms").kind, TokenKind::kDuration);
  EXPECT_EQ(One("250ms").int_value, 250'000'000);
  EXPECT_EQ(One("90s").int_value, 90 * kSecond);
  EXPECT_EQ(One("5m").int_value, 300 * kSecond);
  EXPECT_EQ(One("1h30m").int_value, 5400 * kSecond);
  EXPECT_EQ(One("2d").int_value, 2 * 86400 * kSecond);
  EXPECT_EQ(One("1d2h3m4s5ms").int_value,
            (86400 + 7200 + 180 + 4) * kSecond + 5'000'000);
  EXPECT_EQ(One("0s").int_value, 0);
  EXPECT_EQ(One("1h30m").length, 5);
}

TEST(LexerTest, Money) {
  EXPECT_EQ(One("$12.50").kind, TokenKind::kMoney);
  EXPECT_EQ(One("$12.50").int_value, 12'500'000'000);
  EXPECT_EQ(One("$0.0000015").int_value, 1500);
  EXPECT_EQ(One("$0.000000001").int_value, 1);
  EXPECT_EQ(One("$100").int_value, 100'000'000'000);
  EXPECT_EQ(One("$9223372036.854775807").int_value, INT64_MAX);
  EXPECT_EQ(One("$12.50").length, 6);
}

TEST(LexerTest, BadMoney) {
  ExpectError("x < $1.0000000001", 16, "10 decimal places");
  ExpectError("$1.0000000000", 12, "at most 9");  // even trailing zeros
  ExpectError("x < $", 4, "expected digits after '$'");
  ExpectError("$-5", 0, "expected digits after '$'");
  ExpectError("$ 5", 0, "expected digits");
  ExpectError("$1_000", 0, "thousands separator");
  ExpectError("$5usd", 0, "unexpected character 'u'");
  ExpectError("$1.2.3", 0, "more than one decimal point");
  ExpectError("$5.", 0, "no digit after the decimal point");
  ExpectError("$99999999999", 0, "too large");
  ExpectError("$5%", 2, "unexpected '%' after money");
}

TEST(LexerTest, BadDurations) {
  ExpectError("x > 1.5h", 4, "has a fraction");
  ExpectError("30m1h", 4, "out of order");
  ExpectError("1h1h", 3, "out of order");
  ExpectError("10x", 2, "unknown unit \"x\"");
  ExpectError("5min", 1, "unknown unit \"min\"");
  ExpectError("1h30", 4, "expected a unit");
  ExpectError("1e3", 1, "without an exponent");
  ExpectError("106752d", 0, "out of range");
  ExpectError("5s5", 3, "expected a unit");
  ExpectError("5_s", 1, "unknown unit \"_s\"");
}

TEST(LexerTest, BadNumbers) {
  ExpectError("99999999999999999999", 0, "out of range");
  ExpectError("x == .5", 5, "write e.g. 0.5");
  ExpectError("5.", 2, "expected a digit after the decimal point");
  ExpectError("5.x", 2, "expected a digit after the decimal point");
  ExpectError("1.2.3", 3, "unexpected '.' after number");
  ExpectError("90%x", 3, "unexpected 'x' after percentage");
  ExpectError("7$", 1, "unexpected '$' after number");
  ExpectError("x > %", 4, "a percentage is a number followed by %");
}

TEST(LexerTest, BadStrings) {
  ExpectError("x == \"open", 5, "unterminated string");
  ExpectError("x == 'open\"", 5, "unterminated string; expected a closing '''");
  ExpectError(R"(x == "caf\u")", 9, "unknown escape \\u");
  ExpectError("x == \"a\\", 5, "unterminated string");
  ExpectError("x == \"a\nb\"", 7, "line break inside a string");
}

TEST(LexerTest, BadCharacters) {
  ExpectError("x = 5", 2, "write == to compare");
  ExpectError("a & b", 2, "write && for logical and");
  ExpectError("a | b", 2, "write || for logical or");
  ExpectError("x # comment", 2, "unexpected character '#'");
  ExpectError("caf\xC3\xA9", 3, "byte 0xc3");
  ExpectError("a;", 1, "unexpected character ';'");
}

TEST(LexerTest, EmptyAndBlankSources) {
  EXPECT_THAT(Kinds(Lex("")), ElementsAre(TokenKind::kEnd));
  LexResult blank = Lex(" \t\r\n");
  EXPECT_THAT(Kinds(blank), ElementsAre(TokenKind::kEnd));
  EXPECT_EQ(blank.tokens[0].offset, 4);
}

}  // namespace
}  // namespace bursar::policy::expr
