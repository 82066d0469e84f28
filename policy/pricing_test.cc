#include "policy/pricing.h"

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/money.h"

namespace bursar::policy {
namespace {

using ::testing::HasSubstr;

// USD per 1M tokens, e.g. Usd("1.50"), through the real parser.
int64_t Usd(const char* text) {
  absl::StatusOr<int64_t> nanos = ParseUsdNanos(text);
  EXPECT_TRUE(nanos.ok()) << nanos.status();
  return nanos.value_or(0);
}

ModelPrice Price(const char* input, const char* cached_input,
                 const char* output) {
  ModelPrice price;
  price.input_nanos_per_mtok = Usd(input);
  price.cached_input_nanos_per_mtok = Usd(cached_input);
  price.output_nanos_per_mtok = Usd(output);
  return price;
}

TokenCounts Tokens(int64_t input, int64_t cached, int64_t output) {
  TokenCounts tokens;
  tokens.input_tokens = input;
  tokens.cached_input_tokens = cached;
  tokens.output_tokens = output;
  return tokens;
}

int64_t CostOrDie(const ModelPrice& price, const TokenCounts& tokens) {
  absl::StatusOr<int64_t> cost = CostNanos(price, tokens);
  EXPECT_TRUE(cost.ok()) << cost.status();
  return cost.value_or(-1);
}

TEST(CostNanosTest, OneTokenAtOneFiftyPerMillionIs1500Nanos) {
  EXPECT_EQ(CostOrDie(Price("1.50", "1.50", "1.50"), Tokens(1, 0, 0)), 1500);
  EXPECT_EQ(CostOrDie(Price("1.50", "1.50", "1.50"), Tokens(0, 0, 1)), 1500);
}

TEST(CostNanosTest, Gpt41Call) {
  // $2.00 in, $8.00 out per 1M: 1,200 * 2000 + 2,000 * 8000 nanos.
  const ModelPrice gpt41 = Price("2.00", "0.50", "8.00");
  EXPECT_EQ(CostOrDie(gpt41, Tokens(1200, 0, 2000)), 18'400'000);
  EXPECT_EQ(FormatUsdNanos(18'400'000), "0.0184");
  // The actual call (docs/pricing.md): 1,000 of the 1,200 input tokens
  // cached, 350 output.
  EXPECT_EQ(CostOrDie(gpt41, Tokens(1200, 1000, 350)), 3'700'000);
}

TEST(CostNanosTest, SubNanoPricesPerTokenAreExact) {
  // gpt-4o-mini: $0.15 in, $0.075 cached input per 1M.
  const ModelPrice mini = Price("0.15", "0.075", "0.60");
  EXPECT_EQ(CostOrDie(mini, Tokens(1, 0, 0)), 150);
  EXPECT_EQ(CostOrDie(mini, Tokens(1, 1, 0)), 75);
  EXPECT_EQ(CostOrDie(mini, Tokens(0, 0, 1)), 600);
}

TEST(CostNanosTest, FractionOfANanoRoundsUpOnceForTheWholeCall) {
  // $0.0000015 per 1M tokens is 0.0015 nanos per token.
  const ModelPrice tiny = Price("0.0000015", "0.0000015", "0.0000015");
  EXPECT_EQ(CostOrDie(tiny, Tokens(1, 0, 0)), 1);     // 0.0015 -> 1
  EXPECT_EQ(CostOrDie(tiny, Tokens(1000, 0, 0)), 2);  // 1.5 -> 2
  // 2000 * 0.0015 = 3 exactly: no rounding.
  EXPECT_EQ(CostOrDie(tiny, Tokens(1000, 0, 1000)), 3);
  // Rounding once: three parts of 0.5 nanos each make 2 (1.5 rounded up),
  // not 3 (each part rounded up).
  const ModelPrice half = Price("0.0005", "0.0005", "0.0005");
  EXPECT_EQ(CostOrDie(half, Tokens(2, 1, 1)), 2);
  // $0.0031 per 1M is 3.1 nanos per token: 3 tokens = 9.3 -> 10.
  EXPECT_EQ(CostOrDie(Price("0.0031", "0.0031", "0.0031"), Tokens(0, 0, 3)),
            10);
  // gemini-2.5-pro cached input, $0.31 per 1M: 310 nanos per token, exact.
  EXPECT_EQ(CostOrDie(Price("1.25", "0.31", "10.00"), Tokens(3, 3, 0)), 930);
}

TEST(CostNanosTest, CachedInputIsChargedAtTheCachedPrice) {
  // claude-sonnet-4: $3.00 in, $0.30 cached read, $15.00 out per 1M.
  const ModelPrice sonnet = Price("3.00", "0.30", "15.00");
  // 10,000 input of which 8,000 cached, 500 output:
  //   2,000 * 3000 + 8,000 * 300 + 500 * 15000 = 6,000,000 + 2,400,000 +
  //   7,500,000.
  EXPECT_EQ(CostOrDie(sonnet, Tokens(10'000, 8'000, 500)), 15'900'000);
  // All input cached.
  EXPECT_EQ(CostOrDie(sonnet, Tokens(1'000'000, 1'000'000, 0)), Usd("0.30"));
  // Without the cache the same call costs more.
  EXPECT_EQ(CostOrDie(sonnet, Tokens(10'000, 0, 500)), 37'500'000);
}

TEST(CostNanosTest, ZeroPriceAndZeroTokens) {
  EXPECT_EQ(CostOrDie(Price("0", "0", "0"), Tokens(1000, 10, 1000)), 0);
  EXPECT_EQ(CostOrDie(Price("2.00", "0.50", "8.00"), Tokens(0, 0, 0)), 0);
}

TEST(CostNanosTest, LargestCallAtRealPricesFits) {
  // claude-opus-4 output, 1e8 tokens: 1e8 * 75,000 nanos = 7,500 USD.
  const ModelPrice opus = Price("15.00", "1.50", "75.00");
  EXPECT_EQ(CostOrDie(opus, Tokens(kMaxTokensPerCall, kMaxTokensPerCall,
                                   kMaxTokensPerCall)),
            Usd("7650"));
}

TEST(CostNanosTest, CostAboveInt64IsOutOfRange) {
  ModelPrice huge;
  huge.output_nanos_per_mtok = std::numeric_limits<int64_t>::max();
  absl::StatusOr<int64_t> cost = CostNanos(huge, Tokens(0, 0, 2'000'000));
  EXPECT_EQ(cost.status().code(), absl::StatusCode::kOutOfRange);
  // 1M tokens at the largest price is exactly the largest amount.
  EXPECT_EQ(CostOrDie(huge, Tokens(0, 0, 1'000'000)),
            std::numeric_limits<int64_t>::max());
  // One more token overflows.
  EXPECT_EQ(CostNanos(huge, Tokens(0, 0, 1'000'001)).status().code(),
            absl::StatusCode::kOutOfRange);
  // Every kind at the largest price and count still does not wrap around.
  ModelPrice all_huge = huge;
  all_huge.input_nanos_per_mtok = all_huge.cached_input_nanos_per_mtok =
      std::numeric_limits<int64_t>::max();
  EXPECT_EQ(CostNanos(all_huge, Tokens(kMaxTokensPerCall, 1, kMaxTokensPerCall))
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
}

TEST(CostNanosTest, InvalidCountsNameTheField) {
  const ModelPrice price = Price("2.00", "0.50", "8.00");
  struct Case {
    TokenCounts tokens;
    const char* field;
  };
  for (const Case& c : {
           Case{Tokens(-1, 0, 0), "input_tokens"},
           Case{Tokens(0, -1, 0), "cached_input_tokens"},
           Case{Tokens(0, 0, -1), "output_tokens"},
           Case{Tokens(kMaxTokensPerCall + 1, 0, 0), "input_tokens"},
           Case{Tokens(0, 0, kMaxTokensPerCall + 1), "output_tokens"},
           Case{Tokens(10, 11, 0), "cached_input_tokens: must not exceed"},
       }) {
    absl::StatusOr<int64_t> cost = CostNanos(price, c.tokens);
    EXPECT_EQ(cost.status().code(), absl::StatusCode::kInvalidArgument)
        << c.field;
    EXPECT_THAT(std::string(cost.status().message()), HasSubstr(c.field));
  }
  EXPECT_EQ(CostOrDie(price, Tokens(kMaxTokensPerCall, 0, 0)),
            kMaxTokensPerCall * 2000);
}

TEST(CostNanosTest, NegativePriceIsRefused) {
  ModelPrice price;
  price.output_nanos_per_mtok = -1;
  EXPECT_EQ(CostNanos(price, Tokens(0, 0, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bursar::policy
