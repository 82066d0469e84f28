#include "storage/rocks_ledger.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "storage/int64_add_operator.h"
#include "storage/records.pb.h"
#include "storage/rocks_database.h"
#include "storage/usage_rocks_store.h"

namespace bursar::storage {
namespace {

constexpr RocksDatabase::Cf kBudgetsCf = RocksDatabase::kBudgetsCf;
constexpr RocksDatabase::Cf kCountersCf = RocksDatabase::kCountersCf;
constexpr RocksDatabase::Cf kHoldsCf = RocksDatabase::kHoldsCf;
constexpr RocksDatabase::Cf kAuditCf = RocksDatabase::kAuditCf;

// Counter kinds, the last byte of a counter key.
constexpr char kSpentCounter = 's';
constexpr char kUnreportedCounter = 'u';

void AppendBigEndian64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

// Side counters live in the counters CF under a prefix no budget name can
// start with (budget names are [A-Za-z0-9._-]).
constexpr absl::string_view kSideCounterPrefix = "\x01s";

std::string CounterKey(absl::string_view budget, absl::string_view instance,
                       int64_t period_key, char kind) {
  std::string key;
  key.reserve(budget.size() + instance.size() + 11);
  absl::StrAppend(&key, budget);
  key.push_back('\0');
  absl::StrAppend(&key, instance);
  key.push_back('\0');
  AppendBigEndian64(key, static_cast<uint64_t>(period_key) ^ (1ULL << 63));
  key.push_back(kind);
  return key;
}

BudgetRecord ToRecord(const BudgetSpec& spec) {
  BudgetRecord r;
  r.set_name(spec.name);
  for (const auto& [k, v] : spec.selector) (*r.mutable_selector())[k] = v;
  r.set_per_label(spec.per_label);
  r.set_period(static_cast<int32_t>(spec.period));
  r.set_timezone(spec.timezone);
  r.set_amount_nanos(spec.amount_nanos);
  for (double t : spec.alert_thresholds) r.add_alert_thresholds(t);
  r.set_updated_at_micros(absl::ToUnixMicros(spec.updated_at));
  r.set_updated_by(spec.updated_by);
  return r;
}

absl::StatusOr<BudgetSpec> FromRecord(const BudgetRecord& r) {
  if (r.period() < 0 || r.period() > static_cast<int>(Period::kNone)) {
    return absl::DataLossError(
        absl::StrCat("budget \"", r.name(), "\" has period ", r.period()));
  }
  BudgetSpec spec;
  spec.name = r.name();
  spec.selector.assign(r.selector().begin(), r.selector().end());
  std::sort(spec.selector.begin(), spec.selector.end());
  spec.per_label = r.per_label();
  spec.period = static_cast<Period>(r.period());
  spec.timezone = r.timezone();
  spec.amount_nanos = r.amount_nanos();
  spec.alert_thresholds.assign(r.alert_thresholds().begin(),
                               r.alert_thresholds().end());
  spec.updated_at = absl::FromUnixMicros(r.updated_at_micros());
  spec.updated_by = r.updated_by();
  return spec;
}

class RocksLedger final : public Ledger {
 public:
  RocksLedger(std::shared_ptr<RocksDatabase> database,
              const RocksLedgerOptions& options)
      : options_(options),
        database_(std::move(database)),
        db_(database_->db()) {
    for (int i = 0; i < RocksDatabase::kNumCfs; ++i) {
      cfs_.push_back(database_->cf(static_cast<RocksDatabase::Cf>(i)));
    }
  }

  // Rebuilds memory from the database.
  absl::Status Load();

