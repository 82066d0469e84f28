// PolicyAdmin and the start-up rule over a real store (RocksDB in a temp
// dir) and a real PolicyRegistry.

#include "server/policy_admin.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "server/clock.h"
#include "server/policy_registry.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::bursar::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kPricing[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test-pricing }
pricing:
  gpt-4.1:      { provider: openai, input: "2.00", cached_input: "0.50", output: "OUTPUT" }
  gpt-4.1-mini: { provider: openai, input: "0.40", cached_input: "0.10", output: "1.60" }
)yaml";

constexpr char kDefaults[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test-defaults }
defaults: { max_output_tokens: 1000, unknown_model: reject }
)yaml";

// pricing.yaml with gpt-4.1's output price (USD per 1M tokens).
std::string Pricing(absl::string_view output_usd) {
  return absl::StrReplaceAll(kPricing, {{"OUTPUT", output_usd}});
}

v1::PushPolicyRequest Push(
    std::vector<std::pair<std::string, std::string>> files,
    const std::string& message = "a change", bool dry_run = false) {
  v1::PushPolicyRequest request;
  for (auto& [path, content] : files) {
    v1::PolicyFile* file = request.add_files();
    file->set_path(path);
    file->set_content(content);
  }
  request.set_author("ci@example.com");
  request.set_message(message);
  request.set_dry_run(dry_run);
  return request;
}

v1::PushPolicyRequest PushPrice(absl::string_view output_usd,
                                const std::string& message = "a change") {
  return Push(
      {{"pricing.yaml", Pricing(output_usd)}, {"defaults.yaml", kDefaults}},
      message);
}

// gpt-4.1's output price in the active policy, in nano-USD per 1M tokens.
int64_t ActiveOutputPrice(const PolicyRegistry& registry) {
  const policy::ModelPrice* price = registry.Active()->FindPrice("gpt-4.1");
  return price == nullptr ? -1 : price->output_nanos_per_mtok;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::trunc) << content;
}

class PolicyAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.Sub("policies/pricing.yaml"), Pricing("8.00"));
    WriteFile(dir_.Sub("policies/defaults.yaml"), kDefaults);
    OpenStorage();
    absl::StatusOr<StartupPolicy> startup = LoadStartupPolicy(
        store(), dir_.Sub("policies"), PolicySource::kStore, clock_.Now());
    ASSERT_TRUE(startup.ok()) << startup.status();
    initial_version_ = startup->policy->version();
    registry_ = std::make_unique<PolicyRegistry>(startup->policy);
    admin_ = std::make_unique<PolicyAdmin>(store(), registry_.get(), &clock_);
  }

  void OpenStorage() {
    storage::RocksLedgerOptions options;
    options.path = dir_.Sub("data");
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> storage =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
  }

  storage::PolicyVersionStore* store() {
    return storage_.policy_versions.get();
  }

  v1::PushPolicyResponse PushOk(const v1::PushPolicyRequest& request) {
    v1::PushPolicyResponse response;
    const absl::Status status =
        admin_->PushPolicy(request, auth::Caller(), &response);
    EXPECT_TRUE(status.ok()) << status;
    return response;
  }

  v1::ListPolicyVersionsResponse List() {
    v1::ListPolicyVersionsResponse response;
    const absl::Status status =
        admin_->ListPolicyVersions(v1::ListPolicyVersionsRequest(), &response);
    EXPECT_TRUE(status.ok()) << status;
    return response;
  }

  absl::Status Activate(const std::string& version,
                        v1::ActivatePolicyVersionResponse* response,
                        const std::string& reason = "rollback") {
    v1::ActivatePolicyVersionRequest request;
    request.set_version(version);
    request.set_actor("oncall@example.com");
    request.set_reason(reason);
    return admin_->ActivatePolicyVersion(request, auth::Caller(), response);
  }

  TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  storage::RocksStorage storage_;
  std::string initial_version_;
  std::unique_ptr<PolicyRegistry> registry_;
  std::unique_ptr<PolicyAdmin> admin_;
};

