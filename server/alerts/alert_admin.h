#ifndef BURSAR_SERVER_ALERTS_ALERT_ADMIN_H_
#define BURSAR_SERVER_ALERTS_ALERT_ADMIN_H_

// Admin.ListAlerts and the parts of Admin.WatchAlerts without gRPC types:
// stored alerts as protos, and the hub watchers subscribe to. Also the
// DecisionObserver that wakes the alert engine after every Report. Thread-
// safe.

#include <cstdint>

#include "absl/status/status.h"
#include "alerts/alert_engine.h"
#include "alerts/alert_hub.h"
#include "bursar/v1/admin.pb.h"
#include "server/decision_observer.h"
#include "storage/alert_store.h"

namespace bursar::server {

// The proto of a stored alert (times RFC 3339 UTC).
void AlertToProto(const storage::AlertEntry& alert, v1::Alert* out);

class AlertAdmin {
 public:
  // All pointers must outlive the AlertAdmin; `engine` may be null (then
  // `evaluations` is 0).
  AlertAdmin(const storage::AlertStore* store,
             const alerts::AlertEngine* engine, alerts::AlertHub* hub)
      : store_(store), engine_(engine), hub_(hub) {}

  // INVALID_ARGUMENT for a limit outside 0..1000.
  absl::Status ListAlerts(const v1::ListAlertsRequest& request,
                          v1::ListAlertsResponse* response) const;

  alerts::AlertHub* hub() const { return hub_; }

 private:
  const storage::AlertStore* const store_;
  const alerts::AlertEngine* const engine_;
  alerts::AlertHub* const hub_;
};

// Passes every Check and Report on to `next` (may be null), then wakes the
// alert engine after a Report that succeeded. Cheap: Wake never waits on a
// pass.
class AlertWakingObserver final : public DecisionObserver {
 public:
  AlertWakingObserver(DecisionObserver* next, alerts::AlertEngine* engine)
      : next_(next), engine_(engine) {}

  void OnCheck(const v1::CheckRequest& request,
               const v1::CheckResponse& response, const absl::Status& status,
               absl::Duration elapsed) override;
  void OnReport(const v1::ReportRequest& request,
                const v1::ReportResponse& response, const absl::Status& status,
                absl::Duration elapsed) override;

 private:
  DecisionObserver* const next_;
  alerts::AlertEngine* const engine_;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_ALERTS_ALERT_ADMIN_H_
