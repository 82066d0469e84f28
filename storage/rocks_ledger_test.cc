#include "storage/rocks_ledger.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/counter_set.h"
#include "storage/int64_add_operator.h"
#include "storage/ledger.h"
#include "storage/records.pb.h"
#include "storage/rocks_database.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

// Wednesday 2026-03-18 12:00:00 UTC.
const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 18, 12, 0, 0),
                                       absl::UTCTimeZone());

using ::bursar::testing::TempDir;

// Labels from string literals (LabelSet only views its strings).
LabelSet Labels(
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        entries) {
  LabelSet labels;
  for (const auto& [key, value] : entries) labels.Add(key, value);
  return labels;
}

BudgetSpec Budget(
    std::string name, int64_t amount_nanos,
    std::vector<std::pair<std::string, std::string>> selector = {},
    std::string per_label = "", Period period = Period::kDay,
    std::string timezone = "UTC") {
  BudgetSpec spec;
  spec.name = std::move(name);
  spec.amount_nanos = amount_nanos;
  spec.selector = std::move(selector);
  spec.per_label = std::move(per_label);
  spec.period = period;
  spec.timezone = std::move(timezone);
  return spec;
}

std::string Describe(const Standing& s) {
  return absl::StrFormat(
      "%s[%s] %s [%s, %s) amount=%d spent=%d held=%d unreported=%d", s.budget,
      s.instance, PeriodName(s.period), absl::FormatTime(s.period_start),
      absl::FormatTime(s.period_end), s.amount_nanos, s.spent_nanos,
      s.held_nanos, s.unreported_nanos);
}

std::vector<std::string> Describe(const std::vector<Standing>& standings) {
  std::vector<std::string> out;
  for (const Standing& s : standings) out.push_back(Describe(s));
  return out;
}

std::string Describe(const HoldView& h) {
  return absl::StrFormat("%s state=%d estimate=%d cost=%d expires=%s terms=%s",
                         h.reservation_id, static_cast<int>(h.state),
                         h.estimate_nanos, h.cost_nanos,
                         absl::FormatTime(h.expires_at), h.terms);
}

std::string Describe(const AuditEntry& e) {
  return absl::StrFormat("%s %s %s by=%s reason=%s before=%s after=%s",
                         absl::FormatTime(e.time), e.action, e.target, e.actor,
                         e.reason,
                         e.before ? absl::StrCat(e.before->amount_nanos) : "-",
                         e.after ? absl::StrCat(e.after->amount_nanos) : "-");
}

class RocksLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = sync_;
    options.settled_retention = retention_;
    options.request_id_hash_bits = request_id_hash_bits_;
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = OpenRocksLedger(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
  }

  void Reopen() {
    ledger_.reset();
    Open();
  }

  // "reservation_id terms" of every hold ForEachOpenHold visits, in its
  // order; each must be open.
  std::vector<std::string> VisitedOpenHolds() {
    std::vector<std::string> seen;
    ledger_->ForEachOpenHold([&](const HoldView& h) {
      EXPECT_EQ(h.state, HoldState::kOpen);
      seen.push_back(absl::StrCat(h.reservation_id, " ", h.terms));
    });
    return seen;
  }

  void Set(BudgetSpec spec, absl::Time now = kT0) {
    absl::StatusOr<std::pair<BudgetSpec, bool>> set =
        ledger_->SetBudget(std::move(spec), Actor{"alice", "test"}, now);
    ASSERT_TRUE(set.ok()) << set.status();
  }

  ReserveResult Reserve(const LabelSet& labels, int64_t estimate_nanos,
                        absl::Time now = kT0, absl::string_view request_id = "",
                        absl::string_view terms = "",
                        absl::Duration ttl = absl::Minutes(10),
                        bool dry_run = false) {
    ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = estimate_nanos;
    request.request_id = request_id;
    request.terms = terms;
    request.ttl = ttl;
    request.dry_run = dry_run;
    absl::StatusOr<ReserveResult> result = ledger_->Reserve(request, now);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *std::move(result) : ReserveResult();
  }

  // The one standing of a budget instance at `now`.
  Standing StandingOf(absl::string_view budget, absl::string_view instance = "",
                      absl::Time now = kT0) {
    absl::StatusOr<std::vector<Standing>> standings =
        ledger_->Standings(budget, instance, now);
    EXPECT_TRUE(standings.ok()) << standings.status();
    if (!standings.ok() || standings->size() != 1) {
      ADD_FAILURE() << "expected one standing of " << budget << "[" << instance
                    << "]";
      return Standing();
    }
    return standings->front();
  }

  SettleResult Settle(absl::string_view id, int64_t cost_nanos,
                      absl::Time now = kT0) {
    absl::StatusOr<SettleResult> settled =
        ledger_->Settle(id, cost_nanos, now, nullptr, {}, nullptr);
    EXPECT_TRUE(settled.ok()) << settled.status();
    return settled.ok() ? *settled : SettleResult();
  }

  TempDir dir_;
  SyncMode sync_ = SyncMode::kGroup;
  absl::Duration retention_ = absl::Hours(1);
  int request_id_hash_bits_ = 64;
  std::unique_ptr<Ledger> ledger_;
};

// --- Budgets -------------------------------------------------------------

TEST_F(RocksLedgerTest, SetBudgetRejectsInvalidSpecsNamingTheField) {
  struct Case {
    BudgetSpec spec;
    std::string field;
  };
  BudgetSpec bad_zone = Budget("b", 100);
  bad_zone.timezone = "Mars/Olympus_Mons";
  BudgetSpec zero_threshold = Budget("b", 100);
  zero_threshold.alert_thresholds = {0.0};
  BudgetSpec big_threshold = Budget("b", 100);
  big_threshold.alert_thresholds = {0.5, 1.5};
  const std::vector<Case> cases = {
      {Budget("", 100), "budget.name"},
      {Budget("team a", 100), "budget.name"},
      {Budget("team/a", 100), "budget.name"},
      {Budget(std::string(129, 'x'), 100), "budget.name"},
      {Budget("b", -1), "budget.amount_nanos"},
      {bad_zone, "budget.timezone"},
      {zero_threshold, "budget.alert_thresholds"},
      {big_threshold, "budget.alert_thresholds"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::pair<BudgetSpec, bool>> set =
        ledger_->SetBudget(c.spec, Actor{"alice", "test"}, kT0);
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument)
        << c.field;
    EXPECT_THAT(set.status().message(), HasSubstr(c.field));
  }
  // Nothing was stored or audited.
  EXPECT_THAT(ledger_->ListBudgets(), IsEmpty());
  EXPECT_THAT(ledger_->ListAudit(10), IsEmpty());
}

TEST_F(RocksLedgerTest, SetBudgetNormalizesAndStamps) {
  BudgetSpec spec = Budget("team-a", 1000, {{"team", "a"}, {"env", "prod"}});
  spec.alert_thresholds = {1.0, 0.5, 0.5};
  spec.timezone = "";
  absl::StatusOr<std::pair<BudgetSpec, bool>> set =
      ledger_->SetBudget(spec, Actor{"alice", "q2 plan"}, kT0);
  ASSERT_TRUE(set.ok()) << set.status();
  const BudgetSpec& stored = set->first;
  EXPECT_TRUE(set->second);
  EXPECT_THAT(
      stored.selector,
      ElementsAre(std::make_pair(std::string("env"), std::string("prod")),
                  std::make_pair(std::string("team"), std::string("a"))));
  EXPECT_THAT(stored.alert_thresholds, ElementsAre(0.5, 1.0));
  EXPECT_EQ(stored.timezone, "UTC");
  EXPECT_EQ(stored.updated_at, kT0);
  EXPECT_EQ(stored.updated_by, "alice");
  EXPECT_EQ(ledger_->GetBudget("team-a"), stored);

  // Default thresholds when none are given.
  BudgetSpec plain = Budget("plain", 1);
  plain.alert_thresholds.clear();
  set = ledger_->SetBudget(plain, Actor{"", ""}, kT0);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_THAT(set->first.alert_thresholds, ElementsAre(0.85, 1.0));
  EXPECT_EQ(set->first.updated_by, "unknown");
}

TEST_F(RocksLedgerTest, CreateThenReplaceIsAuditedNewestFirst) {
  absl::StatusOr<std::pair<BudgetSpec, bool>> created = ledger_->SetBudget(
      Budget("team-a", 1000), Actor{"alice", "initial"}, kT0);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->second);

  const absl::Time t1 = kT0 + absl::Minutes(5);
  absl::StatusOr<std::pair<BudgetSpec, bool>> replaced = ledger_->SetBudget(
      Budget("team-a", 2500), Actor{"bob", "raise for launch"}, t1);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_FALSE(replaced->second);
  EXPECT_EQ(replaced->first.amount_nanos, 2500);
  EXPECT_EQ(replaced->first.updated_by, "bob");
  EXPECT_EQ(ledger_->GetBudget("team-a")->amount_nanos, 2500);
  EXPECT_THAT(ledger_->ListBudgets(), SizeIs(1));

  const std::vector<AuditEntry> audit = ledger_->ListAudit(10);
  ASSERT_THAT(audit, SizeIs(2));
  EXPECT_EQ(audit[0].time, t1);
  EXPECT_EQ(audit[0].actor, "bob");
  EXPECT_EQ(audit[0].reason, "raise for launch");
  EXPECT_EQ(audit[0].action, "budget.set");
  EXPECT_EQ(audit[0].target, "budget:team-a");
  ASSERT_TRUE(audit[0].before.has_value());
  ASSERT_TRUE(audit[0].after.has_value());
  EXPECT_EQ(audit[0].before->amount_nanos, 1000);
  EXPECT_EQ(audit[0].before->updated_by, "alice");
  EXPECT_EQ(*audit[0].after, replaced->first);

  EXPECT_EQ(audit[1].time, kT0);
  EXPECT_EQ(audit[1].actor, "alice");
  EXPECT_EQ(audit[1].reason, "initial");
  EXPECT_FALSE(audit[1].before.has_value());
  ASSERT_TRUE(audit[1].after.has_value());
  EXPECT_EQ(*audit[1].after, created->first);

  // The limit keeps the newest.
  const std::vector<AuditEntry> newest = ledger_->ListAudit(1);
  ASSERT_THAT(newest, SizeIs(1));
  EXPECT_EQ(newest[0].actor, "bob");
}

