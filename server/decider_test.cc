#include "server/decider.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/loader.h"
#include "server/shadow_stats.h"
#include "storage/rocks_ledger.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

constexpr char kPolicy[] = R"yaml(
apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: test }
pricing:
  gpt-4.1:      { provider: openai, input: "2.00", cached_input: "0.50", output: "8.00" }
  gpt-4.1-mini: { provider: openai, input: "0.40", cached_input: "0.10", output: "1.60" }
defaults: { max_output_tokens: 1000, unknown_model: UNKNOWN_ACTION }
)yaml";

// The policy compiled from `text`; null (and a test failure naming the
// first diagnostic) when it does not compile.
std::shared_ptr<const policy::CompiledPolicy> CompileText(
    const std::string& text) {
  policy::CompileResult result = policy::CompilePolicy({{"p.yaml", text}});
  EXPECT_NE(result.policy, nullptr)
      << (result.diagnostics.empty()
              ? ""
              : policy::FormatDiagnostic(result.diagnostics.front()));
  return result.policy;
}

std::shared_ptr<const policy::CompiledPolicy> Compile(
    absl::string_view unknown_action, absl::string_view gpt41_output = "8.00") {
  std::string text = kPolicy;
  text.replace(text.find("UNKNOWN_ACTION"), 14, std::string(unknown_action));
  text.replace(text.find("\"8.00\""), 6,
               absl::StrCat("\"", gpt41_output, "\""));
  return CompileText(text);
}

class DeciderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policies_ = std::make_unique<PolicyRegistry>(Compile("reject"));
    ASSERT_NO_FATAL_FAILURE(OpenLedgerAndDecider());
  }

  // (Re)opens the ledger in dir_ and a Decider over it and policies_.
  void OpenLedgerAndDecider() {
    decider_.reset();
    ledger_.reset();
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = storage::SyncMode::kNone;
    auto ledger = storage::OpenRocksLedger(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    decider_ = std::make_unique<Decider>(ledger_.get(), policies_.get(),
                                         &clock_, DeciderOptions{});
  }
  void TearDown() override {
    decider_.reset();
    ledger_.reset();
  }

  void SetBudget(const std::string& name, int64_t amount_nanos,
                 std::vector<std::pair<std::string, std::string>> selector) {
    storage::BudgetSpec spec;
    spec.name = name;
    spec.amount_nanos = amount_nanos;
    spec.period = storage::Period::kMonth;
    spec.selector = std::move(selector);
    ASSERT_TRUE(ledger_->SetBudget(spec, {"test", ""}, clock_.Now()).ok());
  }

  v1::CheckRequest Request(const std::string& model, int64_t input,
                           int64_t max_output) {
    v1::CheckRequest request;
    request.set_model(model);
    request.set_input_tokens(input);
    request.set_max_output_tokens(max_output);
    (*request.mutable_labels())["team"] = "search";
    return request;
  }

  bursar::testing::TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'790'000'000)};
  std::unique_ptr<storage::Ledger> ledger_;
  std::unique_ptr<PolicyRegistry> policies_;
  std::unique_ptr<Decider> decider_;
};

