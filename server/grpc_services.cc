#include "server/grpc_services.h"

#include <string>

namespace bursar::server {
namespace {

// Runs `call` and finishes the RPC with its status.
template <typename Call>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* context,
                                Call&& call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(call()));
  return reactor;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

grpc::ServerUnaryReactor* DecisionService::Check(
    grpc::CallbackServerContext* context, const v1::CheckRequest* request,
    v1::CheckResponse* response) {
  return Unary(context, [&] { return decider_->Check(*request, response); });
}

grpc::ServerUnaryReactor* DecisionService::Report(
    grpc::CallbackServerContext* context, const v1::ReportRequest* request,
    v1::ReportResponse* response) {
  return Unary(context, [&] { return decider_->Report(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::SetBudget(
    grpc::CallbackServerContext* context, const v1::SetBudgetRequest* request,
    v1::SetBudgetResponse* response) {
  return Unary(context,
               [&] { return budgets_->SetBudget(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::GetBudget(
    grpc::CallbackServerContext* context, const v1::GetBudgetRequest* request,
    v1::GetBudgetResponse* response) {
  return Unary(context,
               [&] { return budgets_->GetBudget(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::ListBudgets(
    grpc::CallbackServerContext* context,
    const v1::ListBudgetsRequest* request, v1::ListBudgetsResponse* response) {
  return Unary(context,
               [&] { return budgets_->ListBudgets(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::DeleteBudget(
    grpc::CallbackServerContext* context,
    const v1::DeleteBudgetRequest* request,
    v1::DeleteBudgetResponse* response) {
  return Unary(context,
               [&] { return budgets_->DeleteBudget(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::ListAudit(
    grpc::CallbackServerContext* context, const v1::ListAuditRequest* request,
    v1::ListAuditResponse* response) {
  return Unary(context,
               [&] { return budgets_->ListAudit(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::PushPolicy(
    grpc::CallbackServerContext* context, const v1::PushPolicyRequest* request,
    v1::PushPolicyResponse* response) {
  return Unary(context,
               [&] { return policies_->PushPolicy(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::GetPolicy(
    grpc::CallbackServerContext* context, const v1::GetPolicyRequest* request,
    v1::GetPolicyResponse* response) {
  return Unary(context,
               [&] { return policies_->GetPolicy(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::ListPolicyVersions(
    grpc::CallbackServerContext* context,
    const v1::ListPolicyVersionsRequest* request,
    v1::ListPolicyVersionsResponse* response) {
  return Unary(context, [&] {
    return policies_->ListPolicyVersions(*request, response);
  });
}

grpc::ServerUnaryReactor* AdminService::ActivatePolicyVersion(
    grpc::CallbackServerContext* context,
    const v1::ActivatePolicyVersionRequest* request,
    v1::ActivatePolicyVersionResponse* response) {
  return Unary(context, [&] {
    return policies_->ActivatePolicyVersion(*request, response);
  });
}

grpc::ServerUnaryReactor* AdminService::StopShadow(
    grpc::CallbackServerContext* context, const v1::StopShadowRequest* request,
    v1::StopShadowResponse* response) {
  return Unary(context,
               [&] { return policies_->StopShadow(*request, response); });
}

grpc::ServerUnaryReactor* AdminService::GetShadowReport(
    grpc::CallbackServerContext* context,
    const v1::GetShadowReportRequest* request,
    v1::GetShadowReportResponse* response) {
  return Unary(context,
               [&] { return policies_->GetShadowReport(*request, response); });
}

}  // namespace bursar::server
