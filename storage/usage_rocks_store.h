#ifndef BURSAR_STORAGE_USAGE_ROCKS_STORE_H_
#define BURSAR_STORAGE_USAGE_ROCKS_STORE_H_

// The usage store on the shared RocksDB database: the `usage` column family
// holds the rows, the `usage_log` family the records not folded into them
// yet (storage/README.md, decision 022). Internal to storage/: the ledger
// adds a settlement's usage to its own batch with AddUsageToBatch; the rest
// of bursard sees the UsageStore interface.

#include <memory>

#include "absl/status/statusor.h"
#include "rocksdb/write_batch.h"
#include "storage/usage_delta_log.h"
#include "storage/usage_store.h"

namespace bursar::storage {

class RocksDatabase;

// Adds `update` to `batch` (nothing when it is null). While a usage store
// is open on `database`: one Put of a usage record under the next sequence
// number of the usage log, which the store folds into the rows later; the
// returned Guard must be kept until the batch's Write has returned
// (usage_delta_log.h). Without a usage store (a ledger opened alone): one
// Merge per row it touches, as before the log, and an empty Guard. Writes
// no signal.
UsageDeltaLog::Guard AddUsageToBatch(const RocksDatabase& database,
                                     rocksdb::WriteBatch& batch,
                                     const UsageUpdate* update);

// The usage store on a database that other stores share. Loads the signals
// and folds the records left in the usage log (a crash, or a stop, between
// a settlement and its fold) before it returns, so that nothing reads them
// twice; then folds in the background per `options`.
absl::StatusOr<std::unique_ptr<UsageStore>> NewRocksUsageStore(
    std::shared_ptr<RocksDatabase> database,
    const UsageStoreOptions& options = UsageStoreOptions());

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_USAGE_ROCKS_STORE_H_
