#include "storage/period.h"

#include <string>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace bursar::storage {
namespace {

// An instant given as UTC wall-clock time; expectations are written this way
// so they do not depend on the time zone code under test.
absl::Time Utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

absl::TimeZone Zone(const std::string& name) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(name, &tz)) << "time zone " << name;
  return tz;
}

void ExpectBounds(Period period, absl::Time now, const absl::TimeZone& tz,
                  absl::Time start, absl::Time end) {
  const PeriodBounds bounds = PeriodAt(period, now, tz);
  EXPECT_EQ(bounds.start, start)
      << PeriodName(period) << " at " << absl::FormatTime(now, tz);
  EXPECT_EQ(bounds.end, end)
      << PeriodName(period) << " at " << absl::FormatTime(now, tz);
  EXPECT_EQ(bounds.start_key(), absl::ToUnixSeconds(start));
}

TEST(PeriodTest, Names) {
  EXPECT_EQ(PeriodName(Period::kHour), "hour");
  EXPECT_EQ(PeriodName(Period::kDay), "day");
  EXPECT_EQ(PeriodName(Period::kWeek), "week");
  EXPECT_EQ(PeriodName(Period::kMonth), "month");
  EXPECT_EQ(PeriodName(Period::kNone), "none");
}

TEST(PeriodTest, BoundsInUtc) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  // Wednesday 2026-03-18 14:37:12.25 UTC.
  const absl::Time now = Utc(2026, 3, 18, 14, 37, 12) + absl::Milliseconds(250);
  ExpectBounds(Period::kHour, now, utc, Utc(2026, 3, 18, 14),
               Utc(2026, 3, 18, 15));
  ExpectBounds(Period::kDay, now, utc, Utc(2026, 3, 18), Utc(2026, 3, 19));
  ExpectBounds(Period::kWeek, now, utc, Utc(2026, 3, 16), Utc(2026, 3, 23));
  ExpectBounds(Period::kMonth, now, utc, Utc(2026, 3, 1), Utc(2026, 4, 1));
}

TEST(PeriodTest, NoneIsUnbounded) {
  const PeriodBounds bounds =
      PeriodAt(Period::kNone, Utc(2026, 3, 18, 14), Zone("America/New_York"));
  EXPECT_EQ(bounds.start, absl::InfinitePast());
  EXPECT_EQ(bounds.end, absl::InfiniteFuture());
  EXPECT_EQ(bounds.start_key(), 0);
}

TEST(PeriodTest, BoundsInNewYork) {
  const absl::TimeZone ny = Zone("America/New_York");
  // Wednesday 2026-03-18 14:37:12 EDT (UTC-4); March began in EST (UTC-5).
  const absl::Time now = Utc(2026, 3, 18, 18, 37, 12);
  ExpectBounds(Period::kHour, now, ny, Utc(2026, 3, 18, 18),
               Utc(2026, 3, 18, 19));
  ExpectBounds(Period::kDay, now, ny, Utc(2026, 3, 18, 4), Utc(2026, 3, 19, 4));
  ExpectBounds(Period::kWeek, now, ny, Utc(2026, 3, 16, 4),
               Utc(2026, 3, 23, 4));
  ExpectBounds(Period::kMonth, now, ny, Utc(2026, 3, 1, 5), Utc(2026, 4, 1, 4));
}

TEST(PeriodTest, BoundsInBerlin) {
  const absl::TimeZone berlin = Zone("Europe/Berlin");
  // Wednesday 2026-03-18 14:37:12 CET (UTC+1); April begins in CEST (UTC+2).
  const absl::Time now = Utc(2026, 3, 18, 13, 37, 12);
  ExpectBounds(Period::kHour, now, berlin, Utc(2026, 3, 18, 13),
               Utc(2026, 3, 18, 14));
  ExpectBounds(Period::kDay, now, berlin, Utc(2026, 3, 17, 23),
               Utc(2026, 3, 18, 23));
  ExpectBounds(Period::kWeek, now, berlin, Utc(2026, 3, 15, 23),
               Utc(2026, 3, 22, 23));
  ExpectBounds(Period::kMonth, now, berlin, Utc(2026, 2, 28, 23),
               Utc(2026, 3, 31, 22));
}

