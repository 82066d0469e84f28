#ifndef BURSAR_STORAGE_WAL_SYNCER_H_
#define BURSAR_STORAGE_WAL_SYNCER_H_

// Group commit for RocksDB's write-ahead log: writers write without fsync,
// then wait for one background fsync that covers every write made before
// it began. Thread-safe.

#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"

namespace bursar::storage {

class WalSyncer {
 public:
  // `db` must outlive the syncer. At most one fsync starts per `window`.
  WalSyncer(rocksdb::DB* db, absl::Duration window);
  ~WalSyncer();  // finishes pending syncs, then stops the thread

  WalSyncer(const WalSyncer&) = delete;
  WalSyncer& operator=(const WalSyncer&) = delete;

  // Call right after a write reached the WAL; returns its ticket.
  uint64_t NoteWrite();
  // The ticket of the newest write so far: awaiting it waits for every
  // write made before this call.
  uint64_t LatestTicket();
  // Blocks until an fsync covering `ticket` finished; Unavailable if it
  // failed.
  absl::Status AwaitDurable(uint64_t ticket);
  // Calls done(status) once an fsync covering `ticket` finished, with what
  // AwaitDurable would return: at once on the caller's thread if one
  // already has, else on the syncer's thread right after the fsync (so
  // `done` must be quick and must not wait for the syncer). Every pending
  // `done` runs before the destructor returns.
  using DoneCallback = absl::AnyInvocable<void(absl::Status) &&>;
  void WhenDurable(uint64_t ticket, DoneCallback done);
  // Forgets earlier fsync failures: the caller made every write so far
  // durable another way (RocksDatabase flushes the memtables).
  void ClearFailures();

 private:
  void Run();
  // The status of the writes up to `ticket`, once synced.
  absl::Status StatusOfSynced(uint64_t ticket) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  rocksdb::DB* const db_;
  const absl::Duration window_;
  absl::Mutex mu_;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t failed_up_to_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Callbacks of WhenDurable waiting for their fsync, with their tickets.
  std::vector<std::pair<uint64_t, DoneCallback>> waiting_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_WAL_SYNCER_H_
