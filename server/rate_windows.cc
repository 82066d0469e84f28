#include "server/rate_windows.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace bursar::server {
namespace {

constexpr char kTag = 'r';
constexpr uint64_t kSignBit = 1ULL << 63;

void AppendBigEndian64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(absl::string_view bytes) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[i]);
  return v;
}

int64_t SubBucketSeconds(int64_t window_seconds) {
  return window_seconds / limits::kSubBuckets;
}

}  // namespace

std::string RateWindowKeyFrom(absl::Time t) {
  std::string key(1, kTag);
  AppendBigEndian64(key, static_cast<uint64_t>(absl::ToUnixSeconds(t)) ^
                             kSignBit);
  return key;
}

std::string RateWindowKey(const limits::RateCharge& charge, RateCount count) {
  std::string key(1, kTag);
  const int64_t start =
      charge.bucket * SubBucketSeconds(charge.window_seconds);
  AppendBigEndian64(key, static_cast<uint64_t>(start) ^ kSignBit);
  absl::StrAppend(&key, charge.rule);
  key.push_back('\0');
  absl::StrAppend(&key, charge.window_seconds);
  key.push_back('\0');
  absl::StrAppend(&key, charge.key);
  key.push_back('\0');
  key.push_back(static_cast<char>(count));
  return key;
}

std::optional<StoredRateCount> ParseRateWindowKey(absl::string_view key,
                                                  int64_t value) {
  if (key.size() < 1 + 8 + 1 || key[0] != kTag) return std::nullopt;
  const int64_t start =
      static_cast<int64_t>(ReadBigEndian64(key.substr(1, 8)) ^ kSignBit);
  const char count = key.back();
  std::vector<absl::string_view> parts =
      absl::StrSplit(key.substr(9, key.size() - 10), '\0');
  // rule, window, key, "" (the separator before the count)
  if (parts.size() != 4 || !parts[3].empty()) return std::nullopt;
  StoredRateCount stored;
  stored.rule = std::string(parts[0]);
  stored.key = std::string(parts[2]);
  if (!absl::SimpleAtoi(parts[1], &stored.window_seconds) ||
      !IsDurableWindow(stored.window_seconds)) {
    return std::nullopt;
  }
  stored.bucket = start / SubBucketSeconds(stored.window_seconds);
  if (count == static_cast<char>(RateCount::kRequests)) {
    stored.requests = value;
  } else if (count == static_cast<char>(RateCount::kTokens)) {
    stored.tokens = value;
  } else {
    return std::nullopt;
  }
  return stored;
}

}  // namespace bursar::server