TEST_F(PolicyAdminTest, GoodPushIsStoredActivatedAndAudited) {
  clock_.Advance(absl::Minutes(5));
  const v1::PushPolicyResponse pushed =
      PushOk(PushPrice("12.00", "gpt-4.1 got dearer"));
  EXPECT_THAT(pushed.diagnostics(), IsEmpty());
  ASSERT_FALSE(pushed.version().empty());
  EXPECT_NE(pushed.version(), initial_version_);
  EXPECT_EQ(pushed.compiled_version(), pushed.version());
  EXPECT_TRUE(pushed.created());
  EXPECT_EQ(pushed.previous_version(), initial_version_);

  // Check sees the new version and its prices at once.
  EXPECT_EQ(registry_->Active()->version(), pushed.version());
  EXPECT_EQ(ActiveOutputPrice(*registry_), 12'000'000'000);
  EXPECT_EQ(store()->ActiveVersion(), pushed.version());

  const v1::ListPolicyVersionsResponse list = List();
  ASSERT_THAT(list.versions(), SizeIs(2));
  EXPECT_EQ(list.versions(0).version(), pushed.version());
  EXPECT_TRUE(list.versions(0).active());
  EXPECT_EQ(list.versions(0).author(), "ci@example.com");
  EXPECT_EQ(list.versions(0).message(), "gpt-4.1 got dearer");
  EXPECT_EQ(list.versions(0).created_at(), "2027-01-15T08:05:00Z");
  EXPECT_EQ(list.versions(1).version(), initial_version_);
  EXPECT_FALSE(list.versions(1).active());
  EXPECT_EQ(list.versions(1).author(), "bursard --policy_dir");

  v1::GetPolicyResponse active;
  ASSERT_TRUE(admin_->GetPolicy(v1::GetPolicyRequest(), &active).ok());
  EXPECT_EQ(active.version().version(), pushed.version());
  EXPECT_TRUE(active.version().active());
  ASSERT_THAT(active.files(), SizeIs(2));
  EXPECT_EQ(active.files(0).path(), "defaults.yaml");
  EXPECT_EQ(active.files(1).path(), "pricing.yaml");
  EXPECT_EQ(active.files(1).content(), Pricing("12.00"));

  const std::vector<storage::AuditEntry> audit = storage_.ledger->ListAudit(10);
  ASSERT_THAT(audit, SizeIs(2));  // the first start, then this push
  EXPECT_EQ(audit[0].action, "policy.push");
  EXPECT_EQ(audit[0].target, absl::StrCat("policy:", pushed.version()));
  EXPECT_EQ(audit[0].actor, "ci@example.com");
  EXPECT_EQ(audit[0].role, "unauthenticated");
  EXPECT_EQ(audit[0].reason, "gpt-4.1 got dearer");
  EXPECT_THAT(audit[0].before_json, HasSubstr(initial_version_));
  EXPECT_EQ(audit[1].actor, "bursard");
}

// With authentication on, the audit log and the version's author name the
// authenticated caller and its role, whatever the request says; the
// request's message (the reason) is kept.
TEST_F(PolicyAdminTest, AuthenticatedCallerIsTheActor) {
  auth::Caller caller;
  caller.via = auth::Caller::Via::kToken;
  caller.name = "ci-bot";
  caller.role = auth::Role::kPolicyAdmin;
  v1::PushPolicyRequest request = PushPrice("12.00", "dearer");
  request.set_author("someone-else@example.com");
  v1::PushPolicyResponse pushed;
  ASSERT_TRUE(admin_->PushPolicy(request, caller, &pushed).ok());
  EXPECT_EQ(List().versions(0).author(), "ci-bot");

  v1::ActivatePolicyVersionRequest activate;
  activate.set_version(initial_version_);
  activate.set_actor("spoofed");
  activate.set_reason("roll back");
  v1::ActivatePolicyVersionResponse activated;
  ASSERT_TRUE(admin_->ActivatePolicyVersion(activate, caller, &activated).ok());

  const std::vector<storage::AuditEntry> audit = storage_.ledger->ListAudit(10);
  ASSERT_THAT(audit, SizeIs(3));
  EXPECT_EQ(audit[0].action, "policy.activate");
  EXPECT_EQ(audit[0].actor, "ci-bot");
  EXPECT_EQ(audit[0].role, "policy-admin");
  EXPECT_EQ(audit[0].reason, "roll back");
  EXPECT_EQ(audit[1].action, "policy.push");
  EXPECT_EQ(audit[1].actor, "ci-bot");
  EXPECT_EQ(audit[1].role, "policy-admin");
  EXPECT_EQ(audit[1].reason, "dearer");
}

TEST_F(PolicyAdminTest, InvalidPushAnswersDiagnosticsAndChangesNothing) {
  v1::PushPolicyResponse rejected;
  const absl::Status status =
      admin_->PushPolicy(PushPrice("eight dollars"), auth::Caller(), &rejected);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("1 error;"));
  EXPECT_THAT(status.message(), HasSubstr("pricing.yaml:5:"));
  EXPECT_THAT(status.message(), HasSubstr("eight dollars"));

  // A dry run gives the same errors as structured diagnostics.
  v1::PushPolicyRequest dry = PushPrice("eight dollars");
  dry.set_dry_run(true);
  v1::PushPolicyResponse response;
  ASSERT_TRUE(admin_->PushPolicy(dry, auth::Caller(), &response).ok());
  EXPECT_EQ(response.version(), "");
  EXPECT_EQ(response.compiled_version(), "");
  ASSERT_THAT(response.diagnostics(), ::testing::Not(IsEmpty()));
  const v1::Diagnostic& d = response.diagnostics(0);
  EXPECT_EQ(d.severity(), v1::Diagnostic::SEVERITY_ERROR);
  EXPECT_EQ(d.path(), "pricing.yaml");
  EXPECT_EQ(d.line(), 5);
  EXPECT_GT(d.column(), 0);
  EXPECT_THAT(d.field(), HasSubstr("gpt-4.1"));
  EXPECT_THAT(d.message(), HasSubstr("eight dollars"));

  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_EQ(store()->ActiveVersion(), initial_version_);
  EXPECT_THAT(List().versions(), SizeIs(1));
  EXPECT_THAT(storage_.ledger->ListAudit(10), SizeIs(1));
}

