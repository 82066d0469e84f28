// ShadowStats (counts, the bounded ring of samples) and ComparePlans.

#include "server/shadow_stats.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

ShadowSample Sample(const std::string& request_id, uint32_t differences) {
  ShadowSample sample;
  sample.request_id = request_id;
  sample.differences = differences;
  return sample;
}

std::vector<std::string> Ids(const ShadowSnapshot& snapshot) {
  std::vector<std::string> ids;
  for (const ShadowSample& s : snapshot.samples) ids.push_back(s.request_id);
  return ids;
}

policy::CallPlan Allow(const std::string& model, int64_t max_output_tokens,
                       int64_t estimate_nanos) {
  policy::CallPlan plan;
  plan.model = model;
  plan.max_output_tokens = max_output_tokens;
  plan.estimated_cost_nanos = estimate_nanos;
  return plan;
}

policy::CallPlan Deny(const std::string& rule) {
  policy::CallPlan plan = Allow("gpt-4.1", 100, 1000);
  plan.allowed = false;
  plan.deny_rule = rule;
  plan.deny_message = "no";
  return plan;
}

TEST(ShadowStatsTest, CountsComparedDifferingAndEachKind) {
  ShadowStats stats(10);
  stats.RecordSame();
  stats.RecordSame();
  stats.RecordDifference(Sample("a", kShadowVerdict));
  stats.RecordDifference(Sample("b", kShadowModel | kShadowEstimatedCost));
  stats.RecordDifference(Sample("c", kShadowEstimatedCost));
  const ShadowSnapshot snapshot = stats.Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 5);
  EXPECT_EQ(snapshot.counts.differing, 3);
  EXPECT_THAT(snapshot.counts.by_kind, ElementsAre(1, 0, 1, 0, 2, 0));
  EXPECT_THAT(Ids(snapshot), ElementsAre("c", "b", "a"));  // newest first
}

TEST(ShadowStatsTest, RingKeepsOnlyTheLatestSamples) {
  ShadowStats stats(3);
  EXPECT_EQ(stats.sample_capacity(), 3u);
  for (int i = 1; i <= 7; ++i) {
    stats.RecordDifference(Sample(absl::StrCat("r", i), kShadowModel));
  }
  ShadowSnapshot snapshot = stats.Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 7);
  EXPECT_EQ(snapshot.counts.differing, 7);
  EXPECT_THAT(Ids(snapshot), ElementsAre("r7", "r6", "r5"));
  // A limit keeps the newest.
  EXPECT_THAT(Ids(stats.Snapshot(2)), ElementsAre("r7", "r6"));
  EXPECT_THAT(Ids(stats.Snapshot(50)), ElementsAre("r7", "r6", "r5"));
}

TEST(ShadowStatsTest, EmptyStatsHaveNothing) {
  ShadowStats stats;
  EXPECT_EQ(stats.sample_capacity(), kShadowSampleCapacity);
  const ShadowSnapshot snapshot = stats.Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 0);
  EXPECT_EQ(snapshot.counts.differing, 0);
  EXPECT_THAT(snapshot.samples, IsEmpty());
}

TEST(ShadowStatsTest, ConcurrentRecordsAreAllCounted) {
  ShadowStats stats(16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&stats, t] {
      for (int i = 0; i < 1000; ++i) {
        if (i % 2 == 0) {
          stats.RecordSame();
        } else {
          stats.RecordDifference(
              Sample(absl::StrCat(t, "-", i), kShadowMaxOutputTokens));
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const ShadowSnapshot snapshot = stats.Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 4000);
  EXPECT_EQ(snapshot.counts.differing, 2000);
  EXPECT_EQ(snapshot.counts.by_kind[3], 2000);
  EXPECT_EQ(snapshot.samples.size(), 16u);
}

TEST(ComparePlansTest, SamePlansDoNotDiffer) {
  EXPECT_EQ(ComparePlans(Allow("m", 10, 5), Allow("m", 10, 5)), 0u);
  // Two denials by the same rule are the same answer, whatever the plan
  // around them.
  policy::CallPlan other = Deny("deny:x");
  other.model = "other";
  EXPECT_EQ(ComparePlans(Deny("deny:x"), other), 0u);
  // Two errors with the same code too.
  EXPECT_EQ(ComparePlans(absl::InvalidArgumentError("a"),
                         absl::InvalidArgumentError("b")),
            0u);
}

TEST(ComparePlansTest, NamesEveryKindOfDifference) {
  EXPECT_EQ(ComparePlans(Allow("m", 10, 5), Deny("deny:x")), kShadowVerdict);
  EXPECT_EQ(ComparePlans(Deny("deny:x"), Allow("m", 10, 5)), kShadowVerdict);
  EXPECT_EQ(ComparePlans(Deny("deny:x"), Deny("deny:y")), kShadowDenyRule);
  EXPECT_EQ(ComparePlans(Allow("m", 10, 5), Allow("n", 10, 3)),
            kShadowModel | kShadowEstimatedCost);
  EXPECT_EQ(ComparePlans(Allow("m", 10, 5), Allow("m", 8, 5)),
            kShadowMaxOutputTokens);
  EXPECT_EQ(ComparePlans(Allow("m", 10, 5), Allow("m", 10, 6)),
            kShadowEstimatedCost);
  EXPECT_EQ(ComparePlans(Allow("m", 10, 5), absl::InvalidArgumentError("x")),
            kShadowError);
  EXPECT_EQ(ComparePlans(absl::InvalidArgumentError("x"), Allow("m", 10, 5)),
            kShadowError);
  EXPECT_EQ(
      ComparePlans(absl::InvalidArgumentError("x"), absl::InternalError("x")),
      kShadowError);
}

TEST(ComparePlansTest, KindNamesAreTheApiNames) {
  std::vector<std::string> names;
  for (int kind = 0; kind < kShadowDifferenceKinds; ++kind) {
    names.emplace_back(ShadowDifferenceName(1u << kind));
  }
  EXPECT_THAT(names,
              ElementsAre("verdict", "deny_rule", "model", "max_output_tokens",
                          "estimated_cost", "error"));
}

TEST(SummarizePlanTest, PlanOrError) {
  const ShadowPlanSummary denied = SummarizePlan(Deny("deny:x"));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.deny_rule, "deny:x");
  EXPECT_EQ(denied.error, "");
  const ShadowPlanSummary error =
      SummarizePlan(absl::InvalidArgumentError("model: gpt-9 is unknown"));
  EXPECT_EQ(error.error, "INVALID_ARGUMENT: model: gpt-9 is unknown");
}

}  // namespace
}  // namespace bursar::server
