#include "policy/expr/program.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "policy/expr/ast.h"
#include "policy/expr/checker.h"
#include "policy/expr/expr.h"
#include "re2/re2.h"

namespace bursar::policy::expr {
namespace {

enum class Op : uint8_t {
  kConst,
  kVar,
  kNot,
  kNegInt64,  // int, money, duration
  kNegDouble,
  kIntToDouble,
  kAnd,  // operands_[first, first + count)
  kOr,
  kAddInt64,  // int, money, duration
  kSubInt64,
  kMulInt64,  // int * int, money * int (a is the money)
  kDivInt64,  // int / int, truncating
  kAddDouble,
  kSubDouble,
  kMulDouble,
  kDivDouble,
  kMulMoneyDouble,  // a is the money, b the double
  kDivMoney,        // money / money -> double
  kCmpBool,
  kCmpInt64,  // int, money, duration
  kCmpDouble,
  kCmpString,
  kInBool,  // a in operands_[first, first + count)
  kInInt64,
  kInDouble,
  kInString,
  kMatches,  // a.matches(re)
  kStartsWith,
  kEndsWith,
  kContains,
  // Specialised forms of the common shapes `variable <cmp> literal` and
  // `variable in [literals]`, made by Specialise after building: `var` is
  // the variable and `value` the literal (for kInStringVarConst the
  // elements stay in operands_ as constants). They read the variable
  // directly and never recurse.
  kCmpInt64VarConst,
  kCmpDoubleVarConst,
  kCmpStringVarConst,
  kInStringVarConst,
};

enum class Cmp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };

enum class RuntimeError : uint8_t { kNone, kDivisionByZero, kOverflow };

// The comparison with its operands swapped: `a < b` is `b > a`.
Cmp Mirror(Cmp cmp) {
  switch (cmp) {
    case Cmp::kLt:
      return Cmp::kGt;
    case Cmp::kLe:
      return Cmp::kGe;
    case Cmp::kGt:
      return Cmp::kLt;
    case Cmp::kGe:
      return Cmp::kLe;
    default:
      return cmp;
  }
}

// String equality: sizes first, then the first byte, and memcmp only for
// the rest.
inline bool StringEqual(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() &&
         (a.empty() ||
          (a[0] == b[0] && std::memcmp(a.data(), b.data(), a.size()) == 0));
}

struct Instr {
  Op op = Op::kConst;
  Cmp cmp = Cmp::kEq;
  Type type = Type::kBool;  // of the result
  int32_t a = -1;
  int32_t b = -1;
  int32_t first = 0;
  int32_t count = 0;
  Value value;                       // kConst
  const VariableRef* var = nullptr;  // kVar
  int32_t slot = -1;                 // var->slot
  uint8_t cmp_mask = 0;              // OutcomeMask(cmp), specialised leaves
  const RE2* re = nullptr;           // kMatches
};

// The value of the variable of `in` (a kVar or a specialised leaf): read
// from the activation's slot table when the variable has a slot there,
// else asked of Get.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline Value ReadVar(
    const Instr& in, const Activation& activation) {
  const Value* slots = activation.slots();
  if (in.slot >= 0 && slots != nullptr) return slots[in.slot];
  return activation.Get(*in.var);
}

// One field of ReadVar's value, for the specialised leaves: a leaf read
// from a slot loads only that field.
template <typename T>
inline T GetField(const Instr& in, const Activation& activation,
                  T Value::*field) {
  return activation.Get(*in.var).*field;
}

template <typename T>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline T ReadField(const Instr& in,
                                                const Activation& activation,
                                                T Value::*field) {
  const Value* slots = activation.slots();
  if (in.slot >= 0 && slots != nullptr) return slots[in.slot].*field;
  return GetField(in, activation, field);
}

template <typename T>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool Compare(Cmp cmp, const T& a,
                                                 const T& b) {
  switch (cmp) {
    case Cmp::kEq:
      return a == b;
    case Cmp::kNe:
      return a != b;
    case Cmp::kLt:
      return a < b;
    case Cmp::kLe:
      return a <= b;
    case Cmp::kGt:
      return a > b;
    case Cmp::kGe:
      return a >= b;
  }
  return false;
}

