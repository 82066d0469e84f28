#include "server/auth/method_table.h"

#include <set>
#include <string>

#include "absl/strings/match.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "gtest/gtest.h"

namespace bursar::server::auth {
namespace {

// Links the generated code of both services, whose static initialisers put
// their descriptors in the generated pool (as in bursard).
[[maybe_unused]] const bool kLinked =
    v1::CheckRequest::descriptor() != nullptr &&
    v1::SetBudgetRequest::descriptor() != nullptr;

TEST(MethodTableTest, CoversEveryMethodOfBursarsServices) {
  // Linking the generated code puts the services in the generated pool.
  ASSERT_NE(v1::Decision::service_full_name(), nullptr);
  ASSERT_NE(v1::Admin::service_full_name(), nullptr);
  const absl::Status covered = CheckMethodTableCovers(
      {v1::Decision::service_full_name(), v1::Admin::service_full_name()});
  EXPECT_TRUE(covered.ok()) << covered;
}

TEST(MethodTableTest, NamesWhatIsMissing) {
  // google.protobuf has no services: a service name that is not linked in
  // is an error, not silently "covered".
  const absl::Status status =
      CheckMethodTableCovers({"bursar.v1.NoSuchService"});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(status.message(), "bursar.v1.NoSuchService"))
      << status;
}

TEST(MethodTableTest, NamesAMethodMissingFromTheTable) {
  // A bursar.v1.Admin with one RPC more than the table knows.
  google::protobuf::FileDescriptorProto file;
  file.set_name("fake_admin.proto");
  file.set_package("bursar.v1");
  google::protobuf::DescriptorProto* empty = file.add_message_type();
  empty->set_name("Empty");
  google::protobuf::ServiceDescriptorProto* service = file.add_service();
  service->set_name("Admin");
  for (const char* name : {"SetBudget", "Refund"}) {
    google::protobuf::MethodDescriptorProto* method = service->add_method();
    method->set_name(name);
    method->set_input_type(".bursar.v1.Empty");
    method->set_output_type(".bursar.v1.Empty");
  }
  google::protobuf::DescriptorPool pool;
  ASSERT_NE(pool.BuildFile(file), nullptr);
  const absl::Status status =
      CheckMethodTableCovers({"bursar.v1.Admin"}, &pool);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(status.message(), "/bursar.v1.Admin/Refund"))
      << status;
  EXPECT_FALSE(absl::StrContains(status.message(), "SetBudget")) << status;
}

TEST(MethodTableTest, EveryServedMethodIsListedByItsWireName) {
  const google::protobuf::ServiceDescriptor* admin =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::Admin::service_full_name());
  ASSERT_NE(admin, nullptr);
  for (int i = 0; i < admin->method_count(); ++i) {
    const std::string name =
        FullMethodName(admin->full_name(), admin->method(i)->name());
    EXPECT_NE(FindMethodAccess(name), nullptr) << name;
  }
  EXPECT_EQ(FindMethodAccess("/bursar.v1.Admin/NoSuchMethod"), nullptr);
  EXPECT_EQ(FindMethodAccess("bursar.v1.Admin/SetBudget"), nullptr);
}

TEST(MethodTableTest, NoDuplicateRows) {
  std::set<std::string> seen;
  for (const MethodAccess& entry : MethodTable()) {
    EXPECT_TRUE(seen.insert(std::string(entry.method)).second) << entry.method;
  }
}

TEST(MethodTableTest, TheGatewayReachesNoAdminMethod) {
  for (const MethodAccess& entry : MethodTable()) {
    if (absl::StartsWith(entry.method, "/bursar.v1.Admin/")) {
      EXPECT_FALSE(entry.roles.Contains(Role::kGateway)) << entry.method;
      EXPECT_FALSE(entry.open) << entry.method;
    }
  }
}

TEST(MethodTableTest, DecisionsAreForTheGatewayOnly) {
  for (absl::string_view method :
       {"/bursar.v1.Decision/Check", "/bursar.v1.Decision/Report",
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"}) {
    const MethodAccess* entry = FindMethodAccess(method);
    ASSERT_NE(entry, nullptr) << method;
    EXPECT_EQ(entry->roles, RoleSet{Role::kGateway}) << method;
  }
}

TEST(MethodTableTest, OnlyHealthAndReflectionAreOpen) {
  for (const MethodAccess& entry : MethodTable()) {
    if (entry.open) {
      EXPECT_TRUE(
          absl::StartsWith(entry.method, "/grpc.health.v1.Health/") ||
          absl::StartsWith(entry.method,
                           "/grpc.reflection.v1alpha.ServerReflection/"))
          << entry.method;
      EXPECT_TRUE(entry.roles.empty()) << entry.method;
    } else {
      EXPECT_FALSE(entry.roles.empty())
          << entry.method << " is neither open nor allowed to any role";
    }
  }
}

// finance and policy-admin imply viewer (docs/decisions/008).
TEST(MethodTableTest, AdminRolesImplyViewer) {
  for (const MethodAccess& entry : MethodTable()) {
    if (entry.roles.Contains(Role::kViewer)) {
      EXPECT_TRUE(entry.roles.Contains(Role::kFinance)) << entry.method;
      EXPECT_TRUE(entry.roles.Contains(Role::kPolicyAdmin)) << entry.method;
    }
  }
}

// The viewer reads (Get*, List*, Watch*) and changes nothing; the changes
// are split: finance the budgets, policy-admin the policies.
TEST(MethodTableTest, ViewerOnlyReadsAndDutiesAreSeparate) {
  for (const MethodAccess& entry : MethodTable()) {
    if (!absl::StartsWith(entry.method, "/bursar.v1.Admin/")) continue;
    const absl::string_view name =
        entry.method.substr(std::string("/bursar.v1.Admin/").size());
    const bool read = absl::StartsWith(name, "Get") ||
                      absl::StartsWith(name, "List") ||
                      absl::StartsWith(name, "Watch");
    EXPECT_EQ(entry.roles.Contains(Role::kViewer), read) << entry.method;
    if (!read) {
      EXPECT_NE(entry.roles.Contains(Role::kFinance),
                entry.roles.Contains(Role::kPolicyAdmin))
          << entry.method << ": a change belongs to exactly one admin role";
    }
  }
  EXPECT_EQ(FindMethodAccess("/bursar.v1.Admin/SetBudget")->roles,
            RoleSet{Role::kFinance});
  EXPECT_EQ(FindMethodAccess("/bursar.v1.Admin/PushPolicy")->roles,
            RoleSet{Role::kPolicyAdmin});
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role role : kAllRoles) {
    absl::StatusOr<Role> parsed = ParseRole(RoleName(role));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, role);
  }
  const absl::StatusOr<Role> bad = ParseRole("admin");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(),
                                "gateway, finance, policy-admin, viewer"))
      << bad.status();
  EXPECT_FALSE(ParseRole("Finance").ok());
}

}  // namespace
}  // namespace bursar::server::auth
