#include "storage/period.h"

#include "absl/time/civil_time.h"

namespace bursar::storage {
namespace {

// The instant a civil day begins: its midnight, or the end of the gap when
// DST skips midnight.
absl::Time StartOfDay(absl::CivilDay day, const absl::TimeZone& tz) {
  const absl::TimeZone::TimeInfo info = tz.At(absl::CivilSecond(day));
  return info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans
                                                        : info.pre;
}

absl::CivilDay MondayOf(absl::CivilDay day) {
  return absl::PrevWeekday(day + 1, absl::Weekday::monday);
}

}  // namespace

absl::string_view PeriodName(Period period) {
  switch (period) {
    case Period::kHour:
      return "hour";
    case Period::kDay:
      return "day";
    case Period::kWeek:
      return "week";
    case Period::kMonth:
      return "month";
    case Period::kNone:
      return "none";
  }
  return "unknown";
}

int64_t PeriodBounds::start_key() const {
  return start == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(start);
}

PeriodBounds PeriodAt(Period period, absl::Time now, const absl::TimeZone& tz) {
  const absl::CivilSecond local = absl::ToCivilSecond(now, tz);
  switch (period) {
    case Period::kHour: {
      const absl::Time start =
          absl::FromUnixSeconds(absl::ToUnixSeconds(now)) -
          absl::Seconds(local - absl::CivilSecond(absl::CivilHour(local)));
      return {start, start + absl::Hours(1)};
    }
    case Period::kDay: {
      const absl::CivilDay day(local);
      return {StartOfDay(day, tz), StartOfDay(day + 1, tz)};
    }
    case Period::kWeek: {
      const absl::CivilDay monday = MondayOf(absl::CivilDay(local));
      return {StartOfDay(monday, tz), StartOfDay(monday + 7, tz)};
    }
    case Period::kMonth: {
      const absl::CivilMonth month(local);
      return {StartOfDay(absl::CivilDay(month), tz),
              StartOfDay(absl::CivilDay(month + 1), tz)};
    }
    case Period::kNone:
      break;
  }
  return {absl::InfinitePast(), absl::InfiniteFuture()};
}

}  // namespace bursar::storage
