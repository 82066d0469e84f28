#include "storage/usage_rocks_store.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "rocksdb/db.h"
#include "storage/counter_set.h"
#include "storage/int64_add_operator.h"
#include "storage/records.pb.h"
#include "storage/rocks_database.h"

namespace bursar::storage {
namespace {

constexpr RocksDatabase::Cf kUsageCf = RocksDatabase::kUsageCf;
constexpr RocksDatabase::Cf kUsageLogCf = RocksDatabase::kUsageLogCf;
constexpr unsigned char kCounterSetKind = RocksDatabase::kUsageCounterSetKind;

// Key prefixes of the `usage` CF.
constexpr char kAttributionPrefix = 'a';
constexpr char kKpiPrefix = 'k';
constexpr char kSignalPrefix = 's';

// Counter kinds, the last byte of a counter key. Histogram buckets are
// kLatencyKind + bucket.
constexpr char kCost = 'c';
constexpr char kRequests = 'r';
constexpr char kSuccesses = 's';
constexpr char kFailures = 'f';
constexpr char kRetries = 't';
constexpr char kCancelled = 'x';
constexpr char kExpired = 'e';
constexpr char kExpiredEstimate = 'E';
constexpr char kInputTokens = 'i';
constexpr char kCachedInputTokens = 'k';
constexpr char kOutputTokens = 'o';
constexpr char kLatencyReports = 'l';
constexpr char kQualityReports = 'q';
constexpr char kQualitySum = 'Q';
constexpr unsigned char kLatencyKind = 0x80;

// The scalar counters and their kinds; the histogram is handled apart.
struct ScalarField {
  char kind;
  int64_t UsageCounts::*field;
  bool kpi_only;
};
constexpr ScalarField kScalars[] = {
    {kCost, &UsageCounts::cost_nanos, false},
    {kRequests, &UsageCounts::requests, false},
    {kSuccesses, &UsageCounts::successes, false},
    {kFailures, &UsageCounts::failures, false},
    {kRetries, &UsageCounts::retries, false},
    {kCancelled, &UsageCounts::cancelled, false},
    {kExpired, &UsageCounts::expired, false},
    {kExpiredEstimate, &UsageCounts::expired_estimate_nanos, false},
    {kInputTokens, &UsageCounts::input_tokens, false},
    {kCachedInputTokens, &UsageCounts::cached_input_tokens, false},
    {kOutputTokens, &UsageCounts::output_tokens, false},
    {kLatencyReports, &UsageCounts::latency_reports, true},
    {kQualityReports, &UsageCounts::quality_reports, true},
    {kQualitySum, &UsageCounts::quality_micros_sum, true},
};

void AppendBigEndian64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

bool ReadBigEndian64(absl::string_view& in, uint64_t* v) {
  if (in.size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) {
    *v = (*v << 8) | static_cast<unsigned char>(in[i]);
  }
  in.remove_prefix(8);
  return true;
}

// Hours as whole Unix seconds of their start, sign bit flipped so keys sort
// by time.
void AppendHour(std::string& out, absl::Time hour) {
  AppendBigEndian64(
      out, static_cast<uint64_t>(absl::ToUnixSeconds(hour)) ^ (1ULL << 63));
}

bool ReadHour(absl::string_view& in, absl::Time* hour) {
  uint64_t v = 0;
  if (!ReadBigEndian64(in, &v)) return false;
  *hour = absl::FromUnixSeconds(static_cast<int64_t>(v ^ (1ULL << 63)));
  return true;
}

absl::Time HourOf(absl::Time t) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  int64_t start = seconds - seconds % 3600;
  if (seconds % 3600 < 0) start -= 3600;
  return absl::FromUnixSeconds(start);
}

void AppendVarint(std::string& out, uint64_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

// At most `max_bits` significant bits (10 bytes for 64).
bool ReadVarint(absl::string_view& in, uint64_t* n, int max_bits = 64) {
  *n = 0;
  for (int shift = 0;; shift += 7) {
    if (in.empty() || shift >= max_bits) return false;
    const auto byte = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    *n |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

// Strings are length-prefixed (varint), so any byte may appear in them.
void AppendString(std::string& out, absl::string_view s) {
  AppendVarint(out, s.size());
  out.append(s.data(), s.size());
}

bool ReadString(absl::string_view& in, std::string* s) {
  uint64_t n = 0;
  if (!ReadVarint(in, &n, /*max_bits=*/35)) return false;
  if (in.size() < n) return false;
  s->assign(in.data(), n);
  in.remove_prefix(n);
  return true;
}

// The attribution row key without its kind byte.
std::string AttributionRowKey(absl::Time hour, absl::string_view budget,
                              absl::string_view instance,
                              const UsageUpdate& update) {
  std::string key(1, kAttributionPrefix);
  AppendHour(key, hour);
  AppendString(key, budget);
  AppendString(key, instance);
  AppendString(key, update.model);
  AppendString(key, update.provider);
  key.push_back(static_cast<char>(update.dimensions.size()));
  for (const auto& [k, v] : update.dimensions) {
    AppendString(key, k);
    AppendString(key, v);
  }
  return key;
}

std::string KpiPrefix(absl::string_view budget, absl::string_view instance) {
  std::string key(1, kKpiPrefix);
  AppendString(key, budget);
  AppendString(key, instance);
  return key;
}

// One Merge per row: every non-zero counter of `counts` in one CounterSet
// operand (KPI rows also carry the KPI-only counters and the histogram).
void MergeCounts(const RocksDatabase& database, rocksdb::WriteBatch& batch,
                 std::string row, const UsageCounts& counts, bool kpi) {
  std::string operand;
  for (const ScalarField& f : kScalars) {
    if (f.kpi_only && !kpi) continue;
    const int64_t value = counts.*(f.field);
    if (value != 0) AppendCounter(operand, f.kind, value);
  }
  if (kpi) {
    for (int b = 0; b < kLatencyBuckets; ++b) {
      if (counts.latency_histogram[b] == 0) continue;
      AppendCounter(operand, kLatencyKind + b, counts.latency_histogram[b]);
    }
  }
  if (operand.empty()) return;
  row.push_back(static_cast<char>(kCounterSetKind));
  batch.Merge(database.cf(kUsageCf), row, operand);
}

// Adds a stored counter (kind byte + value) to `counts`. False for an
// unknown kind.
bool AddCounter(char kind, int64_t value, UsageCounts& counts) {
  const auto k = static_cast<unsigned char>(kind);
  if (k >= kLatencyKind && k < kLatencyKind + kLatencyBuckets) {
    counts.latency_histogram[k - kLatencyKind] += value;
    return true;
  }
  for (const ScalarField& f : kScalars) {
    if (f.kind == kind) {
      counts.*(f.field) += value;
      return true;
    }
  }
  return false;
}

// Adds the counters stored under `key` (a CounterSet, or one int64 counter
// of the kind named by the key's last byte, as written before counter sets)
// to `counts`. False if the value or a kind is unreadable.
bool AddStored(const rocksdb::Slice& key, const rocksdb::Slice& value,
               UsageCounts& counts) {
  const auto kind = static_cast<unsigned char>(key[key.size() - 1]);
  if (kind != kCounterSetKind) {
    int64_t counter = 0;
    return DecodeInt64(value, &counter) &&
           AddCounter(static_cast<char>(kind), counter, counts);
  }
  CounterSet set;
  if (!set.AddEncoded(absl::string_view(value.data(), value.size()))) {
    return false;
  }
  bool known = true;
  set.ForEach([&](unsigned char k, int64_t v) {
    known = AddCounter(static_cast<char>(k), v, counts) && known;
  });
  return known;
}

absl::Status Corrupt(absl::string_view what, const rocksdb::Slice& key) {
  return absl::DataLossError(
      absl::StrCat("usage ", what, " at key \"",
                   absl::CHexEscape(absl::string_view(key.data(), key.size())),
                   "\" is unreadable"));
}

// Appends to `rows` the KPI rows of one scope (keys `prefix` + hour) from
// `lower` up to, not including, `upper`, read through `it`.
absl::Status ReadKpiRange(rocksdb::Iterator& it, absl::string_view prefix,
                          absl::string_view lower, absl::string_view upper,
                          KpiRowList& rows) {
  const rocksdb::Slice upper_slice(upper.data(), upper.size());
  for (it.Seek(rocksdb::Slice(lower.data(), lower.size()));
       it.Valid() && it.key().compare(upper_slice) < 0; it.Next()) {
    const rocksdb::Slice key = it.key();
    if (!key.starts_with(rocksdb::Slice(prefix.data(), prefix.size())) ||
        key.size() != prefix.size() + 9) {
      return Corrupt("KPI counter", key);
    }
    absl::string_view in(key.data() + prefix.size(), 8);
    absl::Time hour;
    ReadHour(in, &hour);
    if (rows.empty() || rows.back().first != hour) {
      rows.emplace_back(hour, UsageCounts());
    }
    if (!AddStored(key, it.value(), rows.back().second)) {
      return Corrupt("KPI counter", key);
    }
  }
  return FromRocks(it.status(), "reading KPIs");
}

// Adds the per-hour sums of updates not folded yet to `rows` (oldest
// first), as rows of their own for hours that have none.
void AddPending(const std::map<absl::Time, UsageCounts>& pending,
                KpiRowList& rows) {
  if (pending.empty()) return;
  KpiRowList merged;
  merged.reserve(rows.size() + pending.size());
  auto p = pending.begin();
  for (auto& row : rows) {
    for (; p != pending.end() && p->first < row.first; ++p) {
      merged.emplace_back(p->first, p->second);
    }
    if (p != pending.end() && p->first == row.first) {
      row.second.Add(p->second);
      ++p;
    }
    merged.push_back(std::move(row));
  }
  for (; p != pending.end(); ++p) merged.emplace_back(p->first, p->second);
  rows = std::move(merged);
}

// The attribution part of a KPI-carrying update: without the KPI-only
// counters and the histogram (what MergeCounts writes to an attribution
// row).
UsageCounts AttributionPart(const UsageCounts& counts) {
  UsageCounts out;
  for (const ScalarField& f : kScalars) {
    if (!f.kpi_only) out.*(f.field) = counts.*(f.field);
  }
  return out;
}

// Calls visit(row key without its kind byte, kpi) for every row `update`
// adds to: the call's own attribution row, then per budget instance its
// attribution row and its KPI row.
void ForEachRow(const UsageUpdate& update,
                absl::FunctionRef<void(std::string row, bool kpi)> visit) {
  const absl::Time hour = HourOf(update.time);
  visit(AttributionRowKey(hour, "", "", update), /*kpi=*/false);
  for (const auto& [budget, instance] : update.budgets) {
    visit(AttributionRowKey(hour, budget, instance, update), /*kpi=*/false);
    std::string kpi = KpiPrefix(budget, instance);
    AppendHour(kpi, hour);
    visit(std::move(kpi), /*kpi=*/true);
  }
}

// Parses an attribution row key without its kind byte ('a' hour budget
// instance model provider dimensions).
bool ParseAttributionRow(absl::string_view row, UsageRowKey* parsed) {
  if (row.empty() || row[0] != kAttributionPrefix) return false;
  absl::string_view in = row.substr(1);
  if (!ReadHour(in, &parsed->hour) || !ReadString(in, &parsed->budget) ||
      !ReadString(in, &parsed->instance) || !ReadString(in, &parsed->model) ||
      !ReadString(in, &parsed->provider) || in.empty()) {
    return false;
  }
  const int dims = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  for (int i = 0; i < dims; ++i) {
    std::string k, v;
    if (!ReadString(in, &k) || !ReadString(in, &v)) return false;
    parsed->dimensions.emplace_back(std::move(k), std::move(v));
  }
  return in.empty();
}

// Usage log keys: the sequence number, 8 bytes big-endian (keys sort by
// it, and a run of sequence numbers is one key range).
std::string LogKey(uint64_t sequence) {
  std::string key;
  AppendBigEndian64(key, sequence);
  return key;
}

bool ReadLogKey(const rocksdb::Slice& key, uint64_t* sequence) {
  absl::string_view in(key.data(), key.size());
  return in.size() == 8 && ReadBigEndian64(in, sequence);
}

// A usage record (storage/README.md, "usage log"): a format byte (1), the
// hour as a zigzag varint count of hours since 1970, model, provider, the
// dimensions and the budget instances (a varint count, then string pairs),
// then (kind byte, zigzag varint) for every non-zero counter, to the end.
constexpr char kUsageRecordFormat = 1;

void EncodeUsageRecord(const UsageUpdate& update, std::string& out) {
  out.push_back(kUsageRecordFormat);
  AppendVarint(out, ZigZag(absl::ToUnixSeconds(HourOf(update.time)) / 3600));
  AppendString(out, update.model);
  AppendString(out, update.provider);
  AppendVarint(out, update.dimensions.size());
  for (const auto& [k, v] : update.dimensions) {
    AppendString(out, k);
    AppendString(out, v);
  }
  AppendVarint(out, update.budgets.size());
  for (const auto& [budget, instance] : update.budgets) {
    AppendString(out, budget);
    AppendString(out, instance);
  }
  for (const ScalarField& f : kScalars) {
    const int64_t value = update.counts.*(f.field);
    if (value == 0) continue;
    out.push_back(f.kind);
    AppendVarint(out, ZigZag(value));
  }
  for (int b = 0; b < kLatencyBuckets; ++b) {
    const int64_t value = update.counts.latency_histogram[b];
    if (value == 0) continue;
    out.push_back(static_cast<char>(kLatencyKind + b));
    AppendVarint(out, ZigZag(value));
  }
}

// Decodes a usage record into *update (its time is the hour's start).
// False if it is unreadable.
bool DecodeUsageRecord(absl::string_view in, UsageUpdate* update) {
  if (in.empty() || in[0] != kUsageRecordFormat) return false;
  in.remove_prefix(1);
  uint64_t v = 0;
  if (!ReadVarint(in, &v)) return false;
  update->time = absl::FromUnixSeconds(UnZigZag(v) * 3600);
  if (!ReadString(in, &update->model) || !ReadString(in, &update->provider)) {
    return false;
  }
  for (auto* pairs : {&update->dimensions, &update->budgets}) {
    if (!ReadVarint(in, &v) || v > in.size()) return false;
    pairs->resize(v);
    for (auto& [first, second] : *pairs) {
      if (!ReadString(in, &first) || !ReadString(in, &second)) return false;
    }
  }
  update->counts = UsageCounts();
  while (!in.empty()) {
    const char kind = in[0];
    in.remove_prefix(1);
    if (!ReadVarint(in, &v) || !AddCounter(kind, UnZigZag(v), update->counts)) {
      return false;
    }
  }
  return true;
}

// Records one fold's batch takes at most; more are folded in several
// batches. A batch is one RocksDB write: while its few hundred memtable
// inserts run, the Checks and Reports writing after it wait in RocksDB's
// write queue, so the bound keeps that wait near a millisecond. Batches of
// 8 or 16 records were measured worse (decision 028): each batch queues,
// and the Checks wait behind more of them.
constexpr uint64_t kMaxRecordsPerFold = 64;
// A read folds first when more records than this wait (else it adds them
// in memory): reads then decode at most this many records plus those in
// flight.
constexpr uint64_t kFoldOnReadAbove = 64;

class RocksUsageStore final : public UsageStore {
 public:
  RocksUsageStore(std::shared_ptr<RocksDatabase> database,
                  const UsageStoreOptions& options)
      : database_(std::move(database)), options_(options) {}

  ~RocksUsageStore() override {
    if (folder_.joinable()) {
      stop_.Notify();
      folder_.join();
    }
    // Settlements from now on write their rows directly; records still in
    // the log are folded by the next open.
    if (attached_) database_->usage_log().Detach();
  }

  absl::Status LoadSignals() {
    std::unique_ptr<rocksdb::Iterator> it(database_->db()->NewIterator(
        rocksdb::ReadOptions(), database_->cf(kUsageCf)));
    const std::string prefix(1, kSignalPrefix);
    absl::MutexLock lock(&mu_);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      SignalRecord record;
      if (!record.ParseFromArray(it->value().data(),
                                 static_cast<int>(it->value().size()))) {
        return Corrupt("signal", it->key());
      }
      Signal signal;
      signal.name = record.name();
      signal.value = record.value();
      signal.scope = record.scope();
      signal.time = absl::FromUnixMicros(record.time_micros());
      signal.reported_by = record.reported_by();
      signals_[signal.name] = std::move(signal);
    }
    return FromRocks(it->status(), "reading signals");
  }

  // Finds the records left in the usage log, resumes its numbering after
  // them, folds them all, and starts the folder.
  absl::Status OpenLog() {
    bool first_found = false;
    uint64_t first = 0;
    uint64_t next = 0;
    {
      std::unique_ptr<rocksdb::Iterator> it(database_->db()->NewIterator(
          rocksdb::ReadOptions(), database_->cf(kUsageLogCf)));
      it->SeekToFirst();
      if (it->Valid()) {
        if (!ReadLogKey(it->key(), &first))
          return Corrupt("log key", it->key());
        first_found = true;
        it->SeekToLast();
        uint64_t last = 0;
        if (!it->Valid() || !ReadLogKey(it->key(), &last)) {
          return it->Valid() ? Corrupt("log key", it->key())
                             : FromRocks(it->status(), "reading the usage log");
        }
        next = last + 1;
      }
      if (absl::Status s = FromRocks(it->status(), "reading the usage log");
          !s.ok()) {
        return s;
      }
    }
    // Numbers are not reused across restarts either (a record is Put once
    // and SingleDeleted once): they resume after the largest one stored,
    // and not below the open's time in microseconds.
    next = std::max<uint64_t>(next, static_cast<uint64_t>(std::max<int64_t>(
                                        0, absl::ToUnixMicros(absl::Now()))));
    floor_.store(first_found ? first : next);
    database_->usage_log().Attach(next);
    attached_ = true;
    if (absl::Status s = FoldPending(); !s.ok()) return s;
    if (options_.fold_interval > absl::ZeroDuration() &&
        options_.fold_interval < absl::InfiniteDuration()) {
      folder_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "usage-fold");
        while (!stop_.WaitForNotificationWithTimeout(options_.fold_interval)) {
          // A failed fold leaves its records in the log; the next one (or
          // a read) takes them.
          FoldPending().IgnoreError();
        }
      });
    }
    return absl::OkStatus();
  }

