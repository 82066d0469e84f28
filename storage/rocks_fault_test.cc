// Write and fsync failures (a full disk, an I/O error) injected under the
// real RocksDB (FaultInjectionFs): a failed call changes neither memory nor
// disk, nothing acknowledged is lost, and an idempotent retry succeeds once
// the disk is back — also across a reopen. Every sync mode.

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/fault_injection_fs.h"
#include "storage/ledger.h"
#include "storage/policy_version_store.h"
#include "storage/rocks_ledger.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::bursar::testing::TempDir;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 18, 12, 0, 0),
                                       absl::UTCTimeZone());
const Actor kFinance{"alice", "test", "finance"};

BudgetSpec Budget(std::string name, int64_t amount_nanos) {
  BudgetSpec spec;
  spec.name = std::move(name);
  spec.amount_nanos = amount_nanos;
  spec.period = Period::kDay;
  spec.timezone = "UTC";
  return spec;
}

class RocksFaultTest : public ::testing::TestWithParam<SyncMode> {
 protected:
  void SetUp() override {
    Open();
    ASSERT_TRUE(ledger().SetBudget(Budget("org", 1000), kFinance, kT0).ok());
  }

  void Open() {
    RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = GetParam();
    options.env = fs_.env();
    absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
  }

  // Closes the database (as a restart does) and opens it again.
  void Reopen() {
    storage_ = RocksStorage();
    Open();
  }

  Ledger& ledger() { return *storage_.ledger; }

  absl::StatusOr<ReserveResult> Reserve(
      absl::string_view request_id, int64_t estimate_nanos = 100,
      absl::Duration ttl = absl::Minutes(10)) {
    ReserveRequest request;
    request.labels = &labels_;
    request.estimate_nanos = estimate_nanos;
    request.request_id = request_id;
    request.ttl = ttl;
    return ledger().Reserve(request, kT0);
  }

  // The org budget's figures now.
  BudgetFigures Figures() {
    absl::StatusOr<std::optional<BudgetFigures>> figures =
        ledger().Peek("org", labels_, kT0);
    EXPECT_TRUE(figures.ok()) << figures.status();
    EXPECT_TRUE(figures.ok() && figures->has_value());
    return figures.ok() && figures->has_value() ? **figures : BudgetFigures();
  }

  FaultInjectionFs fs_;
  TempDir dir_;
  RocksStorage storage_;
  LabelSet labels_;
};

TEST_P(RocksFaultTest, AFailedReserveHoldsNothingAndItsRetryReserves) {
  fs_.FailWrites(true);
  absl::StatusOr<ReserveResult> failed = Reserve("q1");
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable)
      << failed.status();
  EXPECT_GT(fs_.failures(), 0);
  EXPECT_EQ(Figures().held_nanos, 0);
  EXPECT_EQ(ledger().open_holds(), 0u);

  // Still failing: the next call fails too and changes nothing.
  EXPECT_EQ(Reserve("q1").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Figures().held_nanos, 0);

  fs_.FailWrites(false);
  absl::StatusOr<ReserveResult> retried = Reserve("q1");
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->kind, ReserveResult::Kind::kReserved);
  EXPECT_EQ(Figures().held_nanos, 100);

  Reopen();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_TRUE(ledger().GetHold(retried->reservation_id).ok());
}

TEST_P(RocksFaultTest, AFailedSettleKeepsTheHoldAndItsRetrySettles) {
  absl::StatusOr<ReserveResult> reserved = Reserve("q1");
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  const std::string id = reserved->reservation_id;

  fs_.FailWrites(true);
  absl::StatusOr<SettleResult> failed = ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable)
      << failed.status();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().spent_nanos, 0);
  absl::StatusOr<HoldView> hold = ledger().GetHold(id);
  ASSERT_TRUE(hold.ok());
  EXPECT_EQ(hold->state, HoldState::kOpen);

  fs_.FailWrites(false);
  absl::StatusOr<SettleResult> settled = ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_EQ(settled->cost_nanos, 40);
  EXPECT_FALSE(settled->already_reported);
  EXPECT_EQ(Figures().spent_nanos, 40);
  EXPECT_EQ(Figures().held_nanos, 0);

  Reopen();
  EXPECT_EQ(Figures().spent_nanos, 40);
  EXPECT_EQ(Figures().held_nanos, 0);
}

