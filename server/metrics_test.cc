#include "server/metrics.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsRegistryTest, RendersCounterWithHelpAndType) {
  MetricsRegistry registry;
  absl::StatusOr<Counter*> counter =
      registry.AddCounter("bursar_things_total", "Things.\nSecond \\ line.");
  ASSERT_TRUE(counter.ok()) << counter.status();
  (*counter)->Increment();
  (*counter)->Increment(41);
  EXPECT_EQ(registry.Render(),
            "# HELP bursar_things_total Things.\\nSecond \\\\ line.\n"
            "# TYPE bursar_things_total counter\n"
            "bursar_things_total 42\n");
}

TEST(MetricsRegistryTest, RejectsBadAndDuplicateNames) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.AddCounter("1bad", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(registry.AddCounter("bad-name", "").status().message(),
              HasSubstr("[a-zA-Z_:][a-zA-Z0-9_:]*"));
  ASSERT_TRUE(registry.AddCounter("ok_total", "").ok());
  EXPECT_EQ(registry.AddCounter("ok_total", "").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry
                .AddGaugeCallback("ok_total", "",
                                  [] { return std::vector<MetricSample>(); })
                .code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      registry.AddCounterFamily("fam_total", "", "__verdict", {"a"}, "rule", 4)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogram("h_seconds", "", {0.1, 0.1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddGaugeCallback("g", "", nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsRegistryTest, FamilyOverflowsIntoOther) {
  MetricsRegistry registry;
  absl::StatusOr<CounterFamily*> family = registry.AddCounterFamily(
      "checks_total", "Checks.", "verdict", {"allow", "deny"}, "rule", 2);
  ASSERT_TRUE(family.ok()) << family.status();
  (*family)->Increment(0, "a");
  (*family)->Increment(0, "a");
  (*family)->Increment(1, "b");
  (*family)->Increment(1, "c");  // the table holds two names: "other"
  (*family)->Increment(0, "d");
  (*family)->Increment(1, "a");
  (*family)->Increment(7, "a");  // no such verdict: ignored
  (*family)->Increment(0, std::string(CounterFamily::kMaxOpenValueBytes + 1,
                                      'x'));  // too long: "other"
  const std::string text = registry.Render();
  EXPECT_THAT(text,
              HasSubstr("checks_total{verdict=\"allow\",rule=\"a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("checks_total{verdict=\"deny\",rule=\"a\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("checks_total{verdict=\"deny\",rule=\"b\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("checks_total{verdict=\"allow\",rule=\"other\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("checks_total{verdict=\"deny\",rule=\"other\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("rule=\"c\"")));
  EXPECT_THAT(text, Not(HasSubstr("rule=\"d\"")));
}

TEST(MetricsRegistryTest, FamilyCountsExactlyUnderConcurrency) {
  MetricsRegistry registry;
  CounterFamily* family =
      *registry.AddCounterFamily("c_total", "", "v", {"x"}, "rule", 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([family] {
      for (int i = 0; i < 10000; ++i) {
        family->Increment(0, absl::StrCat("rule", i % 8));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  uint64_t total = 0;
  std::vector<CounterFamily::Series> series = family->Snapshot();
  EXPECT_EQ(series.size(), 8u);  // every name claimed exactly one slot
  for (const CounterFamily::Series& s : series) {
    EXPECT_EQ(s.count, 5000u) << s.open_value;
    total += s.count;
  }
  EXPECT_EQ(total, 40000u);
}

TEST(MetricsRegistryTest, HistogramIsCumulativeWithInf) {
  MetricsRegistry registry;
  Histogram* h = *registry.AddHistogram("d_seconds", "Latency.", {0.001, 0.01});
  h->ObserveNanos(500'000);        // 0.5 ms
  h->ObserveNanos(1'000'000);      // exactly on the bound: counts in le=0.001
  h->ObserveNanos(5'000'000);      // 5 ms
  h->ObserveNanos(2'000'000'000);  // 2 s: +Inf only
  EXPECT_EQ(registry.Render(),
            "# HELP d_seconds Latency.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{le=\"0.001\"} 2\n"
            "d_seconds_bucket{le=\"0.01\"} 3\n"
            "d_seconds_bucket{le=\"+Inf\"} 4\n"
            "d_seconds_sum 2.0065\n"
            "d_seconds_count 4\n");
}

TEST(MetricsRegistryTest, GaugeCallbackRunsAtScrapeTimeAndEscapesLabels) {
  MetricsRegistry registry;
  int scrapes = 0;
  ASSERT_TRUE(registry
                  .AddGaugeCallback("pool_saturation_ratio", "Pool use.",
                                    [&scrapes] {
                                      ++scrapes;
                                      return std::vector<MetricSample>{
                                          {"", {{"pool", "a\"b\\c\nd"}}, 0.25},
                                          {"",
                                           {{"pool", "e"}},
                                           static_cast<double>(scrapes)}};
                                    })
                  .ok());
  EXPECT_EQ(scrapes, 0);
  const std::string text = registry.Render();
  EXPECT_EQ(text,
            "# HELP pool_saturation_ratio Pool use.\n"
            "# TYPE pool_saturation_ratio gauge\n"
            "pool_saturation_ratio{pool=\"a\\\"b\\\\c\\nd\"} 0.25\n"
            "pool_saturation_ratio{pool=\"e\"} 1\n");
  EXPECT_THAT(registry.Render(), HasSubstr("{pool=\"e\"} 2\n"));
}

TEST(FormatSampleValueTest, ShortestRoundTrip) {
  EXPECT_EQ(FormatSampleValue(3), "3");
  EXPECT_EQ(FormatSampleValue(0.1), "0.1");
  EXPECT_EQ(FormatSampleValue(1e-5), "1e-05");
  EXPECT_EQ(FormatSampleValue(1.0 / 3), "0.33333333333333331");
  EXPECT_EQ(FormatSampleValue(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace bursar::server
