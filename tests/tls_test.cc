// TLS and mutual TLS against a real bursard, with a throwaway CA and
// certificates made by the openssl command for each test: plaintext is
// refused when TLS is required, a client without a certificate is refused
// with mutual TLS, the role can come from the client certificate's subject
// (and then goes to the audit log), and a replaced certificate is presented
// to new connections without a restart.

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "grpc/grpc_security_constants.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/auth/sha256.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

constexpr char kServerName[] = "localhost";

// Runs a shell command; true on exit 0 (its output goes to `log`).
bool Run(const std::string& command, const std::string& log) {
  const int status =
      std::system(absl::StrCat(command, " >>", log, " 2>&1").c_str());
  return status == 0;
}

// A CA, and certificates it signs, in one directory.
class TestPki {
 public:
  explicit TestPki(std::string dir) : dir_(std::move(dir)) {}

  std::string Path(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

  // ca.pem / ca.key, or another CA under `name`.
  ::testing::AssertionResult MakeCa(const std::string& name = "ca") {
    return Openssl(absl::StrCat(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout ",
        Path(name + ".key"), " -out ", Path(name + ".pem"),
        " -days 2 -subj '/CN=Bursar Test CA ", name,
        "' -addext "
        "'basicConstraints=critical,CA:TRUE' -addext "
        "'keyUsage=critical,keyCertSign,cRLSign'"));
  }

  // NAME.pem / NAME.key signed by CA (a server certificate for localhost and
  // 127.0.0.1, or a client certificate).
  ::testing::AssertionResult MakeCert(const std::string& name,
                                      const std::string& subject, bool server,
                                      const std::string& ca = "ca") {
    const std::string ext = Path(name + ".ext");
    WriteFile(ext, server ? "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                            "extendedKeyUsage=serverAuth\n"
                            "basicConstraints=CA:FALSE\n"
                          : "extendedKeyUsage=clientAuth\n"
                            "basicConstraints=CA:FALSE\n");
    if (auto r = Openssl(absl::StrCat(
            "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ",
            Path(name + ".key"), " -out ", Path(name + ".csr"), " -subj '",
            subject, "'"));
        !r) {
      return r;
    }
    return Openssl(absl::StrCat(
        "x509 -req -in ", Path(name + ".csr"), " -CA ", Path(ca + ".pem"),
        " -CAkey ", Path(ca + ".key"), " -set_serial ", ++serial_,
        " -days 2 -out ", Path(name + ".pem"), " -extfile ", ext));
  }

 private:
  ::testing::AssertionResult Openssl(const std::string& args) {
    const std::string log = Path("openssl.log");
    if (Run(absl::StrCat(OPENSSL_PATH, " ", args), log)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "openssl " << args << " failed:\n"
                                         << ReadFile(log);
  }

  std::string dir_;
  int serial_ = 1000;
};

// TLS credentials trusting the test CA, with a client certificate if named.
std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(
    const TestPki& pki, const std::string& client = "",
    const std::string& ca = "ca") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(pki.Path(ca + ".pem"));
  if (!client.empty()) {
    options.pem_cert_chain = ReadFile(pki.Path(client + ".pem"));
    options.pem_private_key = ReadFile(pki.Path(client + ".key"));
  }
  return grpc::SslCredentials(options);
}

// A new channel with its own connection (no subchannel shared with other
// channels), so each one does a handshake of its own.
std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride(kServerName);
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, arguments);
}

grpc::ChannelArguments HarnessArguments() {
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride(kServerName);
  return arguments;
}

std::unique_ptr<grpc::ClientContext> WithToken(const std::string& token) {
  std::unique_ptr<grpc::ClientContext> context = Call();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

// A ListBudgets call on `channel`: the server's answer, or the transport's
// refusal.
grpc::Status ListBudgets(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& token = "",
                         std::string* server_cn = nullptr) {
  std::unique_ptr<grpc::ClientContext> context = WithToken(token);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(5));
  v1::ListBudgetsResponse response;
  const grpc::Status status = v1::Admin::NewStub(channel)->ListBudgets(
      context.get(), v1::ListBudgetsRequest(), &response);
  if (server_cn != nullptr) {
    server_cn->clear();
    for (const grpc::string_ref& cn :
         context->auth_context()->FindPropertyValues(
             GRPC_X509_CN_PROPERTY_NAME)) {
      server_cn->assign(cn.data(), cn.size());
    }
  }
  return status;
}

