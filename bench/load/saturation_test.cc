#include "bench/load/saturation.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::load {
namespace {

using ::testing::ElementsAre;

// A server that sustains every rate up to its capacity, and records what
// it was asked to run.
struct ModelServer {
  double capacity = 0;
  // Runs at rates above this, in the confirming repeats only, fail: a rate
  // the ramp saw hold once but which does not hold when run again.
  double repeats_hold_up_to = 1e18;
  std::vector<double> rates;
  std::vector<std::string> labels;

  RunAtRate Run() {
    return [this](double rate, absl::string_view label) {
      rates.push_back(rate);
      labels.emplace_back(label);
      if (label.substr(0, 10) == "saturation") {
        return rate <= capacity && rate <= repeats_hold_up_to;
      }
      return rate <= capacity;
    };
  }
};

TEST(FindSaturationTest, RampsRefinesAndConfirmsBelowTheCapacity) {
  ModelServer server{.capacity = 5000};
  const SaturationResult found = FindSaturation(
      {.start_rate = 1000, .ramp_factor = 1.5, .refine_steps = 3, .repeats = 3},
      server.Run());
  // 1000 × 1.5^3 = 3375 holds, 5062.5 fails; three bisections close in.
  EXPECT_LE(found.rate, 5000);
  EXPECT_GT(found.rate, 5000 / std::pow(1.5, 1.0 / 8));
  EXPECT_GT(found.next_tried, 5000);
  EXPECT_EQ(found.sustained_repeats, 3);
  ASSERT_EQ(found.repeat_runs.size(), 3u);
  for (int i : found.repeat_runs) {
    EXPECT_EQ(server.rates[i], found.rate);
    EXPECT_EQ(server.labels[i].substr(0, 10), "saturation");
  }
  // The failing step was retried once before it counted as failed.
  EXPECT_EQ(server.labels[4], "step 5");
  EXPECT_EQ(server.labels[5], "step 5 (retry)");
}

TEST(FindSaturationTest, StepsDownUntilMostRepeatsHold) {
  ModelServer server{.capacity = 5000, .repeats_hold_up_to = 4000};
  const SaturationResult found = FindSaturation(
      {.start_rate = 1000, .ramp_factor = 1.5, .refine_steps = 3, .repeats = 3},
      server.Run());
  EXPECT_LE(found.rate, 4000);
  EXPECT_GT(found.rate, 4000 / std::sqrt(1.5));
  EXPECT_EQ(found.sustained_repeats, 3);
  // The reported figures are those of the last round only.
  ASSERT_EQ(found.repeat_runs.size(), 3u);
  EXPECT_EQ(found.repeat_runs.back() + 1,
            static_cast<int>(server.rates.size()));
  for (int i : found.repeat_runs) EXPECT_EQ(server.rates[i], found.rate);
  // The rate it stepped down from is the one that did not hold.
  EXPECT_GT(found.next_tried, 4000);
  EXPECT_LE(found.next_tried, 5000);
}

TEST(FindSaturationTest, GivesUpSteppingDownAfterTheBound) {
  ModelServer server{.capacity = 5000, .repeats_hold_up_to = 0};
  const SaturationResult found = FindSaturation({.start_rate = 1000,
                                                 .ramp_factor = 1.5,
                                                 .refine_steps = 0,
                                                 .repeats = 1,
                                                 .max_step_downs = 2},
                                                server.Run());
  // 3375 held in the ramp; its repeat and two step-downs failed.
  EXPECT_EQ(found.sustained_repeats, 0);
  EXPECT_DOUBLE_EQ(found.rate, 3375 / 1.5);
  std::vector<std::string> repeats;
  for (const std::string& label : server.labels) {
    if (label.substr(0, 10) == "saturation") repeats.push_back(label);
  }
  EXPECT_THAT(repeats, ElementsAre("saturation 1/1", "saturation 1/1",
                                   "saturation 1/1"));
}

TEST(FindSaturationTest, HalvesTheStartRateWhenEvenItFails) {
  ModelServer server{.capacity = 300};
  const SaturationResult found = FindSaturation(
      {.start_rate = 1000, .ramp_factor = 1.5, .refine_steps = 0, .repeats = 1},
      server.Run());
  EXPECT_DOUBLE_EQ(found.rate, 250);
  EXPECT_DOUBLE_EQ(found.next_tried, 500);
}

TEST(FindSaturationTest, NothingHoldsReportsZero) {
  ModelServer server{.capacity = 1};
  const SaturationResult found = FindSaturation(
      {.start_rate = 1000, .ramp_factor = 1.5, .refine_steps = 3, .repeats = 3},
      server.Run());
  EXPECT_EQ(found.rate, 0);
  EXPECT_TRUE(found.repeat_runs.empty());
}

}  // namespace
}  // namespace bursar::load
