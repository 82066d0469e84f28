#ifndef BURSAR_STORAGE_ALERT_STORE_H_
#define BURSAR_STORAGE_ALERT_STORE_H_

// Fired alerts and webhook dead letters. The store is what makes an alert
// fire exactly once per (rule, scope, period): Fire records an alert only if
// none with the same key was recorded before, in one durable write, so the
// answer holds across restarts and policy pushes. Storage never interprets
// rules or scopes (alerts/ does); it keeps them as opaque strings.
//
// Thread-safe: every method may be called concurrently; Fire is atomic
// (check and write under one lock). Writes are acknowledged once durable per
// the database's sync mode.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace bursar::storage {

// Bounds on what an alert may hold; over them Fire answers InvalidArgument.
inline constexpr size_t kMaxAlertRuleBytes = 256;
inline constexpr size_t kMaxAlertScopeBytes = 512;
inline constexpr size_t kMaxAlertMessageBytes = 4096;

struct AlertEntry {
  // Set by Fire: "al-" and 32 lowercase hex digits (fired_at, sequence), so
  // ids sort by firing time.
  std::string id;
  // Together the exactly-once key. Neither rule nor scope may hold NUL.
  std::string rule;
  std::string scope;
  // The alert's period as Unix seconds of its start (0: one period forever).
  int64_t period_key = 0;

  absl::Time period_start = absl::InfinitePast();
  absl::Time fired_at = absl::UnixEpoch();
  std::string severity;
  std::string message;
  std::string budget;
  std::string instance;
  std::string policy_version;
};

struct DeadLetter {
  std::string alert_id;
  std::string url;
  int attempts = 0;
  std::string last_error;
  absl::Time failed_at = absl::UnixEpoch();
  std::string body;
};

// A webhook delivery not done yet (the outbox): stored with the alert by
// Fire, removed by FinishDelivery once delivered or dead-lettered.
struct PendingDelivery {
  AlertEntry alert;
  std::string url;
};

class AlertStore {
 public:
  virtual ~AlertStore() = default;

  // Records `alert` (its id assigned) unless an alert with the same (rule,
  // scope, period_key) is stored: returns true and fills alert->id when it
  // was recorded now, false when it had fired before (nothing written).
  // InvalidArgument for a rule or scope that is empty, too long or holds
  // NUL; Unavailable/DataLoss for I/O.
  virtual absl::StatusOr<bool> Fire(AlertEntry* alert) = 0;
  // Whether an alert with this key is stored.
  virtual absl::StatusOr<bool> HasFired(absl::string_view rule,
                                        absl::string_view scope,
                                        int64_t period_key) const = 0;
  // The alert stored with this key, if any. The default says none.
  virtual absl::StatusOr<std::optional<AlertEntry>> GetFired(
      absl::string_view rule, absl::string_view scope,
      int64_t period_key) const {
    return std::optional<AlertEntry>();
  }
  // Stored alerts, newest first (by fired_at, then order of firing); at most
  // `limit`.
  virtual absl::StatusOr<std::vector<AlertEntry>> List(size_t limit) const = 0;

  // Fire, and when the alert is recorded now, one pending delivery per URL
  // in `outbox` in the same write, so a delivery survives a crash between
  // storing the alert and sending it. The default ignores `outbox`.
  virtual absl::StatusOr<bool> Fire(AlertEntry* alert,
                                    absl::Span<const std::string> outbox) {
    return Fire(alert);
  }
  // Every pending delivery, oldest alert first.
  virtual absl::StatusOr<std::vector<PendingDelivery>> ListPendingDeliveries()
      const {
    return std::vector<PendingDelivery>();
  }
  // Removes the pending delivery of (alert_id, url) (nothing if there is
  // none) and, with `dead_letter`, records that in the same write.
  virtual absl::Status FinishDelivery(absl::string_view alert_id,
                                      absl::string_view url,
                                      const DeadLetter* dead_letter) {
    return dead_letter == nullptr ? absl::OkStatus()
                                  : PutDeadLetter(*dead_letter);
  }

  // Records a webhook delivery that failed for good.
  virtual absl::Status PutDeadLetter(const DeadLetter& letter) = 0;
  // Dead letters, newest first; at most `limit`.
  virtual absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(
      size_t limit) const = 0;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_ALERT_STORE_H_
