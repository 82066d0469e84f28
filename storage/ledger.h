#ifndef BURSAR_STORAGE_LEDGER_H_
#define BURSAR_STORAGE_LEDGER_H_

// The budget ledger: budgets, their spend per instance and period, and the
// holds (reservations) that Check places and Report settles.
//
// Memory is authoritative for decisions; RocksDB makes every change durable
// before it is acknowledged (see storage/README.md for the key layout). All
// time comes in as arguments, so the ledger is deterministic given its
// inputs. Thread-safe: every method may be called concurrently.
//
// Exactness: Reserve checks `spent + held + estimate <= amount` for every
// matching budget and places the hold on all of them in one critical
// section, so concurrent Reserves never overshoot a budget.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "storage/audit.h"
#include "storage/budget.h"
#include "storage/labels.h"
#include "storage/usage_store.h"

namespace bursar::storage {

enum class SyncMode {
  // Acknowledge after the write reaches the OS (the WAL is written, not
  // fsynced): survives a process crash, not a power loss.
  kNone,
  // Acknowledge after an fsync that covers the write; concurrent writes
  // share fsyncs (at most one every `group_window`).
  kGroup,
  // fsync each write before the next one starts.
  kAlways,
};

absl::StatusOr<SyncMode> ParseSyncMode(absl::string_view text);

// Where one budget instance stands in its current period.
struct Standing {
  std::string budget;
  std::string instance;
  Period period = Period::kNone;
  absl::Time period_start = absl::InfinitePast();
  absl::Time period_end = absl::InfiniteFuture();
  int64_t amount_nanos = 0;
  int64_t spent_nanos = 0;
  int64_t held_nanos = 0;
  int64_t unreported_nanos = 0;
  // max(0, amount - spent - held).
  int64_t remaining_nanos() const;
};

// A counter a caller keeps beside the budgets' (e.g. a rate-limit window
// that must survive a restart), changed in the WriteBatch of the Reserve or
// Settle it belongs to, so it is exactly as durable as that change. Keys are
// the caller's (1..1024 bytes) and share one ordered key space: callers that
// prune by time put the time first.
struct SideCounterDelta {
  std::string key;
  int64_t delta = 0;
};

struct ReserveRequest {
  const LabelSet* labels = nullptr;
  int64_t estimate_nanos = 0;
  // Empty: not idempotent.
  absl::string_view request_id;
  // Stored with the hold and handed back by Settle and on replay.
  absl::string_view terms;
  absl::Duration ttl = absl::Minutes(10);
  bool dry_run = false;
  // Written with the hold (kReserved only).
  absl::Span<const SideCounterDelta> side_counters;
  // Whether ForEachOpenHold visits the hold while it is open. False for a
  // hold whose terms nothing at start-up needs (bursard: a call that took no
  // concurrency slot): a restart then reads no terms for it (decision 025).
  // Stored with the hold; holds stored before this flag existed are visited.
  bool visit_on_restore = true;
  // False: Reserve returns once its result is durable per the sync mode.
  // True: once it is written (and visible to every other call); the result
  // may be acknowledged only after WhenDurable(durable_ticket) reports OK.
  bool defer_durability = false;
};

struct ReserveResult {
  enum class Kind {
    kReserved,  // a new hold; reservation_id is set
    kReplayed,  // request_id seen before: the earlier hold, unchanged
    kDenied,    // some budget cannot fit the estimate; see `exceeded`
    kDryRun,    // every budget fits; nothing reserved
  };
  Kind kind = Kind::kDenied;
  std::string reservation_id;
  absl::Time expires_at;
  // For kReplayed: the terms stored with the earlier hold.
  std::string terms;
  // Every matching budget instance (after the hold, for kReserved).
  std::vector<Standing> standings;
  // For kDenied: the budgets that cannot fit the estimate, tightest first.
  std::vector<Standing> exceeded;
  // With defer_durability: the write to wait for (0: nothing to wait for).
  uint64_t durable_ticket = 0;
};

enum class HoldState { kOpen, kSettled, kExpired };

struct HoldView {
  std::string reservation_id;
  HoldState state = HoldState::kOpen;
  int64_t estimate_nanos = 0;
  int64_t cost_nanos = 0;
  absl::Time expires_at;
  std::string terms;
  // The budget instances the hold was charged to: (budget, instance).
  std::vector<std::pair<std::string, std::string>> charges;
};

// The figures of one budget instance in its current period, without names
// (cheap to return: no allocation).
struct BudgetFigures {
  int64_t amount_nanos = 0;
  int64_t spent_nanos = 0;
  int64_t held_nanos = 0;
  int64_t unreported_nanos = 0;
  absl::Time period_start = absl::InfinitePast();
  absl::Time period_end = absl::InfiniteFuture();
};

struct SettleResult {
  int64_t cost_nanos = 0;
  bool already_reported = false;
  bool after_expiry = false;
};

// The ledger's contract; RocksLedger (rocks_ledger.h) is the embedded
// implementation, and a shared-counter one can slot in behind it.
class Ledger {
 public:
  virtual ~Ledger() = default;

