// RollupKpiView over real rollups (RocksDB in a temp dir): the rolling
// windows, the share of a partly covered hour, p95 from the histogram, and
// how a request's labels pick a per_label instance.

#include "server/kpi_rollups.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/rocks_storage.h"
#include "tests/support/temp_dir.h"

namespace bursar::server {
namespace {

using policy::KpiFigures;
using policy::KpiWindow;

const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 16, 10, 0, 0),
                                       absl::UTCTimeZone());

class KpiRollupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::RocksLedgerOptions options;
    options.path = dir_.path();
    options.sync = storage::SyncMode::kNone;
    absl::StatusOr<storage::RocksStorage> storage =
        storage::OpenRocksStorage(options);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = *std::move(storage);
    storage::BudgetSpec team;
    team.name = "team";
    team.amount_nanos = 1'000'000'000'000;
    ASSERT_TRUE(storage_.ledger->SetBudget(team, {"t"}, kT0).ok());
    storage::BudgetSpec per_user = team;
    per_user.name = "per-user";
    per_user.per_label = "user";
    ASSERT_TRUE(storage_.ledger->SetBudget(per_user, {"t"}, kT0).ok());
  }

  // Records `requests` reports of `cost` each (latency `latency`) at `at`.
  void Record(absl::Time at, int64_t cost, int64_t requests,
              absl::Duration latency, const char* budget = "team",
              const char* instance = "") {
    storage::UsageUpdate update;
    update.time = at;
    update.model = "m";
    update.budgets = {{budget, instance}};
    update.counts.cost_nanos = cost * requests;
    update.counts.requests = requests;
    update.counts.successes = requests;
    update.counts.latency_reports = requests;
    update.counts.latency_histogram[storage::LatencyBucket(latency)] = requests;
    ASSERT_TRUE(storage_.usage->Record(update).ok());
  }

  KpiFigures Figures(KpiWindow window, absl::Time now,
                     const char* budget = "team", const char* instance = "") {
    const RollupKpiView view(storage_.usage.get(), storage_.ledger.get());
    KpiFigures out;
    EXPECT_TRUE(view.Figures(budget, instance, window, now, &out));
    return out;
  }

  bursar::testing::TempDir dir_;
  storage::RocksStorage storage_;
};

TEST_F(KpiRollupsTest, WindowsAddWholeHoursAndShareOfPartlyCoveredOnes) {
  Record(kT0 + absl::Minutes(10), 100, 6, absl::Milliseconds(100));   // 10:xx
  Record(kT0 + absl::Minutes(70), 1000, 1, absl::Milliseconds(100));  // 11:xx
  // On the hour: exact.
  EXPECT_EQ(Figures(KpiWindow::kLastHour, kT0 + absl::Hours(1)).spend_nanos,
            600);
  EXPECT_EQ(Figures(KpiWindow::kLastHour, kT0 + absl::Hours(1)).requests, 6);
  // 11:30: all of 11:xx so far, half of 10:xx.
  const KpiFigures half =
      Figures(KpiWindow::kLastHour, kT0 + absl::Minutes(90));
  EXPECT_EQ(half.spend_nanos, 1000 + 300);
  EXPECT_EQ(half.requests, 1 + 3);
  // The previous hour of 11:30 is (9:30, 10:30]: half of 10:xx.
  EXPECT_EQ(
      Figures(KpiWindow::kPreviousHour, kT0 + absl::Minutes(90)).spend_nanos,
      300);
  EXPECT_EQ(Figures(KpiWindow::kLast24Hours, kT0 + absl::Hours(5)).spend_nanos,
            1600);
  // A day later at 11:30, the previous 24 hours end at 11:30 on day one:
  // all of 10:xx and half of 11:xx.
  EXPECT_EQ(Figures(KpiWindow::kPrevious24Hours,
                    kT0 + absl::Hours(24) + absl::Minutes(90))
                .spend_nanos,
            600 + 500);
  // A week later, the same hour last week.
  EXPECT_EQ(Figures(KpiWindow::kSameHourLastWeek, kT0 + absl::Hours(24 * 7 + 1))
                .spend_nanos,
            600);
  EXPECT_EQ(
      Figures(KpiWindow::kLastHour, kT0 + absl::Hours(24 * 7 + 1)).spend_nanos,
      0);
}