TEST_P(RocksFaultTest, FailedBudgetChangesChangeNothing) {
  const size_t audit_before = ledger().ListAudit(100).size();
  fs_.FailWrites(true);
  EXPECT_EQ(
      ledger().SetBudget(Budget("org", 2000), kFinance, kT0).status().code(),
      absl::StatusCode::kUnavailable);
  EXPECT_EQ(
      ledger().SetBudget(Budget("team", 5), kFinance, kT0).status().code(),
      absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger().DeleteBudget("org", kFinance, kT0).code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(ledger().GetBudget("org").has_value());
  EXPECT_EQ(ledger().GetBudget("org")->amount_nanos, 1000);
  EXPECT_FALSE(ledger().GetBudget("team").has_value());
  EXPECT_EQ(ledger().ListAudit(100).size(), audit_before);

  fs_.FailWrites(false);
  ASSERT_TRUE(ledger().SetBudget(Budget("org", 2000), kFinance, kT0).ok());
  Reopen();
  ASSERT_TRUE(ledger().GetBudget("org").has_value());
  EXPECT_EQ(ledger().GetBudget("org")->amount_nanos, 2000);
  EXPECT_FALSE(ledger().GetBudget("team").has_value());
  EXPECT_EQ(ledger().ListAudit(100).size(), audit_before + 1);
}

TEST_P(RocksFaultTest, AFailedExpiryKeepsHoldsOpenUntilItSucceeds) {
  ASSERT_TRUE(Reserve("q1", 100, absl::Minutes(1)).ok());
  fs_.FailWrites(true);
  EXPECT_EQ(
      ledger().ExpireHolds(kT0 + absl::Minutes(2), nullptr).status().code(),
      absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger().open_holds(), 1u);
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().unreported_nanos, 0);

  fs_.FailWrites(false);
  absl::StatusOr<int> expired =
      ledger().ExpireHolds(kT0 + absl::Minutes(2), nullptr);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  EXPECT_EQ(Figures().held_nanos, 0);
  EXPECT_EQ(Figures().unreported_nanos, 100);
  Reopen();
  EXPECT_EQ(ledger().open_holds(), 0u);
  EXPECT_EQ(Figures().unreported_nanos, 100);
}

TEST_P(RocksFaultTest, AFailedPolicyPushActivatesNothing) {
  PolicyVersion version;
  version.id = "v1";
  version.files.push_back({"p.yaml", "kind: Policy\n"});
  fs_.FailWrites(true);
  EXPECT_EQ(storage_.policy_versions->Put(version, true, kFinance, kT0)
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(storage_.policy_versions->ActiveVersion(), "");
  EXPECT_FALSE(storage_.policy_versions->Get("v1").ok());

  fs_.FailWrites(false);
  ASSERT_TRUE(storage_.policy_versions->Put(version, true, kFinance, kT0).ok());
  EXPECT_EQ(storage_.policy_versions->ActiveVersion(), "v1");
  Reopen();
  EXPECT_EQ(storage_.policy_versions->ActiveVersion(), "v1");
}

// A failed fsync is not acknowledged. RocksDB cannot resume from it in
// place (a "fatal" background error): writes fail, naming the restart,
// until the database is reopened; after the reopen the retry (a replay by
// request_id / reservation_id, or a fresh write if the failed one did not
// survive) succeeds and counts once.
TEST_P(RocksFaultTest, AFailedFsyncIsNotAcknowledgedAndTheRetryAfterRestartIs) {
  if (GetParam() == SyncMode::kNone) GTEST_SKIP() << "no fsync to fail";
  fs_.FailSyncs(true);
  absl::StatusOr<ReserveResult> failed = Reserve("q1");
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable)
      << failed.status();

  fs_.FailSyncs(false);
  absl::StatusOr<ReserveResult> retried = Reserve("q1");
  if (!retried.ok()) {
    EXPECT_EQ(retried.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(retried.status().message(), HasSubstr("restart bursard"));
    Reopen();
    retried = Reserve("q1");
  }
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_NE(retried->kind, ReserveResult::Kind::kDenied);
  EXPECT_EQ(Figures().held_nanos, 100);
  const std::string id = retried->reservation_id;

  fs_.FailSyncs(true);
  EXPECT_EQ(ledger().Settle(id, 40, kT0, nullptr, {}, nullptr).status().code(),
            absl::StatusCode::kUnavailable);
  fs_.FailSyncs(false);
  absl::StatusOr<SettleResult> settled = ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
  if (!settled.ok()) {
    EXPECT_THAT(settled.status().message(), HasSubstr("restart bursard"));
    Reopen();
    settled = ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
  }
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_EQ(settled->cost_nanos, 40);

  Reopen();
  EXPECT_EQ(Figures().spent_nanos, 40);
  EXPECT_EQ(Figures().held_nanos, 0);
  absl::StatusOr<HoldView> hold = ledger().GetHold(id);
  ASSERT_TRUE(hold.ok()) << hold.status();
  EXPECT_EQ(hold->state, HoldState::kSettled);
}

INSTANTIATE_TEST_SUITE_P(SyncModes, RocksFaultTest,
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