// A comparison as a set of outcomes, for the specialised leaves: bit 0
// less, bit 1 equal, bit 2 greater, bit 3 unordered (a NaN operand), so
// that `a <cmp> b` is one shift of the mask by the outcome instead of a
// switch on the comparison.
uint8_t OutcomeMask(Cmp cmp) {
  switch (cmp) {
    case Cmp::kEq:
      return 0b0010;
    case Cmp::kNe:
      return 0b1101;
    case Cmp::kLt:
      return 0b0001;
    case Cmp::kLe:
      return 0b0011;
    case Cmp::kGt:
      return 0b0100;
    case Cmp::kGe:
      return 0b0110;
  }
  return 0;
}

template <typename T>
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool CompareByMask(uint8_t mask, T a, T b) {
  // An unordered pair (only doubles have them) is none of less, equal and
  // greater.
  const int outcome = a < b ? 0 : a == b ? 1 : a > b ? 2 : 3;
  return (mask >> outcome) & 1;
}

Cmp ToCmp(BinaryOp op) {
  switch (op) {
    case BinaryOp::kNe:
      return Cmp::kNe;
    case BinaryOp::kLt:
      return Cmp::kLt;
    case BinaryOp::kLe:
      return Cmp::kLe;
    case BinaryOp::kGt:
      return Cmp::kGt;
    case BinaryOp::kGe:
      return Cmp::kGe;
    default:
      return Cmp::kEq;
  }
}

Value Int64Of(Type type, int64_t v) {
  Value value;
  value.type = type;
  value.int_value = v;
  return value;
}

// nanos * factor to the nearest nano, ties away from zero. The product is
// formed in long double, which holds every int64 exactly on x86-64.
bool MulMoneyDouble(int64_t nanos, double factor, int64_t* out) {
  const long double product =
      static_cast<long double>(nanos) * static_cast<long double>(factor);
  const long double rounded = std::round(product);
  constexpr long double kLimit = 9223372036854775808.0L;        // 2^63
  if (!(rounded >= -kLimit && rounded < kLimit)) return false;  // NaN too
  *out = static_cast<int64_t>(rounded);
  return true;
}

class CompiledProgram final : public Program {
 public:
  Type result_type() const override { return result_type_; }

  Value Eval(const Activation& activation, bool* ok) const override {
    RuntimeError error = RuntimeError::kNone;
    Value value;
    if (result_type_ == Type::kBool) {
      const bool result = EvalBoolAt(root_, activation, &error);
      if (error == RuntimeError::kNone) value = Value::Bool(result);
    } else {
      value = EvalAt(root_, activation, &error);
    }
    if (ok != nullptr) *ok = error == RuntimeError::kNone;
    return value;
  }

  int instruction_count() const { return static_cast<int>(instrs_.size()); }

 protected:
  bool EvalCondition(const Activation& activation, bool* ok) const override {
    if (chain_ != Chain::kNone) {
      // Leaves never fail.
      if (ok != nullptr) *ok = true;
      return EvalChain(activation);
    }
    if (result_type_ != Type::kBool) {
      if (ok != nullptr) *ok = false;
      return false;
    }
    RuntimeError error = RuntimeError::kNone;
    const bool result = EvalBoolAt(root_, activation, &error);
    const bool decided = error == RuntimeError::kNone;
    if (ok != nullptr) *ok = decided;
    return decided && result;
  }

 private:
  friend class Builder;

