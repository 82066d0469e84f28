// AlertStore on the shared RocksDB database, in the `alerts` column family
// (storage/README.md):
//   f/<rule>\0<scope>\0<period>  -> the alert's id     (the exactly-once key)
//   t/<fired_at><seq>            -> AlertRecord         (newest-first listing)
//   d/<failed_at><seq>           -> AlertDeadLetterRecord
//   o/<fired_at><seq><url>       -> AlertRecord  (a pending webhook delivery)

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "storage/rocks_database.h"

namespace bursar::storage {
namespace {

constexpr char kFiredPrefix[] = "f/";
constexpr char kTimePrefix[] = "t/";
constexpr char kDeadPrefix[] = "d/";
constexpr char kOutboxPrefix[] = "o/";
constexpr char kIdPrefix[] = "al-";

void AppendBigEndian64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(absl::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) {
    v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return v;
}

uint64_t SignFlipped(int64_t v) {
  return static_cast<uint64_t>(v) ^ (1ULL << 63);
}

std::string FiredKey(absl::string_view rule, absl::string_view scope,
                     int64_t period_key) {
  std::string key = absl::StrCat(kFiredPrefix, rule);
  key.push_back('\0');
  key.append(scope.data(), scope.size());
  key.push_back('\0');
  AppendBigEndian64(key, SignFlipped(period_key));
  return key;
}

// prefix + 8 bytes time (sign flipped) + 8 bytes sequence.
std::string TimeKey(absl::string_view prefix, absl::Time time, uint64_t seq) {
  std::string key(prefix);
  AppendBigEndian64(key, SignFlipped(absl::ToUnixMicros(time)));
  AppendBigEndian64(key, seq);
  return key;
}

absl::Status ValidatePart(absl::string_view what, absl::string_view value,
                          size_t max_bytes) {
  if (value.empty() || value.size() > max_bytes ||
      value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alert ", what, " must be 1..", max_bytes, " bytes without NUL, got \"",
        absl::CHexEscape(value), "\""));
  }
  return absl::OkStatus();
}

AlertRecord ToRecord(const AlertEntry& alert) {
  AlertRecord record;
  record.set_id(alert.id);
  record.set_rule(alert.rule);
  record.set_scope(alert.scope);
  record.set_period_key(alert.period_key);
  record.set_period_start_micros(alert.period_start == absl::InfinitePast()
                                     ? 0
                                     : absl::ToUnixMicros(alert.period_start));
  record.set_fired_at_micros(absl::ToUnixMicros(alert.fired_at));
  record.set_severity(alert.severity);
  record.set_message(alert.message);
  record.set_budget(alert.budget);
  record.set_instance(alert.instance);
  record.set_policy_version(alert.policy_version);
  return record;
}

AlertEntry FromRecord(AlertRecord record) {
  AlertEntry alert;
  alert.id = std::move(*record.mutable_id());
  alert.rule = std::move(*record.mutable_rule());
  alert.scope = std::move(*record.mutable_scope());
  alert.period_key = record.period_key();
  alert.period_start = record.period_start_micros() == 0
                           ? absl::InfinitePast()
                           : absl::FromUnixMicros(record.period_start_micros());
  alert.fired_at = absl::FromUnixMicros(record.fired_at_micros());
  alert.severity = std::move(*record.mutable_severity());
  alert.message = std::move(*record.mutable_message());
  alert.budget = std::move(*record.mutable_budget());
  alert.instance = std::move(*record.mutable_instance());
  alert.policy_version = std::move(*record.mutable_policy_version());
  return alert;
}

AlertDeadLetterRecord DeadLetterRecord(const DeadLetter& letter) {
  AlertDeadLetterRecord record;
  record.set_alert_id(letter.alert_id);
  record.set_url(letter.url);
  record.set_attempts(letter.attempts);
  record.set_last_error(letter.last_error);
  record.set_failed_at_micros(absl::ToUnixMicros(letter.failed_at));
  record.set_body(letter.body);
  return record;
}

// The 16 bytes an alert id ("al-" + 32 hex digits) spells; false for
// anything else.
bool IdBytes(absl::string_view id, std::string* bytes) {
  if (!absl::StartsWith(id, kIdPrefix)) return false;
  const absl::string_view hex =
      id.substr(std::char_traits<char>::length(kIdPrefix));
  if (hex.size() != 32) return false;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  *bytes = absl::HexStringToBytes(hex);
  return true;
}

// "o/" + the 16 bytes of the alert's id (its time key without "t/") + url.
std::string OutboxKey(absl::string_view id_bytes, absl::string_view url) {
  return absl::StrCat(kOutboxPrefix, id_bytes, url);
}

