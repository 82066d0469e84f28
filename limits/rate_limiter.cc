#include "limits/rate_limiter.h"

#include <algorithm>
#include <limits>

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

// A new scope's base: this many sub-buckets before the first one it sees,
// so that counts restored from before start-up fit too.
constexpr int64_t kBaseMargin = 1 << 20;

int32_t SaturatingAdd(int32_t a, int64_t b) {
  return static_cast<int32_t>(std::clamp<int64_t>(
      a + b, 0, std::numeric_limits<int32_t>::max()));
}

}  // namespace

int64_t SubBucketIndex(absl::Duration window, absl::Time t) {
  return FloorDiv(absl::ToUnixNanos(t), SubBucketNanos(window));
}

uint32_t RateLimiter::ScopeId(absl::string_view rule, int64_t window_seconds,
                              int64_t index_now) {
  thread_local std::string name;
  name.clear();
  absl::StrAppend(&name, rule, "\x1f", window_seconds);
  {
    absl::ReaderMutexLock lock(&scopes_mu_);
    auto it = scope_ids_.find(name);
    if (it != scope_ids_.end()) return it->second;
  }
  absl::MutexLock lock(&scopes_mu_);
  auto [it, inserted] =
      scope_ids_.try_emplace(name, static_cast<uint32_t>(scopes_.size()));
  if (inserted) scopes_.push_back({window_seconds, index_now - kBaseMargin});
  return it->second;
}

RateLimiter::Scope RateLimiter::ScopeOf(uint32_t id) const {
  absl::ReaderMutexLock lock(&scopes_mu_);
  return scopes_[id];
}

int RateLimiter::ShardOf(const CounterKeyView& key) {
  return static_cast<int>(KeyHash()(key) % kShards);
}

void RateLimiter::DropBucketsBefore(int64_t relative_index, Buckets& buckets) {
  auto first_kept =
      std::find_if(buckets.begin(), buckets.end(), [&](const Bucket& b) {
        return static_cast<int64_t>(b.index) >= relative_index;
      });
  buckets.erase(buckets.begin(), first_kept);
}