TEST_F(KpiRollupsTest, CachedFiguresRefreshAfterTheStalenessBound) {
  const RollupKpiView view(storage_.usage.get(), storage_.ledger.get(), nullptr,
                           absl::Seconds(1));
  auto spend = [&](absl::Time now, const char* budget = "team") {
    KpiFigures out;
    EXPECT_TRUE(view.Figures(budget, "", KpiWindow::kLastHour, now, &out));
    return out.spend_nanos;
  };
  const absl::Time t = kT0 + absl::Minutes(30);
  Record(t - absl::Minutes(1), 100, 1, absl::Milliseconds(10));
  EXPECT_EQ(spend(t), 100);
  // Within the bound the cached figures answer: a new Report is not seen.
  Record(t, 50, 1, absl::Milliseconds(10));
  EXPECT_EQ(spend(t), 100);
  EXPECT_EQ(spend(t + absl::Milliseconds(999)), 100);
  // At the bound they are computed again.
  EXPECT_EQ(spend(t + absl::Seconds(1)), 150);
  // Another scope has its own entry; an unknown budget is never cached.
  EXPECT_EQ(spend(t + absl::Seconds(1), "per-user"), 0);
  KpiFigures out;
  EXPECT_FALSE(view.Figures("nope", "", KpiWindow::kLastHour, t, &out));
  // An uncached view sees every change at once.
  Record(t + absl::Seconds(1), 25, 1, absl::Milliseconds(10));
  EXPECT_EQ(Figures(KpiWindow::kLastHour, t + absl::Seconds(1)).spend_nanos,
            175);
  EXPECT_EQ(spend(t + absl::Seconds(1)), 150);
}

// Counts the reads KPIs make (one pass over the rollups each).
class CountingUsage final : public storage::UsageStore {
 public:
  explicit CountingUsage(storage::UsageStore* inner) : inner_(inner) {}
  absl::Status Record(const storage::UsageUpdate& update) override {
    return inner_->Record(update);
  }
  absl::StatusOr<std::vector<storage::UsageRow>> Rows(
      absl::Time start, absl::Time end) const override {
    return inner_->Rows(start, end);
  }
  absl::StatusOr<std::vector<storage::KpiRowList>> ReadKpiRows(
      absl::Span<const storage::KpiRowsQuery> queries) const override {
    ++scans;
    return inner_->ReadKpiRows(queries);
  }
  absl::Status DeleteBefore(absl::Time cutoff) override {
    return inner_->DeleteBefore(cutoff);
  }
  absl::Status PutSignal(const storage::Signal& signal) override {
    return inner_->PutSignal(signal);
  }
  std::vector<storage::Signal> ListSignals() const override {
    return inner_->ListSignals();
  }
  std::optional<storage::Signal> GetSignal(
      absl::string_view name) const override {
    return inner_->GetSignal(name);
  }
  mutable int scans = 0;

 private:
  storage::UsageStore* inner_;
};

TEST_F(KpiRollupsTest, RefreshKeepsReadEntriesFreshSoReadsDoNoScans) {
  CountingUsage usage(storage_.usage.get());
  const RollupKpiView view(&usage, storage_.ledger.get(), nullptr,
                           absl::Seconds(2));
  auto spend = [&](absl::Time now) {
    KpiFigures out;
    EXPECT_TRUE(view.Figures("team", "", KpiWindow::kLastHour, now, &out));
    return out.spend_nanos;
  };
  const absl::Time t = kT0 + absl::Minutes(30);
  Record(t - absl::Minutes(1), 100, 1, absl::Milliseconds(10));
  EXPECT_EQ(spend(t), 100);  // the first read scans
  EXPECT_EQ(usage.scans, 1);
  Record(t, 50, 1, absl::Milliseconds(10));
  // The background refresh every second; reads in between scan nothing.
  for (int second = 1; second <= 5; ++second) {
    view.Refresh(t + absl::Seconds(second));
    EXPECT_EQ(spend(t + absl::Seconds(second) + absl::Milliseconds(500)), 150);
  }
  EXPECT_EQ(usage.scans, 1 + 5);
  // An entry nobody read for a minute is dropped, not refreshed.
  view.Refresh(t + absl::Minutes(2));
  EXPECT_EQ(usage.scans, 6);
  EXPECT_EQ(spend(t + absl::Minutes(2)), 150);
  EXPECT_EQ(usage.scans, 7);
}

