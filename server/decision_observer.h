#ifndef BURSAR_SERVER_DECISION_OBSERVER_H_
#define BURSAR_SERVER_DECISION_OBSERVER_H_

// The one hook of Decider for whoever watches decisions (metrics today):
// called once at the end of every Check and Report with what it answered.

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bursar/v1/decision.pb.h"

namespace bursar::server {

class DecisionObserver {
 public:
  virtual ~DecisionObserver() = default;

  // Called on the request's thread after Decider::Check, whatever it
  // returned: `response` is meaningful only when `status` is OK. `elapsed`
  // is the decision's wall time inside bursard (monotonic clock).
  // Implementations must be thread-safe and cheap: they run on the hot path.
  virtual void OnCheck(const v1::CheckRequest& request,
                       const v1::CheckResponse& response,
                       const absl::Status& status, absl::Duration elapsed) = 0;
  // The same for Decider::Report.
  virtual void OnReport(const v1::ReportRequest& request,
                        const v1::ReportResponse& response,
                        const absl::Status& status, absl::Duration elapsed) = 0;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_DECISION_OBSERVER_H_
