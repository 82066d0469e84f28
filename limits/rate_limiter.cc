#include "limits/rate_limiter.h"

#include <algorithm>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace bursar::limits {
namespace {

int64_t SubBucketNanos(absl::Duration window) {
  return std::max<int64_t>(1, absl::ToInt64Nanoseconds(window) / kSubBuckets);
}

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// "rule \x1f window_seconds \x1f key": a rule's name cannot hold \x1f.
void CounterKey(absl::string_view rule, int64_t window_seconds,
                absl::string_view key, std::string* out) {
  out->clear();
  absl::StrAppend(out, rule, "\x1f", window_seconds, "\x1f", key);
}

}  // namespace

void RateLimiter::DropBucketsBefore(int64_t index,
                                    absl::InlinedVector<Bucket, 1>& buckets) {
  auto first_kept =
      std::find_if(buckets.begin(), buckets.end(),
                   [&](const Bucket& b) { return b.index >= index; });
  buckets.erase(buckets.begin(), first_kept);
}

int64_t SubBucketIndex(absl::Duration window, absl::Time t) {
  return FloorDiv(absl::ToUnixNanos(t), SubBucketNanos(window));
}

int RateLimiter::ShardOf(absl::string_view counter_key) {
  return static_cast<int>(absl::HashOf(counter_key) % kShards);
}

std::optional<RateDenial> RateLimiter::Acquire(
    absl::Span<const RateAsk> asks, int64_t tokens, absl::Time now,
    bool dry_run, std::vector<RateCharge>* charges) {
  struct Item {
    const RateAsk* ask;
    const WindowLimit* limit;
    int64_t window_seconds;
    int64_t bucket;  // the current sub-bucket
    int shard;
    std::string key;
  };
  // Reused per thread: looking counters up builds no string after warm-up.
  thread_local std::vector<Item> scratch;
  size_t count = 0;
  for (const RateAsk& ask : asks) {
    for (const WindowLimit& limit : ask.windows) {
      if (scratch.size() == count) scratch.emplace_back();
      Item& item = scratch[count++];
      item.ask = &ask;
      item.limit = &limit;
      item.window_seconds = absl::ToInt64Seconds(limit.window);
      item.bucket = SubBucketIndex(limit.window, now);
      CounterKey(ask.rule, item.window_seconds, ask.key, &item.key);
      item.shard = ShardOf(item.key);
    }
  }
  if (count == 0) return std::nullopt;
  const absl::Span<const Item> items(scratch.data(), count);

  std::array<bool, kShards> locked{};
  for (const Item& item : items) locked[item.shard] = true;
  for (int i = 0; i < kShards; ++i) {
    if (locked[i]) shards_[i].mu.Lock();
  }

  std::optional<RateDenial> denial;
  for (const Item& item : items) {
    Shard& s = shards_[item.shard];
    s.mu.AssertHeld();
    auto it = s.counters.find(item.key);
    int64_t used_requests = 0, used_tokens = 0;
    absl::Span<const Bucket> live;
    if (it != s.counters.end()) {
      auto& buckets = it->second.buckets;
      // Callers read the clock before they take the lock, so a call may
      // arrive here with a time a little before one already counted: keep
      // a window's worth of sub-buckets beyond the oldest this call counts.
      DropBucketsBefore(item.bucket - kRetainedBuckets, buckets);
      const int64_t oldest = item.bucket - kSubBuckets;
      auto first_live =
          std::find_if(buckets.begin(), buckets.end(),
                       [&](const Bucket& b) { return b.index >= oldest; });
      live = absl::MakeConstSpan(&*first_live, buckets.end() - first_live);
      for (const Bucket& b : live) {
        used_requests += b.requests;
        used_tokens += b.tokens;
      }
    }
    auto check = [&](bool is_tokens, int64_t limit, int64_t used,
                     int64_t wanted) {
      if (limit == 0 || used + wanted <= limit) return;
      RateDenial d;
      d.rule = std::string(item.ask->rule);
      d.key = std::string(item.ask->key);
      d.window = item.limit->window;
      d.tokens = is_tokens;
      d.limit = limit;
      d.used = used;
      d.wanted = wanted;
      if (wanted <= limit) {
        // The oldest sub-buckets leave the window first; find the one whose
        // leaving makes room.
        const int64_t g = SubBucketNanos(item.limit->window);
        int64_t left = used;
        for (const Bucket& b : live) {
          left -= is_tokens ? b.tokens : b.requests;
          if (left + wanted <= limit) {
            const absl::Time free_at =
                absl::FromUnixNanos((b.index + kSubBuckets + 1) * g);
            d.retry_after = std::max(absl::ZeroDuration(), free_at - now);
            break;
          }
        }
      }
      const bool worse =
          !denial.has_value() ||
          (d.never_fits() && !denial->never_fits()) ||
          (d.never_fits() == denial->never_fits() &&
           d.retry_after > denial->retry_after);
      if (worse) denial = std::move(d);
    };
    check(false, item.limit->max_requests, used_requests, 1);
    check(true, item.limit->max_tokens, used_tokens, tokens);
  }

  if (!denial.has_value() && !dry_run) {
    for (const Item& item : items) {
      Counter& counter = shards_[item.shard].counters[item.key];
      counter.window_seconds = item.window_seconds;
      if (counter.buckets.empty() ||
          counter.buckets.back().index != item.bucket) {
        counter.buckets.push_back(Bucket{item.bucket, 0, 0});
      }
      counter.buckets.back().requests += 1;
      counter.buckets.back().tokens += tokens;
      RateCharge& charge = charges->emplace_back();
      charge.rule = std::string(item.ask->rule);
      charge.key = std::string(item.ask->key);
      charge.window_seconds = item.window_seconds;
      charge.bucket = item.bucket;
      charge.tokens = tokens;
    }
  }
  for (int i = kShards - 1; i >= 0; --i) {
    if (locked[i]) shards_[i].mu.Unlock();
  }
  return denial;
}

