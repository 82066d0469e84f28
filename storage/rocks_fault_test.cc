// Write and fsync failures (a full disk, an I/O error) injected under the
// real RocksDB (FaultInjectionFs): a failed call changes neither memory nor
// disk, nothing acknowledged is lost, and an idempotent retry succeeds once
// the disk is back — also across a reopen. Every sync mode.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
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

// Holds one ledger write in flight (RocksLedgerOptions::before_write_for_test
// runs after the ledger has changed memory and released its lock): Arm(),
// start the call on a thread, AwaitHeld(), do things meanwhile, then
// Release(fail). With fail, that write fails as on a full disk; every later
// write switches the disk back to working first, so only the held write
// fails. Counts the calls that start waiting for a write
// (on_wait_for_write_for_test). No timing: every wait is on a state.
class WriteGate {
 public:
  explicit WriteGate(FaultInjectionFs* fs) : fs_(fs) {}

  void Arm() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
    released_ = false;
  }
  void AwaitHeld() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&held_));
  }
  void Release(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_held_ = fail;
    released_ = true;
  }
  // Until `waiters` calls have started waiting or `done` is set (the call
  // that should wait returned instead).
  void AwaitWaitersOrDone(int waiters, const bool* done) {
    absl::MutexLock lock(&mu_);
    struct State {
      const WriteGate* gate;
      int waiters;
      const bool* done;
      static bool Ready(const State* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return s->gate->waiters_ >= s->waiters || *s->done;
      }
    };
    const State state{this, waiters, done};
    mu_.Await(absl::Condition(&State::Ready, &state));
  }
  // Sets *flag under the gate's mutex (for AwaitWaitersOrDone).
  void SetDone(bool* flag) {
    absl::MutexLock lock(&mu_);
    *flag = true;
  }
  int waiters() {
    absl::MutexLock lock(&mu_);
    return waiters_;
  }

  void BeforeWrite() {
    absl::MutexLock lock(&mu_);
    if (!armed_) {
      if (healing_) fs_->FailWrites(false);
      return;
    }
    armed_ = false;
    held_ = true;
    mu_.Await(absl::Condition(&released_));
    held_ = false;
    if (fail_held_) {
      fs_->FailWrites(true);
      healing_ = true;
    }
  }
  void OnWait() {
    absl::MutexLock lock(&mu_);
    ++waiters_;
  }

 private:
  FaultInjectionFs* const fs_;
  absl::Mutex mu_;
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_held_ ABSL_GUARDED_BY(mu_) = false;
  bool healing_ ABSL_GUARDED_BY(mu_) = false;
  int waiters_ ABSL_GUARDED_BY(mu_) = 0;
};

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
    options.before_write_for_test = [this] { gate_.BeforeWrite(); };
    options.on_wait_for_write_for_test = [this] { gate_.OnWait(); };
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

  template <typename Result>
  struct TwoCalls {
    Result first, second;
  };
  // Runs `call(0)` with its write held at the gate, then `call(1)`, which
  // must wait for the first (or finish); then lets the first write go on,
  // failing it when `fail_first`.
  template <typename Call>
  auto TwoCallsWhileTheFirstIsWritten(Call call, bool fail_first)
      -> TwoCalls<decltype(call(0))> {
    TwoCalls<decltype(call(0))> calls;
    gate_.Arm();
    std::thread writer([&] { calls.first = call(0); });
    gate_.AwaitHeld();
    bool second_done = false;
    std::thread again([&] {
      calls.second = call(1);
      gate_.SetDone(&second_done);
    });
    gate_.AwaitWaitersOrDone(1, &second_done);
    gate_.Release(fail_first);
    writer.join();
    again.join();
    if (fail_first) fs_.FailWrites(false);  // only the held write was to fail
    return calls;
  }

  // Reports `id` twice, at a cost of 40 and then of 60, the first one held.
  TwoCalls<absl::StatusOr<SettleResult>> ReportTwiceWhileTheFirstIsWritten(
      const std::string& id, bool fail_first) {
    return TwoCallsWhileTheFirstIsWritten(
        [&](int i) {
          return ledger().Settle(id, i == 0 ? 40 : 60, kT0, nullptr, {},
                                 nullptr);
        },
        fail_first);
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
  WriteGate gate_{&fs_};
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
  absl::StatusOr<SettleResult> failed =
      ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kUnavailable)
      << failed.status();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().spent_nanos, 0);
  absl::StatusOr<HoldView> hold = ledger().GetHold(id);
  ASSERT_TRUE(hold.ok());
  EXPECT_EQ(hold->state, HoldState::kOpen);

  fs_.FailWrites(false);
  absl::StatusOr<SettleResult> settled =
      ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
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
  absl::StatusOr<SettleResult> settled =
      ledger().Settle(id, 40, kT0, nullptr, {}, nullptr);
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