TEST(PeriodTest, HourStartsAtTheLocalTopOfTheHourInHalfHourZones) {
  // India is UTC+5:30: local hours begin at half past the UTC hour.
  ExpectBounds(Period::kHour, Utc(2026, 3, 18, 9, 10), Zone("Asia/Kolkata"),
               Utc(2026, 3, 18, 8, 30), Utc(2026, 3, 18, 9, 30));
}

TEST(PeriodTest, MonthBoundaryAtLocalMidnightInNewYork) {
  const absl::TimeZone ny = Zone("America/New_York");
  // 2026-01-31 23:59:59 EST and 2026-02-01 00:00:00 EST, one second apart
  // and on the same UTC day.
  const absl::Time last_second = Utc(2026, 2, 1, 4, 59, 59);
  const absl::Time first_second = Utc(2026, 2, 1, 5, 0, 0);

  const PeriodBounds january = PeriodAt(Period::kMonth, last_second, ny);
  const PeriodBounds february = PeriodAt(Period::kMonth, first_second, ny);
  EXPECT_NE(january.start_key(), february.start_key());
  EXPECT_EQ(january.start, Utc(2026, 1, 1, 5));
  EXPECT_EQ(january.end, first_second);
  EXPECT_EQ(february.start, first_second);
  EXPECT_EQ(february.start_key(), absl::ToUnixSeconds(first_second));
  EXPECT_EQ(february.end, Utc(2026, 3, 1, 5));
  // The start is exactly local midnight.
  EXPECT_EQ(absl::ToCivilSecond(february.start, ny),
            absl::CivilSecond(2026, 2, 1, 0, 0, 0));
}

TEST(PeriodTest, DayBoundaryAtLocalMidnightInBerlin) {
  const absl::TimeZone berlin = Zone("Europe/Berlin");
  // Both instants are on 2026-01-15 in UTC, but on different days in Berlin.
  const absl::Time before = Utc(2026, 1, 15, 22, 59, 59);  // 23:59:59 CET
  const absl::Time after = Utc(2026, 1, 15, 23, 0, 0);     // 00:00:00 CET
  const PeriodBounds day15 = PeriodAt(Period::kDay, before, berlin);
  const PeriodBounds day16 = PeriodAt(Period::kDay, after, berlin);
  EXPECT_NE(day15.start_key(), day16.start_key());
  EXPECT_EQ(day15.start, Utc(2026, 1, 14, 23));
  EXPECT_EQ(day15.end, after);
  EXPECT_EQ(day16.start, after);
  EXPECT_EQ(day16.end, Utc(2026, 1, 16, 23));
  // A UTC day budget puts both in the same day.
  EXPECT_EQ(PeriodAt(Period::kDay, before, absl::UTCTimeZone()).start_key(),
            PeriodAt(Period::kDay, after, absl::UTCTimeZone()).start_key());
}