void RateLimiter::Release(absl::Span<const RateCharge> charges) {
  for (const RateCharge& charge : charges) {
    Restore(RateCharge{charge.rule, charge.key, charge.window_seconds,
                       charge.bucket, -charge.tokens},
            -1);
  }
}

void RateLimiter::Correct(const RateCharge& charge, int64_t actual_tokens) {
  std::string key;
  CounterKey(charge.rule, charge.window_seconds, charge.key, &key);
  Shard& s = shards_[ShardOf(key)];
  absl::MutexLock lock(&s.mu);
  auto it = s.counters.find(key);
  if (it == s.counters.end()) return;
  for (Bucket& b : it->second.buckets) {
    if (b.index == charge.bucket) {
      b.tokens = std::max<int64_t>(0, b.tokens + actual_tokens - charge.tokens);
      return;
    }
  }
}

void RateLimiter::Restore(const RateCharge& charge, int64_t requests) {
  std::string key;
  CounterKey(charge.rule, charge.window_seconds, charge.key, &key);
  Shard& s = shards_[ShardOf(key)];
  absl::MutexLock lock(&s.mu);
  Counter& counter = s.counters[key];
  counter.window_seconds = charge.window_seconds;
  auto& buckets = counter.buckets;
  auto at = std::lower_bound(
      buckets.begin(), buckets.end(), charge.bucket,
      [](const Bucket& b, int64_t index) { return b.index < index; });
  if (at == buckets.end() || at->index != charge.bucket) {
    at = buckets.insert(at, Bucket{charge.bucket, 0, 0});
  }
  at->requests = std::max<int64_t>(0, at->requests + requests);
  at->tokens = std::max<int64_t>(0, at->tokens + charge.tokens);
  if (at->requests == 0 && at->tokens == 0) buckets.erase(at);
  if (buckets.empty()) s.counters.erase(key);
}

size_t RateLimiter::EvictIdle(absl::Time now) {
  size_t evicted = 0;
  for (Shard& s : shards_) {
    absl::MutexLock lock(&s.mu);
    for (auto it = s.counters.begin(); it != s.counters.end();) {
      Counter& counter = it->second;
      DropBucketsBefore(
          SubBucketIndex(absl::Seconds(counter.window_seconds), now) -
              kRetainedBuckets,
          counter.buckets);
      if (counter.buckets.empty()) {
        s.counters.erase(it++);
        ++evicted;
      } else {
        ++it;
      }
    }
  }
  return evicted;
}

size_t RateLimiter::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    absl::MutexLock lock(&s.mu);
    n += s.counters.size();
  }
  return n;
}

}  // namespace bursar::limits
