// Calendar periods reset at local midnight / the 1st in the budget's time
// zone, a reservation is charged to the period it was made in, and a hold
// never reported expires after its TTL at its estimate.
//
// The server's time comes from --testing_clock_file.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/bursard_process.h"

namespace bursar::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// gpt-4.1, 1,000 in / 500 out: 1,000 × 2,000 + 500 × 8,000 nanos.
constexpr int64_t kEstimateNanos = 6'000'000;
// Room for one such call, not two.
constexpr int64_t kAmountNanos = kEstimateNanos * 3 / 2;

// An RFC 3339 field of a response as an instant (InfinitePast if it does not
// parse), so that "Z" and "+00:00" compare equal.
absl::Time Instant(const std::string& rfc3339) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error)) {
    return absl::InfinitePast();
  }
  return t;
}

v1::CheckRequest OneCall() { return MakeCheck("gpt-4.1", 1'000, 500); }

class PeriodsTest : public ::testing::Test {
 protected:
  // Starts bursard at `start` with more flags.
  void StartAt(absl::Time start, std::vector<std::string> flags = {}) {
    clock_ = std::make_unique<ClockFile>(dir_.Sub("clock"), start);
    BursardOptions options;
    options.data_dir = dir_.Sub("data");
    options.clock_file = clock_->path();
    options.extra_flags = std::move(flags);
    server_ = std::make_unique<BursardProcess>(options, dir_.path());
    ASSERT_TRUE(server_->Start());
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

  v1::CheckResponse Check(const v1::CheckRequest& request) {
    v1::CheckResponse response;
    BURSAR_EXPECT_OK(server_->Check(request, &response));
    return response;
  }

  // Check + Report at the actual usage of the estimate.
  void SpendOneCall() {
    const v1::CheckResponse check = Check(OneCall());
    ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
    v1::ReportResponse report;
    BURSAR_ASSERT_OK(server_->Report(
        MakeReport(check.reservation_id(), 1'000, 0, 500), &report));
    ASSERT_EQ(report.cost_nanos(), kEstimateNanos);
  }

  // The daily budget in New York, across the local midnight that falls at
  // `midnight_utc`.
  void ExpectDailyResetAtLocalMidnight(absl::Time midnight_utc) {
    StartAt(midnight_utc - absl::Minutes(30));  // 23:30 local
    SetBudget(MakeBudget("ny-daily", {}, v1::PERIOD_DAY, kAmountNanos,
                         "America/New_York"));
    SpendOneCall();

    clock_->Set(midnight_utc - absl::Seconds(1));  // 23:59:59 local
    const v1::GetBudgetResponse late = Budget("ny-daily");
    EXPECT_EQ(late.spent_nanos(), kEstimateNanos);
    ASSERT_THAT(late.instances(), SizeIs(1));
    EXPECT_EQ(Instant(late.instances(0).period_start()),
              midnight_utc - absl::Hours(24))
        << late.instances(0).period_start();
    const v1::CheckResponse denied = Check(OneCall());
    EXPECT_EQ(denied.verdict(), v1::VERDICT_DENY);
    ASSERT_THAT(denied.reasons(), SizeIs(1));
    EXPECT_EQ(denied.reasons(0).rule(), "budget:ny-daily");
    EXPECT_THAT(denied.reasons(0).message(), HasSubstr("this day"));

    clock_->Set(midnight_utc);  // 00:00 local: a new day
    const v1::GetBudgetResponse fresh = Budget("ny-daily");
    EXPECT_EQ(fresh.spent_nanos(), 0);
    EXPECT_EQ(fresh.held_nanos(), 0);
    ASSERT_THAT(fresh.instances(), SizeIs(1));
    EXPECT_EQ(Instant(fresh.instances(0).period_start()), midnight_utc)
        << fresh.instances(0).period_start();
    EXPECT_EQ(Check(OneCall()).verdict(), v1::VERDICT_ALLOW);
  }

  TempDir dir_;
  std::unique_ptr<ClockFile> clock_;
  std::unique_ptr<BursardProcess> server_;
};

TEST_F(PeriodsTest, DailyBudgetResetsAtNewYorkMidnightInWinter) {
  // 2026-01-15 00:00 EST (UTC-5).
  ExpectDailyResetAtLocalMidnight(Utc(2026, 1, 15, 5, 0, 0));
}

TEST_F(PeriodsTest, DailyBudgetResetsAtNewYorkMidnightInSummer) {
  // 2026-07-15 00:00 EDT (UTC-4): at 04:00Z, not 05:00Z.
  ExpectDailyResetAtLocalMidnight(Utc(2026, 7, 15, 4, 0, 0));
}

TEST_F(PeriodsTest, MonthlyBudgetInBerlinResetsOnTheFirstLocal) {
  // Jan 31 23:30 CET (UTC+1).
  StartAt(Utc(2026, 1, 31, 22, 30, 0));
  SetBudget(MakeBudget("berlin-monthly", {}, v1::PERIOD_MONTH, kAmountNanos,
                       "Europe/Berlin"));
  // A reservation made in January and not yet reported.
  const v1::CheckResponse january = Check(OneCall());
  ASSERT_EQ(january.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(Check(OneCall()).verdict(), v1::VERDICT_DENY);
  EXPECT_EQ(Budget("berlin-monthly").held_nanos(), kEstimateNanos);

  // Feb 1 00:10 CET, still January 31 in UTC.
  clock_->Set(Utc(2026, 1, 31, 23, 10, 0));
  const v1::GetBudgetResponse february = Budget("berlin-monthly");
  EXPECT_EQ(february.spent_nanos(), 0);
  EXPECT_EQ(february.held_nanos(), 0);
  ASSERT_THAT(february.instances(), SizeIs(1));
  EXPECT_EQ(Instant(february.instances(0).period_start()),
            Utc(2026, 1, 31, 23, 0, 0))
      << february.instances(0).period_start();
  EXPECT_EQ(Instant(february.instances(0).period_end()),
            Utc(2026, 2, 28, 23, 0, 0))
      << february.instances(0).period_end();
  const v1::CheckResponse in_february = Check(OneCall());
  EXPECT_EQ(in_february.verdict(), v1::VERDICT_ALLOW);

  // The January reservation, reported in February, is January's spend.
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(january.reservation_id(), 1'000, 0, 250), &report));
  EXPECT_EQ(report.cost_nanos(), 1'000 * 2'000 + 250 * 8'000);
  EXPECT_FALSE(report.reported_after_expiry());
  const v1::GetBudgetResponse after_report = Budget("berlin-monthly");
  EXPECT_EQ(after_report.spent_nanos(), 0);
  EXPECT_EQ(after_report.held_nanos(), kEstimateNanos);  // February's call

  // Looking back at January (the clock file set back to Jan 31 23:40 CET):
  // the hold is gone and the actual cost is spent there.
  clock_->Set(Utc(2026, 1, 31, 22, 40, 0));
  const v1::GetBudgetResponse back_in_january = Budget("berlin-monthly");
  EXPECT_EQ(back_in_january.spent_nanos(), report.cost_nanos());
  EXPECT_EQ(back_in_january.held_nanos(), 0);
}

TEST_F(PeriodsTest, UnreportedReservationExpiresAtItsEstimate) {
  const absl::Time start = Utc(2026, 3, 18, 12, 0, 0);
  StartAt(start, {"--reservation_ttl=1m"});
  SetBudget(MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000));
  const v1::CheckResponse check = Check(OneCall());
  ASSERT_EQ(check.verdict(), v1::VERDICT_ALLOW);
  EXPECT_EQ(Instant(check.reservation_expires_at()), start + absl::Minutes(1))
      << check.reservation_expires_at();
  EXPECT_EQ(Budget("org").held_nanos(), kEstimateNanos);

  clock_->Advance(absl::Minutes(2));
  // The expirer runs every second; wait (bounded) until it has run.
  v1::GetBudgetResponse expired = Budget("org");
  for (int i = 0; i < 50 && expired.held_nanos() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    expired = Budget("org");
  }
  EXPECT_EQ(expired.held_nanos(), 0) << "the hold did not expire";
  EXPECT_EQ(expired.spent_nanos(), kEstimateNanos);
  ASSERT_THAT(expired.instances(), SizeIs(1));
  EXPECT_EQ(expired.instances(0).unreported_nanos(), kEstimateNanos);

  // The expiry is durable: a crash does not bring the hold back.
  ASSERT_TRUE(server_->CrashAndRestart());
  const v1::GetBudgetResponse restarted = Budget("org");
  EXPECT_EQ(restarted.held_nanos(), 0);
  EXPECT_EQ(restarted.spent_nanos(), kEstimateNanos);
  ASSERT_THAT(restarted.instances(), SizeIs(1));
  EXPECT_EQ(restarted.instances(0).unreported_nanos(), kEstimateNanos);

  // The gateway reports late: the charge is corrected to the actual cost.
  v1::ReportResponse late;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(check.reservation_id(), 1'000, 0, 100), &late));
  EXPECT_TRUE(late.reported_after_expiry());
  EXPECT_FALSE(late.already_reported());
  EXPECT_EQ(late.cost_nanos(), 1'000 * 2'000 + 100 * 8'000);
  const v1::GetBudgetResponse corrected = Budget("org");
  EXPECT_EQ(corrected.spent_nanos(), late.cost_nanos());
  EXPECT_EQ(corrected.held_nanos(), 0);
  ASSERT_THAT(corrected.instances(), SizeIs(1));
  EXPECT_EQ(corrected.instances(0).unreported_nanos(), 0);

  // Settled state survives a crash like everything else.
  ASSERT_TRUE(server_->CrashAndRestart());
  v1::ReportResponse again;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(check.reservation_id(), 1'000, 0, 100), &again));
  EXPECT_TRUE(again.already_reported());
  EXPECT_EQ(again.cost_nanos(), late.cost_nanos());
  EXPECT_EQ(Budget("org").spent_nanos(), late.cost_nanos());
}

TEST_F(PeriodsTest, ExpiredHoldIsChargedToThePeriodItWasMadeIn) {
  // Jan 31 23:30 CET; the hold expires after the month has turned.
  StartAt(Utc(2026, 1, 31, 22, 30, 0), {"--reservation_ttl=1m"});
  SetBudget(MakeBudget("berlin-monthly", {}, v1::PERIOD_MONTH, kAmountNanos,
                       "Europe/Berlin"));
  const v1::CheckResponse january = Check(OneCall());
  ASSERT_EQ(january.verdict(), v1::VERDICT_ALLOW);

  // Wait (bounded) until the expirer has settled the January hold, looking
  // at January from 23:30:30 CET, before the hold's expiry: so the expiry
  // itself can only happen while the server's time is in February.
  const absl::Time january_view = Utc(2026, 1, 31, 22, 30, 30);
  const absl::Time february_time = Utc(2026, 1, 31, 23, 10, 0);  // 00:10 CET
  clock_->Set(february_time);
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    clock_->Set(january_view);
    const bool expired = Budget("berlin-monthly").held_nanos() == 0;
    clock_->Set(february_time);
    if (expired) break;
  }
  const v1::GetBudgetResponse february = Budget("berlin-monthly");
  EXPECT_EQ(february.spent_nanos(), 0);
  EXPECT_EQ(february.held_nanos(), 0);
  EXPECT_EQ(Check(OneCall()).verdict(), v1::VERDICT_ALLOW);

  clock_->Set(january_view);
  const v1::GetBudgetResponse back_in_january = Budget("berlin-monthly");
  EXPECT_EQ(back_in_january.held_nanos(), 0) << "the hold did not expire";
  EXPECT_EQ(back_in_january.spent_nanos(), kEstimateNanos);
  ASSERT_THAT(back_in_january.instances(), SizeIs(1));
  EXPECT_EQ(back_in_january.instances(0).unreported_nanos(), kEstimateNanos);
}

TEST_F(PeriodsTest, DailyPeriodFollowsDaylightSavingTime) {
  // 2026-03-08 is the 23-hour day in New York (clocks spring forward at
  // 02:00 EST): it starts at 05:00Z and ends at 04:00Z the next day.
  StartAt(Utc(2026, 3, 8, 12, 0, 0));
  SetBudget(MakeBudget("ny-daily", {}, v1::PERIOD_DAY, kAmountNanos,
                       "America/New_York"));
  SpendOneCall();
  const v1::GetBudgetResponse short_day = Budget("ny-daily");
  ASSERT_THAT(short_day.instances(), SizeIs(1));
  EXPECT_EQ(Instant(short_day.instances(0).period_start()),
            Utc(2026, 3, 8, 5, 0, 0))
      << short_day.instances(0).period_start();
  EXPECT_EQ(Instant(short_day.instances(0).period_end()),
            Utc(2026, 3, 9, 4, 0, 0))
      << short_day.instances(0).period_end();

  clock_->Set(Utc(2026, 3, 9, 3, 59, 59));  // 23:59:59 EDT
  EXPECT_EQ(Budget("ny-daily").spent_nanos(), kEstimateNanos);
  clock_->Set(Utc(2026, 3, 9, 4, 0, 0));  // 00:00 EDT
  EXPECT_EQ(Budget("ny-daily").spent_nanos(), 0);
}

TEST_F(PeriodsTest, WeeklyBudgetStartsOnMondayLocal) {
  // Sunday 2026-03-22 23:30 CET (UTC+1).
  StartAt(Utc(2026, 3, 22, 22, 30, 0));
  SetBudget(MakeBudget("berlin-weekly", {}, v1::PERIOD_WEEK, kAmountNanos,
                       "Europe/Berlin"));
  SpendOneCall();
  const v1::GetBudgetResponse sunday = Budget("berlin-weekly");
  ASSERT_THAT(sunday.instances(), SizeIs(1));
  EXPECT_EQ(Instant(sunday.instances(0).period_start()),
            Utc(2026, 3, 15, 23, 0, 0))  // Monday 2026-03-16 00:00 CET
      << sunday.instances(0).period_start();
  EXPECT_EQ(Check(OneCall()).verdict(), v1::VERDICT_DENY);

  clock_->Set(Utc(2026, 3, 22, 23, 0, 0));  // Monday 00:00 CET
  const v1::GetBudgetResponse monday = Budget("berlin-weekly");
  EXPECT_EQ(monday.spent_nanos(), 0);
  ASSERT_THAT(monday.instances(), SizeIs(1));
  // The next week is Berlin's first in summer time (CEST from 2026-03-29).
  EXPECT_EQ(Instant(monday.instances(0).period_end()),
            Utc(2026, 3, 29, 22, 0, 0))
      << monday.instances(0).period_end();
  EXPECT_EQ(Check(OneCall()).verdict(), v1::VERDICT_ALLOW);
}

TEST_F(PeriodsTest, SettledReservationsAreForgottenAfterTheRetention) {
  StartAt(Utc(2026, 3, 18, 12, 0, 0), {"--settled_retention=1h"});
  SetBudget(MakeBudget("org", {}, v1::PERIOD_NONE, 1'000'000'000));
  v1::CheckRequest request = OneCall();
  request.set_request_id("gw-1");
  const v1::CheckResponse first = Check(request);
  ASSERT_EQ(first.verdict(), v1::VERDICT_ALLOW);
  v1::ReportResponse report;
  BURSAR_ASSERT_OK(server_->Report(
      MakeReport(first.reservation_id(), 1'000, 0, 500), &report));
  // Within the retention a retry gets the same reservation.
  EXPECT_EQ(Check(request).reservation_id(), first.reservation_id());

  clock_->Advance(absl::Hours(2));
  // Wait (bounded) for the expirer's pass to prune the settled record.
  grpc::Status status;
  for (int i = 0; i < 50; ++i) {
    v1::ReportResponse again;
    status = server_->Report(MakeReport(first.reservation_id(), 1'000, 0, 500),
                             &again);
    if (!status.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND)
      << StatusText(status);
  // The money stays spent; a new Check with the old request_id is a new call.
  EXPECT_EQ(Budget("org").spent_nanos(), kEstimateNanos);
  const v1::CheckResponse later = Check(request);
  EXPECT_EQ(later.verdict(), v1::VERDICT_ALLOW);
  EXPECT_NE(later.reservation_id(), first.reservation_id());
  EXPECT_EQ(Budget("org").held_nanos(), kEstimateNanos);
}

}  // namespace
}  // namespace bursar::testing
