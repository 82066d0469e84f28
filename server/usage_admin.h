#ifndef BURSAR_SERVER_USAGE_ADMIN_H_
#define BURSAR_SERVER_USAGE_ADMIN_H_

// Admin.GetUsage, Admin.ReportSignal and Admin.ListSignals as plain calls
// over the usage store (docs/usage-and-kpis.md). Thread-safe. Every bad
// request is INVALID_ARGUMENT naming the field.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "bursar/v1/admin.pb.h"
#include "server/clock.h"
#include "server/policy_registry.h"
#include "storage/usage_store.h"

namespace bursar::server {

// The longest range GetUsage reads.
inline constexpr absl::Duration kMaxUsageRange = absl::Hours(24 * 400);

class UsageAdmin {
 public:
  // All pointers must outlive this.
  UsageAdmin(storage::UsageStore* usage, const PolicyRegistry* policies,
             Clock* clock)
      : usage_(usage), policies_(policies), clock_(clock) {}

  absl::Status GetUsage(const v1::GetUsageRequest& request,
                        v1::GetUsageResponse* response) const;
  // `reporter` (the caller's name, may be empty) is stored with the value.
  absl::Status ReportSignal(const v1::ReportSignalRequest& request,
                            absl::string_view reporter,
                            v1::ReportSignalResponse* response);
  absl::Status ListSignals(const v1::ListSignalsRequest& request,
                           v1::ListSignalsResponse* response) const;

 private:
  storage::UsageStore* const usage_;
  const PolicyRegistry* const policies_;
  Clock* const clock_;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_USAGE_ADMIN_H_