  Value EvalAt(int32_t index, const Activation& activation,
               RuntimeError* error) const;
  // EvalAt for instructions of type bool, without building Values; false
  // after an error.
  bool EvalBoolAt(int32_t index, const Activation& activation,
                  RuntimeError* error) const;
  // EvalAt's bool.
  bool EvalBoolByValue(int32_t index, const Activation& activation,
                       RuntimeError* error) const;
  bool EvalLeaf(const Instr& in, const Activation& activation,
                bool* result) const;
  // Rewrites instructions into their specialised forms (see Op); run once
  // after building.
  void Specialise();
  // Most conditions are one specialised leaf, or `&&` / `||` of them: for
  // those, chain_ says which, and chain_leaves_ holds copies of the leaves
  // in order, so that EvalCondition decides them in one loop without
  // recursion. Run after Specialise, with result_type_ set.
  void PlanChain();
  bool EvalChain(const Activation& activation) const {
    bool x = false;
    if (chain_ == Chain::kLeaf) {
      EvalLeaf(chain_leaves_[0], activation, &x);
      return x;
    }
    const bool decisive = chain_ == Chain::kOr;
    for (const Instr& leaf : chain_leaves_) {
      EvalLeaf(leaf, activation, &x);
      if (x == decisive) return decisive;
    }
    return !decisive;
  }
  static bool IsLeaf(Op op) {
    return op == Op::kConst || op == Op::kCmpInt64VarConst ||
           op == Op::kCmpDoubleVarConst || op == Op::kCmpStringVarConst ||
           op == Op::kInStringVarConst;
  }
  // The value of instruction `index`: constants are read in place and
  // variables fetched directly, which spares most leaves a call of EvalAt;
  // other instructions are evaluated into *storage.
  const Value& Operand(int32_t index, const Activation& activation,
                       RuntimeError* error, Value* storage) const {
    const Instr& in = instrs_[index];
    if (in.op == Op::kConst) return in.value;
    if (in.op == Op::kVar) {
      *storage = ReadVar(in, activation);
    } else {
      *storage = EvalAt(index, activation, error);
    }
    return *storage;
  }
  bool EvalIn(const Instr& in, const Activation& activation,
              RuntimeError* error) const;

  std::vector<Instr> instrs_;
  std::vector<int32_t> operands_;
  int32_t root_ = 0;
  enum class Chain : uint8_t { kNone, kLeaf, kAnd, kOr };
  Chain chain_ = Chain::kNone;
  std::vector<Instr> chain_leaves_;
  Type result_type_ = Type::kBool;
  // Storage that instructions point into; filled before any instruction
  // refers to it and never resized afterwards (strings_ is a deque, whose
  // elements stay put as it grows).
  std::vector<VariableRef> variables_;
  std::vector<std::unique_ptr<RE2>> regexes_;
  std::deque<std::string> strings_;
};

