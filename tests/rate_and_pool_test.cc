// Rate limits and concurrency pools on the real bursard, with the
// policies/provider-limits policy and a fake clock.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Property;

constexpr absl::Duration kTtl = absl::Minutes(2);
// per-user-tpm in policies/provider-limits.
constexpr int64_t kTokensPerMinute = 20'000;

absl::Duration RetryAfter(const v1::CheckResponse& response) {
  return absl::Seconds(response.retry_after().seconds()) +
         absl::Nanoseconds(response.retry_after().nanos());
}

absl::Time ParseRfc3339(const std::string& text) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, text, &t, &error)) << error;
  return t;
}

class RateAndPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"),
                                         Utc(2026, 3, 2, 9, 0, 0));
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.clock_file = clock_->path();
    options.policy_dir =
        std::string(BURSAR_SOURCE_DIR) + "/policies/provider-limits";
    options.extra_flags = {absl::StrCat("--reservation_ttl=",
                                        absl::FormatDuration(kTtl))};
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  v1::CheckResponse Check(const std::string& model, const std::string& user,
                          const std::string& priority = "",
                          int64_t input_tokens = 100,
                          int64_t max_output_tokens = 100) {
    v1::CheckRequest request =
        MakeCheck(model, input_tokens, max_output_tokens, {{"user", user}});
    request.set_priority(priority);
    v1::CheckResponse response;
    const grpc::Status status = server_->Check(request, &response);
    EXPECT_TRUE(status.ok()) << StatusText(status);
    return response;
  }

  void Report(const std::string& reservation_id, v1::Outcome outcome,
              int64_t input_tokens = 100, int64_t output_tokens = 100) {
    v1::ReportRequest request =
        MakeReport(reservation_id, input_tokens, 0, output_tokens);
    request.set_outcome(outcome);
    v1::ReportResponse response;
    const grpc::Status status = server_->Report(request, &response);
    EXPECT_TRUE(status.ok()) << StatusText(status);
  }

  bool Allowed(const v1::CheckResponse& r) {
    return r.verdict() == v1::VERDICT_ALLOW;
  }

  TempDir dir_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
};

// gpt41-slots: 10 slots, the last 3 for `critical`.
TEST_F(RateAndPoolTest, PoolKeepsItsReserveForCritical) {
  std::vector<std::string> standard;
  for (int i = 0; i < 7; ++i) {
    v1::CheckResponse r = Check("gpt-4.1", absl::StrCat("u", i));
    ASSERT_TRUE(Allowed(r)) << i;
    standard.push_back(r.reservation_id());
  }
  v1::CheckResponse refused = Check("gpt-4.1", "u8");
  EXPECT_EQ(refused.verdict(), v1::VERDICT_DENY);
  ASSERT_THAT(refused.reasons(),
              Contains(Property(&v1::Reason::rule, "pool:gpt41-slots")));
  EXPECT_THAT(refused.reasons(0).message(),
              HasSubstr("has 7 of 10 slots in flight; 3 are reserved"));
  EXPECT_FALSE(refused.has_retry_after());
  // The mini model is not in the pool.
  EXPECT_TRUE(Allowed(Check("gpt-4.1-mini", "u8")));

  std::vector<std::string> critical;
  for (int i = 0; i < 3; ++i) {
    v1::CheckResponse r = Check("gpt-4.1", "c", "critical");
    ASSERT_TRUE(Allowed(r)) << i;
    critical.push_back(r.reservation_id());
  }
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "c", "critical")));

  // Report frees a slot; so does a cancellation.
  Report(standard[0], v1::OUTCOME_SUCCESS);
  v1::CheckResponse again = Check("gpt-4.1", "u9");
  ASSERT_TRUE(Allowed(again));
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "u10")));
  Report(again.reservation_id(), v1::OUTCOME_CANCELLED, 0, 0);
  EXPECT_TRUE(Allowed(Check("gpt-4.1", "u10")));
  // A second Report of the same reservation frees nothing more.
  Report(standard[0], v1::OUTCOME_SUCCESS);
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "u11")));
}

TEST_F(RateAndPoolTest, CriticalGetsAllTen) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Allowed(Check("gpt-4.1", "c", "critical"))) << i;
  }
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "c", "critical")));
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "s")));
}

