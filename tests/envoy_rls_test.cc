// Envoy's rate-limit service API against a real bursard: a client built from
// proto/envoy/service/ratelimit/v3/rls.proto calls ShouldRateLimit on the
// main gRPC port, as Envoy's ratelimit filter would.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::envoy::service::ratelimit::v3::RateLimitRequest;
using ::envoy::service::ratelimit::v3::RateLimitResponse;
using ::envoy::service::ratelimit::v3::RateLimitService;
using ::testing::HasSubstr;

using Entries = std::vector<std::pair<std::string, std::string>>;

// gpt-4.1 in policies/example: $2 per 1M input, $8 per 1M output tokens.
constexpr int64_t kOutputNanosPerToken = 8'000;
constexpr int64_t kInputNanosPerToken = 2'000;

RateLimitRequest Request(const std::string& domain,
                         const std::vector<Entries>& descriptors,
                         uint32_t hits_addend = 0) {
  RateLimitRequest request;
  request.set_domain(domain);
  for (const Entries& entries : descriptors) {
    auto* descriptor = request.add_descriptors();
    for (const auto& [key, value] : entries) {
      auto* entry = descriptor->add_entries();
      entry->set_key(key);
      entry->set_value(value);
    }
  }
  request.set_hits_addend(hits_addend);
  return request;
}

std::string Header(const RateLimitResponse& response, const std::string& key) {
  for (const auto& header : response.response_headers_to_add()) {
    if (header.key() == key) return header.value();
  }
  return "<missing>";
}

class EnvoyRlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
    rls_ = RateLimitService::NewStub(server_->channel());
  }

  void SetBudget(const v1::Budget& budget) {
    v1::SetBudgetRequest request;
    *request.mutable_budget() = budget;
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server_->SetBudget(request, &response));
  }

  v1::GetBudgetResponse Budget(const std::string& name) {
    v1::GetBudgetRequest request;
    request.set_name(name);
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->GetBudget(request, &response));
    return response;
  }

  grpc::Status ShouldRateLimit(const RateLimitRequest& request,
                               RateLimitResponse* response) {
    return rls_->ShouldRateLimit(Call().get(), request, response);
  }

  RateLimitResponse Ok(const RateLimitRequest& request) {
    RateLimitResponse response;
    const grpc::Status status = ShouldRateLimit(request, &response);
    EXPECT_TRUE(status.ok()) << StatusText(status);
    return response;
  }

  TempDir dir_;
  std::unique_ptr<BursardProcess> server_;
  std::unique_ptr<RateLimitService::Stub> rls_;
};

TEST_F(EnvoyRlsTest, AllowedHitsAreChargedExactlyAsOutputTokens) {
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_MONTH,
                       1'000'000'000));
  const RateLimitResponse response = Ok(Request(
      "ai-gateway", {{{"model", "gpt-4.1"}}, {{"team", "search"}}}, 1000));
  EXPECT_EQ(response.overall_code(), RateLimitResponse::OK);
  ASSERT_EQ(response.statuses_size(), 2);  // one per descriptor
  EXPECT_EQ(response.statuses(0).code(), RateLimitResponse::OK);
  EXPECT_EQ(response.statuses(1).code(), RateLimitResponse::OK);
  EXPECT_EQ(Header(response, "x-bursar-verdict"), "allow");
  EXPECT_EQ(Header(response, "x-bursar-cost-nanos"),
            std::to_string(1000 * kOutputNanosPerToken));

  // Settled at once: spent, nothing left held.
  const v1::GetBudgetResponse budget = Budget("team-search");
  EXPECT_EQ(budget.spent_nanos(), 1000 * kOutputNanosPerToken);
  EXPECT_EQ(budget.held_nanos(), 0);
}

TEST_F(EnvoyRlsTest, UnsetHitsAddendIsOneHitAndTokenKindPricesInput) {
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_MONTH,
                       1'000'000'000));
  Ok(Request("ai-gateway", {{{"model", "gpt-4.1"}, {"team", "search"}}}));
  EXPECT_EQ(Budget("team-search").spent_nanos(), kOutputNanosPerToken);
  Ok(Request(
      "ai-gateway",
      {{{"model", "gpt-4.1"}, {"team", "search"}, {"token_kind", "input"}}},
      500));
  EXPECT_EQ(Budget("team-search").spent_nanos(),
            kOutputNanosPerToken + 500 * kInputNanosPerToken);
}

