#ifndef BURSAR_POLICY_EXPR_AST_H_
#define BURSAR_POLICY_EXPR_AST_H_

// The syntax tree the parser produces and the checker annotates. Nodes live
// in one vector and refer to their children by index; every node records
// the source range it was parsed from, so that later phases can point at
// the offending text. Internal to policy/expr.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "policy/expr/expr.h"

namespace bursar::policy::expr {

enum class NodeKind {
  kLiteral,  // value (for strings: text holds the bytes)
  kIdent,    // text = the name
  kMember,   // children = {operand}; text = the field name: `a.b`
  kIndex,    // children = {operand, key}: `a["b"]`
  kCall,     // children = {receiver, args...}; text = the method name
  kUnary,    // children = {operand}; unary_op
  kBinary,   // children = {lhs, rhs}; binary_op
  kAnd,      // children = operands (two or more), evaluated left to right
  kOr,       // children = operands (two or more), evaluated left to right
  kIn,       // children = {lhs, list}
  kList,     // children = elements; only as the right side of `in`
};

enum class UnaryOp { kNot, kNegate };

enum class BinaryOp { kEq, kNe, kLt, kLe, kGt, kGe, kAdd, kSub, kMul, kDiv };

// The operator as written, e.g. "<=".
absl::string_view UnaryOpText(UnaryOp op);
absl::string_view BinaryOpText(BinaryOp op);

struct Node {
  NodeKind kind = NodeKind::kLiteral;
  // Byte offset of the token that names the node: the operator of unary,
  // binary, `&&`, `||` and `in` nodes, the method name of a call, the `.`
  // or `[` of a member or index, the first byte of a literal or name, the
  // `[` of a list.
  int offset = 0;
  // The source range [begin, end) of the whole subexpression, parentheses
  // included.
  int begin = 0;
  int end = 0;
  // Height of the subtree: 1 for a leaf; `&&`/`||` chains count once.
  int depth = 1;
  std::vector<int> children;
  UnaryOp unary_op = UnaryOp::kNot;
  BinaryOp binary_op = BinaryOp::kEq;
  Value value;       // kLiteral; for strings, string_value is left empty
  std::string text;  // kLiteral strings, kIdent, kMember, kCall
};

struct Ast {
  absl::string_view source;  // not owned; the text that was parsed
  std::vector<Node> nodes;
  int root = -1;

  const Node& node(int index) const { return nodes[index]; }
  // The source text of a node, e.g. for "cannot compare ... (`x.y`)".
  absl::string_view Text(int index) const {
    const Node& n = nodes[index];
    return source.substr(n.begin, n.end - n.begin);
  }
};

}  // namespace bursar::policy::expr

#endif  // BURSAR_POLICY_EXPR_AST_H_