TEST_F(RateAndPoolTest, SlotsSurviveARestartAndComeBackOnExpiry) {
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(Allowed(Check("gpt-4.1", "u")));
  ASSERT_TRUE(server_->CrashAndRestart());
  // The seven calls are still in flight.
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "u")));
  // A gateway that crashed never reports: the slots come back with the TTL.
  clock_->Advance(kTtl + absl::Seconds(1));
  bool freed = false;
  for (int i = 0; i < 100 && !freed; ++i) {
    absl::SleepFor(absl::Milliseconds(100));  // the expirer runs every second
    v1::CheckRequest probe = MakeCheck("gpt-4.1", 100, 100, {{"user", "u"}});
    probe.set_dry_run(true);
    v1::CheckResponse response;
    ASSERT_TRUE(server_->Check(probe, &response).ok());
    freed = Allowed(response);
  }
  EXPECT_TRUE(freed);
  for (int i = 0; i < 7; ++i) EXPECT_TRUE(Allowed(Check("gpt-4.1", "u"))) << i;
  EXPECT_FALSE(Allowed(Check("gpt-4.1", "u")));
}

TEST_F(RateAndPoolTest, RetryAfterIsHonouredToTheMoment) {
  // 20,000 tokens a minute: ten calls of 2,000 fill it.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Allowed(Check("gpt-4.1-mini", "alice", "", 1000, 1000))) << i;
  }
  v1::CheckResponse denied = Check("gpt-4.1-mini", "alice", "", 1000, 1000);
  ASSERT_EQ(denied.verdict(), v1::VERDICT_DENY);
  EXPECT_THAT(denied.reasons(),
              Contains(Property(&v1::Reason::rule, "rate_limit:per-user-tpm")));
  EXPECT_THAT(denied.reasons(0).message(),
              HasSubstr("20000 of 20000 tokens per minute used"));
  const absl::Duration wait = RetryAfter(denied);
  ASSERT_GT(wait, absl::Minutes(1));
  ASSERT_LE(wait, absl::Minutes(1) + absl::Seconds(3));
  // Bob has his own counter.
  EXPECT_TRUE(Allowed(Check("gpt-4.1-mini", "bob", "", 1000, 1000)));

  const absl::Time denied_at = clock_->now();
  clock_->Set(denied_at + wait - absl::Milliseconds(1));
  EXPECT_FALSE(Allowed(Check("gpt-4.1-mini", "alice", "", 1000, 1000)));
  clock_->Set(denied_at + wait);
  EXPECT_TRUE(Allowed(Check("gpt-4.1-mini", "alice", "", 1000, 1000)));
}

TEST_F(RateAndPoolTest, ReportCorrectsTheTokensToWhatWasUsed) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    v1::CheckResponse r = Check("gpt-4.1-mini", "alice", "", 1000, 1000);
    ASSERT_TRUE(Allowed(r));
    ids.push_back(r.reservation_id());
  }
  ASSERT_FALSE(Allowed(Check("gpt-4.1-mini", "alice", "", 1000, 1000)));
  // Each call used 1,000 + 100 of the 2,000 reserved: 9,000 come back.
  for (const std::string& id : ids) {
    Report(id, v1::OUTCOME_SUCCESS, 1000, 100);
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(Allowed(Check("gpt-4.1-mini", "alice", "", 1000, 1000))) << i;
  }
  EXPECT_FALSE(Allowed(Check("gpt-4.1-mini", "alice", "", 1000, 1000)));
}

