#include "policy/expr/checker.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "policy/expr/ast.h"
#include "policy/expr/expr.h"
#include "re2/re2.h"

namespace bursar::policy::expr {
namespace {

constexpr size_t kMaxQuotedBytes = 40;

bool IsNumeric(Type type) {
  return type == Type::kInt || type == Type::kDouble;
}

// The type two operands are compared or combined in: the same type, or
// double when an int meets a double.
std::optional<Type> Unify(Type a, Type b) {
  if (a == b) return a;
  if (IsNumeric(a) && IsNumeric(b)) return Type::kDouble;
  return std::nullopt;
}

bool IsKnownMethod(absl::string_view name) {
  return name == "matches" || name == "startsWith" || name == "endsWith" ||
         name == "contains";
}

class Checker {
 public:
  Checker(Ast ast, const Schema& schema) : schema_(schema) {
    const size_t n = ast.nodes.size();
    checked_.ast = std::move(ast);
    checked_.types.assign(n, std::nullopt);
    checked_.variable.assign(n, -1);
    checked_.regex.assign(n, -1);
  }

  CheckResult Run(Type expected) {
    const int root = checked_.ast.root;
    const std::optional<Type> type = Visit(root);
    if (type.has_value()) {
      if (*type == expected) {
        checked_.result_type = expected;
      } else if (*type == Type::kInt && expected == Type::kDouble) {
        checked_.result_type = Type::kDouble;
      } else {
        Error(node(root).begin,
              absl::StrCat("expected ", Article(expected), " expression, but ",
                           Quote(root), " has type ", TypeName(*type)));
      }
    }
    CheckResult result;
    result.errors = std::move(errors_);
    result.checked = std::move(checked_);
    return result;
  }

 private:
  const Node& node(int index) const { return checked_.ast.nodes[index]; }

  void Error(int offset, std::string message) {
    errors_.push_back({offset, std::move(message)});
  }

  static absl::string_view Article(Type type) {
    switch (type) {
      case Type::kBool:
        return "a bool";
      case Type::kInt:
        return "an int";
      case Type::kDouble:
        return "a double";
      case Type::kString:
        return "a string";
      case Type::kDuration:
        return "a duration";
      case Type::kMoney:
        return "a money";
    }
    return "a";
  }

  // The source text of a node in backquotes, shortened when long.
  std::string Quote(int index) const {
    absl::string_view text = checked_.ast.Text(index);
    if (text.size() > kMaxQuotedBytes) {
      return absl::StrCat("`", text.substr(0, kMaxQuotedBytes), "...`");
    }
    return absl::StrCat("`", text, "`");
  }

  // "double `budget.used_ratio`".
  std::string Operand(int index, Type type) const {
    return absl::StrCat(TypeName(type), " ", Quote(index));
  }

  // A hint for a number that meets money: `write $100 for 100 USD`.
  std::string MoneyHint(int number_node) const {
    const Node& n = node(number_node);
    if (n.kind == NodeKind::kLiteral) {
      const absl::string_view text = checked_.ast.Text(number_node);
      return absl::StrCat("; amounts of money are written with $: write $",
                          text, " for ", text, " USD");
    }
    return "; amounts of money are written with $, e.g. $100 for 100 USD";
  }

  static constexpr absl::string_view kDurationHint =
      "; durations are written with a unit, e.g. 90s, 5m or 1h30m";

  // The hint for two operands of types that do not mix, if there is one.
  std::string MixHint(int lhs, Type l, int rhs, Type r) const {
    if (l == Type::kMoney && IsNumeric(r)) return MoneyHint(rhs);
    if (r == Type::kMoney && IsNumeric(l)) return MoneyHint(lhs);
    if ((l == Type::kDuration && IsNumeric(r)) ||
        (r == Type::kDuration && IsNumeric(l))) {
      return std::string(kDurationHint);
    }
    return "";
  }

