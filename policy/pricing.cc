#include "policy/pricing.h"

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "policy/money.h"

namespace bursar::policy {
namespace {

constexpr int64_t kTokensPerMillion = 1'000'000;

absl::Status CheckCount(absl::string_view field, int64_t count) {
  if (count < 0 || count > kMaxTokensPerCall) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be between 0 and ", kMaxTokensPerCall, ", got ", count));
  }
  return absl::OkStatus();
}

absl::Status CheckPrice(absl::string_view field, int64_t nanos_per_mtok) {
  if (nanos_per_mtok < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": prices must not be negative, got ",
                     FormatUsdNanos(nanos_per_mtok), " USD per 1M tokens"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> CostNanos(const ModelPrice& price,
                                  const TokenCounts& tokens) {
  if (absl::Status s = CheckCount("input_tokens", tokens.input_tokens);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckCount("cached_input_tokens", tokens.cached_input_tokens);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckCount("output_tokens", tokens.output_tokens);
      !s.ok()) {
    return s;
  }
  if (tokens.cached_input_tokens > tokens.input_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cached_input_tokens: must not exceed input_tokens (",
        tokens.input_tokens, "), got ", tokens.cached_input_tokens));
  }
  // Prices are non-negative by contract; a negative one would make the
  // round-up below round down, so refuse it rather than under-charge.
  if (absl::Status s = CheckPrice("input", price.input_nanos_per_mtok);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckPrice("cached_input", price.cached_input_nanos_per_mtok);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPrice("output", price.output_nanos_per_mtok);
      !s.ok()) {
    return s;
  }

  // Each product is at most 1e8 * 9.3e18 < 1e27 and the sum < 3e27, far
  // inside __int128 (1.7e38): no intermediate can overflow.
  const __int128 uncached = tokens.input_tokens - tokens.cached_input_tokens;
  const __int128 nanos_times_mtok =
      uncached * price.input_nanos_per_mtok +
      static_cast<__int128>(tokens.cached_input_tokens) *
          price.cached_input_nanos_per_mtok +
      static_cast<__int128>(tokens.output_tokens) * price.output_nanos_per_mtok;
  // The single rounding: up, to the next whole nano.
  const __int128 nanos =
      (nanos_times_mtok + kTokensPerMillion - 1) / kTokensPerMillion;
  if (nanos > std::numeric_limits<int64_t>::max()) {
    return absl::OutOfRangeError(absl::StrCat(
        "cost of ", tokens.input_tokens, " input (", tokens.cached_input_tokens,
        " cached) and ", tokens.output_tokens,
        " output tokens exceeds the largest representable amount "
        "(9223372036.854775807 USD)"));
  }
  return static_cast<int64_t>(nanos);
}

}  // namespace bursar::policy