  absl::StatusOr<std::pair<BudgetSpec, bool>> SetBudget(
      BudgetSpec spec, const Actor& actor, absl::Time now) override;
  absl::Status DeleteBudget(absl::string_view name, const Actor& actor,
                            absl::Time now) override;
  std::optional<BudgetSpec> GetBudget(absl::string_view name) const override;
  std::vector<BudgetSpec> ListBudgets() const override;
  absl::StatusOr<std::optional<BudgetFigures>> Peek(
      absl::string_view budget, const LabelSet& labels,
      absl::Time now) const override;
  absl::StatusOr<std::vector<Standing>> Standings(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const override;
  std::vector<AuditEntry> ListAudit(size_t limit) const override;
  absl::StatusOr<std::vector<Standing>> LiveStandings(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const override;

  absl::StatusOr<ReserveResult> Reserve(const ReserveRequest& request,
                                        absl::Time now) override;
  absl::StatusOr<HoldView> GetHold(
      absl::string_view reservation_id) const override;
  absl::StatusOr<SettleResult> Settle(
      absl::string_view reservation_id, int64_t cost_nanos, absl::Time now,
      const UsageUpdate* usage,
      absl::Span<const SideCounterDelta> side_counters,
      uint64_t* durable_ticket) override;
  void WhenDurable(uint64_t ticket,
                   absl::AnyInvocable<void(absl::Status) &&> done) override {
    database_->WhenDurable(ticket, std::move(done));
  }
  absl::Status ForEachSideCounter(
      absl::string_view from, absl::string_view to,
      absl::FunctionRef<void(absl::string_view key, int64_t value)> visit)
      const override;
  absl::Status DeleteSideCounters(absl::string_view from,
                                  absl::string_view to) override;
  absl::StatusOr<int> ExpireHolds(absl::Time now,
                                  std::vector<HoldView>* expired) override;
  void ForEachOpenHold(
      absl::FunctionRef<void(const HoldView&)> visit) const override;
  size_t open_holds() const override {
    absl::MutexLock lock(&mu_);
    return expiry_queue_.size();
  }

 private:
  // Spend of one budget instance in one period. Kept for the current period
  // and for older periods that still have open holds.
  struct PeriodState {
    int64_t key = 0;  // PeriodBounds::start_key()
    int64_t spent_nanos = 0;
    int64_t held_nanos = 0;
    int64_t unreported_nanos = 0;
  };
  struct InstanceState {
    absl::InlinedVector<PeriodState, 2> periods;
  };
  struct BudgetEntry {
    BudgetSpec spec;
    absl::TimeZone tz;
    absl::flat_hash_map<std::string, InstanceState> instances;
  };
  // A matching budget instance during Reserve.
  struct Match {
    BudgetEntry* entry;
    absl::string_view instance;
    PeriodBounds bounds;
    PeriodState* state;
  };

  // Writes `batch` to RocksDB (durable per the sync mode only after
  // AwaitDurable(*ticket), which the caller calls without mu_ held).
  absl::Status WriteLocked(rocksdb::WriteBatch& batch, uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AwaitDurable(uint64_t ticket) ABSL_LOCKS_EXCLUDED(mu_);
  // The ticket that covers every write made so far (0 without a syncer).
  uint64_t LatestTicket() const { return database_->LatestTicket(); }

  absl::Status LoadBudgets() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadHolds() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebuildIndex() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `entry` to the index under its spec's selector / removes it (call
  // before its spec changes): one budget's change costs one index slot, not
  // a rebuild over every budget.
  void Index(BudgetEntry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unindex(BudgetEntry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The counters of (entry, instance) for the period `key`, loaded from
  // RocksDB the first time; null if loading failed (status in *error).
  PeriodState* PeriodFor(BudgetEntry& entry, absl::string_view instance,
                         int64_t key, absl::Status* error) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReadCounter(const std::string& key, int64_t* value) const;

  absl::Status CollectMatches(const LabelSet& labels, absl::Time now,
                              absl::InlinedVector<Match, 8>& matches)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends `entry` to `matches` if its selector (and per_label) match.
  absl::Status MatchBudget(BudgetEntry* entry, const LabelSet& labels,
                           absl::Time now,
                           absl::InlinedVector<Match, 8>& matches) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Standing MakeStanding(const BudgetEntry& entry, absl::string_view instance,
                        const PeriodBounds& bounds,
                        const PeriodState& state) const;

  // Applies `delta` to the in-memory counters of every charge of `hold`
  // whose budget still exists.
  void ApplyToCharges(const HoldRecord& hold, int64_t held_delta,
                      int64_t spent_delta, int64_t unreported_delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MergeCounters(rocksdb::WriteBatch& batch, const HoldRecord& hold,
                     int64_t spent_delta, int64_t unreported_delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddAudit(rocksdb::WriteBatch& batch, absl::Time now,
                absl::string_view action, absl::string_view name,
                const Actor& actor, const BudgetSpec* before,
                const BudgetSpec* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string NewReservationId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static HoldView ViewOf(const HoldRecord& hold);
  void MergeSideCounters(rocksdb::WriteBatch& batch,
                         absl::Span<const SideCounterDelta> deltas);
  void Forget(const std::string& reservation_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RocksLedgerOptions options_;
  const std::shared_ptr<RocksDatabase> database_;
  rocksdb::DB* const db_;
  // Indexed by RocksDatabase::Cf.
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;

  mutable absl::Mutex mu_;
  // node_hash_map: the index below points into the entries.
  mutable absl::node_hash_map<std::string, BudgetEntry> budgets_
      ABSL_GUARDED_BY(mu_);
  // selector key -> value -> budgets whose smallest selector entry it is.
  absl::flat_hash_map<std::string,
                      absl::flat_hash_map<std::string, std::vector<BudgetEntry*>>>
      index_ ABSL_GUARDED_BY(mu_);
  std::vector<BudgetEntry*> match_all_ ABSL_GUARDED_BY(mu_);

  absl::node_hash_map<std::string, HoldRecord> holds_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> by_request_id_
      ABSL_GUARDED_BY(mu_);
  // (expires_at micros, id) of open holds.
  absl::btree_set<std::pair<int64_t, std::string>> expiry_queue_
      ABSL_GUARDED_BY(mu_);
  // (settled_at micros, id) of settled and expired holds.
  absl::btree_set<std::pair<int64_t, std::string>> retention_queue_
      ABSL_GUARDED_BY(mu_);
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
};

absl::Status RocksLedger::Load() {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = LoadBudgets(); !s.ok()) return s;
  return LoadHolds();
}

absl::Status RocksLedger::LoadBudgets() {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kBudgetsCf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    BudgetRecord record;
    if (!record.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(absl::StrCat(
          "budget record \"", it->key().ToString(), "\" does not parse"));
    }
    absl::StatusOr<BudgetSpec> spec = FromRecord(record);
    if (!spec.ok()) return spec.status();
    BudgetEntry& entry = budgets_[spec->name];
    if (!absl::LoadTimeZone(spec->timezone, &entry.tz)) {
      return absl::DataLossError(absl::StrCat("budget \"", spec->name,
                                              "\" has unknown time zone \"",
                                              spec->timezone, "\""));
    }
    entry.spec = *std::move(spec);
  }
  if (absl::Status s = FromRocks(it->status(), "reading budgets"); !s.ok()) {
    return s;
  }
  RebuildIndex();
  return absl::OkStatus();
}

absl::Status RocksLedger::LoadHolds() {
  uint64_t estimated_holds = 0;
  if (db_->GetIntProperty(cfs_[kHoldsCf], "rocksdb.estimate-num-keys",
                          &estimated_holds)) {
    holds_.reserve(estimated_holds);
    by_request_id_.reserve(estimated_holds);
  }
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kHoldsCf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    // The key is the reservation id; the record is parsed in place.
    auto [slot, inserted] = holds_.try_emplace(it->key().ToString());
    const std::string& id = slot->first;
    HoldRecord& record = slot->second;
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size())) ||
        record.reservation_id() != id) {
      return absl::DataLossError(absl::StrCat(
          "hold record \"", it->key().ToString(), "\" does not parse"));
    }
    if (!record.request_id().empty()) by_request_id_[record.request_id()] = id;
    if (record.state() == HoldRecord::STATE_OPEN) {
      expiry_queue_.emplace(record.expires_at_micros(), id);
      for (const ChargeRecord& charge : record.charges()) {
        auto entry = budgets_.find(charge.budget());
        if (entry == budgets_.end()) continue;
        absl::Status error;
        PeriodState* state = PeriodFor(entry->second, charge.instance(),
                                       charge.period_start(), &error);
        if (state == nullptr) return error;
        state->held_nanos += record.estimate_nanos();
      }
    } else {
      retention_queue_.emplace(record.settled_at_micros(), id);
    }
  }
  return FromRocks(it->status(), "reading holds");
}

void RocksLedger::RebuildIndex() {
  index_.clear();
  match_all_.clear();
  for (auto& [name, entry] : budgets_) Index(&entry);
}

void RocksLedger::Index(BudgetEntry* entry) {
  if (entry->spec.selector.empty()) {
    match_all_.push_back(entry);
  } else {
    const auto& [key, value] = entry->spec.selector.front();
    index_[key][value].push_back(entry);
  }
}

void RocksLedger::Unindex(BudgetEntry* entry) {
  auto erase = [entry](std::vector<BudgetEntry*>& entries) {
    entries.erase(std::remove(entries.begin(), entries.end(), entry),
                  entries.end());
  };
  if (entry->spec.selector.empty()) return erase(match_all_);
  const auto& [key, value] = entry->spec.selector.front();
  auto by_key = index_.find(key);
  if (by_key == index_.end()) return;
  auto by_value = by_key->second.find(value);
  if (by_value == by_key->second.end()) return;
  erase(by_value->second);
  if (by_value->second.empty()) by_key->second.erase(by_value);
  if (by_key->second.empty()) index_.erase(by_key);
}

absl::Status RocksLedger::ReadCounter(const std::string& key,
                                      int64_t* value) const {
  std::string bytes;
  const rocksdb::Status status =
      db_->Get(rocksdb::ReadOptions(), cfs_[kCountersCf], key, &bytes);
  *value = 0;
  if (status.IsNotFound()) return absl::OkStatus();
  if (!status.ok()) return FromRocks(status, "reading a counter");
  if (!DecodeInt64(bytes, value)) {
    return absl::DataLossError(
        absl::StrCat("counter \"", absl::CHexEscape(key), "\" has ",
                     bytes.size(), " bytes, not 8"));
  }
  return absl::OkStatus();
}

RocksLedger::PeriodState* RocksLedger::PeriodFor(BudgetEntry& entry,
                                                 absl::string_view instance,
                                                 int64_t key,
                                                 absl::Status* error) const {
  auto it = entry.instances.find(instance);
  if (it == entry.instances.end()) {
    it = entry.instances.emplace(std::string(instance), InstanceState()).first;
  }
  auto& periods = it->second.periods;
  for (PeriodState& p : periods) {
    if (p.key == key) return &p;
  }
  PeriodState loaded{key, 0, 0, 0};
  const std::string& name = entry.spec.name;
  *error = ReadCounter(CounterKey(name, instance, key, kSpentCounter),
                       &loaded.spent_nanos);
  if (!error->ok()) return nullptr;
  *error = ReadCounter(CounterKey(name, instance, key, kUnreportedCounter),
                       &loaded.unreported_nanos);
  if (!error->ok()) return nullptr;
  // Periods other than the newest are kept only while they have holds.
  periods.erase(std::remove_if(periods.begin(), periods.end(),
                               [key](const PeriodState& p) {
                                 return p.held_nanos == 0 && p.key < key;
                               }),
                periods.end());
  periods.push_back(loaded);
  return &periods.back();
}

absl::Status RocksLedger::WriteLocked(rocksdb::WriteBatch& batch,
                                      uint64_t* ticket) {
  return database_->Write(batch, ticket);
}

absl::Status RocksLedger::AwaitDurable(uint64_t ticket) {
  return database_->AwaitDurable(ticket);
}

void RocksLedger::AddAudit(rocksdb::WriteBatch& batch, absl::Time now,
                           absl::string_view action, absl::string_view name,
                           const Actor& actor, const BudgetSpec* before,
                           const BudgetSpec* after) {
  AuditRecord record;
  record.set_actor(actor.name);
  record.set_role(actor.role);
  record.set_action(std::string(action));
  record.set_target(absl::StrCat("budget:", name));
  record.set_reason(actor.reason);
  if (before != nullptr) {
    *record.mutable_before() = ToRecord(*before);
  }
  if (after != nullptr) {
    *record.mutable_after() = ToRecord(*after);
  }
  database_->AddAudit(batch, now, std::move(record));
}

absl::StatusOr<std::pair<BudgetSpec, bool>> RocksLedger::SetBudget(
    BudgetSpec spec, const Actor& actor, absl::Time now) {
  if (absl::Status s = NormalizeBudgetSpec(spec); !s.ok()) return s;
  absl::TimeZone tz;
  absl::LoadTimeZone(spec.timezone, &tz);  // NormalizeBudgetSpec checked it
  spec.updated_at = now;
  spec.updated_by = actor.name.empty() ? "unknown" : actor.name;

  absl::MutexLock lock(&mu_);
  auto existing = budgets_.find(spec.name);
  const bool created = existing == budgets_.end();
  BudgetEntry fresh;
  if (created) {
    // Holds still open on an earlier budget of this name settle against
    // this one, so they count as held here (as LoadHolds does at start-up).
    fresh.spec = spec;
    fresh.tz = tz;
    for (const auto& [expires_at, id] : expiry_queue_) {
      const HoldRecord& hold = holds_.at(id);
      for (const ChargeRecord& charge : hold.charges()) {
        if (charge.budget() != spec.name) continue;
        absl::Status error;
        PeriodState* state = PeriodFor(fresh, charge.instance(),
                                       charge.period_start(), &error);
        if (state == nullptr) return error;
        state->held_nanos += hold.estimate_nanos();
      }
    }
  }
  rocksdb::WriteBatch batch;
  batch.Put(cfs_[kBudgetsCf], spec.name, ToRecord(spec).SerializeAsString());
  AddAudit(batch, now, "budget.set", spec.name, actor,
           created ? nullptr : &existing->second.spec, &spec);
  uint64_t ticket = 0;
  if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;

  if (created) budgets_.emplace(spec.name, std::move(fresh));
  BudgetEntry& entry = budgets_[spec.name];
  if (!created && (entry.spec.per_label != spec.per_label ||
                   entry.spec.period != spec.period ||
                   entry.spec.timezone != spec.timezone)) {
    // Instances and periods are keyed differently now; reload lazily, but
    // keep the periods that open holds still count on.
    for (auto& [instance, state] : entry.instances) {
      auto& periods = state.periods;
      periods.erase(std::remove_if(periods.begin(), periods.end(),
                                   [](const PeriodState& p) {
                                     return p.held_nanos == 0;
                                   }),
                    periods.end());
    }
  }
  if (!created) Unindex(&entry);
  entry.spec = spec;
  entry.tz = tz;
  Index(&entry);
  mu_.Unlock();
  absl::Status durable = AwaitDurable(ticket);
  mu_.Lock();
  if (!durable.ok()) return durable;
  return std::make_pair(std::move(spec), created);
}

absl::Status RocksLedger::DeleteBudget(absl::string_view name,
                                       const Actor& actor, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = budgets_.find(name);
  if (it == budgets_.end()) {
    return absl::NotFoundError(absl::StrCat("budget \"", name,
                                            "\" does not exist"));
  }
  rocksdb::WriteBatch batch;
  batch.Delete(cfs_[kBudgetsCf], it->first);
  AddAudit(batch, now, "budget.delete", name, actor, &it->second.spec,
           nullptr);
  uint64_t ticket = 0;
  if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;
  Unindex(&it->second);
  budgets_.erase(it);
  mu_.Unlock();
  absl::Status durable = AwaitDurable(ticket);
  mu_.Lock();
  return durable;
}

std::optional<BudgetSpec> RocksLedger::GetBudget(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = budgets_.find(name);
  if (it == budgets_.end()) return std::nullopt;
  return it->second.spec;
}

std::vector<BudgetSpec> RocksLedger::ListBudgets() const {
  absl::MutexLock lock(&mu_);
  std::vector<BudgetSpec> specs;
  specs.reserve(budgets_.size());
  for (const auto& [name, entry] : budgets_) specs.push_back(entry.spec);
  std::sort(specs.begin(), specs.end(),
            [](const BudgetSpec& a, const BudgetSpec& b) {
              return a.name < b.name;
            });
  return specs;
}

Standing RocksLedger::MakeStanding(const BudgetEntry& entry,
                                   absl::string_view instance,
                                   const PeriodBounds& bounds,
                                   const PeriodState& state) const {
  Standing s;
  s.budget = entry.spec.name;
  s.instance = std::string(instance);
  s.period = entry.spec.period;
  s.period_start = bounds.start;
  s.period_end = bounds.end;
  s.amount_nanos = entry.spec.amount_nanos;
  s.spent_nanos = state.spent_nanos;
  s.held_nanos = state.held_nanos;
  s.unreported_nanos = state.unreported_nanos;
  return s;
}

absl::StatusOr<std::optional<BudgetFigures>> RocksLedger::Peek(
    absl::string_view budget, const LabelSet& labels, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = budgets_.find(budget);
  if (it == budgets_.end()) return std::nullopt;
  absl::InlinedVector<Match, 8> matches;
  if (absl::Status s = MatchBudget(&it->second, labels, now, matches);
      !s.ok()) {
    return s;
  }
  if (matches.empty()) return std::nullopt;
  const Match& m = matches.front();
  BudgetFigures figures;
  figures.amount_nanos = m.entry->spec.amount_nanos;
  figures.spent_nanos = m.state->spent_nanos;
  figures.held_nanos = m.state->held_nanos;
  figures.unreported_nanos = m.state->unreported_nanos;
  figures.period_start = m.bounds.start;
  figures.period_end = m.bounds.end;
  return figures;
}

absl::StatusOr<std::vector<Standing>> RocksLedger::Standings(
    absl::string_view budget, absl::string_view instance,
    absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = budgets_.find(budget);
  if (it == budgets_.end()) {
    return absl::NotFoundError(absl::StrCat("budget \"", budget,
                                            "\" does not exist"));
  }
  BudgetEntry& entry = it->second;
  const PeriodBounds bounds = PeriodAt(entry.spec.period, now, entry.tz);
  std::vector<Standing> standings;
  absl::Status error;
  if (!instance.empty() || entry.spec.per_label.empty()) {
    PeriodState* state = PeriodFor(entry, instance, bounds.start_key(), &error);
    if (state == nullptr) return error;
    standings.push_back(MakeStanding(entry, instance, bounds, *state));
    return standings;
  }
  // Every instance known in memory; instances untouched since start-up are
  // found through the counters of this period.
  absl::btree_set<std::string> instances;
  for (const auto& [name, state] : entry.instances) instances.insert(name);
  std::unique_ptr<rocksdb::Iterator> counters(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kCountersCf]));
  const std::string prefix = absl::StrCat(entry.spec.name, std::string(1, '\0'));
  for (counters->Seek(prefix);
       counters->Valid() && counters->key().starts_with(prefix);
       counters->Next()) {
    absl::string_view rest(counters->key().data() + prefix.size(),
                           counters->key().size() - prefix.size());
    const size_t nul = rest.find('\0');
    if (nul == rest.npos) continue;
    instances.insert(std::string(rest.substr(0, nul)));
  }
  for (const std::string& name : instances) {
    PeriodState* state = PeriodFor(entry, name, bounds.start_key(), &error);
    if (state == nullptr) return error;
    if (state->spent_nanos == 0 && state->held_nanos == 0) continue;
    standings.push_back(MakeStanding(entry, name, bounds, *state));
  }
  return standings;
}

absl::StatusOr<std::vector<Standing>> RocksLedger::LiveStandings(
    absl::string_view budget, absl::string_view instance,
    absl::Time now) const {
  // 1. Under the lock: copy what memory has for this period; no I/O.
  BudgetSpec spec;
  PeriodBounds bounds;
  absl::btree_map<std::string, Standing> known;
  {
    absl::MutexLock lock(&mu_);
    auto it = budgets_.find(budget);
    if (it == budgets_.end()) {
      return absl::NotFoundError(absl::StrCat("budget \"", budget,
                                              "\" does not exist"));
    }
    const BudgetEntry& entry = it->second;
    spec = entry.spec;
    bounds = PeriodAt(entry.spec.period, now, entry.tz);
    const int64_t key = bounds.start_key();
    auto copy = [&](absl::string_view name, const InstanceState& state) {
      for (const PeriodState& p : state.periods) {
        if (p.key != key) continue;
        known.emplace(std::string(name), MakeStanding(entry, name, bounds, p));
      }
    };
    if (!instance.empty() || entry.spec.per_label.empty()) {
      auto found = entry.instances.find(instance);
      if (found != entry.instances.end()) copy(instance, found->second);
    } else {
      for (const auto& [name, state] : entry.instances) copy(name, state);
    }
  }
  // 2. Without the lock: the counters of instances memory does not hold for
  // this period. Their `held` is zero (open holds are always in memory).
  auto from_disk = [&](absl::string_view name) -> absl::StatusOr<Standing> {
    Standing s;
    s.budget = spec.name;
    s.instance = std::string(name);
    s.period = spec.period;
    s.period_start = bounds.start;
    s.period_end = bounds.end;
    s.amount_nanos = spec.amount_nanos;
    if (absl::Status e = ReadCounter(
            CounterKey(spec.name, name, bounds.start_key(), kSpentCounter),
            &s.spent_nanos);
        !e.ok()) {
      return e;
    }
    if (absl::Status e = ReadCounter(CounterKey(spec.name, name,
                                                bounds.start_key(),
                                                kUnreportedCounter),
                                     &s.unreported_nanos);
        !e.ok()) {
      return e;
    }
    return s;
  };
  std::vector<Standing> standings;
  if (!instance.empty() || spec.per_label.empty()) {
    auto found = known.find(instance);
    if (found != known.end()) {
      standings.push_back(std::move(found->second));
      return standings;
    }
    absl::StatusOr<Standing> read = from_disk(instance);
    if (!read.ok()) return read.status();
    standings.push_back(*std::move(read));
    return standings;
  }
  // Every instance with a counter, one seek per instance (keys are
  // budget \0 instance \0 period kind).
  std::unique_ptr<rocksdb::Iterator> counters(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kCountersCf]));
  const std::string prefix = absl::StrCat(spec.name, std::string(1, '\0'));
  counters->Seek(prefix);
  while (counters->Valid() && counters->key().starts_with(prefix)) {
    absl::string_view rest(counters->key().data() + prefix.size(),
                           counters->key().size() - prefix.size());
    const size_t nul = rest.find('\0');
    if (nul == rest.npos) {
      counters->Next();
      continue;
    }
    const std::string name(rest.substr(0, nul));
    if (!known.contains(name)) {
      absl::StatusOr<Standing> read = from_disk(name);
      if (!read.ok()) return read.status();
      known.emplace(name, *std::move(read));
    }
    // Past every key of this instance.
    counters->Seek(absl::StrCat(prefix, name, std::string(1, '\x01')));
  }
  if (absl::Status s = FromRocks(counters->status(), "listing instances");
      !s.ok()) {
    return s;
  }
  for (auto& [name, standing] : known) {
    if (standing.spent_nanos == 0 && standing.held_nanos == 0) continue;
    standings.push_back(std::move(standing));
  }
  return standings;
}

std::vector<AuditEntry> RocksLedger::ListAudit(size_t limit) const {
  std::vector<AuditEntry> entries;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kAuditCf]));
  for (it->SeekToLast(); it->Valid() && entries.size() < limit; it->Prev()) {
    AuditRecord record;
    if (!record.ParseFromArray(it->value().data(), it->value().size())) {
      continue;
    }
    AuditEntry entry;
    entry.time = absl::FromUnixMicros(record.time_micros());
    entry.actor = record.actor();
    entry.role = record.role();
    entry.action = record.action();
    entry.target = record.target();
    entry.reason = record.reason();
    entry.before_json = record.before_json();
    entry.after_json = record.after_json();
    if (record.has_before()) {
      if (auto spec = FromRecord(record.before()); spec.ok()) {
        entry.before = *std::move(spec);
      }
    }
    if (record.has_after()) {
      if (auto spec = FromRecord(record.after()); spec.ok()) {
        entry.after = *std::move(spec);
      }
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

absl::Status RocksLedger::MatchBudget(
    BudgetEntry* entry, const LabelSet& labels, absl::Time now,
    absl::InlinedVector<Match, 8>& matches) const {
  for (const auto& [key, value] : entry->spec.selector) {
    const std::optional<absl::string_view> got = labels.Find(key);
    if (!got.has_value() || *got != value) return absl::OkStatus();
  }
  absl::string_view instance;
  if (!entry->spec.per_label.empty()) {
    const std::optional<absl::string_view> got =
        labels.Find(entry->spec.per_label);
    if (!got.has_value()) return absl::OkStatus();
    instance = *got;
  }
  const PeriodBounds bounds = PeriodAt(entry->spec.period, now, entry->tz);
  absl::Status error;
  PeriodState* state = PeriodFor(*entry, instance, bounds.start_key(), &error);
  if (state == nullptr) return error;
  matches.push_back({entry, instance, bounds, state});
  return absl::OkStatus();
}

absl::Status RocksLedger::CollectMatches(
    const LabelSet& labels, absl::Time now,
    absl::InlinedVector<Match, 8>& matches) {
  for (BudgetEntry* entry : match_all_) {
    if (absl::Status s = MatchBudget(entry, labels, now, matches); !s.ok()) {
      return s;
    }
  }
  for (const auto& [key, value] : labels.entries()) {
    auto by_key = index_.find(key);
    if (by_key == index_.end()) continue;
    auto by_value = by_key->second.find(value);
    if (by_value == by_key->second.end()) continue;
    for (BudgetEntry* entry : by_value->second) {
      if (absl::Status s = MatchBudget(entry, labels, now, matches); !s.ok()) {
        return s;
      }
    }
  }
  // Each budget is indexed once, so no instance is matched twice and the
  // PeriodState pointers stay valid.
  return absl::OkStatus();
}

std::string RocksLedger::NewReservationId() {
  return absl::StrFormat("r-%016x%016x", absl::Uniform<uint64_t>(bitgen_),
                         absl::Uniform<uint64_t>(bitgen_));
}

absl::StatusOr<ReserveResult> RocksLedger::Reserve(
    const ReserveRequest& request, absl::Time now) {
  ReserveResult result;
  absl::MutexLock lock(&mu_);
  if (!request.request_id.empty() && !request.dry_run) {
    auto seen = by_request_id_.find(request.request_id);
    if (seen != by_request_id_.end()) {
      const HoldRecord& hold = holds_.at(seen->second);
      result.kind = ReserveResult::Kind::kReplayed;
      result.reservation_id = hold.reservation_id();
      result.expires_at = absl::FromUnixMicros(hold.expires_at_micros());
      result.terms = hold.terms();
      // The first Check may not be durable yet; neither is its replay.
      const uint64_t ticket = LatestTicket();
      if (request.defer_durability) {
        result.durable_ticket = ticket;
        return result;
      }
      mu_.Unlock();
      absl::Status durable = AwaitDurable(ticket);
      mu_.Lock();
      if (!durable.ok()) return durable;
      return result;
    }
  }

  absl::InlinedVector<Match, 8> matches;
  if (absl::Status s = CollectMatches(*request.labels, now, matches); !s.ok()) {
    return s;
  }
  for (const Match& m : matches) {
    const __int128 after = static_cast<__int128>(m.state->spent_nanos) +
                           m.state->held_nanos + request.estimate_nanos;
    if (after > m.entry->spec.amount_nanos) {
      result.exceeded.push_back(
          MakeStanding(*m.entry, m.instance, m.bounds, *m.state));
    }
  }
  const bool fits = result.exceeded.empty();
  if (!fits) {
    result.kind = ReserveResult::Kind::kDenied;
    std::sort(result.exceeded.begin(), result.exceeded.end(),
              [](const Standing& a, const Standing& b) {
                return a.remaining_nanos() < b.remaining_nanos();
              });
  } else if (request.dry_run) {
    result.kind = ReserveResult::Kind::kDryRun;
  } else {
    HoldRecord hold;
    hold.set_reservation_id(NewReservationId());
    hold.set_request_id(std::string(request.request_id));
    hold.set_estimate_nanos(request.estimate_nanos);
    hold.set_created_at_micros(absl::ToUnixMicros(now));
    const absl::Time expires_at = now + request.ttl;
    hold.set_expires_at_micros(absl::ToUnixMicros(expires_at));
    hold.set_state(HoldRecord::STATE_OPEN);
    hold.set_terms(std::string(request.terms));
    for (const Match& m : matches) {
      ChargeRecord* charge = hold.add_charges();
      charge->set_budget(m.entry->spec.name);
      charge->set_instance(std::string(m.instance));
      charge->set_period_start(m.bounds.start_key());
    }
    rocksdb::WriteBatch batch;
    batch.Put(cfs_[kHoldsCf], hold.reservation_id(), hold.SerializeAsString());
    MergeSideCounters(batch, request.side_counters);
    uint64_t ticket = 0;
    if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;

    for (const Match& m : matches) m.state->held_nanos += request.estimate_nanos;
    result.kind = ReserveResult::Kind::kReserved;
    result.reservation_id = hold.reservation_id();
    result.expires_at = expires_at;
    expiry_queue_.emplace(hold.expires_at_micros(), hold.reservation_id());
    if (!request.request_id.empty()) {
      by_request_id_[request.request_id] = hold.reservation_id();
    }
    holds_.emplace(hold.reservation_id(), std::move(hold));
    for (const Match& m : matches) {
      result.standings.push_back(
          MakeStanding(*m.entry, m.instance, m.bounds, *m.state));
    }
    if (request.defer_durability) {
      result.durable_ticket = ticket;
      return result;
    }
    mu_.Unlock();
    absl::Status durable = AwaitDurable(ticket);
    mu_.Lock();
    if (!durable.ok()) return durable;
    return result;
  }
  for (const Match& m : matches) {
    result.standings.push_back(
        MakeStanding(*m.entry, m.instance, m.bounds, *m.state));
  }
  return result;
}

absl::StatusOr<HoldView> RocksLedger::GetHold(
    absl::string_view reservation_id) const {
  absl::MutexLock lock(&mu_);
  auto it = holds_.find(reservation_id);
  if (it == holds_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "reservation \"", reservation_id,
        "\" is unknown: it was never issued by this server, or it was "
        "settled more than ",
        absl::FormatDuration(options_.settled_retention), " ago"));
  }
  return ViewOf(it->second);
}

