// kill -9 loses nothing that was acknowledged: budgets, spend, holds, the
// audit log and idempotency all come back identical after a restart; under
// mixed concurrent load killed at random points, no acknowledged Report or
// budget change is lost, nothing is counted twice, and no hold or pool slot
// outlives its TTL.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::SizeIs;

// Everything a user can read back about the ledger.
struct Snapshot {
  v1::ListBudgetsResponse budgets;
  std::vector<v1::GetBudgetResponse> per_user;  // "per-user": alice, bob
  v1::ListAuditResponse audit;
};

// Equality of protos with maps, reporting the difference.
::testing::AssertionResult SameProto(const google::protobuf::Message& before,
                                     const google::protobuf::Message& after) {
  MessageDifferencer differencer;
  std::string diff;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(before, after)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "after restart: " << diff << "\nbefore:\n"
         << before.DebugString() << "after:\n"
         << after.DebugString();
}

class CrashTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"),
                                         Utc(2026, 3, 18, 15, 0, 0));
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.sync = GetParam();
    options.clock_file = clock_->path();
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
  }

  void SetBudget(const v1::Budget& budget, const std::string& reason) {
    v1::SetBudgetRequest request;
    *request.mutable_budget() = budget;
    request.set_actor("finance@example.com");
    request.set_reason(reason);
    v1::SetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->SetBudget(request, &response));
  }

  v1::GetBudgetResponse Budget(const std::string& name,
                               const std::string& instance = "") {
    v1::GetBudgetRequest request;
    request.set_name(name);
    request.set_instance(instance);
    v1::GetBudgetResponse response;
    BURSAR_EXPECT_OK(server_->GetBudget(request, &response));
    return response;
  }

  Snapshot Take() {
    Snapshot s;
    BURSAR_EXPECT_OK(server_->ListBudgets(&s.budgets));
    s.per_user.push_back(Budget("per-user", "alice"));
    s.per_user.push_back(Budget("per-user", "bob"));
    BURSAR_EXPECT_OK(server_->ListAudit(1000, &s.audit));
    return s;
  }

  TempDir dir_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_P(CrashTest, Kill9LosesNothingAcknowledged) {
  SetBudget(
      MakeBudget("org", {}, v1::PERIOD_MONTH, 100'000'000'000, "Europe/Berlin"),
      "FY26 org budget");
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_DAY,
                       10'000'000'000, "America/New_York"),
            "search team daily cap");
  SetBudget(MakeBudget("per-user", {{"team", "search"}}, v1::PERIOD_WEEK,
                       5'000'000'000, "UTC", "user"),
            "per-user weekly cap");

  // Five acknowledged calls, each with a request_id.
  struct Call {
    std::string request_id;
    std::string reservation_id;
    int64_t cost_nanos;
  };
  std::vector<Call> calls;
  for (int i = 0; i < 5; ++i) {
    const std::string user = i % 2 == 0 ? "alice" : "bob";
    v1::CheckResponse check;
    const std::string request_id = "call-" + std::to_string(i);
    BURSAR_ASSERT_OK(server_->Check(
        MakeCheck(i < 3 ? "gpt-4.1" : "gpt-4.1-mini", 1'000 + 100 * i, 800,
                  {{"team", "search"}, {"user", user}}, request_id),
        &check));
    ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
    v1::ReportResponse report;
    BURSAR_ASSERT_OK(server_->Report(
        MakeReport(check.reservation_id(), 900 + 100 * i, 50 * i, 300 + 40 * i),
        &report));
    ASSERT_GT(report.cost_nanos(), 0);
    calls.push_back({request_id, check.reservation_id(), report.cost_nanos()});
  }

  // Finance raises the team's daily cap.
  SetBudget(MakeBudget("team-search", {{"team", "search"}}, v1::PERIOD_DAY,
                       25'000'000'000, "America/New_York"),
            "launch week");

  // One call is still in flight when the server dies.
  v1::CheckResponse open;
  BURSAR_ASSERT_OK(server_->Check(
      MakeCheck("gpt-4.1", 2'000, 1'000, {{"team", "search"}, {"user", "bob"}},
                "open-call"),
      &open));
  ASSERT_EQ(open.verdict(), v1::VERDICT_ALLOW);
  ASSERT_FALSE(open.reservation_id().empty());

  const Snapshot before = Take();
  ASSERT_THAT(before.budgets.budgets(), SizeIs(3));
  const v1::GetBudgetResponse team_before = Budget("team-search");
  EXPECT_EQ(team_before.budget().amount_nanos(), 25'000'000'000);
  EXPECT_EQ(team_before.held_nanos(), open.estimated_cost_nanos());
  int64_t spent = 0;
  for (const Call& call : calls) spent += call.cost_nanos;
  EXPECT_EQ(team_before.spent_nanos(), spent);
  // The three budgets, the raise, and the first start storing --policy_dir
  // as the first policy version.
  ASSERT_THAT(before.audit.records(), SizeIs(5));

  ASSERT_TRUE(server_->CrashAndRestart());

  const Snapshot after = Take();
  EXPECT_TRUE(SameProto(before.budgets, after.budgets));
  ASSERT_THAT(after.per_user, SizeIs(2));
  EXPECT_TRUE(SameProto(before.per_user[0], after.per_user[0]));
  EXPECT_TRUE(SameProto(before.per_user[1], after.per_user[1]));
  EXPECT_TRUE(SameProto(before.audit, after.audit));
  EXPECT_EQ(Budget("team-search").budget().amount_nanos(), 25'000'000'000);
  EXPECT_EQ(after.audit.records(0).action(), "budget.set");
  EXPECT_EQ(after.audit.records(0).reason(), "launch week");

  // A gateway retrying the open call's Check gets the same reservation, and
  // it is held once, not twice.
  v1::CheckResponse replay;
  BURSAR_ASSERT_OK(server_->Check(
      MakeCheck("gpt-4.1", 2'000, 1'000, {{"team", "search"}, {"user", "bob"}},
                "open-call"),
      &replay));
  EXPECT_EQ(replay.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(replay.reservation_id(), open.reservation_id());
  EXPECT_EQ(replay.estimated_cost_nanos(), open.estimated_cost_nanos());
  EXPECT_EQ(Budget("team-search").held_nanos(), open.estimated_cost_nanos());

  // So does a retry of a call that was already settled.
  v1::CheckResponse settled_replay;
  BURSAR_ASSERT_OK(server_->Check(
      MakeCheck("gpt-4.1", 1'000, 800, {{"team", "search"}, {"user", "alice"}},
                calls[0].request_id),
      &settled_replay));
  EXPECT_EQ(settled_replay.reservation_id(), calls[0].reservation_id);

  // Reports acknowledged before the crash stay reported.
  v1::ReportResponse again;
  BURSAR_ASSERT_OK(
      server_->Report(MakeReport(calls[1].reservation_id, 1, 0, 1), &again));
  EXPECT_TRUE(again.already_reported());
  EXPECT_EQ(again.cost_nanos(), calls[1].cost_nanos);

  // The open reservation can still be reported, and settles exactly.
  v1::ReportResponse late;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(open.reservation_id(), 2'000, 500, 600), &late));
  EXPECT_FALSE(late.already_reported());
  // gpt-4.1: 1,500 × 2,000 + 500 × 500 + 600 × 8,000 nanos.
  EXPECT_EQ(late.cost_nanos(), 3'000'000 + 250'000 + 4'800'000);
  const v1::GetBudgetResponse team_after = Budget("team-search");
  EXPECT_EQ(team_after.held_nanos(), 0);
  EXPECT_EQ(team_after.spent_nanos(), spent + late.cost_nanos());

  // And that settlement survives a second crash too.
  ASSERT_TRUE(server_->CrashAndRestart());
  const v1::GetBudgetResponse team_final = Budget("team-search");
  EXPECT_EQ(team_final.held_nanos(), 0);
  EXPECT_EQ(team_final.spent_nanos(), spent + late.cost_nanos());
  EXPECT_EQ(Budget("per-user", "bob").spent_nanos(),
            team_before.spent_nanos() - before.per_user[0].spent_nanos() +
                late.cost_nanos());
}

// Gateways keep calling while bursard is killed: every Report that was
// acknowledged is there after the restart, and the spend is exactly the sum
// of the reported costs.
TEST_P(CrashTest, Kill9UnderLoadKeepsEveryAcknowledgedReport) {
  SetBudget(MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000'000),
            "big enough");
  constexpr int kThreads = 8;
  constexpr int kReportsBeforeKill = 100;
  // gpt-4.1, 1,000 in / 500 out.
  constexpr int64_t kEstimateNanos = 6'000'000;

  struct Call {
    std::string reservation_id;
    int64_t output_tokens = 0;
    bool report_acknowledged = false;
    int64_t cost_nanos = 0;
  };
  std::vector<std::vector<Call>> calls(kThreads);
  std::atomic<int> reports_acknowledged{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    // Each thread has its own stub on its own copy of the channel, so the
    // harness can drop its own when it kills the server.
    std::shared_ptr<grpc::Channel> channel = server_->channel();
    threads.emplace_back([&, t, channel] {
      std::unique_ptr<v1::Decision::Stub> stub = v1::Decision::NewStub(channel);
      for (int i = 0; !stop.load(); ++i) {
        grpc::ClientContext check_context;
        check_context.set_deadline(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10));
        v1::CheckResponse check;
        if (!stub->Check(&check_context, MakeCheck("gpt-4.1", 1'000, 500),
                         &check)
                 .ok()) {
          return;
        }
        if (check.verdict() != v1::VERDICT_ALLOW) return;
        Call call;
        call.reservation_id = check.reservation_id();
        call.output_tokens = (t * 37 + i * 11) % 500;
        grpc::ClientContext report_context;
        report_context.set_deadline(std::chrono::system_clock::now() +
                                    std::chrono::seconds(10));
        v1::ReportResponse report;
        const grpc::Status status = stub->Report(
            &report_context,
            MakeReport(call.reservation_id, 1'000, 0, call.output_tokens),
            &report);
        if (status.ok()) {
          call.report_acknowledged = true;
          call.cost_nanos = report.cost_nanos();
          reports_acknowledged.fetch_add(1);
        }
        calls[t].push_back(call);
        if (!status.ok()) return;
      }
    });
  }
  // Kill once enough work is acknowledged (bounded, in case calls stall).
  for (int i = 0; i < 2000 && reports_acknowledged.load() < kReportsBeforeKill;
       ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  server_->Kill9();
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  ASSERT_GE(reports_acknowledged.load(), kReportsBeforeKill);

  ASSERT_TRUE(server_->Start());
  // Settle everything we know of, with the same usage as before.
  int64_t total_cost = 0;
  int known = 0;
  for (const std::vector<Call>& thread_calls : calls) {
    for (const Call& call : thread_calls) {
      ++known;
      v1::ReportResponse report;
      BURSAR_ASSERT_OK(server_->Report(
          MakeReport(call.reservation_id, 1'000, 0, call.output_tokens),
          &report));
      if (call.report_acknowledged) {
        EXPECT_TRUE(report.already_reported()) << call.reservation_id;
        EXPECT_EQ(report.cost_nanos(), call.cost_nanos) << call.reservation_id;
      }
      EXPECT_EQ(report.cost_nanos(),
                1'000 * 2'000 + call.output_tokens * 8'000);
      total_cost += report.cost_nanos();
    }
  }
  ASSERT_GE(known, kReportsBeforeKill);
  const v1::GetBudgetResponse org = Budget("org");
  EXPECT_EQ(org.spent_nanos(), total_cost);
  // Only Checks whose answer was lost in the crash may still hold money.
  EXPECT_EQ(org.held_nanos() % kEstimateNanos, 0);
  EXPECT_LE(org.held_nanos(), kThreads * kEstimateNanos);
}

INSTANTIATE_TEST_SUITE_P(SyncModes, CrashTest,
                         ::testing::Values("group", "none"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// A policy with a concurrency pool on gpt-4.1, for the mixed-load crash test.
constexpr int kPoolSlots = 32;
std::string PoolPolicy() {
  return absl::StrCat(
      "apiVersion: bursar.dev/v1\nkind: Policy\nmetadata: { name: crash }\n"
      "pricing:\n"
      "  gpt-4.1: { provider: openai, input: \"2.00\", cached_input: \"0.50\", "
      "output: \"8.00\" }\n"
      "defaults: { max_output_tokens: 500, unknown_model: reject }\n"
      "concurrency:\n"
      "  - name: gpt41-slots\n"
      "    when: request.model == \"gpt-4.1\"\n"
      "    max_in_flight: ",
      kPoolSlots, "\n");
}

// Rounds of mixed load (gateways doing Check + Report, finance changing
// budgets), each ended by kill -9 after a random number of acknowledged
// operations; then: every acknowledged Report and budget change is there,
// every Report retried after the crash settles once (spent is exactly the
// sum of the costs, nothing counted twice), and once the TTL has passed no
// hold and no pool slot is left from the calls whose answers died with the
// server.
class CrashUnderMixedLoadTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashUnderMixedLoadTest, Kill9AtRandomPointsLosesNothing) {
  TempDir dir;
  ClockFile clock(dir.Sub("clock"), Utc(2026, 3, 18, 15, 0, 0));
  std::filesystem::create_directories(dir.Sub("policy"));
  WriteFile(dir.Sub("policy") + "/policy.yaml", PoolPolicy());
  BursardOptions options;
  options.data_dir = dir.Sub("data");
  options.policy_dir = dir.Sub("policy");
  options.sync = GetParam();
  options.clock_file = clock.path();
  options.extra_flags = {"--reservation_ttl=10m", "--expiry_interval=10ms",
                         "--settled_retention=1000h"};
  BursardProcess server(options, dir.path());
  ASSERT_TRUE(server.Start());
  {
    v1::SetBudgetRequest request;
    *request.mutable_budget() =
        MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000'000);
    v1::SetBudgetResponse response;
    BURSAR_ASSERT_OK(server.SetBudget(request, &response));
  }
  // gpt-4.1, 1,000 in / 500 out (the policy's default cap).
  constexpr int64_t kEstimateNanos = 6'000'000;
  constexpr int kGateways = 4;
  constexpr int kRounds = 4;

  struct LoadCall {
    std::string reservation_id;
    int64_t output_tokens = 0;
    bool report_acknowledged = false;
    int64_t cost_nanos = 0;
  };
  std::vector<LoadCall> calls;  // of every round, appended after each round
  // Finance's budget changes: per budget, the last acknowledged amount and
  // the one in flight when the server died (if any).
  struct BudgetChange {
    int64_t acknowledged = -1;
    int64_t in_flight = -1;
  };
  std::map<std::string, BudgetChange> changes;
  int lost_checks_bound = 0;  // Checks in flight at a kill, at most

  std::mt19937 rng(20261122);
  for (int round = 0; round < kRounds; ++round) {
    const int kill_after = std::uniform_int_distribution<int>(20, 200)(rng);
    std::atomic<int> acknowledged{0};
    std::atomic<bool> stop{false};
    std::vector<std::vector<LoadCall>> gateway_calls(kGateways);
    std::vector<std::thread> threads;
    for (int t = 0; t < kGateways; ++t) {
      std::shared_ptr<grpc::Channel> channel = server.channel();
      threads.emplace_back([&, t, channel] {
        std::unique_ptr<v1::Decision::Stub> stub =
            v1::Decision::NewStub(channel);
        for (int i = 0; !stop.load(); ++i) {
          v1::CheckResponse check;
          if (!stub->Check(Call().get(), MakeCheck("gpt-4.1", 1'000, 0), &check)
                   .ok()) {
            return;
          }
          if (check.verdict() != v1::VERDICT_ALLOW) continue;
          acknowledged.fetch_add(1);
          LoadCall call;
          call.reservation_id = check.reservation_id();
          call.output_tokens = (round * 131 + t * 37 + i * 11) % 500;
          // Every third call is left open: its hold must survive the crash
          // and be settled by the retry after it.
          if (i % 3 == 2) {
            gateway_calls[t].push_back(call);
            continue;
          }
          v1::ReportResponse report;
          const grpc::Status status = stub->Report(
              Call().get(),
              MakeReport(call.reservation_id, 1'000, 0, call.output_tokens),
              &report);
          if (status.ok()) {
            call.report_acknowledged = true;
            call.cost_nanos = report.cost_nanos();
            acknowledged.fetch_add(1);
          }
          gateway_calls[t].push_back(call);
          if (!status.ok()) return;
        }
      });
    }
    std::vector<std::pair<std::string, int64_t>> finance_log;
    std::pair<std::string, int64_t> finance_in_flight;
    {
      std::shared_ptr<grpc::Channel> channel = server.channel();
      threads.emplace_back([&, channel] {
        std::unique_ptr<v1::Admin::Stub> stub = v1::Admin::NewStub(channel);
        for (int i = 0; !stop.load(); ++i) {
          const std::string name = absl::StrCat("team-", i % 3);
          const int64_t amount = 1'000'000'000 + round * 100'000 + i;
          v1::SetBudgetRequest request;
          *request.mutable_budget() = MakeBudget(
              name, {{"team", name}}, v1::PERIOD_DAY, amount, "Europe/Berlin");
          request.set_actor("finance@example.com");
          finance_in_flight = {name, amount};
          v1::SetBudgetResponse response;
          if (!stub->SetBudget(Call().get(), request, &response).ok()) return;
          finance_log.emplace_back(name, amount);
          acknowledged.fetch_add(1);
        }
      });
    }
    // Kill after a random amount of acknowledged work (bounded wait, in
    // case the load stalls: the assertion below then fails).
    for (int i = 0; i < 4000 && acknowledged.load() < kill_after; ++i) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    server.Kill9();
    stop.store(true);
    for (std::thread& thread : threads) thread.join();
    ASSERT_GE(acknowledged.load(), kill_after) << server.Log();
    lost_checks_bound += kGateways;
    for (std::vector<LoadCall>& v : gateway_calls) {
      calls.insert(calls.end(), v.begin(), v.end());
    }
    for (const auto& [name, amount] : finance_log) {
      changes[name].acknowledged = amount;
      changes[name].in_flight = -1;
    }
    if (finance_log.empty() || finance_log.back() != finance_in_flight) {
      changes[finance_in_flight.first].in_flight = finance_in_flight.second;
    }
    ASSERT_TRUE(server.Start());

    // Every acknowledged budget change is there (or the one in flight,
    // which may have landed before its answer was lost).
    for (const auto& [name, change] : changes) {
      v1::GetBudgetRequest request;
      request.set_name(name);
      v1::GetBudgetResponse response;
      const grpc::Status status = server.GetBudget(request, &response);
      if (change.acknowledged < 0 &&
          status.error_code() == grpc::StatusCode::NOT_FOUND) {
        continue;
      }
      BURSAR_ASSERT_OK(status);
      const int64_t amount = response.budget().amount_nanos();
      EXPECT_TRUE(amount == change.acknowledged || amount == change.in_flight)
          << name << ": " << amount << ", acknowledged " << change.acknowledged
          << ", in flight " << change.in_flight;
    }
  }

  // Settle every call we know of, with the same usage as before: an
  // acknowledged Report is already there with the same cost; the others
  // settle now, once.
  int64_t total_cost = 0;
  for (const LoadCall& call : calls) {
    v1::ReportResponse report;
    BURSAR_ASSERT_OK(server.Report(
        MakeReport(call.reservation_id, 1'000, 0, call.output_tokens),
        &report));
    if (call.report_acknowledged) {
      EXPECT_TRUE(report.already_reported()) << call.reservation_id;
      EXPECT_EQ(report.cost_nanos(), call.cost_nanos) << call.reservation_id;
    }
    EXPECT_EQ(report.cost_nanos(), 1'000 * 2'000 + call.output_tokens * 8'000);
    EXPECT_FALSE(report.reported_after_expiry());
    total_cost += report.cost_nanos();
  }
  v1::GetBudgetRequest org_request;
  org_request.set_name("org");
  v1::GetBudgetResponse org;
  BURSAR_ASSERT_OK(server.GetBudget(org_request, &org));
  EXPECT_EQ(org.spent_nanos(), total_cost);
  // What is still held belongs to Checks whose answers died with a server.
  EXPECT_EQ(org.held_nanos() % kEstimateNanos, 0);
  EXPECT_LE(org.held_nanos(), lost_checks_bound * kEstimateNanos);
  const int64_t lost_holds = org.held_nanos() / kEstimateNanos;
  std::cout << calls.size() << " calls over " << kRounds << " crashes; "
            << lost_holds << " holds of Checks whose answer was lost"
            << std::endl;

  // Past the TTL those holds expire: charged at their estimate, flagged
  // unreported, and their pool slots are free again.
  clock.Advance(absl::Minutes(11));
  for (int i = 0; i < 2000; ++i) {
    BURSAR_ASSERT_OK(server.GetBudget(org_request, &org));
    if (org.held_nanos() == 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(org.held_nanos(), 0);
  EXPECT_EQ(org.spent_nanos(), total_cost + lost_holds * kEstimateNanos);
  ASSERT_EQ(org.instances_size(), 1);
  EXPECT_EQ(org.instances(0).unreported_nanos(), lost_holds * kEstimateNanos);
  // Every slot of the pool is free: kPoolSlots calls fit at once, one more
  // does not.
  for (int i = 0; i < kPoolSlots; ++i) {
    v1::CheckResponse check;
    BURSAR_ASSERT_OK(server.Check(MakeCheck("gpt-4.1", 1'000, 0), &check));
    ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW)
        << "slot " << i << " of " << kPoolSlots
        << " is taken: " << check.ShortDebugString();
  }
  v1::CheckResponse over;
  BURSAR_ASSERT_OK(server.Check(MakeCheck("gpt-4.1", 1'000, 0), &over));
  EXPECT_EQ(over.verdict(), v1::VERDICT_DENY);
}

INSTANTIATE_TEST_SUITE_P(SyncModes, CrashUnderMixedLoadTest,
                         ::testing::Values("group", "none"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace bursar::testing
