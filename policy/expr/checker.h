#ifndef BURSAR_POLICY_EXPR_CHECKER_H_
#define BURSAR_POLICY_EXPR_CHECKER_H_

// Phase 3 of the expression compiler: names and types. Resolves every
// variable path (an identifier followed by `.name` and `["key"]` segments)
// through the host's Schema, gives every value node a type, applies the
// typing rules of docs/expressions.md and compiles `.matches()` patterns
// with RE2. Reports every mistake it finds (not only the first), each with
// the offset of the offending token; an operand that already failed does
// not produce further errors. Internal to policy/expr.

#include <memory>
#include <optional>
#include <vector>

#include "policy/expr/ast.h"
#include "policy/expr/expr.h"
#include "re2/re2.h"

namespace bursar::policy::expr {

struct CheckedAst {
  Ast ast;
  // Per node: the type of the value it produces. Set for every node that
  // is evaluated (not for the inner segments of a variable path, nor for
  // the pattern of `.matches()`); for a kList, the type its elements are
  // compared in (int and double elements together make double).
  std::vector<std::optional<Type>> types;
  // Per node: index into `variables` for the outermost node of a variable
  // path, else -1.
  std::vector<int> variable;
  std::vector<VariableRef> variables;
  // Per node: index into `regexes` for a `.matches()` call, else -1.
  std::vector<int> regex;
  std::vector<std::unique_ptr<RE2>> regexes;
  // The type of the root after the promotion to `expected`: differs from
  // types[root] only when an int expression was asked for as a double.
  Type result_type = Type::kBool;
};

struct CheckResult {
  CheckedAst checked;  // complete only when errors is empty
  std::vector<CompileError> errors;
};

// Checks `ast` against `schema`; the result must have type `expected`, an
// int also being accepted where a double is expected.
CheckResult Check(Ast ast, const Schema& schema, Type expected);

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_CHECKER_H_