  std::optional<Type> Visit(int index) {
    std::optional<Type> type;
    switch (node(index).kind) {
      case NodeKind::kLiteral:
        type = node(index).value.type;
        break;
      case NodeKind::kIdent:
      case NodeKind::kMember:
      case NodeKind::kIndex:
        type = VisitPath(index);
        break;
      case NodeKind::kCall:
        type = VisitCall(index);
        break;
      case NodeKind::kUnary:
        type = VisitUnary(index);
        break;
      case NodeKind::kBinary:
        type = VisitBinary(index);
        break;
      case NodeKind::kAnd:
      case NodeKind::kOr:
        type = VisitLogical(index);
        break;
      case NodeKind::kIn:
        type = VisitIn(index);
        break;
      case NodeKind::kList:
        // The parser puts lists only under `in`, which types them.
        Error(node(index).offset, "a list is allowed only after 'in'");
        break;
    }
    checked_.types[index] = type;
    return type;
  }

  std::optional<Type> VisitPath(int index) {
    std::vector<PathSegment> path;
    int current = index;
    while (true) {
      const Node& n = node(current);
      if (n.kind == NodeKind::kIdent) {
        path.push_back({PathSegment::Kind::kIdent, n.text});
        break;
      }
      if (n.kind == NodeKind::kMember) {
        path.push_back({PathSegment::Kind::kIdent, n.text});
      } else if (n.kind == NodeKind::kIndex) {
        const int key = n.children[1];
        const Node& k = node(key);
        if (k.kind != NodeKind::kLiteral) {
          Visit(key);
          Error(k.begin,
                absl::StrCat("the key in [...] must be a string literal, "
                             "e.g. budgets[\"org-monthly\"], not ",
                             Quote(key)));
          return std::nullopt;
        }
        if (k.value.type != Type::kString) {
          Error(k.begin, absl::StrCat("the key in [...] must be a string, "
                                      "e.g. [\"team\"], not ",
                                      Operand(key, k.value.type)));
          return std::nullopt;
        }
        path.push_back({PathSegment::Kind::kKey, k.text});
      } else {
        // `.name` or `[...]` applied to something that is not a variable
        // path: report what is wrong inside first, then the access itself.
        const Node& access = node(PathParent(index, current));
        if (!Visit(current).has_value()) return std::nullopt;
        if (access.kind == NodeKind::kMember) {
          Error(access.offset,
                absl::StrCat("unexpected '.", access.text, "' after ",
                             Quote(current),
                             ": only variables have fields, e.g. "
                             "request.labels.team"));
        } else {
          Error(access.offset,
                absl::StrCat("unexpected '[' after ", Quote(current),
                             ": only variables take keys, e.g. "
                             "budgets[\"org-monthly\"]"));
        }
        return std::nullopt;
      }
      current = n.children[0];
    }
    std::reverse(path.begin(), path.end());
    absl::StatusOr<VariableRef> ref = schema_.Resolve(path);
    if (!ref.ok()) {
      Error(node(index).begin, std::string(ref.status().message()));
      return std::nullopt;
    }
    const Type type = ref->type;
    checked_.variable[index] = static_cast<int>(checked_.variables.size());
    checked_.variables.push_back(*std::move(ref));
    return type;
  }

  // The member or index node of the path rooted at `index` whose operand
  // is `operand`.
  int PathParent(int index, int operand) const {
    int current = index;
    while (node(current).children[0] != operand) {
      current = node(current).children[0];
    }
    return current;
  }

