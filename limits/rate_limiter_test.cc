#include "limits/rate_limiter.h"

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::limits {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

class RateLimiterTest : public ::testing::Test {
 protected:
  std::optional<RateDenial> Take(absl::string_view key, int64_t tokens,
                                 absl::Time now,
                                 std::vector<RateCharge>* charges = nullptr) {
    std::vector<RateCharge> local;
    RateAsk ask{"per-user", key, windows_};
    return limiter_.Acquire({&ask, 1}, tokens, now, /*dry_run=*/false,
                            charges != nullptr ? charges : &local);
  }

  std::vector<WindowLimit> windows_ = {
      {absl::Minutes(1), /*max_requests=*/0, /*max_tokens=*/1000}};
  RateLimiter limiter_;
};

TEST_F(RateLimiterTest, AdmitsUpToTheLimitThenNamesTheWindow) {
  EXPECT_EQ(Take("alice", 600, kStart), std::nullopt);
  EXPECT_EQ(Take("alice", 400, kStart), std::nullopt);
  std::optional<RateDenial> denial = Take("alice", 1, kStart);
  ASSERT_TRUE(denial.has_value());
  EXPECT_EQ(denial->rule, "per-user");
  EXPECT_EQ(denial->key, "alice");
  EXPECT_TRUE(denial->tokens);
  EXPECT_EQ(denial->limit, 1000);
  EXPECT_EQ(denial->used, 1000);
  EXPECT_GT(denial->retry_after, absl::ZeroDuration());
  // Keys are counted apart.
  EXPECT_EQ(Take("bob", 1000, kStart), std::nullopt);
}

// Key values longer than a counter keeps inline (e-mail addresses, API key
// ids) are counted apart even when they share a long prefix, also after the
// counters' tables have grown and moved them, and after idle ones are evicted.
TEST_F(RateLimiterTest, LongKeysAreCountedApartThroughGrowthAndEviction) {
  const std::string prefix = "someone-with-a-long-name-";
  for (int i = 0; i < 2000; ++i) {
    ASSERT_EQ(Take(absl::StrCat(prefix, i, "@example.com"), 1000, kStart),
              std::nullopt)
        << i;
  }
  for (int i = 0; i < 2000; ++i) {
    std::optional<RateDenial> denial =
        Take(absl::StrCat(prefix, i, "@example.com"), 1, kStart);
    ASSERT_TRUE(denial.has_value()) << i;
    EXPECT_EQ(denial->key, absl::StrCat(prefix, i, "@example.com"));
  }
  // Short and long keys side by side, and the empty key of a rule without
  // one (its string_view may have no data).
  EXPECT_EQ(Take("short", 1000, kStart), std::nullopt);
  EXPECT_TRUE(Take("short", 1, kStart).has_value());
  EXPECT_EQ(Take(absl::string_view(), 1000, kStart), std::nullopt);
  EXPECT_TRUE(Take(absl::string_view(), 1, kStart).has_value());
  limiter_.EvictIdle(kStart + absl::Hours(1));
  EXPECT_EQ(Take(absl::StrCat(prefix, 7, "@example.com"), 1000,
                 kStart + absl::Hours(1)),
            std::nullopt);
}

TEST_F(RateLimiterTest, RetryAfterIsExact) {
  ASSERT_EQ(Take("alice", 1000, kStart), std::nullopt);
  std::optional<RateDenial> denial = Take("alice", 10, kStart);
  ASSERT_TRUE(denial.has_value());
  const absl::Time ready = kStart + denial->retry_after;
  EXPECT_LE(denial->retry_after, absl::Minutes(1) + absl::Seconds(3));
  EXPECT_GE(denial->retry_after, absl::Minutes(1));
  EXPECT_TRUE(Take("alice", 10, ready - absl::Nanoseconds(1)).has_value());
  EXPECT_EQ(Take("alice", 10, ready), std::nullopt);
}

TEST_F(RateLimiterTest, NoDoubleBurstAtAWindowBoundary) {
  // Fill the limit late in one minute; early in the next nothing fits.
  ASSERT_EQ(Take("alice", 1000, kStart + absl::Seconds(59)), std::nullopt);
  EXPECT_TRUE(Take("alice", 1, kStart + absl::Seconds(61)).has_value());
}

TEST_F(RateLimiterTest, CallBiggerThanTheLimitNeverFits) {
  std::optional<RateDenial> denial = Take("alice", 1001, kStart);
  ASSERT_TRUE(denial.has_value());
  EXPECT_TRUE(denial->never_fits());
  EXPECT_EQ(denial->retry_after, absl::ZeroDuration());
}

TEST_F(RateLimiterTest, RequestLimitCountsCalls) {
  windows_ = {{absl::Seconds(1), /*max_requests=*/2, /*max_tokens=*/0}};
  EXPECT_EQ(Take("k", 0, kStart), std::nullopt);
  EXPECT_EQ(Take("k", 0, kStart), std::nullopt);
  std::optional<RateDenial> denial = Take("k", 0, kStart);
  ASSERT_TRUE(denial.has_value());
  EXPECT_FALSE(denial->tokens);
  EXPECT_EQ(Take("k", 0, kStart + denial->retry_after), std::nullopt);
}

TEST_F(RateLimiterTest, AllWindowsOrNone) {
  windows_ = {{absl::Minutes(1), 0, 1000}, {absl::Hours(1), 0, 1500}};
  ASSERT_EQ(Take("k", 1000, kStart), std::nullopt);
  // The minute is full; an hour later both are free, but a minute later the
  // hour has only 500 left.
  EXPECT_TRUE(Take("k", 600, kStart + absl::Minutes(2)).has_value());
  EXPECT_EQ(Take("k", 500, kStart + absl::Minutes(2)), std::nullopt);
  std::optional<RateDenial> denial = Take("k", 1, kStart + absl::Minutes(2));
  ASSERT_TRUE(denial.has_value());
  EXPECT_EQ(denial->window, absl::Hours(1));
}

TEST_F(RateLimiterTest, ReleaseAndCorrectMoveTheCount) {
  std::vector<RateCharge> charges;
  ASSERT_EQ(Take("k", 800, kStart, &charges), std::nullopt);
  ASSERT_EQ(charges.size(), 1u);
  EXPECT_TRUE(Take("k", 300, kStart).has_value());
  limiter_.Correct(charges[0], 100);  // used 100 of the 800 reserved
  EXPECT_EQ(Take("k", 900, kStart), std::nullopt);
  EXPECT_TRUE(Take("k", 1, kStart).has_value());
}

TEST_F(RateLimiterTest, ReleaseGivesTheChargeBack) {
  std::vector<RateCharge> charges;
  ASSERT_EQ(Take("k", 800, kStart, &charges), std::nullopt);
  limiter_.Release(charges);
  EXPECT_EQ(limiter_.size(), 0u);
  EXPECT_EQ(Take("k", 1000, kStart), std::nullopt);
}

TEST_F(RateLimiterTest, DryRunTakesNothing) {
  std::vector<RateCharge> charges;
  RateAsk ask{"per-user", "k", windows_};
  EXPECT_EQ(limiter_.Acquire({&ask, 1}, 1000, kStart, true, &charges),
            std::nullopt);
  EXPECT_TRUE(charges.empty());
  EXPECT_EQ(Take("k", 1000, kStart), std::nullopt);
}

TEST_F(RateLimiterTest, IdleCountersAreEvicted) {
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(Take(absl::StrCat("user-", i), 1, kStart), std::nullopt);
  }
  EXPECT_EQ(limiter_.size(), 1000u);
  EXPECT_EQ(limiter_.EvictIdle(kStart + absl::Seconds(30)), 0u);
  ASSERT_EQ(Take("user-0", 1, kStart + absl::Seconds(40)), std::nullopt);
  EXPECT_EQ(limiter_.EvictIdle(kStart + absl::Seconds(124)), 999u);
  EXPECT_EQ(limiter_.size(), 1u);
}

