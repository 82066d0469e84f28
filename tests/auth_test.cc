// Who may do what, against a real bursard (docs/security.md): bearer tokens
// from a tokens file, one role each; every method of every service bursard
// serves walked against the role table; the audit log names the caller and
// role; no token ever reaches the log; bursarctl's token options; and the
// flags bursard refuses to start with.

#include <stdlib.h>

#include <chrono>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "bursar/v1/decision.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include <httplib.h>
#include "gtest/gtest.h"
#include "server/auth/method_table.h"
#include "server/auth/role.h"
#include "server/auth/sha256.h"
#include "server/auth/tokens_file.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

namespace auth = ::bursar::server::auth;
namespace reflection = ::grpc::reflection::v1alpha;

// One token per role, made fresh for each test run.
struct Holder {
  std::string name;
  auth::Role role;
  std::string token;
};

std::vector<Holder> MakeHolders() {
  return {{"gw-prod", auth::Role::kGateway, auth::NewRandomToken()},
          {"dana", auth::Role::kFinance, auth::NewRandomToken()},
          {"ci-bot", auth::Role::kPolicyAdmin, auth::NewRandomToken()},
          {"sre-dash", auth::Role::kViewer, auth::NewRandomToken()}};
}

std::string TokensFile(const std::vector<Holder>& holders) {
  std::string text = "# made by auth_test\ntokens:\n";
  for (const Holder& h : holders) {
    absl::StrAppend(
        &text, auth::TokensFileEntry(h.name, auth::RoleName(h.role), h.token));
  }
  return text;
}

std::unique_ptr<grpc::ClientContext> CallWith(const std::string& token) {
  std::unique_ptr<grpc::ClientContext> context = Call();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

// A unary call of any method with an empty request message (valid for
// every request type). Its deadline is short: a streaming method that
// admits the caller (WatchAlerts) never ends a unary call, and only its
// DEADLINE_EXCEEDED tells it was admitted; a refusal comes at once.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel,
                       const std::string& method, const std::string& token) {
  grpc::GenericStub stub(channel);
  std::unique_ptr<grpc::ClientContext> context = CallWith(token);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(3));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request,
                 &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  return done.get_future().get();
}