TEST_F(DeciderTest, AllowsWithWorstCaseEstimateAndDefaultMaxOutput) {
  SetBudget("search", 1'000'000'000, {{"team", "search"}});
  v1::CheckResponse response;
  ASSERT_TRUE(decider_->Check(Request("gpt-4.1", 1200, 0), &response).ok());
  EXPECT_EQ(response.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(response.model(), "gpt-4.1");
  EXPECT_EQ(response.max_output_tokens(), 1000);  // the policy default
  // 1200 x $2.00/1M + 1000 x $8.00/1M = $0.0024 + $0.008
  EXPECT_EQ(response.estimated_cost_nanos(), 10'400'000);
  EXPECT_FALSE(response.reservation_id().empty());
  EXPECT_EQ(response.policy_version(), policies_->Active()->version());
  ASSERT_EQ(response.budgets_size(), 1);
  EXPECT_EQ(response.budgets(0).held_nanos(), 10'400'000);
  EXPECT_EQ(response.budgets(0).remaining_nanos(), 1'000'000'000 - 10'400'000);
}

TEST_F(DeciderTest, DenialNamesTheBudgetAndWhatIsLeft) {
  SetBudget("search", 10'000'000, {{"team", "search"}});
  v1::CheckResponse response;
  ASSERT_TRUE(decider_->Check(Request("gpt-4.1", 1200, 1000), &response).ok());
  EXPECT_EQ(response.verdict(), v1::VERDICT_DENY);
  EXPECT_TRUE(response.reservation_id().empty());
  ASSERT_EQ(response.reasons_size(), 1);
  EXPECT_EQ(response.reasons(0).rule(), "budget:search");
  EXPECT_THAT(response.reasons(0).message(), HasSubstr("$0.01 of $0.01 left"));
  EXPECT_THAT(response.reasons(0).message(), HasSubstr("up to $0.0104"));
}

TEST_F(DeciderTest, ModelAndProviderArePseudoLabelsForSelectors) {
  SetBudget("gpt41-only", 0, {{"model", "gpt-4.1"}});
  SetBudget("openai", 1'000'000'000, {{"provider", "openai"}});
  v1::CheckResponse denied;
  ASSERT_TRUE(decider_->Check(Request("gpt-4.1", 10, 10), &denied).ok());
  EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
  v1::CheckResponse allowed;
  ASSERT_TRUE(decider_->Check(Request("gpt-4.1-mini", 10, 10), &allowed).ok());
  EXPECT_EQ(allowed.verdict(), v1::VERDICT_ALLOW);
  ASSERT_EQ(allowed.budgets_size(), 1);
  EXPECT_EQ(allowed.budgets(0).budget(), "openai");
}

TEST_F(DeciderTest, UnknownModelIsRejectedOrDeniedNeverFree) {
  v1::CheckResponse response;
  absl::Status status = decider_->Check(Request("gpt-9", 10, 10), &response);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("gpt-9"));

  policies_->Activate(Compile("deny"));
  v1::CheckResponse denied;
  ASSERT_TRUE(decider_->Check(Request("gpt-9", 10, 10), &denied).ok());
  EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
  ASSERT_EQ(denied.reasons_size(), 1);
  EXPECT_EQ(denied.reasons(0).rule(), "unknown-model");
}

TEST_F(DeciderTest, RetryWithSameRequestIdReplaysTheAnswer) {
  SetBudget("search", 1'000'000'000, {{"team", "search"}});
  v1::CheckRequest request = Request("gpt-4.1", 100, 100);
  request.set_request_id("req-1");
  v1::CheckResponse first;
  v1::CheckResponse second;
  ASSERT_TRUE(decider_->Check(request, &first).ok());
  ASSERT_TRUE(decider_->Check(request, &second).ok());
  EXPECT_EQ(second.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(second.reservation_id(), first.reservation_id());
  EXPECT_EQ(second.estimated_cost_nanos(), first.estimated_cost_nanos());
  auto standings = ledger_->Standings("search", "", clock_.Now());
  ASSERT_TRUE(standings.ok());
  EXPECT_EQ((*standings)[0].held_nanos, first.estimated_cost_nanos());
}

TEST_F(DeciderTest, ReportChargesThePricesTheCheckSaw) {
  SetBudget("search", 1'000'000'000, {{"team", "search"}});
  v1::CheckResponse check;
  ASSERT_TRUE(decider_->Check(Request("gpt-4.1", 1200, 2000), &check).ok());
  policies_->Activate(Compile("reject", "80.00"));  // a price change

  v1::ReportRequest report;
  report.set_reservation_id(check.reservation_id());
  report.mutable_usage()->set_input_tokens(1200);
  report.mutable_usage()->set_cached_input_tokens(200);
  report.mutable_usage()->set_output_tokens(2000);
  v1::ReportResponse response;
  ASSERT_TRUE(decider_->Report(report, &response).ok());
  // 1000 x $2.00 + 200 x $0.50 + 2000 x $8.00, per 1M tokens.
  EXPECT_EQ(response.cost_nanos(), 2'000'000 + 100'000 + 16'000'000);
  EXPECT_FALSE(response.already_reported());

  v1::ReportResponse again;
  report.mutable_usage()->set_output_tokens(1);
  ASSERT_TRUE(decider_->Report(report, &again).ok());
  EXPECT_TRUE(again.already_reported());
  EXPECT_EQ(again.cost_nanos(), response.cost_nanos());
}

// A pool on gpt-4.1; gpt-4.1-mini takes no slot.
std::shared_ptr<const policy::CompiledPolicy> CompilePoolPolicy() {
  std::string text = kPolicy;
  text.replace(text.find("UNKNOWN_ACTION"), 14, "reject");
  text +=
      "concurrency:\n"
      "  - name: gpt41-slots\n"
      "    when: request.model == \"gpt-4.1\"\n"
      "    max_in_flight: 100\n";
  return CompileText(text);
}

// Decision 025: a restart gives back exactly the pool slots of the calls in
// flight, and reads only the holds of the calls that took one (the Check
// asks the ledger to visit those, and only those, on restore).
TEST_F(DeciderTest, RestartRestoresThePoolSlotsReadingOnlyTheCallsThatTookOne) {
  SetBudget("search", 1'000'000'000'000, {{"team", "search"}});
  policies_->Activate(CompilePoolPolicy());
  std::vector<std::string> open_with_slot;
  size_t open = 0;
  v1::CheckRequest first_pool_call;
  for (int i = 0; i < 60; ++i) {
    const bool pooled = i % 4 == 0;  // 15 calls take a slot, 45 do not
    v1::CheckRequest request =
        Request(pooled ? "gpt-4.1" : "gpt-4.1-mini", 100, 100);
    request.set_request_id(absl::StrCat("req-", i));
    v1::CheckResponse check;
    ASSERT_TRUE(decider_->Check(request, &check).ok());
    ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW) << i;
    if (i == 0) first_pool_call = request;
    if (i % 3 == 0) {  // reported: 5 of the pooled calls, 15 of the others
      v1::ReportRequest report;
      report.set_reservation_id(check.reservation_id());
      report.mutable_usage()->set_input_tokens(100);
      report.mutable_usage()->set_output_tokens(50);
      v1::ReportResponse reported;
      ASSERT_TRUE(decider_->Report(report, &reported).ok());
    } else {
      ++open;
      if (pooled) open_with_slot.push_back(check.reservation_id());
    }
  }
  // A retry of a reported call replays its answer and takes no new slot.
  v1::CheckResponse replay;
  ASSERT_TRUE(decider_->Check(first_pool_call, &replay).ok());
  const int64_t in_flight = decider_->pools().in_flight("gpt41-slots");
  ASSERT_EQ(in_flight, 10);
  ASSERT_EQ(open_with_slot.size(), 10u);
  ASSERT_EQ(ledger_->open_holds(), open);

  ASSERT_NO_FATAL_FAILURE(OpenLedgerAndDecider());
  ASSERT_TRUE(decider_->RestoreInFlight().ok());
  EXPECT_EQ(decider_->pools().in_flight("gpt41-slots"), in_flight);
  EXPECT_EQ(ledger_->open_holds(), open);
  std::vector<std::string> visited;
  ledger_->ForEachOpenHold([&](const storage::HoldView& hold) {
    visited.push_back(hold.reservation_id);
  });
  EXPECT_THAT(visited, UnorderedElementsAreArray(open_with_slot));
}

TEST_F(DeciderTest, BadRequestsNameTheField) {
  struct Case {
    std::function<void(v1::CheckRequest&)> spoil;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_model(""); }, "model"},
      {[](auto& r) { r.set_input_tokens(-1); }, "input_tokens"},
      {[](auto& r) { r.set_max_output_tokens(100'000'001); },
       "max_output_tokens"},
      {[](auto& r) { r.set_request_id(std::string(129, 'x')); }, "request_id"},
      {[](auto& r) {
         for (int i = 0; i < 33; ++i) {
           (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
         }
       },
       "labels"},
      {[](auto& r) { (*r.mutable_labels())[std::string(65, 'k')] = "v"; },
       "labels"},
      {[](auto& r) { (*r.mutable_labels())["team"] = std::string(257, 'v'); },
       "labels[team]"},
      {[](auto& r) { r.set_attempt(-1); }, "attempt"},
  };
  for (const Case& c : cases) {
    v1::CheckRequest request = Request("gpt-4.1", 10, 10);
    c.spoil(request);
    v1::CheckResponse response;
    absl::Status status = decider_->Check(request, &response);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field + ":"));
  }
  EXPECT_EQ(ledger_->open_holds(), 0u);
}

TEST_F(DeciderTest, BadReportsNameTheField) {
  v1::ReportRequest report;
  v1::ReportResponse response;
  EXPECT_THAT(decider_->Report(report, &response).message(),
              HasSubstr("reservation_id:"));
  report.set_reservation_id("r-unknown");
  report.mutable_usage()->set_input_tokens(10);
  report.mutable_usage()->set_cached_input_tokens(11);
  EXPECT_THAT(decider_->Report(report, &response).message(),
              HasSubstr("usage.cached_input_tokens:"));
  report.mutable_usage()->set_cached_input_tokens(0);
  absl::Status unknown = decider_->Report(report, &response);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.message(), HasSubstr("r-unknown"));
}

// --- Shadow mode -----------------------------------------------------------

// kPolicy (unknown_model: reject) with more rules appended.
std::shared_ptr<const policy::CompiledPolicy> CompileWith(
    absl::string_view rules, absl::string_view unknown_action = "reject") {
  std::string text = kPolicy;
  text.replace(text.find("UNKNOWN_ACTION"), 14, std::string(unknown_action));
  absl::StrAppend(&text, rules);
  return CompileText(text);
}

class DeciderShadowTest : public DeciderTest {
 protected:
  // Runs `shadow` beside the active policy; returns its run.
  std::shared_ptr<const ShadowRun> StartShadow(
      std::shared_ptr<const policy::CompiledPolicy> shadow,
      size_t capacity = kShadowSampleCapacity) {
    auto run = std::make_shared<const ShadowRun>(std::move(shadow),
                                                 policies_->Active()->version(),
                                                 clock_.Now(), capacity);
    policies_->SetShadow(run);
    return run;
  }

  // Check, expecting OK.
  v1::CheckResponse CheckOk(const v1::CheckRequest& request) {
    v1::CheckResponse response;
    const absl::Status status = decider_->Check(request, &response);
    EXPECT_TRUE(status.ok()) << status;
    return response;
  }
};

TEST_F(DeciderShadowTest, ANewPriceIsCountedAndSampledAnswersUnchanged) {
  SetBudget("search", 1'000'000'000, {{"team", "search"}});
  const std::string active_version = policies_->Active()->version();
  const std::shared_ptr<const ShadowRun> run =
      StartShadow(Compile("reject", "16.00"));

  v1::CheckRequest request = Request("gpt-4.1", 1200, 0);
  request.set_request_id("req-1");
  const v1::CheckResponse first = CheckOk(request);
  // The real answer is the active policy's: its version, price and hold.
  EXPECT_EQ(first.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(first.policy_version(), active_version);
  EXPECT_EQ(first.estimated_cost_nanos(), 10'400'000);
  ASSERT_EQ(first.budgets_size(), 1);
  EXPECT_EQ(first.budgets(0).held_nanos(), 10'400'000);
  // A model whose price did not change answers the same under both.
  const v1::CheckResponse mini = CheckOk(Request("gpt-4.1-mini", 1200, 0));
  EXPECT_EQ(mini.verdict(), v1::VERDICT_ALLOW);

  const ShadowSnapshot snapshot = run->stats().Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 2);
  EXPECT_EQ(snapshot.counts.differing, 1);
  EXPECT_THAT(snapshot.counts.by_kind, ElementsAre(0, 0, 0, 0, 1, 0));
  ASSERT_EQ(snapshot.samples.size(), 1u);
  const ShadowSample& sample = snapshot.samples[0];
  EXPECT_EQ(sample.request_id, "req-1");
  EXPECT_EQ(sample.model, "gpt-4.1");
  EXPECT_EQ(sample.time, clock_.Now());
  EXPECT_THAT(sample.labels, ElementsAre(std::pair<std::string, std::string>(
                                 "team", "search")));
  EXPECT_EQ(sample.differences, kShadowEstimatedCost);
  EXPECT_EQ(sample.active.estimated_cost_nanos, 10'400'000);
  // 1200 x $2.00/1M + 1000 x $16.00/1M
  EXPECT_EQ(sample.shadow.estimated_cost_nanos, 18'400'000);
  EXPECT_TRUE(sample.shadow.allowed);
  EXPECT_EQ(sample.shadow.model, "gpt-4.1");
}

TEST_F(DeciderShadowTest, AShadowDenialNeitherDeniesNorSkipsTheReservation) {
  SetBudget("search", 1'000'000'000, {{"team", "search"}});
  const std::shared_ptr<const ShadowRun> run = StartShadow(CompileWith(R"yaml(
deny:
  - name: no-search-on-gpt41
    when: request.labels.team == "search" && request.model == "gpt-4.1"
    message: "search uses gpt-4.1-mini"
)yaml"));
  const v1::CheckResponse response = CheckOk(Request("gpt-4.1", 100, 100));
  EXPECT_EQ(response.verdict(), v1::VERDICT_ALLOW);
  EXPECT_FALSE(response.reservation_id().empty());
  EXPECT_EQ(response.reasons_size(), 0);
  EXPECT_EQ(ledger_->open_holds(), 1u);

  const ShadowSnapshot snapshot = run->stats().Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 1);
  EXPECT_EQ(snapshot.counts.differing, 1);
  EXPECT_THAT(snapshot.counts.by_kind, ElementsAre(1, 0, 0, 0, 0, 0));
  ASSERT_EQ(snapshot.samples.size(), 1u);
  EXPECT_TRUE(snapshot.samples[0].active.allowed);
  EXPECT_FALSE(snapshot.samples[0].shadow.allowed);
  EXPECT_EQ(snapshot.samples[0].shadow.deny_rule, "deny:no-search-on-gpt41");
  EXPECT_EQ(snapshot.samples[0].shadow.deny_message,
            "search uses gpt-4.1-mini");
}

TEST_F(DeciderShadowTest, ErrorsOnEitherSideAreDifferencesNotFailures) {
  // The shadow denies unknown models where the active policy rejects them.
  const std::shared_ptr<const ShadowRun> run = StartShadow(Compile("deny"));
  v1::CheckResponse response;
  const absl::Status status =
      decider_->Check(Request("gpt-9", 10, 10), &response);
  // The real answer is still the active policy's error.
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);

  const ShadowSnapshot snapshot = run->stats().Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 1);
  EXPECT_THAT(snapshot.counts.by_kind, ElementsAre(0, 0, 0, 0, 0, 1));
  ASSERT_EQ(snapshot.samples.size(), 1u);
  EXPECT_THAT(snapshot.samples[0].active.error,
              HasSubstr("INVALID_ARGUMENT: "));
  EXPECT_EQ(snapshot.samples[0].shadow.error, "");
  EXPECT_EQ(snapshot.samples[0].shadow.deny_rule, "unknown-model");

  // And the other way round: the real answer is the active policy's denial.
  policies_->Activate(Compile("deny"));
  const std::shared_ptr<const ShadowRun> back = StartShadow(Compile("reject"));
  response.Clear();
  ASSERT_TRUE(decider_->Check(Request("gpt-9", 10, 10), &response).ok());
  EXPECT_EQ(response.verdict(), v1::VERDICT_DENY);
  EXPECT_EQ(back->stats().Snapshot().counts.by_kind[5], 1);
}

TEST_F(DeciderShadowTest, ShadowSeesTheLedgerAsTheActivePlanDid) {
  // $0.015: the first call's hold ($0.0104) leaves 31% remaining.
  SetBudget("search", 15'000'000, {{"team", "search"}});
  const std::shared_ptr<const ShadowRun> run = StartShadow(CompileWith(R"yaml(
spend_slos:
  - name: half-committed
    budget: search
    when: budget.remaining / budget.amount < 50%
    then: { cap_output_tokens: 100 }
)yaml"));
  // Before the first call nothing is held: the SLO does not fire, even
  // though this Check's own hold takes the budget below 50%.
  EXPECT_EQ(CheckOk(Request("gpt-4.1", 1200, 1000)).verdict(),
            v1::VERDICT_ALLOW);
  EXPECT_EQ(run->stats().Snapshot().counts.differing, 0);
  // The second call sees 31% remaining: the shadow would cap it. The real
  // answer is a budget denial (the active policy has no SLO).
  EXPECT_EQ(CheckOk(Request("gpt-4.1", 1200, 1000)).verdict(),
            v1::VERDICT_DENY);
  const ShadowSnapshot snapshot = run->stats().Snapshot();
  EXPECT_EQ(snapshot.counts.compared, 2);
  EXPECT_EQ(snapshot.counts.differing, 1);
  ASSERT_EQ(snapshot.samples.size(), 1u);
  EXPECT_EQ(snapshot.samples[0].differences,
            kShadowMaxOutputTokens | kShadowEstimatedCost);
  EXPECT_EQ(snapshot.samples[0].active.max_output_tokens, 1000);
  EXPECT_EQ(snapshot.samples[0].shadow.max_output_tokens, 100);
}

TEST_F(DeciderShadowTest, ChecksUnderAnotherActiveVersionAreNotCompared) {
  const std::shared_ptr<const ShadowRun> run =
      StartShadow(Compile("reject", "16.00"));
  policies_->Activate(Compile("reject", "32.00"));
  CheckOk(Request("gpt-4.1", 10, 10));
  EXPECT_EQ(run->stats().Snapshot().counts.compared, 0);

  policies_->SetShadow(nullptr);
  CheckOk(Request("gpt-4.1", 10, 10));
  EXPECT_EQ(policies_->Shadow(), nullptr);
}

TEST_F(DeciderShadowTest, SamplesAreBounded) {
  const std::shared_ptr<const ShadowRun> run =
      StartShadow(Compile("reject", "16.00"), /*capacity=*/3);
  for (int i = 0; i < 5; ++i) {
    v1::CheckRequest request = Request("gpt-4.1", 10, 10);
    request.set_request_id(absl::StrCat("r", i));
    request.set_dry_run(true);
    CheckOk(request);
  }
  const ShadowSnapshot snapshot = run->stats().Snapshot();
  EXPECT_EQ(snapshot.counts.differing, 5);
  ASSERT_EQ(snapshot.samples.size(), 3u);
  EXPECT_EQ(snapshot.samples[0].request_id, "r4");
  EXPECT_EQ(snapshot.samples[2].request_id, "r2");
}

}  // namespace
}  // namespace bursar::server
