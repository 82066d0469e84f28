#include "storage/usage_rocks_store.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "storage/counter_set.h"
#include "storage/int64_add_operator.h"
#include "storage/records.pb.h"
#include "storage/rocks_database.h"

namespace bursar::storage {
namespace {

constexpr RocksDatabase::Cf kUsageCf = RocksDatabase::kUsageCf;
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

// Strings are length-prefixed (varint), so any byte may appear in them.
void AppendString(std::string& out, absl::string_view s) {
  uint64_t n = s.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  out.append(s.data(), s.size());
}

bool ReadString(absl::string_view& in, std::string* s) {
  uint64_t n = 0;
  for (int shift = 0;; shift += 7) {
    if (in.empty() || shift > 28) return false;
    const auto byte = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    n |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) break;
  }
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

class RocksUsageStore final : public UsageStore {
 public:
  explicit RocksUsageStore(std::shared_ptr<RocksDatabase> database)
      : database_(std::move(database)) {}

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

  absl::Status Record(const UsageUpdate& update) override {
    rocksdb::WriteBatch batch;
    AddUsageToBatch(*database_, batch, update);
    uint64_t ticket = 0;
    if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) return s;
    return database_->AwaitDurable(ticket);
  }

  absl::StatusOr<std::vector<UsageRow>> Rows(absl::Time start,
                                             absl::Time end) const override {
    std::vector<UsageRow> rows;
    if (end <= start) return rows;
    std::string lower(1, kAttributionPrefix);
    AppendHour(lower, HourOf(start) < start ? HourOf(start) + absl::Hours(1)
                                            : HourOf(start));
    std::string upper(1, kAttributionPrefix);
    AppendHour(upper,
               HourOf(end) < end ? HourOf(end) + absl::Hours(1) : HourOf(end));
    rocksdb::ReadOptions options;
    const rocksdb::Slice upper_slice(upper);
    options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, database_->cf(kUsageCf)));
    std::string current_row;
    for (it->Seek(lower); it->Valid(); it->Next()) {
      const rocksdb::Slice key = it->key();
      if (key.size() < 2) return Corrupt("row", key);
      const absl::string_view row(key.data(), key.size() - 1);
      if (rows.empty() || row != current_row) {
        UsageRow parsed;
        absl::string_view in = row.substr(1);
        int dims = 0;
        if (!ReadHour(in, &parsed.key.hour) ||
            !ReadString(in, &parsed.key.budget) ||
            !ReadString(in, &parsed.key.instance) ||
            !ReadString(in, &parsed.key.model) ||
            !ReadString(in, &parsed.key.provider) || in.empty()) {
          return Corrupt("row", key);
        }
        dims = static_cast<unsigned char>(in[0]);
        in.remove_prefix(1);
        for (int i = 0; i < dims; ++i) {
          std::string k, v;
          if (!ReadString(in, &k) || !ReadString(in, &v)) {
            return Corrupt("row", key);
          }
          parsed.key.dimensions.emplace_back(std::move(k), std::move(v));
        }
        if (!in.empty()) return Corrupt("row", key);
        // Hours before `start` share no key with it; hours inside the range
        // that start after `end` are cut by the upper bound.
        rows.push_back(std::move(parsed));
        current_row.assign(row.data(), row.size());
      }
      if (!AddStored(key, it->value(), rows.back().counts)) {
        return Corrupt("counter", key);
      }
    }
    if (absl::Status s = FromRocks(it->status(), "reading usage"); !s.ok()) {
      return s;
    }
    return rows;
  }

  absl::StatusOr<std::vector<std::pair<absl::Time, UsageCounts>>> KpiRows(
      absl::string_view budget, absl::string_view instance, absl::Time start,
      absl::Time end) const override {
    std::vector<std::pair<absl::Time, UsageCounts>> rows;
    if (end <= start) return rows;
    const std::string prefix = KpiPrefix(budget, instance);
    std::string lower = prefix;
    AppendHour(lower, HourOf(start) < start ? HourOf(start) + absl::Hours(1)
                                            : HourOf(start));
    std::string upper = prefix;
    AppendHour(upper,
               HourOf(end) < end ? HourOf(end) + absl::Hours(1) : HourOf(end));
    rocksdb::ReadOptions options;
    const rocksdb::Slice upper_slice(upper);
    options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(options, database_->cf(kUsageCf)));
    for (it->Seek(lower); it->Valid(); it->Next()) {
      const rocksdb::Slice key = it->key();
      if (!key.starts_with(prefix) || key.size() != prefix.size() + 9) {
        return Corrupt("KPI counter", key);
      }
      absl::string_view in(key.data() + prefix.size(), 8);
      absl::Time hour;
      ReadHour(in, &hour);
      if (rows.empty() || rows.back().first != hour) {
        rows.emplace_back(hour, UsageCounts());
      }
      if (!AddStored(key, it->value(), rows.back().second)) {
        return Corrupt("KPI counter", key);
      }
    }
    if (absl::Status s = FromRocks(it->status(), "reading KPIs"); !s.ok()) {
      return s;
    }
    return rows;
  }

  absl::Status DeleteBefore(absl::Time cutoff) override {
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
  const std::shared_ptr<RocksDatabase> database_;
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

void AddUsageToBatch(const RocksDatabase& database, rocksdb::WriteBatch& batch,
                     const UsageUpdate& update) {
  const absl::Time hour = HourOf(update.time);
  MergeCounts(database, batch, AttributionRowKey(hour, "", "", update),
              update.counts, /*kpi=*/false);
  for (const auto& [budget, instance] : update.budgets) {
    MergeCounts(database, batch,
                AttributionRowKey(hour, budget, instance, update),
                update.counts, /*kpi=*/false);
    std::string kpi = KpiPrefix(budget, instance);
    AppendHour(kpi, hour);
    MergeCounts(database, batch, std::move(kpi), update.counts, /*kpi=*/true);
  }
}

absl::StatusOr<std::unique_ptr<UsageStore>> NewRocksUsageStore(
    std::shared_ptr<RocksDatabase> database) {
  auto store = std::make_unique<RocksUsageStore>(std::move(database));
  if (absl::Status s = store->LoadSignals(); !s.ok()) return s;
  return store;
}

}  // namespace bursar::storage
