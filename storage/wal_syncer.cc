#include "storage/wal_syncer.h"

#include <pthread.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "rocksdb/statistics.h"

namespace bursar::storage {

WalSyncer::WalSyncer(rocksdb::DB* db, absl::Duration window)
    : db_(db), window_(window), thread_([this] {
        pthread_setname_np(pthread_self(), "wal-syncer");
        Run();
      }) {}

WalSyncer::~WalSyncer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

uint64_t WalSyncer::NoteWrite() {
  absl::MutexLock lock(&mu_);
  return ++written_;
}

uint64_t WalSyncer::LatestTicket() {
  absl::MutexLock lock(&mu_);
  return written_;
}

absl::Status WalSyncer::AwaitDurable(uint64_t ticket) {
  struct Covered {
    const WalSyncer* syncer;
    uint64_t ticket;
    bool Done() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return syncer->synced_ >= ticket;
    }
  };
  const Covered covered{this, ticket};
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&covered, &Covered::Done));
  return StatusOfSynced(ticket);
}

absl::Status WalSyncer::StatusOfSynced(uint64_t ticket) const {
  if (ticket <= failed_up_to_) return last_error_;
  return absl::OkStatus();
}

void WalSyncer::WhenDurable(uint64_t ticket, DoneCallback done) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (synced_ < ticket) {
      waiting_.emplace_back(ticket, std::move(done));
      return;
    }
    status = StatusOfSynced(ticket);
  }
  std::move(done)(std::move(status));
}

void WalSyncer::ClearFailures() {
  absl::MutexLock lock(&mu_);
  failed_up_to_ = 0;
  last_error_ = absl::OkStatus();
}

void WalSyncer::Run() {
  // SyncWAL does not time itself; its fsyncs join those of sync writes in
  // the WAL_FILE_SYNC_MICROS histogram (/metrics).
  const std::shared_ptr<rocksdb::Statistics> statistics =
      db_->GetDBOptions().statistics;
  absl::Time last_sync = absl::InfinitePast();
  while (true) {
    uint64_t target;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WalSyncer* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return self->stopping_ || self->written_ > self->synced_;
          },
          this));
      if (written_ == synced_) return;  // stopping, nothing pending
    }
    const absl::Time next = last_sync + window_;
    if (absl::Now() < next) absl::SleepFor(next - absl::Now());
    {
      absl::MutexLock lock(&mu_);
      target = written_;
    }
    last_sync = absl::Now();
    const rocksdb::Status status = db_->SyncWAL();
    if (statistics != nullptr) {
      statistics->reportTimeToHistogram(
          rocksdb::WAL_FILE_SYNC_MICROS,
          static_cast<uint64_t>(absl::ToInt64Microseconds(absl::Now() - last_sync)));
    }
    std::vector<std::pair<DoneCallback, absl::Status>> covered;
    {
      absl::MutexLock lock(&mu_);
      if (!status.ok()) {
        last_error_ = absl::UnavailableError(
            absl::StrCat("fsync of the write-ahead log failed: ",
                         status.ToString()));
        failed_up_to_ = target;
      }
      synced_ = target;
      auto still_waiting = std::partition(
          waiting_.begin(), waiting_.end(),
          [this](const auto& w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return w.first > synced_;
          });
      for (auto it = still_waiting; it != waiting_.end(); ++it) {
        covered.emplace_back(std::move(it->second), StatusOfSynced(it->first));
      }
      waiting_.erase(still_waiting, waiting_.end());
    }
    for (auto& [done, result] : covered) std::move(done)(std::move(result));
  }
}

}  // namespace bursar::storage