constexpr char kFinanceToken[] = "bst_tls-test-finance-token-0123456789";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pki_.MakeCa());
    ASSERT_TRUE(pki_.MakeCert("server", "/CN=bursar-server-1", true));
    tokens_file_ = dir_.Sub("tokens.yaml");
    WriteFile(tokens_file_,
              absl::StrCat("tokens:\n  - name: dana\n    role: finance\n"
                           "    sha256: ",
                           server::auth::DigestToHex(
                               server::auth::Sha256(kFinanceToken)),
                           "\n"));
  }

  // bursard with TLS (and mutual TLS with roles from certificates if
  // `mutual`); the harness connects with `client`'s certificate.
  ::testing::AssertionResult StartServer(bool mutual,
                                         const std::string& client = "",
                                         std::vector<std::string> more = {}) {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.insecure = false;
    options.extra_flags = {
        absl::StrCat("--tls_cert=", pki_.Path("server.pem")),
        absl::StrCat("--tls_key=", pki_.Path("server.key")),
        absl::StrCat("--tokens_file=", tokens_file_),
    };
    if (mutual) {
      options.extra_flags.push_back(
          absl::StrCat("--tls_client_ca=", pki_.Path("ca.pem")));
      options.extra_flags.push_back("--roles_from_client_cert");
    }
    for (std::string& flag : more) options.extra_flags.push_back(flag);
    options.channel_credentials = TlsCredentials(pki_, client);
    options.channel_arguments = HarnessArguments();
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    return server_->Start();
  }

  TempDir dir_;
  TestPki pki_{dir_.path()};
  std::string tokens_file_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(TlsTest, PlaintextIsRefusedWhenTlsIsRequired) {
  ASSERT_TRUE(StartServer(/*mutual=*/false));
  const grpc::Status plain =
      ListBudgets(grpc::CreateChannel(server_->address(),
                                      grpc::InsecureChannelCredentials()),
                  kFinanceToken);
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE)
      << StatusText(plain);
  // Over TLS the same call works, and needs its token.
  const auto tls = NewChannel(server_->address(), TlsCredentials(pki_));
  BURSAR_EXPECT_OK(ListBudgets(tls, kFinanceToken));
  EXPECT_EQ(ListBudgets(tls).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A client that does not trust the server's CA does not connect.
  ASSERT_TRUE(pki_.MakeCa("other-ca"));
  EXPECT_EQ(ListBudgets(NewChannel(server_->address(),
                                   TlsCredentials(pki_, "", "other-ca")),
                        kFinanceToken)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(absl::StrContains(server_->Log(), kFinanceToken));
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificate) {
  ASSERT_TRUE(pki_.MakeCert("gateway", "/O=Example/OU=gateway/CN=gw-1", false));
  ASSERT_TRUE(StartServer(/*mutual=*/true, "gateway"));
  // No client certificate: no connection, even with a good token.
  const grpc::Status anonymous = ListBudgets(
      NewChannel(server_->address(), TlsCredentials(pki_)), kFinanceToken);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAVAILABLE)
      << StatusText(anonymous);
  // A certificate from another CA: refused too.
  ASSERT_TRUE(pki_.MakeCa("rogue-ca"));
  ASSERT_TRUE(
      pki_.MakeCert("rogue", "/OU=finance/CN=mallory", false, "rogue-ca"));
  EXPECT_EQ(
      ListBudgets(NewChannel(server_->address(), TlsCredentials(pki_, "rogue")))
          .error_code(),
      grpc::StatusCode::UNAVAILABLE);
  // The gateway's certificate connects, and checks.
  v1::CheckResponse checked;
  BURSAR_EXPECT_OK(server_->Check(MakeCheck("gpt-4.1-mini", 10, 10), &checked));
}

