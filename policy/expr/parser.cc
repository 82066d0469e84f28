#include "policy/expr/parser.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "policy/expr/ast.h"
#include "policy/expr/lexer.h"

namespace bursar::policy::expr {
namespace {

constexpr int kNoNode = -1;
constexpr size_t kMaxQuotedBytes = 40;

class Parser {
 public:
  Parser(absl::string_view source, std::vector<Token> tokens,
         const Limits& limits)
      : source_(source), tokens_(std::move(tokens)), limits_(limits) {
    ast_.source = source;
  }

  ParseResult Run() {
    ParseResult result;
    if (Kind() == TokenKind::kEnd) {
      result.errors.push_back({Current().offset,
                               "empty expression; write a condition such as "
                               "budget.used_ratio >= 90%"});
      return result;
    }
    const int root = ParseExpression();
    if (root != kNoNode && Kind() != TokenKind::kEnd) {
      Unexpected("after the end of the expression");
    }
    if (error_.has_value()) {
      result.errors.push_back(std::move(*error_));
      return result;
    }
    ast_.root = root;
    result.ast = std::move(ast_);
    return result;
  }

 private:
  const Token& Current() const { return tokens_[pos_]; }
  TokenKind Kind() const { return tokens_[pos_].kind; }
  const Token& Next() const {
    return tokens_[std::min(pos_ + 1, tokens_.size() - 1)];
  }
  const Token& Advance() {
    const Token& token = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return token;
  }
  bool failed() const { return error_.has_value(); }

  int Fail(int offset, std::string message) {
    if (!error_.has_value()) error_ = CompileError{offset, std::move(message)};
    return kNoNode;
  }

  // How the current token reads in a message: `'foo'` or "end of
  // expression".
  std::string Describe(const Token& token) const {
    if (token.kind == TokenKind::kEnd) return "end of expression";
    absl::string_view text = source_.substr(token.offset, token.length);
    if (text.size() > kMaxQuotedBytes) {
      return absl::StrCat("'", text.substr(0, kMaxQuotedBytes), "...'");
    }
    return absl::StrCat("'", text, "'");
  }

  int Unexpected(absl::string_view where) {
    const Token& token = Current();
    if (token.kind == TokenKind::kIdent) {
      if (token.text == "and") {
        return Fail(token.offset, "unexpected 'and'; write && for logical and");
      }
      if (token.text == "or") {
        return Fail(token.offset, "unexpected 'or'; write || for logical or");
      }
    }
    return Fail(token.offset,
                absl::StrCat("unexpected ", Describe(token), " ", where));
  }

  bool Expect(TokenKind kind, absl::string_view context) {
    if (Kind() == kind) {
      Advance();
      return true;
    }
    Fail(Current().offset,
         absl::StrCat("expected ", TokenKindName(kind), " ", context,
                      ", found ", Describe(Current())));
    return false;
  }

  // Guards the parser's own recursion (parentheses, unary operators,
  // brackets, call arguments) so that deep input cannot exhaust the stack.
  bool Enter(int offset) {
    if (++nesting_ > limits_.max_depth) {
      Fail(offset, DepthMessage());
      return false;
    }
    return true;
  }
  void Leave() { --nesting_; }

  std::string DepthMessage() const {
    return absl::StrCat("expression is nested too deeply: more than ",
                        limits_.max_depth,
                        " levels of operators and parentheses");
  }

  // Adds a node, computing its depth and source range from its children
  // when it has any.
  int AddNode(Node node) {
    if (failed()) return kNoNode;
    if (static_cast<int64_t>(ast_.nodes.size()) >= limits_.max_nodes) {
      return Fail(node.offset,
                  absl::StrCat("expression is too large: more than ",
                               limits_.max_nodes, " nodes"));
    }
    int child_depth = 0;
    for (int child : node.children) {
      const Node& c = ast_.nodes[child];
      child_depth = std::max(child_depth, c.depth);
      node.begin = std::min(node.begin, c.begin);
      node.end = std::max(node.end, c.end);
    }
    node.depth = child_depth + 1;
    if (node.depth > limits_.max_depth) {
      return Fail(node.offset, DepthMessage());
    }
    ast_.nodes.push_back(std::move(node));
    return static_cast<int>(ast_.nodes.size()) - 1;
  }

  static Node MakeNode(NodeKind kind, const Token& token) {
    Node node;
    node.kind = kind;
    node.offset = token.offset;
    node.begin = token.offset;
    node.end = token.offset + token.length;
    return node;
  }

