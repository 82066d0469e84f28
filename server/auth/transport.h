#ifndef BURSAR_SERVER_AUTH_TRANSPORT_H_
#define BURSAR_SERVER_AUTH_TRANSPORT_H_

// bursard's rules for how it may listen (docs/security.md): TLS from
// certificate files, or plaintext only when asked for (--insecure) and then
// only on a loopback address unless --allow_insecure_remote says otherwise;
// and some way to authenticate callers whenever authentication is on.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace bursar::server::auth {

struct TransportFlags {
  std::string listen;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  bool insecure = false;
  bool allow_insecure_remote = false;
  std::string tokens_file;
  bool roles_from_client_cert = false;
};

// True for 127.0.0.0/8, ::1, "localhost" and unix sockets ("unix:...");
// false for a wildcard (0.0.0.0, [::], empty host) and everything else.
// `listen` is "host:port", "[v6]:port" or "unix:path".
bool IsLoopbackListenAddress(absl::string_view listen);

// OK if the flags make a server bursard may start; otherwise
// INVALID_ARGUMENT saying which flag to add or drop.
absl::Status CheckTransportFlags(const TransportFlags& flags);

// Whether callers must authenticate: always with TLS; with --insecure only
// when a tokens file is given (without one, every caller has every role).
bool AuthenticationEnabled(const TransportFlags& flags);

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_TRANSPORT_H_
