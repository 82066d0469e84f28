#include "server/auth/role.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bursar::server::auth {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kGateway:
      return "gateway";
    case Role::kFinance:
      return "finance";
    case Role::kPolicyAdmin:
      return "policy-admin";
    case Role::kViewer:
      return "viewer";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role role : kAllRoles) {
    if (RoleName(role) == name) return role;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", name, "\" is not a role; one of ", RoleList()));
}

std::string RoleList() { return RoleSet::All().ToString(); }

std::string RoleSet::ToString() const {
  std::vector<absl::string_view> names;
  for (Role role : kAllRoles) {
    if (Contains(role)) names.push_back(RoleName(role));
  }
  if (names.empty()) return "none";
  return absl::StrJoin(names, ", ");
}

}  // namespace bursar::server::auth