#define BURSAR_EVAL_OPERAND(name, index)                                    \
  Value name##_storage;                                                     \
  const Value& name = Operand((index), activation, error, &name##_storage); \
  if (*error != RuntimeError::kNone) return Value()

Value CompiledProgram::EvalAt(int32_t index, const Activation& activation,
                              RuntimeError* error) const {
  const Instr& in = instrs_[index];
  switch (in.op) {
    case Op::kConst:
      return in.value;
    case Op::kVar:
      return ReadVar(in, activation);
    case Op::kNot: {
      BURSAR_EVAL_OPERAND(x, in.a);
      return Value::Bool(!x.bool_value);
    }
    case Op::kNegInt64: {
      BURSAR_EVAL_OPERAND(x, in.a);
      if (x.int_value == std::numeric_limits<int64_t>::min()) {
        *error = RuntimeError::kOverflow;
        return Value();
      }
      return Int64Of(in.type, -x.int_value);
    }
    case Op::kNegDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      return Value::Double(-x.double_value);
    }
    case Op::kIntToDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      return Value::Double(static_cast<double>(x.int_value));
    }
    case Op::kAnd:
    case Op::kOr:
    case Op::kCmpInt64VarConst:
    case Op::kCmpDoubleVarConst:
    case Op::kCmpStringVarConst:
    case Op::kInStringVarConst: {
      const bool result = EvalBoolAt(index, activation, error);
      if (*error != RuntimeError::kNone) return Value();
      return Value::Bool(result);
    }
    case Op::kAddInt64:
    case Op::kSubInt64:
    case Op::kMulInt64: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      int64_t result = 0;
      bool overflow = false;
      if (in.op == Op::kAddInt64) {
        overflow = __builtin_add_overflow(x.int_value, y.int_value, &result);
      } else if (in.op == Op::kSubInt64) {
        overflow = __builtin_sub_overflow(x.int_value, y.int_value, &result);
      } else {
        overflow = __builtin_mul_overflow(x.int_value, y.int_value, &result);
      }
      if (overflow) {
        *error = RuntimeError::kOverflow;
        return Value();
      }
      return Int64Of(in.type, result);
    }
    case Op::kDivInt64: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      if (y.int_value == 0) {
        *error = RuntimeError::kDivisionByZero;
        return Value();
      }
      if (y.int_value == -1 &&
          x.int_value == std::numeric_limits<int64_t>::min()) {
        *error = RuntimeError::kOverflow;
        return Value();
      }
      return Value::Int(x.int_value / y.int_value);
    }
    case Op::kAddDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Double(x.double_value + y.double_value);
    }
    case Op::kSubDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Double(x.double_value - y.double_value);
    }
    case Op::kMulDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Double(x.double_value * y.double_value);
    }
    case Op::kDivDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Double(x.double_value / y.double_value);
    }
    case Op::kMulMoneyDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      int64_t nanos = 0;
      if (!MulMoneyDouble(x.int_value, y.double_value, &nanos)) {
        *error = RuntimeError::kOverflow;
        return Value();
      }
      return Value::Money(nanos);
    }
    case Op::kDivMoney: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      if (y.int_value == 0) {
        *error = RuntimeError::kDivisionByZero;
        return Value();
      }
      return Value::Double(static_cast<double>(x.int_value) /
                           static_cast<double>(y.int_value));
    }
    case Op::kCmpBool: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(Compare(in.cmp, x.bool_value, y.bool_value));
    }
    case Op::kCmpInt64: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(Compare(in.cmp, x.int_value, y.int_value));
    }
    case Op::kCmpDouble: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(Compare(in.cmp, x.double_value, y.double_value));
    }
    case Op::kCmpString: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(Compare(in.cmp, x.string_value, y.string_value));
    }
    case Op::kInBool:
    case Op::kInInt64:
    case Op::kInDouble:
    case Op::kInString: {
      const bool found = EvalIn(in, activation, error);
      if (*error != RuntimeError::kNone) return Value();
      return Value::Bool(found);
    }
    case Op::kMatches: {
      BURSAR_EVAL_OPERAND(x, in.a);
      return Value::Bool(RE2::PartialMatch(
          re2::StringPiece(x.string_value.data(), x.string_value.size()),
          *in.re));
    }
    case Op::kStartsWith: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(absl::StartsWith(x.string_value, y.string_value));
    }
    case Op::kEndsWith: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(absl::EndsWith(x.string_value, y.string_value));
    }
    case Op::kContains: {
      BURSAR_EVAL_OPERAND(x, in.a);
      BURSAR_EVAL_OPERAND(y, in.b);
      return Value::Bool(absl::StrContains(x.string_value, y.string_value));
    }
  }
  return Value();
}

// The specialised leaves, evaluated in place: true with the value in
// *result when `in` is one, false otherwise.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool CompiledProgram::EvalLeaf(
    const Instr& in, const Activation& activation, bool* result) const {
  switch (in.op) {
    case Op::kConst:
      *result = in.value.bool_value;
      return true;
    case Op::kCmpInt64VarConst:
      *result = CompareByMask(in.cmp_mask,
                              ReadField(in, activation, &Value::int_value),
                              in.value.int_value);
      return true;
    case Op::kCmpDoubleVarConst:
      *result = CompareByMask(in.cmp_mask,
                              ReadField(in, activation, &Value::double_value),
                              in.value.double_value);
      return true;
    case Op::kCmpStringVarConst: {
      const absl::string_view x =
          ReadField(in, activation, &Value::string_value);
      switch (in.cmp) {
        case Cmp::kEq:
          *result = StringEqual(x, in.value.string_value);
          break;
        case Cmp::kNe:
          *result = !StringEqual(x, in.value.string_value);
          break;
        default:
          *result = Compare(in.cmp, x, in.value.string_value);
          break;
      }
      return true;
    }
    case Op::kInStringVarConst: {
      const absl::string_view x =
          ReadField(in, activation, &Value::string_value);
      bool found = false;
      for (int32_t i = in.first; i < in.first + in.count; ++i) {
        if (StringEqual(x, instrs_[operands_[i]].value.string_value)) {
          found = true;
          break;
        }
      }
      *result = found;
      return true;
    }
    default:
      return false;
  }
}