TEST_F(RocksLedgerTest, ListBudgetNamesIsSortedAndFollowsDeletes) {
  EXPECT_THAT(ledger_->ListBudgetNames(), IsEmpty());
  for (const char* name : {"team-b", "org", "team-a"}) Set(Budget(name, 1000));
  EXPECT_THAT(ledger_->ListBudgetNames(),
              ElementsAre("org", "team-a", "team-b"));
  ASSERT_TRUE(ledger_->DeleteBudget("team-a", Actor{"carol", ""}, kT0).ok());
  Reopen();
  EXPECT_THAT(ledger_->ListBudgetNames(), ElementsAre("org", "team-b"));
}

TEST_F(RocksLedgerTest, DeleteBudget) {
  Set(Budget("team-a", 1000, {{"team", "a"}}));
  ASSERT_EQ(Reserve(Labels({{"team", "a"}}), 100).kind,
            ReserveResult::Kind::kReserved);

  const absl::Time t1 = kT0 + absl::Minutes(1);
  ASSERT_TRUE(
      ledger_->DeleteBudget("team-a", Actor{"carol", "team disbanded"}, t1)
          .ok());
  EXPECT_FALSE(ledger_->GetBudget("team-a").has_value());
  EXPECT_THAT(ledger_->ListBudgets(), IsEmpty());
  EXPECT_EQ(ledger_->Standings("team-a", "", t1).status().code(),
            absl::StatusCode::kNotFound);
  // Requests are no longer counted against it.
  const ReserveResult after = Reserve(Labels({{"team", "a"}}), 5000, t1);
  EXPECT_EQ(after.kind, ReserveResult::Kind::kReserved);
  EXPECT_THAT(after.standings, IsEmpty());

  const std::vector<AuditEntry> audit = ledger_->ListAudit(10);
  ASSERT_THAT(audit, SizeIs(2));
  EXPECT_EQ(audit[0].action, "budget.delete");
  EXPECT_EQ(audit[0].target, "budget:team-a");
  EXPECT_EQ(audit[0].actor, "carol");
  EXPECT_EQ(audit[0].reason, "team disbanded");
  ASSERT_TRUE(audit[0].before.has_value());
  EXPECT_EQ(audit[0].before->amount_nanos, 1000);
  EXPECT_FALSE(audit[0].after.has_value());

  const absl::Status again = ledger_->DeleteBudget("team-a", Actor{}, t1);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("team-a"));

  Reopen();
  EXPECT_FALSE(ledger_->GetBudget("team-a").has_value());
  EXPECT_THAT(ledger_->ListAudit(10), SizeIs(2));
}

TEST_F(RocksLedgerTest, RecreatedBudgetCountsHoldsStillOpenOnIt) {
  // A budget deleted and set again under the same name keeps its spend and
  // the holds placed on it; settling such a hold must not make `held`
  // negative (which would hand out its estimate a second time).
  Set(Budget("b", 1000));
  const ReserveResult hold = Reserve(Labels({}), 600);
  ASSERT_EQ(hold.kind, ReserveResult::Kind::kReserved);
  ASSERT_TRUE(ledger_->DeleteBudget("b", Actor{"alice", "oops"}, kT0).ok());
  Set(Budget("b", 1000));
  EXPECT_EQ(StandingOf("b").held_nanos, 600);
  EXPECT_EQ(Reserve(Labels({}), 401).kind, ReserveResult::Kind::kDenied);

  EXPECT_EQ(Settle(hold.reservation_id, 600).cost_nanos, 600);
  const Standing settled = StandingOf("b");
  EXPECT_EQ(settled.spent_nanos, 600);
  EXPECT_EQ(settled.held_nanos, 0);
  EXPECT_EQ(Reserve(Labels({}), 401).kind, ReserveResult::Kind::kDenied);

  const std::string before = Describe(StandingOf("b"));
  Reopen();
  EXPECT_EQ(Describe(StandingOf("b")), before);
}

// --- Reserve -------------------------------------------------------------

TEST_F(RocksLedgerTest, ReserveExactFitAndDenialListsRemaining) {
  Set(Budget("team-a", 1000, {{"team", "a"}}));
  const LabelSet labels = Labels({{"team", "a"}, {"user", "u1"}});

  const ReserveResult first = Reserve(labels, 600);
  ASSERT_EQ(first.kind, ReserveResult::Kind::kReserved);
  EXPECT_FALSE(first.reservation_id.empty());
  EXPECT_EQ(first.expires_at, kT0 + absl::Minutes(10));
  ASSERT_THAT(first.standings, SizeIs(1));
  EXPECT_EQ(first.standings[0].budget, "team-a");
  EXPECT_EQ(first.standings[0].held_nanos, 600);
  EXPECT_EQ(first.standings[0].remaining_nanos(), 400);

  // One nano more than remains is denied, and names the budget.
  const ReserveResult over = Reserve(labels, 401);
  EXPECT_EQ(over.kind, ReserveResult::Kind::kDenied);
  EXPECT_TRUE(over.reservation_id.empty());
  ASSERT_THAT(over.exceeded, SizeIs(1));
  EXPECT_EQ(over.exceeded[0].budget, "team-a");
  EXPECT_EQ(over.exceeded[0].amount_nanos, 1000);
  EXPECT_EQ(over.exceeded[0].held_nanos, 600);
  EXPECT_EQ(over.exceeded[0].remaining_nanos(), 400);
  EXPECT_EQ(ledger_->open_holds(), 1u);

  // Exactly what remains fits.
  const ReserveResult exact = Reserve(labels, 400);
  ASSERT_EQ(exact.kind, ReserveResult::Kind::kReserved);
  EXPECT_NE(exact.reservation_id, first.reservation_id);
  EXPECT_EQ(exact.standings[0].held_nanos, 1000);
  EXPECT_EQ(exact.standings[0].remaining_nanos(), 0);
  EXPECT_EQ(Reserve(labels, 1).kind, ReserveResult::Kind::kDenied);

  // A zero budget fits only zero.
  Set(Budget("frozen", 0, {{"team", "z"}}));
  EXPECT_EQ(Reserve(Labels({{"team", "z"}}), 1).kind,
            ReserveResult::Kind::kDenied);
}

// Which budgets a request selects follows every SetBudget and DeleteBudget
// (the selector index is updated per budget, not rebuilt).
TEST_F(RocksLedgerTest, SelectionFollowsSelectorChangesAndDeletes) {
  auto selected = [&](const LabelSet& labels) {
    std::vector<std::string> names;
    for (const Standing& s : Reserve(labels, 0).standings) {
      names.push_back(s.budget);
    }
    std::sort(names.begin(), names.end());
    return names;
  };
  const LabelSet a = Labels({{"team", "a"}});
  const LabelSet b = Labels({{"team", "b"}});
  Set(Budget("org", 1000));
  Set(Budget("moving", 1000, {{"team", "a"}}));
  Set(Budget("team-a", 1000, {{"team", "a"}}));
  EXPECT_THAT(selected(a), ElementsAre("moving", "org", "team-a"));
  EXPECT_THAT(selected(b), ElementsAre("org"));

  Set(Budget("moving", 1000, {{"team", "b"}}));
  EXPECT_THAT(selected(a), ElementsAre("org", "team-a"));
  EXPECT_THAT(selected(b), ElementsAre("moving", "org"));

  Set(Budget("moving", 1000));  // no selector: every request
  EXPECT_THAT(selected(a), ElementsAre("moving", "org", "team-a"));
  Set(Budget("org", 1000, {{"team", "b"}}));
  EXPECT_THAT(selected(a), ElementsAre("moving", "team-a"));

  ASSERT_TRUE(ledger_->DeleteBudget("team-a", Actor{"test"}, kT0).ok());
  ASSERT_TRUE(ledger_->DeleteBudget("moving", Actor{"test"}, kT0).ok());
  EXPECT_THAT(selected(a), IsEmpty());
  EXPECT_THAT(selected(b), ElementsAre("org"));
}