// Decision 021: the ledger writes without its lock. A Reserve whose write
// is in flight is counted as held by every other Check (which may deny, and
// never overshoots); when its write fails it takes back exactly its own
// hold, not the state it saw (another Reserve succeeded meanwhile).
TEST_P(RocksFaultTest, AFailedReserveTakesBackOnlyItsOwnHold) {
  gate_.Arm();
  absl::StatusOr<ReserveResult> first;
  std::thread writer([&] { first = Reserve("a", 300); });
  gate_.AwaitHeld();
  EXPECT_EQ(Figures().held_nanos, 300);
  EXPECT_EQ(ledger().open_holds(), 1u);

  absl::StatusOr<ReserveResult> second = Reserve("b", 200);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->kind, ReserveResult::Kind::kReserved);
  EXPECT_EQ(Figures().held_nanos, 500);
  // 300 (not yet written) + 200 + 600 > 1000.
  absl::StatusOr<ReserveResult> third = Reserve("c", 600);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->kind, ReserveResult::Kind::kDenied);

  gate_.Release(/*fail=*/true);
  writer.join();
  fs_.FailWrites(false);  // only the held write was to fail
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable)
      << first.status();
  EXPECT_EQ(Figures().held_nanos, 200);
  EXPECT_EQ(ledger().open_holds(), 1u);

  // Memory equals disk.
  Reopen();
  EXPECT_EQ(Figures().held_nanos, 200);
  EXPECT_EQ(ledger().open_holds(), 1u);
  EXPECT_TRUE(ledger().GetHold(second->reservation_id).ok());
}

// A failed Settle puts the hold back open with its estimate held, undoing
// its own deltas while another Settle on the same budget succeeded.
TEST_P(RocksFaultTest, AFailedSettleUndoesOnlyItsOwnDeltas) {
  absl::StatusOr<ReserveResult> h1 = Reserve("q1");
  absl::StatusOr<ReserveResult> h2 = Reserve("q2");
  ASSERT_TRUE(h1.ok() && h2.ok());
  gate_.Arm();
  absl::StatusOr<SettleResult> first;
  std::thread writer([&] {
    first = ledger().Settle(h1->reservation_id, 40, kT0, nullptr, {}, nullptr);
  });
  gate_.AwaitHeld();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().spent_nanos, 40);

  absl::StatusOr<SettleResult> second =
      ledger().Settle(h2->reservation_id, 70, kT0, nullptr, {}, nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Figures().held_nanos, 0);
  EXPECT_EQ(Figures().spent_nanos, 110);

  gate_.Release(/*fail=*/true);
  writer.join();
  fs_.FailWrites(false);  // only the held write was to fail
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable)
      << first.status();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().spent_nanos, 70);
  absl::StatusOr<HoldView> hold = ledger().GetHold(h1->reservation_id);
  ASSERT_TRUE(hold.ok()) << hold.status();
  EXPECT_EQ(hold->state, HoldState::kOpen);
  EXPECT_EQ(ledger().open_holds(), 1u);

  absl::StatusOr<SettleResult> retried =
      ledger().Settle(h1->reservation_id, 40, kT0, nullptr, {}, nullptr);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_FALSE(retried->already_reported);
  EXPECT_EQ(Figures().held_nanos, 0);
  EXPECT_EQ(Figures().spent_nanos, 110);
  Reopen();
  EXPECT_EQ(Figures().held_nanos, 0);
  EXPECT_EQ(Figures().spent_nanos, 110);
}

// A Check retried with the same request_id while the first one's write is
// in flight waits for that write (the record it would read is not on disk
// yet) and replays the reservation.
TEST_P(RocksFaultTest, AReplayWaitsForTheFirstWrite) {
  const auto [first, replay] = TwoCallsWhileTheFirstIsWritten(
      [&](int) { return Reserve("q1"); }, /*fail_first=*/false);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(first->kind, ReserveResult::Kind::kReserved);
  EXPECT_EQ(replay->kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(replay->reservation_id, first->reservation_id);
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(gate_.waiters(), 1);
}

// If the first write fails, the waiting retry finds no reservation for its
// request_id and reserves anew (it is the client's retry of a Check that
// was never acknowledged).
TEST_P(RocksFaultTest, AReplayOfAFailedFirstWriteReservesAnew) {
  const auto [first, replay] = TwoCallsWhileTheFirstIsWritten(
      [&](int) { return Reserve("q1"); }, /*fail_first=*/true);
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable)
      << first.status();
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->kind, ReserveResult::Kind::kReserved);
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(ledger().open_holds(), 1u);
  Reopen();
  EXPECT_EQ(Figures().held_nanos, 100);
  absl::StatusOr<ReserveResult> again = Reserve("q1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->kind, ReserveResult::Kind::kReplayed);
  EXPECT_EQ(again->reservation_id, replay->reservation_id);
}