bool CompiledProgram::EvalBoolAt(int32_t index, const Activation& activation,
                                 RuntimeError* error) const {
  const Instr& in = instrs_[index];
  bool result = false;
  if (EvalLeaf(in, activation, &result)) return result;
  switch (in.op) {
    case Op::kAnd:
    case Op::kOr: {
      // Left to right; stops at the first operand that decides.
      const bool decisive = in.op == Op::kOr;
      for (int32_t i = in.first; i < in.first + in.count; ++i) {
        const int32_t operand = operands_[i];
        bool x = false;
        if (!EvalLeaf(instrs_[operand], activation, &x)) {
          x = EvalBoolAt(operand, activation, error);
          if (*error != RuntimeError::kNone) return false;
        }
        if (x == decisive) return decisive;
      }
      return !decisive;
    }
    case Op::kNot: {
      const bool x = EvalBoolAt(in.a, activation, error);
      if (*error != RuntimeError::kNone) return false;
      return !x;
    }
    default:
      return EvalBoolByValue(index, activation, error);
  }
}

bool CompiledProgram::EvalBoolByValue(int32_t index,
                                      const Activation& activation,
                                      RuntimeError* error) const {
  const Value value = EvalAt(index, activation, error);
  return *error == RuntimeError::kNone && value.bool_value;
}

void CompiledProgram::PlanChain() {
  chain_ = Chain::kNone;
  chain_leaves_.clear();
  if (result_type_ != Type::kBool) return;
  const Instr& root = instrs_[root_];
  if (IsLeaf(root.op)) {
    chain_ = Chain::kLeaf;
    chain_leaves_.push_back(root);
    return;
  }
  if (root.op != Op::kAnd && root.op != Op::kOr) return;
  for (int32_t i = root.first; i < root.first + root.count; ++i) {
    if (!IsLeaf(instrs_[operands_[i]].op)) {
      chain_leaves_.clear();
      return;
    }
    chain_leaves_.push_back(instrs_[operands_[i]]);
  }
  chain_leaves_.shrink_to_fit();
  chain_ = root.op == Op::kAnd ? Chain::kAnd : Chain::kOr;
}

void CompiledProgram::Specialise() {
  for (Instr& in : instrs_) {
    switch (in.op) {
      case Op::kCmpInt64:
      case Op::kCmpDouble:
      case Op::kCmpString: {
        const Instr& a = instrs_[in.a];
        const Instr& b = instrs_[in.b];
        const Instr* var = nullptr;
        const Instr* literal = nullptr;
        Cmp cmp = in.cmp;
        if (a.op == Op::kVar && b.op == Op::kConst) {
          var = &a;
          literal = &b;
        } else if (a.op == Op::kConst && b.op == Op::kVar) {
          var = &b;
          literal = &a;
          cmp = Mirror(cmp);
        } else {
          break;
        }
        in.var = var->var;
        in.slot = var->slot;
        in.value = literal->value;
        in.cmp = cmp;
        in.cmp_mask = OutcomeMask(cmp);
        in.op = in.op == Op::kCmpInt64    ? Op::kCmpInt64VarConst
                : in.op == Op::kCmpDouble ? Op::kCmpDoubleVarConst
                                          : Op::kCmpStringVarConst;
        break;
      }
      case Op::kInString: {
        if (instrs_[in.a].op != Op::kVar) break;
        bool all_const = true;
        for (int32_t i = in.first; i < in.first + in.count; ++i) {
          if (instrs_[operands_[i]].op != Op::kConst) all_const = false;
        }
        if (!all_const) break;
        in.var = instrs_[in.a].var;
        in.slot = instrs_[in.a].slot;
        in.op = Op::kInStringVarConst;
        break;
      }
      default:
        break;
    }
  }
}

