#include "storage/rocks_database.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/cache.h"
#include "rocksdb/listener.h"
#include "rocksdb/table.h"
#include "rocksdb/options.h"
#include "rocksdb/utilities/checkpoint.h"
#include "storage/counter_set.h"
#include "storage/int64_add_operator.h"

namespace bursar::storage {
namespace {

constexpr int64_t kSchemaVersion = 1;
constexpr char kSchemaVersionKey[] = "schema_version";

constexpr const char* kCfNames[] = {"default", "meta",  "budgets",  "counters",
                                    "holds",   "audit", "policies", "alerts",
                                    "usage",   "usage_log"};
static_assert(sizeof(kCfNames) / sizeof(kCfNames[0]) == RocksDatabase::kNumCfs);

void AppendBigEndian64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

std::string AuditKey(absl::Time time, uint64_t seq) {
  std::string key;
  AppendBigEndian64(
      key, static_cast<uint64_t>(absl::ToUnixMicros(time)) ^ (1ULL << 63));
  AppendBigEndian64(key, seq);
  return key;
}

LatencySummary Summarize(const rocksdb::Statistics& statistics,
                         uint32_t histogram) {
  rocksdb::HistogramData data;
  statistics.histogramData(histogram, &data);
  LatencySummary out;
  out.count = data.count;
  out.sum_micros = data.sum;
  out.p50_micros = data.median;
  out.p95_micros = data.percentile95;
  out.p99_micros = data.percentile99;
  out.max_micros = data.max;
  return out;
}

// Turns off RocksDB's own recovery from background errors (a thread that
// retries every few seconds): RocksDatabase recovers on the next write
// instead (RecoverIfNeeded), which also clears the WAL syncer's failures.
class ManualRecovery final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/,
                            rocksdb::Status /*bg_error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

}  // namespace

absl::Status FromRocks(const rocksdb::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message =
      absl::StrCat("ledger ", what, " failed: ", status.ToString());
  if (status.IsCorruption()) return absl::DataLossError(message);
  return absl::UnavailableError(message);
}

RocksDatabaseOptions DatabaseOptions(const RocksLedgerOptions& options) {
  RocksDatabaseOptions database;
  database.path = options.path;
  database.sync = options.sync;
  database.group_window = options.group_window;
  database.memtable_budget_bytes = options.memtable_budget_bytes;
  database.block_cache_bytes = options.block_cache_bytes;
  database.env = options.env;
  return database;
}

absl::StatusOr<std::shared_ptr<RocksDatabase>> RocksDatabase::Open(
    const RocksDatabaseOptions& options) {
  std::shared_ptr<RocksDatabase> database(new RocksDatabase(options));
  if (absl::Status s = database->OpenDb(); !s.ok()) return s;
  return database;
}

RocksDatabase::~RocksDatabase() {
  syncer_.reset();
  if (db_ != nullptr) {
    // After a write failure RocksDB's WAL writer holds the error; syncing it
    // again would trip an assertion. Try to recover first.
    if (RecoverIfNeeded().ok()) {
      db_->FlushWAL(/*sync=*/true).PermitUncheckedError();
    }
    for (rocksdb::ColumnFamilyHandle* cf : cfs_) {
      db_->DestroyColumnFamilyHandle(cf).PermitUncheckedError();
    }
    db_->Close().PermitUncheckedError();
  }
}