  int ParseExpression() { return ParseOr(); }

  // `a || b || c` and `a && b && c` become one node with all operands.
  int ParseLogical(TokenKind op, NodeKind kind, int (Parser::*operand)()) {
    const int first = (this->*operand)();
    if (first == kNoNode || Kind() != op) return first;
    Node node = MakeNode(kind, Current());
    node.children.push_back(first);
    while (Kind() == op) {
      Advance();
      const int next = (this->*operand)();
      if (next == kNoNode) return kNoNode;
      node.children.push_back(next);
    }
    return AddNode(std::move(node));
  }

  int ParseOr() {
    return ParseLogical(TokenKind::kOr, NodeKind::kOr, &Parser::ParseAnd);
  }
  int ParseAnd() {
    return ParseLogical(TokenKind::kAnd, NodeKind::kAnd,
                        &Parser::ParseEquality);
  }

  static bool IsEquality(TokenKind kind) {
    return kind == TokenKind::kEq || kind == TokenKind::kNe;
  }
  static bool IsRelational(TokenKind kind) {
    return kind == TokenKind::kLt || kind == TokenKind::kLe ||
           kind == TokenKind::kGt || kind == TokenKind::kGe ||
           kind == TokenKind::kIn;
  }

  static BinaryOp ToBinaryOp(TokenKind kind) {
    switch (kind) {
      case TokenKind::kEq:
        return BinaryOp::kEq;
      case TokenKind::kNe:
        return BinaryOp::kNe;
      case TokenKind::kLt:
        return BinaryOp::kLt;
      case TokenKind::kLe:
        return BinaryOp::kLe;
      case TokenKind::kGt:
        return BinaryOp::kGt;
      case TokenKind::kGe:
        return BinaryOp::kGe;
      case TokenKind::kPlus:
        return BinaryOp::kAdd;
      case TokenKind::kMinus:
        return BinaryOp::kSub;
      case TokenKind::kStar:
        return BinaryOp::kMul;
      default:
        return BinaryOp::kDiv;
    }
  }

  int ChainedComparison() {
    return Fail(Current().offset,
                absl::StrCat("comparisons do not chain: ", Describe(Current()),
                             " follows another comparison; combine them "
                             "with &&, e.g. a < b && b < c"));
  }

  int ParseEquality() {
    const int lhs = ParseRelational();
    if (lhs == kNoNode || !IsEquality(Kind())) return lhs;
    Node node = MakeNode(NodeKind::kBinary, Current());
    node.binary_op = ToBinaryOp(Advance().kind);
    const int rhs = ParseRelational();
    if (rhs == kNoNode) return kNoNode;
    if (IsEquality(Kind())) return ChainedComparison();
    node.children = {lhs, rhs};
    return AddNode(std::move(node));
  }

  int ParseRelational() {
    const int lhs = ParseAdditive();
    if (lhs == kNoNode || !IsRelational(Kind())) return lhs;
    int result = kNoNode;
    if (Kind() == TokenKind::kIn) {
      Node node = MakeNode(NodeKind::kIn, Advance());
      const int list = ParseList();
      if (list == kNoNode) return kNoNode;
      node.children = {lhs, list};
      result = AddNode(std::move(node));
    } else {
      Node node = MakeNode(NodeKind::kBinary, Current());
      node.binary_op = ToBinaryOp(Advance().kind);
      const int rhs = ParseAdditive();
      if (rhs == kNoNode) return kNoNode;
      node.children = {lhs, rhs};
      result = AddNode(std::move(node));
    }
    if (result != kNoNode && IsRelational(Kind())) return ChainedComparison();
    return result;
  }

  // `[a, b, c]` (a trailing comma is allowed), right after `in`.
  int ParseList() {
    if (Kind() != TokenKind::kLBracket) {
      return Fail(Current().offset,
                  absl::StrCat("expected a list such as [\"a\", \"b\"] after "
                               "'in', found ",
                               Describe(Current())));
    }
    Node node = MakeNode(NodeKind::kList, Advance());
    if (!Enter(node.offset)) return kNoNode;
    while (Kind() != TokenKind::kRBracket) {
      const int element = ParseExpression();
      if (element == kNoNode) return kNoNode;
      node.children.push_back(element);
      if (Kind() == TokenKind::kComma) {
        Advance();
        continue;
      }
      if (Kind() != TokenKind::kRBracket) {
        return Fail(Current().offset,
                    absl::StrCat("expected ',' or ']' in the list, found ",
                                 Describe(Current())));
      }
    }
    Leave();
    node.end = Current().offset + Current().length;
    Advance();  // ']'
    if (node.children.empty()) {
      return Fail(node.offset,
                  "the list after 'in' is empty; the condition could never "
                  "hold");
    }
    return AddNode(std::move(node));
  }