// `a in [...]`: the elements left to right, stopping at the first equal
// one.
bool CompiledProgram::EvalIn(const Instr& in, const Activation& activation,
                             RuntimeError* error) const {
  Value x_storage;
  const Value& x = Operand(in.a, activation, error, &x_storage);
  if (*error != RuntimeError::kNone) return false;
  for (int32_t i = in.first; i < in.first + in.count; ++i) {
    Value y_storage;
    const Value& y = Operand(operands_[i], activation, error, &y_storage);
    if (*error != RuntimeError::kNone) return false;
    bool equal = false;
    switch (in.op) {
      case Op::kInBool:
        equal = x.bool_value == y.bool_value;
        break;
      case Op::kInInt64:
        equal = x.int_value == y.int_value;
        break;
      case Op::kInDouble:
        equal = x.double_value == y.double_value;
        break;
      default:
        equal = x.string_value == y.string_value;
        break;
    }
    if (equal) return true;
  }
  return false;
}

#undef BURSAR_EVAL_OPERAND

// Answers nothing: folding evaluates only instructions without variables.
class NoVariables final : public Activation {
 public:
  Value Get(const VariableRef& /*ref*/) const override { return Value(); }
};

class Builder {
 public:
  explicit Builder(CheckedAst checked)
      : checked_(std::move(checked)),
        program_(std::make_unique<CompiledProgram>()) {
    program_->variables_ = std::move(checked_.variables);
    program_->regexes_ = std::move(checked_.regexes);
  }

  CompileResult Run() {
    CompileResult result;
    const int32_t root = BuildAs(checked_.ast.root, checked_.result_type);
    if (!errors_.empty()) {
      result.errors = std::move(errors_);
      return result;
    }
    program_->root_ = root;
    program_->Specialise();
    program_->result_type_ = checked_.result_type;
    program_->PlanChain();
    program_->instrs_.shrink_to_fit();
    program_->operands_.shrink_to_fit();
    result.program = std::move(program_);
    return result;
  }

 private:
  const Node& node(int index) const { return checked_.ast.nodes[index]; }
  Type type(int index) const { return *checked_.types[index]; }
  std::vector<Instr>& instrs() { return program_->instrs_; }
  std::vector<int32_t>& operands() { return program_->operands_; }

  int32_t Emit(const Instr& instr) {
    instrs().push_back(instr);
    return static_cast<int32_t>(instrs().size()) - 1;
  }

  int32_t EmitConst(Value value) {
    Instr instr;
    instr.op = Op::kConst;
    instr.type = value.type;
    instr.value = value;
    return Emit(instr);
  }

  bool IsConst(int32_t index) const {
    return program_->instrs_[index].op == Op::kConst;
  }

  // Builds `node`, converted to double when `as` is double and the node is
  // an int.
  int32_t BuildAs(int node_index, Type as) {
    const int32_t index = Build(node_index);
    if (index < 0 || !(as == Type::kDouble && type(node_index) == Type::kInt)) {
      return index;
    }
    if (IsConst(index)) {
      Instr& instr = instrs()[index];
      instr.value = Value::Double(static_cast<double>(instr.value.int_value));
      instr.type = Type::kDouble;
      return index;
    }
    Instr instr;
    instr.op = Op::kIntToDouble;
    instr.type = Type::kDouble;
    instr.a = index;
    return Emit(instr);
  }

