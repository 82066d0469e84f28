#include "server/auth/transport.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace bursar::server::auth {
namespace {

TEST(TransportTest, Loopback) {
  for (const char* listen : {"127.0.0.1:8081", "127.1.2.3:0", "localhost:8081",
                             "[::1]:8081", "unix:/tmp/bursar.sock"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(listen)) << listen;
  }
  for (const char* listen :
       {"0.0.0.0:8081", "[::]:8081", ":8081", "10.0.0.5:8081",
        "bursar.example.com:8081", "[::ffff:10.0.0.1]:1", "128.0.0.1:1",
        "[::1:8081"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(listen)) << listen;
  }
}

TransportFlags Tls() {
  TransportFlags flags;
  flags.listen = "0.0.0.0:8081";
  flags.tls_cert = "server.pem";
  flags.tls_key = "server.key";
  flags.tokens_file = "tokens.yaml";
  return flags;
}

TransportFlags Insecure(const char* listen) {
  TransportFlags flags;
  flags.listen = listen;
  flags.insecure = true;
  return flags;
}

void ExpectRefused(const TransportFlags& flags, absl::string_view hint) {
  const absl::Status status = CheckTransportFlags(flags);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << hint;
  EXPECT_TRUE(absl::StrContains(status.message(), hint))
      << "\"" << hint << "\" not in: " << status.message();
}

TEST(TransportTest, GoodCombinations) {
  EXPECT_TRUE(CheckTransportFlags(Tls()).ok());
  TransportFlags mtls = Tls();
  mtls.tls_client_ca = "ca.pem";
  mtls.tokens_file.clear();
  mtls.roles_from_client_cert = true;
  EXPECT_TRUE(CheckTransportFlags(mtls).ok());
  EXPECT_TRUE(CheckTransportFlags(Insecure("127.0.0.1:8081")).ok());
  TransportFlags remote = Insecure("0.0.0.0:8081");
  remote.allow_insecure_remote = true;
  EXPECT_TRUE(CheckTransportFlags(remote).ok());
}

TEST(TransportTest, RefusalsSayWhatToAdd) {
  ExpectRefused(TransportFlags{"127.0.0.1:1"}, "add --tls_cert and --tls_key");
  ExpectRefused(TransportFlags{"127.0.0.1:1"}, "--insecure");
  ExpectRefused(Insecure("0.0.0.0:8081"), "--allow_insecure_remote");
  ExpectRefused(Insecure("0.0.0.0:8081"), "not a loopback address");
  TransportFlags no_key = Tls();
  no_key.tls_key.clear();
  ExpectRefused(no_key, "--tls_cert needs --tls_key");
  TransportFlags no_cert = Tls();
  no_cert.tls_cert.clear();
  ExpectRefused(no_cert, "--tls_key needs --tls_cert");
  TransportFlags ca_only = Insecure("127.0.0.1:1");
  ca_only.tls_client_ca = "ca.pem";
  ExpectRefused(ca_only, "--tls_client_ca (mutual TLS) needs TLS");
  TransportFlags both = Tls();
  both.insecure = true;
  ExpectRefused(both, "contradict");
  TransportFlags nobody = Tls();
  nobody.tokens_file.clear();
  ExpectRefused(nobody, "add --tokens_file");
  TransportFlags cert_roles = Tls();
  cert_roles.roles_from_client_cert = true;
  ExpectRefused(cert_roles, "--roles_from_client_cert needs");
}

TEST(TransportTest, AuthenticationIsOffOnlyForInsecureWithoutTokens) {
  EXPECT_TRUE(AuthenticationEnabled(Tls()));
  EXPECT_FALSE(AuthenticationEnabled(Insecure("127.0.0.1:1")));
  TransportFlags with_tokens = Insecure("127.0.0.1:1");
  with_tokens.tokens_file = "tokens.yaml";
  EXPECT_TRUE(AuthenticationEnabled(with_tokens));
}

}  // namespace
}  // namespace bursar::server::auth
