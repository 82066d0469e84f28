#ifndef BURSAR_SERVER_AUTH_AUTHENTICATOR_H_
#define BURSAR_SERVER_AUTH_AUTHENTICATOR_H_

// Who is calling, and may they call this method: the check every RPC of
// bursard goes through (docs/security.md). Free of gRPC types: the gRPC
// adapters (server/grpc_services.cc) hand it the call's "authorization"
// metadata and the subject of its verified client certificate.
//
// A caller is identified by, in this order:
//   1. a bearer token (`authorization: Bearer <token>`), looked up by its
//      SHA-256 among the tokens file's entries with CRYPTO_memcmp, every
//      entry compared (no early exit);
//   2. with roles_from_client_cert, the verified client certificate: the
//      subject's OU names the role, its CN the caller.
// A call that presents a token is judged by the token alone. Then the
// method's entry in the role table (method_table.h) decides.
//
// Errors: UNAUTHENTICATED when no credentials, malformed ones or an unknown
// token are presented; PERMISSION_DENIED when the caller's role may not call
// the method, or the method has no entry in the table. Messages never
// contain the token. Thread-safe; SetTokens may run while calls are checked.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/auth/role.h"
#include "server/auth/tokens_file.h"

namespace bursar::server::auth {

// Who is calling.
struct Caller {
  enum class Via {
    // Nobody was identified: an open method, or authentication is off.
    kNone,
    kToken,
    kCertificate,
  };
  Via via = Via::kNone;
  // The token's name in the tokens file, or the certificate's CN.
  std::string name;
  // The caller's role; meaningful only when authenticated().
  Role role = Role::kViewer;

  bool authenticated() const { return via != Via::kNone; }
  // "token", "certificate" or "none", for logs.
  absl::string_view ViaName() const;
};

// What a call presents.
struct CallCredentials {
  // The value of every "authorization" metadata entry (normally 0 or 1).
  absl::InlinedVector<absl::string_view, 1> authorization;
  // The subject of the client certificate the TLS handshake verified, as an
  // RFC 2253 string ("CN=ops-ci,OU=policy-admin,O=Example"); empty without
  // one.
  absl::string_view client_cert_subject;
};

class Authenticator {
 public:
  struct Options {
    // false: every caller has every role and no credentials are looked at
    // (bursard --insecure without --tokens_file, for development).
    bool enabled = true;
    // Take the role from the verified client certificate's subject (OU).
    bool roles_from_client_cert = false;
  };

  Authenticator(Options options, std::vector<TokenEntry> tokens);

  // Replaces the tokens (the tokens file was reloaded).
  void SetTokens(std::vector<TokenEntry> tokens);
  size_t token_count() const;

  bool enabled() const { return options_.enabled; }
  bool roles_from_client_cert() const {
    return options_.roles_from_client_cert;
  }

  // The caller of `method` ("/package.Service/Method") if they may call it;
  // for an open method (or with authentication off) a Caller with via kNone.
  absl::StatusOr<Caller> Admit(absl::string_view method,
                               const CallCredentials& credentials) const;

 private:
  absl::StatusOr<Caller> Identify(const CallCredentials& credentials) const;
  absl::StatusOr<Caller> FromToken(absl::string_view authorization) const;
  absl::StatusOr<Caller> FromCertificate(absl::string_view subject) const;
  std::string NoCredentialsHint() const;

  const Options options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> tokens_ ABSL_GUARDED_BY(mu_);
};

// The attributes of an RFC 2253 distinguished name, in the order written
// ("CN=a\,b,OU=x+OU=y" gives {CN,"a,b"}, {OU,"x"}, {OU,"y"}); escapes
// (\, \+ \" \\ \< \> \; \= \# and \XX hex) are undone. INVALID_ARGUMENT for
// a malformed name.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
ParseDistinguishedName(absl::string_view name);

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_AUTHENTICATOR_H_
