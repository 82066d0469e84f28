#include "storage/int64_add_operator.h"

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::bursar::testing::TempDir;

TEST(Int64AddOperatorTest, EncodeDecodeRoundTrip) {
  for (int64_t value :
       {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{1'500'000'000},
        int64_t{-1'500'000'000}, int64_t{0x0102030405060708},
        std::numeric_limits<int64_t>::max(),
        std::numeric_limits<int64_t>::min()}) {
    const std::string bytes = EncodeInt64(value);
    ASSERT_EQ(bytes.size(), 8u) << value;
    int64_t decoded = 0;
    ASSERT_TRUE(DecodeInt64(bytes, &decoded)) << value;
    EXPECT_EQ(decoded, value);
  }
}

TEST(Int64AddOperatorTest, EncodingIsLittleEndianTwosComplement) {
  EXPECT_EQ(EncodeInt64(0x0102030405060708),
            std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  EXPECT_EQ(EncodeInt64(-2),
            std::string("\xfe\xff\xff\xff\xff\xff\xff\xff", 8));
}

TEST(Int64AddOperatorTest, DecodeRejectsWrongSize) {
  int64_t value = 42;
  EXPECT_FALSE(DecodeInt64(rocksdb::Slice(""), &value));
  EXPECT_FALSE(DecodeInt64(rocksdb::Slice("1234567"), &value));
  EXPECT_FALSE(DecodeInt64(rocksdb::Slice("123456789"), &value));
}

TEST(Int64AddOperatorTest, NameIsStable) {
  // The name is recorded in the database's OPTIONS file; renaming it would
  // make existing data directories refuse the operator.
  EXPECT_STREQ(NewInt64AddOperator()->Name(), "bursar.Int64Add");
}

class Int64AddOperatorDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.merge_operator = NewInt64AddOperator();
    rocksdb::DB* raw = nullptr;
    const rocksdb::Status status =
        rocksdb::DB::Open(options, dir_.path(), &raw);
    ASSERT_TRUE(status.ok()) << status.ToString();
    db_.reset(raw);
  }

  void Merge(const std::string& key, int64_t delta) {
    const rocksdb::Status status =
        db_->Merge(rocksdb::WriteOptions(), key, EncodeInt64(delta));
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  rocksdb::Status Get(const std::string& key, int64_t* value) {
    std::string bytes;
    rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), key, &bytes);
    if (status.ok() && !DecodeInt64(bytes, value)) {
      return rocksdb::Status::Corruption("not 8 bytes");
    }
    return status;
  }

  TempDir dir_;
  std::unique_ptr<rocksdb::DB> db_;
};

TEST_F(Int64AddOperatorDbTest, MergesAddSignedDeltas) {
  Merge("spent", 500);
  Merge("spent", -120);
  Merge("spent", 7);
  Merge("spent", -1000);
  int64_t value = 0;
  ASSERT_TRUE(Get("spent", &value).ok());
  EXPECT_EQ(value, -613);

  // Other keys are independent.
  Merge("other", 1);
  ASSERT_TRUE(Get("other", &value).ok());
  EXPECT_EQ(value, 1);
}

TEST_F(Int64AddOperatorDbTest, MergesOntoAPutBaseAndSurviveFlush) {
  ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), "k", EncodeInt64(100)).ok());
  Merge("k", -30);
  ASSERT_TRUE(db_->Flush(rocksdb::FlushOptions()).ok());
  Merge("k", -80);
  ASSERT_TRUE(
      db_->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr).ok());
  Merge("k", 5);
  int64_t value = 0;
  ASSERT_TRUE(Get("k", &value).ok());
  EXPECT_EQ(value, -5);
}

TEST_F(Int64AddOperatorDbTest, WrongSizeBaseFailsTheMerge) {
  ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), "k", "1234").ok());
  Merge("k", 1);
  int64_t value = 0;
  const rocksdb::Status status = Get("k", &value);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
}

TEST_F(Int64AddOperatorDbTest, WrongSizeOperandFailsTheMerge) {
  Merge("k", 10);
  ASSERT_TRUE(db_->Merge(rocksdb::WriteOptions(), "k", "abc").ok());
  int64_t value = 0;
  const rocksdb::Status status = Get("k", &value);
  EXPECT_FALSE(status.ok());
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
}

}  // namespace
}  // namespace bursar::storage
