#ifndef BURSAR_POLICY_EXPR_EXPR_H_
#define BURSAR_POLICY_EXPR_EXPR_H_

// The expression language of policy conditions (`when:`), in phases like
// cel-cpp: lexer -> parser (AST) -> checker (names and types against a
// Schema) -> a compiled Program that evaluates without allocating.
//
//   budget.used_ratio >= 90% && now.hour >= 15
//   request.labels.team in ["search", "ads"] &&
//       request.model.startsWith("gpt-4")
//   budgets["org-monthly"].remaining < $100 ||
//       request.estimated_cost > $0.50
//
// Author mistakes are data (CompileError with an offset into the source); a
// Program that compiled never fails to evaluate except for the runtime
// errors documented on Program::Eval. The language is specified in
// docs/expressions.md.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace bursar::policy::expr {

enum class Type {
  kBool,
  kInt,     // int64
  kDouble,  // ratios and percentages: `90%` is the double 0.9
  kString,
  kDuration,  // `90s`, `5m`, `1h30m`, `250ms`
  kMoney,     // exact int64 nano-USD; literals `$12.50`, `$0.0000015`
};

absl::string_view TypeName(Type type);

// A runtime value. Strings are views the Activation keeps alive for the
// duration of one evaluation.
struct Value {
  Type type = Type::kBool;
  bool bool_value = false;
  int64_t int_value = 0;  // kInt; kMoney in nanos; kDuration in nanoseconds
  double double_value = 0;
  absl::string_view string_value;

  static Value Bool(bool v) { return {Type::kBool, v, 0, 0, {}}; }
  static Value Int(int64_t v) { return {Type::kInt, false, v, 0, {}}; }
  static Value Double(double v) { return {Type::kDouble, false, 0, v, {}}; }
  static Value String(absl::string_view v) {
    return {Type::kString, false, 0, 0, v};
  }
  static Value Money(int64_t nanos) {
    return {Type::kMoney, false, nanos, 0, {}};
  }
  // Saturates at about ±292 years (absl::ToInt64Nanoseconds).
  static Value Duration(absl::Duration d) {
    return {Type::kDuration, false, absl::ToInt64Nanoseconds(d), 0, {}};
  }
};

// One segment of a variable path: `budgets["org"].used_ratio` is
// [ident budgets, key "org", ident used_ratio]; `request.labels.team` is
// [ident request, ident labels, ident team].
struct PathSegment {
  enum class Kind { kIdent, kKey };
  Kind kind = Kind::kIdent;
  std::string text;
};

// The path as an author writes it, for messages: `budgets["org"].used_ratio`.
std::string PathToString(const std::vector<PathSegment>& path);

// A variable the host resolved at compile time: evaluation hands it back
// to the Activation, which answers by `id` (and `key` for map-like
// variables such as a label name or a budget name) without string lookups
// of the path.
//
// `slot`: a Schema may promise that an Activation which has a slot table
// (Activation::slots() not null) holds this variable's value, of `type`, at
// index `slot` of it for the whole evaluation; Programs then read it there
// instead of calling Get. -1: always ask Get. Every Activation without a
// slot table is asked through Get, so a slot is only a shortcut.
struct VariableRef {
  int id = 0;
  std::string key;
  Type type = Type::kBool;
  int slot = -1;
};

// The names an expression may use and their types, defined by the host
// (policy/). Resolve returns INVALID_ARGUMENT with a message for authors
// (e.g. `unknown variable "budget.used"; did you mean "budget.used_ratio"?`)
// for a path it does not know; Compile reports that message as is, at the
// offset of the path. Resolve is called once per variable occurrence, only
// during Compile. `a.b.c` and `a["b"].c` both arrive as [a, b, c] with the
// second segment an ident or a key respectively; a host that treats them
// alike (a map of labels) should accept both.
class Schema {
 public:
  virtual ~Schema() = default;
  virtual absl::StatusOr<VariableRef> Resolve(
      const std::vector<PathSegment>& path) const = 0;
};

// Supplies variable values during one evaluation. Must not allocate on the
// hot path; returned string views must stay valid until Eval returns.
class Activation {
 public:
  virtual ~Activation() = default;
  // Called only with refs the Schema produced, so `ref.type` is the type
  // the checker assumed; the returned Value must have that type. Not
  // called for a ref with a slot when slots() is not null.
  virtual Value Get(const VariableRef& ref) const = 0;

  // The slot table (see VariableRef::slot), or null: then every variable
  // is read through Get. It must hold, for every slot its Schema gave out,
  // the value Get would return for that ref.
  const Value* slots() const { return slots_; }

 protected:
  Activation() = default;
  explicit Activation(const Value* slots) : slots_(slots) {}

 private:
  const Value* slots_ = nullptr;
};

// Bounds on what Compile accepts, so that any input compiles in bounded
// time and stack and evaluates in bounded time: evaluation visits each
// instruction at most once, and recursion is no deeper than max_depth.
struct Limits {
  size_t max_source_bytes = 4096;
  // Nesting of operators and parentheses: the height of the syntax tree (a
  // chain `a && b && c` counts once), and separately the nesting of
  // parentheses, brackets and unary operators.
  int max_depth = 32;
  int max_nodes = 512;  // AST nodes: literals, names, operators, ...
};

struct CompileError {
  int offset = 0;       // byte offset into the source, 0-based
  std::string message;  // what was expected and the offending text
};

class Program {
 public:
  virtual ~Program() = default;
  virtual Type result_type() const = 0;
  // Evaluates the expression. Never allocates (RE2 may grow the lazily
  // built automaton of a `.matches()` pattern the first times it sees new
  // input; that memory is bounded per pattern and kept for later calls).
  // Safe to call from many threads at once. Runtime errors (division by
  // zero of int or money, overflow of int/money/duration arithmetic, a
  // money * double product out of range) make the result an error: Eval
  // returns false in *ok and an unspecified Value; EvalBool returns false
  // for an error (a condition that cannot be decided does not fire) and
  // sets *ok = false when ok != nullptr. Eval sets *ok = true on success;
  // `ok` may be null.
  virtual Value Eval(const Activation& activation, bool* ok) const = 0;
  // Eval for conditions. A program whose result_type is not kBool never
  // yields true: EvalBool returns false and sets *ok = false.
  bool EvalBool(const Activation& activation, bool* ok = nullptr) const {
    return EvalCondition(activation, ok);
  }

 protected:
  // EvalBool's work; the default calls Eval. An implementation may
  // override it to decide conditions without building a Value.
  virtual bool EvalCondition(const Activation& activation, bool* ok) const;
};

struct CompileResult {
  std::unique_ptr<const Program> program;  // null iff errors is non-empty
  std::vector<CompileError> errors;
};

// Compiles `source` against `schema`; the result must have type `expected`
// (a type mismatch is a CompileError naming both types; an int expression
// is accepted where a double is expected and converted). Regular
// expressions (`.matches("...")`, literal patterns only) are compiled here
// with RE2; a bad pattern is a CompileError. Lexing and parsing stop at the
// first error; type checking reports every error it finds. A constant
// subexpression that always fails to evaluate (`1 / 0`) is a CompileError.
CompileResult Compile(absl::string_view source, const Schema& schema,
                      Type expected = Type::kBool, const Limits& limits = {});

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_EXPR_H_