void RocksLedger::ForEachOpenHold(
    absl::FunctionRef<void(const HoldView&)> visit) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [micros, id] : expiry_queue_) visit(ViewOf(holds_.at(id)));
}

HoldView RocksLedger::ViewOf(const HoldRecord& hold) {
  HoldView view;
  view.reservation_id = hold.reservation_id();
  view.state = hold.state() == HoldRecord::STATE_OPEN      ? HoldState::kOpen
               : hold.state() == HoldRecord::STATE_SETTLED ? HoldState::kSettled
                                                           : HoldState::kExpired;
  view.estimate_nanos = hold.estimate_nanos();
  view.cost_nanos = hold.cost_nanos();
  view.expires_at = absl::FromUnixMicros(hold.expires_at_micros());
  view.terms = hold.terms();
  view.charges.reserve(hold.charges_size());
  for (const ChargeRecord& charge : hold.charges()) {
    view.charges.emplace_back(charge.budget(), charge.instance());
  }
  return view;
}

void RocksLedger::ApplyToCharges(const HoldRecord& hold, int64_t held_delta,
                                 int64_t spent_delta,
                                 int64_t unreported_delta) {
  for (const ChargeRecord& charge : hold.charges()) {
    auto entry = budgets_.find(charge.budget());
    if (entry == budgets_.end()) continue;
    auto instance = entry->second.instances.find(charge.instance());
    if (instance == entry->second.instances.end()) continue;
    for (PeriodState& p : instance->second.periods) {
      if (p.key != charge.period_start()) continue;
      p.held_nanos += held_delta;
      p.spent_nanos += spent_delta;
      p.unreported_nanos += unreported_delta;
    }
  }
}