TEST_F(RocksLedgerTest, NestedBudgetsTightestDecidesAllOrNothing) {
  Set(Budget("org", 10'000));
  Set(Budget("team-a", 1000, {{"team", "a"}}));
  Set(Budget("per-user", 300, {{"team", "a"}}, "user"));

  const ReserveResult u1 =
      Reserve(Labels({{"team", "a"}, {"user", "u1"}}), 300);
  ASSERT_EQ(u1.kind, ReserveResult::Kind::kReserved);
  ASSERT_THAT(u1.standings, SizeIs(3));
  for (const Standing& s : u1.standings) {
    EXPECT_EQ(s.held_nanos, 300) << s.budget;
  }

  // u1's own budget is full: denied, and nothing is held anywhere.
  const ReserveResult denied =
      Reserve(Labels({{"team", "a"}, {"user", "u1"}}), 1);
  ASSERT_EQ(denied.kind, ReserveResult::Kind::kDenied);
  ASSERT_THAT(denied.exceeded, SizeIs(1));
  EXPECT_EQ(denied.exceeded[0].budget, "per-user");
  EXPECT_EQ(denied.exceeded[0].instance, "u1");
  EXPECT_EQ(denied.exceeded[0].remaining_nanos(), 0);
  EXPECT_EQ(StandingOf("org").held_nanos, 300);
  EXPECT_EQ(StandingOf("team-a").held_nanos, 300);

  // Other users have their own instance; the team budget fills up.
  ASSERT_EQ(Reserve(Labels({{"team", "a"}, {"user", "u2"}}), 300).kind,
            ReserveResult::Kind::kReserved);
  ASSERT_EQ(Reserve(Labels({{"team", "a"}, {"user", "u3"}}), 300).kind,
            ReserveResult::Kind::kReserved);
  const ReserveResult team_full =
      Reserve(Labels({{"team", "a"}, {"user", "u4"}}), 200);
  ASSERT_EQ(team_full.kind, ReserveResult::Kind::kDenied);
  ASSERT_THAT(team_full.exceeded, SizeIs(1));
  EXPECT_EQ(team_full.exceeded[0].budget, "team-a");
  EXPECT_EQ(team_full.exceeded[0].remaining_nanos(), 100);
  EXPECT_EQ(StandingOf("org").held_nanos, 900);
  EXPECT_EQ(StandingOf("per-user", "u4").held_nanos, 0);

  // Two budgets exceeded: tightest first.
  const ReserveResult both =
      Reserve(Labels({{"team", "a"}, {"user", "u1"}}), 500);
  ASSERT_EQ(both.kind, ReserveResult::Kind::kDenied);
  ASSERT_THAT(both.exceeded, SizeIs(2));
  EXPECT_EQ(both.exceeded[0].budget, "per-user");
  EXPECT_EQ(both.exceeded[1].budget, "team-a");

  // Another team only meets the org budget.
  const ReserveResult team_b =
      Reserve(Labels({{"team", "b"}, {"user", "u1"}}), 5000);
  ASSERT_EQ(team_b.kind, ReserveResult::Kind::kReserved);
  ASSERT_THAT(team_b.standings, SizeIs(1));
  EXPECT_EQ(team_b.standings[0].budget, "org");
  EXPECT_EQ(team_b.standings[0].held_nanos, 5900);
  // The last of team a's room; then the org budget is what is left.
  EXPECT_EQ(Reserve(Labels({{"team", "a"}, {"user", "u5"}}), 100).kind,
            ReserveResult::Kind::kReserved);
  const ReserveResult org_over =
      Reserve(Labels({{"team", "b"}}), 10'000 - 6000 + 1);
  ASSERT_EQ(org_over.kind, ReserveResult::Kind::kDenied);
  EXPECT_EQ(org_over.exceeded[0].budget, "org");
}

TEST_F(RocksLedgerTest, PerLabelInstancesAreIndependent) {
  Set(Budget("per-user", 100, {}, "user"));

  ASSERT_EQ(Reserve(Labels({{"user", "u1"}}), 100).kind,
            ReserveResult::Kind::kReserved);
  EXPECT_EQ(Reserve(Labels({{"user", "u1"}}), 1).kind,
            ReserveResult::Kind::kDenied);
  const ReserveResult u2 = Reserve(Labels({{"user", "u2"}}), 60);
  ASSERT_EQ(u2.kind, ReserveResult::Kind::kReserved);
  ASSERT_THAT(u2.standings, SizeIs(1));
  EXPECT_EQ(u2.standings[0].instance, "u2");
  EXPECT_EQ(u2.standings[0].held_nanos, 60);

  // Without a user label the budget does not apply at all.
  const ReserveResult anonymous = Reserve(Labels({{"team", "a"}}), 1000);
  ASSERT_EQ(anonymous.kind, ReserveResult::Kind::kReserved);
  EXPECT_THAT(anonymous.standings, IsEmpty());

  absl::StatusOr<std::vector<Standing>> all =
      ledger_->Standings("per-user", "", kT0);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_THAT(*all, SizeIs(2));
  std::set<std::string> instances;
  for (const Standing& s : *all) instances.insert(s.instance);
  EXPECT_EQ(instances, (std::set<std::string>{"u1", "u2"}));
  // An instance that never spent stands at zero.
  const Standing fresh = StandingOf("per-user", "u9");
  EXPECT_EQ(fresh.held_nanos, 0);
  EXPECT_EQ(fresh.remaining_nanos(), 100);
}

// LiveStandings lists what Standings lists, whether an instance is in memory
// (touched since start-up), only on disk (spent before a restart), or in
// both with an older period in memory; and it loads nothing.
TEST_F(RocksLedgerTest, LiveStandingsEqualStandings) {
  Set(Budget("per-user", 1000, {}, "user"));
  Set(Budget("org", 5000));
  const absl::Time yesterday = kT0 - absl::Hours(24);
  // u0: spent yesterday only. u1, u2: spent today, then a restart.
  Settle(Reserve(Labels({{"user", "u0"}}), 70, yesterday).reservation_id, 70,
         yesterday);
  Settle(Reserve(Labels({{"user", "u1"}}), 100).reservation_id, 90);
  Settle(Reserve(Labels({{"user", "u2"}}), 40).reservation_id, 40);
  // u3: an open hold from yesterday (kept in memory for that period).
  Reserve(Labels({{"user", "u3"}}), 10, yesterday, "", "", absl::Hours(48));
  Settle(Reserve(Labels({{"user", "u3"}}), 5).reservation_id, 5);
  Reopen();
  // After the restart: u2 and u4 touched again, u1 and u3 only on disk.
  Settle(Reserve(Labels({{"user", "u2"}}), 15).reservation_id, 15);
  Reserve(Labels({{"user", "u4"}}), 25);

  auto compare = [&](absl::string_view budget, absl::string_view instance,
                     absl::Time now) {
    SCOPED_TRACE(
        absl::StrCat(budget, "/", instance, " at ", absl::FormatTime(now)));
    absl::StatusOr<std::vector<Standing>> live =
        ledger_->LiveStandings(budget, instance, now);
    ASSERT_TRUE(live.ok()) << live.status();
    absl::StatusOr<std::vector<Standing>> loaded =
        ledger_->Standings(budget, instance, now);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(Describe(*live), Describe(*loaded));
  };
  {
    absl::StatusOr<std::vector<Standing>> live =
        ledger_->LiveStandings("per-user", "", kT0);
    ASSERT_TRUE(live.ok()) << live.status();
    EXPECT_THAT(Describe(*live),
                ElementsAre(HasSubstr("[u1]"), HasSubstr("[u2]"),
                            HasSubstr("[u3]"), HasSubstr("[u4]")));
    EXPECT_EQ((*live)[0].spent_nanos, 90);
    EXPECT_EQ((*live)[1].spent_nanos, 55);
    EXPECT_EQ((*live)[3].held_nanos, 25);
  }
  compare("per-user", "", kT0);
  compare("per-user", "u1", kT0);
  compare("per-user", "u9", kT0);
  compare("per-user", "", yesterday);
  compare("org", "", kT0);
  Reopen();
  compare("per-user", "u3", kT0);
  compare("per-user", "", kT0);
  compare("org", "", kT0);
  EXPECT_EQ(ledger_->LiveStandings("nope", "", kT0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RocksLedgerTest, PeekReadsTheInstanceARequestSelects) {
  Set(Budget("team-user", 100, {{"team", "search"}}, "user"));
  ASSERT_EQ(Reserve(Labels({{"team", "search"}, {"user", "u1"}}), 30).kind,
            ReserveResult::Kind::kReserved);

  auto u1 = ledger_->Peek("team-user",
                          Labels({{"team", "search"}, {"user", "u1"}}), kT0);
  ASSERT_TRUE(u1.ok()) << u1.status();
  ASSERT_TRUE(u1->has_value());
  EXPECT_EQ((*u1)->amount_nanos, 100);
  EXPECT_EQ((*u1)->held_nanos, 30);
  EXPECT_EQ((*u1)->period_start,
            absl::FromCivil(absl::CivilDay(2026, 3, 18), absl::UTCTimeZone()));
  auto u2 = ledger_->Peek("team-user",
                          Labels({{"team", "search"}, {"user", "u2"}}), kT0);
  ASSERT_TRUE(u2.ok() && u2->has_value());
  EXPECT_EQ((*u2)->held_nanos, 0);

  // Another team, no user label, or no such budget: it does not apply.
  for (const LabelSet& labels : {Labels({{"team", "ads"}, {"user", "u1"}}),
                                 Labels({{"team", "search"}})}) {
    auto none = ledger_->Peek("team-user", labels, kT0);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  }
  auto missing = ledger_->Peek("nope", Labels({}), kT0);
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(RocksLedgerTest, DryRunReservesNothing) {
  Set(Budget("b", 1000));
  const ReserveResult dry =
      Reserve(Labels({}), 1000, kT0, "req-1", "", absl::Minutes(10),
              /*dry_run=*/true);
  EXPECT_EQ(dry.kind, ReserveResult::Kind::kDryRun);
  EXPECT_TRUE(dry.reservation_id.empty());
  ASSERT_THAT(dry.standings, SizeIs(1));
  EXPECT_EQ(dry.standings[0].held_nanos, 0);
  EXPECT_EQ(ledger_->open_holds(), 0u);
  EXPECT_EQ(StandingOf("b").held_nanos, 0);

  const ReserveResult dry_over = Reserve(Labels({}), 1001, kT0, "", "",
                                         absl::Minutes(10), /*dry_run=*/true);
  EXPECT_EQ(dry_over.kind, ReserveResult::Kind::kDenied);
  ASSERT_THAT(dry_over.exceeded, SizeIs(1));

  // The dry run did not claim its request_id.
  const ReserveResult real = Reserve(Labels({}), 1000, kT0, "req-1");
  EXPECT_EQ(real.kind, ReserveResult::Kind::kReserved);
}

TEST_F(RocksLedgerTest, RequestIdReplaysTheSameReservation) {
  Set(Budget("b", 1000));
  const ReserveResult first =
      Reserve(Labels({}), 400, kT0, "req-1", "model=mini;max_out=512");
  ASSERT_EQ(first.kind, ReserveResult::Kind::kReserved);

  const ReserveResult again =
      Reserve(Labels({}), 999, kT0 + absl::Seconds(3), "req-1", "model=other");
  EXPECT_EQ(again.kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(again.reservation_id, first.reservation_id);
  EXPECT_EQ(again.terms, "model=mini;max_out=512");
  EXPECT_EQ(again.expires_at, first.expires_at);
  EXPECT_EQ(ledger_->open_holds(), 1u);
  EXPECT_EQ(StandingOf("b").held_nanos, 400);

  // A different request_id is a different reservation.
  const ReserveResult other = Reserve(Labels({}), 100, kT0, "req-2");
  EXPECT_EQ(other.kind, ReserveResult::Kind::kReserved);
  EXPECT_NE(other.reservation_id, first.reservation_id);

  // Still replayed after the hold is settled (within the retention).
  Settle(first.reservation_id, 250);
  const ReserveResult after_settle = Reserve(Labels({}), 400, kT0, "req-1");
  EXPECT_EQ(after_settle.kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(after_settle.reservation_id, first.reservation_id);
  EXPECT_EQ(StandingOf("b").spent_nanos, 250);
  EXPECT_EQ(StandingOf("b").held_nanos, 100);
}

TEST_F(RocksLedgerTest, ReservationIdsSortByTimeAndStayDistinctWithinOne) {
  Set(Budget("b", 1'000'000));
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    // Ten reservations in each microsecond, five microseconds apart.
    const absl::Time at = kT0 + absl::Microseconds(5 * (i / 10));
    const ReserveResult reserved = Reserve(Labels({}), 1, at);
    ASSERT_EQ(reserved.kind, ReserveResult::Kind::kReserved);
    ASSERT_THAT(reserved.reservation_id,
                ::testing::MatchesRegex("r-[0-9a-f]{32}"));
    ids.push_back(reserved.reservation_id);
  }
  for (size_t i = 10; i < ids.size(); ++i) {
    EXPECT_LT(ids[i - 10], ids[i]) << "reservation " << i;
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());
}

// --- Settle and expiry ---------------------------------------------------

TEST_F(RocksLedgerTest, SettleReplacesTheHoldWithTheCost) {
  Set(Budget("org", 10'000));
  Set(Budget("team-a", 1000, {{"team", "a"}}));
  const ReserveResult hold =
      Reserve(Labels({{"team", "a"}}), 500, kT0, "", "terms-1");
  ASSERT_EQ(hold.kind, ReserveResult::Kind::kReserved);

  const SettleResult settled =
      Settle(hold.reservation_id, 120, kT0 + absl::Seconds(30));
  EXPECT_EQ(settled.cost_nanos, 120);
  EXPECT_FALSE(settled.already_reported);
  EXPECT_FALSE(settled.after_expiry);
  for (const char* budget : {"org", "team-a"}) {
    const Standing s = StandingOf(budget);
    EXPECT_EQ(s.spent_nanos, 120) << budget;
    EXPECT_EQ(s.held_nanos, 0) << budget;
    EXPECT_EQ(s.unreported_nanos, 0) << budget;
  }
  EXPECT_EQ(ledger_->open_holds(), 0u);
  absl::StatusOr<HoldView> view = ledger_->GetHold(hold.reservation_id);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->state, HoldState::kSettled);
  EXPECT_EQ(view->estimate_nanos, 500);
  EXPECT_EQ(view->cost_nanos, 120);
  EXPECT_EQ(view->terms, "terms-1");

  // A second report changes nothing and returns the first cost.
  const SettleResult again =
      Settle(hold.reservation_id, 999, kT0 + absl::Seconds(40));
  EXPECT_TRUE(again.already_reported);
  EXPECT_EQ(again.cost_nanos, 120);
  EXPECT_EQ(StandingOf("team-a").spent_nanos, 120);

  // Room freed by a cheaper answer is usable again.
  EXPECT_EQ(Reserve(Labels({{"team", "a"}}), 880).kind,
            ReserveResult::Kind::kReserved);
}

TEST_F(RocksLedgerTest, SettleCostAboveEstimateIsChargedInFull) {
  Set(Budget("b", 1000));
  const ReserveResult hold = Reserve(Labels({}), 100);
  EXPECT_EQ(Settle(hold.reservation_id, 1200).cost_nanos, 1200);
  const Standing s = StandingOf("b");
  EXPECT_EQ(s.spent_nanos, 1200);
  EXPECT_EQ(s.remaining_nanos(), 0);
  EXPECT_EQ(Reserve(Labels({}), 1).kind, ReserveResult::Kind::kDenied);
}

TEST_F(RocksLedgerTest, UnknownReservationIsNotFound) {
  const absl::StatusOr<SettleResult> settled =
      ledger_->Settle("r-does-not-exist", 10, kT0, nullptr, {}, nullptr);
  EXPECT_EQ(settled.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(settled.status().message(), HasSubstr("r-does-not-exist"));
  EXPECT_THAT(settled.status().message(), HasSubstr("never issued"));
  EXPECT_EQ(ledger_->GetHold("r-does-not-exist").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RocksLedgerTest, ExpiredHoldChargesItsEstimateUntilReportedLate) {
  Set(Budget("b", 1000));
  const ReserveResult hold =
      Reserve(Labels({}), 500, kT0, "", "", absl::Minutes(10));
  ASSERT_EQ(hold.kind, ReserveResult::Kind::kReserved);

  absl::StatusOr<int> expired =
      ledger_->ExpireHolds(kT0 + absl::Minutes(9), nullptr);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 0);
  EXPECT_EQ(ledger_->open_holds(), 1u);

  expired = ledger_->ExpireHolds(kT0 + absl::Minutes(11), nullptr);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  EXPECT_EQ(ledger_->open_holds(), 0u);
  Standing s = StandingOf("b");
  EXPECT_EQ(s.spent_nanos, 500);
  EXPECT_EQ(s.unreported_nanos, 500);
  EXPECT_EQ(s.held_nanos, 0);
  absl::StatusOr<HoldView> view = ledger_->GetHold(hold.reservation_id);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->state, HoldState::kExpired);
  EXPECT_EQ(view->cost_nanos, 500);
  // Expiring again finds nothing new.
  expired = ledger_->ExpireHolds(kT0 + absl::Minutes(12), nullptr);
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(*expired, 0);
  EXPECT_EQ(StandingOf("b").spent_nanos, 500);

  // The late report corrects spent to the actual cost.
  const SettleResult late =
      Settle(hold.reservation_id, 200, kT0 + absl::Minutes(13));
  EXPECT_EQ(late.cost_nanos, 200);
  EXPECT_TRUE(late.after_expiry);
  EXPECT_FALSE(late.already_reported);
  s = StandingOf("b");
  EXPECT_EQ(s.spent_nanos, 200);
  EXPECT_EQ(s.unreported_nanos, 0);
  EXPECT_EQ(s.held_nanos, 0);
  view = ledger_->GetHold(hold.reservation_id);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->state, HoldState::kSettled);

  const SettleResult again = Settle(hold.reservation_id, 300);
  EXPECT_TRUE(again.already_reported);
  EXPECT_TRUE(again.after_expiry);
  EXPECT_EQ(again.cost_nanos, 200);
  EXPECT_EQ(StandingOf("b").spent_nanos, 200);
}

TEST_F(RocksLedgerTest, SettledAndExpiredHoldsArePrunedAfterRetention) {
  Set(Budget("b", 1000));
  const ReserveResult settled = Reserve(Labels({}), 100, kT0, "req-settled");
  const ReserveResult unreported =
      Reserve(Labels({}), 200, kT0, "", "", absl::Minutes(1));
  const ReserveResult open =
      Reserve(Labels({}), 300, kT0, "", "", absl::Hours(24));
  const absl::Time t1 = kT0 + absl::Minutes(2);
  Settle(settled.reservation_id, 50, t1);
  ASSERT_TRUE(ledger_->ExpireHolds(t1, nullptr).ok());  // expires `unreported`

  ASSERT_TRUE(ledger_->ExpireHolds(t1 + absl::Minutes(59), nullptr).ok());
  EXPECT_TRUE(ledger_->GetHold(settled.reservation_id).ok());
  EXPECT_TRUE(ledger_->GetHold(unreported.reservation_id).ok());

  ASSERT_TRUE(
      ledger_->ExpireHolds(t1 + absl::Hours(1) + absl::Seconds(1), nullptr)
          .ok());
  for (const ReserveResult* r : {&settled, &unreported}) {
    const absl::StatusOr<HoldView> view = ledger_->GetHold(r->reservation_id);
    EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(ledger_->Settle(r->reservation_id, 1, t1, nullptr, {}, nullptr)
                  .status()
                  .code(),
              absl::StatusCode::kNotFound);
  }
  // The open hold is untouched; spend stays.
  EXPECT_TRUE(ledger_->GetHold(open.reservation_id).ok());
  EXPECT_EQ(ledger_->open_holds(), 1u);
  const Standing s = StandingOf("b", "", t1);
  EXPECT_EQ(s.spent_nanos, 250);
  EXPECT_EQ(s.held_nanos, 300);

  // Pruning is durable.
  Reopen();
  EXPECT_EQ(ledger_->GetHold(settled.reservation_id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger_->GetHold(unreported.reservation_id).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(ledger_->GetHold(open.reservation_id).ok());
}

// --- Periods -------------------------------------------------------------

TEST_F(RocksLedgerTest, DailySpendRollsOverAtLocalMidnight) {
  absl::TimeZone ny;
  ASSERT_TRUE(absl::LoadTimeZone("America/New_York", &ny));
  auto local = [&](int d, int h, int m) {
    return absl::FromCivil(absl::CivilSecond(2026, 3, d, h, m, 0), ny);
  };
  Set(Budget("daily", 1000, {}, "", Period::kDay, "America/New_York"),
      local(18, 9, 0));

  // Day 18: spend 400.
  const ReserveResult a = Reserve(Labels({}), 400, local(18, 10, 0));
  Settle(a.reservation_id, 400, local(18, 10, 1));
  EXPECT_EQ(StandingOf("daily", "", local(18, 23, 0)).spent_nanos, 400);

  // Day 19 starts empty: the whole amount fits again.
  const Standing day19 = StandingOf("daily", "", local(19, 0, 0));
  EXPECT_EQ(day19.spent_nanos, 0);
  EXPECT_EQ(day19.period_start, local(19, 0, 0));
  const ReserveResult b = Reserve(Labels({}), 1000, local(19, 0, 1));
  ASSERT_EQ(b.kind, ReserveResult::Kind::kReserved);
  Settle(b.reservation_id, 700, local(19, 0, 2));

  // A hold reserved before midnight and settled after it counts on the day
  // it was reserved in.
  const ReserveResult c = Reserve(Labels({}), 300, local(19, 23, 59));
  ASSERT_EQ(c.kind, ReserveResult::Kind::kReserved);
  EXPECT_EQ(StandingOf("daily", "", local(20, 0, 1)).held_nanos, 0);
  const ReserveResult d = Reserve(Labels({}), 1000, local(20, 0, 1));
  ASSERT_EQ(d.kind, ReserveResult::Kind::kReserved);
  Settle(c.reservation_id, 250, local(20, 0, 30));

  const Standing day20 = StandingOf("daily", "", local(20, 1, 0));
  EXPECT_EQ(day20.spent_nanos, 0);
  EXPECT_EQ(day20.held_nanos, 1000);
  const Standing day19_after = StandingOf("daily", "", local(19, 12, 0));
  EXPECT_EQ(day19_after.spent_nanos, 950);
  EXPECT_EQ(day19_after.held_nanos, 0);

  Reopen();
  EXPECT_EQ(StandingOf("daily", "", local(18, 12, 0)).spent_nanos, 400);
  EXPECT_EQ(StandingOf("daily", "", local(19, 12, 0)).spent_nanos, 950);
  EXPECT_EQ(Describe(StandingOf("daily", "", local(20, 1, 0))),
            Describe(day20));
}

TEST_F(RocksLedgerTest, ExpiryAfterMidnightChargesTheDayOfTheReservation) {
  Set(Budget("daily", 1000));
  const absl::Time late = kT0 + absl::Hours(11) + absl::Minutes(55);  // 23:55
  const ReserveResult hold =
      Reserve(Labels({}), 600, late, "", "", absl::Minutes(10));
  ASSERT_EQ(hold.kind, ReserveResult::Kind::kReserved);
  const absl::Time next_day = late + absl::Minutes(11);
  ASSERT_TRUE(ledger_->ExpireHolds(next_day, nullptr).ok());
  EXPECT_EQ(StandingOf("daily", "", late).spent_nanos, 600);
  EXPECT_EQ(StandingOf("daily", "", late).unreported_nanos, 600);
  EXPECT_EQ(StandingOf("daily", "", next_day).spent_nanos, 0);
  EXPECT_EQ(StandingOf("daily", "", next_day).unreported_nanos, 0);
}

// --- Durability ----------------------------------------------------------

TEST_F(RocksLedgerTest, ReopenRestoresEverything) {
  Set(Budget("org", 100'000));
  Set(Budget("team-a", 10'000, {{"team", "a"}}));
  Set(Budget("per-user", 3000, {{"team", "a"}}, "user"));
  ASSERT_TRUE(ledger_
                  ->SetBudget(Budget("team-a", 20'000, {{"team", "a"}}),
                              Actor{"bob", "more"}, kT0 + absl::Seconds(1))
                  .ok());

  // u1: settled spend. u2: an open hold with a request_id. u3: an expired,
  // unreported hold.
  const ReserveResult settled = Reserve(Labels({{"team", "a"}, {"user", "u1"}}),
                                        1000, kT0, "req-settled", "t1");
  Settle(settled.reservation_id, 700);
  const ReserveResult open = Reserve(Labels({{"team", "a"}, {"user", "u2"}}),
                                     2000, kT0, "req-open", "t2");
  const ReserveResult unreported =
      Reserve(Labels({{"team", "a"}, {"user", "u3"}}), 500, kT0,
              "req-unreported", "t3", absl::Minutes(1));
  const absl::Time t1 = kT0 + absl::Minutes(2);
  ASSERT_EQ(*ledger_->ExpireHolds(t1, nullptr), 1);

  auto snapshot = [&] {
    std::vector<std::string> out;
    for (const BudgetSpec& spec : ledger_->ListBudgets()) {
      out.push_back(absl::StrCat("budget ", spec.name, " ", spec.amount_nanos,
                                 " ", spec.updated_by, " ",
                                 absl::FormatTime(spec.updated_at)));
      absl::StatusOr<std::vector<Standing>> standings =
          ledger_->Standings(spec.name, "", t1);
      EXPECT_TRUE(standings.ok()) << standings.status();
      std::vector<std::string> lines = Describe(*standings);
      std::sort(lines.begin(), lines.end());
      out.insert(out.end(), lines.begin(), lines.end());
    }
    for (const AuditEntry& e : ledger_->ListAudit(100)) {
      out.push_back(Describe(e));
    }
    for (const ReserveResult* r : {&settled, &open, &unreported}) {
      absl::StatusOr<HoldView> view = ledger_->GetHold(r->reservation_id);
      out.push_back(view.ok() ? Describe(*view) : view.status().ToString());
    }
    out.push_back(absl::StrCat("open holds ", ledger_->open_holds()));
    return out;
  };
  const std::vector<std::string> before = snapshot();
  const std::vector<BudgetSpec> budgets_before = ledger_->ListBudgets();
  const std::vector<AuditEntry> audit_before = ledger_->ListAudit(100);
  ASSERT_THAT(audit_before, SizeIs(4));

  Reopen();
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(ledger_->ListBudgets(), budgets_before);
  const std::vector<AuditEntry> audit_after = ledger_->ListAudit(100);
  ASSERT_THAT(audit_after, SizeIs(audit_before.size()));
  for (size_t i = 0; i < audit_after.size(); ++i) {
    EXPECT_EQ(audit_after[i].before, audit_before[i].before) << i;
    EXPECT_EQ(audit_after[i].after, audit_before[i].after) << i;
  }
  // Spot checks of what the snapshot holds.
  EXPECT_EQ(StandingOf("per-user", "u1", t1).spent_nanos, 700);
  EXPECT_EQ(StandingOf("per-user", "u2", t1).held_nanos, 2000);
  EXPECT_EQ(StandingOf("per-user", "u3", t1).unreported_nanos, 500);
  const Standing org = StandingOf("org", "", t1);
  EXPECT_EQ(org.spent_nanos, 1200);
  EXPECT_EQ(org.held_nanos, 2000);
  EXPECT_EQ(org.unreported_nanos, 500);
  EXPECT_EQ(ledger_->open_holds(), 1u);

  // request_id replay survives, and does not hold twice.
  const ReserveResult replay = Reserve(Labels({{"team", "a"}, {"user", "u2"}}),
                                       2000, t1, "req-open", "other");
  EXPECT_EQ(replay.kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(replay.reservation_id, open.reservation_id);
  EXPECT_EQ(replay.terms, "t2");
  EXPECT_EQ(replay.expires_at, open.expires_at);
  EXPECT_EQ(StandingOf("per-user", "u2", t1).held_nanos, 2000);

  // Reopened holds settle and expire as before.
  const SettleResult late = Settle(unreported.reservation_id, 100, t1);
  EXPECT_TRUE(late.after_expiry);
  EXPECT_EQ(Settle(settled.reservation_id, 5).cost_nanos, 700);
  EXPECT_EQ(Settle(open.reservation_id, 1500, t1).cost_nanos, 1500);
  const Standing org_after = StandingOf("org", "", t1);
  EXPECT_EQ(org_after.spent_nanos, 700 + 100 + 1500);
  EXPECT_EQ(org_after.held_nanos, 0);
  EXPECT_EQ(org_after.unreported_nanos, 0);

  // New audit entries at an instant already used do not overwrite old ones.
  Set(Budget("late", 1), kT0);
  Reopen();
  Set(Budget("later", 1), kT0);
  std::set<std::string> targets;
  for (const AuditEntry& e : ledger_->ListAudit(100)) targets.insert(e.target);
  EXPECT_TRUE(targets.count("budget:late")) << "audit entry overwritten";
  EXPECT_TRUE(targets.count("budget:later"));
  EXPECT_EQ(ledger_->ListAudit(100).size(), audit_before.size() + 2);
}

TEST_F(RocksLedgerTest, SecondOpenOfTheSameDirectoryIsUnavailable) {
  RocksLedgerOptions options;
  options.path = dir_.path();
  const absl::StatusOr<std::unique_ptr<Ledger>> second =
      OpenRocksLedger(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(dir_.path()));
}

TEST_F(RocksLedgerTest, NewerSchemaVersionIsDataLoss) {
  ledger_.reset();
  {
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(),
                                                dir_.path(), &names)
                    .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), dir_.path(),
                                  descriptors, &handles, &raw)
                    .ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::ColumnFamilyHandle* meta = nullptr;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "meta") meta = handles[i];
    }
    ASSERT_NE(meta, nullptr);
    std::string version;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), meta, "schema_version", &version).ok());
    EXPECT_EQ(version, "1");
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), meta, "schema_version", "2").ok());
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    }
  }
  RocksLedgerOptions options;
  options.path = dir_.path();
  const absl::StatusOr<std::unique_ptr<Ledger>> reopened =
      OpenRocksLedger(options);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr("schema version 2"));
}

// --- Concurrency ---------------------------------------------------------

TEST_F(RocksLedgerTest, ConcurrentReservesNeverOvershoot) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 60;
  constexpr int kFits = 100;
  constexpr int64_t kEstimate = 7;
  Set(Budget("org", 1'000'000));
  Set(Budget("team-a", kFits * kEstimate, {{"team", "a"}}));

  std::atomic<int> reserved{0};
  std::atomic<int> denied{0};
  absl::Mutex mu;
  std::vector<std::string> ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      const LabelSet labels = Labels({{"team", "a"}});
      for (int i = 0; i < kPerThread; ++i) {
        ReserveRequest request;
        request.labels = &labels;
        request.estimate_nanos = kEstimate;
        absl::StatusOr<ReserveResult> result = ledger_->Reserve(request, kT0);
        if (!result.ok()) {
          ADD_FAILURE() << result.status();
          continue;
        }
        if (result->kind == ReserveResult::Kind::kReserved) {
          reserved.fetch_add(1);
          absl::MutexLock lock(&mu);
          ids.push_back(result->reservation_id);
        } else {
          denied.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(reserved.load(), kFits);
  EXPECT_EQ(denied.load(), kThreads * kPerThread - kFits);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(),
            static_cast<size_t>(kFits));
  EXPECT_EQ(ledger_->open_holds(), static_cast<size_t>(kFits));
  const Standing team = StandingOf("team-a");
  EXPECT_EQ(team.held_nanos, kFits * kEstimate);
  EXPECT_EQ(team.remaining_nanos(), 0);
  EXPECT_EQ(StandingOf("org").held_nanos, kFits * kEstimate);
}

TEST_F(RocksLedgerTest, ConcurrentRetriesOfOneRequestIdHoldOnce) {
  constexpr int kThreads = 8;
  constexpr int kRequests = 20;
  Set(Budget("b", 1'000'000));

  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::set<std::string>> ids_by_request;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      const LabelSet labels;
      for (int i = 0; i < kRequests; ++i) {
        const std::string request_id = absl::StrCat("req-", i);
        ReserveRequest request;
        request.labels = &labels;
        request.estimate_nanos = 10;
        request.request_id = request_id;
        absl::StatusOr<ReserveResult> result = ledger_->Reserve(request, kT0);
        if (!result.ok()) {
          ADD_FAILURE() << result.status();
          continue;
        }
        absl::MutexLock lock(&mu);
        ids_by_request[request_id].insert(result->reservation_id);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  ASSERT_EQ(ids_by_request.size(), static_cast<size_t>(kRequests));
  for (const auto& [request_id, ids] : ids_by_request) {
    EXPECT_THAT(ids, SizeIs(1)) << request_id;
  }
  EXPECT_EQ(ledger_->open_holds(), static_cast<size_t>(kRequests));
  EXPECT_EQ(StandingOf("b").held_nanos, kRequests * 10);
}

// --- Compact holds in memory (docs/decisions/019-compact-holds.md) --------

// Runs `body` on the closed database at `path` opened raw, with its holds
// column family. With the ledger's merge operators: RocksDB stops
// recovering the log at the first merge it cannot apply.
void WithRawHolds(
    const std::string& path,
    const std::function<void(rocksdb::DB&, rocksdb::ColumnFamilyHandle*)>& body,
    bool read_only = true) {
  std::vector<std::string> names;
  ASSERT_TRUE(
      rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    rocksdb::ColumnFamilyOptions options;
    if (name == "counters") options.merge_operator = NewInt64AddOperator();
    if (name == "usage") {
      options.merge_operator =
          NewCounterMergeOperator(RocksDatabase::kUsageCounterSetKind);
    }
    descriptors.emplace_back(name, options);
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  const rocksdb::Status opened =
      read_only ? rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path,
                                               descriptors, &handles, &raw)
                : rocksdb::DB::Open(rocksdb::DBOptions(), path, descriptors,
                                    &handles, &raw);
  ASSERT_TRUE(opened.ok()) << opened.ToString();
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::ColumnFamilyHandle* holds = nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "holds") holds = handles[i];
  }
  ASSERT_NE(holds, nullptr);
  body(*db, holds);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
}

HoldRecord StoredHold(const std::string& path, const std::string& id) {
  HoldRecord record;
  WithRawHolds(path, [&](rocksdb::DB& db, rocksdb::ColumnFamilyHandle* holds) {
    std::string bytes;
    ASSERT_TRUE(db.Get(rocksdb::ReadOptions(), holds, id, &bytes).ok()) << id;
    ASSERT_TRUE(record.ParseFromString(bytes)) << id;
  });
  return record;
}

// Decision 021: Reserve, Settle and expiry write without the ledger's
// mutex. Checks (with request_id retries), Reports (some twice), expiry and
// a budget deleted and set again, all at once: whatever the interleaving,
// every reservation is charged its cost exactly once, nothing stays held,
// and memory equals what a reopen reads from disk.
TEST_F(RocksLedgerTest, ConcurrentChecksReportsAndExpiryChargeEachCostOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 120;
  constexpr int64_t kEstimate = 10;
  static constexpr const char* kUsers[kThreads] = {"u0", "u1", "u2", "u3"};
  Set(Budget("org", int64_t{1} << 40));
  Set(Budget("team", int64_t{1} << 40, {{"team", "a"}}));
  Set(Budget("per-user", int64_t{1} << 40, {}, "user"));

  std::atomic<int> workers_done{0};
  std::atomic<int64_t> org_cost{0}, team_cost{0};
  std::vector<int64_t> user_cost(kThreads, 0);  // each thread its own
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    // A failed ASSERT returns from `work` only: the other threads stop
    // once every worker is done.
    auto work = [&, t] {
      const LabelSet labels = Labels({{"team", "a"}, {"user", kUsers[t]}});
      for (int i = 0; i < kPerThread; ++i) {
        const std::string request_id = absl::StrCat("t", t, "-", i);
        ReserveRequest request;
        request.labels = &labels;
        request.estimate_nanos = kEstimate;
        request.request_id = request_id;
        request.ttl = absl::Minutes(1);
        absl::StatusOr<ReserveResult> reserved = ledger_->Reserve(request, kT0);
        ASSERT_TRUE(reserved.ok()) << reserved.status();
        ASSERT_EQ(reserved->kind, ReserveResult::Kind::kReserved);
        bool charged_team = false;
        for (const Standing& s : reserved->standings) {
          charged_team |= s.budget == "team";
        }
        if (i % 3 == 0) {  // the client retries the Check
          absl::StatusOr<ReserveResult> replay = ledger_->Reserve(request, kT0);
          ASSERT_TRUE(replay.ok()) << replay.status();
          EXPECT_EQ(replay->kind, ReserveResult::Kind::kReplayed);
          EXPECT_EQ(replay->reservation_id, reserved->reservation_id);
        }
        const int64_t cost = 1 + (t * 7 + i) % 13;
        absl::StatusOr<SettleResult> settled = ledger_->Settle(
            reserved->reservation_id, cost, kT0, nullptr, {}, nullptr);
        ASSERT_TRUE(settled.ok()) << settled.status();
        EXPECT_FALSE(settled->already_reported);
        if (i % 4 == 0) {  // the client retries the Report
          absl::StatusOr<SettleResult> again = ledger_->Settle(
              reserved->reservation_id, cost + 1, kT0, nullptr, {}, nullptr);
          ASSERT_TRUE(again.ok()) << again.status();
          EXPECT_TRUE(again->already_reported);
          EXPECT_EQ(again->cost_nanos, cost);
        }
        org_cost += cost;
        if (charged_team) team_cost += cost;
        user_cost[t] += cost;
      }
    };
    threads.emplace_back([&, work] {
      work();
      workers_done.fetch_add(1);
    });
  }
  // Holds expire (their ttl is 1 minute) while they are reported.
  threads.emplace_back([&] {
    while (workers_done.load() < kThreads) {
      absl::StatusOr<int> expired =
          ledger_->ExpireHolds(kT0 + absl::Minutes(2), nullptr);
      ASSERT_TRUE(expired.ok()) << expired.status();
    }
  });
  // The team budget is deleted and set again: its counters are loaded from
  // disk again while Reports of holds charged to it are being written.
  threads.emplace_back([&] {
    const Actor actor{"alice", "test"};
    while (workers_done.load() < kThreads) {
      ASSERT_TRUE(ledger_->DeleteBudget("team", actor, kT0).ok());
      absl::StatusOr<std::vector<Standing>> none =
          ledger_->Standings("per-user", "u0", kT0);  // loads counters too
      ASSERT_TRUE(none.ok()) << none.status();
      ASSERT_TRUE(
          ledger_
              ->SetBudget(Budget("team", int64_t{1} << 40, {{"team", "a"}}),
                          actor, kT0)
              .ok());
      StandingOf("team");
    }
  });
  for (std::thread& thread : threads) thread.join();

  auto check = [&](absl::string_view when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(ledger_->open_holds(), 0u);
    const Standing org = StandingOf("org");
    EXPECT_EQ(org.spent_nanos, org_cost.load());
    EXPECT_EQ(org.held_nanos, 0);
    EXPECT_EQ(org.unreported_nanos, 0);
    const Standing team = StandingOf("team");
    EXPECT_EQ(team.spent_nanos, team_cost.load());
    EXPECT_EQ(team.held_nanos, 0);
    EXPECT_EQ(team.unreported_nanos, 0);
    for (int t = 0; t < kThreads; ++t) {
      const Standing user = StandingOf("per-user", kUsers[t]);
      EXPECT_EQ(user.spent_nanos, user_cost[t]) << kUsers[t];
      EXPECT_EQ(user.held_nanos, 0) << kUsers[t];
    }
  };
  check("in memory");
  Reopen();
  check("after a reopen");
}

