#ifndef BURSAR_POLICY_EXPR_LEXER_H_
#define BURSAR_POLICY_EXPR_LEXER_H_

// Phase 1 of the expression compiler: source text -> tokens with byte
// offsets. Literal values are decoded here (escapes, durations, percentages,
// exact money), so later phases never look at literal text again. Internal
// to policy/expr; the public entry point is Compile() in expr.h.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "policy/expr/expr.h"

namespace bursar::policy::expr {

enum class TokenKind {
  kEnd,       // end of the source; always the last token
  kIdent,     // text = the name
  kInt,       // int_value
  kDouble,    // double_value; `90%` lexes as the double 0.9
  kString,    // text = the decoded string
  kBool,      // int_value 1 for true, 0 for false
  kDuration,  // int_value in nanoseconds
  kMoney,     // int_value in nano-USD
  kIn,        // keyword `in`
  kEq,        // ==
  kNe,        // !=
  kLt,        // <
  kLe,        // <=
  kGt,        // >
  kGe,        // >=
  kAnd,       // &&
  kOr,        // ||
  kNot,       // !
  kPlus,      // +
  kMinus,     // -
  kStar,      // *
  kSlash,     // /
  kLParen,    // (
  kRParen,    // )
  kLBracket,  // [
  kRBracket,  // ]
  kComma,     // ,
  kDot,       // .
};

// A short human name for a token kind, for messages ("')'", "a string").
absl::string_view TokenKindName(TokenKind kind);

struct Token {
  TokenKind kind = TokenKind::kEnd;
  int offset = 0;  // byte offset of the first character in the source
  int length = 0;  // bytes of source the token spans
  std::string text;
  int64_t int_value = 0;
  double double_value = 0;
};

struct LexResult {
  std::vector<Token> tokens;         // ends with a kEnd token when no error
  std::vector<CompileError> errors;  // at most one: lexing stops at it
};

// Splits `source` into tokens. Whitespace (space, tab, CR, LF) separates
// tokens and is otherwise ignored; there are no comments.
LexResult Lex(absl::string_view source);

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_LEXER_H_
