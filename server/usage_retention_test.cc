// Pruning the usage rollups: rows older than the retention go (attribution
// and KPI rows of every scope), newer ones and signals stay; pruning is
// paced by the (fake) clock.

#include "server/usage_retention.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/clock.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

const absl::Time kNow = absl::FromCivil(
    absl::CivilSecond(2026, 3, 16, 10, 30, 0), absl::UTCTimeZone());

class UsageRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> storage =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
  }

  void Record(absl::Time at, const char* budget, const char* instance) {
    storage::UsageUpdate update;
    update.time = at;
    update.model = "m";
    update.budgets = {{budget, instance}};
    update.counts.cost_nanos = 7;
    update.counts.requests = 1;
    ASSERT_TRUE(storage_.usage->Record(update).ok());
  }

  // The hours of the KPI rows of a scope, as "hours ago".
  std::vector<int64_t> KpiHoursAgo(const char* budget, const char* instance) {
    std::vector<int64_t> out;
    auto rows = storage_.usage->KpiRows(budget, instance, absl::UnixEpoch(),
                                        kNow + absl::Hours(1));
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    for (const auto& [hour, counts] : *rows) {
      out.push_back((absl::FromCivil(absl::CivilHour(2026, 3, 16, 10),
                                     absl::UTCTimeZone()) -
                     hour) /
                    absl::Hours(1));
    }
    return out;
  }

  int64_t AttributionCost() {
    auto rows = storage_.usage->Rows(absl::UnixEpoch(), kNow + absl::Hours(1));
    EXPECT_TRUE(rows.ok()) << rows.status();
    int64_t cost = 0;
    if (rows.ok()) {
      for (const storage::UsageRow& row : *rows) cost += row.counts.cost_nanos;
    }
    return cost;
  }

  bursar::testing::TempDir dir_;
  storage::RocksStorage storage_;
};

TEST_F(UsageRetentionTest, DeletesRowsOlderThanTheRetentionOnlyWhenDue) {
  const absl::Duration day = absl::Hours(24);
  for (const char* budget : {"team", "zeta"}) {
    for (const char* instance : {"", "u1"}) {
      Record(kNow - 500 * day, budget, instance);
      // The hours 09:00 and 11:00 ten days ago.
      Record(kNow - 10 * day - absl::Minutes(31), budget, instance);
      Record(kNow - 10 * day + absl::Minutes(31), budget, instance);
      Record(kNow, budget, instance);
    }
  }
  // Each Record adds a call row and a budget row: 2 rows of 7 nanos.
  EXPECT_EQ(AttributionCost(), 16 * 2 * 7);
  storage::Signal signal;
  signal.name = "accuracy";
  signal.value = 0.97;
  ASSERT_TRUE(storage_.usage->PutSignal(signal).ok());

  FakeClock clock(kNow);
  UsageRetention retention(storage_.usage.get(), &clock, 10 * day);
  ASSERT_EQ(retention.MaybePrune().value(), true);
  // The hour 10 days ago (09:00 .. 10:00 UTC when now is 10:30) started
  // before the hour of the cutoff (10:00): gone; the one after it stays.
  for (const char* budget : {"team", "zeta"}) {
    for (const char* instance : {"", "u1"}) {
      EXPECT_THAT(KpiHoursAgo(budget, instance),
                  ::testing::ElementsAre(10 * 24 - 1, 0))
          << budget << "/" << instance;
    }
  }
  EXPECT_EQ(AttributionCost(), 8 * 2 * 7);
  EXPECT_TRUE(storage_.usage->GetSignal("accuracy").has_value());

  // Not again within the hour; again after it.
  Record(kNow - 20 * day, "team", "");
  clock.Advance(absl::Minutes(59));
  EXPECT_EQ(retention.MaybePrune().value(), false);
  EXPECT_EQ(AttributionCost(), 9 * 2 * 7);
  clock.Advance(absl::Minutes(1));
  EXPECT_EQ(retention.MaybePrune().value(), true);
  EXPECT_EQ(AttributionCost(), 8 * 2 * 7);
}

}  // namespace
}  // namespace bursar::server