void RocksLedger::MergeCounters(rocksdb::WriteBatch& batch,
                                const HoldRecord& hold, int64_t spent_delta,
                                int64_t unreported_delta) {
  for (const ChargeRecord& charge : hold.charges()) {
    if (spent_delta != 0) {
      batch.Merge(cfs_[kCountersCf],
                  CounterKey(charge.budget(), charge.instance(),
                             charge.period_start(), kSpentCounter),
                  EncodeInt64(spent_delta));
    }
    if (unreported_delta != 0) {
      batch.Merge(cfs_[kCountersCf],
                  CounterKey(charge.budget(), charge.instance(),
                             charge.period_start(), kUnreportedCounter),
                  EncodeInt64(unreported_delta));
    }
  }
}

absl::StatusOr<SettleResult> RocksLedger::Settle(
    absl::string_view reservation_id, int64_t cost_nanos, absl::Time now,
    const UsageUpdate* usage,
    absl::Span<const SideCounterDelta> side_counters,
    uint64_t* durable_ticket) {
  absl::MutexLock lock(&mu_);
  auto it = holds_.find(reservation_id);
  if (it == holds_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "reservation \"", reservation_id,
        "\" is unknown: it was never issued by this server, or it was "
        "settled more than ",
        absl::FormatDuration(options_.settled_retention), " ago"));
  }
  HoldRecord& hold = it->second;
  SettleResult result;
  if (hold.state() == HoldRecord::STATE_SETTLED) {
    result.cost_nanos = hold.cost_nanos();
    result.already_reported = true;
    result.after_expiry = hold.reported_after_expiry();
    // The first Report may not be durable yet; neither is this answer.
    const uint64_t ticket = LatestTicket();
    if (durable_ticket != nullptr) {
      *durable_ticket = ticket;
      return result;
    }
    mu_.Unlock();
    absl::Status durable = AwaitDurable(ticket);
    mu_.Lock();
    if (!durable.ok()) return durable;
    return result;
  }
  const bool expired = hold.state() == HoldRecord::STATE_EXPIRED;
  const int64_t estimate = hold.estimate_nanos();
  // An expired hold was charged its estimate as unreported spend.
  const int64_t spent_delta = expired ? cost_nanos - estimate : cost_nanos;
  const int64_t unreported_delta = expired ? -estimate : 0;

  HoldRecord settled = hold;
  settled.set_state(HoldRecord::STATE_SETTLED);
  settled.set_cost_nanos(cost_nanos);
  settled.set_settled_at_micros(absl::ToUnixMicros(now));
  settled.set_reported_after_expiry(expired);
  rocksdb::WriteBatch batch;
  MergeCounters(batch, settled, spent_delta, unreported_delta);
  MergeSideCounters(batch, side_counters);
  if (usage != nullptr) AddUsageToBatch(*database_, batch, *usage);
  batch.Put(cfs_[kHoldsCf], settled.reservation_id(),
            settled.SerializeAsString());
  uint64_t ticket = 0;
  if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;

  ApplyToCharges(settled, expired ? 0 : -estimate, spent_delta,
                 unreported_delta);
  if (expired) {
    retention_queue_.erase({hold.settled_at_micros(), hold.reservation_id()});
  } else {
    expiry_queue_.erase({hold.expires_at_micros(), hold.reservation_id()});
  }
  retention_queue_.emplace(settled.settled_at_micros(),
                           settled.reservation_id());
  hold = std::move(settled);
  result.cost_nanos = cost_nanos;
  result.after_expiry = expired;
  if (durable_ticket != nullptr) {
    *durable_ticket = ticket;
    return result;
  }
  mu_.Unlock();
  absl::Status durable = AwaitDurable(ticket);
  mu_.Lock();
  if (!durable.ok()) return durable;
  return result;
}

