#ifndef BURSAR_STORAGE_DATABASE_STATS_H_
#define BURSAR_STORAGE_DATABASE_STATS_H_

// What the embedded database measured about itself, for /metrics: RocksDB's
// own latency histograms, summarized (RocksDB exposes percentiles, not
// buckets). Plain numbers so that callers need no RocksDB header.

#include <cstdint>

namespace bursar::storage {

// One latency distribution since the database opened, in microseconds.
struct LatencySummary {
  uint64_t count = 0;
  uint64_t sum_micros = 0;
  double p50_micros = 0;
  double p95_micros = 0;
  double p99_micros = 0;
  double max_micros = 0;
};

struct DatabaseStats {
  // Every write of a batch (RocksDB's DB_WRITE): WAL append and memtable
  // insert, and the fsync with --sync=always.
  LatencySummary write;
  // Every fsync of the write-ahead log (WAL_FILE_SYNC_MICROS): made by a
  // write with --sync=always, or by the group syncer with --sync=group
  // (which times its SyncWAL calls into the same histogram).
  LatencySummary wal_file_sync;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_DATABASE_STATS_H_