absl::Status RocksDatabase::OpenDb() {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  // A database written before a column family existed (e.g. `policies`)
  // gains it empty: adding one needs no migration (storage/README.md).
  db_options.create_missing_column_families = true;
  if (options_.env != nullptr) db_options.env = options_.env;
  db_options.listeners.push_back(std::make_shared<ManualRecovery>());
  db_options.max_bgerror_resume_count = 0;
  // Latency histograms for /metrics (Stats()); the default level leaves
  // out the costly per-mutex timers.
  statistics_ = rocksdb::CreateDBStatistics();
  db_options.statistics = statistics_;
  // RocksDB's defaults bound memory per column family (two 64 MiB
  // memtables and a 32 MiB block cache each, for nine families); one budget
  // for all of them keeps bursard's footprint what the operator set.
  db_options.db_write_buffer_size = options_.memtable_budget_bytes;
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
  const std::shared_ptr<rocksdb::TableFactory> tables(
      rocksdb::NewBlockBasedTableFactory(table_options));
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.table_factory = tables;
  rocksdb::ColumnFamilyOptions counter_options;
  counter_options.table_factory = tables;
  counter_options.merge_operator = NewInt64AddOperator();
  // Every Report merges into its budgets' counters. Bounding successive
  // merges (max_successive_merges) costs a memtable seek per Merge to count
  // them; these keys are read only at start-up and by background passes,
  // and flushes fold their operands, so the operands are left to
  // accumulate.
  counter_options.max_successive_merges = 0;
  // Usage rows are merged into only by the background fold (decision 022),
  // once per fold per row. Their operands are left to accumulate too: the
  // seek per Merge made each fold batch hold RocksDB's write queue for
  // milliseconds, with every Check and Report waiting behind it (decision
  // 028), while the reads that merge the operands are the KPI refreshes:
  // once a second for what Checks read, once a pass for the alerts.
  rocksdb::ColumnFamilyOptions usage_options = counter_options;
  usage_options.merge_operator = NewCounterMergeOperator(kUsageCounterSetKind);

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (int i = 0; i < kNumCfs; ++i) {
    descriptors.emplace_back(kCfNames[i], i == kCountersCf ? counter_options
                                          : i == kUsageCf  ? usage_options
                                                           : cf_options);
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status status =
      rocksdb::DB::Open(rocksdb::Options(db_options, cf_options), options_.path,
                        descriptors, &cfs_, &raw);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open the ledger at \"", options_.path,
        "\": ", status.ToString(),
        status.IsIOError() ? " (is another bursard using this --data_dir?)"
                           : ""));
  }
  db_.reset(raw);

  std::string version;
  status = db_->Get(rocksdb::ReadOptions(), cfs_[kMetaCf], kSchemaVersionKey,
                    &version);
  if (status.IsNotFound()) {
    status = db_->Put(rocksdb::WriteOptions(), cfs_[kMetaCf], kSchemaVersionKey,
                      absl::StrCat(kSchemaVersion));
    if (absl::Status s = FromRocks(status, "writing the schema version");
        !s.ok()) {
      return s;
    }
  } else if (!status.ok()) {
    return FromRocks(status, "reading the schema version");
  } else if (version != absl::StrCat(kSchemaVersion)) {
    return absl::DataLossError(absl::StrFormat(
        "the ledger at \"%s\" has schema version %s; this bursard reads "
        "version %d",
        options_.path, version, kSchemaVersion));
  }

  // The next audit sequence must exceed every stored one. The newest entry
  // by time need not carry the largest (the caller's clock may have gone
  // back), so look at all of them; the audit log is small.
  uint64_t max_seq = 0;
  std::unique_ptr<rocksdb::Iterator> audit(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kAuditCf]));
  for (audit->SeekToFirst(); audit->Valid(); audit->Next()) {
    if (audit->key().size() != 16) continue;
    uint64_t seq = 0;
    for (int i = 8; i < 16; ++i) {
      seq = (seq << 8) | static_cast<unsigned char>(audit->key()[i]);
    }
    max_seq = std::max(max_seq, seq);
  }
  if (absl::Status s = FromRocks(audit->status(), "reading the audit log");
      !s.ok()) {
    return s;
  }
  audit_seq_.store(max_seq);

  if (options_.sync == SyncMode::kGroup) {
    syncer_ = std::make_unique<WalSyncer>(db_.get(), options_.group_window);
  }
  return absl::OkStatus();
}

absl::Status RocksDatabase::ProbeDisk() {
  rocksdb::Env* env =
      options_.env != nullptr ? options_.env : rocksdb::Env::Default();
  const std::string probe = options_.path + "/BURSAR_RECOVERY_PROBE";
  std::unique_ptr<rocksdb::WritableFile> file;
  rocksdb::Status status =
      env->NewWritableFile(probe, &file, rocksdb::EnvOptions());
  if (status.ok()) status = file->Append(std::string(4096, 'p'));
  if (status.ok()) status = file->Sync();
  if (file != nullptr) {
    const rocksdb::Status closed = file->Close();
    if (status.ok()) status = closed;
  }
  env->DeleteFile(probe).PermitUncheckedError();
  if (!status.ok()) {
    return FromRocks(status,
                     "write is refused: the disk still fails since an earlier "
                     "write failure; writing a probe file");
  }
  return absl::OkStatus();
}