  // Emits the instructions of `node_index` in post-order; returns the index
  // of its last instruction (its result), or -1 after an error.
  int32_t Build(int node_index) {
    const Node& n = node(node_index);
    const size_t instr_mark = instrs().size();
    const size_t operand_mark = operands().size();

    if (checked_.variable[node_index] >= 0) {
      Instr instr;
      instr.op = Op::kVar;
      instr.type = type(node_index);
      instr.var = &program_->variables_[checked_.variable[node_index]];
      instr.slot = instr.var->slot;
      return Emit(instr);
    }

    Instr instr;
    instr.type = type(node_index);
    switch (n.kind) {
      case NodeKind::kLiteral: {
        Value value = n.value;
        if (value.type == Type::kString) {
          program_->strings_.push_back(n.text);
          value.string_value = program_->strings_.back();
        }
        return EmitConst(value);
      }
      case NodeKind::kUnary: {
        instr.a = Build(n.children[0]);
        if (instr.a < 0) return -1;
        if (n.unary_op == UnaryOp::kNot) {
          instr.op = Op::kNot;
        } else {
          instr.op =
              instr.type == Type::kDouble ? Op::kNegDouble : Op::kNegInt64;
        }
        break;
      }
      case NodeKind::kBinary:
        if (!PlanBinary(n, &instr)) return -1;
        break;
      case NodeKind::kAnd:
      case NodeKind::kOr:
        return BuildLogical(n);
      case NodeKind::kIn: {
        const Type lhs_type = type(n.children[0]);
        const int list = n.children[1];
        const Type common = lhs_type == type(list) ? lhs_type : Type::kDouble;
        instr.a = BuildAs(n.children[0], common);
        if (instr.a < 0) return -1;
        std::vector<int32_t> elements;
        for (int element : node(list).children) {
          const int32_t e = BuildAs(element, common);
          if (e < 0) return -1;
          elements.push_back(e);
        }
        instr.first = static_cast<int32_t>(operands().size());
        instr.count = static_cast<int32_t>(elements.size());
        operands().insert(operands().end(), elements.begin(), elements.end());
        switch (common) {
          case Type::kBool:
            instr.op = Op::kInBool;
            break;
          case Type::kDouble:
            instr.op = Op::kInDouble;
            break;
          case Type::kString:
            instr.op = Op::kInString;
            break;
          default:
            instr.op = Op::kInInt64;
            break;
        }
        break;
      }
      case NodeKind::kCall: {
        instr.a = Build(n.children[0]);
        if (instr.a < 0) return -1;
        if (n.text == "matches") {
          instr.op = Op::kMatches;
          instr.re = program_->regexes_[checked_.regex[node_index]].get();
        } else {
          instr.b = Build(n.children[1]);
          if (instr.b < 0) return -1;
          instr.op = n.text == "startsWith" ? Op::kStartsWith
                     : n.text == "endsWith" ? Op::kEndsWith
                                            : Op::kContains;
        }
        break;
      }
      case NodeKind::kIdent:
      case NodeKind::kMember:
      case NodeKind::kIndex:
      case NodeKind::kList:
        // Paths are variables (above); lists are built by their `in`.
        errors_.push_back({n.offset, "internal error: unplanned node"});
        return -1;
    }
    const int32_t index = Emit(instr);
    return Fold(node_index, index, instr_mark, operand_mark);
  }

  // Replaces the instruction at `index` and everything it was built from
  // (all at or after the marks) by its value when all its operands are
  // constants.
  int32_t Fold(int node_index, int32_t index, size_t instr_mark,
               size_t operand_mark) {
    const Instr& instr = instrs()[index];
    if (instr.a >= 0 && !IsConst(instr.a)) return index;
    if (instr.b >= 0 && !IsConst(instr.b)) return index;
    for (int32_t i = instr.first; i < instr.first + instr.count; ++i) {
      if (!IsConst(operands()[i])) return index;
    }
    RuntimeError error = RuntimeError::kNone;
    const Value value = program_->EvalAt(index, NoVariables(), &error);
    if (error != RuntimeError::kNone) {
      errors_.push_back({node(node_index).offset,
                         absl::StrCat(error == RuntimeError::kDivisionByZero
                                          ? "division by zero"
                                          : "arithmetic overflow",
                                      " in the constant expression `",
                                      checked_.ast.Text(node_index), "`")});
      return -1;
    }
    instrs().resize(instr_mark);
    operands().resize(operand_mark);
    return EmitConst(value);
  }

