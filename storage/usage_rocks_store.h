#ifndef BURSAR_STORAGE_USAGE_ROCKS_STORE_H_
#define BURSAR_STORAGE_USAGE_ROCKS_STORE_H_

// The usage store on the shared RocksDB database: the `usage` column family
// (storage/README.md). Internal to storage/: the ledger adds a settlement's
// usage to its own batch with AddUsageToBatch; the rest of bursard sees the
// UsageStore interface.

#include <memory>

#include "absl/status/statusor.h"
#include "rocksdb/write_batch.h"
#include "storage/usage_store.h"

namespace bursar::storage {

class RocksDatabase;

// Adds the merges of `update` (every non-zero counter of every row it
// touches) to `batch`. Writes no signal.
void AddUsageToBatch(const RocksDatabase& database, rocksdb::WriteBatch& batch,
                     const UsageUpdate& update);

// The usage store on a database that other stores share. Loads the signals.
absl::StatusOr<std::unique_ptr<UsageStore>> NewRocksUsageStore(
    std::shared_ptr<RocksDatabase> database);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_USAGE_ROCKS_STORE_H_