absl::Status RocksDatabase::RecoverIfNeeded() {
  if (!needs_recovery_.load()) return absl::OkStatus();
  absl::MutexLock lock(&recovery_mu_);
  if (!needs_recovery_.load()) return absl::OkStatus();
  // A Resume() that fails because the disk still fails can leave RocksDB
  // unable to resume at all: try only once a probe file can be written and
  // synced.
  if (absl::Status s = ProbeDisk(); !s.ok()) return s;
  // Resume() is OK at once when RocksDB holds no background error (e.g.
  // only our WAL fsync failed and RocksDB did not notice).
  rocksdb::Status status = db_->Resume();
  if (!status.ok()) {
    // RocksDB resumes from "hard" errors (a full disk); a failed WAL fsync
    // or corruption is "fatal": only reopening the database (restarting
    // bursard) clears it, and restart rebuilds memory from what is durable.
    return absl::UnavailableError(absl::StrCat(
        "the ledger is read-only after a write failure RocksDB cannot "
        "recover from in place; restart bursard (it reloads every "
        "acknowledged write): ",
        status.ToString()));
  }
  // Writes whose WAL fsync failed are in the memtables; on Linux a failed
  // fsync may drop their dirty pages, so a later fsync of the WAL proves
  // nothing. A flush writes them into new, synced table files.
  rocksdb::FlushOptions flush;
  flush.wait = true;
  flush.allow_write_stall = true;
  status = db_->Flush(flush, cfs_);
  if (!status.ok()) {
    return FromRocks(status, "recovery after an earlier write failure (flush)");
  }
  if (syncer_ != nullptr) syncer_->ClearFailures();
  needs_recovery_.store(false);
  return absl::OkStatus();
}

absl::Status RocksDatabase::Write(rocksdb::WriteBatch& batch,
                                  uint64_t* ticket) {
  if (absl::Status s = RecoverIfNeeded(); !s.ok()) return s;
  rocksdb::WriteOptions write_options;
  write_options.sync = options_.sync == SyncMode::kAlways;
#if defined(BURSAR_TSAN)
  absl::MutexLock one_writer(&tsan_write_mu_);
#endif
  const rocksdb::Status status = db_->Write(write_options, &batch);
  if (!status.ok()) {
    needs_recovery_.store(true);
    return FromRocks(status, "write");
  }
  *ticket = syncer_ != nullptr ? syncer_->NoteWrite() : 0;
  return absl::OkStatus();
}

absl::Status RocksDatabase::AwaitDurable(uint64_t ticket) {
  if (syncer_ == nullptr) return absl::OkStatus();
  if (absl::Status s = RecoverIfNeeded(); !s.ok()) return s;
  absl::Status status = syncer_->AwaitDurable(ticket);
  if (!status.ok()) needs_recovery_.store(true);
  return status;
}

void RocksDatabase::WhenDurable(uint64_t ticket,
                                WalSyncer::DoneCallback done) {
  if (syncer_ == nullptr) return std::move(done)(absl::OkStatus());
  if (absl::Status s = RecoverIfNeeded(); !s.ok()) {
    return std::move(done)(std::move(s));
  }
  syncer_->WhenDurable(
      ticket, [this, done = std::move(done)](absl::Status status) mutable {
        if (!status.ok()) needs_recovery_.store(true);
        std::move(done)(std::move(status));
      });
}

absl::Status RocksDatabase::CreateCheckpoint(const std::string& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status status = rocksdb::Checkpoint::Create(db_.get(), &raw);
  if (!status.ok()) return FromRocks(status, "checkpoint");
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // log_size_for_flush 0: flush the memtables first, so that the
  // checkpoint's table files hold everything and its WAL copy is small.
  status = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
  if (!status.ok()) {
    if (!status.IsIOError() && !status.IsInvalidArgument()) {
      return FromRocks(status, "checkpoint");
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create a backup in \"", dir, "\": ", status.ToString(),
        " (the directory must not exist yet and its parent must be a "
        "writable directory on the server)"));
  }
  return absl::OkStatus();
}

DatabaseStats RocksDatabase::Stats() const {
  DatabaseStats stats;
  if (statistics_ == nullptr) return stats;
  stats.write = Summarize(*statistics_, rocksdb::DB_WRITE);
  stats.wal_file_sync = Summarize(*statistics_, rocksdb::WAL_FILE_SYNC_MICROS);
  return stats;
}

uint64_t RocksDatabase::LatestTicket() const {
  return syncer_ != nullptr ? syncer_->LatestTicket() : 0;
}

void RocksDatabase::AddAudit(rocksdb::WriteBatch& batch, absl::Time time,
                             AuditRecord record) {
  record.set_time_micros(absl::ToUnixMicros(time));
  batch.Put(cfs_[kAuditCf], AuditKey(time, audit_seq_.fetch_add(1) + 1),
            record.SerializeAsString());
}

}  // namespace bursar::storage
