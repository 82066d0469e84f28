#ifndef BURSAR_SERVER_AUTH_TLS_FILES_H_
#define BURSAR_SERVER_AUTH_TLS_FILES_H_

// Start-up checks of bursard's TLS files (--tls_cert, --tls_key,
// --tls_client_ca) with OpenSSL, so that a wrong file stops bursard with a
// message that says which file and why, instead of failing every handshake
// later. gRPC then watches the files and reloads them when they change.

#include <string>

#include "absl/status/statusor.h"

namespace bursar::server::auth {

struct TlsFiles {
  std::string cert_chain_path;
  std::string private_key_path;
  // Empty: no client certificates are asked for.
  std::string client_ca_path;
};

// What the files hold, for the start-up log.
struct TlsFilesSummary {
  // The subject of the server's (first) certificate, RFC 2253.
  std::string subject;
  // Its notAfter, e.g. "Nov 22 18:00:00 2027 GMT".
  std::string not_after;
  // Certificates in the client CA bundle (0 without one).
  int client_ca_certs = 0;
};

// INVALID_ARGUMENT naming the file for: a file that cannot be read, a
// certificate chain or CA bundle without a PEM certificate, a key that is
// not a PEM private key, a key that does not belong to the certificate.
absl::StatusOr<TlsFilesSummary> CheckTlsFiles(const TlsFiles& files);

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_TLS_FILES_H_
