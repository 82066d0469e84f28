#ifndef BURSAR_STORAGE_ROCKS_STORAGE_H_
#define BURSAR_STORAGE_ROCKS_STORAGE_H_

// Everything bursard keeps in its data directory, on one embedded RocksDB
// database: the budget ledger and the policy versions. The two stores share
// the database (one directory lock, one WAL, one audit log), and it closes
// when all are gone.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/alert_store.h"
#include "storage/database_stats.h"
#include "storage/ledger.h"
#include "storage/policy_version_store.h"
#include "storage/rocks_ledger.h"
#include "storage/usage_store.h"

namespace bursar::storage {

struct RocksStorage {
  std::unique_ptr<Ledger> ledger;
  std::unique_ptr<PolicyVersionStore> policy_versions;
  // Fired alerts and webhook dead letters (alert_store.h).
  std::unique_ptr<AlertStore> alerts;
  // Usage rollups and quality signals (usage_store.h).
  std::unique_ptr<UsageStore> usage;
  // The database's latency statistics (for /metrics); all zero once both
  // stores are gone. Thread-safe.
  std::function<DatabaseStats()> database_stats;
  // Writes a consistent copy of the whole database (ledger, policy
  // versions, audit log) into `dir` while serving: a RocksDB checkpoint
  // (RocksDatabase::CreateCheckpoint). `dir` must not exist yet.
  // FailedPrecondition when it cannot be created; Unavailable once both
  // stores are gone. Thread-safe.
  std::function<absl::Status(const std::string& dir)> create_checkpoint;
};

// Opens (creating if needed) the database at options.path and loads every
// store; the usage store folds the usage records a crash left unfolded
// before it returns (usage_options: how it folds later). Errors as
// OpenRocksLedger.
absl::StatusOr<RocksStorage> OpenRocksStorage(
    const RocksLedgerOptions& options,
    const UsageStoreOptions& usage_options = UsageStoreOptions());

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_ROCKS_STORAGE_H_
