#include "policy/money.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace bursar::policy {
namespace {

constexpr int kFractionDigits = 9;  // nano-USD

absl::Status Invalid(absl::string_view text, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("\"", absl::CHexEscape(text), "\" ", problem));
}

}  // namespace

absl::StatusOr<int64_t> ParseUsdNanos(absl::string_view text) {
  absl::string_view rest = text;
  if (rest.empty()) {
    return absl::InvalidArgumentError(
        "empty amount; write a decimal USD amount such as \"50000.00\"");
  }
  if (rest.front() == '$') rest.remove_prefix(1);
  if (rest.empty()) {
    return Invalid(text,
                   "has no digits; write a decimal USD amount such as \"5\"");
  }
  if (rest.front() == '-' || rest.front() == '+') {
    return Invalid(text,
                   "has a sign; amounts are non-negative and written without "
                   "one, e.g. \"1.50\"");
  }

  // Split into integer and fractional digits, diagnosing the common ways of
  // writing a number that this format does not accept.
  absl::string_view int_digits = rest;
  absl::string_view frac_digits;
  bool has_point = false;
  for (size_t i = 0; i < rest.size(); ++i) {
    const char c = rest[i];
    if (absl::ascii_isdigit(c)) continue;
    if (c == '.' && !has_point) {
      has_point = true;
      int_digits = rest.substr(0, i);
      frac_digits = rest.substr(i + 1);
      continue;
    }
    if (c == 'e' || c == 'E') {
      return Invalid(text,
                     "uses an exponent; write the plain decimal, e.g. "
                     "\"1000\" rather than \"1e3\"");
    }
    if (c == ' ' || c == '\t') {
      return Invalid(text,
                     "has a space; write the number alone, without spaces "
                     "or a currency name, e.g. \"1000\" or \"$1000\"");
    }
    if (c == ',' || c == '_' || c == '\'') {
      return Invalid(text,
                     "has a thousands separator; write the digits alone, "
                     "e.g. \"1000\" rather than \"1,000\"");
    }
    if (c == '.') {
      return Invalid(text, "has more than one decimal point");
    }
    return Invalid(text,
                   absl::StrCat("has the unexpected character '",
                                absl::CHexEscape(absl::string_view(&c, 1)),
                                "'; write a decimal USD amount such as "
                                "\"0.0000015\""));
  }
  if (int_digits.empty()) {
    return Invalid(text, has_point && !frac_digits.empty()
                             ? "has no digit before the decimal point; write "
                               "e.g. \"0.5\" rather than \".5\""
                             : "has no digits; write a decimal USD amount "
                               "such as \"5\"");
  }
  if (has_point && frac_digits.empty()) {
    return Invalid(text,
                   "has no digit after the decimal point; write e.g. \"5\" "
                   "or \"5.0\" rather than \"5.\"");
  }

  // Digits beyond the ninth fractional one are representable only if zero.
  if (frac_digits.size() > kFractionDigits) {
    absl::string_view extra = frac_digits.substr(kFractionDigits);
    if (extra.find_first_not_of('0') != absl::string_view::npos) {
      return Invalid(text,
                     absl::StrFormat("has %d fractional digits; at most %d "
                                     "(nano-USD) are representable",
                                     frac_digits.size(), kFractionDigits));
    }
    frac_digits = frac_digits.substr(0, kFractionDigits);
  }

  // Accumulate in 128 bits; stop as soon as the value cannot fit int64.
  constexpr __int128 kMax = std::numeric_limits<int64_t>::max();
  __int128 nanos = 0;
  for (char c : int_digits) {
    nanos = nanos * 10 + (c - '0');
    if (nanos * kNanosPerUsd > kMax) {
      return Invalid(text,
                     "is too large; amounts are at most "
                     "9223372036.854775807 USD");
    }
  }
  nanos *= kNanosPerUsd;
  __int128 scale = kNanosPerUsd;
  for (char c : frac_digits) {
    scale /= 10;
    nanos += (c - '0') * scale;
  }
  if (nanos > kMax) {
    return Invalid(text,
                   "is too large; amounts are at most 9223372036.854775807 "
                   "USD");
  }
  return static_cast<int64_t>(nanos);
}

std::string FormatUsdNanos(int64_t nanos) {
  // The magnitude as unsigned, so that INT64_MIN formats correctly too.
  const uint64_t magnitude = nanos < 0 ? 0 - static_cast<uint64_t>(nanos)
                                       : static_cast<uint64_t>(nanos);
  const uint64_t usd = magnitude / kNanosPerUsd;
  std::string fraction =
      absl::StrFormat("%09d", magnitude % static_cast<uint64_t>(kNanosPerUsd));
  size_t keep = fraction.find_last_not_of('0') + 1;  // npos + 1 == 0
  if (keep < 2) keep = 2;
  fraction.resize(keep);
  return absl::StrCat(nanos < 0 ? "-" : "", usd, ".", fraction);
}

}  // namespace bursar::policy
