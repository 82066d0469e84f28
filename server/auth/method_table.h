#ifndef BURSAR_SERVER_AUTH_METHOD_TABLE_H_
#define BURSAR_SERVER_AUTH_METHOD_TABLE_H_

// The one table of who may call what: every gRPC method bursard serves,
// by its full name ("/bursar.v1.Admin/SetBudget"), with the roles allowed to
// call it, or marked open (health, reflection). A method missing from the
// table is refused to everybody (PERMISSION_DENIED), and bursard refuses to
// start if a service it registers has a method missing here; the tests walk
// every method of every service a running bursard serves against it.
//
// finance and policy-admin imply viewer: every method open to viewer is also
// open to them (docs/decisions/008-roles-and-credentials.md); gateway
// implies nothing, and no admin method is ever open to it.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/descriptor.h"
#include "server/auth/role.h"

namespace bursar::server::auth {

struct MethodAccess {
  // "/package.Service/Method", as gRPC names it on the wire.
  absl::string_view method;
  // Who may call it (empty for open methods).
  RoleSet roles;
  // Open to everyone, authenticated or not: health checks and reflection.
  bool open = false;
};

// Every entry, in the order of the services' definitions.
absl::Span<const MethodAccess> MethodTable();

// The entry of `method` ("/package.Service/Method"), or nullptr.
const MethodAccess* FindMethodAccess(absl::string_view method);

// "/<service_full_name>/<method_name>".
std::string FullMethodName(absl::string_view service_full_name,
                           absl::string_view method_name);

// OK if every method of every named service (full names such as
// "bursar.v1.Admin", looked up in `pool`: by default the generated pool of
// the protos linked into the binary) has an entry; otherwise
// FAILED_PRECONDITION naming each missing method (or a service that is not
// in the pool).
absl::Status CheckMethodTableCovers(
    const std::vector<std::string>& service_full_names,
    const google::protobuf::DescriptorPool* pool =
        google::protobuf::DescriptorPool::generated_pool());

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_METHOD_TABLE_H_
