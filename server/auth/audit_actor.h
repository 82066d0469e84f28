#ifndef BURSAR_SERVER_AUTH_AUDIT_ACTOR_H_
#define BURSAR_SERVER_AUTH_AUDIT_ACTOR_H_

// Who an admin change is recorded as in the audit log: with authentication
// on, the authenticated caller and their role, whatever the request says;
// otherwise the request's own actor (or "unknown") with the role
// "unauthenticated". The request's reason is kept either way.

#include <string>

#include "absl/strings/string_view.h"
#include "server/auth/authenticator.h"
#include "storage/audit.h"

namespace bursar::server::auth {

inline constexpr absl::string_view kUnauthenticatedRole = "unauthenticated";

inline storage::Actor AuditActor(const Caller& caller,
                                 absl::string_view requested_actor,
                                 absl::string_view reason) {
  if (caller.authenticated()) {
    return storage::Actor{caller.name, std::string(reason),
                          std::string(RoleName(caller.role))};
  }
  return storage::Actor{requested_actor.empty() ? std::string("unknown")
                                                : std::string(requested_actor),
                        std::string(reason), std::string(kUnauthenticatedRole)};
}

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_AUDIT_ACTOR_H_
