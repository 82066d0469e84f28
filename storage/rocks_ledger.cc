#include "storage/rocks_ledger.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <deque>
#include <functional>
#include <limits>
#include <new>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
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

// Replaces `key` with the counter key (reusing its buffer).
void AssignCounterKey(absl::string_view budget, absl::string_view instance,
                      int64_t period_key, char kind, std::string& key) {
  key.clear();
  key.reserve(budget.size() + instance.size() + 11);
  key.append(budget.data(), budget.size());
  key.push_back('\0');
  key.append(instance.data(), instance.size());
  key.push_back('\0');
  AppendBigEndian64(key, static_cast<uint64_t>(period_key) ^ (1ULL << 63));
  key.push_back(kind);
}

std::string CounterKey(absl::string_view budget, absl::string_view instance,
                       int64_t period_key, char kind) {
  std::string key;
  AssignCounterKey(budget, instance, period_key, kind, key);
  return key;
}

// What a Check's or a Report's batch reserves up front (the hold record with
// its terms, counter merges, the usage record), so that appending to it
// does not allocate again.
constexpr size_t kCallBatchReservedBytes = 2048;

// A reservation id, "r-" and 32 lowercase hex digits (the only form this
// ledger has ever issued: storage/README.md), as its 128 bits. The key of
// the in-memory holds; the text form is the RocksDB key.
struct HoldId {
  uint64_t hi = 0;
  uint64_t lo = 0;

  friend bool operator==(const HoldId& a, const HoldId& b) {
    return a.hi == b.hi && a.lo == b.lo;
  }
  friend bool operator<(const HoldId& a, const HoldId& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  }
  template <typename H>
  friend H AbslHashValue(H h, const HoldId& id) {
    return H::combine(std::move(h), id.hi, id.lo);
  }
};

constexpr size_t kHoldIdChars = 34;
// A new id's high 64 bits: Unix microseconds (52 bits, until the year 2112)
// then this many random bits.
constexpr int kHoldIdRandomBitsInHi = 12;

// An allocator for the few big tables of the ledger (the holds): blocks of
// 2 MiB and more are aligned to 2 MiB and marked for transparent huge
// pages, so that filling a table of a million holds at start-up takes 50
// page faults, not 25,000, and lookups miss the TLB less. Smaller blocks
// come from std::allocator.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHugePage = size_t{2} << 20;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePage) return std::allocator<T>().allocate(n);
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* block = std::aligned_alloc(kHugePage, rounded);
    if (block == nullptr) throw std::bad_alloc();  // as std::allocator
    madvise(block, rounded, MADV_HUGEPAGE);  // advice only: errors ignored
    return static_cast<T*>(block);
  }
  void deallocate(T* block, size_t n) {
    if (n * sizeof(T) < kHugePage) {
      std::allocator<T>().deallocate(block, n);
    } else {
      std::free(block);
    }
  }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const {
    return false;
  }
};

// Budgets one reservation can be charged to (Hold::charge_count).
constexpr size_t kMaxCharges = 65535;

// Lowercase hex digit -> value; -1 for any other byte.
constexpr std::array<int8_t, 256> kHexValue = [] {
  std::array<int8_t, 256> table{};
  for (int c = 0; c < 256; ++c) table[c] = -1;
  for (int c = '0'; c <= '9'; ++c) table[c] = static_cast<int8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) table[c] = static_cast<int8_t>(c - 'a' + 10);
  return table;
}();

// False unless `text` is exactly the form NewHoldId makes.
bool ParseHoldId(absl::string_view text, HoldId* id) {
  if (text.size() != kHoldIdChars || text[0] != 'r' || text[1] != '-') {
    return false;
  }
  uint64_t halves[2] = {0, 0};
  int8_t bad = 0;
  for (size_t i = 0; i < 32; ++i) {
    const int8_t digit = kHexValue[static_cast<uint8_t>(text[2 + i])];
    bad |= digit;  // -1 sets the sign bit
    halves[i / 16] = (halves[i / 16] << 4) | static_cast<uint64_t>(digit & 0xf);
  }
  if (bad < 0) return false;
  id->hi = halves[0];
  id->lo = halves[1];
  return true;
}

// The text form into `out` (kHoldIdChars bytes, no allocation).
absl::string_view FormatHoldId(const HoldId& id, char (&out)[kHoldIdChars]) {
  static constexpr char kHex[] = "0123456789abcdef";
  out[0] = 'r';
  out[1] = '-';
  for (int i = 0; i < 16; ++i) {
    out[2 + i] = kHex[(id.hi >> (60 - 4 * i)) & 0xf];
    out[18 + i] = kHex[(id.lo >> (60 - 4 * i)) & 0xf];
  }
  return absl::string_view(out, kHoldIdChars);
}

// For reading a whole column family once (start-up): large sequential reads,
// and blocks that are not worth caching stay out of the block cache.
rocksdb::ReadOptions ScanOptions() {
  rocksdb::ReadOptions options;
  options.fill_cache = false;
  options.readahead_size = 4 << 20;
  return options;
}

rocksdb::Slice ToSlice(absl::string_view text) {
  return rocksdb::Slice(text.data(), text.size());
}

void AppendVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Appends the fields a hold's state change sets to a serialized HoldRecord.
// Protobuf parsing keeps the last value of a singular field, so the result
// parses (in this binary and in any older one) as the record with these
// four fields replaced: a state change never needs to parse the record. All
// four are written even when zero, so the result does not depend on earlier
// appends. (HoldRecord field numbers 6..9, wire type varint.)
void AppendOutcome(std::string& record, HoldRecord::State state,
                   int64_t cost_nanos, int64_t settled_at_micros,
                   bool reported_after_expiry) {
  AppendVarint(record, (6 << 3) | 0);
  AppendVarint(record, static_cast<uint64_t>(static_cast<int64_t>(state)));
  AppendVarint(record, (7 << 3) | 0);
  AppendVarint(record, static_cast<uint64_t>(cost_nanos));
  AppendVarint(record, (8 << 3) | 0);
  AppendVarint(record, static_cast<uint64_t>(settled_at_micros));
  AppendVarint(record, (9 << 3) | 0);
  AppendVarint(record, reported_after_expiry ? 1 : 0);
}

