#ifndef BURSAR_STORAGE_ROCKS_LEDGER_H_
#define BURSAR_STORAGE_ROCKS_LEDGER_H_

// The embedded ledger: memory-authoritative counters made durable in one
// RocksDB database (column families and keys in storage/README.md).

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/ledger.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace bursar::storage {

struct RocksLedgerOptions {
  std::string path;
  SyncMode sync = SyncMode::kGroup;
  // kGroup: at most one fsync per window; writes in between share it.
  absl::Duration group_window = absl::Milliseconds(1);
  // How long a settled or expired hold is kept: Check retries with its
  // request_id replay it, and late Reports still find it.
  absl::Duration settled_retention = absl::Hours(1);
  // Memory RocksDB may take: the memtables of every column family together
  // (flushed, largest first, when over), and one block cache shared by all.
  size_t memtable_budget_bytes = size_t{64} << 20;
  size_t block_cache_bytes = size_t{16} << 20;
  // Test only: the Env RocksDB does its file I/O through, e.g. a
  // FaultInjectionFs (storage/fault_injection_fs.h); null for the default.
  // Must outlive the ledger.
  rocksdb::Env* env = nullptr;
  // Test only: how many bits of a request_id's hash the ledger keys its
  // request_id index by (1..64). Fewer bits make different request_ids
  // collide, which the ledger must resolve exactly (decision 019).
  int request_id_hash_bits = 64;
  // Test only: called just before each write of the ledger: without the
  // ledger's lock in Reserve, Settle and ExpireHolds, when memory already
  // shows the change (docs/decisions/021-ledger-writes-outside-the-lock.md);
  // under it in SetBudget and DeleteBudget. A test blocks in it (only in the
  // former) to hold a write in flight, or switches the disk's failures.
  std::function<void()> before_write_for_test;
  // Test only: called under the ledger's lock when a call starts waiting for
  // another call's write to finish (of the same hold, or to counters it
  // would load). Must not call the ledger.
  std::function<void()> on_wait_for_write_for_test;
};

// Opens (creating if needed) the database at options.path and rebuilds
// memory from it. The ledger alone: bursard opens the ledger and the policy
// version store on one database with OpenRocksStorage (rocks_storage.h).
// DataLoss for corrupt records or a schema newer than this binary; Unavailable
// for I/O errors (e.g. another process holds the lock).
absl::StatusOr<std::unique_ptr<Ledger>> OpenRocksLedger(
    const RocksLedgerOptions& options);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_ROCKS_LEDGER_H_
