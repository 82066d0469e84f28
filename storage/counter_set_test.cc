#include "storage/counter_set.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/int64_add_operator.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::bursar::testing::TempDir;

std::vector<std::pair<unsigned char, int64_t>> Counters(const CounterSet& set) {
  std::vector<std::pair<unsigned char, int64_t>> out;
  set.ForEach([&](unsigned char kind, int64_t v) { out.emplace_back(kind, v); });
  return out;
}

TEST(CounterSetTest, AddsByKindAndEncodesInKindOrder) {
  CounterSet set;
  set.Add('r', 1);
  set.Add('c', 500);
  set.Add('r', 2);
  set.Add(0x85, -3);
  set.Add('z', 0);  // added to, so present
  EXPECT_EQ(Counters(set),
            (std::vector<std::pair<unsigned char, int64_t>>{
                {'c', 500}, {'r', 3}, {'z', 0}, {0x85, -3}}));
  CounterSet decoded;
  ASSERT_TRUE(decoded.AddEncoded(set.Encode()));
  EXPECT_EQ(Counters(decoded), Counters(set));
  EXPECT_EQ(set.Encode().size(), 4u * 9);
}

TEST(CounterSetTest, AppendedPairsDecodeAndRepeatedKindsAdd) {
  std::string bytes;
  AppendCounter(bytes, 'c', std::numeric_limits<int64_t>::max());
  AppendCounter(bytes, 'i', 100);
  AppendCounter(bytes, 'c', 1);  // wraps, as the int64 counters do
  CounterSet set;
  ASSERT_TRUE(set.AddEncoded(bytes));
  EXPECT_EQ(Counters(set), (std::vector<std::pair<unsigned char, int64_t>>{
                               {'c', std::numeric_limits<int64_t>::min()},
                               {'i', 100}}));
}

TEST(CounterSetTest, ATruncatedValueIsRefusedAndAddsNothing) {
  std::string bytes;
  AppendCounter(bytes, 'c', 5);
  AppendCounter(bytes, 'r', 1);
  CounterSet set;
  EXPECT_FALSE(set.AddEncoded(bytes.substr(0, bytes.size() - 1)));
  EXPECT_TRUE(Counters(set).empty());
}

// Through RocksDB: counter sets and single int64 counters side by side in
// one column family, merged in the memtable, on flush and after a reopen.
TEST(CounterMergeOperatorTest, MergesCounterSetsAndInt64CountersByKey) {
  TempDir dir;
  rocksdb::Options options;
  options.create_if_missing = true;
  options.merge_operator = NewCounterMergeOperator('P');
  for (int pass = 0; pass < 2; ++pass) {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir.path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    for (int i = 0; i < 100; ++i) {
      std::string set;
      AppendCounter(set, 'c', 10);
      AppendCounter(set, 'r', 1);
      if (i % 10 == 0) AppendCounter(set, 'f', 1);
      ASSERT_TRUE(db->Merge(rocksdb::WriteOptions(), "rowP", set).ok());
      ASSERT_TRUE(
          db->Merge(rocksdb::WriteOptions(), "rowc", EncodeInt64(10)).ok());
      if (i == 50) ASSERT_TRUE(db->Flush(rocksdb::FlushOptions()).ok());
    }
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "rowP", &value).ok());
    CounterSet set;
    ASSERT_TRUE(set.AddEncoded(value));
    const int64_t rounds = 100 * (pass + 1);
    EXPECT_EQ(Counters(set), (std::vector<std::pair<unsigned char, int64_t>>{
                                 {'c', 10 * rounds},
                                 {'f', rounds / 10},
                                 {'r', rounds}}));
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "rowc", &value).ok());
    int64_t counter = 0;
    ASSERT_TRUE(DecodeInt64(value, &counter));
    EXPECT_EQ(counter, 10 * rounds);
    // A malformed operand fails the read instead of being taken as zero.
    ASSERT_TRUE(db->Merge(rocksdb::WriteOptions(), "badP", "12345").ok());
    EXPECT_FALSE(db->Get(rocksdb::ReadOptions(), "badP", &value).ok());
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), "badP").ok());
  }
}

}  // namespace
}  // namespace bursar::storage