std::string SideCounterKey(absl::string_view key) {
  return absl::StrCat(kSideCounterPrefix, key);
}

void RocksLedger::MergeSideCounters(
    rocksdb::WriteBatch& batch, absl::Span<const SideCounterDelta> deltas) {
  for (const SideCounterDelta& d : deltas) {
    if (d.delta == 0) continue;
    batch.Merge(cfs_[kCountersCf], SideCounterKey(d.key), EncodeInt64(d.delta));
  }
}

absl::Status RocksLedger::ForEachSideCounter(
    absl::string_view from, absl::string_view to,
    absl::FunctionRef<void(absl::string_view key, int64_t value)> visit) const {
  const std::string upper = SideCounterKey(to);
  const rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(options, cfs_[kCountersCf]));
  for (it->Seek(SideCounterKey(from)); it->Valid(); it->Next()) {
    int64_t value = 0;
    if (!DecodeInt64(it->value(), &value)) {
      return absl::DataLossError(
          absl::StrCat("side counter \"", absl::CHexEscape(it->key().ToString()),
                       "\" is not an 8-byte integer"));
    }
    absl::string_view key(it->key().data(), it->key().size());
    key.remove_prefix(kSideCounterPrefix.size());
    visit(key, value);
  }
  return FromRocks(it->status(), "reading side counters");
}

