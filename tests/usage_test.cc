// Usage rollups, KPIs and signals on a real bursard: GetUsage totals equal
// the sum of the reported costs to the nano (random traffic, grouped several
// ways, across a restart); KPI windows move with the fake clock; signals
// steer a route and survive a restart; bad requests name their field; and
// `bursarctl usage` prints the same figures as a table, CSV and JSON.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/money.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = Utc(2026, 3, 16, 9, 0);

// The policy under test: quality-escalation (attribution by team, feature
// and user) plus an SLO on the last hour's spend.
constexpr char kKpiPolicy[] = R"yaml(apiVersion: bursar.dev/v1
kind: Policy
metadata: { name: kpi-test }
pricing:
  gpt-4.1:      { provider: openai, input: "2.00", output: "8.00" }
  gpt-4.1-mini: { provider: openai, input: "0.40", output: "1.60" }
attribution: { dimensions: [team, feature, user], max_values_per_dimension: 3 }
routes:
  - name: escalate
    when: request.labels.feature == "support" && signal["golden-accuracy"] < 95%
    route_to: gpt-4.1
spend_slos:
  - name: hot-hour
    budget: team-support
    when: kpi.spend_1h > $0.50
    then: { cap_output_tokens: 10 }
)yaml";

class UsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"), kStart);
    WriteFile(dir_.Sub("policy.yaml"), kKpiPolicy);
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.clock_file = clock_->path();
    options.policy_dir = dir_.path();
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
    SetBudget(MakeBudget("team-support", {{"team", "support"}},
                         v1::PERIOD_MONTH, 1'000'000'000'000));
    SetBudget(MakeBudget("per-user", {}, v1::PERIOD_MONTH, 1'000'000'000'000,
                         "", "user"));
  }

  void SetBudget(const v1::Budget& budget) {
    v1::SetBudgetRequest request;
    *request.mutable_budget() = budget;
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server_->SetBudget(request, &response));
  }

  // One call, reported with `outcome`; returns its cost.
  int64_t Spend(const std::string& model,
                std::vector<std::pair<std::string, std::string>> labels,
                int64_t input, int64_t output,
                v1::Outcome outcome = v1::OUTCOME_SUCCESS) {
    v1::CheckResponse checked;
    EXPECT_TRUE(
        server_->Check(MakeCheck(model, input, output, labels), &checked).ok());
    EXPECT_EQ(checked.verdict(), v1::VERDICT_ALLOW);
    v1::ReportRequest report =
        MakeReport(checked.reservation_id(), input, 0, output);
    report.set_outcome(outcome);
    report.mutable_latency()->set_seconds(1);
    v1::ReportResponse reported;
    EXPECT_TRUE(server_->Report(report, &reported).ok());
    return reported.cost_nanos();
  }

  grpc::Status GetUsage(const v1::GetUsageRequest& request,
                        v1::GetUsageResponse* response) {
    return server_->admin().GetUsage(Call().get(), request, response);
  }

  v1::GetUsageResponse Usage(std::vector<std::string> group_by,
                             std::map<std::string, std::string> filter = {},
                             int top_n = 0) {
    v1::GetUsageRequest request;
    for (const std::string& g : group_by) request.add_group_by(g);
    for (const auto& [k, v] : filter) (*request.mutable_filter())[k] = v;
    request.set_start("2026-03-16T00:00:00Z");
    request.set_end("2026-03-17T00:00:00Z");
    request.set_top_n(top_n);
    v1::GetUsageResponse response;
    const grpc::Status status = GetUsage(request, &response);
    EXPECT_TRUE(status.ok()) << StatusText(status);
    return response;
  }

  // group values joined by "|" -> cost.
  static std::map<std::string, int64_t> Costs(
      const v1::GetUsageResponse& response) {
    std::map<std::string, int64_t> costs;
    for (const v1::UsageRow& row : response.rows()) {
      costs[absl::StrJoin(row.group(), "|")] = row.cost_nanos();
    }
    return costs;
  }

  grpc::Status ReportSignal(const std::string& name, double value,
                            v1::ReportSignalResponse* response) {
    v1::ReportSignalRequest request;
    request.mutable_signal()->set_name(name);
    request.mutable_signal()->set_value(value);
    return server_->admin().ReportSignal(Call().get(), request, response);
  }

  TempDir dir_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(UsageTest, TotalsEqualReportedCostsToTheNanoAcrossARestart) {
  std::mt19937_64 random(2026);
  const std::vector<std::string> teams = {"support", "search", "ads"};
  const std::vector<std::string> features = {"chat", "summary"};
  const std::vector<std::string> users = {"u1", "u2", "u3", "u4", "u5"};
  const std::vector<std::string> models = {"gpt-4.1", "gpt-4.1-mini"};
  std::map<std::string, int64_t> by_team, by_model, by_team_feature;
  std::map<std::string, int64_t> by_budget;
  int64_t total = 0;
  int64_t requests = 0, retries = 0, failures = 0;
  for (int i = 0; i < 120; ++i) {
    if (i == 60) ASSERT_TRUE(server_->CrashAndRestart());
    clock_->Advance(absl::Minutes(static_cast<int>(random() % 5)));
    const std::string team = teams[random() % teams.size()];
    const std::string feature = features[random() % features.size()];
    const std::string user = users[random() % users.size()];
    const std::string model = models[random() % models.size()];
    const int64_t input = static_cast<int64_t>(random() % 5000) + 1;
    const int64_t output = static_cast<int64_t>(random() % 3000);
    const auto outcome = static_cast<v1::Outcome>(1 + random() % 3);
    const int64_t cost =
        Spend(model, {{"team", team}, {"feature", feature}, {"user", user}},
              input, output, outcome);
    total += cost;
    ++requests;
    retries += outcome == v1::OUTCOME_RETRY;
    failures += outcome == v1::OUTCOME_FAILURE;
    by_team[team] += cost;
    by_model[model] += cost;
    by_team_feature[absl::StrCat(team, "|", feature)] += cost;
    by_budget["per-user"] += cost;
    if (team == "support") by_budget["team-support"] += cost;
  }
  ASSERT_GT(total, 0);

  const v1::GetUsageResponse all = Usage({});
  EXPECT_EQ(all.total().cost_nanos(), total);
  EXPECT_EQ(all.total().requests(), requests);
  EXPECT_EQ(all.total().retries(), retries);
  EXPECT_EQ(all.total().failures(), failures);
  ASSERT_EQ(all.rows_size(), 1);
  EXPECT_EQ(all.rows(0).cost_nanos(), total);

  EXPECT_EQ(Costs(Usage({"team"})), by_team);
  EXPECT_EQ(Costs(Usage({"model"})), by_model);
  EXPECT_EQ(Costs(Usage({"team", "feature"})), by_team_feature);
  EXPECT_EQ(Usage({"team", "feature"}).total().cost_nanos(), total);
  EXPECT_EQ(Costs(Usage({"budget"})), by_budget);
  EXPECT_EQ(Usage({"provider"}).rows(0).group(0), "openai");

  // Users: bounded to 3 values per hour; every nano is still there.
  const v1::GetUsageResponse users_usage = Usage({"user"});
  EXPECT_EQ(users_usage.total().cost_nanos(), total);
  int64_t user_sum = 0;
  for (const v1::UsageRow& row : users_usage.rows()) {
    user_sum += row.cost_nanos();
  }
  EXPECT_EQ(user_sum, total);
  EXPECT_EQ(Costs(users_usage).count("other"), 1u);

  // Filter and top N.
  const v1::GetUsageResponse support =
      Usage({"feature"}, {{"team", "support"}});
  EXPECT_EQ(support.total().cost_nanos(), by_team["support"]);
  const v1::GetUsageResponse top = Usage({"team"}, {}, 1);
  ASSERT_EQ(top.rows_size(), 1);
  EXPECT_EQ(top.rows_omitted(), 2);
  int64_t highest = 0;
  for (const auto& [team, cost] : by_team) highest = std::max(highest, cost);
  EXPECT_EQ(top.rows(0).cost_nanos(), highest);
  EXPECT_EQ(top.total().cost_nanos(), total);

  // bursarctl prints the same figures.
  const std::string common =
      "usage --since 2026-03-16T00:00:00Z --until "
      "2026-03-17T00:00:00Z --by team";
  const CliRun table = RunBursarctl(BURSARCTL_PATH, server_->address(), common);
  ASSERT_EQ(table.exit_status, 0) << table.output;
  EXPECT_THAT(table.output, HasSubstr("TEAM"));
  EXPECT_THAT(table.output, HasSubstr("TOTAL"));
  EXPECT_THAT(table.output, HasSubstr(absl::StrCat(
                                "$", ::bursar::policy::FormatUsdNanos(total))));
  const CliRun csv = RunBursarctl(BURSARCTL_PATH, server_->address(),
                                  absl::StrCat(common, " --csv"));
  ASSERT_EQ(csv.exit_status, 0) << csv.output;
  EXPECT_THAT(csv.output, HasSubstr("team,cost_usd,requests,"));
  EXPECT_THAT(csv.output,
              HasSubstr(absl::StrCat(
                  "support,",
                  ::bursar::policy::FormatUsdNanos(by_team["support"]), ",")));
  const CliRun json = RunBursarctl(BURSARCTL_PATH, server_->address(),
                                   absl::StrCat(common, " --json"));
  ASSERT_EQ(json.exit_status, 0) << json.output;
  EXPECT_THAT(json.output,
              HasSubstr(absl::StrCat("\"cost_nanos\": \"", total, "\"")));
  const CliRun bad =
      RunBursarctl(BURSARCTL_PATH, server_->address(),
                   "usage --since 2026-03-16T00:00:00Z --by tem");
  EXPECT_EQ(bad.exit_status, 1);
  EXPECT_THAT(bad.output, HasSubstr("group_by[0]"));
}

