#ifndef BURSAR_SERVER_DECIDER_H_
#define BURSAR_SERVER_DECIDER_H_

// Check and Report as plain calls: validates the request, plans the call
// under the active policy, and reserves or settles in the ledger. When a
// version runs in shadow, Check also plans the call under it and records how
// the plans differ in its ShadowStats; the answer never depends on it
// (docs/decisions/005). The gRPC (and later HTTP) handlers are thin adapters
// over this. Thread-safe.

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bursar/v1/decision.pb.h"
#include "limits/concurrency_pools.h"
#include "limits/rate_limiter.h"
#include "policy/kpi_view.h"
#include "server/clock.h"
#include "server/decision_observer.h"
#include "server/policy_registry.h"
#include "server/usage_attribution.h"
#include "storage/ledger.h"

namespace bursar::server {

// Bounds on what a request may carry; over them is INVALID_ARGUMENT.
inline constexpr int kMaxLabels = 32;
inline constexpr size_t kMaxLabelKeyBytes = 64;
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr size_t kMaxModelBytes = 256;

class HoldTerms;  // server/hold_terms.proto

// How far back stored hour/day rate-window counts are kept: the longest
// window (a day) and as long again (limits::RateLimiter keeps as much).
inline constexpr absl::Duration kRateWindowsKept = absl::Hours(48);

struct DeciderOptions {
  absl::Duration reservation_ttl = absl::Minutes(10);
  // Told about every Check and Report (e.g. metrics); may be null. Must
  // outlive the Decider.
  DecisionObserver* observer = nullptr;
  // Usage rollups: Report adds to them in its settlement batch, expiry
  // counts expired reservations, and conditions read signals from its
  // store. May be null (no rollups, no signals). Must outlive the Decider.
  UsageAttribution* usage = nullptr;
  // What kpi.* reads (server/kpi_rollups.h); null: all KPIs read zero.
  const policy::KpiView* kpis = nullptr;
};

class Decider {
 public:
  // All pointers must outlive the Decider.
  Decider(storage::Ledger* ledger, const PolicyRegistry* policies,
          Clock* clock, DeciderOptions options)
      : ledger_(ledger), policies_(policies), clock_(clock), options_(options) {}

  // A budget denial is an OK status with VERDICT_DENY. Both return once
  // their answer is durable per the sync mode.
  absl::Status Check(const v1::CheckRequest& request,
                     v1::CheckResponse* response);
  absl::Status Report(const v1::ReportRequest& request,
                      v1::ReportResponse* response);
  // As Check and Report, but they return as soon as their change is written
  // (and counted by every other call), without waiting for an fsync: on OK
  // the answer may be sent only once WhenDurable(*durable_ticket) reports
  // OK. bursard's gRPC handlers answer that way, so that no thread waits
  // for a group fsync.
  absl::Status CheckDeferred(const v1::CheckRequest& request,
                             v1::CheckResponse* response,
                             uint64_t* durable_ticket);
  absl::Status ReportDeferred(const v1::ReportRequest& request,
                              v1::ReportResponse* response,
                              uint64_t* durable_ticket);
  // Ledger::WhenDurable.
  void WhenDurable(uint64_t ticket,
                   absl::AnyInvocable<void(absl::Status) &&> done) {
    ledger_->WhenDurable(ticket, std::move(done));
  }

  // At start-up: gives the calls still in flight (open reservations) their
  // concurrency slots back. Reads the terms only of the open reservations
  // whose Check took slots (Check reserves them with visit_on_restore) and
  // of those stored before that flag existed (decision 025); DataLoss if
  // one of those has unreadable terms.
  absl::Status RestoreInFlight();

  // Expires reservations past their TTL (charging their estimate, freeing
  // their slots) and drops idle rate-limit counters. Returns how many
  // reservations expired. Called every second by bursard.
  absl::StatusOr<int> ExpireReservations();

  const limits::RateLimiter& rate_limiter() const { return rates_; }
  const limits::ConcurrencyPools& pools() const { return pools_; }

 private:
  // Gives back the rate-limit charges and pool slots of a call that holds
  // them no longer.
  void ReleasePools(const HoldTerms& terms);
  // Forgets stored hour/day window counts too old to matter.
  absl::Status PruneRateWindows(absl::Time now);
  // Check and Report without telling options_.observer; with
  // `durable_ticket` null they wait for durability, else they defer it.
  absl::Status Decide(const v1::CheckRequest& request,
                      v1::CheckResponse* response, uint64_t* durable_ticket);
  absl::Status Settle(const v1::ReportRequest& request,
                      v1::ReportResponse* response, uint64_t* durable_ticket);

  storage::Ledger* const ledger_;
  const PolicyRegistry* const policies_;
  Clock* const clock_;
  const DeciderOptions options_;
  limits::RateLimiter rates_;
  limits::ConcurrencyPools pools_;
  // ExpireReservations' thread only.
  absl::Time last_rate_prune_ = absl::InfinitePast();
};

// INVALID_ARGUMENT naming the first bad field.
absl::Status ValidateCheckRequest(const v1::CheckRequest& request);
absl::Status ValidateReportRequest(const v1::ReportRequest& request);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_DECIDER_H_
