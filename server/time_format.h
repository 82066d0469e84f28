#ifndef BURSAR_SERVER_TIME_FORMAT_H_
#define BURSAR_SERVER_TIME_FORMAT_H_

#include <string>

#include "absl/time/time.h"

namespace bursar::server {

// RFC 3339 in UTC ("2026-11-22T15:00:00Z"); empty for an infinite time.
inline std::string FormatRfc3339(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

}  // namespace bursar::server

#endif  // BURSAR_SERVER_TIME_FORMAT_H_