TEST_F(PolicyAdminTest, DryRunCompilesAndStoresNothing) {
  v1::PushPolicyRequest request = PushPrice("12.00");
  request.set_dry_run(true);
  const v1::PushPolicyResponse response = PushOk(request);
  EXPECT_EQ(response.version(), "");
  EXPECT_FALSE(response.compiled_version().empty());
  EXPECT_NE(response.compiled_version(), initial_version_);
  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_THAT(List().versions(), SizeIs(1));

  // The version a dry run names is the one a real push stores.
  request.set_dry_run(false);
  EXPECT_EQ(PushOk(request).version(), response.compiled_version());
}

TEST_F(PolicyAdminTest, IdenticalPushReturnsTheStoredVersion) {
  const v1::PushPolicyResponse first = PushOk(PushPrice("12.00", "first"));
  clock_.Advance(absl::Hours(1));
  const v1::PushPolicyResponse again = PushOk(PushPrice("12.00", "again"));
  EXPECT_EQ(again.version(), first.version());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.previous_version(), first.version());
  EXPECT_THAT(List().versions(), SizeIs(2));
  EXPECT_EQ(List().versions(0).message(), "first");  // immutable

  // Pushing the initial content again brings the initial version back.
  const v1::PushPolicyResponse back = PushOk(PushPrice("8.00", "revert"));
  EXPECT_EQ(back.version(), initial_version_);
  EXPECT_FALSE(back.created());
  EXPECT_EQ(back.previous_version(), first.version());
  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_EQ(ActiveOutputPrice(*registry_), 8'000'000'000);
  EXPECT_THAT(List().versions(), SizeIs(2));
}

TEST_F(PolicyAdminTest, PolicyTestsAreLeftOutOfTheVersion) {
  const v1::PushPolicyResponse with_tests =
      PushOk(Push({{"pricing.yaml", Pricing("12.00")},
                   {"defaults.yaml", kDefaults},
                   {"pricing_test.yaml", "not even: [valid"}}));
  ASSERT_FALSE(with_tests.version().empty());
  v1::GetPolicyResponse got;
  ASSERT_TRUE(admin_->GetPolicy(v1::GetPolicyRequest(), &got).ok());
  ASSERT_THAT(got.files(), SizeIs(2));
  EXPECT_EQ(got.files(0).path(), "defaults.yaml");
  EXPECT_EQ(PushOk(PushPrice("12.00")).version(), with_tests.version());

  v1::PushPolicyResponse only_tests;
  const absl::Status status = admin_->PushPolicy(
      Push({{"a_test.yaml", "x: 1"}}), auth::Caller(), &only_tests);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("only policy tests"));
}

