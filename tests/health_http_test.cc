// GET /healthz and GET /readyz on the HTTP side port of a real bursard
// (docs/decisions/020): open (no token) also when gRPC speaks TLS and asks
// for tokens, /readyz says what the gRPC health service says, and from the
// start of the drain on SIGTERM /readyz is 503 while /healthz stays 200.

#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/auth/sha256.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;

constexpr char kGatewayToken[] = "bst_health-test-gateway-token-0123456789";

std::unique_ptr<httplib::Client> HttpClientOf(const BursardProcess& server) {
  const std::string& http = server.http_address();
  const size_t colon = http.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(http.substr(colon + 1), &port)) {
    ADD_FAILURE() << "no HTTP address in the ready file: \"" << http << "\"";
    return nullptr;
  }
  auto client = std::make_unique<httplib::Client>(http.substr(0, colon), port);
  client->set_read_timeout(10, 0);
  return client;
}

// What the gRPC health service answers for the whole server ("").
HealthCheckResponse::ServingStatus GrpcHealth(BursardProcess& server) {
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(server.channel());
  HealthCheckResponse response;
  const grpc::Status status =
      health->Check(Call().get(), HealthCheckRequest(), &response);
  EXPECT_TRUE(status.ok()) << StatusText(status);
  return response.status();
}