  int ParseBinaryLevel(bool (*is_op)(TokenKind), int (Parser::*operand)()) {
    int lhs = (this->*operand)();
    while (lhs != kNoNode && is_op(Kind())) {
      Node node = MakeNode(NodeKind::kBinary, Current());
      node.binary_op = ToBinaryOp(Advance().kind);
      const int rhs = (this->*operand)();
      if (rhs == kNoNode) return kNoNode;
      node.children = {lhs, rhs};
      lhs = AddNode(std::move(node));
    }
    return lhs;
  }

  static bool IsAdditive(TokenKind kind) {
    return kind == TokenKind::kPlus || kind == TokenKind::kMinus;
  }
  static bool IsMultiplicative(TokenKind kind) {
    return kind == TokenKind::kStar || kind == TokenKind::kSlash;
  }

  int ParseAdditive() {
    return ParseBinaryLevel(&IsAdditive, &Parser::ParseMultiplicative);
  }
  int ParseMultiplicative() {
    return ParseBinaryLevel(&IsMultiplicative, &Parser::ParseUnary);
  }

  int ParseUnary() {
    if (Kind() != TokenKind::kNot && Kind() != TokenKind::kMinus) {
      return ParsePostfix();
    }
    Node node = MakeNode(NodeKind::kUnary, Current());
    node.unary_op =
        Advance().kind == TokenKind::kNot ? UnaryOp::kNot : UnaryOp::kNegate;
    if (!Enter(node.offset)) return kNoNode;
    const int operand = ParseUnary();
    Leave();
    if (operand == kNoNode) return kNoNode;
    node.children = {operand};
    return AddNode(std::move(node));
  }

  int ParsePostfix() {
    int operand = ParsePrimary();
    while (operand != kNoNode) {
      if (Kind() == TokenKind::kDot) {
        const Token& dot = Advance();
        if (Kind() != TokenKind::kIdent) {
          return Fail(Current().offset,
                      absl::StrCat(
                          "expected a field or method name after "
                          "'.', found ",
                          Describe(Current()),
                          Kind() == TokenKind::kIn || Kind() == TokenKind::kBool
                              ? "; write [\"name\"] for a key that "
                                "is a keyword"
                              : ""));
        }
        const Token& name = Advance();
        if (Kind() == TokenKind::kLParen) {
          Node node = MakeNode(NodeKind::kCall, name);
          node.begin = dot.offset;
          node.text = name.text;
          node.children.push_back(operand);
          if (!ParseArguments(&node)) return kNoNode;
          operand = AddNode(std::move(node));
        } else {
          Node node = MakeNode(NodeKind::kMember, dot);
          node.end = name.offset + name.length;
          node.text = name.text;
          node.children = {operand};
          operand = AddNode(std::move(node));
        }
      } else if (Kind() == TokenKind::kLBracket) {
        Node node = MakeNode(NodeKind::kIndex, Advance());
        if (!Enter(node.offset)) return kNoNode;
        const int key = ParseExpression();
        Leave();
        if (key == kNoNode) return kNoNode;
        node.end = Current().offset + Current().length;
        if (!Expect(TokenKind::kRBracket, "to close '['")) return kNoNode;
        node.children = {operand, key};
        operand = AddNode(std::move(node));
      } else {
        break;
      }
    }
    return operand;
  }

  // `(args...)` after a method name; appends the arguments to `call`.
  bool ParseArguments(Node* call) {
    const Token& open = Advance();  // '('
    if (!Enter(open.offset)) return false;
    if (Kind() != TokenKind::kRParen) {
      while (true) {
        const int arg = ParseExpression();
        if (arg == kNoNode) return false;
        call->children.push_back(arg);
        if (Kind() == TokenKind::kComma) {
          Advance();
          continue;
        }
        break;
      }
    }
    Leave();
    call->end = Current().offset + Current().length;
    return Expect(TokenKind::kRParen, "to close the argument list");
  }

