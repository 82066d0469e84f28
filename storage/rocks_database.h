#ifndef BURSAR_STORAGE_ROCKS_DATABASE_H_
#define BURSAR_STORAGE_ROCKS_DATABASE_H_

// The one RocksDB database of a data directory, shared by the stores built
// on it (RocksLedger, the RocksDB policy version store): it opens every
// column family, checks the schema version, writes batches with the WAL on
// and makes them durable per the sync mode, and hands out audit keys that
// are unique across all stores. Internal to storage/: the rest of bursard
// sees the Ledger and PolicyVersionStore interfaces (rocks_storage.h).
//
// Each store orders its own writes under its own mutex; the database is
// thread-safe and imposes no order between stores. Shared by
// std::shared_ptr: RocksDB closes (after a synced WAL flush) when the last
// store goes away.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "rocksdb/statistics.h"
#include "rocksdb/write_batch.h"
#include "storage/alert_store.h"
#include "storage/database_stats.h"
#include "storage/ledger.h"
#include "storage/policy_version_store.h"
#include "storage/records.pb.h"
#include "storage/rocks_ledger.h"
#include "storage/usage_delta_log.h"
#include "storage/wal_syncer.h"

namespace bursar::storage {

struct RocksDatabaseOptions {
  std::string path;
  SyncMode sync = SyncMode::kGroup;
  // kGroup: at most one fsync per window; writes in between share it.
  absl::Duration group_window = absl::Milliseconds(1);
  // Memory RocksDB may take: the memtables of every column family together
  // (flushed, largest first, when over), and one block cache shared by all.
  size_t memtable_budget_bytes = size_t{64} << 20;
  size_t block_cache_bytes = size_t{16} << 20;
  // Test only: the Env RocksDB does its file I/O through (fault injection,
  // storage/fault_injection_fs.h); null for the default.
  rocksdb::Env* env = nullptr;
};

class RocksDatabase {
 public:
  // Column families, in the order they are opened (storage/README.md).
  enum Cf {
    kDefaultCf,
    kMetaCf,
    kBudgetsCf,
    kCountersCf,
    kHoldsCf,
    kAuditCf,
    kPoliciesCf,
    kAlertsCf,
    kUsageCf,
    kUsageLogCf,  // usage records not folded yet (decision 022)
    kNumCfs,
  };
  // The last key byte of a `usage` row that holds a CounterSet
  // (storage/counter_set.h); its other keys hold one int64 counter.
  static constexpr unsigned char kUsageCounterSetKind = 'P';

  // Opens (creating if needed) the database and any missing column family.
  // DataLoss for a schema newer than this binary; Unavailable for I/O errors
  // (e.g. another process holds the lock).
  static absl::StatusOr<std::shared_ptr<RocksDatabase>> Open(
      const RocksDatabaseOptions& options);

  ~RocksDatabase();
  RocksDatabase(const RocksDatabase&) = delete;
  RocksDatabase& operator=(const RocksDatabase&) = delete;

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* cf(Cf which) const { return cfs_[which]; }
  const RocksDatabaseOptions& options() const { return options_; }
  // The sequence numbers of the `usage_log` family (usage_delta_log.h).
  UsageDeltaLog& usage_log() const { return usage_log_; }

  // Writes `batch` with the WAL on (fsynced first with kAlways). The write is
  // durable per the sync mode only after AwaitDurable(*ticket); callers that
  // write under a mutex wait after releasing it, so writers share fsyncs.
  //
  // Write failures (a full disk, an I/O error): Write returns Unavailable
  // and the batch is not applied: callers update memory only after an OK
  // Write, or undo their own change after a failed one (RocksLedger,
  // decision 021). Thread-safe; callers need not hold any lock. A failed
  // fsync makes AwaitDurable return Unavailable; the write stays applied
  // (memory and RocksDB agree) but is not acknowledged. Either
  // failure puts RocksDB into read-only mode; the next Write or AwaitDurable
  // first recovers: DB::Resume(), then a flush of every memtable (so that
  // writes whose WAL fsync failed reach synced table files), and only then
  // clears the failure (it tries Resume() only once a probe file can be
  // written and synced). Until recovery succeeds every call fails with
  // Unavailable; an idempotent retry succeeds once it does. RocksDB cannot
  // resume from some errors (a failed WAL fsync): then writes fail until
  // bursard restarts, and the restart reloads every acknowledged write.
  absl::Status Write(rocksdb::WriteBatch& batch, uint64_t* ticket);
  absl::Status AwaitDurable(uint64_t ticket);
  // AwaitDurable without blocking: calls done(status) with what it would
  // return, at once when nothing is to wait for, else on the WAL syncer's
  // thread after the fsync that covers `ticket` (WalSyncer::WhenDurable).
  void WhenDurable(uint64_t ticket, WalSyncer::DoneCallback done);