std::optional<RateDenial> RateLimiter::Acquire(
    absl::Span<const RateAsk> asks, int64_t tokens, absl::Time now,
    bool dry_run, std::vector<RateCharge>* charges) {
  struct Item {
    const RateAsk* ask;
    const WindowLimit* limit;
    Scope scope;
    CounterKeyView key;
    int64_t bucket;  // the current sub-bucket, absolute
    int shard;
  };
  absl::InlinedVector<Item, 8> items;
  for (const RateAsk& ask : asks) {
    for (const WindowLimit& limit : ask.windows) {
      Item item;
      item.ask = &ask;
      item.limit = &limit;
      item.bucket = SubBucketIndex(limit.window, now);
      const uint32_t id =
          ScopeId(ask.rule, absl::ToInt64Seconds(limit.window), item.bucket);
      item.scope = ScopeOf(id);
      item.key = {id, ask.key};
      item.shard = ShardOf(item.key);
      items.push_back(item);
    }
  }
  if (items.empty()) return std::nullopt;

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
    const int64_t current = item.bucket - item.scope.base_index;
    if (it != s.counters.end()) {
      Buckets& buckets = it->second;
      // Callers read the clock before they take the lock, so a call may
      // arrive here with a time a little before one already counted: keep
      // a window's worth of sub-buckets beyond the oldest this call counts.
      DropBucketsBefore(current - kRetainedBuckets, buckets);
      const int64_t oldest = current - kSubBuckets;
      auto first_live =
          std::find_if(buckets.begin(), buckets.end(), [&](const Bucket& b) {
            return static_cast<int64_t>(b.index) >= oldest;
          });
      live = absl::MakeConstSpan(buckets.data() + (first_live - buckets.begin()),
                                 buckets.end() - first_live);
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
            const absl::Time free_at = absl::FromUnixNanos(
                (Absolute(item.scope, b) + kSubBuckets + 1) * g);
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
      Shard& s = shards_[item.shard];
      s.mu.AssertHeld();
      auto it = s.counters.find(item.key);
      if (it == s.counters.end()) {
        it = s.counters
                 .try_emplace(CounterKey{item.key.scope,
                                         std::string(item.key.value)})
                 .first;
      }
      Buckets& buckets = it->second;
      const uint32_t current =
          static_cast<uint32_t>(item.bucket - item.scope.base_index);
      if (buckets.empty() || buckets.back().index != current) {
        buckets.push_back(Bucket{current, 0, 0});
      }
      buckets.back().requests = SaturatingAdd(buckets.back().requests, 1);
      buckets.back().tokens += tokens;
      RateCharge& charge = charges->emplace_back();
      charge.rule = std::string(item.ask->rule);
      charge.key = std::string(item.ask->key);
      charge.window_seconds = item.scope.window_seconds;
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
  const uint32_t id =
      ScopeId(charge.rule, charge.window_seconds, charge.bucket);
  const Scope scope = ScopeOf(id);
  const CounterKeyView key{id, charge.key};
  Shard& s = shards_[ShardOf(key)];
  absl::MutexLock lock(&s.mu);
  auto it = s.counters.find(key);
  if (it == s.counters.end()) return;
  for (Bucket& b : it->second) {
    if (Absolute(scope, b) == charge.bucket) {
      b.tokens = std::max<int64_t>(0, b.tokens + actual_tokens - charge.tokens);
      return;
    }
  }
}

void RateLimiter::Restore(const RateCharge& charge, int64_t requests) {
  const uint32_t id =
      ScopeId(charge.rule, charge.window_seconds, charge.bucket);
  const Scope scope = ScopeOf(id);
  const int64_t relative = charge.bucket - scope.base_index;
  if (relative < 0 || relative > std::numeric_limits<uint32_t>::max()) return;
  const CounterKeyView key{id, charge.key};
  Shard& s = shards_[ShardOf(key)];
  absl::MutexLock lock(&s.mu);
  auto it = s.counters.find(key);
  if (it == s.counters.end()) {
    it = s.counters.try_emplace(CounterKey{id, std::string(charge.key)}).first;
  }
  Buckets& buckets = it->second;
  auto at = std::lower_bound(
      buckets.begin(), buckets.end(), relative,
      [](const Bucket& b, int64_t index) {
        return static_cast<int64_t>(b.index) < index;
      });
  if (at == buckets.end() || at->index != relative) {
    at = buckets.insert(at, Bucket{static_cast<uint32_t>(relative), 0, 0});
  }
  at->requests = SaturatingAdd(at->requests, requests);
  at->tokens = std::max<int64_t>(0, at->tokens + charge.tokens);
  if (at->requests == 0 && at->tokens == 0) buckets.erase(at);
  if (buckets.empty()) s.counters.erase(it);
}

size_t RateLimiter::EvictIdle(absl::Time now) {
  std::vector<Scope> scopes;
  {
    absl::ReaderMutexLock lock(&scopes_mu_);
    scopes = scopes_;
  }
  // The oldest sub-bucket each scope keeps, relative to its base.
  std::vector<int64_t> keep_from;
  keep_from.reserve(scopes.size());
  for (const Scope& scope : scopes) {
    keep_from.push_back(
        SubBucketIndex(absl::Seconds(scope.window_seconds), now) -
        kRetainedBuckets - scope.base_index);
  }
  size_t evicted = 0;
  for (Shard& s : shards_) {
    absl::MutexLock lock(&s.mu);
    for (auto it = s.counters.begin(); it != s.counters.end();) {
      // A scope registered after the copy above has nothing old yet.
      if (it->first.scope < keep_from.size()) {
        DropBucketsBefore(keep_from[it->first.scope], it->second);
      }
      if (it->second.empty()) {
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
