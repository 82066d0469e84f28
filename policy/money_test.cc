#include "policy/money.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::policy {
namespace {

using ::testing::HasSubstr;

int64_t ParseOrDie(const std::string& text) {
  absl::StatusOr<int64_t> nanos = ParseUsdNanos(text);
  EXPECT_TRUE(nanos.ok()) << text << ": " << nanos.status();
  return nanos.value_or(-1);
}

void ExpectRejected(const std::string& text, const std::string& why) {
  absl::StatusOr<int64_t> nanos = ParseUsdNanos(text);
  ASSERT_FALSE(nanos.ok()) << "accepted \"" << text << "\" as " << *nanos;
  EXPECT_EQ(nanos.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nanos.status().message()), HasSubstr(why)) << text;
}

TEST(ParseUsdNanosTest, WholeAndDecimalAmounts) {
  EXPECT_EQ(ParseOrDie("0"), 0);
  EXPECT_EQ(ParseOrDie("5"), 5'000'000'000);
  EXPECT_EQ(ParseOrDie("$5"), 5'000'000'000);
  EXPECT_EQ(ParseOrDie("50000"), 50'000 * kNanosPerUsd);
  EXPECT_EQ(ParseOrDie("50000.00"), 50'000 * kNanosPerUsd);
  EXPECT_EQ(ParseOrDie("1.50"), 1'500'000'000);
  EXPECT_EQ(ParseOrDie("0.0184"), 18'400'000);
  EXPECT_EQ(ParseOrDie("007.5"), 7'500'000'000);
}

TEST(ParseUsdNanosTest, SmallestUnitsAreExact) {
  EXPECT_EQ(ParseOrDie("0.0000015"), 1500);
  EXPECT_EQ(ParseOrDie("0.000000001"), 1);
  EXPECT_EQ(ParseOrDie("0.075"), 75'000'000);
  // Digits beyond the ninth are accepted when they are zeros.
  EXPECT_EQ(ParseOrDie("1.0000000010"), 1'000'000'001);
  EXPECT_EQ(ParseOrDie("2.000000000000"), 2'000'000'000);
}

TEST(ParseUsdNanosTest, LargestAmount) {
  EXPECT_EQ(ParseOrDie("9223372036.854775807"),
            std::numeric_limits<int64_t>::max());
  ExpectRejected("9223372036.854775808", "too large");
  ExpectRejected("9223372037", "too large");
  ExpectRejected("99999999999999999999999999999", "too large");
}

TEST(ParseUsdNanosTest, RejectsWhatItCannotRepresentExactly) {
  ExpectRejected("", "empty amount");
  ExpectRejected("$", "no digits");
  ExpectRejected(".", "no digits");
  ExpectRejected(".5", "\"0.5\"");
  ExpectRejected("5.", "no digit after the decimal point");
  ExpectRejected("-1", "has a sign");
  ExpectRejected("+1", "has a sign");
  ExpectRejected("$-1", "has a sign");
  ExpectRejected("1e3", "exponent");
  ExpectRejected("1E3", "exponent");
  ExpectRejected("1,000", "thousands separator");
  ExpectRejected("1_000", "thousands separator");
  ExpectRejected("1.2.3", "more than one decimal point");
  ExpectRejected("1'000", "thousands separator");
  ExpectRejected(" 1", "has a space");
  ExpectRejected("1 000", "has a space");
  ExpectRejected("1 USD", "has a space");
  ExpectRejected("USD1", "unexpected character 'U'");
  ExpectRejected("$$1", "unexpected character '$'");
}

TEST(ParseUsdNanosTest, TooManyFractionalDigitsNamesTheLimit) {
  absl::StatusOr<int64_t> nanos = ParseUsdNanos("0.0000000001");
  ASSERT_FALSE(nanos.ok());
  EXPECT_EQ(nanos.status().message(),
            "\"0.0000000001\" has 10 fractional digits; at most 9 (nano-USD) "
            "are representable");
  ExpectRejected("1.0000000001", "10 fractional digits");
}

TEST(FormatUsdNanosTest, DocumentedExamples) {
  EXPECT_EQ(FormatUsdNanos(18'400'000), "0.0184");
  EXPECT_EQ(FormatUsdNanos(50'000'000'000), "50.00");
  EXPECT_EQ(FormatUsdNanos(-1500), "-0.0000015");
  EXPECT_EQ(FormatUsdNanos(0), "0.00");
  EXPECT_EQ(FormatUsdNanos(1), "0.000000001");
  EXPECT_EQ(FormatUsdNanos(1'500'000'000), "1.50");
  EXPECT_EQ(FormatUsdNanos(1'230'000'000), "1.23");
  EXPECT_EQ(FormatUsdNanos(1'234'000'000), "1.234");
  EXPECT_EQ(FormatUsdNanos(std::numeric_limits<int64_t>::max()),
            "9223372036.854775807");
  EXPECT_EQ(FormatUsdNanos(std::numeric_limits<int64_t>::min()),
            "-9223372036.854775808");
}

TEST(FormatUsdNanosTest, RoundTripsThroughParse) {
  for (int64_t nanos :
       {int64_t{0}, int64_t{1}, int64_t{9}, int64_t{10}, int64_t{1500},
        int64_t{75'000'000}, int64_t{999'999'999}, int64_t{1'000'000'000},
        int64_t{1'000'000'001}, int64_t{18'400'000}, int64_t{50'000'000'000},
        int64_t{123'456'789'012'345}, std::numeric_limits<int64_t>::max()}) {
    const std::string text = FormatUsdNanos(nanos);
    EXPECT_EQ(ParseOrDie(text), nanos) << text;
  }
}

}  // namespace
}  // namespace bursar::policy