TEST_F(EnvoyRlsTest, ExhaustedBudgetIsOverLimitAndChargesNothing) {
  // $0.01: one hit of 1,000 output tokens ($0.008) fits, a second does not.
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_MONTH,
                       10'000'000));
  const RateLimitRequest request =
      Request("ai-gateway", {{{"model", "gpt-4.1"}, {"team", "search"}}}, 1000);
  EXPECT_EQ(Ok(request).overall_code(), RateLimitResponse::OK);

  const RateLimitResponse denied = Ok(request);
  EXPECT_EQ(denied.overall_code(), RateLimitResponse::OVER_LIMIT);
  ASSERT_EQ(denied.statuses_size(), 1);
  EXPECT_EQ(denied.statuses(0).code(), RateLimitResponse::OVER_LIMIT);
  EXPECT_EQ(Header(denied, "x-bursar-verdict"), "deny");
  EXPECT_EQ(Header(denied, "x-bursar-denied-by"), "budget:team-search");
  EXPECT_THAT(denied.raw_body(),
              HasSubstr("budget \"team-search\" has $0.002"));

  const v1::GetBudgetResponse budget = Budget("team-search");
  EXPECT_EQ(budget.spent_nanos(), 1000 * kOutputNanosPerToken);
  EXPECT_EQ(budget.held_nanos(), 0);
}

TEST_F(EnvoyRlsTest, DomainIsALabelThatBudgetsSelect) {
  SetBudget(
      MakeBudget("gateway-a", {{"domain", "gateway-a"}}, v1::PERIOD_NONE, 0));
  const RateLimitRequest to_a =
      Request("gateway-a", {{{"model", "gpt-4.1"}}}, 10);
  EXPECT_EQ(Ok(to_a).overall_code(), RateLimitResponse::OVER_LIMIT);
  const RateLimitRequest to_b =
      Request("gateway-b", {{{"model", "gpt-4.1"}}}, 10);
  EXPECT_EQ(Ok(to_b).overall_code(), RateLimitResponse::OK);
}

TEST_F(EnvoyRlsTest, ExplicitZeroHitsIsADryRun) {
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_MONTH,
                       10'000'000));
  RateLimitRequest probe =
      Request("ai-gateway", {{{"model", "gpt-4.1"}, {"team", "search"}}});
  probe.mutable_descriptors(0)->mutable_hits_addend()->set_value(0);
  EXPECT_EQ(Ok(probe).overall_code(), RateLimitResponse::OK);
  EXPECT_EQ(Budget("team-search").spent_nanos(), 0);
  EXPECT_EQ(Budget("team-search").held_nanos(), 0);

  // Spend it all (1,250 output tokens = $0.01), then the probe says no.
  RateLimitRequest spend = probe;
  spend.mutable_descriptors(0)->mutable_hits_addend()->set_value(1250);
  EXPECT_EQ(Ok(spend).overall_code(), RateLimitResponse::OK);
  EXPECT_EQ(Budget("team-search").spent_nanos(), 10'000'000);
  EXPECT_EQ(Ok(probe).overall_code(), RateLimitResponse::OVER_LIMIT);
}

