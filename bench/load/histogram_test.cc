#include "bench/load/histogram.h"

#include <cmath>
#include <cstdint>
#include <random>

#include "gtest/gtest.h"

namespace bursar::load {
namespace {

constexpr int64_t kHour = int64_t{3600} * 1'000'000'000;

TEST(HistogramTest, EmptyReportsZeros) {
  Histogram h(kHour, 3);
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.ValueAtPercentile(99), 0);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h(kHour, 3);
  for (int64_t v = 0; v < 2000; ++v) {
    EXPECT_EQ(h.LowestEquivalent(v), v);
    EXPECT_EQ(h.HighestEquivalent(v), v);
  }
  h.Record(7);
  h.Record(1999);
  EXPECT_EQ(h.ValueAtPercentile(50), 7);
  EXPECT_EQ(h.ValueAtPercentile(100), 1999);
}

TEST(HistogramTest, RelativeErrorStaysWithinTheSignificantDigits) {
  for (int digits : {1, 2, 3}) {
    Histogram h(kHour, digits);
    const double bound = std::pow(10.0, -digits);
    std::mt19937_64 rng(digits);
    for (int i = 0; i < 100'000; ++i) {
      // Log-uniform over 1 ns .. 1 h.
      const double exponent = std::uniform_real_distribution<>(0, 12.5)(rng);
      const int64_t v = static_cast<int64_t>(std::pow(10.0, exponent));
      const int64_t lo = h.LowestEquivalent(v);
      const int64_t hi = h.HighestEquivalent(v);
      ASSERT_LE(lo, v);
      ASSERT_GE(hi, v);
      ASSERT_LE(static_cast<double>(hi - lo), bound * static_cast<double>(v))
          << "digits " << digits << " value " << v;
    }
  }
}

TEST(HistogramTest, BucketsTileTheRangeWithoutGaps) {
  Histogram h(int64_t{1} << 30, 2);
  int64_t v = 0;
  while (v <= (int64_t{1} << 30)) {
    const int64_t hi = h.HighestEquivalent(v);
    ASSERT_EQ(h.LowestEquivalent(v), v);
    ASSERT_GE(hi, v);
    v = hi + 1;
  }
}

TEST(HistogramTest, MemoryIsFixedAtConstruction) {
  Histogram h(kHour, 3);
  const int buckets = h.bucket_count();
  EXPECT_LT(buckets, 40'000);  // about 300 KiB of counts for 1 ns .. 1 h
  for (int64_t v = 1; v < kHour; v *= 3) h.Record(v);
  h.Record(10 * kHour);  // above the range: counted in the top bucket
  EXPECT_EQ(h.bucket_count(), buckets);
  EXPECT_EQ(h.max(), 10 * kHour);
  EXPECT_EQ(h.ValueAtPercentile(100), 10 * kHour);
}

TEST(HistogramTest, PercentilesOfAUniformSequence) {
  Histogram h(kHour, 3);
  // 1..100,000 µs in nanoseconds.
  for (int64_t us = 1; us <= 100'000; ++us) h.Record(us * 1000);
  EXPECT_EQ(h.count(), 100'000);
  EXPECT_EQ(h.min(), 1000);
  EXPECT_EQ(h.max(), 100'000'000);
  EXPECT_NEAR(h.mean(), 50'000'500.0, 1.0);
  struct Case {
    double percentile;
    int64_t expected;
  };
  for (const Case& c :
       {Case{50, 50'000'000}, Case{90, 90'000'000}, Case{99, 99'000'000},
        Case{99.9, 99'900'000}, Case{100, 100'000'000}}) {
    const int64_t got = h.ValueAtPercentile(c.percentile);
    EXPECT_GE(got, c.expected) << c.percentile;
    EXPECT_LE(static_cast<double>(got), c.expected * 1.001) << c.percentile;
  }
}

TEST(HistogramTest, ATailOfOneSlowCallShowsAtP999) {
  Histogram h(kHour, 3);
  h.Record(200'000, 999);  // 200 µs
  h.Record(50'000'000);    // one 50 ms stall
  EXPECT_LE(h.ValueAtPercentile(99.9), 200'200);
  EXPECT_GE(h.ValueAtPercentile(99.95), int64_t{50'000'000} * 999 / 1000);
  EXPECT_EQ(h.max(), 50'000'000);
}

TEST(HistogramTest, MergeEqualsRecordingEverythingInOne) {
  Histogram a(kHour, 3), b(kHour, 3), all(kHour, 3);
  std::mt19937_64 rng(7);
  std::exponential_distribution<> latency(1.0 / 300'000);
  for (int i = 0; i < 20'000; ++i) {
    const int64_t v = static_cast<int64_t>(latency(rng));
    (i % 2 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(a.ValueAtPercentile(p), all.ValueAtPercentile(p)) << p;
  }
  a.Reset();
  EXPECT_EQ(a.count(), 0);
  EXPECT_EQ(a.ValueAtPercentile(50), 0);
}

TEST(HistogramTest, NegativeValuesCountAsZero) {
  Histogram h(1000, 2);
  h.Record(-5);
  EXPECT_EQ(h.count(), 1);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.ValueAtPercentile(50), 0);
}

}  // namespace
}  // namespace bursar::load