  bool PlanBinary(const Node& n, Instr* instr) {
    const int lhs = n.children[0];
    const int rhs = n.children[1];
    const Type l = type(lhs);
    const Type r = type(rhs);
    const Type common = l == r ? l : Type::kDouble;  // when they mix at all
    const bool is_money = l == Type::kMoney || r == Type::kMoney;

    switch (n.binary_op) {
      case BinaryOp::kEq:
      case BinaryOp::kNe:
      case BinaryOp::kLt:
      case BinaryOp::kLe:
      case BinaryOp::kGt:
      case BinaryOp::kGe:
        instr->cmp = ToCmp(n.binary_op);
        instr->op = common == Type::kBool     ? Op::kCmpBool
                    : common == Type::kDouble ? Op::kCmpDouble
                    : common == Type::kString ? Op::kCmpString
                                              : Op::kCmpInt64;
        return BuildOperands(lhs, rhs, common, instr);
      case BinaryOp::kAdd:
      case BinaryOp::kSub: {
        const bool add = n.binary_op == BinaryOp::kAdd;
        if (common == Type::kDouble) {
          instr->op = add ? Op::kAddDouble : Op::kSubDouble;
        } else {
          instr->op = add ? Op::kAddInt64 : Op::kSubInt64;
        }
        return BuildOperands(lhs, rhs, common, instr);
      }
      case BinaryOp::kMul:
        if (is_money) {
          // The money operand goes first; the other is an int or a double.
          const int money = l == Type::kMoney ? lhs : rhs;
          const int factor = l == Type::kMoney ? rhs : lhs;
          instr->op =
              type(factor) == Type::kInt ? Op::kMulInt64 : Op::kMulMoneyDouble;
          instr->a = Build(money);
          if (instr->a < 0) return false;
          instr->b = Build(factor);
          return instr->b >= 0;
        }
        instr->op = common == Type::kDouble ? Op::kMulDouble : Op::kMulInt64;
        return BuildOperands(lhs, rhs, common, instr);
      case BinaryOp::kDiv:
        if (is_money) {
          instr->op = Op::kDivMoney;
          return BuildOperands(lhs, rhs, Type::kMoney, instr);
        }
        instr->op = common == Type::kDouble ? Op::kDivDouble : Op::kDivInt64;
        return BuildOperands(lhs, rhs, common, instr);
    }
    return false;
  }

  bool BuildOperands(int lhs, int rhs, Type as, Instr* instr) {
    instr->a = BuildAs(lhs, as);
    if (instr->a < 0) return false;
    instr->b = BuildAs(rhs, as);
    return instr->b >= 0;
  }

  // `&&` / `||`: constant operands that cannot decide are dropped; a
  // constant that decides ends the list (what follows is never reached);
  // a single remaining operand stands for the whole.
  int32_t BuildLogical(const Node& n) {
    const bool decisive = n.kind == NodeKind::kOr;
    std::vector<int32_t> kept;
    for (int child : n.children) {
      const int32_t index = Build(child);
      if (index < 0) return -1;
      if (!IsConst(index)) {
        kept.push_back(index);
        continue;
      }
      if (instrs()[index].value.bool_value == decisive) {
        kept.push_back(index);
        break;
      }
      instrs().pop_back();  // a constant operand that does not decide
    }
    if (kept.empty()) return EmitConst(Value::Bool(!decisive));
    if (kept.size() == 1) return kept[0];
    Instr instr;
    instr.op = decisive ? Op::kOr : Op::kAnd;
    instr.type = Type::kBool;
    instr.first = static_cast<int32_t>(operands().size());
    instr.count = static_cast<int32_t>(kept.size());
    operands().insert(operands().end(), kept.begin(), kept.end());
    return Emit(instr);
  }

  CheckedAst checked_;
  std::unique_ptr<CompiledProgram> program_;
  std::vector<CompileError> errors_;
};

}  // namespace

CompileResult BuildProgram(CheckedAst checked) {
  return Builder(std::move(checked)).Run();
}

int InstructionCount(const Program& program) {
  const auto* compiled = dynamic_cast<const CompiledProgram*>(&program);
  return compiled == nullptr ? -1 : compiled->instruction_count();
}

}  // namespace bursar::policy::expr