// The services a running server lists through reflection, each with its
// methods ("/pkg.Service/Method"); an empty list for a service whose
// descriptor reflection cannot give (gRPC's own health service).
std::map<std::string, std::vector<std::string>> ServedMethods(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& token) {
  std::map<std::string, std::vector<std::string>> served;
  auto stub = reflection::ServerReflection::NewStub(channel);
  std::unique_ptr<grpc::ClientContext> context = CallWith(token);
  auto stream = stub->ServerReflectionInfo(context.get());
  reflection::ServerReflectionRequest request;
  reflection::ServerReflectionResponse response;
  request.set_list_services("");
  if (!stream->Write(request) || !stream->Read(&response)) {
    ADD_FAILURE() << "reflection did not answer list_services";
    return served;
  }
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  google::protobuf::SimpleDescriptorDatabase database;
  std::set<std::string> files;
  std::set<std::string> described;
  for (const std::string& name : names) {
    request.set_file_containing_symbol(name);
    if (!stream->Write(request) || !stream->Read(&response)) {
      ADD_FAILURE() << "reflection did not answer for " << name;
      continue;
    }
    if (response.has_error_response()) continue;
    described.insert(name);
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) {
        ADD_FAILURE() << "reflection sent a bad descriptor for " << name;
        continue;
      }
      if (files.insert(file.name()).second) database.Add(file);
    }
  }
  stream->WritesDone();
  const grpc::Status finished = stream->Finish();
  EXPECT_TRUE(finished.ok()) << StatusText(finished);
  google::protobuf::DescriptorPool pool(&database);
  for (const std::string& name : names) {
    std::vector<std::string>& methods = served[name];
    if (described.count(name) == 0) continue;
    const google::protobuf::ServiceDescriptor* service =
        pool.FindServiceByName(name);
    if (service == nullptr) {
      ADD_FAILURE() << "no descriptor for " << name;
      continue;
    }
    for (int i = 0; i < service->method_count(); ++i) {
      methods.push_back(auth::FullMethodName(service->full_name(),
                                             service->method(i)->name()));
    }
  }
  return served;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    holders_ = MakeHolders();
    tokens_file_ = dir_.Sub("tokens.yaml");
    WriteFile(tokens_file_, TokensFile(holders_));
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.extra_flags = {absl::StrCat("--tokens_file=", tokens_file_),
                           "--auth_reload_interval=1s"};
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  const std::string& TokenOf(auth::Role role) const {
    for (const Holder& h : holders_) {
      if (h.role == role) return h.token;
    }
    static const std::string none;
    return none;
  }

  grpc::Status SetBudget(const std::string& token, const std::string& name,
                         const std::string& actor = "",
                         const std::string& reason = "") {
    v1::SetBudgetRequest request;
    *request.mutable_budget() =
        MakeBudget(name, {{"team", "search"}}, v1::PERIOD_MONTH, 1'000'000'000);
    request.set_actor(actor);
    request.set_reason(reason);
    v1::SetBudgetResponse response;
    return server_->admin().SetBudget(CallWith(token).get(), request,
                                      &response);
  }

  grpc::Status GetBudget(const std::string& token, const std::string& name) {
    v1::GetBudgetRequest request;
    request.set_name(name);
    v1::GetBudgetResponse response;
    return server_->admin().GetBudget(CallWith(token).get(), request,
                                      &response);
  }

  grpc::Status CheckCall(const std::string& token) {
    v1::CheckResponse response;
    return server_->decision().Check(
        CallWith(token).get(),
        MakeCheck("gpt-4.1-mini", 100, 100, {{"team", "search"}}), &response);
  }

  // The server's log must not contain any token, nor a Bearer header with
  // one (the hint "Bearer <token>" in refusals is fine).
  void ExpectNoTokenInTheLog() {
    const std::string log = server_->Log();
    for (const Holder& h : holders_) {
      EXPECT_FALSE(absl::StrContains(log, h.token))
          << "the token of " << h.name << " is in the log";
    }
    EXPECT_FALSE(absl::StrContains(log, "Bearer bst_")) << log;
  }

  TempDir dir_;
  std::vector<Holder> holders_;
  std::string tokens_file_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(AuthTest, NoOrUnknownTokenIsUnauthenticated) {
  const grpc::Status none = CheckCall("");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << StatusText(none);
  EXPECT_TRUE(absl::StrContains(none.error_message(), "Bearer <token>"))
      << StatusText(none);
  const std::string unknown = auth::NewRandomToken();
  const grpc::Status bad = SetBudget(unknown, "team-search");
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << StatusText(bad);
  EXPECT_FALSE(absl::StrContains(bad.error_message(), unknown));
  EXPECT_FALSE(absl::StrContains(server_->Log(), unknown));
  ExpectNoTokenInTheLog();
}

TEST_F(AuthTest, GatewayChecksButCannotSetBudgets) {
  BURSAR_EXPECT_OK(CheckCall(TokenOf(auth::Role::kGateway)));
  const grpc::Status denied =
      SetBudget(TokenOf(auth::Role::kGateway), "team-search");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << StatusText(denied);
  EXPECT_TRUE(absl::StrContains(denied.error_message(),
                                "\"gw-prod\" has the role gateway"))
      << StatusText(denied);
  EXPECT_FALSE(
      absl::StrContains(denied.error_message(), TokenOf(auth::Role::kGateway)));
  // Nothing was set.
  EXPECT_EQ(
      GetBudget(TokenOf(auth::Role::kFinance), "team-search").error_code(),
      grpc::StatusCode::NOT_FOUND);
  ExpectNoTokenInTheLog();
}

TEST_F(AuthTest, FinanceSetsBudgetsAndTheAuditNamesCallerAndRole) {
  BURSAR_ASSERT_OK(SetBudget(TokenOf(auth::Role::kFinance), "team-search",
                             /*actor=*/"someone-else", "Q4 plan"));
  v1::GetBudgetRequest get;
  get.set_name("team-search");
  v1::GetBudgetResponse budget;
  BURSAR_ASSERT_OK(server_->admin().GetBudget(
      CallWith(TokenOf(auth::Role::kFinance)).get(), get, &budget));
  EXPECT_EQ(budget.budget().updated_by(), "dana");

  v1::ListAuditRequest request;
  v1::ListAuditResponse audit;
  BURSAR_ASSERT_OK(server_->admin().ListAudit(
      CallWith(TokenOf(auth::Role::kViewer)).get(), request, &audit));
  ASSERT_GE(audit.records_size(), 1);
  const v1::AuditRecord& record = audit.records(0);
  EXPECT_EQ(record.action(), "budget.set");
  EXPECT_EQ(record.target(), "budget:team-search");
  EXPECT_EQ(record.actor(), "dana");
  EXPECT_EQ(record.role(), "finance");
  EXPECT_EQ(record.reason(), "Q4 plan");
  ExpectNoTokenInTheLog();
}

TEST_F(AuthTest, ViewerOnlyReads) {
  BURSAR_ASSERT_OK(SetBudget(TokenOf(auth::Role::kFinance), "team-search"));
  const std::string& viewer = TokenOf(auth::Role::kViewer);
  BURSAR_EXPECT_OK(GetBudget(viewer, "team-search"));
  v1::ListBudgetsResponse budgets;
  BURSAR_EXPECT_OK(server_->admin().ListBudgets(
      CallWith(viewer).get(), v1::ListBudgetsRequest(), &budgets));
  EXPECT_EQ(budgets.budgets_size(), 1);
  v1::ListPolicyVersionsResponse versions;
  BURSAR_EXPECT_OK(server_->admin().ListPolicyVersions(
      CallWith(viewer).get(), v1::ListPolicyVersionsRequest(), &versions));

  EXPECT_EQ(SetBudget(viewer, "team-search").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::DeleteBudgetRequest del;
  del.set_name("team-search");
  v1::DeleteBudgetResponse deleted;
  EXPECT_EQ(server_->admin()
                .DeleteBudget(CallWith(viewer).get(), del, &deleted)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ActivatePolicyVersionRequest activate;
  activate.set_version(versions.versions(0).version());
  v1::ActivatePolicyVersionResponse activated;
  EXPECT_EQ(
      server_->admin()
          .ActivatePolicyVersion(CallWith(viewer).get(), activate, &activated)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(CheckCall(viewer).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Still there.
  BURSAR_EXPECT_OK(GetBudget(viewer, "team-search"));
}

// Every method of every service the running bursard serves: it has a row in
// the role table, and the server enforces exactly that row (no token:
// UNAUTHENTICATED; each role's token: refused iff the row says so). A new
// RPC without a row, or a handler that skips the check, fails here.
TEST_F(AuthTest, EveryServedMethodIsInTheRoleTableAndEnforced) {
  const std::map<std::string, std::vector<std::string>> served =
      ServedMethods(server_->channel(), "");
  ASSERT_TRUE(served.count("bursar.v1.Decision"))
      << "reflection lists no Decision";
  ASSERT_TRUE(served.count("bursar.v1.Admin"));
  ASSERT_TRUE(served.count("grpc.health.v1.Health"));
  int walked = 0;
  for (const auto& [service, methods] : served) {
    if (methods.empty()) {
      // No descriptor through reflection (gRPC's health service): its rows
      // must be in the table, open.
      bool listed = false;
      for (const auth::MethodAccess& row : auth::MethodTable()) {
        if (absl::StartsWith(row.method, absl::StrCat("/", service, "/"))) {
          listed = true;
          EXPECT_TRUE(row.open) << row.method;
        }
      }
      EXPECT_TRUE(listed) << service << " has no row in the role table";
      continue;
    }
    for (const std::string& method : methods) {
      const auth::MethodAccess* row = auth::FindMethodAccess(method);
      ASSERT_NE(row, nullptr) << method << " has no row in the role table";
      if (row->open) continue;
      ++walked;
      // An UNIMPLEMENTED method does no work for anyone.
      const grpc::Status anonymous = CallEmpty(server_->channel(), method, "");
      EXPECT_TRUE(anonymous.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                  anonymous.error_code() == grpc::StatusCode::UNIMPLEMENTED)
          << method << " without a token: " << StatusText(anonymous);
      if (anonymous.error_code() == grpc::StatusCode::UNIMPLEMENTED) continue;
      for (const Holder& h : holders_) {
        const grpc::Status status =
            CallEmpty(server_->channel(), method, h.token);
        if (row->roles.Contains(h.role)) {
          EXPECT_NE(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
              << method << " as " << auth::RoleName(h.role) << ": "
              << StatusText(status);
          EXPECT_NE(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
              << method << " as " << auth::RoleName(h.role);
        } else {
          EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
              << method << " as " << auth::RoleName(h.role) << ": "
              << StatusText(status);
        }
      }
    }
  }
  EXPECT_GE(walked, 13);  // Check, Report, and the implemented Admin RPCs
  // Health and reflection stay open: the walk above used reflection without
  // a token.
  ExpectNoTokenInTheLog();
}

TEST_F(AuthTest, BursarctlSendsTheTokenFromAFileOrTheEnvironment) {
  const std::string finance_file = dir_.Sub("finance.token");
  WriteFile(finance_file, TokenOf(auth::Role::kFinance) + "\n");
  CliRun set = RunBursarctl(
      BURSARCTL_PATH, server_->address(),
      absl::StrCat("budget set team-search --amount 100 --period month "
                   "--selector team=search --reason cli --token_file=",
                   finance_file));
  EXPECT_EQ(set.exit_status, 0) << set.output;

  const std::string gateway_file = dir_.Sub("gateway.token");
  WriteFile(gateway_file, TokenOf(auth::Role::kGateway));
  CliRun denied = RunBursarctl(
      BURSARCTL_PATH, server_->address(),
      absl::StrCat("budget set team-search --amount 1 --period month "
                   "--token_file=",
                   gateway_file));
  EXPECT_EQ(denied.exit_status, 1) << denied.output;
  EXPECT_TRUE(absl::StrContains(denied.output, "PERMISSION_DENIED"))
      << denied.output;

  CliRun none = RunBursarctl(BURSARCTL_PATH, server_->address(), "budget list");
  EXPECT_EQ(none.exit_status, 1) << none.output;
  EXPECT_TRUE(absl::StrContains(none.output, "UNAUTHENTICATED")) << none.output;

  ASSERT_EQ(setenv("BURSAR_TOKEN", TokenOf(auth::Role::kViewer).c_str(), 1), 0);
  CliRun list = RunBursarctl(BURSARCTL_PATH, server_->address(), "budget list");
  unsetenv("BURSAR_TOKEN");
  EXPECT_EQ(list.exit_status, 0) << list.output;
  EXPECT_TRUE(absl::StrContains(list.output, "team-search")) << list.output;
  for (const CliRun& run : {set, denied, none, list}) {
    for (const Holder& h : holders_) {
      EXPECT_FALSE(absl::StrContains(run.output, h.token)) << run.output;
    }
  }
  ExpectNoTokenInTheLog();
}

// bursarctl token new prints a token and its entry; added to the tokens
// file, bursard picks it up without a restart.
TEST_F(AuthTest, NewTokensWorkOnceTheFileIsReloaded) {
  CliRun made = RunBursarctl(BURSARCTL_PATH, server_->address(),
                             "token new --name ops --role policy-admin --json");
  ASSERT_EQ(made.exit_status, 0) << made.output;
  const size_t start = made.output.find("\"token\":");
  ASSERT_NE(start, std::string::npos) << made.output;
  const size_t open = made.output.find('"', start + 8);
  const size_t close = made.output.find('"', open + 1);
  const std::string token = made.output.substr(open + 1, close - open - 1);
  ASSERT_TRUE(absl::StartsWith(token, "bst_")) << made.output;
  EXPECT_TRUE(
      absl::StrContains(made.output, auth::DigestToHex(auth::Sha256(token))))
      << made.output;

  // token hash agrees, reading the token from standard input.
  const std::string token_file = dir_.Sub("ops.token");
  WriteFile(token_file, token + "\n");
  CliRun hashed = RunBursarctl(BURSARCTL_PATH, server_->address(),
                               absl::StrCat("token hash < ", token_file));
  ASSERT_EQ(hashed.exit_status, 0) << hashed.output;
  EXPECT_EQ(hashed.output, auth::DigestToHex(auth::Sha256(token)) + "\n");

  v1::ListPolicyVersionsResponse versions;
  EXPECT_EQ(server_->admin()
                .ListPolicyVersions(CallWith(token).get(),
                                    v1::ListPolicyVersionsRequest(), &versions)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  holders_.push_back({"ops", auth::Role::kPolicyAdmin, token});
  const std::string fresh = tokens_file_ + ".new";
  WriteFile(fresh, TokensFile(holders_));
  ASSERT_EQ(std::rename(fresh.c_str(), tokens_file_.c_str()), 0);
  // bursard checks the file every second: wait for it (bounded).
  grpc::Status status;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(100));
    status = server_->admin().ListPolicyVersions(
        CallWith(token).get(), v1::ListPolicyVersionsRequest(), &versions);
  } while (!status.ok() && absl::Now() < deadline);
  BURSAR_EXPECT_OK(status);
  EXPECT_TRUE(absl::StrContains(server_->Log(), "tokens file reloaded"));
  ExpectNoTokenInTheLog();
}

class StartupTest : public ::testing::Test {
 protected:
  // Runs bursard expecting it to refuse; returns its log.
  std::string Refused(bool insecure, std::vector<std::string> flags,
                      int expected_exit = 2) {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.insecure = insecure;
    options.extra_flags = std::move(flags);
    BursardProcess server(options, dir_.path());
    EXPECT_EQ(server.RunExpectingFailure(), expected_exit) << server.Log();
    return server.Log();
  }

  TempDir dir_;
};

TEST_F(StartupTest, NoTlsAndNoInsecureIsRefused) {
  const std::string log = Refused(/*insecure=*/false, {});
  EXPECT_TRUE(absl::StrContains(log, "add --tls_cert and --tls_key")) << log;
  EXPECT_TRUE(absl::StrContains(log, "--insecure")) << log;
}

TEST_F(StartupTest, InsecureOnANonLoopbackAddressIsRefused) {
  const std::string log = Refused(/*insecure=*/true, {"--listen=0.0.0.0:0"});
  EXPECT_TRUE(absl::StrContains(log, "--allow_insecure_remote")) << log;
}

TEST_F(StartupTest, ABadTokensFileIsRefusedWithItsLine) {
  const std::string file = dir_.Sub("tokens.yaml");
  WriteFile(file, "tokens:\n  - name: a\n    role: admin\n    sha256: x\n");
  const std::string log = Refused(
      /*insecure=*/true, {absl::StrCat("--tokens_file=", file)});
  EXPECT_TRUE(absl::StrContains(log, "tokens.yaml:3:11: tokens[0].role"))
      << log;
}

TEST_F(StartupTest, InsecureWithoutTokensWarnsOnce) {
  BursardOptions options;
  options.data_dir = dir_.Sub("data");
  BursardProcess server(options, dir_.path());
  ASSERT_TRUE(server.Start());
  // Everybody is everything: a Check and a SetBudget without any token.
  v1::CheckResponse checked;
  BURSAR_EXPECT_OK(server.Check(MakeCheck("gpt-4.1-mini", 1, 1), &checked));
  v1::SetBudgetRequest request;
  *request.mutable_budget() =
      MakeBudget("b", {}, v1::PERIOD_MONTH, 1'000'000'000);
  request.set_actor("dev");
  v1::SetBudgetResponse set;
  BURSAR_EXPECT_OK(server.SetBudget(request, &set));
  v1::ListAuditResponse audit;
  BURSAR_ASSERT_OK(server.ListAudit(1, &audit));
  ASSERT_EQ(audit.records_size(), 1);
  EXPECT_EQ(audit.records(0).actor(), "dev");
  EXPECT_EQ(audit.records(0).role(), "unauthenticated");
  const std::string log = server.Log();
  const std::string warning = "authentication off: every caller has every role";
  ASSERT_TRUE(absl::StrContains(log, warning)) << log;
  EXPECT_EQ(log.find(warning), log.rfind(warning)) << log;
}

}  // namespace
}  // namespace bursar::testing

namespace bursar::testing {
namespace {

// The HTTP side port asks for the same roles as gRPC: Check and Report are
// the gateway's; /metrics is open.
TEST_F(AuthTest, TheHttpPortAsksForTheGatewayRole) {
  const std::string& http = server_->http_address();
  const size_t colon = http.rfind(':');
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(http.substr(colon + 1), &port)) << http;
  httplib::Client client(http.substr(0, colon), port);
  client.set_read_timeout(10, 0);
  const std::string check =
      R"({"model": "gpt-4.1-mini", "input_tokens": 10, "max_output_tokens": 10})";
  auto post = [&](const std::string& token) {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client.Post("/v1/check", headers, check, "application/json");
  };
  httplib::Result none = post("");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401) << none->body;
  EXPECT_TRUE(absl::StrContains(none->body, "UNAUTHENTICATED")) << none->body;
  httplib::Result viewer = post(TokenOf(auth::Role::kViewer));
  ASSERT_TRUE(viewer);
  EXPECT_EQ(viewer->status, 403) << viewer->body;
  httplib::Result gateway = post(TokenOf(auth::Role::kGateway));
  ASSERT_TRUE(gateway);
  EXPECT_EQ(gateway->status, 200) << gateway->body;
  EXPECT_TRUE(absl::StrContains(gateway->body, "VERDICT_ALLOW"));
  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_TRUE(absl::StrContains(metrics->body, "bursar_checks_total"));
  for (const Holder& h : holders_) {
    EXPECT_FALSE(absl::StrContains(server_->Log(), h.token));
  }
}

}  // namespace
}  // namespace bursar::testing
