// AlertStore on real RocksDB (OpenRocksStorage): an alert fires once per
// (rule, scope, period), also after a reopen; a new period fires again;
// listing is newest first; dead letters are kept; pending webhook
// deliveries (the outbox) are written with the alert and survive a reopen.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/alert_store.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::storage {
namespace {

using ::bursar::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;
using ::testing::StartsWith;

const absl::Time kT0 = absl::FromUnixSeconds(1'780'000'000);

AlertEntry Alert(std::string rule, std::string scope, int64_t period,
                 absl::Time at) {
  AlertEntry alert;
  alert.rule = std::move(rule);
  alert.scope = std::move(scope);
  alert.period_key = period;
  alert.period_start = absl::FromUnixSeconds(period);
  alert.fired_at = at;
  alert.severity = "warning";
  alert.message = "a message";
  alert.budget = "team";
  return alert;
}

std::vector<std::string> Rules(const std::vector<AlertEntry>& alerts) {
  std::vector<std::string> out;
  for (const AlertEntry& a : alerts) {
    out.push_back(absl::StrCat(a.rule, "@", a.period_key));
  }
  return out;
}

RocksStorage Open(const TempDir& dir) {
  RocksLedgerOptions options;
  options.path = dir.Sub("db");
  options.sync = SyncMode::kNone;
  absl::StatusOr<RocksStorage> storage = OpenRocksStorage(options);
  EXPECT_TRUE(storage.ok()) << storage.status();
  return *std::move(storage);
}

TEST(RocksAlertStoreTest, FiresOncePerRuleScopeAndPeriodAcrossReopen) {
  TempDir dir;
  {
    RocksStorage storage = Open(dir);
    AlertEntry first = Alert("budget-threshold-85", "budget:team", 1000, kT0);
    ASSERT_EQ(storage.alerts->Fire(&first).value(), true);
    EXPECT_THAT(first.id, StartsWith("al-"));
    EXPECT_THAT(first.id, SizeIs(3 + 32));
    AlertEntry again = Alert("budget-threshold-85", "budget:team", 1000,
                             kT0 + absl::Seconds(5));
    EXPECT_EQ(storage.alerts->Fire(&again).value(), false);
    EXPECT_TRUE(again.id.empty());
    // Another scope and another rule are other alerts.
    AlertEntry other = Alert("budget-threshold-85", "budget:team/alice", 1000,
                             kT0 + absl::Seconds(6));
    EXPECT_EQ(storage.alerts->Fire(&other).value(), true);
  }
  RocksStorage storage = Open(dir);
  AlertEntry after_restart = Alert("budget-threshold-85", "budget:team", 1000,
                                   kT0 + absl::Seconds(10));
  EXPECT_EQ(storage.alerts->Fire(&after_restart).value(), false);
  EXPECT_TRUE(
      storage.alerts->HasFired("budget-threshold-85", "budget:team", 1000)
          .value());
  EXPECT_FALSE(
      storage.alerts->HasFired("budget-threshold-85", "budget:team", 2000)
          .value());
  // The next period re-arms.
  AlertEntry next = Alert("budget-threshold-85", "budget:team", 2000,
                          kT0 + absl::Seconds(20));
  EXPECT_EQ(storage.alerts->Fire(&next).value(), true);
  const std::vector<AlertEntry> listed = storage.alerts->List(10).value();
  EXPECT_THAT(Rules(listed), ElementsAre("budget-threshold-85@2000",
                                         "budget-threshold-85@1000",
                                         "budget-threshold-85@1000"));
  EXPECT_EQ(listed[0].scope, "budget:team");
  EXPECT_EQ(listed[1].scope, "budget:team/alice");
  EXPECT_EQ(listed[2].message, "a message");
  EXPECT_EQ(listed[2].fired_at, kT0);
  EXPECT_EQ(listed[2].period_start, absl::FromUnixSeconds(1000));
  // Ids stay unique after the reopen and sort by firing time.
  EXPECT_GT(listed[0].id, listed[1].id);
  EXPECT_GT(listed[1].id, listed[2].id);
  EXPECT_THAT(storage.alerts->List(1).value(), SizeIs(1));
}

TEST(RocksAlertStoreTest, RejectsBadKeys) {
  TempDir dir;
  RocksStorage storage = Open(dir);
  AlertEntry empty = Alert("", "budget:team", 0, kT0);
  EXPECT_THAT(storage.alerts->Fire(&empty).status().message(),
              HasSubstr("alert rule must be"));
  AlertEntry nul = Alert("r", std::string("a\0b", 3), 0, kT0);
  EXPECT_THAT(storage.alerts->Fire(&nul).status().message(),
              HasSubstr("alert scope must be"));
}

TEST(RocksAlertStoreTest, KeepsDeadLettersNewestFirst) {
  TempDir dir;
  {
    RocksStorage storage = Open(dir);
    DeadLetter a{
        "al-1", "http://127.0.0.1:1/hook", 3, "connection refused", kT0, "{}"};
    DeadLetter b{"al-2",     "http://127.0.0.1:1/hook", 3,
                 "HTTP 500", kT0 + absl::Seconds(1),    "{\"x\":1}"};
    ASSERT_TRUE(storage.alerts->PutDeadLetter(a).ok());
    ASSERT_TRUE(storage.alerts->PutDeadLetter(b).ok());
  }
  RocksStorage storage = Open(dir);
  const std::vector<DeadLetter> letters =
      storage.alerts->ListDeadLetters(10).value();
  ASSERT_THAT(letters, SizeIs(2));
  EXPECT_EQ(letters[0].alert_id, "al-2");
  EXPECT_EQ(letters[0].last_error, "HTTP 500");
  EXPECT_EQ(letters[0].body, "{\"x\":1}");
  EXPECT_EQ(letters[1].alert_id, "al-1");
  EXPECT_EQ(letters[1].attempts, 3);
  // Dead letters are not alerts.
  EXPECT_THAT(storage.alerts->List(10).value(), SizeIs(0));
}

TEST(RocksAlertStoreTest, OutboxIsWrittenWithTheAlertAndFinishedOnce) {
  TempDir dir;
  AlertEntry first = Alert("budget-threshold-85", "budget:team", 1000, kT0);
  {
    RocksStorage storage = Open(dir);
    ASSERT_EQ(storage.alerts
                  ->Fire(&first,
                         {std::string("http://a/x"), std::string("http://b/y")})
                  .value(),
              true);
    // A repeat writes nothing, pending deliveries included.
    AlertEntry again = first;
    again.id.clear();
    ASSERT_EQ(storage.alerts->Fire(&again, {std::string("http://c/z")}).value(),
              false);
    // Without an outbox, nothing pending.
    AlertEntry other = Alert("budget-threshold-100", "budget:team", 1000, kT0);
    ASSERT_EQ(storage.alerts->Fire(&other).value(), true);
  }
  RocksStorage storage = Open(dir);
  std::vector<PendingDelivery> pending =
      storage.alerts->ListPendingDeliveries().value();
  ASSERT_THAT(pending, SizeIs(2));
  EXPECT_EQ(pending[0].alert.id, first.id);
  EXPECT_EQ(pending[0].alert.message, "a message");
  EXPECT_EQ(pending[0].url, "http://a/x");
  EXPECT_EQ(pending[1].url, "http://b/y");

  ASSERT_TRUE(
      storage.alerts->FinishDelivery(first.id, "http://a/x", nullptr).ok());
  DeadLetter letter;
  letter.alert_id = first.id;
  letter.url = "http://b/y";
  letter.attempts = 5;
  letter.failed_at = kT0;
  ASSERT_TRUE(
      storage.alerts->FinishDelivery(first.id, "http://b/y", &letter).ok());
  EXPECT_THAT(storage.alerts->ListPendingDeliveries().value(), SizeIs(0));
  EXPECT_THAT(storage.alerts->ListDeadLetters(10).value(), SizeIs(1));
  EXPECT_THAT(
      storage.alerts->FinishDelivery("al-xyz", "http://a/x", nullptr).message(),
      HasSubstr("is not an alert id"));

  // GetFired reads the stored alert back by its key.
  std::optional<AlertEntry> got =
      storage.alerts->GetFired("budget-threshold-85", "budget:team", 1000)
          .value();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, first.id);
  EXPECT_EQ(got->fired_at, kT0);
  EXPECT_FALSE(storage.alerts->GetFired("budget-threshold-85", "budget:team", 2)
                   .value()
                   .has_value());
}

}  // namespace
}  // namespace bursar::storage