  std::optional<Type> VisitCall(int index) {
    const Node& n = node(index);
    const absl::string_view method = n.text;
    if (!IsKnownMethod(method)) {
      Visit(n.children[0]);
      Error(n.offset, absl::StrCat("unknown method '", method,
                                   "'; the string methods are matches, "
                                   "startsWith, endsWith and contains"));
      return std::nullopt;
    }
    const std::optional<Type> receiver = Visit(n.children[0]);
    const size_t args = n.children.size() - 1;
    if (args != 1) {
      Error(n.offset, absl::StrCat(method,
                                   "() takes one string argument, "
                                   "got ",
                                   args));
      return std::nullopt;
    }
    bool ok = receiver.has_value();
    if (receiver.has_value() && *receiver != Type::kString) {
      Error(n.offset,
            absl::StrCat("method ", method, "() applies to strings, not to ",
                         Operand(n.children[0], *receiver)));
      ok = false;
    }
    const int arg = n.children[1];
    if (method == "matches") {
      ok = CompilePattern(index, arg) && ok;
    } else {
      const std::optional<Type> arg_type = Visit(arg);
      if (arg_type.has_value() && *arg_type != Type::kString) {
        Error(node(arg).begin, absl::StrCat("the argument of ", method,
                                            "() must be a string, not ",
                                            Operand(arg, *arg_type)));
        ok = false;
      }
      ok = ok && arg_type.has_value();
    }
    if (!ok) return std::nullopt;
    return Type::kBool;
  }

  bool CompilePattern(int call, int arg) {
    const Node& a = node(arg);
    if (a.kind != NodeKind::kLiteral) {
      Visit(arg);
      Error(a.begin,
            absl::StrCat("the pattern of matches() must be a string literal, "
                         "so that it is compiled when the policy loads; ",
                         Quote(arg), " is not"));
      return false;
    }
    if (a.value.type != Type::kString) {
      Error(a.begin,
            absl::StrCat("the pattern of matches() must be a string, not ",
                         Operand(arg, a.value.type)));
      return false;
    }
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_unique<RE2>(a.text, options);
    if (!re->ok()) {
      Error(a.begin, absl::StrCat("invalid regular expression ", Quote(arg),
                                  ": ", re->error()));
      return false;
    }
    checked_.regex[call] = static_cast<int>(checked_.regexes.size());
    checked_.regexes.push_back(std::move(re));
    return true;
  }

  std::optional<Type> VisitUnary(int index) {
    const Node& n = node(index);
    const int operand = n.children[0];
    const std::optional<Type> type = Visit(operand);
    if (!type.has_value()) return std::nullopt;
    if (n.unary_op == UnaryOp::kNot) {
      if (*type == Type::kBool) return Type::kBool;
      Error(n.offset, absl::StrCat("operator ! needs a bool, not ",
                                   Operand(operand, *type)));
      return std::nullopt;
    }
    if (IsNumeric(*type) || *type == Type::kMoney || *type == Type::kDuration) {
      return *type;
    }
    Error(n.offset,
          absl::StrCat("operator - needs a number, money or a duration, not ",
                       Operand(operand, *type)));
    return std::nullopt;
  }