  int ParsePrimary() {
    const Token& token = Current();
    switch (token.kind) {
      case TokenKind::kInt:
      case TokenKind::kDouble:
      case TokenKind::kBool:
      case TokenKind::kDuration:
      case TokenKind::kMoney:
      case TokenKind::kString: {
        Node node = MakeNode(NodeKind::kLiteral, token);
        node.value = LiteralValue(token);
        if (token.kind == TokenKind::kString) node.text = token.text;
        Advance();
        return AddNode(std::move(node));
      }
      case TokenKind::kIdent: {
        if (Next().kind == TokenKind::kLParen) {
          return Fail(token.offset,
                      absl::StrCat("unknown function '", token.text,
                                   "'; there are no functions, only the "
                                   "string methods matches, startsWith, "
                                   "endsWith and contains, e.g. "
                                   "request.model.startsWith(\"gpt-\")"));
        }
        if (token.text == "not" && StartsOperand(Next().kind)) {
          return Fail(token.offset, "unexpected 'not'; write ! for not");
        }
        Node node = MakeNode(NodeKind::kIdent, token);
        node.text = token.text;
        Advance();
        return AddNode(std::move(node));
      }
      case TokenKind::kLParen: {
        Advance();
        if (!Enter(token.offset)) return kNoNode;
        const int inner = ParseExpression();
        Leave();
        if (inner == kNoNode) return kNoNode;
        const int close_end = Current().offset + Current().length;
        if (!Expect(
                TokenKind::kRParen,
                absl::StrCat("to close the '(' at offset ", token.offset))) {
          return kNoNode;
        }
        ast_.nodes[inner].begin = token.offset;
        ast_.nodes[inner].end = close_end;
        return inner;
      }
      case TokenKind::kLBracket:
        return Fail(token.offset,
                    "a list [...] is allowed only after 'in', e.g. "
                    "request.model in [\"a\", \"b\"]");
      default:
        return Unexpected("where an operand was expected");
    }
  }

  static bool StartsOperand(TokenKind kind) {
    switch (kind) {
      case TokenKind::kIdent:
      case TokenKind::kInt:
      case TokenKind::kDouble:
      case TokenKind::kBool:
      case TokenKind::kDuration:
      case TokenKind::kMoney:
      case TokenKind::kString:
      case TokenKind::kLParen:
        return true;
      default:
        return false;
    }
  }

  static Value LiteralValue(const Token& token) {
    switch (token.kind) {
      case TokenKind::kInt:
        return Value::Int(token.int_value);
      case TokenKind::kDouble:
        return Value::Double(token.double_value);
      case TokenKind::kBool:
        return Value::Bool(token.int_value != 0);
      case TokenKind::kDuration: {
        Value value;
        value.type = Type::kDuration;
        value.int_value = token.int_value;
        return value;
      }
      case TokenKind::kMoney:
        return Value::Money(token.int_value);
      default: {
        Value value;
        value.type = Type::kString;
        return value;
      }
    }
  }

  absl::string_view source_;
  std::vector<Token> tokens_;
  const Limits& limits_;
  size_t pos_ = 0;
  int nesting_ = 0;
  Ast ast_;
  std::optional<CompileError> error_;
};

}  // namespace

absl::string_view UnaryOpText(UnaryOp op) {
  return op == UnaryOp::kNot ? "!" : "-";
}

absl::string_view BinaryOpText(BinaryOp op) {
  switch (op) {
    case BinaryOp::kEq:
      return "==";
    case BinaryOp::kNe:
      return "!=";
    case BinaryOp::kLt:
      return "<";
    case BinaryOp::kLe:
      return "<=";
    case BinaryOp::kGt:
      return ">";
    case BinaryOp::kGe:
      return ">=";
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
  }
  return "?";
}

ParseResult Parse(absl::string_view source, const Limits& limits) {
  ParseResult result;
  if (source.size() > limits.max_source_bytes) {
    result.errors.push_back(
        {static_cast<int>(limits.max_source_bytes),
         absl::StrCat("expression is too long: ", source.size(),
                      " bytes; at most ", limits.max_source_bytes,
                      " are allowed")});
    return result;
  }
  LexResult lexed = Lex(source);
  if (!lexed.errors.empty()) {
    result.errors = std::move(lexed.errors);
    return result;
  }
  return Parser(source, std::move(lexed.tokens), limits).Run();
}

}  // namespace bursar::policy::expr