  // Writes a consistent copy of the database (a RocksDB checkpoint: hard
  // links to table files plus a copy of the live WAL) into `dir`, which
  // must not exist yet; its parent must, on the same file system for hard
  // links (else files are copied). Safe while serving.
  absl::Status CreateCheckpoint(const std::string& dir);
  // The ticket that covers every write made so far (0 without group sync).
  uint64_t LatestTicket() const;

  // Adds `record` (its time_micros set to `time`) to `batch` under a new
  // audit key: time, then a sequence unique in this database.
  void AddAudit(rocksdb::WriteBatch& batch, absl::Time time,
                AuditRecord record);

  // RocksDB's write and WAL fsync latencies since the database opened
  // (options.statistics is on). Thread-safe.
  DatabaseStats Stats() const;

 private:
  explicit RocksDatabase(const RocksDatabaseOptions& options)
      : options_(options) {}
  absl::Status OpenDb();
  // Resume() + flush after a write or fsync failure; OK when none is
  // pending.
  absl::Status RecoverIfNeeded() ABSL_LOCKS_EXCLUDED(recovery_mu_);
  // Writes and syncs a small file in the data directory: Unavailable while
  // the disk still fails.
  absl::Status ProbeDisk();

  const RocksDatabaseOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  std::unique_ptr<WalSyncer> syncer_;
  std::shared_ptr<rocksdb::Statistics> statistics_;
  // The largest audit sequence handed out.
  std::atomic<uint64_t> audit_seq_{0};
  mutable UsageDeltaLog usage_log_;
  // Set by a failed write or fsync; cleared by a successful recovery.
  std::atomic<bool> needs_recovery_{false};
  // One recovery at a time.
  absl::Mutex recovery_mu_;
#if defined(BURSAR_TSAN)
  // TSan builds only (cmake/sanitizers.cmake): one DB::Write at a time. A
  // RocksDB write group's leader copies the batches of the writers queued
  // behind it, inside the uninstrumented librocksdb, and TSan cannot see the
  // hand-off that orders that copy after the follower built its batch (a
  // false report naming whichever of our callers led the group). Without
  // groups there is nothing to copy; our own code's concurrency is checked
  // as before.
  absl::Mutex tsan_write_mu_;
#endif
};

// The database part of the ledger's options.
RocksDatabaseOptions DatabaseOptions(const RocksLedgerOptions& options);

// The ledger on a database that other stores share (rocks_storage.h).
absl::StatusOr<std::unique_ptr<Ledger>> NewRocksLedger(
    std::shared_ptr<RocksDatabase> database, const RocksLedgerOptions& options);

// The policy version store on a database that other stores share: versions
// in the `policies` column family (storage/README.md).
absl::StatusOr<std::unique_ptr<PolicyVersionStore>> NewRocksPolicyVersionStore(
    std::shared_ptr<RocksDatabase> database);

// The alert store on a database that other stores share: fired alerts and
// webhook dead letters in the `alerts` column family (storage/README.md).
absl::StatusOr<std::unique_ptr<AlertStore>> NewRocksAlertStore(
    std::shared_ptr<RocksDatabase> database);

// A RocksDB status as an absl::Status: Corruption is DataLoss, anything else
// Unavailable; `what` says what failed ("reading budgets").
absl::Status FromRocks(const rocksdb::Status& status, absl::string_view what);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_ROCKS_DATABASE_H_