class RocksAlertStore final : public AlertStore {
 public:
  explicit RocksAlertStore(std::shared_ptr<RocksDatabase> database)
      : database_(std::move(database)),
        cf_(database_->cf(RocksDatabase::kAlertsCf)) {}

  // Resumes the sequence after the largest one stored.
  absl::Status Load() {
    uint64_t max_seq = 0;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(rocksdb::ReadOptions(), cf_));
    for (const char* prefix : {kTimePrefix, kDeadPrefix}) {
      const rocksdb::Slice start(prefix);
      for (it->Seek(start); it->Valid() && it->key().starts_with(start);
           it->Next()) {
        const absl::string_view key(it->key().data(), it->key().size());
        if (key.size() != 2 + 16) continue;
        max_seq = std::max(max_seq, ReadBigEndian64(key.substr(10)));
      }
    }
    if (absl::Status s = FromRocks(it->status(), "reading alerts"); !s.ok()) {
      return s;
    }
    absl::MutexLock lock(&mu_);
    seq_ = max_seq;
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Fire(AlertEntry* alert) override {
    return Fire(alert, {});
  }

  absl::StatusOr<bool> Fire(AlertEntry* alert,
                            absl::Span<const std::string> outbox) override {
    if (absl::Status s = ValidatePart("rule", alert->rule, kMaxAlertRuleBytes);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            ValidatePart("scope", alert->scope, kMaxAlertScopeBytes);
        !s.ok()) {
      return s;
    }
    if (alert->message.size() > kMaxAlertMessageBytes) {
      alert->message.resize(kMaxAlertMessageBytes);
    }
    const std::string fired_key =
        FiredKey(alert->rule, alert->scope, alert->period_key);
    uint64_t ticket = 0;
    {
      absl::MutexLock lock(&mu_);
      std::string existing;
      const rocksdb::Status found = database_->db()->Get(
          rocksdb::ReadOptions(), cf_, fired_key, &existing);
      if (found.ok()) return false;
      if (!found.IsNotFound()) return FromRocks(found, "reading alerts");
      const std::string time_key =
          TimeKey(kTimePrefix, alert->fired_at, ++seq_);
      alert->id = absl::StrCat(
          kIdPrefix, absl::BytesToHexString(absl::string_view(time_key).substr(
                         std::char_traits<char>::length(kTimePrefix))));
      rocksdb::WriteBatch batch;
      batch.Put(cf_, fired_key, alert->id);
      const std::string record = ToRecord(*alert).SerializeAsString();
      batch.Put(cf_, time_key, record);
      for (const std::string& url : outbox) {
        batch.Put(cf_,
                  OutboxKey(absl::string_view(time_key).substr(
                                std::char_traits<char>::length(kTimePrefix)),
                            url),
                  record);
      }
      if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = database_->AwaitDurable(ticket); !s.ok()) return s;
    return true;
  }

  absl::StatusOr<bool> HasFired(absl::string_view rule, absl::string_view scope,
                                int64_t period_key) const override {
    std::string existing;
    const rocksdb::Status found =
        database_->db()->Get(rocksdb::ReadOptions(), cf_,
                             FiredKey(rule, scope, period_key), &existing);
    if (found.ok()) return true;
    if (found.IsNotFound()) return false;
    return FromRocks(found, "reading alerts");
  }

  absl::StatusOr<std::optional<AlertEntry>> GetFired(
      absl::string_view rule, absl::string_view scope,
      int64_t period_key) const override {
    std::string id;
    const rocksdb::Status found = database_->db()->Get(
        rocksdb::ReadOptions(), cf_, FiredKey(rule, scope, period_key), &id);
    if (found.IsNotFound()) return std::optional<AlertEntry>();
    if (!found.ok()) return FromRocks(found, "reading alerts");
    std::string bytes;
    std::string value;
    const rocksdb::Status read =
        IdBytes(id, &bytes)
            ? database_->db()->Get(rocksdb::ReadOptions(), cf_,
                                   absl::StrCat(kTimePrefix, bytes), &value)
            : rocksdb::Status::NotFound();
    AlertRecord record;
    if (!read.ok() || !record.ParseFromArray(value.data(), value.size())) {
      if (!read.ok() && !read.IsNotFound()) {
        return FromRocks(read, "reading alerts");
      }
      return absl::DataLossError(absl::StrCat(
          "alert store: the alert ", absl::CHexEscape(id), " of rule ", rule,
          " on ", scope, " is missing or unreadable"));
    }
    return std::optional<AlertEntry>(FromRecord(std::move(record)));
  }