// A second Report of a hold whose first Report is being written waits for
// it: "already reported" only once the first is written. Here the first
// fails, so the second one settles the hold with its own cost.
TEST_P(RocksFaultTest, ASecondReportWaitsForTheFirstAndSettlesIfItFailed) {
  absl::StatusOr<ReserveResult> reserved = Reserve("q1");
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  const std::string id = reserved->reservation_id;
  const auto [first, second] =
      ReportTwiceWhileTheFirstIsWritten(id, /*fail_first=*/true);
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable)
      << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->already_reported);
  EXPECT_EQ(second->cost_nanos, 60);
  EXPECT_EQ(Figures().spent_nanos, 60);
  EXPECT_EQ(Figures().held_nanos, 0);
  Reopen();
  EXPECT_EQ(Figures().spent_nanos, 60);
  absl::StatusOr<HoldView> hold = ledger().GetHold(id);
  ASSERT_TRUE(hold.ok()) << hold.status();
  EXPECT_EQ(hold->state, HoldState::kSettled);
  EXPECT_EQ(hold->cost_nanos, 60);
}

// The same, when the first Report's write succeeds: the second is "already
// reported" with the first one's cost.
TEST_P(RocksFaultTest, ASecondReportWaitsForTheFirstAndRepeatsIt) {
  absl::StatusOr<ReserveResult> reserved = Reserve("q1");
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  const std::string id = reserved->reservation_id;
  const auto [first, second] =
      ReportTwiceWhileTheFirstIsWritten(id, /*fail_first=*/false);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->already_reported);
  EXPECT_EQ(second->cost_nanos, 40);
  EXPECT_EQ(gate_.waiters(), 1);
  EXPECT_EQ(Figures().spent_nanos, 40);
}

// Expiry skips a hold whose Settle is in flight (memory already says
// settled) and one whose first write is in flight (no record yet); a failed
// Settle puts the hold back, and the next round expires it.
TEST_P(RocksFaultTest, ExpiryLeavesHoldsBeingWrittenAlone) {
  absl::StatusOr<ReserveResult> reserved = Reserve("q1", 100, absl::Minutes(1));
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  gate_.Arm();
  absl::StatusOr<SettleResult> settled;
  std::thread settling([&] {
    settled = ledger().Settle(reserved->reservation_id, 40, kT0, nullptr, {},
                              nullptr);
  });
  gate_.AwaitHeld();
  absl::StatusOr<int> expired =
      ledger().ExpireHolds(kT0 + absl::Minutes(2), nullptr);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 0);
  gate_.Release(/*fail=*/true);
  settling.join();
  fs_.FailWrites(false);  // only the held write was to fail
  EXPECT_EQ(settled.status().code(), absl::StatusCode::kUnavailable);

  gate_.Arm();
  absl::StatusOr<ReserveResult> fresh;
  std::thread reserving([&] { fresh = Reserve("q2", 100, absl::Minutes(1)); });
  gate_.AwaitHeld();
  std::vector<HoldView> views;
  expired = ledger().ExpireHolds(kT0 + absl::Minutes(2), &views);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);  // q1, back open; not q2, not written yet
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].reservation_id, reserved->reservation_id);
  gate_.Release(/*fail=*/false);
  reserving.join();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(Figures().unreported_nanos, 100);
  EXPECT_EQ(Figures().held_nanos, 100);

  expired = ledger().ExpireHolds(kT0 + absl::Minutes(2), nullptr);
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  EXPECT_EQ(Figures().unreported_nanos, 200);
  EXPECT_EQ(Figures().held_nanos, 0);
  Reopen();
  EXPECT_EQ(Figures().unreported_nanos, 200);
  EXPECT_EQ(ledger().open_holds(), 0u);
}

