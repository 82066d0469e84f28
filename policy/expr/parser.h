#ifndef BURSAR_POLICY_EXPR_PARSER_H_
#define BURSAR_POLICY_EXPR_PARSER_H_

// Phase 2 of the expression compiler: tokens -> syntax tree. A
// precedence-climbing recursive-descent parser, loosest to tightest:
//
//   ||  <  &&  <  == !=  <  < <= > >= in  <  + -  <  * /  <  ! - (unary)
//       <  .name  ["key"]  .method(args)  <  literals, names, ( )
//
// `&&` and `||` chains become one n-ary node each. Comparisons do not chain
// (`a < b < c` is an error). A list `[...]` is allowed only after `in`.
// Enforces Limits: source bytes, nesting depth and node count. Internal to
// policy/expr.

#include <vector>

#include "absl/strings/string_view.h"
#include "policy/expr/ast.h"
#include "policy/expr/expr.h"

namespace bursar::policy::expr {

struct ParseResult {
  Ast ast;                           // valid only when errors is empty
  std::vector<CompileError> errors;  // at most one: parsing stops at it
};

// Lexes and parses `source`. The returned Ast refers to `source`, which
// must outlive it.
ParseResult Parse(absl::string_view source, const Limits& limits);

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_PARSER_H_
