#ifndef BURSAR_STORAGE_PERIOD_H_
#define BURSAR_STORAGE_PERIOD_H_

// Calendar periods of budgets, in the budget's own time zone.

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace bursar::storage {

enum class Period { kHour, kDay, kWeek, kMonth, kNone };

absl::string_view PeriodName(Period period);

struct PeriodBounds {
  // [start, end). For kNone: InfinitePast() and InfiniteFuture().
  absl::Time start;
  absl::Time end;
  // Whole seconds since the Unix epoch of `start`; the key of the period in
  // the ledger. 0 for kNone.
  int64_t start_key() const;
};

// The period containing `now`:
// - kDay, kWeek (Monday), kMonth (the 1st) start at local midnight; on a
//   day whose midnight a DST change skips, at the first instant after it.
// - kHour starts at the top of the local hour on the local clock in force
//   at `now`, so the hour repeated when DST ends is two periods, and every
//   hour period lasts 60 minutes (30 or 45 in zones with such offsets only
//   across a transition).
PeriodBounds PeriodAt(Period period, absl::Time now, const absl::TimeZone& tz);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_PERIOD_H_
