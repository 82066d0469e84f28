#ifndef BURSAR_SERVER_RATE_WINDOWS_H_
#define BURSAR_SERVER_RATE_WINDOWS_H_

// Which rate-limit counts survive a restart, and how they are kept: the
// sub-buckets of hour and day windows are ledger side counters
// (storage/ledger.h), written in the same batch as the hold that took them
// and the settlement that corrected them. Second and minute windows stay in
// memory: a restart takes a good part of such a window anyway, and a write
// per call for them would buy little.
//
// Key: "r" | 8 bytes big-endian sub-bucket start (Unix seconds, sign bit
// flipped) | rule \0 window_seconds \0 key \0 | 'q' (requests) or 't'
// (tokens). Time first, so that old sub-buckets go with one range delete.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "limits/rate_limiter.h"

namespace bursar::server {

// Windows at least this long are durable.
inline constexpr int64_t kDurableWindowSeconds = 3600;

inline bool IsDurableWindow(int64_t window_seconds) {
  return window_seconds >= kDurableWindowSeconds;
}

enum class RateCount : char { kRequests = 'q', kTokens = 't' };

std::string RateWindowKey(const limits::RateCharge& charge, RateCount count);

// The first key of sub-buckets starting at or after `t`.
std::string RateWindowKeyFrom(absl::Time t);

// One stored figure of a sub-bucket: its requests or its tokens.
struct StoredRateCount {
  std::string rule;
  std::string key;
  int64_t window_seconds = 0;
  int64_t bucket = 0;    // sub-bucket index since the Unix epoch
  int64_t tokens = 0;    // for kTokens
  int64_t requests = 0;  // for kRequests
  // A charge that views this count's rule and key (valid while it lives).
  limits::RateCharge charge() const {
    return {rule, key, window_seconds, bucket, tokens};
  }
};

// nullopt for a key this file did not write.
std::optional<StoredRateCount> ParseRateWindowKey(absl::string_view key,
                                                  int64_t value);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_RATE_WINDOWS_H_