absl::Status RocksLedger::DeleteSideCounters(absl::string_view from,
                                             absl::string_view to) {
  rocksdb::WriteBatch batch;
  batch.DeleteRange(cfs_[kCountersCf], SideCounterKey(from),
                    SideCounterKey(to));
  uint64_t ticket = 0;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;
  }
  return AwaitDurable(ticket);
}

void RocksLedger::Forget(const std::string& reservation_id) {
  auto it = holds_.find(reservation_id);
  if (it == holds_.end()) return;
  auto by_request = by_request_id_.find(it->second.request_id());
  if (by_request != by_request_id_.end() &&
      by_request->second == reservation_id) {
    by_request_id_.erase(by_request);
  }
  holds_.erase(it);
}

absl::StatusOr<int> RocksLedger::ExpireHolds(
    absl::Time now, std::vector<HoldView>* expired_holds) {
  absl::MutexLock lock(&mu_);
  const int64_t now_micros = absl::ToUnixMicros(now);
  rocksdb::WriteBatch batch;
  std::vector<std::string> expired_ids;
  for (auto it = expiry_queue_.begin();
       it != expiry_queue_.end() && it->first <= now_micros; ++it) {
    HoldRecord expired = holds_.at(it->second);
    expired.set_state(HoldRecord::STATE_EXPIRED);
    expired.set_cost_nanos(expired.estimate_nanos());
    expired.set_settled_at_micros(now_micros);
    MergeCounters(batch, expired, expired.estimate_nanos(),
                  expired.estimate_nanos());
    batch.Put(cfs_[kHoldsCf], expired.reservation_id(),
              expired.SerializeAsString());
    expired_ids.push_back(it->second);
  }
  const int64_t retention_cutoff =
      now_micros - absl::ToInt64Microseconds(options_.settled_retention);
  std::vector<std::string> pruned_ids;
  for (auto it = retention_queue_.begin();
       it != retention_queue_.end() && it->first <= retention_cutoff; ++it) {
    batch.Delete(cfs_[kHoldsCf], it->second);
    pruned_ids.push_back(it->second);
  }
  if (batch.Count() == 0) return 0;
  uint64_t ticket = 0;
  if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;

  for (const std::string& id : expired_ids) {
    HoldRecord& hold = holds_.at(id);
    const int64_t estimate = hold.estimate_nanos();
    expiry_queue_.erase({hold.expires_at_micros(), id});
    hold.set_state(HoldRecord::STATE_EXPIRED);
    hold.set_cost_nanos(estimate);
    hold.set_settled_at_micros(now_micros);
    ApplyToCharges(hold, -estimate, estimate, estimate);
    retention_queue_.emplace(now_micros, id);
    if (expired_holds != nullptr) expired_holds->push_back(ViewOf(hold));
  }
  for (const std::string& id : pruned_ids) {
    auto it = holds_.find(id);
    if (it != holds_.end()) {
      retention_queue_.erase({it->second.settled_at_micros(), id});
    }
    Forget(id);
  }
  mu_.Unlock();
  absl::Status durable = AwaitDurable(ticket);
  mu_.Lock();
  if (!durable.ok()) return durable;
  return static_cast<int>(expired_ids.size());
}

}  // namespace