  std::optional<Type> VisitBinary(int index) {
    const Node& n = node(index);
    const int lhs = n.children[0];
    const int rhs = n.children[1];
    const std::optional<Type> lt = Visit(lhs);
    const std::optional<Type> rt = Visit(rhs);
    if (!lt.has_value() || !rt.has_value()) return std::nullopt;
    const Type l = *lt;
    const Type r = *rt;
    const std::optional<Type> common = Unify(l, r);
    const absl::string_view op = BinaryOpText(n.binary_op);

    switch (n.binary_op) {
      case BinaryOp::kEq:
      case BinaryOp::kNe:
      case BinaryOp::kLt:
      case BinaryOp::kLe:
      case BinaryOp::kGt:
      case BinaryOp::kGe: {
        const bool ordering =
            n.binary_op != BinaryOp::kEq && n.binary_op != BinaryOp::kNe;
        if (common.has_value() && ordering && *common == Type::kBool) {
          Error(n.offset, absl::StrCat("operator ", op,
                                       " does not apply to bools; compare "
                                       "them with == or !="));
          return std::nullopt;
        }
        if (common.has_value()) return Type::kBool;
        Error(n.offset,
              absl::StrCat("cannot compare ", Operand(lhs, l), " with ",
                           Operand(rhs, r), MixHint(lhs, l, rhs, r)));
        return std::nullopt;
      }
      case BinaryOp::kAdd:
      case BinaryOp::kSub:
        if (common.has_value() &&
            (IsNumeric(*common) || *common == Type::kMoney ||
             *common == Type::kDuration)) {
          return *common;
        }
        break;
      case BinaryOp::kMul:
        if (common.has_value() && IsNumeric(*common)) return *common;
        if ((l == Type::kMoney && IsNumeric(r)) ||
            (r == Type::kMoney && IsNumeric(l))) {
          return Type::kMoney;
        }
        if (l == Type::kMoney && r == Type::kMoney) {
          Error(n.offset,
                "cannot multiply money by money; multiply money by a number "
                "or a percentage, e.g. budget.amount * 90%");
          return std::nullopt;
        }
        break;
      case BinaryOp::kDiv:
        if (common.has_value() && IsNumeric(*common)) return *common;
        if (l == Type::kMoney && r == Type::kMoney) return Type::kDouble;
        if (l == Type::kMoney && IsNumeric(r)) {
          Error(n.offset,
                absl::StrCat("cannot divide money by ", TypeName(r),
                             "; multiply by a fraction instead, e.g. "
                             "budget.amount * 25%, or divide money by money "
                             "for a ratio"));
          return std::nullopt;
        }
        break;
    }
    Error(n.offset,
          absl::StrCat("operator ", op, " cannot combine ", Operand(lhs, l),
                       " and ", Operand(rhs, r), MixHint(lhs, l, rhs, r)));
    return std::nullopt;
  }

  std::optional<Type> VisitLogical(int index) {
    const Node& n = node(index);
    const absl::string_view op = n.kind == NodeKind::kAnd ? "&&" : "||";
    bool ok = true;
    for (int child : n.children) {
      const std::optional<Type> type = Visit(child);
      if (!type.has_value()) {
        ok = false;
      } else if (*type != Type::kBool) {
        Error(node(child).begin,
              absl::StrCat("operator ", op, " needs bool operands, not ",
                           Operand(child, *type)));
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return Type::kBool;
  }

  std::optional<Type> VisitIn(int index) {
    const Node& n = node(index);
    const int lhs = n.children[0];
    const int list = n.children[1];
    const std::optional<Type> lhs_type = Visit(lhs);

    std::optional<Type> element_type;
    int first_element = -1;
    bool ok = true;
    for (int element : node(list).children) {
      const std::optional<Type> type = Visit(element);
      if (!type.has_value()) {
        ok = false;
        continue;
      }
      if (!element_type.has_value()) {
        element_type = type;
        first_element = element;
        continue;
      }
      const std::optional<Type> common = Unify(*element_type, *type);
      if (!common.has_value()) {
        Error(node(element).begin,
              absl::StrCat(
                  "the list mixes ", Operand(first_element, *element_type),
                  " and ", Operand(element, *type),
                  "; every element must have the same type",
                  MixHint(first_element, *element_type, element, *type)));
        ok = false;
        continue;
      }
      element_type = common;
    }
    if (!ok || !lhs_type.has_value() || !element_type.has_value()) {
      return std::nullopt;
    }
    checked_.types[list] = element_type;
    if (!Unify(*lhs_type, *element_type).has_value()) {
      Error(n.offset, absl::StrCat("cannot look for ", Operand(lhs, *lhs_type),
                                   " in a list of ", TypeName(*element_type),
                                   MixHint(lhs, *lhs_type, first_element,
                                           *element_type)));
      return std::nullopt;
    }
    return Type::kBool;
  }

  const Schema& schema_;
  CheckedAst checked_;
  std::vector<CompileError> errors_;
};

}  // namespace

CheckResult Check(Ast ast, const Schema& schema, Type expected) {
  return Checker(std::move(ast), schema).Run(expected);
}

}  // namespace bursar::policy::expr
