#include "limits/concurrency_pools.h"

#include "gtest/gtest.h"

namespace bursar::limits {
namespace {

class ConcurrencyPoolsTest : public ::testing::Test {
 protected:
  bool Take(absl::string_view priority) {
    PoolAsk ask{"gpt", 10, &reserve_};
    return !pools_.Acquire({&ask, 1}, priority, false).has_value();
  }
  absl::flat_hash_map<std::string, int64_t> reserve_ = {{"critical", 3}};
  ConcurrencyPools pools_;
};

TEST_F(ConcurrencyPoolsTest, StandardGetsTheSharedSlotsOnly) {
  for (int i = 0; i < 7; ++i) EXPECT_TRUE(Take("")) << i;
  EXPECT_FALSE(Take(""));
  EXPECT_FALSE(Take("batch"));
  PoolAsk ask{"gpt", 10, &reserve_};
  std::optional<PoolDenial> denial = pools_.Acquire({&ask, 1}, "", false);
  ASSERT_TRUE(denial.has_value());
  EXPECT_EQ(denial->pool, "gpt");
  EXPECT_EQ(denial->in_flight, 7);
  EXPECT_EQ(denial->reserved_for_others, 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Take("critical")) << i;
  EXPECT_FALSE(Take("critical"));
  EXPECT_EQ(pools_.in_flight("gpt"), 10);
}

TEST_F(ConcurrencyPoolsTest, CriticalGetsAllTen) {
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(Take("critical")) << i;
  EXPECT_FALSE(Take("critical"));
  EXPECT_FALSE(Take(""));
}

TEST_F(ConcurrencyPoolsTest, ReleasedSlotsComeBack) {
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(Take(""));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Take("critical"));
  pools_.Release("gpt", "critical");
  EXPECT_FALSE(Take(""));  // a reserved slot came back, not a shared one
  EXPECT_TRUE(Take("critical"));
  pools_.Release("gpt", "");
  EXPECT_TRUE(Take(""));
  for (int i = 0; i < 20; ++i) pools_.Release("gpt", "");
  for (int i = 0; i < 20; ++i) pools_.Release("gpt", "critical");
  EXPECT_EQ(pools_.in_flight("gpt"), 0);
}

TEST_F(ConcurrencyPoolsTest, AllPoolsOrNone) {
  PoolAsk big{"big", 10, nullptr};
  PoolAsk small{"small", 1, nullptr};
  PoolAsk both[] = {big, small};
  EXPECT_FALSE(pools_.Acquire(both, "", false).has_value());
  std::optional<PoolDenial> denial = pools_.Acquire(both, "", false);
  ASSERT_TRUE(denial.has_value());
  EXPECT_EQ(denial->pool, "small");
  EXPECT_EQ(pools_.in_flight("big"), 1);  // the second call took nothing
}

}  // namespace
}  // namespace bursar::limits
