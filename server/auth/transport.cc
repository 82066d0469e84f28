#include "server/auth/transport.h"

#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bursar::server::auth {

bool IsLoopbackListenAddress(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") ||
      absl::StartsWith(listen, "unix-abstract:")) {
    return true;
  }
  std::string host;
  if (absl::StartsWith(listen, "[")) {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos) return false;
    host = std::string(listen.substr(1, close - 1));
  } else {
    const size_t colon = listen.rfind(':');
    host = std::string(
        colon == absl::string_view::npos ? listen : listen.substr(0, colon));
  }
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

absl::Status CheckTransportFlags(const TransportFlags& flags) {
  const bool tls = !flags.tls_cert.empty() || !flags.tls_key.empty();
  if (tls && (flags.tls_cert.empty() || flags.tls_key.empty())) {
    return absl::InvalidArgumentError(
        flags.tls_cert.empty()
            ? "--tls_key needs --tls_cert (the certificate chain it belongs "
              "to)"
            : "--tls_cert needs --tls_key (the certificate's private key)");
  }
  if (!flags.tls_client_ca.empty() && !tls) {
    return absl::InvalidArgumentError(
        "--tls_client_ca (mutual TLS) needs TLS: add --tls_cert and "
        "--tls_key");
  }
  if (flags.roles_from_client_cert && flags.tls_client_ca.empty()) {
    return absl::InvalidArgumentError(
        "--roles_from_client_cert needs verified client certificates: add "
        "--tls_client_ca (with --tls_cert and --tls_key)");
  }
  if (tls && flags.insecure) {
    return absl::InvalidArgumentError(
        "--insecure (plaintext) and --tls_cert/--tls_key (TLS) contradict "
        "each other: drop one");
  }
  if (!tls && !flags.insecure) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bursard serves TLS unless told otherwise: add --tls_cert and "
        "--tls_key (PEM files), or --insecure for plaintext (development "
        "on a loopback address such as 127.0.0.1)"));
  }
  if (flags.insecure && !flags.allow_insecure_remote &&
      !IsLoopbackListenAddress(flags.listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen=", flags.listen,
        " is not a loopback address, and --insecure serves plaintext: "
        "listen on 127.0.0.1, or use TLS (--tls_cert, --tls_key), or add "
        "--allow_insecure_remote if a network you trust carries it"));
  }
  if (tls && flags.tokens_file.empty() && !flags.roles_from_client_cert) {
    return absl::InvalidArgumentError(
        "with TLS, callers authenticate: add --tokens_file (bearer tokens "
        "per role), or --roles_from_client_cert with --tls_client_ca (the "
        "role from the client certificate's OU)");
  }
  return absl::OkStatus();
}

bool AuthenticationEnabled(const TransportFlags& flags) {
  return !flags.insecure || !flags.tokens_file.empty();
}

}  // namespace bursar::server::auth
