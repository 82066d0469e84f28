#ifndef BURSAR_SERVER_GRPC_SERVICES_H_
#define BURSAR_SERVER_GRPC_SERVICES_H_

// The gRPC face of bursard (callback API). Each handler first admits the
// call through the Authenticator (its method's row in the role table,
// server/auth/method_table.cc), then adapts the RPC to a plain call of
// Decider, BudgetAdmin or PolicyAdmin and maps its absl::Status.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/alerts/alert_admin.h"
#include "server/auth/authenticator.h"
#include "server/backup.h"
#include "server/budget_admin.h"
#include "server/decider.h"
#include "server/overload.h"
#include "server/policy_admin.h"
#include "server/usage_admin.h"

namespace bursar::server {

// The one mapping from absl::Status to grpc::Status (codes are the same
// numbers; the message is kept).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The caller of the call in `context` if they may call `method`
// ("/package.Service/Method"), from its "authorization" metadata and its
// verified client certificate. Refusals (UNAUTHENTICATED,
// PERMISSION_DENIED) are logged with the method, the peer and the reason,
// never the token (at most 20 lines a second). Every handler of every
// service bursard serves calls this first.
absl::StatusOr<auth::Caller> AdmitCall(const auth::Authenticator& auth,
                                       grpc::ServerContextBase& context,
                                       absl::string_view method);

class DecisionService final : public v1::Decision::CallbackService {
 public:
  // All pointers must outlive the service. Every call first enters `gate`
  // (server/overload.h) unless it is null.
  DecisionService(Decider* decider, const auth::Authenticator* auth,
                  CallGate* gate = nullptr)
      : decider_(decider), auth_(auth), gate_(gate) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const v1::CheckRequest* request,
                                  v1::CheckResponse* response) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context,
                                   const v1::ReportRequest* request,
                                   v1::ReportResponse* response) override;

 private:
  Decider* const decider_;
  const auth::Authenticator* const auth_;
  CallGate* const gate_;
};

class AdminService final : public v1::Admin::CallbackService {
 public:
  // All pointers must outlive the service. Every call first enters `gate`
  // (server/overload.h) unless it is null. CreateBackup answers
  // FAILED_PRECONDITION when `backups` is null; without `alerts`,
  // ListAlerts and WatchAlerts answer UNIMPLEMENTED; without `usage`,
  // GetUsage, ReportSignal and ListSignals do.
  AdminService(BudgetAdmin* budgets, PolicyAdmin* policies,
               const auth::Authenticator* auth, CallGate* gate = nullptr,
               Backups* backups = nullptr, AlertAdmin* alerts = nullptr,
               UsageAdmin* usage = nullptr)
      : budgets_(budgets),
        policies_(policies),
        auth_(auth),
        gate_(gate),
        backups_(backups),
        alerts_(alerts),
        usage_(usage) {}

  grpc::ServerUnaryReactor* SetBudget(grpc::CallbackServerContext* context,
                                      const v1::SetBudgetRequest* request,
                                      v1::SetBudgetResponse* response) override;
  grpc::ServerUnaryReactor* GetBudget(grpc::CallbackServerContext* context,
                                      const v1::GetBudgetRequest* request,
                                      v1::GetBudgetResponse* response) override;
  grpc::ServerUnaryReactor* ListBudgets(
      grpc::CallbackServerContext* context,
      const v1::ListBudgetsRequest* request,
      v1::ListBudgetsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteBudget(
      grpc::CallbackServerContext* context,
      const v1::DeleteBudgetRequest* request,
      v1::DeleteBudgetResponse* response) override;
  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* context,
                                      const v1::ListAuditRequest* request,
                                      v1::ListAuditResponse* response) override;

  grpc::ServerUnaryReactor* PushPolicy(
      grpc::CallbackServerContext* context,
      const v1::PushPolicyRequest* request,
      v1::PushPolicyResponse* response) override;
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* context,
                                      const v1::GetPolicyRequest* request,
                                      v1::GetPolicyResponse* response) override;
  grpc::ServerUnaryReactor* ListPolicyVersions(
      grpc::CallbackServerContext* context,
      const v1::ListPolicyVersionsRequest* request,
      v1::ListPolicyVersionsResponse* response) override;
  grpc::ServerUnaryReactor* ActivatePolicyVersion(
      grpc::CallbackServerContext* context,
      const v1::ActivatePolicyVersionRequest* request,
      v1::ActivatePolicyVersionResponse* response) override;
  grpc::ServerUnaryReactor* StopShadow(
      grpc::CallbackServerContext* context,
      const v1::StopShadowRequest* request,
      v1::StopShadowResponse* response) override;
  grpc::ServerUnaryReactor* GetShadowReport(
      grpc::CallbackServerContext* context,
      const v1::GetShadowReportRequest* request,
      v1::GetShadowReportResponse* response) override;
  grpc::ServerUnaryReactor* CreateBackup(
      grpc::CallbackServerContext* context,
      const v1::CreateBackupRequest* request,
      v1::CreateBackupResponse* response) override;

  grpc::ServerUnaryReactor* ListAlerts(
      grpc::CallbackServerContext* context,
      const v1::ListAlertsRequest* request,
      v1::ListAlertsResponse* response) override;
  // A ServerWriteReactor fed by the AlertHub: never blocks the engine.
  grpc::ServerWriteReactor<v1::Alert>* WatchAlerts(
      grpc::CallbackServerContext* context,
      const v1::WatchAlertsRequest* request) override;
  grpc::ServerUnaryReactor* GetUsage(grpc::CallbackServerContext* context,
                                     const v1::GetUsageRequest* request,
                                     v1::GetUsageResponse* response) override;
  grpc::ServerUnaryReactor* ReportSignal(
      grpc::CallbackServerContext* context,
      const v1::ReportSignalRequest* request,
      v1::ReportSignalResponse* response) override;
  grpc::ServerUnaryReactor* ListSignals(
      grpc::CallbackServerContext* context,
      const v1::ListSignalsRequest* request,
      v1::ListSignalsResponse* response) override;

 private:
  BudgetAdmin* const budgets_;
  PolicyAdmin* const policies_;
  const auth::Authenticator* const auth_;
  CallGate* const gate_;
  Backups* const backups_;
  AlertAdmin* const alerts_;
  UsageAdmin* const usage_;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_GRPC_SERVICES_H_
