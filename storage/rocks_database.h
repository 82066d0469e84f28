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
#include "storage/wal_syncer.h"

namespace bursar::storage {

struct RocksDatabaseOptions {
  std::string path;
  SyncMode sync = SyncMode::kGroup;
  // kGroup: at most one fsync per window; writes in between share it.
  absl::Duration group_window = absl::Milliseconds(1);
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
    kNumCfs,
  };

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

  // Writes `batch` with the WAL on (fsynced first with kAlways). The write is
  // durable per the sync mode only after AwaitDurable(*ticket); callers that
  // write under a mutex wait after releasing it, so writers share fsyncs.
  absl::Status Write(rocksdb::WriteBatch& batch, uint64_t* ticket);
  absl::Status AwaitDurable(uint64_t ticket);
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

  const RocksDatabaseOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  std::unique_ptr<WalSyncer> syncer_;
  std::shared_ptr<rocksdb::Statistics> statistics_;
  // The largest audit sequence handed out.
  std::atomic<uint64_t> audit_seq_{0};
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