TEST_F(TlsTest, RoleFromTheClientCertificateSubject) {
  ASSERT_TRUE(pki_.MakeCert("gateway", "/OU=gateway/CN=gw-1", false));
  ASSERT_TRUE(
      pki_.MakeCert("finance", "/O=Example/OU=finance/CN=dana-laptop", false));
  ASSERT_TRUE(pki_.MakeCert("viewer", "/OU=viewer/CN=grafana", false));
  ASSERT_TRUE(pki_.MakeCert("nobody", "/OU=engineering/CN=eve", false));
  ASSERT_TRUE(StartServer(/*mutual=*/true, "gateway"));
  const std::string address = server_->address();

  v1::SetBudgetRequest request;
  *request.mutable_budget() = MakeBudget("team-search", {{"team", "search"}},
                                         v1::PERIOD_MONTH, 5'000'000'000);
  request.set_reason("from the finance laptop");
  v1::SetBudgetResponse set;
  // The gateway's certificate may not set budgets.
  EXPECT_EQ(server_->SetBudget(request, &set).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // finance's may.
  auto finance =
      v1::Admin::NewStub(NewChannel(address, TlsCredentials(pki_, "finance")));
  BURSAR_ASSERT_OK(finance->SetBudget(Call().get(), request, &set));
  // The viewer reads, and sees who did it, with which role.
  auto viewer =
      v1::Admin::NewStub(NewChannel(address, TlsCredentials(pki_, "viewer")));
  v1::ListAuditRequest list;
  v1::ListAuditResponse audit;
  BURSAR_ASSERT_OK(viewer->ListAudit(Call().get(), list, &audit));
  ASSERT_GE(audit.records_size(), 1);
  EXPECT_EQ(audit.records(0).action(), "budget.set");
  EXPECT_EQ(audit.records(0).actor(), "dana-laptop");
  EXPECT_EQ(audit.records(0).role(), "finance");
  EXPECT_EQ(audit.records(0).reason(), "from the finance laptop");
  EXPECT_EQ(viewer->SetBudget(Call().get(), request, &set).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A certificate whose OU names no role authenticates nobody; a token
  // still works over its connection.
  const auto nobody = NewChannel(address, TlsCredentials(pki_, "nobody"));
  const grpc::Status refused = ListBudgets(nobody);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << StatusText(refused);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "OU"))
      << StatusText(refused);
  BURSAR_EXPECT_OK(ListBudgets(nobody, kFinanceToken));
}

TEST_F(TlsTest, ReplacedCertificateIsServedWithoutARestart) {
  ASSERT_TRUE(StartServer(/*mutual=*/false, "", {"--auth_reload_interval=1s"}));
  std::string cn;
  BURSAR_ASSERT_OK(
      ListBudgets(NewChannel(server_->address(), TlsCredentials(pki_)),
                  kFinanceToken, &cn));
  EXPECT_EQ(cn, "bursar-server-1");

  // A new key and certificate, moved into place (key first).
  ASSERT_TRUE(pki_.MakeCert("server2", "/CN=bursar-server-2", true));
  ASSERT_EQ(std::rename(pki_.Path("server2.key").c_str(),
                        pki_.Path("server.key").c_str()),
            0);
  ASSERT_EQ(std::rename(pki_.Path("server2.pem").c_str(),
                        pki_.Path("server.pem").c_str()),
            0);
  // bursard checks the files every second; new connections get the new
  // certificate once it has (bounded wait, no fixed sleep).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  grpc::Status status;
  do {
    absl::SleepFor(absl::Milliseconds(200));
    status = ListBudgets(NewChannel(server_->address(), TlsCredentials(pki_)),
                         kFinanceToken, &cn);
  } while ((!status.ok() || cn != "bursar-server-2") && absl::Now() < deadline);
  BURSAR_EXPECT_OK(status);
  EXPECT_EQ(cn, "bursar-server-2");
  EXPECT_TRUE(server_->running());
}

TEST_F(TlsTest, WrongKeyIsRefusedAtStart) {
  ASSERT_TRUE(pki_.MakeCert("other", "/CN=other", true));
  BursardOptions options;
  options.data_dir = dir_.Sub("data");
  options.insecure = false;
  options.extra_flags = {absl::StrCat("--tls_cert=", pki_.Path("server.pem")),
                         absl::StrCat("--tls_key=", pki_.Path("other.key")),
                         absl::StrCat("--tokens_file=", tokens_file_)};
  BursardProcess server(options, dir_.path());
  EXPECT_EQ(server.RunExpectingFailure(), 2);
  EXPECT_TRUE(absl::StrContains(server.Log(),
                                "does not belong to the "
                                "certificate"))
      << server.Log();
}

TEST_F(TlsTest, BursarctlConnectsWithTlsAndAClientCertificate) {
  ASSERT_TRUE(pki_.MakeCert("finance", "/OU=finance/CN=dana-laptop", false));
  ASSERT_TRUE(StartServer(/*mutual=*/true, "finance"));
  const std::string tls = absl::StrCat("--tls_ca=", pki_.Path("ca.pem"),
                                       " --tls_cert=", pki_.Path("finance.pem"),
                                       " --tls_key=", pki_.Path("finance.key"),
                                       " --tls_server_name=localhost ");
  CliRun set = RunBursarctl(
      BURSARCTL_PATH, server_->address(),
      absl::StrCat(tls, "budget set cli --amount 10 --period day"));
  EXPECT_EQ(set.exit_status, 0) << set.output;
  CliRun plain = RunBursarctl(BURSARCTL_PATH, server_->address(),
                              "budget list --timeout=3s");
  EXPECT_EQ(plain.exit_status, 1) << plain.output;
  EXPECT_TRUE(absl::StrContains(plain.output, "--tls_ca")) << plain.output;
}

}  // namespace
}  // namespace bursar::testing