  absl::Status Record(const UsageUpdate& update) override {
    rocksdb::WriteBatch batch;
    uint64_t ticket = 0;
    {
      const UsageDeltaLog::Guard logged =
          AddUsageToBatch(*database_, batch, &update);
      if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) return s;
    }
    return database_->AwaitDurable(ticket);
  }

  absl::Status FoldPending() override {
    absl::MutexLock lock(&fold_mu_);
    return FoldAllLocked();
  }

  absl::StatusOr<std::vector<UsageRow>> Rows(absl::Time start,
                                             absl::Time end) const override {
    std::vector<UsageRow> rows;
    if (end <= start) return rows;
    const absl::Time lower_hour =
        HourOf(start) < start ? HourOf(start) + absl::Hours(1) : HourOf(start);
    const absl::Time upper_hour =
        HourOf(end) < end ? HourOf(end) + absl::Hours(1) : HourOf(end);
    const ReadView view = BeginRead();
    // The records not folded yet, by row key (without the kind byte).
    absl::flat_hash_map<std::string, UsageCounts> pending;
    absl::Status read = ForEachPending(view, [&](const UsageUpdate& update) {
      const absl::Time hour = HourOf(update.time);
      if (hour < lower_hour || hour >= upper_hour) return;
      const UsageCounts counts = AttributionPart(update.counts);
      ForEachRow(update, [&](std::string row, bool kpi) {
        if (!kpi) pending[std::move(row)].Add(counts);
      });
    });
    if (!read.ok()) return read;

    std::string lower(1, kAttributionPrefix);
    AppendHour(lower, lower_hour);
    std::string upper(1, kAttributionPrefix);
    AppendHour(upper, upper_hour);
    rocksdb::ReadOptions options;
    options.snapshot = view.snapshot->snapshot();
    const rocksdb::Slice upper_slice(upper);
    options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, database_->cf(kUsageCf)));
    // With records pending, the stored rows' keys, to merge them in order.
    std::vector<std::string> row_keys;
    std::string current_row;
    for (it->Seek(lower); it->Valid(); it->Next()) {
      const rocksdb::Slice key = it->key();
      if (key.size() < 2) return Corrupt("row", key);
      const absl::string_view row(key.data(), key.size() - 1);
      if (rows.empty() || row != current_row) {
        UsageRow parsed;
        if (!ParseAttributionRow(row, &parsed.key)) return Corrupt("row", key);
        // Hours before `start` share no key with it; hours inside the range
        // that start after `end` are cut by the upper bound.
        rows.push_back(std::move(parsed));
        current_row.assign(row.data(), row.size());
        if (!pending.empty()) {
          row_keys.push_back(current_row);
          if (auto p = pending.find(current_row); p != pending.end()) {
            rows.back().counts.Add(p->second);
            pending.erase(p);
          }
        }
      }
      if (!AddStored(key, it->value(), rows.back().counts)) {
        return Corrupt("counter", key);
      }
    }
    if (absl::Status s = FromRocks(it->status(), "reading usage"); !s.ok()) {
      return s;
    }
    if (pending.empty()) return rows;
    // Rows that only pending records have: merged in, in key order.
    std::vector<std::pair<std::string, UsageRow>> keyed;
    keyed.reserve(rows.size() + pending.size());
    for (size_t i = 0; i < row_keys.size(); ++i) {
      keyed.emplace_back(std::move(row_keys[i]), std::move(rows[i]));
    }
    for (auto& [row, counts] : pending) {
      UsageRow parsed;
      if (!ParseAttributionRow(row, &parsed.key)) {
        return absl::InternalError("a usage record made an unreadable row key");
      }
      parsed.counts = counts;
      keyed.emplace_back(row, std::move(parsed));
    }
    std::sort(keyed.begin(), keyed.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    rows.clear();
    for (auto& [row, parsed] : keyed) rows.push_back(std::move(parsed));
    return rows;
  }

  absl::StatusOr<std::vector<KpiRowList>> ReadKpiRows(
      absl::Span<const KpiRowsQuery> queries) const override {
    // Each query's hours [lower, upper): whole hours inside [start, end).
    struct Range {
      absl::Time lower_hour;
      absl::Time upper_hour;
      std::map<absl::Time, UsageCounts> pending;
    };
    std::vector<Range> ranges(queries.size());
    absl::flat_hash_map<std::pair<absl::string_view, absl::string_view>,
                        std::vector<size_t>>
        queries_of;
    for (size_t q = 0; q < queries.size(); ++q) {
      const KpiRowsQuery& query = queries[q];
      if (query.end <= query.start) continue;
      ranges[q].lower_hour = HourOf(query.start) < query.start
                                 ? HourOf(query.start) + absl::Hours(1)
                                 : HourOf(query.start);
      ranges[q].upper_hour = HourOf(query.end) < query.end
                                 ? HourOf(query.end) + absl::Hours(1)
                                 : HourOf(query.end);
      queries_of[{query.budget, query.instance}].push_back(q);
    }
    std::vector<KpiRowList> rows(queries.size());
    if (queries_of.empty()) return rows;

    const ReadView view = BeginRead();
    absl::Status read = ForEachPending(view, [&](const UsageUpdate& update) {
      const absl::Time hour = HourOf(update.time);
      for (const auto& [budget, instance] : update.budgets) {
        auto of = queries_of.find(std::make_pair(absl::string_view(budget),
                                                 absl::string_view(instance)));
        if (of == queries_of.end()) continue;
        for (size_t q : of->second) {
          Range& range = ranges[q];
          if (hour < range.lower_hour || hour >= range.upper_hour) continue;
          range.pending[hour].Add(update.counts);
        }
      }
    });
    if (!read.ok()) return read;

    rocksdb::ReadOptions options;
    options.snapshot = view.snapshot->snapshot();
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, database_->cf(kUsageCf)));
    for (const auto& [scope, indexes] : queries_of) {
      const std::string prefix = KpiPrefix(scope.first, scope.second);
      for (size_t q : indexes) {
        const Range& range = ranges[q];
        std::string lower = prefix;
        AppendHour(lower, range.lower_hour);
        std::string upper = prefix;
        AppendHour(upper, range.upper_hour);
        if (absl::Status s = ReadKpiRange(*it, prefix, lower, upper, rows[q]);
            !s.ok()) {
          return s;
        }
        AddPending(range.pending, rows[q]);
      }
    }
    return rows;
  }

  absl::Status DeleteBefore(absl::Time cutoff) override {
    // Records of the deleted hours must not bring their rows back when
    // they are folded later: fold them first.
    absl::MutexLock fold_lock(&fold_mu_);
    if (absl::Status s = FoldAllLocked(); !s.ok()) return s;
    const absl::Time hour = HourOf(cutoff);
    rocksdb::ColumnFamilyHandle* const cf = database_->cf(kUsageCf);
    rocksdb::WriteBatch batch;
    // Attribution rows are time-first: one range.
    std::string end(1, kAttributionPrefix);
    AppendHour(end, hour);
    batch.DeleteRange(cf, std::string(1, kAttributionPrefix), end);
    // KPI rows are scope-first: one range per (budget, instance), found
    // with one seek each.
    rocksdb::ReadOptions options;
    const std::string upper(1, kKpiPrefix + 1);
    const rocksdb::Slice upper_slice(upper);
    options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, cf));
    for (it->Seek(std::string(1, kKpiPrefix)); it->Valid();) {
      absl::string_view in(it->key().data() + 1, it->key().size() - 1);
      std::string budget, instance;
      if (!ReadString(in, &budget) || !ReadString(in, &instance)) {
        return Corrupt("KPI counter", it->key());
      }
      const std::string prefix = KpiPrefix(budget, instance);
      std::string scope_end = prefix;
      AppendHour(scope_end, hour);
      batch.DeleteRange(cf, prefix, scope_end);
      // Past every key of this scope (hour and kind bytes are below 0xff
      // ... 0xff).
      it->Seek(prefix + std::string(10, '\xff'));
    }
    if (absl::Status s = FromRocks(it->status(), "reading KPIs"); !s.ok()) {
      return s;
    }
    uint64_t ticket = 0;
    if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) return s;
    return database_->AwaitDurable(ticket);
  }

  absl::Status PutSignal(const Signal& signal) override {
    SignalRecord record;
    record.set_name(signal.name);
    record.set_value(signal.value);
    record.set_scope(signal.scope);
    record.set_time_micros(absl::ToUnixMicros(signal.time));
    record.set_reported_by(signal.reported_by);
    rocksdb::WriteBatch batch;
    batch.Put(database_->cf(kUsageCf), absl::StrCat("s", signal.name),
              record.SerializeAsString());
    uint64_t ticket = 0;
    {
      // The write and the memory change in one order for concurrent puts
      // of one name.
      absl::MutexLock lock(&mu_);
      if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) return s;
      signals_[signal.name] = signal;
    }
    return database_->AwaitDurable(ticket);
  }

  std::vector<Signal> ListSignals() const override {
    absl::MutexLock lock(&mu_);
    std::vector<Signal> out;
    out.reserve(signals_.size());
    for (const auto& [name, signal] : signals_) out.push_back(signal);
    std::sort(out.begin(), out.end(),
              [](const Signal& a, const Signal& b) { return a.name < b.name; });
    return out;
  }

  std::optional<Signal> GetSignal(absl::string_view name) const override {
    absl::MutexLock lock(&mu_);
    auto it = signals_.find(name);
    if (it == signals_.end()) return std::nullopt;
    return it->second;
  }

 private:
  // Releases a RocksDB snapshot.
  class Snapshot {
   public:
    Snapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
    ~Snapshot() { db_->ReleaseSnapshot(snapshot_); }
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;
    const rocksdb::Snapshot* snapshot() const { return snapshot_; }

   private:
    rocksdb::DB* const db_;
    const rocksdb::Snapshot* const snapshot_;
  };

  // What a read sees: the rows and the log at one snapshot, and the first
  // log record not folded into those rows.
  struct ReadView {
    uint64_t floor = 0;
    std::unique_ptr<Snapshot> snapshot;
  };

  // Folds first when many records wait (best effort: a failed fold leaves
  // them for the read to add), then takes the floor and only then the
  // snapshot. The floor moves up only after a fold's batch is applied, so
  // every record below the floor read here is folded into the snapshot's
  // rows, and every record from it on is either in the snapshot's log or
  // (folded after the floor was read) deleted from it and in its rows.
  ReadView BeginRead() const {
    if (attached_ && database_->usage_log().SettledBelow() >
                         floor_.load() + kFoldOnReadAbove) {
      absl::MutexLock lock(&fold_mu_);
      FoldAllLocked().IgnoreError();
    }
    ReadView view;
    view.floor = floor_.load();
    view.snapshot = std::make_unique<Snapshot>(database_->db());
    return view;
  }

  // Calls visit for every record of the log from view.floor on.
  absl::Status ForEachPending(
      const ReadView& view,
      absl::FunctionRef<void(const UsageUpdate&)> visit) const {
    rocksdb::ReadOptions options;
    options.snapshot = view.snapshot->snapshot();
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, database_->cf(kUsageLogCf)));
    UsageUpdate update;
    for (it->Seek(LogKey(view.floor)); it->Valid(); it->Next()) {
      if (it->key().size() != 8 ||
          !DecodeUsageRecord(
              absl::string_view(it->value().data(), it->value().size()),
              &update)) {
        return Corrupt("record", it->key());
      }
      visit(update);
    }
    return FromRocks(it->status(), "reading the usage log");
  }

  absl::Status FoldAllLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(fold_mu_) {
    bool done = false;
    while (!done) {
      if (absl::Status s = FoldSomeLocked(&done); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Folds the records from the floor up to the log's SettledBelow() (at
  // most kMaxRecordsPerFold records; *done when it got there) in one batch: one
  // Merge per row they touch and a SingleDelete of each record folded. No
  // record can appear below SettledBelow() any more, so the new floor
  // leaves none behind. (Not a DeleteRange: RocksDB 7.8 fragments every
  // range tombstone of a memtable again for each new iterator, and reads
  // and folds make one on this family each time; decision 022.)
  absl::Status FoldSomeLocked(bool* done) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(fold_mu_) {
    *done = true;
    const uint64_t floor = floor_.load();
    uint64_t end = database_->usage_log().SettledBelow();
    if (end <= floor) return absl::OkStatus();
    const std::string lower = LogKey(floor);
    const std::string upper = LogKey(end);
    rocksdb::ReadOptions options;
    const rocksdb::Slice upper_slice(upper);
    options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, database_->cf(kUsageLogCf)));
    struct Folded {
      UsageCounts counts;
      bool kpi = false;
    };
    absl::flat_hash_map<std::string, Folded> rows;
    rocksdb::WriteBatch batch;
    UsageUpdate update;
    uint64_t records = 0;
    for (it->Seek(lower); it->Valid(); it->Next()) {
      if (it->key().size() != 8 ||
          !DecodeUsageRecord(
              absl::string_view(it->value().data(), it->value().size()),
              &update)) {
        return Corrupt("record", it->key());
      }
      if (records == kMaxRecordsPerFold) {
        // The rest in the next batch, from this record on.
        if (!ReadLogKey(it->key(), &end)) return Corrupt("record", it->key());
        *done = false;
        break;
      }
      ++records;
      // Each record is Put once and deleted once: a SingleDelete, which a
      // flush drops together with the Put.
      batch.SingleDelete(database_->cf(kUsageLogCf), it->key());
      ForEachRow(update, [&](std::string row, bool kpi) {
        Folded& folded = rows[std::move(row)];
        folded.kpi = kpi;
        folded.counts.Add(update.counts);
      });
    }
    if (absl::Status s = FromRocks(it->status(), "reading the usage log");
        !s.ok()) {
      return s;
    }
    if (records > 0) {
      for (auto& [row, folded] : rows) {
        // MergeCounts leaves the KPI-only counters out of attribution rows.
        MergeCounts(*database_, batch, row, folded.counts, folded.kpi);
      }
      // Not awaited: the fold's batch follows its records in the WAL, so a
      // crash that loses it loses nothing that it folded.
      uint64_t ticket = 0;
      if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) return s;
    }
    floor_.store(end);
    return absl::OkStatus();
  }

  const std::shared_ptr<RocksDatabase> database_;
  const UsageStoreOptions options_;
  // Set once OpenLog attached the store to the database's usage log.
  bool attached_ = false;
  // One fold at a time.
  mutable absl::Mutex fold_mu_;
  // Every log record below it is folded into the rows (or was never
  // written); written under fold_mu_, read by readers without it.
  mutable std::atomic<uint64_t> floor_{0};
  absl::Notification stop_;
  std::thread folder_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Signal> signals_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int LatencyBucket(absl::Duration latency) {
  const int64_t ms = absl::ToInt64Milliseconds(latency);
  if (ms < 1) return 0;
  int bucket = 1;
  for (int64_t bound = 2; bound <= ms && bucket < kLatencyBuckets - 1;
       bound <<= 1) {
    ++bucket;
  }
  return bucket;
}