TEST_F(RocksLedgerTest, StateChangesLeaveRecordsAnyReaderParses) {
  Set(Budget("team-a", 10'000, {{"team", "a"}}));
  const LabelSet labels = Labels({{"team", "a"}});
  const ReserveResult settled = Reserve(labels, 1000, kT0, "q1", "terms-1");
  const ReserveResult late =
      Reserve(labels, 500, kT0, "q2", "terms-2", absl::Minutes(1));
  Settle(settled.reservation_id, 0);  // a zero cost must read back as zero
  ASSERT_EQ(*ledger_->ExpireHolds(kT0 + absl::Minutes(2), nullptr), 1);
  const HoldRecord expired_record = [&] {
    ledger_.reset();
    HoldRecord r = StoredHold(dir_.path(), late.reservation_id);
    Open();
    return r;
  }();
  EXPECT_EQ(expired_record.state(), HoldRecord::STATE_EXPIRED);
  EXPECT_EQ(expired_record.cost_nanos(), 500);
  Settle(late.reservation_id, 123, kT0 + absl::Minutes(3));
  ledger_.reset();

  const HoldRecord first = StoredHold(dir_.path(), settled.reservation_id);
  EXPECT_EQ(first.state(), HoldRecord::STATE_SETTLED);
  EXPECT_EQ(first.cost_nanos(), 0);
  EXPECT_EQ(first.settled_at_micros(), absl::ToUnixMicros(kT0));
  EXPECT_FALSE(first.reported_after_expiry());
  EXPECT_EQ(first.terms(), "terms-1");
  EXPECT_EQ(first.request_id(), "q1");
  ASSERT_EQ(first.charges_size(), 1);
  EXPECT_EQ(first.charges(0).budget(), "team-a");

  const HoldRecord second = StoredHold(dir_.path(), late.reservation_id);
  EXPECT_EQ(second.state(), HoldRecord::STATE_SETTLED);
  EXPECT_EQ(second.cost_nanos(), 123);
  EXPECT_EQ(second.settled_at_micros(),
            absl::ToUnixMicros(kT0 + absl::Minutes(3)));
  EXPECT_TRUE(second.reported_after_expiry());
  EXPECT_EQ(second.terms(), "terms-2");
  EXPECT_EQ(second.estimate_nanos(), 500);
}

TEST_F(RocksLedgerTest, HoldsWrittenWholeByEarlierVersionsLoad) {
  // Earlier versions rewrote the whole record on every state change; this
  // writes records the way they did, then opens them.
  Set(Budget("team-a", 10'000, {{"team", "a"}}));
  ledger_.reset();
  auto record = [](const std::string& id, const std::string& request_id,
                   HoldRecord::State state, int64_t estimate, int64_t cost,
                   const std::string& terms) {
    HoldRecord r;
    r.set_reservation_id(id);
    r.set_request_id(request_id);
    r.set_estimate_nanos(estimate);
    r.set_created_at_micros(absl::ToUnixMicros(kT0));
    r.set_expires_at_micros(absl::ToUnixMicros(kT0 + absl::Minutes(10)));
    r.set_state(state);
    r.set_cost_nanos(cost);
    if (state != HoldRecord::STATE_OPEN) {
      r.set_settled_at_micros(absl::ToUnixMicros(kT0));
    }
    r.set_terms(terms);
    ChargeRecord* charge = r.add_charges();
    charge->set_budget("team-a");
    charge->set_instance("");
    charge->set_period_start(absl::ToUnixSeconds(kT0 - absl::Hours(12)));
    return r.SerializeAsString();
  };
  const std::string open_id = "r-0000000000000001000000000000000a";
  const std::string settled_id = "r-ffffffffffffffff0123456789abcdef";
  const std::string expired_id = "r-7fffffffffffffff8000000000000000";
  WithRawHolds(
      dir_.path(),
      [&](rocksdb::DB& db, rocksdb::ColumnFamilyHandle* holds) {
        rocksdb::WriteOptions w;
        ASSERT_TRUE(db.Put(w, holds, open_id,
                           record(open_id, "old-open", HoldRecord::STATE_OPEN,
                                  300, 0, "t-open"))
                        .ok());
        ASSERT_TRUE(
            db.Put(w, holds, settled_id,
                   record(settled_id, "old-settled", HoldRecord::STATE_SETTLED,
                          200, 150, "t-settled"))
                .ok());
        ASSERT_TRUE(db.Put(w, holds, expired_id,
                           record(expired_id, "", HoldRecord::STATE_EXPIRED,
                                  100, 100, "t-expired"))
                        .ok());
      },
      /*read_only=*/false);
  Open();
  EXPECT_EQ(ledger_->open_holds(), 1u);
  EXPECT_EQ(StandingOf("team-a", "", kT0).held_nanos, 300);

  const LabelSet labels = Labels({{"team", "a"}});
  const ReserveResult replay_open = Reserve(labels, 1, kT0, "old-open");
  EXPECT_EQ(replay_open.kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(replay_open.reservation_id, open_id);
  EXPECT_EQ(replay_open.terms, "t-open");
  const ReserveResult replay_settled = Reserve(labels, 1, kT0, "old-settled");
  EXPECT_EQ(replay_settled.kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(replay_settled.reservation_id, settled_id);
  EXPECT_EQ(replay_settled.terms, "t-settled");

  const SettleResult again = Settle(settled_id, 999);
  EXPECT_TRUE(again.already_reported);
  EXPECT_EQ(again.cost_nanos, 150);
  absl::StatusOr<HoldView> expired = ledger_->GetHold(expired_id);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(expired->state, HoldState::kExpired);
  EXPECT_EQ(expired->terms, "t-expired");
  EXPECT_THAT(expired->charges, ElementsAre(std::make_pair(
                                    std::string("team-a"), std::string(""))));
  EXPECT_TRUE(Settle(expired_id, 40).after_expiry);
  EXPECT_EQ(Settle(open_id, 250).cost_nanos, 250);
  const Standing after = StandingOf("team-a", "", kT0);
  EXPECT_EQ(after.held_nanos, 0);
  EXPECT_EQ(after.spent_nanos, 250 + 40 - 100);  // no counters were stored
}

TEST_F(RocksLedgerTest, KeysThatAreNotReservationIdsAreDataLoss) {
  ledger_.reset();
  WithRawHolds(
      dir_.path(),
      [&](rocksdb::DB& db, rocksdb::ColumnFamilyHandle* holds) {
        ASSERT_TRUE(
            db.Put(rocksdb::WriteOptions(), holds, "r-ABC", "garbage").ok());
      },
      /*read_only=*/false);
  RocksLedgerOptions options;
  options.path = dir_.path();
  const absl::StatusOr<std::unique_ptr<Ledger>> reopened =
      OpenRocksLedger(options);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr("r-ABC"));
}

TEST_F(RocksLedgerTest, MalformedReservationIdsAreUnknown) {
  Set(Budget("b", 1000));
  const ReserveResult r = Reserve(Labels({}), 10);
  std::string upper = r.reservation_id;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  for (const std::string& bad :
       {upper, r.reservation_id.substr(1), r.reservation_id + "0",
        std::string("r-") + std::string(32, 'g')}) {
    EXPECT_EQ(ledger_->GetHold(bad).status().code(),
              absl::StatusCode::kNotFound)
        << bad;
    EXPECT_EQ(
        ledger_->Settle(bad, 1, kT0, nullptr, {}, nullptr).status().code(),
        absl::StatusCode::kNotFound)
        << bad;
  }
}

TEST_F(RocksLedgerTest, SettledHoldsStillShowTheirTermsAndCharges) {
  Set(Budget("org", 10'000));
  Set(Budget("per-user", 10'000, {}, "user"));
  const ReserveResult r =
      Reserve(Labels({{"user", "u1"}}), 100, kT0, "q", "the terms");
  Settle(r.reservation_id, 60);
  for (int pass = 0; pass < 2; ++pass) {
    absl::StatusOr<HoldView> view = ledger_->GetHold(r.reservation_id);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->state, HoldState::kSettled);
    EXPECT_EQ(view->cost_nanos, 60);
    EXPECT_EQ(view->estimate_nanos, 100);
    EXPECT_EQ(view->terms, "the terms");
    EXPECT_THAT(
        view->charges,
        UnorderedElementsAre(
            std::make_pair(std::string("org"), std::string("")),
            std::make_pair(std::string("per-user"), std::string("u1"))));
    Reopen();
  }
}

TEST_F(RocksLedgerTest, ForEachOpenHoldVisitsOpenHoldsWithTheirTerms) {
  Set(Budget("b", 10'000));
  const ReserveResult a = Reserve(Labels({}), 10, kT0, "", "terms-a");
  const ReserveResult b = Reserve(Labels({}), 20, kT0, "", "terms-b");
  const ReserveResult c =
      Reserve(Labels({}), 30, kT0, "", "terms-c", absl::Minutes(1));
  Settle(a.reservation_id, 5);
  ASSERT_EQ(*ledger_->ExpireHolds(kT0 + absl::Minutes(2), nullptr), 1);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<std::string> seen;
    ledger_->ForEachOpenHold([&](const HoldView& h) {
      seen.push_back(
          absl::StrCat(h.reservation_id, " ", h.terms, " ", h.estimate_nanos));
    });
    EXPECT_THAT(seen,
                ElementsAre(absl::StrCat(b.reservation_id, " terms-b 20")));
    Reopen();
  }
  (void)c;
}

// Few open holds among many settled ones (a restart's usual case): the
// open ones are read by point reads and come back in key order.
TEST_F(RocksLedgerTest, ForEachOpenHoldFindsFewOpenHoldsAmongManySettled) {
  Set(Budget("b", 1'000'000));
  std::vector<std::string> expected;
  for (int i = 0; i < 600; ++i) {
    const std::string terms = absl::StrCat("terms-", i);
    const ReserveResult r = Reserve(Labels({}), 10, kT0, "", terms);
    if (i % 20 == 0) {
      expected.push_back(absl::StrCat(r.reservation_id, " ", terms));
    } else {
      Settle(r.reservation_id, 5);
    }
  }
  std::sort(expected.begin(), expected.end());
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(VisitedOpenHolds(), expected);
    Reopen();
  }
}

// Decision 025: only the open holds reserved with visit_on_restore are
// visited (and read), by point reads when they are few among the stored
// holds and by the scan when they are many; the flag survives a reopen.
TEST_F(RocksLedgerTest, ForEachOpenHoldVisitsOnlyHoldsFlaggedVisitOnRestore) {
  Set(Budget("b", 1'000'000'000));
  struct Case {
    int holds;
    int flag_one_in;  // every n-th hold is flagged
  };
  // 40 holds, 20 flagged of which 10 stay open: the scan. Then 600 more,
  // 30 flagged of which 15 stay open: 25 to visit among 640, point reads.
  std::vector<std::string> expected;
  size_t open = 0;
  for (const Case& c : {Case{40, 2}, Case{600, 20}}) {
    SCOPED_TRACE(
        absl::StrCat(c.holds, " holds, one in ", c.flag_one_in, " flagged"));
    for (int i = 0; i < c.holds; ++i) {
      const LabelSet labels = Labels({});
      const std::string terms = absl::StrCat("terms-", c.holds, "-", i);
      ReserveRequest request;
      request.labels = &labels;
      request.estimate_nanos = 10;
      request.terms = terms;
      request.visit_on_restore = i % c.flag_one_in == 0;
      absl::StatusOr<ReserveResult> r = ledger_->Reserve(request, kT0);
      ASSERT_TRUE(r.ok()) << r.status();
      // Every other flagged hold and every third unflagged one is settled.
      const bool settle =
          request.visit_on_restore ? (i / c.flag_one_in) % 2 : i % 3 == 0;
      if (settle) {
        Settle(r->reservation_id, 5);
      } else {
        ++open;
        if (request.visit_on_restore) {
          expected.push_back(absl::StrCat(r->reservation_id, " ", terms));
        }
      }
    }
    std::sort(expected.begin(), expected.end());
    for (int pass = 0; pass < 2; ++pass) {
      SCOPED_TRACE(pass == 0 ? "as reserved" : "after a reopen");
      EXPECT_EQ(ledger_->open_holds(), open);
      EXPECT_EQ(VisitedOpenHolds(), expected);
      Reopen();
    }
  }
}

// Records stored before the flag existed have no skip_on_restore: their open
// holds are visited, as every open hold was before (decision 025).
TEST_F(RocksLedgerTest, OpenHoldsStoredBeforeTheFlagAreVisited) {
  Set(Budget("b", 10'000));
  auto reserve = [&](absl::string_view terms, bool visit) {
    const LabelSet labels = Labels({});
    ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = 10;
    request.terms = terms;
    request.visit_on_restore = visit;
    absl::StatusOr<ReserveResult> r = ledger_->Reserve(request, kT0);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->reservation_id : std::string();
  };
  const std::string old_id = reserve("old", false);
  const std::string skipped_id = reserve("skipped", false);
  const std::string visited_id = reserve("visited", true);
  ledger_.reset();
  EXPECT_TRUE(StoredHold(dir_.path(), skipped_id).skip_on_restore());
  EXPECT_FALSE(StoredHold(dir_.path(), visited_id).skip_on_restore());
  // `old_id`'s record as an earlier version wrote it: without the field.
  WithRawHolds(
      dir_.path(),
      [&](rocksdb::DB& db, rocksdb::ColumnFamilyHandle* holds) {
        std::string bytes;
        ASSERT_TRUE(db.Get(rocksdb::ReadOptions(), holds, old_id, &bytes).ok());
        HoldRecord record;
        ASSERT_TRUE(record.ParseFromString(bytes));
        record.clear_skip_on_restore();
        bytes = record.SerializeAsString();
        ASSERT_TRUE(db.Put(rocksdb::WriteOptions(), holds, old_id, bytes).ok());
      },
      /*read_only=*/false);
  Open();
  EXPECT_EQ(ledger_->open_holds(), 3u);
  std::vector<std::string> expected = {absl::StrCat(old_id, " old"),
                                       absl::StrCat(visited_id, " visited")};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(VisitedOpenHolds(), expected);
}

TEST_F(RocksLedgerTest, ExpiredHoldsComeBackWithTheirTerms) {
  Set(Budget("b", 10'000));
  const ReserveResult r =
      Reserve(Labels({}), 30, kT0, "q", "terms", absl::Minutes(1));
  std::vector<HoldView> expired;
  ASSERT_EQ(*ledger_->ExpireHolds(kT0 + absl::Minutes(2), &expired), 1);
  ASSERT_THAT(expired, SizeIs(1));
  EXPECT_EQ(expired[0].reservation_id, r.reservation_id);
  EXPECT_EQ(expired[0].state, HoldState::kExpired);
  EXPECT_EQ(expired[0].cost_nanos, 30);
  EXPECT_EQ(expired[0].terms, "terms");
  EXPECT_THAT(expired[0].charges,
              ElementsAre(std::make_pair(std::string("b"), std::string(""))));
}

// With 2 bits of hash, 40 request_ids share 4 hash values: every replay must
// still find its own hold, before and after a reopen and across pruning.
TEST_F(RocksLedgerTest, RequestIdsWhoseHashesCollideReplayExactly) {
  request_id_hash_bits_ = 2;
  Reopen();
  Set(Budget("b", 1'000'000));
  constexpr int kRequests = 40;
  std::vector<ReserveResult> first;
  for (int i = 0; i < kRequests; ++i) {
    first.push_back(Reserve(Labels({}), 10, kT0, absl::StrCat("req-", i),
                            absl::StrCat("terms-", i),
                            i % 2 == 0 ? absl::Minutes(1) : absl::Hours(5)));
    ASSERT_EQ(first.back().kind, ReserveResult::Kind::kReserved);
  }
  auto expect_replays = [&](absl::Time now, int from) {
    for (int i = from; i < kRequests; ++i) {
      const ReserveResult again =
          Reserve(Labels({}), 10, now, absl::StrCat("req-", i));
      EXPECT_EQ(again.kind, ReserveResult::Kind::kReplayed) << i;
      EXPECT_EQ(again.reservation_id, first[i].reservation_id) << i;
      EXPECT_EQ(again.terms, absl::StrCat("terms-", i)) << i;
    }
  };
  expect_replays(kT0, 0);
  EXPECT_EQ(ledger_->open_holds(), static_cast<size_t>(kRequests));
  Reopen();
  expect_replays(kT0, 0);
  EXPECT_EQ(ledger_->open_holds(), static_cast<size_t>(kRequests));

  // Settle the first ten; expire the even ones; prune what is finished.
  for (int i = 0; i < 10; ++i) Settle(first[i].reservation_id, 1);
  const absl::Time later = kT0 + absl::Hours(2);
  ASSERT_TRUE(ledger_->ExpireHolds(later, nullptr).ok());  // expires
  ASSERT_TRUE(
      ledger_->ExpireHolds(later + absl::Hours(1) + absl::Seconds(1),
                           nullptr)
          .ok());  // prunes settled and expired
  // The odd ones from 11 on are still open and replay; the pruned ones are
  // forgotten: their request_id reserves anew.
  const absl::Time now = later + absl::Hours(1) + absl::Seconds(2);
  for (int i = 11; i < kRequests; i += 2) {
    const ReserveResult again =
        Reserve(Labels({}), 10, now, absl::StrCat("req-", i));
    EXPECT_EQ(again.kind, ReserveResult::Kind::kReplayed) << i;
    EXPECT_EQ(again.reservation_id, first[i].reservation_id) << i;
  }
  const ReserveResult fresh = Reserve(Labels({}), 10, now, "req-0", "new");
  EXPECT_EQ(fresh.kind, ReserveResult::Kind::kReserved);
  EXPECT_NE(fresh.reservation_id, first[0].reservation_id);
  Reopen();
  EXPECT_EQ(Reserve(Labels({}), 10, now, "req-0").reservation_id,
            fresh.reservation_id);
  for (int i = 11; i < kRequests; i += 2) {
    EXPECT_EQ(
        Reserve(Labels({}), 10, now, absl::StrCat("req-", i)).reservation_id,
        first[i].reservation_id)
        << i;
  }
}

// --- Sync modes ----------------------------------------------------------

TEST(SyncModeTest, Parse) {
  EXPECT_EQ(*ParseSyncMode("none"), SyncMode::kNone);
  EXPECT_EQ(*ParseSyncMode("group"), SyncMode::kGroup);
  EXPECT_EQ(*ParseSyncMode("always"), SyncMode::kAlways);
  for (const char* bad : {"", "Group", "fsync", "always "}) {
    const absl::StatusOr<SyncMode> parsed = ParseSyncMode(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("none, group, always"));
  }
  EXPECT_THAT(ParseSyncMode("fsync").status().message(), HasSubstr("fsync"));
}

class SyncModesTest : public ::testing::TestWithParam<SyncMode> {};

TEST_P(SyncModesTest, OpensWritesAndReopens) {
  TempDir dir;
  RocksLedgerOptions options;
  options.path = dir.path();
  options.sync = GetParam();
  std::string id;
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = OpenRocksLedger(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ASSERT_TRUE(
        (*ledger)->SetBudget(Budget("b", 1000), Actor{"a", ""}, kT0).ok());
    const LabelSet labels;
    ReserveRequest request;
    request.labels = &labels;
    request.estimate_nanos = 300;
    absl::StatusOr<ReserveResult> reserved = (*ledger)->Reserve(request, kT0);
    ASSERT_TRUE(reserved.ok()) << reserved.status();
    ASSERT_EQ(reserved->kind, ReserveResult::Kind::kReserved);
    id = reserved->reservation_id;
    ASSERT_TRUE((*ledger)->Settle(id, 120, kT0, nullptr, {}, nullptr).ok());
    request.estimate_nanos = 50;
    ASSERT_TRUE((*ledger)->Reserve(request, kT0).ok());
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = OpenRocksLedger(options);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  absl::StatusOr<std::vector<Standing>> standings =
      (*ledger)->Standings("b", "", kT0);
  ASSERT_TRUE(standings.ok()) << standings.status();
  ASSERT_THAT(*standings, SizeIs(1));
  EXPECT_EQ((*standings)[0].spent_nanos, 120);
  EXPECT_EQ((*standings)[0].held_nanos, 50);
  absl::StatusOr<HoldView> hold = (*ledger)->GetHold(id);
  ASSERT_TRUE(hold.ok()) << hold.status();
  EXPECT_EQ(hold->state, HoldState::kSettled);
}

INSTANTIATE_TEST_SUITE_P(AllModes, SyncModesTest,
                         ::testing::Values(SyncMode::kNone, SyncMode::kGroup,
                                           SyncMode::kAlways),
                         [](const ::testing::TestParamInfo<SyncMode>& info) {
                           switch (info.param) {
                             case SyncMode::kNone:
                               return std::string("None");
                             case SyncMode::kGroup:
                               return std::string("Group");
                             case SyncMode::kAlways:
                               return std::string("Always");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace bursar::storage

namespace bursar::storage {
namespace {

class SideCounterTest : public RocksLedgerTest {
 protected:
  std::vector<std::pair<std::string, int64_t>> All(
      absl::string_view from = "", absl::string_view to = "\xff") {
    std::vector<std::pair<std::string, int64_t>> all;
    EXPECT_TRUE(ledger_
                    ->ForEachSideCounter(from, to,
                                         [&](absl::string_view k, int64_t v) {
                                           all.emplace_back(std::string(k), v);
                                         })
                    .ok());
    return all;
  }
};

TEST_F(SideCounterTest, WrittenWithTheHoldAndTheSettlementOnly) {
  Set(Budget("x", 1000));
  const LabelSet labels = Labels({});
  const SideCounterDelta taken[] = {{"a/1", 5}, {"b/1", 7}};
  ReserveRequest request;
  request.labels = &labels;
  request.estimate_nanos = 10;
  request.side_counters = taken;
  absl::StatusOr<ReserveResult> reserved = ledger_->Reserve(request, kT0);
  ASSERT_TRUE(reserved.ok());
  ASSERT_EQ(reserved->kind, ReserveResult::Kind::kReserved);
  request.dry_run = true;  // a dry run writes nothing
  ASSERT_TRUE(ledger_->Reserve(request, kT0).ok());

  const SideCounterDelta corrected[] = {{"a/1", -2}};
  ASSERT_TRUE(ledger_
                  ->Settle(reserved->reservation_id, 3, kT0, nullptr, corrected,
                           nullptr)
                  .ok());
  // Already reported: the counters do not move again.
  ASSERT_TRUE(ledger_
                  ->Settle(reserved->reservation_id, 3, kT0, nullptr, corrected,
                           nullptr)
                  .ok());
  Reopen();
  EXPECT_THAT(
      All(), ::testing::ElementsAre(std::pair<std::string, int64_t>{"a/1", 3},
                                    std::pair<std::string, int64_t>{"b/1", 7}));
  EXPECT_THAT(All("b", "c"), ::testing::SizeIs(1));

  ASSERT_TRUE(ledger_->DeleteSideCounters("a", "b").ok());
  Reopen();
  EXPECT_THAT(
      All(), ::testing::ElementsAre(std::pair<std::string, int64_t>{"b/1", 7}));
  // Budget counters are apart from side counters.
  EXPECT_EQ(StandingOf("x").spent_nanos, 3);
}

}  // namespace
}  // namespace bursar::storage