absl::Status UnknownReservation(absl::string_view reservation_id,
                                absl::Duration retention) {
  return absl::NotFoundError(absl::StrCat(
      "reservation \"", reservation_id,
      "\" is unknown: it was never issued by this server, or it was "
      "settled more than ",
      absl::FormatDuration(retention), " ago"));
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
  std::vector<std::string> ListBudgetNames() const override;
  absl::StatusOr<std::optional<BudgetFigures>> Peek(
      absl::string_view budget, const LabelSet& labels,
      absl::Time now) const override;
  absl::StatusOr<std::vector<Standing>> Standings(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const override;
  std::vector<AuditEntry> ListAudit(size_t limit) const override;
  // Standings under mu_: CountersBusy when PeriodFor is.
  absl::StatusOr<std::vector<Standing>> StandingsLocked(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
  // One (budget, instance, period) a hold is charged to. The names are
  // interned in targets_: a charge is 16 bytes, not two strings.
  struct Charge {
    int64_t period_start = 0;  // PeriodBounds::start_key()
    uint32_t target = 0;       // index into targets_
  };
  struct ChargeTarget {
    std::string budget;
    std::string instance;
    uint32_t refs = 0;  // 0: on free_targets_
  };
  struct TargetKey {
    absl::string_view budget;
    absl::string_view instance;
  };
  struct TargetKeyHash {
    size_t operator()(const TargetKey& k) const {
      return absl::Hash<std::pair<absl::string_view, absl::string_view>>()(
          {k.budget, k.instance});
    }
  };
  struct TargetKeyEq {
    bool operator()(const TargetKey& a, const TargetKey& b) const {
      return a.budget == b.budget && a.instance == b.instance;
    }
  };
  // A hold in memory (docs/decisions/019-compact-holds.md): what the hot
  // path and expiry decide with, in 32 bytes. The estimate of a settled
  // hold and the expiry of a finished one are in its record on disk.
  struct Hold {
    // Open: expires_at. Settled or expired: settled_at.
    int64_t at_micros = 0;
    // Open or expired: the estimate (an expired hold's cost). Settled: the
    // cost.
    int64_t amount_nanos = 0;
    // RequestHash of its request_id; 0: none.
    uint64_t request_hash = 0;
    // charge_pool_[charges_at, charges_at + charge_count); settled holds
    // keep none.
    uint32_t charges_at = 0;
    uint16_t charge_count = 0;
    uint8_t state = HoldRecord::STATE_OPEN;
    bool reported_after_expiry : 1;
    // Its request_id is in request_overflow_, not by_request_hash_.
    bool request_in_overflow : 1;
    // A write of its record is in flight (decision 021): Reserve's first
    // write (not on disk yet), a Settle or expiry (memory already shows the
    // new state), or its deletion by pruning. Whoever set it owns the hold
    // until it clears it under mu_; other callers that need the record, or
    // would change the hold, wait (AwaitHoldWritten).
    bool writing : 1;
    // ForEachOpenHold visits it while open (ReserveRequest::
    // visit_on_restore; HoldRecord::skip_on_restore negated, so records
    // from before the flag are visited). Decision 025.
    bool visit_on_restore : 1;

    Hold()
        : reported_after_expiry(false),
          request_in_overflow(false),
          writing(false),
          visit_on_restore(true) {}
    bool open() const { return state == HoldRecord::STATE_OPEN; }
    bool expired() const { return state == HoldRecord::STATE_EXPIRED; }
    bool settled() const { return state == HoldRecord::STATE_SETTLED; }
  };
  static_assert(sizeof(Hold) == 32);

  // Writes `batch` to RocksDB under mu_ (durable per the sync mode only
  // after AwaitDurable(*ticket), which the caller calls without mu_ held).
  // The admin writers (SetBudget, DeleteBudget) only; the hot path writes
  // without mu_ (WriteUnlocked).
  absl::Status WriteLocked(rocksdb::WriteBatch& batch, uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases mu_, writes `batch`, takes mu_ again (decision 021). The caller
  // has made its memory change and marked what it changed (Hold::writing,
  // PinCounters); on an error it undoes its own change by deltas.
  absl::Status WriteUnlocked(rocksdb::WriteBatch& batch, uint64_t* ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits, releasing mu_ meanwhile, until hold `id` is not being written
  // (Hold::writing) or is gone. The caller looks the hold up again.
  void AwaitHoldWritten(const HoldId& id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a write in flight that merges into the counters of every charge
  // of `hold` (+1 before the write, -1 after it, failed or not). PeriodFor
  // does not load such counters from disk, and no such period is dropped
  // from memory, until the write is over.
  void PinCounters(const Hold& hold, int delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CounterWriteInFlight(absl::string_view budget,
                            absl::string_view instance,
                            int64_t period_start) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // PeriodFor's error when the counters it would load have a write in
  // flight: the caller calls AwaitCounterWrite and starts over (from where
  // it holds no pointers into budgets_).
  static absl::Status CountersBusy();
  static bool IsCountersBusy(const absl::Status& status);
  // Waits, releasing mu_ meanwhile, until some pinned counter write ends.
  void AwaitCounterWrite() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AwaitDurable(uint64_t ticket) ABSL_LOCKS_EXCLUDED(mu_);
  // Hands `ticket` to a caller that defers durability (`deferred_ticket`
  // not null); otherwise waits until it is durable, without mu_ held.
  absl::Status DeferOrAwait(uint64_t ticket, uint64_t* deferred_ticket)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (deferred_ticket != nullptr) {
      *deferred_ticket = ticket;
      return absl::OkStatus();
    }
    mu_.Unlock();
    absl::Status durable = AwaitDurable(ticket);
    mu_.Lock();
    return durable;
  }
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
  // RocksDB the first time; null if loading failed (status in *error;
  // CountersBusy if a write to them is in flight).
  PeriodState* PeriodFor(BudgetEntry& entry, absl::string_view instance,
                         int64_t key, absl::Status* error) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReadCounter(const std::string& key, int64_t* value) const;
  // Drops from `periods` (of budget, instance) those older than below_key
  // that have nothing held and no pinned write in flight (PinCounters: its
  // failure would put a hold back).
  void DropIdlePeriods(absl::string_view budget, absl::string_view instance,
                       int64_t below_key,
                       absl::InlinedVector<PeriodState, 2>& periods) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
  void ApplyToCharges(const Hold& hold, int64_t held_delta, int64_t spent_delta,
                      int64_t unreported_delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MergeCounters(rocksdb::WriteBatch& batch, const Hold& hold,
                     int64_t spent_delta, int64_t unreported_delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddAudit(rocksdb::WriteBatch& batch, absl::Time now,
                absl::string_view action, absl::string_view name,
                const Actor& actor, const BudgetSpec* before,
                const BudgetSpec* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  HoldId NewHoldId(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MergeSideCounters(rocksdb::WriteBatch& batch,
                         absl::Span<const SideCounterDelta> deltas);
  // Drops a hold from memory (its charge targets and request_id entry too).
  void Forget(const HoldId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The interned (budget, instance) of a charge: one reference per charge of
  // a hold in memory.
  uint32_t AcquireTarget(absl::string_view budget, absl::string_view instance)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Room for `count` charges in charge_pool_ for `hold` (reusing a freed
  // run of that length when there is one).
  absl::Span<Charge> AllocateCharges(Hold& hold, size_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Span<const Charge> ChargesOf(const Hold& hold) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return absl::MakeConstSpan(charge_pool_.data() + hold.charges_at,
                               hold.charge_count);
  }
  // Releases the hold's charge targets and its run of charge_pool_.
  void ReleaseCharges(Hold& hold) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // request_id -> hold. `hash` is RequestHash(request_id).
  uint64_t RequestHash(absl::string_view request_id) const;
  // The hold that `request_id` reserved, with its record read into
  // *record; nullopt if none. *collided: another request_id has the same
  // hash (the new hold's request_id then goes into request_overflow_).
  // *in_flight: the candidate hold is being written (its record may not be
  // on disk yet), so nothing was read and nullopt returned: the caller
  // waits for it (AwaitHoldWritten) and asks again.
  absl::StatusOr<std::optional<HoldId>> FindRequest(
      absl::string_view request_id, uint64_t hash, HoldRecord* record,
      bool* collided, std::optional<HoldId>* in_flight) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remembers that hold `id` (already in holds_) has `request_id`.
  void IndexRequest(const HoldId& id, absl::string_view request_id,
                    uint64_t hash, bool collided)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The stored record of a hold; NotFound if it is not on disk.
  absl::Status ReadHoldBytes(absl::string_view key,
                             rocksdb::PinnableSlice* bytes) const;
  absl::Status ReadHold(absl::string_view key, HoldRecord* record) const;
  // A view of `hold` (memory: state and cost) with the estimate, expiry,
  // terms and charges of its `record`.
  static HoldView ViewOf(absl::string_view reservation_id, const Hold& hold,
                         const HoldRecord& record);
  static void FillView(absl::string_view reservation_id, const Hold& hold,
                       const HoldRecord& record, HoldView& view);

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
  absl::flat_hash_map<
      std::string, absl::flat_hash_map<std::string, std::vector<BudgetEntry*>>>
      index_ ABSL_GUARDED_BY(mu_);
  std::vector<BudgetEntry*> match_all_ ABSL_GUARDED_BY(mu_);

  // Every hold still on disk, by id (docs/decisions/019): what Reserve,
  // Settle and expiry decide with. The terms, the request_id and the names
  // of the charges stay in the record on disk.
  absl::flat_hash_map<HoldId, Hold, absl::Hash<HoldId>, std::equal_to<HoldId>,
                      HugePageAllocator<std::pair<const HoldId, Hold>>>
      holds_ ABSL_GUARDED_BY(mu_);
  // Charge targets; a deque, so that target_ids_ can view their strings.
  std::deque<ChargeTarget> targets_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_targets_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TargetKey, uint32_t, TargetKeyHash, TargetKeyEq>
      target_ids_ ABSL_GUARDED_BY(mu_);
  // The charges of open and expired holds, in runs; freed runs by length.
  std::vector<Charge> charge_pool_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint32_t>> free_charge_runs_ ABSL_GUARDED_BY(mu_);
  // RequestHash(request_id) -> hold, verified against the record on a hit.
  absl::flat_hash_map<uint64_t, HoldId, absl::Hash<uint64_t>,
                      std::equal_to<uint64_t>,
                      HugePageAllocator<std::pair<const uint64_t, HoldId>>>
      by_request_hash_ ABSL_GUARDED_BY(mu_);
  // request_ids whose hash another request_id in by_request_hash_ has.
  absl::flat_hash_map<std::string, HoldId> request_overflow_
      ABSL_GUARDED_BY(mu_);
  // (expires_at micros, id) of open holds.
  absl::btree_set<std::pair<int64_t, HoldId>> expiry_queue_
      ABSL_GUARDED_BY(mu_);
  // (settled_at micros, id) of settled and expired holds.
  absl::btree_set<std::pair<int64_t, HoldId>> retention_queue_
      ABSL_GUARDED_BY(mu_);
  // (charge target, period start) -> Settle and expiry writes in flight
  // that merge into its counters (PinCounters).
  absl::flat_hash_map<std::pair<uint32_t, int64_t>, int>
      counter_writes_in_flight_ ABSL_GUARDED_BY(mu_);
  // Pinned writes that ended so far (AwaitCounterWrite waits for a change).
  uint64_t counter_writes_done_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  // Reused by Reserve and state changes (no allocation once warm).
  HoldRecord scratch_record_ ABSL_GUARDED_BY(mu_);
  std::string scratch_value_ ABSL_GUARDED_BY(mu_);
  std::string scratch_key_ ABSL_GUARDED_BY(mu_);
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
    by_request_hash_.reserve(estimated_holds);
  }
  // One record parsed in place of the last: its strings keep their
  // capacity, so the loop allocates only for what memory keeps.
  HoldRecord& record = scratch_record_;
  // The queues are built at the end from sorted runs (appending to a btree
  // is much cheaper than inserting at random).
  std::vector<std::pair<int64_t, HoldId>> expiring, retained;
  // (charge target, period start) -> estimates of its open holds.
  absl::flat_hash_map<std::pair<uint32_t, int64_t>, int64_t> held;
  expiring.reserve(estimated_holds);
  retained.reserve(estimated_holds);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(ScanOptions(), cfs_[kHoldsCf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const absl::string_view key(it->key().data(), it->key().size());
    HoldId id;
    if (!ParseHoldId(key, &id)) {
      return absl::DataLossError(absl::StrCat(
          "hold key \"", absl::CHexEscape(key),
          "\" is not a reservation id (\"r-\" and 32 lowercase hex digits)"));
    }
    if (!record.ParseFromArray(it->value().data(),
                               static_cast<int>(it->value().size())) ||
        record.reservation_id() != key) {
      return absl::DataLossError(
          absl::StrCat("hold record \"", key, "\" does not parse"));
    }
    Hold hold;
    hold.state = static_cast<uint8_t>(record.state());
    hold.at_micros =
        hold.open() ? record.expires_at_micros() : record.settled_at_micros();
    hold.amount_nanos =
        hold.open() ? record.estimate_nanos() : record.cost_nanos();
    hold.reported_after_expiry = record.reported_after_expiry();
    hold.visit_on_restore = !record.skip_on_restore();
    if (!hold.settled()) {
      absl::Span<Charge> charges = AllocateCharges(hold, record.charges_size());
      for (int i = 0; i < record.charges_size(); ++i) {
        const ChargeRecord& charge = record.charges(i);
        charges[i] = {charge.period_start(),
                      AcquireTarget(charge.budget(), charge.instance())};
        if (hold.open()) {
          held[{charges[i].target, charges[i].period_start}] +=
              hold.amount_nanos;
        }
      }
    }
    if (hold.open()) {
      expiring.emplace_back(hold.at_micros, id);
    } else {
      retained.emplace_back(hold.at_micros, id);
    }
    holds_.emplace(id, std::move(hold));
    if (!record.request_id().empty()) {
      const std::string& request_id = record.request_id();
      const uint64_t hash = RequestHash(request_id);
      bool collided = false;
      auto seen = by_request_hash_.find(hash);
      if (seen != by_request_hash_.end()) {
        HoldRecord other;
        char other_key[kHoldIdChars];
        if (absl::Status s =
                ReadHold(FormatHoldId(seen->second, other_key), &other);
            !s.ok()) {
          return s;
        }
        // The same request_id on two holds: the later one answers, as
        // before.
        collided = other.request_id() != request_id;
      }
      IndexRequest(id, request_id, hash, collided);
    }
  }
  if (absl::Status s = FromRocks(it->status(), "reading holds"); !s.ok()) {
    return s;
  }
  // `held` of each (budget, instance, period) with open holds, loading its
  // counters in key order (neighbouring reads share RocksDB blocks).
  struct Held {
    const ChargeTarget* target;
    int64_t period_start;
    int64_t nanos;
  };
  std::vector<Held> by_key;
  by_key.reserve(held.size());
  for (const auto& [key, nanos] : held) {
    by_key.push_back({&targets_[key.first], key.second, nanos});
  }
  held = {};
  std::sort(by_key.begin(), by_key.end(), [](const Held& a, const Held& b) {
    return std::tie(a.target->budget, a.target->instance, a.period_start) <
           std::tie(b.target->budget, b.target->instance, b.period_start);
  });
  BudgetEntry* entry = nullptr;
  for (const Held& h : by_key) {
    if (entry == nullptr || entry->spec.name != h.target->budget) {
      auto found = budgets_.find(h.target->budget);
      entry = found == budgets_.end() ? nullptr : &found->second;
    }
    if (entry == nullptr) continue;  // deleted: counts if set again
    absl::Status error;
    PeriodState* state =
        PeriodFor(*entry, h.target->instance, h.period_start, &error);
    if (state == nullptr) return error;
    state->held_nanos += h.nanos;
  }
  std::sort(expiring.begin(), expiring.end());
  std::sort(retained.begin(), retained.end());
  expiry_queue_.insert(expiring.begin(), expiring.end());
  retention_queue_.insert(retained.begin(), retained.end());
  return absl::OkStatus();
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
    return absl::DataLossError(absl::StrCat("counter \"", absl::CHexEscape(key),
                                            "\" has ", bytes.size(),
                                            " bytes, not 8"));
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
  const std::string& name = entry.spec.name;
  // A Settle or expiry writing to these counters now may or may not have
  // reached RocksDB: what a read gives is unknown until it is over.
  if (CounterWriteInFlight(name, instance, key)) {
    *error = CountersBusy();
    return nullptr;
  }
  PeriodState loaded{key, 0, 0, 0};
  *error = ReadCounter(CounterKey(name, instance, key, kSpentCounter),
                       &loaded.spent_nanos);
  if (!error->ok()) return nullptr;
  *error = ReadCounter(CounterKey(name, instance, key, kUnreportedCounter),
                       &loaded.unreported_nanos);
  if (!error->ok()) return nullptr;
  // Periods other than the newest are kept only while they have holds.
  DropIdlePeriods(name, instance, key, periods);
  periods.push_back(loaded);
  return &periods.back();
}

absl::Status RocksLedger::WriteLocked(rocksdb::WriteBatch& batch,
                                      uint64_t* ticket) {
  if (options_.before_write_for_test) options_.before_write_for_test();
  return database_->Write(batch, ticket);
}

void RocksLedger::DropIdlePeriods(
    absl::string_view budget, absl::string_view instance, int64_t below_key,
    absl::InlinedVector<PeriodState, 2>& periods) const {
  size_t kept = 0;
  for (size_t i = 0; i < periods.size(); ++i) {
    const PeriodState& p = periods[i];
    const bool idle = p.held_nanos == 0 && p.key < below_key &&
                      !CounterWriteInFlight(budget, instance, p.key);
    if (!idle) periods[kept++] = p;
  }
  periods.resize(kept);
}

absl::Status RocksLedger::WriteUnlocked(rocksdb::WriteBatch& batch,
                                        uint64_t* ticket) {
  mu_.Unlock();
  if (options_.before_write_for_test) options_.before_write_for_test();
  absl::Status status = database_->Write(batch, ticket);
  mu_.Lock();
  return status;
}

void RocksLedger::AwaitHoldWritten(const HoldId& id) const {
  if (options_.on_wait_for_write_for_test) {
    options_.on_wait_for_write_for_test();
  }
  struct Waiting {
    const RocksLedger* ledger;
    HoldId id;
    static bool Written(const Waiting* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = w->ledger->holds_.find(w->id);
      return it == w->ledger->holds_.end() || !it->second.writing;
    }
  };
  const Waiting waiting{this, id};
  mu_.Await(absl::Condition(&Waiting::Written, &waiting));
}

void RocksLedger::PinCounters(const Hold& hold, int delta) {
  for (const Charge& charge : ChargesOf(hold)) {
    auto [it, inserted] = counter_writes_in_flight_.try_emplace(
        std::make_pair(charge.target, charge.period_start), 0);
    it->second += delta;
    if (it->second == 0) counter_writes_in_flight_.erase(it);
  }
  if (delta < 0) ++counter_writes_done_;
}

bool RocksLedger::CounterWriteInFlight(absl::string_view budget,
                                       absl::string_view instance,
                                       int64_t period_start) const {
  if (counter_writes_in_flight_.empty()) return false;
  auto target = target_ids_.find(TargetKey{budget, instance});
  if (target == target_ids_.end()) return false;  // no hold charges it
  return counter_writes_in_flight_.contains(
      std::make_pair(target->second, period_start));
}

constexpr absl::string_view kCountersBusy =
    "the counters have a write in flight (internal: retried)";

absl::Status RocksLedger::CountersBusy() {
  return absl::AbortedError(kCountersBusy);
}

bool RocksLedger::IsCountersBusy(const absl::Status& status) {
  return absl::IsAborted(status) && status.message() == kCountersBusy;
}

void RocksLedger::AwaitCounterWrite() const {
  struct Waiting {
    const RocksLedger* ledger;
    uint64_t done;
    static bool Changed(const Waiting* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return w->ledger->counter_writes_done_ != w->done;
    }
  };
  if (options_.on_wait_for_write_for_test) {
    options_.on_wait_for_write_for_test();
  }
  const Waiting waiting{this, counter_writes_done_};
  mu_.Await(absl::Condition(&Waiting::Changed, &waiting));
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
  bool created = existing == budgets_.end();
  BudgetEntry fresh;
  while (created) {
    // Holds still open on an earlier budget of this name settle against
    // this one, so they count as held here (as LoadHolds does at start-up).
    fresh = BudgetEntry();
    fresh.spec = spec;
    fresh.tz = tz;
    // A Settle or expiry in flight on a hold charged to this name has taken
    // it off the expiry queue; if its write fails the hold is open again,
    // and must have been counted. Wait until no such write is in flight.
    absl::Status error;
    for (const auto& [target_period, writes] : counter_writes_in_flight_) {
      if (targets_[target_period.first].budget == spec.name) {
        error = CountersBusy();
        break;
      }
    }
    for (const auto& [expires_at, id] : expiry_queue_) {
      if (!error.ok()) break;
      const Hold& hold = holds_.at(id);
      for (const Charge& charge : ChargesOf(hold)) {
        const ChargeTarget& target = targets_[charge.target];
        if (target.budget != spec.name) continue;
        PeriodState* state =
            PeriodFor(fresh, target.instance, charge.period_start, &error);
        if (state == nullptr) break;
        state->held_nanos += hold.amount_nanos;
      }
      if (!error.ok()) break;
    }
    if (error.ok()) break;
    if (!IsCountersBusy(error)) return error;
    AwaitCounterWrite();  // then start over: the holds may have changed
    existing = budgets_.find(spec.name);
    created = existing == budgets_.end();
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
      DropIdlePeriods(spec.name, instance, std::numeric_limits<int64_t>::max(),
                      state.periods);
    }
  }
  if (!created) Unindex(&entry);
  entry.spec = spec;
  entry.tz = tz;
  Index(&entry);
  if (absl::Status s = DeferOrAwait(ticket, nullptr); !s.ok()) return s;
  return std::make_pair(std::move(spec), created);
}

absl::Status RocksLedger::DeleteBudget(absl::string_view name,
                                       const Actor& actor, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = budgets_.find(name);
  if (it == budgets_.end()) {
    return absl::NotFoundError(
        absl::StrCat("budget \"", name, "\" does not exist"));
  }
  rocksdb::WriteBatch batch;
  batch.Delete(cfs_[kBudgetsCf], it->first);
  AddAudit(batch, now, "budget.delete", name, actor, &it->second.spec, nullptr);
  uint64_t ticket = 0;
  if (absl::Status s = WriteLocked(batch, &ticket); !s.ok()) return s;
  Unindex(&it->second);
  budgets_.erase(it);
  return DeferOrAwait(ticket, nullptr);
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
  std::sort(
      specs.begin(), specs.end(),
      [](const BudgetSpec& a, const BudgetSpec& b) { return a.name < b.name; });
  return specs;
}

std::vector<std::string> RocksLedger::ListBudgetNames() const {
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    names.reserve(budgets_.size());
    for (const auto& [name, entry] : budgets_) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
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
  absl::InlinedVector<Match, 8> matches;
  for (;;) {
    auto it = budgets_.find(budget);
    if (it == budgets_.end()) return std::nullopt;
    matches.clear();
    absl::Status s = MatchBudget(&it->second, labels, now, matches);
    if (s.ok()) break;
    if (!IsCountersBusy(s)) return s;
    AwaitCounterWrite();
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
  for (;;) {
    absl::StatusOr<std::vector<Standing>> standings =
        StandingsLocked(budget, instance, now);
    if (standings.ok() || !IsCountersBusy(standings.status())) {
      return standings;
    }
    AwaitCounterWrite();
  }
}

absl::StatusOr<std::vector<Standing>> RocksLedger::StandingsLocked(
    absl::string_view budget, absl::string_view instance,
    absl::Time now) const {
  auto it = budgets_.find(budget);
  if (it == budgets_.end()) {
    return absl::NotFoundError(
        absl::StrCat("budget \"", budget, "\" does not exist"));
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
  const std::string prefix =
      absl::StrCat(entry.spec.name, std::string(1, '\0'));
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
      return absl::NotFoundError(
          absl::StrCat("budget \"", budget, "\" does not exist"));
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
    if (absl::Status e = ReadCounter(
            CounterKey(spec.name, name, bounds.start_key(), kUnreportedCounter),
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

HoldId RocksLedger::NewHoldId(absl::Time now) {
  // The reservation's time first, so that the holds' keys grow with time
  // and each new hold is written at the end of the memtable instead of at
  // a random place in it; 76 random bits after it.
  const uint64_t micros =
      static_cast<uint64_t>(std::max<int64_t>(absl::ToUnixMicros(now), 0));
  const uint64_t random_low_bits =
      absl::Uniform<uint64_t>(bitgen_) >> (64 - kHoldIdRandomBitsInHi);
  return HoldId{(micros << kHoldIdRandomBitsInHi) | random_low_bits,
                absl::Uniform<uint64_t>(bitgen_)};
}

uint32_t RocksLedger::AcquireTarget(absl::string_view budget,
                                    absl::string_view instance) {
  auto found = target_ids_.find(TargetKey{budget, instance});
  if (found != target_ids_.end()) {
    ++targets_[found->second].refs;
    return found->second;
  }
  uint32_t index;
  if (!free_targets_.empty()) {
    index = free_targets_.back();
    free_targets_.pop_back();
  } else {
    index = static_cast<uint32_t>(targets_.size());
    targets_.emplace_back();
  }
  ChargeTarget& target = targets_[index];
  target.budget.assign(budget.data(), budget.size());
  target.instance.assign(instance.data(), instance.size());
  target.refs = 1;
  target_ids_.emplace(TargetKey{target.budget, target.instance}, index);
  return index;
}

absl::Span<RocksLedger::Charge> RocksLedger::AllocateCharges(Hold& hold,
                                                             size_t count) {
  hold.charge_count = static_cast<uint16_t>(count);
  if (count == 0) {
    hold.charges_at = 0;
    return {};
  }
  if (count < free_charge_runs_.size() && !free_charge_runs_[count].empty()) {
    hold.charges_at = free_charge_runs_[count].back();
    free_charge_runs_[count].pop_back();
  } else {
    hold.charges_at = static_cast<uint32_t>(charge_pool_.size());
    charge_pool_.resize(charge_pool_.size() + count);
  }
  return absl::MakeSpan(charge_pool_.data() + hold.charges_at, count);
}

void RocksLedger::ReleaseCharges(Hold& hold) {
  for (const Charge& charge : ChargesOf(hold)) {
    ChargeTarget& target = targets_[charge.target];
    if (--target.refs > 0) continue;
    target_ids_.erase(TargetKey{target.budget, target.instance});
    std::string().swap(target.budget);
    std::string().swap(target.instance);
    free_targets_.push_back(charge.target);
  }
  if (hold.charge_count > 0) {
    if (free_charge_runs_.size() <= hold.charge_count) {
      free_charge_runs_.resize(hold.charge_count + 1);
    }
    free_charge_runs_[hold.charge_count].push_back(hold.charges_at);
  }
  hold.charges_at = 0;
  hold.charge_count = 0;
}

uint64_t RocksLedger::RequestHash(absl::string_view request_id) const {
  uint64_t hash = absl::Hash<absl::string_view>()(request_id);
  const int bits = options_.request_id_hash_bits;
  if (bits > 0 && bits < 64) hash &= (uint64_t{1} << bits) - 1;
  return hash == 0 ? 1 : hash;  // 0 means "no request_id"
}

absl::StatusOr<std::optional<HoldId>> RocksLedger::FindRequest(
    absl::string_view request_id, uint64_t hash, HoldRecord* record,
    bool* collided, std::optional<HoldId>* in_flight) const {
  *collided = false;
  in_flight->reset();
  std::optional<HoldId> candidate;
  if (!request_overflow_.empty()) {
    auto exact = request_overflow_.find(request_id);
    if (exact != request_overflow_.end()) candidate = exact->second;
  }
  if (!candidate.has_value()) {
    auto seen = by_request_hash_.find(hash);
    if (seen == by_request_hash_.end()) return std::nullopt;
    candidate = seen->second;
  }
  if (holds_.at(*candidate).writing) {
    *in_flight = candidate;
    return std::nullopt;
  }
  char key[kHoldIdChars];
  if (absl::Status s = ReadHold(FormatHoldId(*candidate, key), record);
      !s.ok()) {
    if (absl::IsNotFound(s)) {
      return absl::DataLossError(absl::StrCat(
          "the record of reservation ", FormatHoldId(*candidate, key),
          " (request_id \"", request_id, "\") is missing"));
    }
    return s;
  }
  if (record->request_id() != request_id) {
    *collided = true;
    return std::nullopt;
  }
  return candidate;
}

void RocksLedger::IndexRequest(const HoldId& id, absl::string_view request_id,
                               uint64_t hash, bool collided) {
  Hold& hold = holds_.at(id);
  hold.request_hash = hash;
  if (collided) {
    request_overflow_[request_id] = id;
    hold.request_in_overflow = true;
  } else {
    by_request_hash_[hash] = id;
  }
}

absl::Status RocksLedger::ReadHoldBytes(absl::string_view key,
                                        rocksdb::PinnableSlice* bytes) const {
  const rocksdb::Status status =
      db_->Get(rocksdb::ReadOptions(), cfs_[kHoldsCf], ToSlice(key), bytes);
  if (status.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("no record of hold ", key));
  }
  return FromRocks(status, "reading a hold");
}

absl::Status RocksLedger::ReadHold(absl::string_view key,
                                   HoldRecord* record) const {
  rocksdb::PinnableSlice bytes;
  if (absl::Status s = ReadHoldBytes(key, &bytes); !s.ok()) return s;
  if (!record->ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      record->reservation_id() != key) {
    return absl::DataLossError(
        absl::StrCat("hold record \"", key, "\" does not parse"));
  }
  return absl::OkStatus();
}

void RocksLedger::FillView(absl::string_view reservation_id, const Hold& hold,
                           const HoldRecord& record, HoldView& view) {
  view.reservation_id.assign(reservation_id.data(), reservation_id.size());
  view.state = hold.open()      ? HoldState::kOpen
               : hold.settled() ? HoldState::kSettled
                                : HoldState::kExpired;
  view.estimate_nanos = record.estimate_nanos();
  view.cost_nanos = hold.open() ? 0 : hold.amount_nanos;
  view.expires_at = absl::FromUnixMicros(record.expires_at_micros());
  view.terms = record.terms();
  view.charges.resize(record.charges_size());
  for (int i = 0; i < record.charges_size(); ++i) {
    view.charges[i].first = record.charges(i).budget();
    view.charges[i].second = record.charges(i).instance();
  }
}

HoldView RocksLedger::ViewOf(absl::string_view reservation_id, const Hold& hold,
                             const HoldRecord& record) {
  HoldView view;
  FillView(reservation_id, hold, record, view);
  return view;
}

absl::StatusOr<ReserveResult> RocksLedger::Reserve(
    const ReserveRequest& request, absl::Time now) {
  ReserveResult result;
  absl::MutexLock lock(&mu_);
  uint64_t request_hash = 0;
  bool request_collided = false;
  absl::InlinedVector<Match, 8> matches;
  // Starts over after waiting for a write in flight (decision 021).
  for (;;) {
    if (!request.request_id.empty() && !request.dry_run) {
      request_hash = RequestHash(request.request_id);
      // A hit is confirmed, and its terms read, with a point read of the
      // hold's record under the lock: replays are retries, rare. A hit whose
      // first write is in flight is waited for: its record is not on disk
      // yet, and if that write fails this request was never reserved.
      std::optional<HoldId> in_flight;
      absl::StatusOr<std::optional<HoldId>> seen =
          FindRequest(request.request_id, request_hash, &scratch_record_,
                      &request_collided, &in_flight);
      if (!seen.ok()) return seen.status();
      if (in_flight.has_value()) {
        AwaitHoldWritten(*in_flight);
        continue;
      }
      if (seen->has_value()) {
        result.kind = ReserveResult::Kind::kReplayed;
        result.reservation_id = scratch_record_.reservation_id();
        result.expires_at =
            absl::FromUnixMicros(scratch_record_.expires_at_micros());
        result.terms = scratch_record_.terms();
        // The first Check may not be durable yet; neither is its replay.
        if (absl::Status s = DeferOrAwait(
                LatestTicket(),
                request.defer_durability ? &result.durable_ticket : nullptr);
            !s.ok()) {
          return s;
        }
        return result;
      }
    }
    matches.clear();
    absl::Status collected = CollectMatches(*request.labels, now, matches);
    if (collected.ok()) break;
    if (!IsCountersBusy(collected)) return collected;
    AwaitCounterWrite();
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
  if (fits && !request.dry_run && matches.size() > kMaxCharges) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the request matches %d budgets; a reservation can be charged to at "
        "most %d: narrow the budgets' selectors",
        matches.size(), kMaxCharges));
  }
  if (!fits) {
    result.kind = ReserveResult::Kind::kDenied;
    std::sort(result.exceeded.begin(), result.exceeded.end(),
              [](const Standing& a, const Standing& b) {
                return a.remaining_nanos() < b.remaining_nanos();
              });
  } else if (request.dry_run) {
    result.kind = ReserveResult::Kind::kDryRun;
  } else {
    const HoldId id = NewHoldId(now);
    char key_text[kHoldIdChars];
    const absl::string_view key = FormatHoldId(id, key_text);
    const absl::Time expires_at = now + request.ttl;
    Hold hold;
    hold.amount_nanos = request.estimate_nanos;
    hold.at_micros = absl::ToUnixMicros(expires_at);
    hold.state = HoldRecord::STATE_OPEN;
    hold.visit_on_restore = request.visit_on_restore;

    HoldRecord& record = scratch_record_;
    record.Clear();
    record.set_reservation_id(key.data(), key.size());
    record.set_request_id(request.request_id.data(), request.request_id.size());
    record.set_estimate_nanos(request.estimate_nanos);
    record.set_created_at_micros(absl::ToUnixMicros(now));
    record.set_expires_at_micros(hold.at_micros);
    record.set_state(HoldRecord::STATE_OPEN);
    record.set_terms(request.terms.data(), request.terms.size());
    record.set_skip_on_restore(!request.visit_on_restore);
    for (const Match& m : matches) {
      ChargeRecord* charge = record.add_charges();
      charge->set_budget(m.entry->spec.name);
      charge->set_instance(m.instance.data(), m.instance.size());
      charge->set_period_start(m.bounds.start_key());
    }
    record.SerializeToString(&scratch_value_);
    rocksdb::WriteBatch batch(kCallBatchReservedBytes);
    batch.Put(cfs_[kHoldsCf], ToSlice(key), scratch_value_);
    MergeSideCounters(batch, request.side_counters);

    // Memory first, then the write without the lock (decision 021): Checks
    // meanwhile count this hold as held; a replay, GetHold or Settle of it
    // waits for the write (Hold::writing).
    hold.writing = true;
    absl::Span<Charge> charges = AllocateCharges(hold, matches.size());
    for (size_t i = 0; i < matches.size(); ++i) {
      const Match& m = matches[i];
      m.state->held_nanos += request.estimate_nanos;
      charges[i] = {m.bounds.start_key(),
                    AcquireTarget(m.entry->spec.name, m.instance)};
    }
    result.kind = ReserveResult::Kind::kReserved;
    result.reservation_id.assign(key.data(), key.size());
    result.expires_at = expires_at;
    expiry_queue_.emplace(hold.at_micros, id);
    holds_.emplace(id, std::move(hold));
    if (!request.request_id.empty()) {
      IndexRequest(id, request.request_id, request_hash, request_collided);
    }
    for (const Match& m : matches) {
      result.standings.push_back(
          MakeStanding(*m.entry, m.instance, m.bounds, *m.state));
    }
    uint64_t ticket = 0;
    const absl::Status written = WriteUnlocked(batch, &ticket);
    // Still in holds_: only this call removes a hold being written.
    Hold& stored = holds_.at(id);
    stored.writing = false;
    if (!written.ok()) {
      // Undo this hold's own change; other calls may have changed the same
      // counters meanwhile.
      ApplyToCharges(stored, -request.estimate_nanos, 0, 0);
      expiry_queue_.erase({stored.at_micros, id});
      Forget(id);
      return written;
    }
    if (absl::Status s = DeferOrAwait(ticket, request.defer_durability
                                                  ? &result.durable_ticket
                                                  : nullptr);
        !s.ok()) {
      return s;
    }
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
  HoldId id;
  if (!ParseHoldId(reservation_id, &id)) {
    return UnknownReservation(reservation_id, options_.settled_retention);
  }
  Hold hold;
  {
    absl::MutexLock lock(&mu_);
    auto it = holds_.find(id);
    // A write in flight: its record may not be on disk yet, and its new
    // state counts only once written.
    while (it != holds_.end() && it->second.writing) {
      AwaitHoldWritten(id);
      it = holds_.find(id);
    }
    if (it == holds_.end()) {
      return UnknownReservation(reservation_id, options_.settled_retention);
    }
    const Hold& found = it->second;
    hold.amount_nanos = found.amount_nanos;
    hold.state = found.state;
  }
  // The terms and charge names, outside the lock: a hold's record changes
  // only in its state fields, which memory answers.
  HoldRecord record;
  if (absl::Status s = ReadHold(reservation_id, &record); !s.ok()) {
    // Pruned since the lock was released.
    if (absl::IsNotFound(s)) {
      return UnknownReservation(reservation_id, options_.settled_retention);
    }
    return s;
  }
  return ViewOf(reservation_id, hold, record);
}

void RocksLedger::ForEachOpenHold(
    absl::FunctionRef<void(const HoldView&)> visit) const {
  absl::MutexLock lock(&mu_);
  // Only the open holds flagged visit_on_restore (decision 025): bursard's
  // calls in flight that hold concurrency slots, bounded by the pools'
  // sizes, however many calls are in flight.
  std::vector<HoldId> to_visit;
  for (const auto& [expires_at, id] : expiry_queue_) {
    if (holds_.at(id).visit_on_restore) to_visit.push_back(id);
  }
  // The terms are on disk (start-up only; one record and one view reused).
  // When few of the stored holds are to be visited (the usual restart),
  // point reads of them in key order; otherwise one scan of every stored
  // hold.
  HoldRecord record;
  HoldView view;
  auto visit_record = [&](absl::string_view key, const Hold& hold,
                          const rocksdb::Slice& value) {
    if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      record.Clear();  // the caller finds no terms and says so
    }
    FillView(key, hold, record, view);
    visit(view);
  };
  constexpr size_t kScanWhenVisitedAtLeastOneIn = 8;
  if (to_visit.size() * kScanWhenVisitedAtLeastOneIn >= holds_.size() &&
      !to_visit.empty()) {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(ScanOptions(), cfs_[kHoldsCf]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const absl::string_view key(it->key().data(), it->key().size());
      HoldId id;
      if (!ParseHoldId(key, &id)) continue;
      auto found = holds_.find(id);
      if (found == holds_.end() || !found->second.open() ||
          !found->second.visit_on_restore) {
        continue;
      }
      visit_record(key, found->second, it->value());
    }
    return;
  }
  std::sort(to_visit.begin(), to_visit.end());  // the order of their keys
  constexpr size_t kBatch = 256;
  struct KeyText {
    char text[kHoldIdChars];
  };
  std::vector<KeyText> key_text(kBatch);
  std::vector<rocksdb::Slice> keys(kBatch);
  std::vector<rocksdb::PinnableSlice> values(kBatch);
  std::vector<rocksdb::Status> statuses(kBatch);
  for (size_t first = 0; first < to_visit.size(); first += kBatch) {
    const size_t n = std::min(kBatch, to_visit.size() - first);
    for (size_t i = 0; i < n; ++i) {
      keys[i] = ToSlice(FormatHoldId(to_visit[first + i], key_text[i].text));
      values[i].Reset();
    }
    db_->MultiGet(rocksdb::ReadOptions(), cfs_[kHoldsCf], n, keys.data(),
                  values.data(), statuses.data(), /*sorted_input=*/true);
    for (size_t i = 0; i < n; ++i) {
      const rocksdb::Slice& value =
          statuses[i].ok() ? static_cast<const rocksdb::Slice&>(values[i])
                           : rocksdb::Slice();
      visit_record(absl::string_view(keys[i].data(), keys[i].size()),
                   holds_.at(to_visit[first + i]), value);
    }
  }
}

void RocksLedger::ApplyToCharges(const Hold& hold, int64_t held_delta,
                                 int64_t spent_delta,
                                 int64_t unreported_delta) {
  for (const Charge& charge : ChargesOf(hold)) {
    const ChargeTarget& target = targets_[charge.target];
    auto entry = budgets_.find(target.budget);
    if (entry == budgets_.end()) continue;
    auto instance = entry->second.instances.find(target.instance);
    if (instance == entry->second.instances.end()) continue;
    for (PeriodState& p : instance->second.periods) {
      if (p.key != charge.period_start) continue;
      p.held_nanos += held_delta;
      p.spent_nanos += spent_delta;
      p.unreported_nanos += unreported_delta;
    }
  }
}

void RocksLedger::MergeCounters(rocksdb::WriteBatch& batch, const Hold& hold,
                                int64_t spent_delta, int64_t unreported_delta) {
  for (const Charge& charge : ChargesOf(hold)) {
    const ChargeTarget& target = targets_[charge.target];
    if (spent_delta != 0) {
      AssignCounterKey(target.budget, target.instance, charge.period_start,
                       kSpentCounter, scratch_key_);
      batch.Merge(cfs_[kCountersCf], scratch_key_, EncodeInt64(spent_delta));
    }
    if (unreported_delta != 0) {
      AssignCounterKey(target.budget, target.instance, charge.period_start,
                       kUnreportedCounter, scratch_key_);
      batch.Merge(cfs_[kCountersCf], scratch_key_,
                  EncodeInt64(unreported_delta));
    }
  }
}

absl::StatusOr<SettleResult> RocksLedger::Settle(
    absl::string_view reservation_id, int64_t cost_nanos, absl::Time now,
    const UsageUpdate* usage, absl::Span<const SideCounterDelta> side_counters,
    uint64_t* durable_ticket) {
  HoldId id;
  if (!ParseHoldId(reservation_id, &id)) {
    return UnknownReservation(reservation_id, options_.settled_retention);
  }
  // Starts over after waiting for another write of this hold.
  for (;;) {
    // The stored record, read before the lock: the settled record is it with
    // the outcome appended (AppendOutcome), whatever state change came
    // between.
    rocksdb::PinnableSlice stored;
    absl::Status read = ReadHoldBytes(reservation_id, &stored);
    if (!read.ok() && !absl::IsNotFound(read)) return read;

    absl::MutexLock lock(&mu_);
    auto it = holds_.find(id);
    if (it == holds_.end()) {
      return UnknownReservation(reservation_id, options_.settled_retention);
    }
    if (it->second.writing) {
      // Its first write, another Settle or its expiry is in flight: exactly
      // one state change at a time, and the bytes read above may predate it.
      AwaitHoldWritten(id);
      continue;
    }
    Hold& hold = it->second;
    SettleResult result;
    if (hold.settled()) {
      result.cost_nanos = hold.amount_nanos;
      result.already_reported = true;
      result.after_expiry = hold.reported_after_expiry;
      // The first Report may not be durable yet; neither is this answer.
      if (absl::Status s = DeferOrAwait(LatestTicket(), durable_ticket);
          !s.ok()) {
        return s;
      }
      return result;
    }
    if (!read.ok()) {
      return absl::DataLossError(absl::StrCat(
          "reservation ", reservation_id,
          " is open in memory but its record is missing from RocksDB"));
    }
    const bool expired = hold.expired();
    const int64_t estimate = hold.amount_nanos;
    // An expired hold was charged its estimate as unreported spend.
    const int64_t spent_delta = expired ? cost_nanos - estimate : cost_nanos;
    const int64_t unreported_delta = expired ? -estimate : 0;
    const int64_t settled_at_micros = absl::ToUnixMicros(now);

    scratch_value_.assign(stored.data(), stored.size());
    AppendOutcome(scratch_value_, HoldRecord::STATE_SETTLED, cost_nanos,
                  settled_at_micros, expired);
    rocksdb::WriteBatch batch(kCallBatchReservedBytes);
    MergeCounters(batch, hold, spent_delta, unreported_delta);
    MergeSideCounters(batch, side_counters);
    const UsageDeltaLog::Guard usage_logged =  // kept until the Write returned
        AddUsageToBatch(*database_, batch, usage);
    batch.Put(cfs_[kHoldsCf], ToSlice(reservation_id), scratch_value_);

    // The state change, in memory before the write (decision 021): a second
    // Report or the expiry of this hold sees it settled, or waits for the
    // write. The charges stay until the write is done, for the undo.
    const int64_t before_at_micros = hold.at_micros;
    ApplyToCharges(hold, expired ? 0 : -estimate, spent_delta,
                   unreported_delta);
    if (expired) {
      retention_queue_.erase({hold.at_micros, id});
    } else {
      expiry_queue_.erase({hold.at_micros, id});
    }
    retention_queue_.emplace(settled_at_micros, id);
    hold.state = HoldRecord::STATE_SETTLED;
    hold.amount_nanos = cost_nanos;
    hold.at_micros = settled_at_micros;
    hold.reported_after_expiry = expired;
    hold.writing = true;
    PinCounters(hold, +1);
    uint64_t ticket = 0;
    const absl::Status written = WriteUnlocked(batch, &ticket);
    // Still in holds_: a hold being written is pruned by nobody.
    Hold& settled = holds_.at(id);
    settled.writing = false;
    PinCounters(settled, -1);
    if (!written.ok()) {
      // Put the hold back as it was, undoing this call's own deltas (other
      // calls may have changed the same counters meanwhile).
      ApplyToCharges(settled, expired ? 0 : estimate, -spent_delta,
                     -unreported_delta);
      retention_queue_.erase({settled_at_micros, id});
      if (expired) {
        retention_queue_.emplace(before_at_micros, id);
      } else {
        expiry_queue_.emplace(before_at_micros, id);
      }
      settled.state =
          expired ? HoldRecord::STATE_EXPIRED : HoldRecord::STATE_OPEN;
      settled.amount_nanos = estimate;
      settled.at_micros = before_at_micros;
      settled.reported_after_expiry = false;
      return written;
    }
    // A settled hold is only remembered (replays, repeated Reports).
    ReleaseCharges(settled);
    result.cost_nanos = cost_nanos;
    result.after_expiry = expired;
    if (absl::Status s = DeferOrAwait(ticket, durable_ticket); !s.ok()) {
      return s;
    }
    return result;
  }
}

std::string SideCounterKey(absl::string_view key) {
  return absl::StrCat(kSideCounterPrefix, key);
}

void RocksLedger::MergeSideCounters(rocksdb::WriteBatch& batch,
                                    absl::Span<const SideCounterDelta> deltas) {
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
  // A range read once (start-up, restoring rate windows): kept out of the
  // block cache like the other start-up scans.
  rocksdb::ReadOptions options = ScanOptions();
  options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(options, cfs_[kCountersCf]));
  for (it->Seek(SideCounterKey(from)); it->Valid(); it->Next()) {
    int64_t value = 0;
    if (!DecodeInt64(it->value(), &value)) {
      return absl::DataLossError(absl::StrCat(
          "side counter \"", absl::CHexEscape(it->key().ToString()),
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
  // Side counters live on disk only: the write needs no lock.
  uint64_t ticket = 0;
  if (absl::Status s = database_->Write(batch, &ticket); !s.ok()) return s;
  return AwaitDurable(ticket);
}

void RocksLedger::Forget(const HoldId& id) {
  auto it = holds_.find(id);
  if (it == holds_.end()) return;
  Hold& hold = it->second;
  if (hold.request_in_overflow) {
    for (auto o = request_overflow_.begin(); o != request_overflow_.end();
         ++o) {
      if (o->second == id) {
        request_overflow_.erase(o);
        break;
      }
    }
  } else if (hold.request_hash != 0) {
    auto by_request = by_request_hash_.find(hold.request_hash);
    if (by_request != by_request_hash_.end() && by_request->second == id) {
      by_request_hash_.erase(by_request);
    }
  }
  ReleaseCharges(hold);
  holds_.erase(it);
}

absl::StatusOr<int> RocksLedger::ExpireHolds(
    absl::Time now, std::vector<HoldView>* expired_holds) {
  const int64_t now_micros = absl::ToUnixMicros(now);
  // 1. Under the lock: the holds due.
  std::vector<HoldId> due;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = expiry_queue_.begin();
         it != expiry_queue_.end() && it->first <= now_micros; ++it) {
      // Its first write is in flight: its record is not on disk yet. The
      // next round expires it.
      if (holds_.at(it->second).writing) continue;
      due.push_back(it->second);
    }
  }
  // 2. Without it: their records (to append the outcome to, and for the
  // terms the caller gets). A hold settled meanwhile is skipped in 3.
  std::vector<std::string> stored(due.size());
  std::vector<bool> found(due.size(), false);
  for (size_t i = 0; i < due.size(); ++i) {
    char key[kHoldIdChars];
    rocksdb::PinnableSlice bytes;
    absl::Status s = ReadHoldBytes(FormatHoldId(due[i], key), &bytes);
    if (absl::IsNotFound(s)) continue;
    if (!s.ok()) return s;
    stored[i].assign(bytes.data(), bytes.size());
    found[i] = true;
  }
  // 3. Under the lock: expire those still open, prune, one batch. Memory
  // changes first; the write goes without the lock (decision 021).
  std::vector<size_t> expired;             // indexes into `due`
  std::vector<int64_t> expired_at_micros;  // their expires_at, for the undo
  std::vector<HoldId> pruned;
  uint64_t ticket = 0;
  {
    absl::MutexLock lock(&mu_);
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < due.size(); ++i) {
      auto it = holds_.find(due[i]);
      if (it == holds_.end() || !it->second.open() || it->second.writing) {
        continue;
      }
      char key[kHoldIdChars];
      if (!found[i]) {
        return absl::DataLossError(absl::StrCat(
            "reservation ", FormatHoldId(due[i], key),
            " is open in memory but its record is missing from RocksDB"));
      }
      const Hold& hold = it->second;
      MergeCounters(batch, hold, hold.amount_nanos, hold.amount_nanos);
      AppendOutcome(stored[i], HoldRecord::STATE_EXPIRED, hold.amount_nanos,
                    now_micros, false);
      batch.Put(cfs_[kHoldsCf], ToSlice(FormatHoldId(due[i], key)), stored[i]);
      expired.push_back(i);
    }
    const int64_t retention_cutoff =
        now_micros - absl::ToInt64Microseconds(options_.settled_retention);
    for (auto it = retention_queue_.begin();
         it != retention_queue_.end() && it->first <= retention_cutoff; ++it) {
      Hold& hold = holds_.at(it->second);
      if (hold.writing) continue;  // a Settle in flight: pruned later
      char key[kHoldIdChars];
      batch.Delete(cfs_[kHoldsCf], ToSlice(FormatHoldId(it->second, key)));
      hold.writing = true;
      pruned.push_back(it->second);
    }
    if (batch.Count() == 0) return 0;

    for (size_t i : expired) {
      Hold& hold = holds_.at(due[i]);
      const int64_t estimate = hold.amount_nanos;
      expired_at_micros.push_back(hold.at_micros);
      expiry_queue_.erase({hold.at_micros, due[i]});
      hold.state = HoldRecord::STATE_EXPIRED;
      hold.at_micros = now_micros;
      ApplyToCharges(hold, -estimate, estimate, estimate);
      retention_queue_.emplace(now_micros, due[i]);
      hold.writing = true;
      PinCounters(hold, +1);
    }
    const absl::Status written = WriteUnlocked(batch, &ticket);
    for (size_t j = 0; j < expired.size(); ++j) {
      const HoldId& id = due[expired[j]];
      Hold& hold = holds_.at(id);
      hold.writing = false;
      PinCounters(hold, -1);
      if (written.ok()) continue;
      // Open again, undoing this call's own deltas.
      const int64_t estimate = hold.amount_nanos;
      retention_queue_.erase({now_micros, id});
      hold.state = HoldRecord::STATE_OPEN;
      hold.at_micros = expired_at_micros[j];
      expiry_queue_.emplace(hold.at_micros, id);
      ApplyToCharges(hold, estimate, -estimate, -estimate);
    }
    for (const HoldId& id : pruned) {
      Hold& hold = holds_.at(id);
      hold.writing = false;
      if (!written.ok()) continue;
      retention_queue_.erase({hold.at_micros, id});
      Forget(id);
    }
    if (!written.ok()) return written;
  }
  // The views go out even if the fsync fails: memory has expired the holds,
  // and the caller gives their slots back.
  absl::Status durable = AwaitDurable(ticket);
  if (expired_holds != nullptr) {
    HoldRecord record;
    for (size_t i : expired) {
      Hold hold;
      if (!record.ParseFromString(stored[i])) continue;  // checked at load
      hold.amount_nanos = record.cost_nanos();
      hold.state = HoldRecord::STATE_EXPIRED;
      expired_holds->push_back(ViewOf(record.reservation_id(), hold, record));
    }
  }
  if (!durable.ok()) return durable;
  return static_cast<int>(expired.size());
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
