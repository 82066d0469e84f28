#include "storage/wal_syncer.h"

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

class WalSyncerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir_.path(), &raw).ok());
    db_.reset(raw);
  }

  uint64_t Write(WalSyncer& syncer) {
    EXPECT_TRUE(db_->Put(rocksdb::WriteOptions(), "k", "v").ok());
    return syncer.NoteWrite();
  }

  bursar::testing::TempDir dir_;
  std::unique_ptr<rocksdb::DB> db_;
};

TEST_F(WalSyncerTest, WhenDurableRunsOnTheSyncerAfterTheFsyncThatCoversIt) {
  WalSyncer syncer(db_.get(), absl::Milliseconds(50));
  const uint64_t first = Write(syncer);
  ASSERT_TRUE(syncer.AwaitDurable(first).ok());

  // The next fsync waits for the window: the callback cannot run inline.
  const uint64_t second = Write(syncer);
  absl::Notification done;
  std::thread::id ran_on;
  absl::Status status = absl::UnknownError("not called");
  syncer.WhenDurable(second, [&](absl::Status s) {
    ran_on = std::this_thread::get_id();
    status = s;
    done.Notify();
  });
  EXPECT_FALSE(done.HasBeenNotified());
  done.WaitForNotification();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_NE(ran_on, std::this_thread::get_id());

  // Already durable: at once, on the caller's thread.
  std::thread::id ran_again_on;
  syncer.WhenDurable(first, [&](absl::Status s) {
    EXPECT_TRUE(s.ok());
    ran_again_on = std::this_thread::get_id();
  });
  EXPECT_EQ(ran_again_on, std::this_thread::get_id());
}

TEST_F(WalSyncerTest, OneFsyncAnswersEveryWaiterAndNoneIsLeftAtShutdown) {
  std::atomic<int> answered{0};
  {
    WalSyncer syncer(db_.get(), absl::Milliseconds(500));
    ASSERT_TRUE(syncer.AwaitDurable(Write(syncer)).ok());
    // The window keeps the next fsync half a second away; the destructor
    // syncs what is pending and answers every waiter first.
    for (int i = 0; i < 100; ++i) {
      syncer.WhenDurable(Write(syncer), [&](absl::Status s) {
        if (s.ok()) answered.fetch_add(1);
      });
    }
    EXPECT_LT(answered.load(), 100);
  }
  EXPECT_EQ(answered.load(), 100);
}

}  // namespace
}  // namespace bursar::storage
