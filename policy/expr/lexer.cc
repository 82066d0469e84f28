#include "policy/expr/lexer.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "policy/money.h"

namespace bursar::policy::expr {
namespace {

constexpr int kMaxMoneyDecimals = 9;  // nano-USD

bool IsIdentStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsIdentChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// A character for a message: printable ASCII as is, anything else as hex.
std::string Describe(char c) {
  if (absl::ascii_isprint(c)) return absl::StrCat("'", std::string(1, c), "'");
  return absl::StrCat("byte 0x", absl::Hex(static_cast<unsigned char>(c),
                                           absl::PadSpec::kZeroPad2));
}

struct DurationUnit {
  absl::string_view name;
  int64_t nanos;
  int rank;  // larger units first: 1h30m, not 30m1h
};

constexpr DurationUnit kDurationUnits[] = {
    {"d", int64_t{86'400} * 1'000'000'000, 5},
    {"h", int64_t{3'600} * 1'000'000'000, 4},
    {"m", int64_t{60} * 1'000'000'000, 3},
    {"s", 1'000'000'000, 2},
    {"ms", 1'000'000, 1},
};

const DurationUnit* FindDurationUnit(absl::string_view name) {
  for (const DurationUnit& unit : kDurationUnits) {
    if (unit.name == name) return &unit;
  }
  return nullptr;
}

class Lexer {
 public:
  explicit Lexer(absl::string_view source) : source_(source) {}

  LexResult Run() {
    while (result_.errors.empty()) {
      SkipWhitespace();
      if (pos_ >= source_.size()) {
        Emit(TokenKind::kEnd, pos_, pos_);
        break;
      }
      LexOne();
    }
    if (!result_.errors.empty()) result_.tokens.clear();
    return std::move(result_);
  }

 private:
  char Peek(size_t ahead = 0) const {
    return pos_ + ahead < source_.size() ? source_[pos_ + ahead] : '\0';
  }
  bool AtEnd(size_t ahead = 0) const { return pos_ + ahead >= source_.size(); }

  void SkipWhitespace() {
    while (!AtEnd()) {
      const char c = Peek();
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  Token& Emit(TokenKind kind, size_t begin, size_t end) {
    Token token;
    token.kind = kind;
    token.offset = static_cast<int>(begin);
    token.length = static_cast<int>(end - begin);
    result_.tokens.push_back(std::move(token));
    return result_.tokens.back();
  }

  void Fail(size_t offset, std::string message) {
    if (!result_.errors.empty()) return;
    result_.errors.push_back({static_cast<int>(offset), std::move(message)});
  }

  void LexOne() {
    const size_t begin = pos_;
    const char c = Peek();
    if (IsIdentStart(c)) return LexIdent();
    if (absl::ascii_isdigit(c)) return LexNumber();
    if (c == '"' || c == '\'') return LexString();
    if (c == '$') return LexMoney();

    auto two = [&](char second, TokenKind kind2, TokenKind kind1) {
      if (Peek(1) == second) {
        pos_ += 2;
        Emit(kind2, begin, pos_);
      } else {
        pos_ += 1;
        Emit(kind1, begin, pos_);
      }
    };
    switch (c) {
      case '=':
        if (Peek(1) == '=') {
          pos_ += 2;
          Emit(TokenKind::kEq, begin, pos_);
        } else {
          Fail(begin, "unexpected '='; write == to compare");
        }
        return;
      case '!':
        return two('=', TokenKind::kNe, TokenKind::kNot);
      case '<':
        return two('=', TokenKind::kLe, TokenKind::kLt);
      case '>':
        return two('=', TokenKind::kGe, TokenKind::kGt);
      case '&':
        if (Peek(1) == '&') {
          pos_ += 2;
          Emit(TokenKind::kAnd, begin, pos_);
        } else {
          Fail(begin, "unexpected '&'; write && for logical and");
        }
        return;
      case '|':
        if (Peek(1) == '|') {
          pos_ += 2;
          Emit(TokenKind::kOr, begin, pos_);
        } else {
          Fail(begin, "unexpected '|'; write || for logical or");
        }
        return;
      case '+':
        ++pos_;
        Emit(TokenKind::kPlus, begin, pos_);
        return;
      case '-':
        ++pos_;
        Emit(TokenKind::kMinus, begin, pos_);
        return;
      case '*':
        ++pos_;
        Emit(TokenKind::kStar, begin, pos_);
        return;
      case '/':
        ++pos_;
        Emit(TokenKind::kSlash, begin, pos_);
        return;
      case '(':
        ++pos_;
        Emit(TokenKind::kLParen, begin, pos_);
        return;
      case ')':
        ++pos_;
        Emit(TokenKind::kRParen, begin, pos_);
        return;
      case '[':
        ++pos_;
        Emit(TokenKind::kLBracket, begin, pos_);
        return;
      case ']':
        ++pos_;
        Emit(TokenKind::kRBracket, begin, pos_);
        return;
      case ',':
        ++pos_;
        Emit(TokenKind::kComma, begin, pos_);
        return;
      case '.':
        if (absl::ascii_isdigit(Peek(1))) {
          return Fail(begin,
                      "a number needs a digit before the decimal point; "
                      "write e.g. 0.5 rather than .5");
        }
        ++pos_;
        Emit(TokenKind::kDot, begin, pos_);
        return;
      case '%':
        return Fail(begin,
                    "unexpected '%'; a percentage is a number followed by "
                    "%, e.g. 90%");
      default:
        return Fail(begin, absl::StrCat("unexpected character ", Describe(c)));
    }
  }

  void LexIdent() {
    const size_t begin = pos_;
    while (!AtEnd() && IsIdentChar(Peek())) ++pos_;
    const absl::string_view word = source_.substr(begin, pos_ - begin);
    if (word == "true" || word == "false") {
      Emit(TokenKind::kBool, begin, pos_).int_value = word == "true" ? 1 : 0;
    } else if (word == "in") {
      Emit(TokenKind::kIn, begin, pos_);
    } else {
      Emit(TokenKind::kIdent, begin, pos_).text = std::string(word);
    }
  }

  // Consumes [0-9]* and returns them.
  absl::string_view Digits() {
    const size_t begin = pos_;
    while (!AtEnd() && absl::ascii_isdigit(Peek())) ++pos_;
    return source_.substr(begin, pos_ - begin);
  }

  // Consumes [A-Za-z_]* (a unit or stray suffix) and returns them.
  absl::string_view Letters() {
    const size_t begin = pos_;
    while (!AtEnd() && (absl::ascii_isalpha(Peek()) || Peek() == '_')) ++pos_;
    return source_.substr(begin, pos_ - begin);
  }

  // The character after a literal must not continue it: `15abc`, `90%x`.
  bool CheckLiteralEnd(size_t literal_begin, absl::string_view what) {
    if (!AtEnd() && (IsIdentChar(Peek()) || Peek() == '.' || Peek() == '$' ||
                     Peek() == '%')) {
      Fail(pos_,
           absl::StrCat("unexpected ", Describe(Peek()), " after ", what, " \"",
                        source_.substr(literal_begin, pos_ - literal_begin),
                        "\""));
      return false;
    }
    return true;
  }

  void LexNumber() {
    const size_t begin = pos_;
    Digits();
    bool has_fraction = false;
    if (Peek() == '.') {
      if (!absl::ascii_isdigit(Peek(1))) {
        return Fail(pos_ + 1,
                    absl::StrCat("expected a digit after the decimal point "
                                 "in \"",
                                 source_.substr(begin, pos_ + 1 - begin),
                                 "\"; write e.g. 5 or 5.0"));
      }
      ++pos_;
      Digits();
      has_fraction = true;
    }
    const absl::string_view number = source_.substr(begin, pos_ - begin);

    if (Peek() == '%') {
      ++pos_;
      // Parse "12.5e-2" rather than dividing by 100, so that the double is
      // the one nearest to the decimal the author wrote.
      double value = 0;
      if (!absl::SimpleAtod(absl::StrCat(number, "e-2"), &value) ||
          !std::isfinite(value)) {
        return Fail(begin, absl::StrCat("percentage \"", number,
                                        "%\" is out of range"));
      }
      if (!CheckLiteralEnd(begin, "percentage")) return;
      Emit(TokenKind::kDouble, begin, pos_).double_value = value;
      return;
    }
    if (absl::ascii_isalpha(Peek()) || Peek() == '_') {
      return LexDuration(begin, has_fraction);
    }
    if (!CheckLiteralEnd(begin, "number")) return;
    if (has_fraction) {
      double value = 0;
      if (!absl::SimpleAtod(number, &value) || !std::isfinite(value)) {
        return Fail(begin,
                    absl::StrCat("number \"", number, "\" is out of range"));
      }
      Emit(TokenKind::kDouble, begin, pos_).double_value = value;
      return;
    }
    int64_t value = 0;
    if (!absl::SimpleAtoi(number, &value)) {
      return Fail(begin, absl::StrCat("integer \"", number,
                                      "\" is out of range; integers are at "
                                      "most 9223372036854775807"));
    }
    Emit(TokenKind::kInt, begin, pos_).int_value = value;
  }

  // Called with pos_ at the first letter after the leading number, which
  // started at `begin`. Accepts a sequence of <whole number><unit> with
  // units from larger to smaller: 2d, 1h30m, 90s, 250ms, 1m30s500ms.
  void LexDuration(size_t begin, bool has_fraction) {
    size_t number_begin = begin;
    absl::string_view number = source_.substr(begin, pos_ - begin);
    __int128 total = 0;
    int last_rank = 1 << 20;
    constexpr __int128 kMax = std::numeric_limits<int64_t>::max();
    while (true) {
      const size_t unit_begin = pos_;
      const absl::string_view unit_name = Letters();
      const DurationUnit* unit = FindDurationUnit(unit_name);
      if (unit == nullptr) {
        if (!unit_name.empty() &&
            (unit_name[0] == 'e' || unit_name[0] == 'E')) {
          return Fail(
              unit_begin,
              absl::StrCat("unexpected \"", unit_name, "\" after \"", number,
                           "\"; numbers are written without an "
                           "exponent"));
        }
        return Fail(
            unit_begin,
            absl::StrCat("unknown unit \"", unit_name, "\" after \"", number,
                         "\"; a duration uses d, h, m, s or ms, e.g. "
                         "1h30m or 250ms"));
      }
      if (has_fraction) {
        return Fail(
            number_begin,
            absl::StrCat("duration \"",
                         source_.substr(number_begin, pos_ - number_begin),
                         "\" has a fraction; write whole numbers of "
                         "smaller units, e.g. 1h30m rather than "
                         "1.5h"));
      }
      if (unit->rank >= last_rank) {
        return Fail(unit_begin,
                    absl::StrCat("unit \"", unit_name,
                                 "\" is out of order in duration \"",
                                 source_.substr(begin, pos_ - begin),
                                 "\"; write each unit once, larger units "
                                 "first, e.g. 1h30m"));
      }
      last_rank = unit->rank;
      // Each component is at most 19 digits, so 128 bits cannot overflow
      // before the range check.
      __int128 component = 0;
      for (char c : number) {
        component = component * 10 + (c - '0');
        if (component > kMax) break;
      }
      total += component * unit->nanos;
      if (component > kMax || total > kMax) {
        return Fail(begin, absl::StrCat("duration \"",
                                        source_.substr(begin, pos_ - begin),
                                        "\" is out of range; durations are "
                                        "at most about 106751 days"));
      }
      if (!absl::ascii_isdigit(Peek())) break;
      number_begin = pos_;
      number = Digits();
      if (Peek() == '.') {
        ++pos_;
        Digits();
        has_fraction = true;
      }
      if (!(absl::ascii_isalpha(Peek()) || Peek() == '_')) {
        return Fail(pos_,
                    absl::StrCat("expected a unit (d, h, m, s or ms) "
                                 "after \"",
                                 source_.substr(begin, pos_ - begin), "\""));
      }
    }
    if (!CheckLiteralEnd(begin, "duration")) return;
    Emit(TokenKind::kDuration, begin, pos_).int_value =
        static_cast<int64_t>(total);
  }

  void LexMoney() {
    const size_t begin = pos_;
    ++pos_;  // '$'
    if (!absl::ascii_isdigit(Peek())) {
      return Fail(begin,
                  "expected digits after '$'; write an amount in USD such as "
                  "$12.50");
    }
    // Take everything that could belong to the amount, so that ParseUsdNanos
    // explains mistakes such as `$1_000` or `$5usd`.
    while (!AtEnd() && (IsIdentChar(Peek()) || Peek() == '.')) ++pos_;
    const absl::string_view amount =
        source_.substr(begin + 1, pos_ - begin - 1);
    const size_t point = amount.find('.');
    if (point != absl::string_view::npos) {
      size_t decimals = 0;
      while (point + 1 + decimals < amount.size() &&
             absl::ascii_isdigit(amount[point + 1 + decimals])) {
        ++decimals;
      }
      if (decimals > kMaxMoneyDecimals) {
        return Fail(begin + 1 + point + 1 + kMaxMoneyDecimals,
                    absl::StrCat("money \"$", amount, "\" has ", decimals,
                                 " decimal places; at most 9 (nano-USD) are "
                                 "allowed"));
      }
    }
    absl::StatusOr<int64_t> nanos = ParseUsdNanos(amount);
    if (!nanos.ok()) {
      return Fail(begin, absl::StrCat("money ", nanos.status().message()));
    }
    if (!CheckLiteralEnd(begin, "money")) return;
    Emit(TokenKind::kMoney, begin, pos_).int_value = *nanos;
  }

  void LexString() {
    const size_t begin = pos_;
    const char quote = Peek();
    ++pos_;
    std::string value;
    while (true) {
      if (AtEnd()) {
        return Fail(begin, absl::StrCat("unterminated string; expected a "
                                        "closing ",
                                        Describe(quote)));
      }
      const char c = Peek();
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c == '\n' || c == '\r') {
        return Fail(pos_,
                    "line break inside a string; close the string on the "
                    "same line or write \\n");
      }
      if (c != '\\') {
        value.push_back(c);
        ++pos_;
        continue;
      }
      const char escaped = Peek(1);
      switch (escaped) {
        case '"':
        case '\'':
        case '\\':
          value.push_back(escaped);
          break;
        case 'n':
          value.push_back('\n');
          break;
        case 't':
          value.push_back('\t');
          break;
        default:
          if (AtEnd(1)) {
            return Fail(begin, absl::StrCat("unterminated string; expected "
                                            "a closing ",
                                            Describe(quote)));
          }
          return Fail(pos_,
                      absl::StrCat("unknown escape \\", std::string(1, escaped),
                                   " in string; the escapes are \\\" "
                                   "\\' \\\\ \\n \\t"));
      }
      pos_ += 2;
    }
    Emit(TokenKind::kString, begin, pos_).text = std::move(value);
  }

  absl::string_view source_;
  size_t pos_ = 0;
  LexResult result_;
};

}  // namespace

absl::string_view TokenKindName(TokenKind kind) {
  switch (kind) {
    case TokenKind::kEnd:
      return "end of expression";
    case TokenKind::kIdent:
      return "a name";
    case TokenKind::kInt:
      return "an integer";
    case TokenKind::kDouble:
      return "a number";
    case TokenKind::kString:
      return "a string";
    case TokenKind::kBool:
      return "a boolean";
    case TokenKind::kDuration:
      return "a duration";
    case TokenKind::kMoney:
      return "an amount of money";
    case TokenKind::kIn:
      return "'in'";
    case TokenKind::kEq:
      return "'=='";
    case TokenKind::kNe:
      return "'!='";
    case TokenKind::kLt:
      return "'<'";
    case TokenKind::kLe:
      return "'<='";
    case TokenKind::kGt:
      return "'>'";
    case TokenKind::kGe:
      return "'>='";
    case TokenKind::kAnd:
      return "'&&'";
    case TokenKind::kOr:
      return "'||'";
    case TokenKind::kNot:
      return "'!'";
    case TokenKind::kPlus:
      return "'+'";
    case TokenKind::kMinus:
      return "'-'";
    case TokenKind::kStar:
      return "'*'";
    case TokenKind::kSlash:
      return "'/'";
    case TokenKind::kLParen:
      return "'('";
    case TokenKind::kRParen:
      return "')'";
    case TokenKind::kLBracket:
      return "'['";
    case TokenKind::kRBracket:
      return "']'";
    case TokenKind::kComma:
      return "','";
    case TokenKind::kDot:
      return "'.'";
  }
  return "a token";
}

LexResult Lex(absl::string_view source) { return Lexer(source).Run(); }

}  // namespace bursar::policy::expr