TEST_F(KpiRollupsTest, RefreshReadsEveryEntryInOnePassAndKeepsThemApart) {
  CountingUsage usage(storage_.usage.get());
  const RollupKpiView view(&usage, storage_.ledger.get(), nullptr,
                           absl::Seconds(2));
  auto spend = [&](const char* budget, const char* instance, KpiWindow window,
                   absl::Time now) {
    KpiFigures out;
    EXPECT_TRUE(view.Figures(budget, instance, window, now, &out));
    return out.spend_nanos;
  };
  const absl::Time t = kT0 + absl::Hours(2);
  Record(t - absl::Minutes(90), 7, 1, absl::Milliseconds(10));  // previous hour
  Record(t - absl::Minutes(1), 100, 1, absl::Milliseconds(10));
  Record(t - absl::Minutes(1), 20, 1, absl::Milliseconds(10), "per-user",
         "alice");
  Record(t - absl::Minutes(1), 3, 1, absl::Milliseconds(10), "per-user", "bob");
  EXPECT_EQ(spend("team", "", KpiWindow::kLastHour, t), 100);
  EXPECT_EQ(spend("team", "", KpiWindow::kPreviousHour, t), 7);
  EXPECT_EQ(spend("per-user", "alice", KpiWindow::kLastHour, t), 20);
  EXPECT_EQ(spend("per-user", "bob", KpiWindow::kLastHour, t), 3);
  ASSERT_EQ(usage.scans, 4);

  // An hour on (on the hour again, so no bucket is partly covered).
  Record(t + absl::Minutes(10), 1000, 1, absl::Milliseconds(10), "per-user",
         "bob");
  const absl::Time next = t + absl::Hours(1);
  view.Refresh(next, /*idle=*/absl::Hours(2));
  EXPECT_EQ(usage.scans, 5);  // four entries, one read
  const absl::Time later = next + absl::Milliseconds(500);
  EXPECT_EQ(spend("team", "", KpiWindow::kLastHour, later), 0);
  EXPECT_EQ(spend("team", "", KpiWindow::kPreviousHour, later), 100);
  EXPECT_EQ(spend("per-user", "alice", KpiWindow::kLastHour, later), 0);
  EXPECT_EQ(spend("per-user", "bob", KpiWindow::kLastHour, later), 1000);
  EXPECT_EQ(usage.scans, 5);
}

TEST_F(KpiRollupsTest, P95IsTheBucketBoundOfThe95thPercentile) {
  Record(kT0 + absl::Minutes(1), 1, 94, absl::Milliseconds(100));
  Record(kT0 + absl::Minutes(2), 1, 6, absl::Seconds(3));
  // 94 of 100 under 128 ms: the 95th is in [2048, 4096) ms.
  EXPECT_EQ(Figures(KpiWindow::kLastHour, kT0 + absl::Hours(1)).p95_latency,
            absl::Milliseconds(4096));
  Record(kT0 + absl::Minutes(3), 1, 100, absl::Milliseconds(100));
  EXPECT_EQ(Figures(KpiWindow::kLastHour, kT0 + absl::Hours(1)).p95_latency,
            absl::Milliseconds(128));
  EXPECT_EQ(Figures(KpiWindow::kPreviousHour, kT0 + absl::Hours(1)).p95_latency,
            absl::ZeroDuration());
}

TEST_F(KpiRollupsTest, QualityScoresAddUp) {
  storage::UsageUpdate update;
  update.time = kT0;
  update.budgets = {{"team", ""}};
  update.counts.requests = 1;
  update.counts.quality_reports = 1;
  update.counts.quality_micros_sum = 900'000;
  ASSERT_TRUE(storage_.usage->Record(update).ok());
  update.counts.quality_micros_sum = 700'000;
  ASSERT_TRUE(storage_.usage->Record(update).ok());
  const KpiFigures f = Figures(KpiWindow::kLastHour, kT0 + absl::Hours(1));
  EXPECT_EQ(f.quality_reports, 2);
  EXPECT_EQ(f.quality_micros_sum, 1'600'000);
}

TEST_F(KpiRollupsTest, RequestsReadTheirOwnInstance) {
  Record(kT0, 5, 1, absl::Milliseconds(1), "per-user", "alice");
  Record(kT0, 7, 1, absl::Milliseconds(1), "per-user", "bob");
  const RollupKpiView view(storage_.usage.get(), storage_.ledger.get());
  storage::LabelSet alice;
  alice.Add("user", "alice");
  const RequestKpis kpis(&view, storage_.ledger.get(), storage_.usage.get(),
                         &alice);
  KpiFigures out;
  ASSERT_TRUE(kpis.Figures("per-user", KpiWindow::kLastHour,
                           kT0 + absl::Hours(1), &out));
  EXPECT_EQ(out.spend_nanos, 5);
  EXPECT_FALSE(kpis.Figures("no-such-budget", KpiWindow::kLastHour,
                            kT0 + absl::Hours(1), &out));
  const storage::LabelSet nobody;
  const RequestKpis anonymous(&view, storage_.ledger.get(),
                              storage_.usage.get(), &nobody);
  EXPECT_FALSE(anonymous.Figures("per-user", KpiWindow::kLastHour,
                                 kT0 + absl::Hours(1), &out))
      << "without the per_label label the budget does not apply";
  EXPECT_FALSE(kpis.Signal("golden-accuracy").has_value());
  ASSERT_TRUE(
      storage_.usage->PutSignal({"golden-accuracy", 0.91, "", kT0, "eval"})
          .ok());
  EXPECT_EQ(kpis.Signal("golden-accuracy"), 0.91);
}

}  // namespace
}  // namespace bursar::server
