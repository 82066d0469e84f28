#include "policy/expr/expr.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "policy/expr/checker.h"
#include "policy/expr/parser.h"
#include "policy/expr/program.h"

namespace bursar::policy::expr {

absl::string_view TypeName(Type type) {
  switch (type) {
    case Type::kBool:
      return "bool";
    case Type::kInt:
      return "int";
    case Type::kDouble:
      return "double";
    case Type::kString:
      return "string";
    case Type::kDuration:
      return "duration";
    case Type::kMoney:
      return "money";
  }
  return "unknown";
}

std::string PathToString(const std::vector<PathSegment>& path) {
  std::string out;
  for (const PathSegment& segment : path) {
    if (segment.kind == PathSegment::Kind::kKey) {
      absl::StrAppend(&out, "[\"", absl::CEscape(segment.text), "\"]");
    } else {
      absl::StrAppend(&out, out.empty() ? "" : ".", segment.text);
    }
  }
  return out;
}

bool Program::EvalCondition(const Activation& activation, bool* ok) const {
  bool evaluated = false;
  const Value value = Eval(activation, &evaluated);
  const bool decided = evaluated && value.type == Type::kBool;
  if (ok != nullptr) *ok = decided;
  return decided && value.bool_value;
}

CompileResult Compile(absl::string_view source, const Schema& schema,
                      Type expected, const Limits& limits) {
  CompileResult result;
  ParseResult parsed = Parse(source, limits);
  if (!parsed.errors.empty()) {
    result.errors = std::move(parsed.errors);
    return result;
  }
  CheckResult checked = Check(std::move(parsed.ast), schema, expected);
  if (!checked.errors.empty()) {
    result.errors = std::move(checked.errors);
    return result;
  }
  return BuildProgram(std::move(checked.checked));
}

}  // namespace bursar::policy::expr