TEST(PeriodTest, SpringForwardDayIs23HoursAndFallBackDayIs25) {
  const absl::TimeZone ny = Zone("America/New_York");
  // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
  const PeriodBounds spring = PeriodAt(Period::kDay, Utc(2026, 3, 8, 12), ny);
  EXPECT_EQ(spring.start, Utc(2026, 3, 8, 5));
  EXPECT_EQ(spring.end, Utc(2026, 3, 9, 4));
  EXPECT_EQ(spring.end - spring.start, absl::Hours(23));
  // 2026-11-01: 02:00 EDT falls back to 01:00 EST.
  const PeriodBounds fall = PeriodAt(Period::kDay, Utc(2026, 11, 1, 12), ny);
  EXPECT_EQ(fall.start, Utc(2026, 11, 1, 4));
  EXPECT_EQ(fall.end, Utc(2026, 11, 2, 5));
  EXPECT_EQ(fall.end - fall.start, absl::Hours(25));

  const absl::TimeZone berlin = Zone("Europe/Berlin");
  // 2026-03-29 and 2026-10-25 in Berlin.
  const PeriodBounds berlin_spring =
      PeriodAt(Period::kDay, Utc(2026, 3, 29, 12), berlin);
  EXPECT_EQ(berlin_spring.start, Utc(2026, 3, 28, 23));
  EXPECT_EQ(berlin_spring.end - berlin_spring.start, absl::Hours(23));
  const PeriodBounds berlin_fall =
      PeriodAt(Period::kDay, Utc(2026, 10, 25, 12), berlin);
  EXPECT_EQ(berlin_fall.start, Utc(2026, 10, 24, 22));
  EXPECT_EQ(berlin_fall.end - berlin_fall.start, absl::Hours(25));

  // The week containing the spring-forward is one hour short.
  const PeriodBounds week = PeriodAt(Period::kWeek, Utc(2026, 3, 8, 12), ny);
  EXPECT_EQ(week.start, Utc(2026, 3, 2, 5));
  EXPECT_EQ(week.end - week.start, absl::Hours(7 * 24 - 1));
}

TEST(PeriodTest, RepeatedHourAtFallBackIsTwoHourPeriods) {
  const absl::TimeZone ny = Zone("America/New_York");
  // 01:30 EDT and, one hour later, 01:30 EST on 2026-11-01.
  const absl::Time first = Utc(2026, 11, 1, 5, 30);
  const absl::Time second = Utc(2026, 11, 1, 6, 30);
  ASSERT_EQ(absl::ToCivilSecond(first, ny), absl::ToCivilSecond(second, ny));

  const PeriodBounds a = PeriodAt(Period::kHour, first, ny);
  const PeriodBounds b = PeriodAt(Period::kHour, second, ny);
  EXPECT_NE(a.start_key(), b.start_key());
  EXPECT_EQ(a.start, Utc(2026, 11, 1, 5));
  EXPECT_EQ(a.end, Utc(2026, 11, 1, 6));
  EXPECT_EQ(b.start, Utc(2026, 11, 1, 6));
  EXPECT_EQ(b.end, Utc(2026, 11, 1, 7));
  // The hours around it line up without gaps or overlaps.
  EXPECT_EQ(PeriodAt(Period::kHour, Utc(2026, 11, 1, 4, 59, 59), ny).end,
            a.start);
  EXPECT_EQ(PeriodAt(Period::kHour, Utc(2026, 11, 1, 7), ny).start, b.end);
}

TEST(PeriodTest, HourAcrossSpringForward) {
  const absl::TimeZone ny = Zone("America/New_York");
  // 01:59:59 EST, then 03:00:00 EDT one second later.
  const PeriodBounds before =
      PeriodAt(Period::kHour, Utc(2026, 3, 8, 6, 59, 59), ny);
  const PeriodBounds after = PeriodAt(Period::kHour, Utc(2026, 3, 8, 7), ny);
  EXPECT_EQ(before.start, Utc(2026, 3, 8, 6));
  EXPECT_EQ(before.end, after.start);
  EXPECT_EQ(after.start, Utc(2026, 3, 8, 7));
  EXPECT_EQ(after.end - after.start, absl::Hours(1));
}