// A failed expiry write puts its holds back open and their estimates held,
// while a Reserve on the same budget succeeded meanwhile.
TEST_P(RocksFaultTest, AFailedExpiryUndoesOnlyItsOwnDeltas) {
  ASSERT_TRUE(Reserve("q1", 100, absl::Minutes(1)).ok());
  gate_.Arm();
  absl::StatusOr<int> expired;
  std::thread expiring(
      [&] { expired = ledger().ExpireHolds(kT0 + absl::Minutes(2), nullptr); });
  gate_.AwaitHeld();
  EXPECT_EQ(Figures().held_nanos, 0);
  EXPECT_EQ(Figures().unreported_nanos, 100);
  ASSERT_TRUE(Reserve("q2", 50, absl::Minutes(10)).ok());
  gate_.Release(/*fail=*/true);
  expiring.join();
  fs_.FailWrites(false);  // only the held write was to fail
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Figures().held_nanos, 150);
  EXPECT_EQ(Figures().unreported_nanos, 0);
  EXPECT_EQ(ledger().open_holds(), 2u);
  Reopen();
  EXPECT_EQ(Figures().held_nanos, 150);
  EXPECT_EQ(Figures().unreported_nanos, 0);
}

// Counters that a Settle in flight merges into are not loaded from disk
// until the write is over (the read could miss it). Here a hold of
// yesterday expired, memory dropped yesterday's counters when today's were
// loaded, and the late Report's write is in flight when yesterday is asked
// for again.
TEST_P(RocksFaultTest, CountersAreNotLoadedWhileAWriteToThemIsInFlight) {
  const absl::Time tomorrow = kT0 + absl::Hours(24);
  absl::StatusOr<ReserveResult> reserved = Reserve("q1", 100, absl::Minutes(1));
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  absl::StatusOr<int> expired =
      ledger().ExpireHolds(kT0 + absl::Minutes(2), nullptr);
  ASSERT_TRUE(expired.ok() && *expired == 1) << expired.status();
  EXPECT_EQ(Figures().unreported_nanos, 100);
  ASSERT_TRUE(ledger().Peek("org", labels_, tomorrow).ok());  // drops today

  gate_.Arm();
  absl::StatusOr<SettleResult> settled;
  std::thread settling([&] {
    settled = ledger().Settle(reserved->reservation_id, 40, tomorrow, nullptr,
                              {}, nullptr);
  });
  gate_.AwaitHeld();
  absl::StatusOr<std::optional<BudgetFigures>> figures;
  bool peek_done = false;
  std::thread peeking([&] {
    figures = ledger().Peek("org", labels_, kT0);
    gate_.SetDone(&peek_done);
  });
  gate_.AwaitWaitersOrDone(1, &peek_done);
  gate_.Release(/*fail=*/false);
  settling.join();
  peeking.join();
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_TRUE(settled->after_expiry);
  ASSERT_TRUE(figures.ok() && figures->has_value()) << figures.status();
  EXPECT_EQ((*figures)->spent_nanos, 40);
  EXPECT_EQ((*figures)->unreported_nanos, 0);
  EXPECT_EQ(Figures().spent_nanos, 40);
  EXPECT_EQ(Figures().unreported_nanos, 0);
  Reopen();
  EXPECT_EQ(Figures().spent_nanos, 40);
  EXPECT_EQ(Figures().unreported_nanos, 0);
}

// A budget deleted and set again while a Report of a hold charged to it is
// being written: setting it waits for that write, because if the write
// fails the hold is open again and the new budget must count it as held.
TEST_P(RocksFaultTest, ABudgetSetAgainCountsAHoldWhoseSettleFailed) {
  absl::StatusOr<ReserveResult> reserved = Reserve("q1");
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  gate_.Arm();
  absl::StatusOr<SettleResult> settled;
  std::thread settling([&] {
    settled = ledger().Settle(reserved->reservation_id, 40, kT0, nullptr, {},
                              nullptr);
  });
  gate_.AwaitHeld();
  ASSERT_TRUE(ledger().DeleteBudget("org", kFinance, kT0).ok());
  absl::StatusOr<std::pair<BudgetSpec, bool>> set;
  bool set_done = false;
  std::thread setting([&] {
    set = ledger().SetBudget(Budget("org", 1000), kFinance, kT0);
    gate_.SetDone(&set_done);
  });
  gate_.AwaitWaitersOrDone(1, &set_done);
  gate_.Release(/*fail=*/true);
  settling.join();
  setting.join();
  fs_.FailWrites(false);  // only the held write was to fail
  EXPECT_EQ(settled.status().code(), absl::StatusCode::kUnavailable)
      << settled.status();
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().spent_nanos, 0);
  EXPECT_EQ(ledger().open_holds(), 1u);
  Reopen();
  EXPECT_EQ(Figures().held_nanos, 100);
  EXPECT_EQ(Figures().spent_nanos, 0);
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