TEST_F(PolicyAdminTest, MalformedPushesAreInvalidArgumentNamingTheField) {
  struct Case {
    v1::PushPolicyRequest request;
    std::string expected;
  };
  std::vector<Case> cases = {
      {Push({}), "files: empty"},
      {Push({{"", kDefaults}}), "files[0].path: empty"},
      {Push({{"/etc/bursar/p.yaml", kDefaults}}), "is absolute"},
      {Push({{"ok.yaml", kDefaults}, {"../p.yaml", kDefaults}}),
       "files[1].path"},
      {Push({{"a/./p.yaml", kDefaults}}), "\".\" or \"..\""},
      {Push({{"a//p.yaml", kDefaults}}), "empty"},
      {Push({{"a\\p.yaml", kDefaults}}), "backslash"},
      {Push({{"README.md", "# hi"}}), "not a .yaml or .yml"},
      {Push({{"p.yaml", kDefaults}, {"p.yaml", kDefaults}}), "given twice"},
      {Push({{"big.yaml", std::string(kMaxPolicyFileBytes + 1, '#')}}),
       "files[0].content"},
      {Push({{std::string(kMaxPolicyPathBytes, 'a') + ".yaml", kDefaults}}),
       "files[0].path"},
  };
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i <= kMaxPolicyFiles; ++i) {
    many.push_back({absl::StrCat("p", i, ".yaml"), kDefaults});
  }
  cases.push_back({Push(many), "at most 256"});
  std::vector<std::pair<std::string, std::string>> large;
  for (int i = 0; i < 4; ++i) {
    large.push_back({absl::StrCat("p", i, ".yaml"),
                     std::string(kMaxPolicyFileBytes - 100, '#')});
  }
  cases.push_back({Push(large), "bytes in all"});
  v1::PushPolicyRequest long_author = PushPrice("12.00");
  long_author.set_author(std::string(kMaxPolicyAuthorBytes + 1, 'a'));
  cases.push_back({long_author, "author:"});
  v1::PushPolicyRequest long_message = PushPrice("12.00");
  long_message.set_message(std::string(kMaxPolicyMessageBytes + 1, 'm'));
  cases.push_back({long_message, "message:"});

  for (const Case& c : cases) {
    v1::PushPolicyResponse response;
    const absl::Status status =
        admin_->PushPolicy(c.request, auth::Caller(), &response);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << c.expected << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(c.expected));
  }
  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_THAT(List().versions(), SizeIs(1));
}

TEST_F(PolicyAdminTest, GetPolicyOfAnUnknownVersionIsNotFound) {
  v1::GetPolicyRequest request;
  request.set_version("0123456789abcdef");
  v1::GetPolicyResponse response;
  const absl::Status status = admin_->GetPolicy(request, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("0123456789abcdef"));

  request.set_version(initial_version_);
  ASSERT_TRUE(admin_->GetPolicy(request, &response).ok());
  EXPECT_TRUE(response.version().active());
}

