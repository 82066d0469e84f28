#include "server/auth/method_table.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/descriptor.h"

namespace bursar::server::auth {
namespace {

constexpr RoleSet kGatewayOnly{Role::kGateway};
constexpr RoleSet kFinance{Role::kFinance};
constexpr RoleSet kPolicyAdmin{Role::kPolicyAdmin};
// Reads of the admin API: viewer, and the admin roles (which imply viewer).
constexpr RoleSet kRead{Role::kFinance, Role::kPolicyAdmin, Role::kViewer};

// THE table. Add a row for every new RPC: bursard will not start (and the
// tests fail) while a served method has none.
constexpr MethodAccess kTable[] = {
    // bursar.v1.Decision: the gateway's calls.
    {"/bursar.v1.Decision/Check", kGatewayOnly},
    {"/bursar.v1.Decision/Report", kGatewayOnly},
    // Envoy's rate-limit service API: a gateway's Check + Report in one.
    {"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
     kGatewayOnly},

    // bursar.v1.Admin: finance owns amounts...
    {"/bursar.v1.Admin/SetBudget", kFinance},
    {"/bursar.v1.Admin/GetBudget", kRead},
    {"/bursar.v1.Admin/ListBudgets", kRead},
    {"/bursar.v1.Admin/DeleteBudget", kFinance},
    {"/bursar.v1.Admin/ListAudit", kRead},
    // ... policy admins own rules ...
    {"/bursar.v1.Admin/PushPolicy", kPolicyAdmin},
    {"/bursar.v1.Admin/GetPolicy", kRead},
    {"/bursar.v1.Admin/ListPolicyVersions", kRead},
    {"/bursar.v1.Admin/ActivatePolicyVersion", kPolicyAdmin},
    {"/bursar.v1.Admin/StopShadow", kPolicyAdmin},
    {"/bursar.v1.Admin/GetShadowReport", kRead},
    // ... and everybody but the gateway reads usage and alerts.
    {"/bursar.v1.Admin/GetUsage", kRead},
    {"/bursar.v1.Admin/ListSignals", kRead},
    // A quality signal steers routes for all traffic: an admin change, by
    // finance (the gateway reaches no Admin method). docs/decisions/012.
    {"/bursar.v1.Admin/ReportSignal", kFinance},
    {"/bursar.v1.Admin/ListAlerts", kRead},
    {"/bursar.v1.Admin/WatchAlerts", kRead},
    // Backups write a copy of the ledger onto the server's disk: finance,
    // which owns the ledger (each change has exactly one admin role; never
    // viewer, which only reads, nor the gateway). Decision 015.
    {"/bursar.v1.Admin/CreateBackup", kFinance},

    // Open: liveness/readiness probes and API discovery carry no data.
    {"/grpc.health.v1.Health/Check", {}, /*open=*/true},
    {"/grpc.health.v1.Health/Watch", {}, /*open=*/true},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     {},
     /*open=*/true},
};

}  // namespace

absl::Span<const MethodAccess> MethodTable() { return kTable; }

const MethodAccess* FindMethodAccess(absl::string_view method) {
  for (const MethodAccess& entry : kTable) {
    if (entry.method == method) return &entry;
  }
  return nullptr;
}

std::string FullMethodName(absl::string_view service_full_name,
                           absl::string_view method_name) {
  return absl::StrCat("/", service_full_name, "/", method_name);
}

absl::Status CheckMethodTableCovers(
    const std::vector<std::string>& service_full_names,
    const google::protobuf::DescriptorPool* pool) {
  std::vector<std::string> problems;
  for (const std::string& name : service_full_names) {
    const google::protobuf::ServiceDescriptor* service =
        pool->FindServiceByName(name);
    if (service == nullptr) {
      problems.push_back(
          absl::StrCat("service ", name, " is not linked in (no descriptor)"));
      continue;
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string method =
          FullMethodName(service->full_name(), service->method(i)->name());
      if (FindMethodAccess(method) == nullptr) problems.push_back(method);
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "no entry in the role table (server/auth/method_table.cc) for: ",
      absl::StrJoin(problems, ", "),
      "; add one saying which roles may call it"));
}

}  // namespace bursar::server::auth
