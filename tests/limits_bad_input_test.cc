// Every size limit of bursard, over the wire: each violation is refused
// before any work with a message naming the limit and the value, and
// changes nothing (decision 015, docs/operations.md). Label limits of
// Check are also covered field by field in bad_input_test.cc.

#include <httplib.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: limits }
pricing:
  gpt-4.1: { provider: openai, input: "2.00", cached_input: "0.50", output: "8.00" }
defaults: { max_output_tokens: 1000, unknown_model: reject }
)yaml";

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  std::unique_ptr<grpc::ClientContext> Call() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
    return context;
  }

  grpc::Status Push(std::vector<std::pair<std::string, std::string>> files,
                    v1::PushPolicyResponse* response) {
    v1::PushPolicyRequest request;
    for (auto& [path, content] : files) {
      v1::PolicyFile* file = request.add_files();
      file->set_path(path);
      file->set_content(std::move(content));
    }
    request.set_author("ci@example.com");
    request.set_message("limits test");
    return server_->admin().PushPolicy(Call().get(), request, response);
  }

  std::string ActiveVersion() {
    v1::ListPolicyVersionsResponse response;
    BURSAR_EXPECT_OK(server_->admin().ListPolicyVersions(
        Call().get(), v1::ListPolicyVersionsRequest(), &response));
    for (const v1::PolicyVersion& v : response.versions()) {
      if (v.active()) return v.version();
    }
    return "";
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(LimitsTest, ARequestOverTheMessageSizeIsRefusedByGrpc) {
  // 5 MiB in one label value: over the 4 MiB --max_receive_message_bytes.
  v1::CheckRequest request =
      MakeCheck("gpt-4.1", 10, 10, {{"team", std::string(5 << 20, 'x')}});
  v1::CheckResponse response;
  grpc::Status status = server_->Check(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << StatusText(status);
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  EXPECT_THAT(status.error_message(), HasSubstr("4194304"));
  // The server still serves.
  BURSAR_EXPECT_OK(server_->Check(MakeCheck("gpt-4.1", 10, 10), &response));
}

TEST_F(LimitsTest, LabelLimitsNameTheLimitAndTheValue) {
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 40; ++i) many.emplace_back(absl::StrCat("k", i), "v");
  v1::CheckResponse response;
  grpc::Status status =
      server_->Check(MakeCheck("gpt-4.1", 10, 10, many), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("40 labels; at most 32"));

  status = server_->Check(
      MakeCheck("gpt-4.1", 10, 10, {{std::string(65, 'k'), "v"}}), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("1..64 bytes"));

  status = server_->Check(
      MakeCheck("gpt-4.1", 10, 10, {{"team", std::string(300, 'v')}}),
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("labels[team]"));
  EXPECT_THAT(status.error_message(), HasSubstr("256"));
}

TEST_F(LimitsTest, PolicyFileAndPushSizesAreBounded) {
  const std::string before = ActiveVersion();
  v1::PushPolicyResponse response;
  // One file over 1 MiB.
  grpc::Status status = Push(
      {{"policy.yaml", absl::StrCat(kPolicy, "#", std::string(1 << 20, 'x'))}},
      &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << StatusText(status);
  EXPECT_THAT(status.error_message(), HasSubstr("at most 1048576"));

  // Four files of 900 KiB: each fits, together they are over 3 MiB.
  std::vector<std::pair<std::string, std::string>> files;
  for (int i = 0; i < 4; ++i) {
    files.emplace_back(absl::StrCat("f", i, ".yaml"),
                       absl::StrCat("#", std::string(900 << 10, 'x')));
  }
  status = Push(std::move(files), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << StatusText(status);
  EXPECT_THAT(status.error_message(), HasSubstr("3686432 bytes in all"));
  EXPECT_THAT(status.error_message(), HasSubstr("at most 3145728"));

  // Within the push limits but over the YAML parser's 256 KiB per file.
  status = Push({{"policy.yaml",
                  absl::StrCat(kPolicy, "#", std::string(300 << 10, 'x'))}},
                &response);
  EXPECT_NE(status.error_code(), grpc::StatusCode::OK);
  EXPECT_THAT(status.error_message(), HasSubstr("KiB"));

  EXPECT_EQ(ActiveVersion(), before);
}

TEST_F(LimitsTest, ExpressionDepthIsBounded) {
  const std::string before = ActiveVersion();
  std::string deep = "request.model == \"gpt-4.1\"";
  for (int i = 0; i < 40; ++i) deep = absl::StrCat("(", deep, ")");
  const std::string policy =
      absl::StrCat(kPolicy, "routes:\n  - name: deep\n    when: '", deep,
                   "'\n    route_to: gpt-4.1\n");
  v1::PushPolicyResponse response;
  grpc::Status status = Push({{"policy.yaml", policy}}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << StatusText(status);
  EXPECT_THAT(status.error_message(), HasSubstr("nested too deeply"));
  EXPECT_THAT(status.error_message(), HasSubstr("32"));
  EXPECT_EQ(ActiveVersion(), before);
}

TEST_F(LimitsTest, AnHttpBodyOverOneMebibyteIs413) {
  const std::string& address = server_->http_address();
  ASSERT_FALSE(address.empty());
  httplib::Client client(absl::StrCat("http://", address));
  const std::string body = absl::StrCat(
      R"({"model": "gpt-4.1", "input_tokens": 10, "labels": {"team": ")",
      std::string((1 << 20) + 10, 'x'), R"("}})");
  httplib::Result result = client.Post("/v1/check", body, "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 413);
  // Just under the bound reaches the Decider, which names the label limit.
  const std::string smaller = absl::StrCat(
      R"({"model": "gpt-4.1", "input_tokens": 10, "labels": {"team": ")",
      std::string(1000, 'x'), R"("}})");
  result = client.Post("/v1/check", smaller, "application/json");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 400);
  EXPECT_THAT(result->body, HasSubstr("labels[team]"));
}

}  // namespace
}  // namespace bursar::testing