TEST_F(PolicyAdminTest, ActivateRollsBackToAStoredVersion) {
  const v1::PushPolicyResponse pushed = PushOk(PushPrice("12.00"));
  ASSERT_EQ(ActiveOutputPrice(*registry_), 12'000'000'000);
  clock_.Advance(absl::Minutes(1));

  v1::ActivatePolicyVersionResponse response;
  const absl::Status status =
      Activate(initial_version_, &response, "12.00 was a typo");
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(response.version().version(), initial_version_);
  EXPECT_TRUE(response.version().active());
  EXPECT_EQ(response.previous_version(), pushed.version());
  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_EQ(ActiveOutputPrice(*registry_), 8'000'000'000);
  EXPECT_EQ(store()->ActiveVersion(), initial_version_);

  const v1::ListPolicyVersionsResponse list = List();
  ASSERT_THAT(list.versions(), SizeIs(2));
  EXPECT_FALSE(list.versions(0).active());
  EXPECT_TRUE(list.versions(1).active());

  const std::vector<storage::AuditEntry> audit = storage_.ledger->ListAudit(1);
  ASSERT_THAT(audit, SizeIs(1));
  EXPECT_EQ(audit[0].action, "policy.activate");
  EXPECT_EQ(audit[0].actor, "oncall@example.com");
  EXPECT_EQ(audit[0].reason, "12.00 was a typo");

  // Activating the active version again is fine and changes nothing.
  ASSERT_TRUE(Activate(initial_version_, &response).ok());
  EXPECT_EQ(response.previous_version(), initial_version_);
  EXPECT_THAT(storage_.ledger->ListAudit(10), SizeIs(3));
}

TEST_F(PolicyAdminTest, ActivateErrors) {
  v1::ActivatePolicyVersionResponse response;
  EXPECT_EQ(Activate("", &response).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Activate("feedfacefeedface", &response).code(),
            absl::StatusCode::kNotFound);

  // A stored version that this binary no longer compiles (written straight
  // into the store, as an older bursard with another schema might have).
  storage::PolicyVersion old;
  old.id = "00000000000000aa";
  old.files = {{"pricing.yaml", "apiVersion: bursar.dev/v0\nkind: Policy\n"}};
  ASSERT_TRUE(store()
                  ->Put(old, /*activate=*/false, storage::Actor{"old", ""},
                        clock_.Now())
                  .ok());
  const absl::Status status = Activate(old.id, &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("does not compile"));
  EXPECT_THAT(status.message(), HasSubstr("pricing.yaml:1:"));
  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_EQ(store()->ActiveVersion(), initial_version_);
}

TEST_F(PolicyAdminTest, ConcurrentPushesLeaveStoreAndRegistryAgreeing) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 10; ++i) {
        v1::PushPolicyResponse response;
        EXPECT_TRUE(admin_
                        ->PushPolicy(PushPrice(absl::StrCat(t + 1, ".", i)),
                                     auth::Caller(), &response)
                        .ok());
        if (i % 3 == 0) {
          v1::ActivatePolicyVersionResponse activated;
          EXPECT_TRUE(Activate(initial_version_, &activated).ok());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(store()->ActiveVersion(), registry_->Active()->version());
  EXPECT_THAT(List().versions(), SizeIs(41));
}

// --- Start-up rule ---------------------------------------------------------

TEST_F(PolicyAdminTest, FirstStartStoresThePolicyDirectory) {
  EXPECT_EQ(store()->ActiveVersion(), initial_version_);
  absl::StatusOr<storage::PolicyVersion> stored =
      store()->Get(initial_version_);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->author, "bursard --policy_dir");
  EXPECT_THAT(stored->message, HasSubstr("policies"));
  ASSERT_THAT(stored->files, SizeIs(2));
}

TEST_F(PolicyAdminTest, RestartRunsThePushedVersionNotTheDirectory) {
  const v1::PushPolicyResponse pushed = PushOk(PushPrice("12.00"));
  absl::StatusOr<StartupPolicy> restart = LoadStartupPolicy(
      store(), dir_.Sub("policies"), PolicySource::kStore, clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_EQ(restart->source, "store");
  EXPECT_EQ(restart->policy->version(), pushed.version());
  EXPECT_FALSE(restart->dir_matches);
  EXPECT_THAT(restart->dir_note, HasSubstr(initial_version_));
  EXPECT_THAT(restart->dir_note, HasSubstr("--policy_source=dir"));
  EXPECT_EQ(store()->ActiveVersion(), pushed.version());

  // The directory catches up (CI committed the same change): it matches.
  WriteFile(dir_.Sub("policies/pricing.yaml"), Pricing("12.00"));
  restart = LoadStartupPolicy(store(), dir_.Sub("policies"),
                              PolicySource::kStore, clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_TRUE(restart->dir_matches);

  // A missing directory does not matter once a version is stored.
  restart = LoadStartupPolicy(store(), dir_.Sub("nowhere"),
                              PolicySource::kStore, clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_EQ(restart->policy->version(), pushed.version());
  EXPECT_THAT(restart->dir_note, HasSubstr("does not exist"));
}

TEST_F(PolicyAdminTest, PolicySourceDirRunsTheDirectory) {
  const v1::PushPolicyResponse pushed = PushOk(PushPrice("12.00"));
  WriteFile(dir_.Sub("policies/pricing.yaml"), Pricing("9.00"));
  absl::StatusOr<StartupPolicy> restart = LoadStartupPolicy(
      store(), dir_.Sub("policies"), PolicySource::kDir, clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_EQ(restart->source, "dir");
  EXPECT_EQ(restart->previous_version, pushed.version());
  EXPECT_EQ(store()->ActiveVersion(), restart->policy->version());
  EXPECT_THAT(List().versions(), SizeIs(3));
  const std::vector<storage::AuditEntry> audit = storage_.ledger->ListAudit(1);
  ASSERT_THAT(audit, SizeIs(1));
  EXPECT_EQ(audit[0].actor, "bursard");
  EXPECT_EQ(audit[0].reason, "--policy_source=dir");
}

TEST_F(PolicyAdminTest, ActiveVersionThatNoLongerCompilesStopsStartUp) {
  storage::PolicyVersion old;
  old.id = "00000000000000aa";
  old.files = {{"pricing.yaml", "apiVersion: bursar.dev/v0\nkind: Policy\n"}};
  ASSERT_TRUE(
      store()
          ->Put(old, /*activate=*/true, storage::Actor{"old", ""}, clock_.Now())
          .ok());
  absl::StatusOr<StartupPolicy> restart = LoadStartupPolicy(
      store(), dir_.Sub("policies"), PolicySource::kStore, clock_.Now());
  EXPECT_EQ(restart.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(restart.status().message(), HasSubstr(old.id));
  EXPECT_THAT(restart.status().message(), HasSubstr("--policy_source=dir"));

  // The way out: run the directory.
  restart = LoadStartupPolicy(store(), dir_.Sub("policies"), PolicySource::kDir,
                              clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_EQ(restart->policy->version(), initial_version_);
  EXPECT_EQ(store()->ActiveVersion(), initial_version_);
}

// --- Shadow mode -----------------------------------------------------------

v1::PushPolicyRequest PushShadowPrice(absl::string_view output_usd) {
  v1::PushPolicyRequest request = PushPrice(output_usd, "try a new price");
  request.set_shadow(true);
  return request;
}

TEST_F(PolicyAdminTest, ShadowPushRunsBesideTheActiveVersion) {
  clock_.Advance(absl::Minutes(5));
  const v1::PushPolicyResponse pushed = PushOk(PushShadowPrice("12.00"));
  const std::string shadow = pushed.version();
  ASSERT_FALSE(shadow.empty());
  EXPECT_TRUE(pushed.created());
  EXPECT_EQ(pushed.previous_version(), initial_version_);
  EXPECT_EQ(pushed.previous_shadow_version(), "");

  // The active version is untouched; the shadow runs in the registry.
  EXPECT_EQ(registry_->Active()->version(), initial_version_);
  EXPECT_EQ(store()->ActiveVersion(), initial_version_);
  EXPECT_EQ(store()->ShadowVersion(), shadow);
  ASSERT_NE(registry_->Shadow(), nullptr);
  EXPECT_EQ(registry_->Shadow()->version(), shadow);
  EXPECT_EQ(registry_->Shadow()->active_version(), initial_version_);

  const v1::ListPolicyVersionsResponse list = List();
  ASSERT_THAT(list.versions(), SizeIs(2));
  EXPECT_EQ(list.versions(0).version(), shadow);
  EXPECT_TRUE(list.versions(0).shadow());
  EXPECT_FALSE(list.versions(0).active());
  EXPECT_FALSE(list.versions(1).shadow());

  v1::GetShadowReportResponse report;
  ASSERT_TRUE(
      admin_->GetShadowReport(v1::GetShadowReportRequest(), &report).ok());
  EXPECT_EQ(report.version(), shadow);
  EXPECT_EQ(report.active_version(), initial_version_);
  EXPECT_EQ(report.since(), "2027-01-15T08:05:00Z");
  EXPECT_EQ(report.checks_compared(), 0);
  EXPECT_EQ(report.sample_capacity(), 100);

  const std::vector<storage::AuditEntry> audit = storage_.ledger->ListAudit(1);
  ASSERT_THAT(audit, SizeIs(1));
  EXPECT_EQ(audit[0].action, "policy.shadow");
  EXPECT_EQ(audit[0].actor, "ci@example.com");

  // Pushing the same shadow again keeps its run (and counts); pushing
  // another replaces it.
  const std::shared_ptr<const ShadowRun> run = registry_->Shadow();
  run->stats().RecordSame();
  const v1::PushPolicyResponse again = PushOk(PushShadowPrice("12.00"));
  EXPECT_EQ(again.previous_shadow_version(), shadow);
  EXPECT_EQ(registry_->Shadow(), run);
  const v1::PushPolicyResponse other = PushOk(PushShadowPrice("14.00"));
  EXPECT_EQ(other.previous_shadow_version(), shadow);
  ASSERT_NE(registry_->Shadow(), nullptr);
  EXPECT_EQ(registry_->Shadow()->version(), other.version());
  EXPECT_EQ(registry_->Shadow()->stats().Snapshot().counts.compared, 0);

  // The active version cannot shadow itself; a dry run stores nothing.
  v1::PushPolicyResponse refused;
  v1::PushPolicyRequest same = PushShadowPrice("8.00");
  EXPECT_EQ(admin_->PushPolicy(same, auth::Caller(), &refused).code(),
            absl::StatusCode::kFailedPrecondition);
  same = PushShadowPrice("9.00");
  same.set_dry_run(true);
  ASSERT_TRUE(admin_->PushPolicy(same, auth::Caller(), &refused).ok());
  EXPECT_EQ(store()->ShadowVersion(), other.version());
}

TEST_F(PolicyAdminTest, ActivatingTheShadowPromotesIt) {
  const std::string shadow = PushOk(PushShadowPrice("12.00")).version();
  v1::ActivatePolicyVersionResponse activated;
  ASSERT_TRUE(Activate(shadow, &activated, "promote").ok());
  EXPECT_TRUE(activated.promoted_shadow());
  EXPECT_EQ(activated.previous_version(), initial_version_);
  EXPECT_EQ(registry_->Active()->version(), shadow);
  EXPECT_EQ(ActiveOutputPrice(*registry_), 12'000'000'000);
  EXPECT_EQ(registry_->Shadow(), nullptr);
  EXPECT_EQ(store()->ShadowVersion(), "");
  v1::GetShadowReportResponse report;
  ASSERT_TRUE(
      admin_->GetShadowReport(v1::GetShadowReportRequest(), &report).ok());
  EXPECT_EQ(report.version(), "");

  // A plain push of the shadow's content promotes it too.
  const std::string next = PushOk(PushShadowPrice("14.00")).version();
  const v1::PushPolicyResponse pushed = PushOk(PushPrice("14.00"));
  EXPECT_EQ(pushed.version(), next);
  EXPECT_EQ(pushed.previous_shadow_version(), next);
  EXPECT_EQ(registry_->Shadow(), nullptr);
}

TEST_F(PolicyAdminTest, AnotherActiveVersionRestartsTheShadowCounts) {
  const std::string shadow = PushOk(PushShadowPrice("12.00")).version();
  registry_->Shadow()->stats().RecordSame();
  clock_.Advance(absl::Hours(1));
  const std::string active = PushOk(PushPrice("10.00")).version();
  ASSERT_NE(registry_->Shadow(), nullptr);
  EXPECT_EQ(registry_->Shadow()->version(), shadow);
  EXPECT_EQ(registry_->Shadow()->active_version(), active);
  EXPECT_EQ(registry_->Shadow()->since(), clock_.Now());
  EXPECT_EQ(registry_->Shadow()->stats().Snapshot().counts.compared, 0);

  // So does a rollback.
  v1::ActivatePolicyVersionResponse activated;
  ASSERT_TRUE(Activate(initial_version_, &activated).ok());
  EXPECT_FALSE(activated.promoted_shadow());
  ASSERT_NE(registry_->Shadow(), nullptr);
  EXPECT_EQ(registry_->Shadow()->active_version(), initial_version_);
}

TEST_F(PolicyAdminTest, StopShadowAnswersTheLastReport) {
  const std::string shadow = PushOk(PushShadowPrice("12.00")).version();
  ShadowSample sample;
  sample.request_id = "r1";
  sample.differences = kShadowEstimatedCost;
  sample.active.allowed = true;
  sample.active.estimated_cost_nanos = 5;
  sample.shadow.error = "INVALID_ARGUMENT: no";
  registry_->Shadow()->stats().RecordDifference(sample);

  v1::StopShadowRequest request;
  request.set_actor("dana");
  request.set_reason("seen enough");
  v1::StopShadowResponse stopped;
  ASSERT_TRUE(admin_->StopShadow(request, auth::Caller(), &stopped).ok());
  EXPECT_EQ(stopped.version(), shadow);
  EXPECT_EQ(stopped.final_report().checks_differing(), 1);
  EXPECT_EQ(stopped.final_report().differences().estimated_cost(), 1);
  ASSERT_THAT(stopped.final_report().samples(), SizeIs(1));
  const v1::ShadowSample& out = stopped.final_report().samples(0);
  EXPECT_EQ(out.request_id(), "r1");
  EXPECT_THAT(out.differences(), ::testing::ElementsAre("estimated_cost"));
  EXPECT_EQ(out.active().verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(out.active().estimated_cost_nanos(), 5);
  EXPECT_EQ(out.shadow().verdict(), v1::VERDICT_UNSPECIFIED);
  EXPECT_EQ(out.shadow().error(), "INVALID_ARGUMENT: no");
  EXPECT_EQ(registry_->Shadow(), nullptr);
  EXPECT_EQ(store()->ShadowVersion(), "");
  const std::vector<storage::AuditEntry> audit = storage_.ledger->ListAudit(1);
  ASSERT_THAT(audit, SizeIs(1));
  EXPECT_EQ(audit[0].action, "policy.shadow.stop");
  EXPECT_EQ(audit[0].actor, "dana");

  // Stopping again changes nothing.
  stopped.Clear();
  ASSERT_TRUE(admin_->StopShadow(request, auth::Caller(), &stopped).ok());
  EXPECT_EQ(stopped.version(), "");
  EXPECT_THAT(storage_.ledger->ListAudit(10), SizeIs(3));

  v1::GetShadowReportRequest bad;
  bad.set_sample_limit(-1);
  v1::GetShadowReportResponse report;
  EXPECT_EQ(admin_->GetShadowReport(bad, &report).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyAdminTest,
       RestartRestoresTheShadowOrDropsOneThatNoLongerCompiles) {
  const std::string shadow = PushOk(PushShadowPrice("12.00")).version();
  absl::StatusOr<StartupPolicy> restart = LoadStartupPolicy(
      store(), dir_.Sub("policies"), PolicySource::kStore, clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_EQ(restart->policy->version(), initial_version_);
  ASSERT_NE(restart->shadow, nullptr);
  EXPECT_EQ(restart->shadow->version(), shadow);
  EXPECT_EQ(restart->shadow_note, "");

  // A shadow version this binary cannot compile is dropped, not fatal.
  storage::PolicyVersion old;
  old.id = "00000000000000bb";
  old.files = {{"pricing.yaml", "apiVersion: bursar.dev/v0\nkind: Policy\n"}};
  ASSERT_TRUE(
      store()->PutShadow(old, storage::Actor{"old", ""}, clock_.Now()).ok());
  restart = LoadStartupPolicy(store(), dir_.Sub("policies"),
                              PolicySource::kStore, clock_.Now());
  ASSERT_TRUE(restart.ok()) << restart.status();
  EXPECT_EQ(restart->shadow, nullptr);
  EXPECT_THAT(restart->shadow_note, HasSubstr(old.id));
  EXPECT_THAT(restart->shadow_note, HasSubstr("does not compile"));
  EXPECT_EQ(store()->ShadowVersion(), "");
}

TEST(PolicyStartupTest, EmptyStoreNeedsAPolicyDirectoryThatCompiles) {
  TempDir dir;
  storage::RocksLedgerOptions options;
  options.path = dir.Sub("data");
  absl::StatusOr<storage::RocksStorage> storage =
      storage::OpenRocksStorage(options);
  ASSERT_TRUE(storage.ok()) << storage.status();
  storage::PolicyVersionStore* store = storage->policy_versions.get();

  EXPECT_EQ(LoadStartupPolicy(store, dir.Sub("missing"), PolicySource::kStore,
                              absl::Now())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  WriteFile(dir.Sub("bad/pricing.yaml"), Pricing("free"));
  const absl::StatusOr<StartupPolicy> bad = LoadStartupPolicy(
      store, dir.Sub("bad"), PolicySource::kStore, absl::Now());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(), HasSubstr("pricing.yaml:5:"));
  EXPECT_EQ(store->ActiveVersion(), "");
  EXPECT_THAT(*store->List(), IsEmpty());
}

TEST(PolicySourceTest, Parse) {
  EXPECT_EQ(*ParsePolicySource("store"), PolicySource::kStore);
  EXPECT_EQ(*ParsePolicySource("dir"), PolicySource::kDir);
  EXPECT_EQ(ParsePolicySource("disk").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bursar::server