TEST_F(RateLimiterTest, RestoredCountsAreEnforced) {
  const int64_t bucket = SubBucketIndex(absl::Minutes(1), kStart);
  limiter_.Restore({"per-user", "k", 60, bucket, 990}, 3);
  EXPECT_TRUE(Take("k", 11, kStart).has_value());
  EXPECT_EQ(Take("k", 10, kStart), std::nullopt);
}

// Many threads, a fake clock moving forward: no interval of a minute ever
// admits more than the limit.
TEST_F(RateLimiterTest, ConcurrentCallersNeverExceedAnyWindow) {
  windows_ = {{absl::Minutes(1), 0, 5000}};
  absl::Mutex mu;
  std::vector<std::pair<absl::Time, int64_t>> admitted;
  std::atomic<int64_t> clock_ms{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 2000; ++i) {
        const absl::Time now =
            kStart + absl::Milliseconds(clock_ms.fetch_add(13));
        const int64_t tokens = 1 + rng() % 400;
        if (!Take("shared", tokens, now).has_value()) {
          absl::MutexLock lock(&mu);
          admitted.emplace_back(now, tokens);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::sort(admitted.begin(), admitted.end());
  ASSERT_GT(admitted.size(), 100u);
  size_t first = 0;
  int64_t in_window = 0;
  for (size_t last = 0; last < admitted.size(); ++last) {
    in_window += admitted[last].second;
    while (admitted[last].first - admitted[first].first >= absl::Minutes(1)) {
      in_window -= admitted[first++].second;
    }
    ASSERT_LE(in_window, 5000) << "at " << admitted[last].first;
  }
}

// Rules that count the same key share a shard: one call takes a place in
// each, charges name each rule and key, and Release gives every one back.
TEST_F(RateLimiterTest, SeveralRulesOfOneKeyAreTakenAndGivenBackTogether) {
  const std::vector<WindowLimit> minute = {{absl::Minutes(1), 2, 0}};
  const std::vector<WindowLimit> minute_and_day = {{absl::Minutes(1), 0, 1000},
                                                   {absl::Hours(24), 3, 0}};
  const RateAsk asks[] = {{"a", "alice", minute},
                          {"b", "alice", minute_and_day},
                          {"c", "alice", minute}};
  RateCharges charges;
  ASSERT_EQ(limiter_.Acquire(asks, 100, kStart, false, &charges), std::nullopt);
  ASSERT_EQ(charges.size(), 4u);
  EXPECT_EQ(charges[0].rule, "a");
  EXPECT_EQ(charges[1].rule, "b");
  EXPECT_EQ(charges[1].window_seconds, 60);
  EXPECT_EQ(charges[2].rule, "b");
  EXPECT_EQ(charges[2].window_seconds, 86400);
  EXPECT_EQ(charges[3].rule, "c");
  for (const RateCharge& charge : charges) EXPECT_EQ(charge.key, "alice");
  EXPECT_EQ(limiter_.size(), 4u);
  limiter_.Release(charges);
  EXPECT_EQ(limiter_.size(), 0u);
  // Everything was given back: two more calls fit rules a and c.
  RateCharges more;
  ASSERT_EQ(limiter_.Acquire(asks, 100, kStart, false, &more), std::nullopt);
  ASSERT_EQ(limiter_.Acquire(asks, 100, kStart, false, &more), std::nullopt);
  std::optional<RateDenial> denial =
      limiter_.Acquire(asks, 100, kStart, false, &more);
  ASSERT_TRUE(denial.has_value());
  EXPECT_FALSE(denial->tokens);
  EXPECT_EQ(denial->limit, 2);
  EXPECT_EQ(more.size(), 8u);  // a denied call appends nothing
}

// Scopes are registered while other threads look them up without a lock
// (the index grows from 16 slots several times): every rule still counts
// its own calls, exactly.
TEST_F(RateLimiterTest, ScopesRegisteredWhileOthersAcquire) {
  constexpr int kThreads = 4;
  constexpr int kRulesPerThread = 40;
  constexpr int kCallsPerRule = 5;
  const std::vector<WindowLimit> limit = {
      {absl::Minutes(1), kThreads * kCallsPerRule, 0}};
  std::vector<std::string> rules;
  for (int r = 0; r < kRulesPerThread; ++r)
    rules.push_back(absl::StrCat("r", r));
  std::vector<std::thread> threads;
  std::atomic<int> denied{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int call = 0; call < kCallsPerRule; ++call) {
        for (int r = 0; r < kRulesPerThread; ++r) {
          // Each thread walks the rules from its own place.
          const std::string& rule = rules[(r + t * 10) % kRulesPerThread];
          RateAsk ask{rule, "shared", limit};
          RateCharges charges;
          if (limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges)) {
            denied.fetch_add(1);
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(denied.load(), 0);
  EXPECT_EQ(limiter_.size(), static_cast<size_t>(kRulesPerThread));
  // Every rule is now exactly full.
  for (const std::string& rule : rules) {
    RateAsk ask{rule, "shared", limit};
    RateCharges charges;
    std::optional<RateDenial> denial =
        limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges);
    ASSERT_TRUE(denial.has_value()) << rule;
    EXPECT_EQ(denial->used, kThreads * kCallsPerRule) << rule;
  }
}

// FindScope remembers scopes by where the rule's name lives: a name that
// changes in place (a new policy's rule at the old one's address) must find
// its own scope, and windows of one name at one address their own.
TEST_F(RateLimiterTest, ScopesAreFoundByNameNotByWhereTheNameLives) {
  const std::vector<WindowLimit> one_request = {
      {absl::Minutes(1), /*max_requests=*/1, /*max_tokens=*/0}};
  const std::vector<WindowLimit> one_request_an_hour = {
      {absl::Hours(1), /*max_requests=*/1, /*max_tokens=*/0}};
  std::string name = "rule-a";
  std::vector<RateCharge> charges;
  RateAsk ask{name, "alice", one_request};
  ASSERT_EQ(limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges),
            std::nullopt);
  ASSERT_NE(limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges),
            std::nullopt);  // rule-a is full
  name[5] = 'b';            // "rule-b", in the same bytes
  ask.rule = name;
  EXPECT_EQ(limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges),
            std::nullopt);
  ASSERT_EQ(charges.size(), 2u);
  EXPECT_EQ(charges[1].rule, "rule-b");
  // Another window of the same name at the same address.
  ask.windows = one_request_an_hour;
  EXPECT_EQ(limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges),
            std::nullopt);
  EXPECT_EQ(charges.back().window_seconds, 3600);
  // Giving rule-b's minute back frees it, and only it.
  limiter_.Release({&charges[1], 1});
  ask.windows = one_request;
  EXPECT_EQ(limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges),
            std::nullopt);
  name[5] = 'a';
  ask.rule = name;
  EXPECT_NE(limiter_.Acquire({&ask, 1}, 1, kStart, false, &charges),
            std::nullopt);
}

}  // namespace
}  // namespace bursar::limits