TEST(PeriodTest, WeekStartsMondayAtLocalMidnight) {
  const absl::TimeZone ny = Zone("America/New_York");
  // Sunday 2026-03-22 23:59:59 EDT, then Monday 2026-03-23 00:00:00 EDT.
  const PeriodBounds sunday =
      PeriodAt(Period::kWeek, Utc(2026, 3, 23, 3, 59, 59), ny);
  const PeriodBounds monday = PeriodAt(Period::kWeek, Utc(2026, 3, 23, 4), ny);
  EXPECT_EQ(sunday.start, Utc(2026, 3, 16, 4));
  EXPECT_EQ(sunday.end, monday.start);
  EXPECT_EQ(monday.start, Utc(2026, 3, 23, 4));
  EXPECT_EQ(monday.end, Utc(2026, 3, 30, 4));
  EXPECT_EQ(
      absl::GetWeekday(absl::CivilDay(absl::ToCivilSecond(monday.start, ny))),
      absl::Weekday::monday);

  // In UTC, a Monday instant begins its own week.
  ExpectBounds(Period::kWeek, Utc(2026, 3, 16), absl::UTCTimeZone(),
               Utc(2026, 3, 16), Utc(2026, 3, 23));
  ExpectBounds(Period::kWeek, Utc(2026, 3, 15, 23, 59, 59), absl::UTCTimeZone(),
               Utc(2026, 3, 9), Utc(2026, 3, 16));
}

// A zone whose DST change skips midnight, if the tz database on this machine
// still has one on the expected date; otherwise the test is skipped.
bool MidnightSkipped(const absl::TimeZone& tz, absl::CivilDay day) {
  return tz.At(absl::CivilSecond(day)).kind ==
         absl::TimeZone::TimeInfo::SKIPPED;
}

TEST(PeriodTest, DayWhoseMidnightIsSkippedStartsAfterTheGapSantiago) {
  absl::TimeZone santiago;
  if (!absl::LoadTimeZone("America/Santiago", &santiago) ||
      !MidnightSkipped(santiago, absl::CivilDay(2026, 9, 6))) {
    GTEST_SKIP() << "no skipped midnight in America/Santiago on 2026-09-06";
  }
  // 2026-09-06: 00:00 -04 jumps to 01:00 -03, i.e. 04:00 UTC.
  const PeriodBounds day =
      PeriodAt(Period::kDay, Utc(2026, 9, 6, 15), santiago);
  EXPECT_EQ(day.start, Utc(2026, 9, 6, 4));
  EXPECT_EQ(absl::ToCivilSecond(day.start, santiago),
            absl::CivilSecond(2026, 9, 6, 1, 0, 0));
  EXPECT_EQ(day.end, Utc(2026, 9, 7, 3));
  EXPECT_EQ(day.end - day.start, absl::Hours(23));
  // The day before ends where this one starts.
  const PeriodBounds saturday =
      PeriodAt(Period::kDay, Utc(2026, 9, 6, 3, 59, 59), santiago);
  EXPECT_EQ(saturday.start, Utc(2026, 9, 5, 4));
  EXPECT_EQ(saturday.end, day.start);
}

TEST(PeriodTest, DayWhoseMidnightIsSkippedStartsAfterTheGapHavana) {
  absl::TimeZone havana;
  if (!absl::LoadTimeZone("America/Havana", &havana) ||
      !MidnightSkipped(havana, absl::CivilDay(2026, 3, 8))) {
    GTEST_SKIP() << "no skipped midnight in America/Havana on 2026-03-08";
  }
  // 2026-03-08: 00:00 CST jumps to 01:00 CDT, i.e. 05:00 UTC.
  const PeriodBounds day = PeriodAt(Period::kDay, Utc(2026, 3, 8, 15), havana);
  EXPECT_EQ(day.start, Utc(2026, 3, 8, 5));
  EXPECT_EQ(day.end - day.start, absl::Hours(23));
  // 2026-11-01: 01:00 CDT falls back to 00:00 CST, so midnight happens
  // twice; the day starts at the first one and lasts 25 hours.
  const PeriodBounds fall =
      PeriodAt(Period::kDay, Utc(2026, 11, 1, 15), havana);
  if (havana.At(absl::CivilSecond(2026, 11, 1, 0, 0, 0)).kind ==
      absl::TimeZone::TimeInfo::REPEATED) {
    EXPECT_EQ(fall.start, Utc(2026, 11, 1, 4));
    EXPECT_EQ(fall.end - fall.start, absl::Hours(25));
  }
}

}  // namespace
}  // namespace bursar::storage
