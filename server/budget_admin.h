#ifndef BURSAR_SERVER_BUDGET_ADMIN_H_
#define BURSAR_SERVER_BUDGET_ADMIN_H_

// The budget RPCs of the Admin API as plain calls over the ledger.
// Thread-safe. Changes are audited as made by `caller` (its name and role)
// when it is authenticated, else by the request's actor
// (server/auth/audit_actor.h).

#include "absl/status/status.h"
#include "bursar/v1/admin.pb.h"
#include "server/auth/authenticator.h"
#include "server/clock.h"
#include "storage/ledger.h"

namespace bursar::server {

class BudgetAdmin {
 public:
  // ListBudgets' largest page (and the page of page_size 0).
  static constexpr int kMaxBudgetsPerPage = 1000;

  // Both pointers must outlive the BudgetAdmin.
  BudgetAdmin(storage::Ledger* ledger, Clock* clock)
      : ledger_(ledger), clock_(clock) {}

  absl::Status SetBudget(const v1::SetBudgetRequest& request,
                         const auth::Caller& caller,
                         v1::SetBudgetResponse* response);
  absl::Status GetBudget(const v1::GetBudgetRequest& request,
                         v1::GetBudgetResponse* response);
  absl::Status ListBudgets(const v1::ListBudgetsRequest& request,
                           v1::ListBudgetsResponse* response);
  absl::Status DeleteBudget(const v1::DeleteBudgetRequest& request,
                            const auth::Caller& caller,
                            v1::DeleteBudgetResponse* response);
  absl::Status ListAudit(const v1::ListAuditRequest& request,
                         v1::ListAuditResponse* response);

 private:
  absl::Status FillBudget(const storage::BudgetSpec& spec,
                          absl::string_view instance, absl::Time now,
                          v1::GetBudgetResponse* out);

  storage::Ledger* const ledger_;
  Clock* const clock_;
};

// Conversions between the API's Budget and the ledger's BudgetSpec.
// InvalidArgument naming the field for what cannot be converted.
absl::StatusOr<storage::BudgetSpec> BudgetFromProto(const v1::Budget& budget);
v1::Budget BudgetToProto(const storage::BudgetSpec& spec);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_BUDGET_ADMIN_H_