  // Budgets. SetBudget normalizes and validates the spec (see budget.h),
  // stamps updated_at/updated_by, and audits old -> new. Returns the stored
  // spec and whether it was created.
  virtual absl::StatusOr<std::pair<BudgetSpec, bool>> SetBudget(
      BudgetSpec spec, const Actor& actor, absl::Time now) = 0;
  // NotFound if there is no such budget.
  virtual absl::Status DeleteBudget(absl::string_view name, const Actor& actor,
                                    absl::Time now) = 0;
  virtual std::optional<BudgetSpec> GetBudget(absl::string_view name) const = 0;
  // Every budget, by name.
  virtual std::vector<BudgetSpec> ListBudgets() const = 0;
  // Every budget's name, sorted: for passes over many budgets that read
  // each one's spec and standings in turn (GetBudget, LiveStandings) rather
  // than copy every spec at once.
  virtual std::vector<std::string> ListBudgetNames() const = 0;
  // The budget's instances in the period containing `now`: the one named by
  // `instance`, or (when empty) every instance with spend or holds in it
  // (a budget without per_label always has its one instance).
  virtual absl::StatusOr<std::vector<Standing>> Standings(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const = 0;
  // As Standings (same instances, same figures), for readers off the hot
  // path (the alert engine): memory is copied under the ledger's lock with
  // no RocksDB I/O under it, and instances memory has not loaded for this
  // period are read from RocksDB after the lock is released (so they may
  // lag a concurrent Settle by that one write). Never loads anything into
  // memory. The default calls Standings.
  virtual absl::StatusOr<std::vector<Standing>> LiveStandings(
      absl::string_view budget, absl::string_view instance,
      absl::Time now) const {
    return Standings(budget, instance, now);
  }
  // The named budget as it applies to a request with `labels`: the
  // instance they select, in the period containing `now`. nullopt when there
  // is no such budget, its selector does not match, or its per_label label
  // is missing. Errors only for I/O.
  virtual absl::StatusOr<std::optional<BudgetFigures>> Peek(
      absl::string_view budget, const LabelSet& labels,
      absl::Time now) const = 0;
  // The audit log of the whole database (budget and policy changes), newest
  // first.
  virtual std::vector<AuditEntry> ListAudit(size_t limit) const = 0;

  // The hot path. Errors only for I/O (Unavailable); a budget that cannot
  // fit is a kDenied result.
  virtual absl::StatusOr<ReserveResult> Reserve(const ReserveRequest& request,
                                                absl::Time now) = 0;
  // NotFound if the ledger has no such hold (never issued, or pruned). The
  // terms and charges may come from storage (RocksLedger: one point read,
  // outside the ledger's lock).
  virtual absl::StatusOr<HoldView> GetHold(
      absl::string_view reservation_id) const = 0;
  // Replaces the hold with the actual cost on every budget it was charged
  // to, in the period it was reserved in. Idempotent: a second Settle
  // changes nothing and returns the first cost with already_reported. A
  // hold that had expired (charged its estimate) is corrected to the cost.
  // `usage` (may be null) is applied to the usage rollups atomically with
  // the charge, and `side_counters` written with it; both only by the
  // Settle that charges (not by a repeat). With `durable_ticket` null,
  // Settle returns once its result is durable per the sync mode; else once
  // it is written, with the ticket to wait for in *durable_ticket (as
  // ReserveRequest::defer_durability).
  virtual absl::StatusOr<SettleResult> Settle(
      absl::string_view reservation_id, int64_t cost_nanos, absl::Time now,
      const UsageUpdate* usage,
      absl::Span<const SideCounterDelta> side_counters,
      uint64_t* durable_ticket) = 0;
  // Calls done(status) once the writes up to `ticket` (from a deferred
  // Reserve or Settle) are durable per the sync mode: OK, or Unavailable
  // if their fsync failed (then nothing may be acknowledged; the write
  // stays applied, and an idempotent retry answers once the disk is back).
  // At once on the caller's thread when there is nothing to wait for;
  // otherwise on a storage thread, so `done` must be quick.
  virtual void WhenDurable(uint64_t ticket,
                           absl::AnyInvocable<void(absl::Status) &&> done) = 0;
  // Charges every open hold whose TTL has passed at its estimate (flagged as
  // unreported) and forgets settled holds older than the retention. Returns
  // how many holds expired, and appends them (as expired) to `expired`
  // unless it is null.
  virtual absl::StatusOr<int> ExpireHolds(absl::Time now,
                                          std::vector<HoldView>* expired) = 0;
  // Calls `visit` with every open hold that was reserved with
  // visit_on_restore (and every open hold stored before that flag existed),
  // in reservation-id order, under the ledger's lock (`visit` must not call
  // the ledger). Open holds reserved without it are not visited and their
  // terms are not read. Meant for start-up: RocksLedger reads the visited
  // holds' terms from disk, by point reads when few stored holds are to be
  // visited and by one scan of every stored hold otherwise.
  virtual void ForEachOpenHold(
      absl::FunctionRef<void(const HoldView&)> visit) const = 0;
  // Every side counter with from <= key < to, in key order, with its value
  // (counters whose deltas sum to zero included).
  virtual absl::Status ForEachSideCounter(
      absl::string_view from, absl::string_view to,
      absl::FunctionRef<void(absl::string_view key, int64_t value)> visit)
      const = 0;
  // Forgets every side counter with from <= key < to.
  virtual absl::Status DeleteSideCounters(absl::string_view from,
                                          absl::string_view to) = 0;
  // Open holds right now.
  virtual size_t open_holds() const = 0;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_LEDGER_H_