TEST_F(UsageTest, KpiWindowsFollowTheClock) {
  const std::vector<std::pair<std::string, std::string>> support = {
      {"team", "support"}, {"feature", "chat"}};
  // 10:10: $0.60 of gpt-4.1 output (75,000 tokens at $8/1M).
  clock_->Set(Utc(2026, 3, 16, 10, 10));
  // Spend without the team label is not the team's.
  EXPECT_EQ(Spend("gpt-4.1", {}, 0, 75'000), 600'000'000);
  EXPECT_EQ(Spend("gpt-4.1", support, 0, 75'000), 600'000'000);
  v1::CheckResponse checked;
  const v1::CheckRequest call = MakeCheck("gpt-4.1", 10, 1000, support);

  clock_->Set(Utc(2026, 3, 16, 10, 20));
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.max_output_tokens(), 10) << "spend_1h is $0.60";

  // 11:05: (10:05, 11:05] covers 55 of the 60 minutes of the 10:00 bucket:
  // $0.55.
  clock_->Set(Utc(2026, 3, 16, 11, 5));
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.max_output_tokens(), 10);

  // 11:30: half of it, $0.30.
  clock_->Set(Utc(2026, 3, 16, 11, 30));
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.max_output_tokens(), 1000);

  // Another team's budget is another scope.
  clock_->Set(Utc(2026, 3, 16, 10, 20));
  BURSAR_ASSERT_OK(server_->Check(
      MakeCheck("gpt-4.1", 10, 1000, {{"team", "ads"}}), &checked));
  EXPECT_EQ(checked.max_output_tokens(), 1000);
}

TEST_F(UsageTest, SignalsSteerARouteAndSurviveARestart) {
  const v1::CheckRequest call =
      MakeCheck("gpt-4.1-mini", 10, 100, {{"feature", "support"}});
  v1::CheckResponse checked;
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.model(), "gpt-4.1-mini") << "no signal yet";

  v1::ReportSignalResponse reported;
  BURSAR_ASSERT_OK(ReportSignal("golden-accuracy", 0.93, &reported));
  EXPECT_EQ(reported.signal().value(), 0.93);
  EXPECT_EQ(reported.signal().time(), "2026-03-16T09:00:00Z");
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.model(), "gpt-4.1");

  ASSERT_TRUE(server_->CrashAndRestart());
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.model(), "gpt-4.1") << "the signal is durable";
  v1::ListSignalsResponse listed;
  BURSAR_ASSERT_OK(server_->admin().ListSignals(
      Call().get(), v1::ListSignalsRequest(), &listed));
  ASSERT_EQ(listed.signals_size(), 1);
  EXPECT_EQ(listed.signals(0).name(), "golden-accuracy");

  BURSAR_ASSERT_OK(ReportSignal("golden-accuracy", 0.97, &reported));
  BURSAR_ASSERT_OK(server_->Check(call, &checked));
  EXPECT_EQ(checked.model(), "gpt-4.1-mini");
}