absl::Duration LatencyBucketBound(int bucket) {
  if (bucket <= 0) return absl::Milliseconds(1);
  if (bucket >= kLatencyBuckets - 1) {
    return absl::Milliseconds(int64_t{1} << (kLatencyBuckets - 2));
  }
  return absl::Milliseconds(int64_t{1} << bucket);
}

void UsageCounts::Add(const UsageCounts& other) { AddScaled(other, 1, 1); }

void UsageCounts::AddScaled(const UsageCounts& other, int64_t numerator,
                            int64_t denominator) {
  auto scale = [&](int64_t v) {
    return static_cast<int64_t>(static_cast<__int128>(v) * numerator /
                                denominator);
  };
  for (const ScalarField& f : kScalars) {
    this->*(f.field) += scale(other.*(f.field));
  }
  for (int b = 0; b < kLatencyBuckets; ++b) {
    latency_histogram[b] += scale(other.latency_histogram[b]);
  }
}

bool UsageCounts::operator==(const UsageCounts& other) const {
  for (const ScalarField& f : kScalars) {
    if (this->*(f.field) != other.*(f.field)) return false;
  }
  return latency_histogram == other.latency_histogram;
}

UsageDeltaLog::Guard AddUsageToBatch(const RocksDatabase& database,
                                     rocksdb::WriteBatch& batch,
                                     const UsageUpdate* update) {
  if (update == nullptr) return UsageDeltaLog::Guard();
  UsageDeltaLog::Guard guard = database.usage_log().Begin();
  if (!guard.held()) {
    ForEachRow(*update, [&](std::string row, bool kpi) {
      MergeCounts(database, batch, std::move(row), update->counts, kpi);
    });
    return guard;
  }
  // Reused per thread: a settlement allocates nothing for its record.
  thread_local std::string record;
  record.clear();
  EncodeUsageRecord(*update, record);
  char key[8];
  for (int i = 0; i < 8; ++i) {
    key[i] = static_cast<char>((guard.sequence() >> (56 - 8 * i)) & 0xff);
  }
  batch.Put(database.cf(kUsageLogCf), rocksdb::Slice(key, sizeof(key)), record);
  return guard;
}

absl::StatusOr<std::unique_ptr<UsageStore>> NewRocksUsageStore(
    std::shared_ptr<RocksDatabase> database, const UsageStoreOptions& options) {
  auto store = std::make_unique<RocksUsageStore>(std::move(database), options);
  if (absl::Status s = store->LoadSignals(); !s.ok()) return s;
  if (absl::Status s = store->OpenLog(); !s.ok()) return s;
  return store;
}

}  // namespace bursar::storage