  absl::StatusOr<std::vector<AlertEntry>> List(size_t limit) const override {
    std::vector<AlertEntry> out;
    absl::Status s =
        ScanNewestFirst(kTimePrefix, limit, [&](absl::string_view value) {
          AlertRecord record;
          if (!record.ParseFromArray(value.data(), value.size())) {
            return false;
          }
          out.push_back(FromRecord(std::move(record)));
          return true;
        });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::vector<PendingDelivery>> ListPendingDeliveries()
      const override {
    std::vector<PendingDelivery> out;
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(rocksdb::ReadOptions(), cf_));
    const rocksdb::Slice prefix(kOutboxPrefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      AlertRecord record;
      const size_t url_at = prefix.size() + 16;
      if (it->key().size() < url_at ||
          !record.ParseFromArray(it->value().data(), it->value().size())) {
        return absl::DataLossError(
            "alert store: an unreadable pending delivery under \"o/\"");
      }
      PendingDelivery pending;
      pending.alert = FromRecord(std::move(record));
      pending.url.assign(it->key().data() + url_at, it->key().size() - url_at);
      out.push_back(std::move(pending));
    }
    if (absl::Status s = FromRocks(it->status(), "reading alerts"); !s.ok()) {
      return s;
    }
    return out;
  }

  absl::Status FinishDelivery(absl::string_view alert_id, absl::string_view url,
                              const DeadLetter* dead_letter) override {
    std::string bytes;
    if (!IdBytes(alert_id, &bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", alert_id, "\" is not an alert id"));
    }
    uint64_t ticket = 0;
    {
      absl::MutexLock lock(&mu_);
      rocksdb::WriteBatch batch;
      batch.Delete(cf_, OutboxKey(bytes, url));
      if (dead_letter != nullptr) {
        batch.Put(cf_, TimeKey(kDeadPrefix, dead_letter->failed_at, ++seq_),
                  DeadLetterRecord(*dead_letter).SerializeAsString());
      }
      if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) {
        return s;
      }
    }
    return database_->AwaitDurable(ticket);
  }

  absl::Status PutDeadLetter(const DeadLetter& letter) override {
    const AlertDeadLetterRecord record = DeadLetterRecord(letter);
    uint64_t ticket = 0;
    {
      absl::MutexLock lock(&mu_);
      rocksdb::WriteBatch batch;
      batch.Put(cf_, TimeKey(kDeadPrefix, letter.failed_at, ++seq_),
                record.SerializeAsString());
      if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) {
        return s;
      }
    }
    return database_->AwaitDurable(ticket);
  }

  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(
      size_t limit) const override {
    std::vector<DeadLetter> out;
    absl::Status s =
        ScanNewestFirst(kDeadPrefix, limit, [&](absl::string_view value) {
          AlertDeadLetterRecord record;
          if (!record.ParseFromArray(value.data(), value.size())) return false;
          DeadLetter letter;
          letter.alert_id = record.alert_id();
          letter.url = record.url();
          letter.attempts = record.attempts();
          letter.last_error = record.last_error();
          letter.failed_at = absl::FromUnixMicros(record.failed_at_micros());
          letter.body = record.body();
          out.push_back(std::move(letter));
          return true;
        });
    if (!s.ok()) return s;
    return out;
  }

 private:
  // Calls `visit` with the values under `prefix`, newest key first, at most
  // `limit`; `visit` returns false for a value that does not parse
  // (DataLoss).
  template <typename Visit>
  absl::Status ScanNewestFirst(absl::string_view prefix, size_t limit,
                               Visit&& visit) const {
    std::unique_ptr<rocksdb::Iterator> it(
        database_->db()->NewIterator(rocksdb::ReadOptions(), cf_));
    // Every key under "x/" sorts before "x0" ('0' follows '/').
    std::string end(prefix);
    end.back() = '0';
    size_t seen = 0;
    for (it->SeekForPrev(end);
         it->Valid() &&
         it->key().starts_with(rocksdb::Slice(prefix.data(), prefix.size())) &&
         seen < limit;
         it->Prev()) {
      if (it->key() == rocksdb::Slice(end)) continue;
      if (!visit(absl::string_view(it->value().data(), it->value().size()))) {
        return absl::DataLossError(absl::StrCat(
            "alert store: an unreadable record under \"", prefix, "\""));
      }
      ++seen;
    }
    return FromRocks(it->status(), "reading alerts");
  }

  const std::shared_ptr<RocksDatabase> database_;
  rocksdb::ColumnFamilyHandle* const cf_;
  // Orders Fire's check-and-write; guards the key sequence.
  mutable absl::Mutex mu_;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AlertStore>> NewRocksAlertStore(
    std::shared_ptr<RocksDatabase> database) {
  auto store = std::make_unique<RocksAlertStore>(std::move(database));
  if (absl::Status s = store->Load(); !s.ok()) return s;
  return store;
}

}  // namespace bursar::storage