int64_t Standing::remaining_nanos() const {
  const __int128 remaining =
      static_cast<__int128>(amount_nanos) - spent_nanos - held_nanos;
  return remaining > 0 ? static_cast<int64_t>(remaining) : 0;
}

absl::StatusOr<SyncMode> ParseSyncMode(absl::string_view text) {
  if (text == "none") return SyncMode::kNone;
  if (text == "group") return SyncMode::kGroup;
  if (text == "always") return SyncMode::kAlways;
  return absl::InvalidArgumentError(absl::StrCat(
      "sync mode \"", text, "\" is not one of none, group, always"));
}

absl::StatusOr<std::unique_ptr<Ledger>> NewRocksLedger(
    std::shared_ptr<RocksDatabase> database,
    const RocksLedgerOptions& options) {
  auto ledger = std::make_unique<RocksLedger>(std::move(database), options);
  if (absl::Status s = ledger->Load(); !s.ok()) return s;
  return ledger;
}

absl::StatusOr<std::unique_ptr<Ledger>> OpenRocksLedger(
    const RocksLedgerOptions& options) {
  absl::StatusOr<std::shared_ptr<RocksDatabase>> database =
      RocksDatabase::Open(DatabaseOptions(options));
  if (!database.ok()) return database.status();
  return NewRocksLedger(*std::move(database), options);
}

}  // namespace bursar::storage