// 64 callers at once for one user, a fake clock stepping two seconds at a
// time, each caller honouring its denials' retry_after: in no 60-second
// interval do the admitted calls use more than the limit.
TEST_F(RateAndPoolTest, SixtyFourCallersNeverExceedTheTokensPerMinute) {
  constexpr int kCallers = 64;
  constexpr int kSteps = 90;
  const absl::Time start = clock_->now();
  struct Admitted {
    absl::Time at;
    int64_t tokens;
  };
  std::mutex mu;
  std::vector<Admitted> admitted;
  std::vector<absl::Time> not_before(kCallers, start);
  int denials = 0;
  for (int step = 0; step < kSteps; ++step) {
    const absl::Time now = start + absl::Seconds(2 * step);
    clock_->Set(now);
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c) {
      if (not_before[c] > now) continue;  // honouring retry_after
      callers.emplace_back([&, c, step] {
        std::mt19937 rng(step * kCallers + c);
        const int64_t input = 200 + rng() % 300;
        const int64_t max_output = 200 + rng() % 600;
        v1::CheckRequest request = MakeCheck("gpt-4.1-mini", input, max_output,
                                             {{"user", "shared-user"}});
        v1::CheckResponse response;
        ASSERT_TRUE(server_->Check(request, &response).ok());
        if (response.verdict() != v1::VERDICT_ALLOW) {
          std::lock_guard<std::mutex> lock(mu);
          ++denials;
          ASSERT_TRUE(response.has_retry_after());
          not_before[c] = now + RetryAfter(response);
          return;
        }
        const int64_t output = rng() % (max_output + 1);
        v1::ReportResponse reported;
        ASSERT_TRUE(server_
                        ->Report(MakeReport(response.reservation_id(), input,
                                            0, output),
                                 &reported)
                        .ok());
        std::lock_guard<std::mutex> lock(mu);
        admitted.push_back(
            {ParseRfc3339(response.reservation_expires_at()) - kTtl,
             input + output});
      });
    }
    for (std::thread& t : callers) t.join();
  }
  std::sort(admitted.begin(), admitted.end(),
            [](const Admitted& a, const Admitted& b) { return a.at < b.at; });
  ASSERT_GT(denials, 0);
  int64_t total = 0;
  for (const Admitted& a : admitted) total += a.tokens;
  // Three minutes at the limit; sub-buckets give up to 1/21 of it.
  EXPECT_GT(total, 3 * kTokensPerMinute * 8 / 10);
  size_t first = 0;
  int64_t in_window = 0;
  for (size_t last = 0; last < admitted.size(); ++last) {
    in_window += admitted[last].tokens;
    while (admitted[last].at - admitted[first].at >= absl::Minutes(1)) {
      in_window -= admitted[first++].tokens;
    }
    ASSERT_LE(in_window, kTokensPerMinute)
        << "in the minute before " << absl::FormatTime(admitted[last].at);
  }
}

}  // namespace
}  // namespace bursar::testing

namespace bursar::testing {
namespace {

constexpr char kDailyPolicy[] = R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: daily-tokens }
pricing:
  gpt-4.1-mini: { provider: openai, input: "0.40", cached_input: "0.10", output: "1.60" }
rate_limits:
  - { name: daily, key: request.labels.user, tokens_per_day: 10000 }
  - { name: per-minute, key: request.labels.user, requests_per_minute: 3 }
)yaml";

// Day windows are durable (written with the holds and settlements); minute
// windows start empty after a restart.
TEST(RateWindowRestartTest, DayWindowsSurviveACrashMinuteWindowsDoNot) {
  TempDir dir;
  ClockFile clock(dir.Sub("clock"), Utc(2026, 3, 2, 9, 0, 0));
  std::filesystem::create_directories(dir.Sub("policy"));
  WriteFile(dir.Sub("policy/policy.yaml"), kDailyPolicy);
  BursardOptions options;
  options.data_dir = dir.Sub("data");
  options.clock_file = clock.path();
  options.policy_dir = dir.Sub("policy");
  options.extra_flags = {"--policy_source=dir"};
  BursardProcess server(options, dir.path());
  ASSERT_TRUE(server.Start());
  auto check = [&](int64_t input, int64_t output, v1::CheckResponse* r) {
    *r = v1::CheckResponse();
    ASSERT_TRUE(
        server.Check(MakeCheck("gpt-4.1-mini", input, output, {{"user", "u"}}), r)
            .ok());
  };
  v1::CheckResponse r;
  // 3 × 3,000 tokens reserved; the third is reported at 1,000.
  check(1000, 2000, &r);
  ASSERT_EQ(r.verdict(), v1::VERDICT_ALLOW);
  check(1000, 2000, &r);
  ASSERT_EQ(r.verdict(), v1::VERDICT_ALLOW);
  check(1000, 2000, &r);
  ASSERT_EQ(r.verdict(), v1::VERDICT_ALLOW);
  v1::ReportResponse reported;
  ASSERT_TRUE(
      server.Report(MakeReport(r.reservation_id(), 1000, 0, 0), &reported).ok());
  check(1, 1, &r);  // the minute allows 3 requests
  ASSERT_EQ(r.verdict(), v1::VERDICT_DENY);
  ASSERT_EQ(r.reasons(0).rule(), "rate_limit:per-minute");

  ASSERT_TRUE(server.CrashAndRestart());
  // The minute starts over; the day still holds 7,000 of 10,000.
  check(1000, 2000, &r);
  EXPECT_EQ(r.verdict(), v1::VERDICT_ALLOW) << r.DebugString();
  check(500, 500, &r);
  ASSERT_EQ(r.verdict(), v1::VERDICT_DENY) << r.DebugString();
  EXPECT_EQ(r.reasons(0).rule(), "rate_limit:daily");
  EXPECT_THAT(r.reasons(0).message(), HasSubstr("10000 of 10000 tokens per day"));
}

}  // namespace
}  // namespace bursar::testing