class HealthHttpTest : public ::testing::Test {
 protected:
  ::testing::AssertionResult StartServer(BursardOptions options) {
    options.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(std::move(options), dir_.path());
    ::testing::AssertionResult started = server_->Start();
    if (!started) return started;
    client_ = HttpClientOf(*server_);
    if (client_ == nullptr) return ::testing::AssertionFailure();
    return ::testing::AssertionSuccess();
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HealthHttpTest, ServingAnswers200AndTheGrpcHealthAgrees) {
  ASSERT_TRUE(StartServer(BursardOptions()));
  EXPECT_EQ(GrpcHealth(*server_), HealthCheckResponse::SERVING);

  httplib::Result ready = client_->Get("/readyz");
  ASSERT_TRUE(ready) << httplib::to_string(ready.error());
  EXPECT_EQ(ready->status, 200) << ready->body;
  EXPECT_EQ(ready->body, "{\"status\":\"SERVING\"}\n");
  EXPECT_EQ(ready->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(ready->get_header_value("Cache-Control"), "no-store");

  httplib::Result alive = client_->Get("/healthz");
  ASSERT_TRUE(alive) << httplib::to_string(alive.error());
  EXPECT_EQ(alive->status, 200) << alive->body;
  EXPECT_EQ(alive->body, "{\"status\":\"ALIVE\"}\n");
  EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
}

// The case the probes exist for: gRPC with TLS (kubelet's grpc probes speak
// plaintext only) and bearer tokens (kubelet sends none). The HTTP side port
// is plaintext; the probes need no token, the calls still do.
TEST_F(HealthHttpTest, OpenWithTlsAndTokensOn) {
  const std::string cert = dir_.Sub("server.pem");
  const std::string key = dir_.Sub("server.key");
  const std::string command = absl::StrCat(
      OPENSSL_PATH,
      " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
      " -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
      " -keyout ",
      key, " -out ", cert, " > ", dir_.Sub("openssl.log"), " 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0)
      << command << "\n"
      << ReadFile(dir_.Sub("openssl.log"));
  const std::string tokens = dir_.Sub("tokens.yaml");
  WriteFile(tokens, absl::StrCat("tokens:\n  - name: gw\n    role: gateway\n"
                                 "    sha256: ",
                                 server::auth::DigestToHex(
                                     server::auth::Sha256(kGatewayToken)),
                                 "\n"));
  BursardOptions options;
  options.insecure = false;
  options.extra_flags = {absl::StrCat("--tls_cert=", cert),
                         absl::StrCat("--tls_key=", key),
                         absl::StrCat("--tokens_file=", tokens)};
  grpc::SslCredentialsOptions credentials;
  credentials.pem_root_certs = ReadFile(cert);
  options.channel_credentials = grpc::SslCredentials(credentials);
  options.channel_arguments.SetSslTargetNameOverride("localhost");
  ASSERT_TRUE(StartServer(std::move(options)));
  EXPECT_EQ(GrpcHealth(*server_), HealthCheckResponse::SERVING);

  for (const char* path : {"/healthz", "/readyz"}) {
    httplib::Result probe = client_->Get(path);
    ASSERT_TRUE(probe) << path << ": " << httplib::to_string(probe.error());
    EXPECT_EQ(probe->status, 200) << path << ": " << probe->body;
  }
  // The calls on the same port still ask for a token.
  const std::string check =
      R"({"model": "gpt-4.1-mini", "input_tokens": 10, "max_output_tokens": 10})";
  httplib::Result anonymous =
      client_->Post("/v1/check", check, "application/json");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401) << anonymous->body;
  httplib::Result gateway =
      client_->Post("/v1/check",
                    httplib::Headers{{"Authorization",
                                      absl::StrCat("Bearer ", kGatewayToken)}},
                    check, "application/json");
  ASSERT_TRUE(gateway);
  EXPECT_EQ(gateway->status, 200) << gateway->body;
  EXPECT_EQ(server_->Terminate(), 0) << server_->Log();
}

// On SIGTERM bursard drains: its gRPC health service says NOT_SERVING at
// once, and while a call is still open (here a Health/Watch stream, which
// only ends when its client cancels it) the HTTP port stays up: /readyz
// answers 503, /healthz 200. No timing: each step waits for the one before.
TEST_F(HealthHttpTest, DrainingAnswers503UntilTheLastCallEnds) {
  BursardOptions options;
  // Far longer than the test: the drain ends when the watch is cancelled.
  options.extra_flags = {"--shutdown_grace=600s"};
  ASSERT_TRUE(StartServer(std::move(options)));

  std::shared_ptr<grpc::Channel> channel = server_->channel();
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext watch_context;
  watch_context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> watch =
      health->Watch(&watch_context, HealthCheckRequest());
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  ASSERT_EQ(update.status(), HealthCheckResponse::SERVING);
  httplib::Result ready = client_->Get("/readyz");
  ASSERT_TRUE(ready) << httplib::to_string(ready.error());
  ASSERT_EQ(ready->status, 200) << ready->body;

  // SIGTERM, and wait for the exit, on another thread.
  int exit_code = -2;
  std::thread terminate([&] { exit_code = server_->Terminate(); });

  // The drain has begun once the health service says NOT_SERVING.
  ASSERT_TRUE(watch->Read(&update)) << "the watch ended before NOT_SERVING";
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);

  httplib::Result draining = client_->Get("/readyz");
  ASSERT_TRUE(draining) << httplib::to_string(draining.error());
  EXPECT_EQ(draining->status, 503) << draining->body;
  EXPECT_EQ(draining->body, "{\"status\":\"NOT_SERVING\"}\n");
  httplib::Result alive = client_->Get("/healthz");
  ASSERT_TRUE(alive) << httplib::to_string(alive.error());
  EXPECT_EQ(alive->status, 200) << alive->body;
  // New decision calls are refused, as gRPC refuses them, so that the
  // gateway retries elsewhere.
  httplib::Result check = client_->Post("/v1/check", "{}", "application/json");
  ASSERT_TRUE(check) << httplib::to_string(check.error());
  EXPECT_EQ(check->status, 503) << check->body;
  EXPECT_THAT(check->body, HasSubstr("UNAVAILABLE"));

  // The last call ends: the drain completes and bursard exits cleanly.
  watch_context.TryCancel();
  watch->Finish();
  terminate.join();
  EXPECT_EQ(exit_code, 0) << server_->Log();
  EXPECT_THAT(server_->Log(), HasSubstr("stopped"));
}

}  // namespace
}  // namespace bursar::testing
