#ifndef BURSAR_POLICY_MONEY_H_
#define BURSAR_POLICY_MONEY_H_

// Exact money. Inside Bursar and on the wire every amount is an int64 count
// of nano-USD (1e-9 USD); humans write decimal strings. No floating point.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bursar::policy {

inline constexpr int64_t kNanosPerUsd = 1'000'000'000;

// Parses a non-negative decimal USD amount ("50000", "50000.00",
// "0.0000015", an optional leading "$") into nanos. Rejects, with a message
// that says what to write instead: empty text, signs, exponents, thousands
// separators, more than nine fractional digits unless the extra ones are
// zeros, and amounts above int64 nanos (about 9.2 billion USD).
absl::StatusOr<int64_t> ParseUsdNanos(absl::string_view text);

// Formats nanos as a decimal USD string with at least two fractional digits
// and no trailing zeros beyond them: 18400000 -> "0.0184", 5e10 -> "50.00",
// -1500 -> "-0.0000015". Round-trips through ParseUsdNanos for n >= 0.
std::string FormatUsdNanos(int64_t nanos);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_MONEY_H_
