#ifndef BURSAR_SERVER_AUTH_ROLE_H_
#define BURSAR_SERVER_AUTH_ROLE_H_

// The roles of bursard's callers (docs/security.md) and sets of them.

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bursar::server::auth {

enum class Role : uint8_t {
  // A gateway or SDK: Decision/Check and Decision/Report (and Envoy's
  // ShouldRateLimit), nothing else.
  kGateway,
  // Owns amounts: budgets, usage, the audit log.
  kFinance,
  // Owns rules: policy versions and shadow runs.
  kPolicyAdmin,
  // Reads the admin API (Get*/List*), changes nothing.
  kViewer,
};

inline constexpr Role kAllRoles[] = {Role::kGateway, Role::kFinance,
                                     Role::kPolicyAdmin, Role::kViewer};

// "gateway", "finance", "policy-admin", "viewer".
absl::string_view RoleName(Role role);

// The role named `name` (exactly as RoleName spells it); INVALID_ARGUMENT
// listing the roles otherwise.
absl::StatusOr<Role> ParseRole(absl::string_view name);

// "gateway, finance, policy-admin, viewer", for messages.
std::string RoleList();

// A set of roles, as a bit mask. A value type; constexpr.
class RoleSet {
 public:
  constexpr RoleSet() = default;
  constexpr RoleSet(std::initializer_list<Role> roles) {
    for (Role r : roles) bits_ |= Bit(r);
  }
  static constexpr RoleSet All() {
    return RoleSet{Role::kGateway, Role::kFinance, Role::kPolicyAdmin,
                   Role::kViewer};
  }

  constexpr bool Contains(Role role) const { return (bits_ & Bit(role)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr bool Intersects(RoleSet other) const {
    return (bits_ & other.bits_) != 0;
  }
  constexpr bool operator==(RoleSet other) const {
    return bits_ == other.bits_;
  }
  constexpr bool operator!=(RoleSet other) const { return !(*this == other); }

  // "finance, viewer" (in the order of kAllRoles); "none" when empty.
  std::string ToString() const;

 private:
  static constexpr uint8_t Bit(Role role) {
    return static_cast<uint8_t>(1u << static_cast<unsigned>(role));
  }
  uint8_t bits_ = 0;
};

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_ROLE_H_