TEST_F(UsageTest, ExpiredReservationsAreCounted) {
  v1::CheckResponse checked;
  BURSAR_ASSERT_OK(server_->Check(
      MakeCheck("gpt-4.1", 1000, 1000, {{"team", "support"}}), &checked));
  clock_->Advance(absl::Minutes(11));  // past the 10-minute TTL
  // The expirer runs every second; wait for the count, not a time.
  v1::GetUsageResponse usage;
  for (int i = 0; i < 200 && usage.total().expired() == 0; ++i) {
    usage = Usage({"team"});
    if (usage.total().expired() == 0) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(usage.total().expired(), 1);
  EXPECT_EQ(usage.total().expired_estimate_nanos(),
            checked.estimated_cost_nanos());
  EXPECT_EQ(usage.total().requests(), 0);
}

TEST_F(UsageTest, BadRequestsNameTheField) {
  struct Case {
    std::string name;
    v1::GetUsageRequest request;
    std::string field;
  };
  std::vector<Case> cases;
  auto base = [] {
    v1::GetUsageRequest r;
    r.set_start("2026-03-16T00:00:00Z");
    return r;
  };
  {
    Case c{"unknown dimension", base(), "group_by[1]: \"color\""};
    c.request.add_group_by("team");
    c.request.add_group_by("color");
    cases.push_back(c);
  }
  {
    Case c{"twice", base(), "group_by[1]: \"team\" is listed twice"};
    c.request.add_group_by("team");
    c.request.add_group_by("team");
    cases.push_back(c);
  }
  {
    Case c{"instance alone", base(), "group_by: \"instance\""};
    c.request.add_group_by("instance");
    cases.push_back(c);
  }
  {
    Case c{"filter", base(), "filter[colour]"};
    (*c.request.mutable_filter())["colour"] = "red";
    cases.push_back(c);
  }
  {
    Case c{"no start", base(), "start: required"};
    c.request.clear_start();
    cases.push_back(c);
  }
  {
    Case c{"bad start", base(), "start: \"yesterday\""};
    c.request.set_start("yesterday");
    cases.push_back(c);
  }
  {
    Case c{"bad end", base(), "end: \"2026-13-01\""};
    c.request.set_end("2026-13-01");
    cases.push_back(c);
  }
  {
    Case c{"end first", base(), "end: 2026-03-15T00:00:00Z is not after"};
    c.request.set_end("2026-03-15T00:00:00Z");
    cases.push_back(c);
  }
  {
    Case c{"too long", base(), "start: the range is longer than 400 days"};
    c.request.set_start("2020-01-01T00:00:00Z");
    cases.push_back(c);
  }
  {
    Case c{"top_n", base(), "top_n: -1 is negative"};
    c.request.set_top_n(-1);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    v1::GetUsageResponse response;
    const grpc::Status status = GetUsage(c.request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name;
    EXPECT_THAT(status.error_message(), HasSubstr(c.field)) << c.name;
  }

  struct SignalCase {
    std::string name;
    v1::ReportSignalRequest request;
    std::string field;
  };
  std::vector<SignalCase> signal_cases;
  auto signal = [] {
    v1::ReportSignalRequest r;
    r.mutable_signal()->set_name("golden-accuracy");
    r.mutable_signal()->set_value(0.9);
    return r;
  };
  signal_cases.push_back({"missing", v1::ReportSignalRequest(), "signal:"});
  {
    SignalCase c{"bad name", signal(), "signal.name"};
    c.request.mutable_signal()->set_name("golden accuracy");
    signal_cases.push_back(c);
  }
  {
    SignalCase c{"empty name", signal(), "signal.name"};
    c.request.mutable_signal()->set_name("");
    signal_cases.push_back(c);
  }
  {
    SignalCase c{"NaN", signal(), "signal.value: must be a finite number"};
    c.request.mutable_signal()->set_value(std::nan(""));
    signal_cases.push_back(c);
  }
  {
    SignalCase c{"scope", signal(), "signal.scope"};
    c.request.mutable_signal()->set_scope(std::string(300, 's'));
    signal_cases.push_back(c);
  }
  {
    SignalCase c{"time", signal(), "signal.time"};
    c.request.mutable_signal()->set_time("now");
    signal_cases.push_back(c);
  }
  {
    SignalCase c{"reported_by", signal(), "signal.reported_by"};
    c.request.mutable_signal()->set_reported_by("me");
    signal_cases.push_back(c);
  }
  for (const SignalCase& c : signal_cases) {
    v1::ReportSignalResponse response;
    const grpc::Status status =
        server_->admin().ReportSignal(Call().get(), c.request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name;
    EXPECT_THAT(status.error_message(), HasSubstr(c.field)) << c.name;
  }
}

}  // namespace
}  // namespace bursar::testing