TEST_F(EnvoyRlsTest, UnmappableRequestsAreInvalidArgument) {
  struct Case {
    RateLimitRequest request;
    std::string message;
  };
  RateLimitRequest bad_hits =
      Request("d", {{{"model", "gpt-4.1"}}, {{"a", "b"}}});
  bad_hits.mutable_descriptors(0)->mutable_hits_addend()->set_value(1);
  bad_hits.mutable_descriptors(1)->mutable_hits_addend()->set_value(2);
  const std::vector<Case> cases = {
      {Request("", {{{"model", "gpt-4.1"}}}), "domain: must name"},
      {Request("d", {}), "descriptors: at least one descriptor"},
      {Request("d", {{{"team", "search"}}}), "no entry names the model"},
      {Request("d", {{{"model", "gpt-4.1"}, {"team", ""}}}),
       "descriptors[0].entries[1]: key and value must both be non-empty"},
      {Request("d", {{{"model", "gpt-4.1"}}, {{"model", "o3"}}}),
       "descriptors[1].entries[0]: key \"model\" is \"o3\" here but "
       "\"gpt-4.1\""},
      {Request("d", {{{"model", "gpt-4.1"}, {"domain", "x"}}}),
       "\"domain\" is reserved"},
      {Request("d", {{{"model", "gpt-4.1"}, {"token_kind", "audio"}}}),
       "token_kind \"audio\" is not input, cached_input or output"},
      {std::move(bad_hits), "descriptors[1].hits_addend: 2 differs from 1"},
      {Request("d", {{{"model", "gpt-4.1"}}}, 200'000'000),
       "hits_addend: 200000000 tokens; at most 100000000"},
  };
  for (const Case& c : cases) {
    RateLimitResponse response;
    const grpc::Status status = ShouldRateLimit(c.request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.message << " -> " << StatusText(status);
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  // A model the catalog does not price: the policy's unknown_model
  // (policies/example: reject) answers, with the model named.
  RateLimitResponse response;
  const grpc::Status status =
      ShouldRateLimit(Request("d", {{{"model", "gpt-9"}}}), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("gpt-9"));
}

// policies/marketing-guardrails: drafts are routed to gpt-4.1-mini, and
// marketing may not use claude-opus-4.
class EnvoyRlsPolicyTest : public EnvoyRlsTest {
 protected:
  void SetUp() override {
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.policy_dir =
        std::string(BURSAR_SOURCE_DIR) + "/policies/marketing-guardrails";
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
    rls_ = RateLimitService::NewStub(server_->channel());
    SetBudget(MakeBudget("marketing", {{"team", "marketing"}}, v1::PERIOD_MONTH,
                         1'000'000'000));
  }
};

TEST_F(EnvoyRlsPolicyTest, APlanTheCallerCannotFollowIsOverLimitAndFree) {
  const RateLimitResponse rerouted = Ok(Request(
      "ai-gateway",
      {{{"model", "gpt-4.1"}, {"team", "marketing"}, {"feature", "draft-ad"}}},
      100));
  EXPECT_EQ(rerouted.overall_code(), RateLimitResponse::OVER_LIMIT);
  EXPECT_EQ(Header(rerouted, "x-bursar-denied-by"), "route:drafts-on-mini");
  EXPECT_THAT(rerouted.raw_body(),
              HasSubstr("switch the model to \"gpt-4.1-mini\""));
  EXPECT_EQ(Budget("marketing").spent_nanos(), 0);
  EXPECT_EQ(Budget("marketing").held_nanos(), 0);

  const RateLimitResponse denied =
      Ok(Request("ai-gateway",
                 {{{"model", "claude-opus-4"}, {"team", "marketing"}}}, 100));
  EXPECT_EQ(denied.overall_code(), RateLimitResponse::OVER_LIMIT);
  EXPECT_EQ(Header(denied, "x-bursar-denied-by"), "deny:marketing-no-opus");
  EXPECT_THAT(denied.raw_body(), HasSubstr("use claude-sonnet-4"));

  const RateLimitResponse allowed = Ok(Request(
      "ai-gateway", {{{"model", "gpt-4.1"}, {"team", "marketing"}}}, 100));
  EXPECT_EQ(allowed.overall_code(), RateLimitResponse::OK);
  EXPECT_EQ(Budget("marketing").spent_nanos(), 100 * kOutputNanosPerToken);
}

// The bytes Envoy sends, encoded by hand from upstream's field numbers
// (domain = 1, descriptors = 2 {entries = 1 {key = 1, value = 2}},
// hits_addend = 3), parse into the request Bursar reads.
TEST(EnvoyRlsWireTest, UpstreamFieldNumbers) {
  const std::string entry =
      std::string("\x0a\x05model", 7) + std::string("\x12\x07gpt-4.1", 9);
  const std::string descriptor =
      std::string("\x0a", 1) + static_cast<char>(entry.size()) + entry;
  const std::string wire = std::string(
                               "\x0a\x05"
                               "envoy",
                               7) +
                           std::string("\x12", 1) +
                           static_cast<char>(descriptor.size()) + descriptor +
                           std::string("\x18\x2a", 2);
  RateLimitRequest request;
  ASSERT_TRUE(request.ParseFromString(wire));
  EXPECT_EQ(request.domain(), "envoy");
  ASSERT_EQ(request.descriptors_size(), 1);
  ASSERT_EQ(request.descriptors(0).entries_size(), 1);
  EXPECT_EQ(request.descriptors(0).entries(0).key(), "model");
  EXPECT_EQ(request.descriptors(0).entries(0).value(), "gpt-4.1");
  EXPECT_EQ(request.hits_addend(), 42u);

  // overall_code = 1, statuses = 2 {code = 1, duration_until_reset = 4},
  // response_headers_to_add = 3 {key = 1, value = 2}, raw_body = 5.
  RateLimitResponse response;
  response.set_overall_code(RateLimitResponse::OVER_LIMIT);
  auto* status = response.add_statuses();
  status->set_code(RateLimitResponse::OVER_LIMIT);
  status->mutable_duration_until_reset()->set_seconds(3);
  auto* header = response.add_response_headers_to_add();
  header->set_key("a");
  header->set_value("b");
  response.set_raw_body("x");
  EXPECT_EQ(response.SerializeAsString(),
            std::string("\x08\x02"                          // overall_code
                        "\x12\x06\x08\x02\x22\x02\x08\x03"  // statuses
                        "\x1a\x06\x0a\x01"
                        "a"
                        "\x12\x01"
                        "b"  // header
                        "\x2a\x01"
                        "x",  // raw_body
                        21));
}

}  // namespace
}  // namespace bursar::testing
