#ifndef BURSAR_POLICY_PRICING_H_
#define BURSAR_POLICY_PRICING_H_

// Prices of models and the exact cost of a call.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace bursar::policy {

// USD per one million tokens of each kind, held as nanos per million tokens
// (so "$1.50 per 1M" is 1'500'000'000). Prices are >= 0.
struct ModelPrice {
  int64_t input_nanos_per_mtok = 0;
  int64_t cached_input_nanos_per_mtok = 0;
  int64_t output_nanos_per_mtok = 0;
  // The provider that serves the model, e.g. "openai"; may be empty.
  std::string provider;
};

// Tokens of each kind. cached_input_tokens is the part of input_tokens
// served from the prompt cache.
struct TokenCounts {
  int64_t input_tokens = 0;
  int64_t cached_input_tokens = 0;
  int64_t output_tokens = 0;
};

// The largest token count of any kind that a single call may carry.
inline constexpr int64_t kMaxTokensPerCall = 100'000'000;

// The exact cost of `tokens` at `price`, in nanos:
//   ceil(( (input - cached) * input_price
//          + cached * cached_input_price
//          + output * output_price ) / 1e6)
// computed in 128-bit integers, so the only rounding is one final round-up
// of less than one nano per call (budget safety first). Errors:
// INVALID_ARGUMENT for negative counts, cached > input, counts above
// kMaxTokensPerCall; OUT_OF_RANGE if the cost exceeds int64 nanos.
absl::StatusOr<int64_t> CostNanos(const ModelPrice& price,
                                  const TokenCounts& tokens);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_PRICING_H_
