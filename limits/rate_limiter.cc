#include "limits/rate_limiter.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

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
  return static_cast<int32_t>(
      std::clamp<int64_t>(a + b, 0, std::numeric_limits<int32_t>::max()));
}

}  // namespace

int64_t SubBucketIndex(absl::Duration window, absl::Time t) {
  return FloorDiv(absl::ToUnixNanos(t), SubBucketNanos(window));
}

RateLimiter::ScopeIndex::ScopeIndex(size_t capacity)
    : mask(capacity - 1),
      slots(std::make_unique<std::atomic<const Scope*>[]>(capacity)) {
  for (size_t i = 0; i < capacity; ++i) {
    slots[i].store(nullptr, std::memory_order_relaxed);
  }
}

RateLimiter::RateLimiter() {
  absl::MutexLock lock(&scopes_mu_);
  indexes_.push_back(std::make_unique<const ScopeIndex>(16));
  scope_index_.store(indexes_.back().get(), std::memory_order_release);
}

RateLimiter::~RateLimiter() = default;

const RateLimiter::Scope& RateLimiter::FindScope(absl::string_view rule,
                                                 int64_t window_seconds,
                                                 int64_t index_now) {
  std::atomic<const Scope*>& memo =
      scope_memo_[((reinterpret_cast<uintptr_t>(rule.data()) >> 3) ^
                   static_cast<uintptr_t>(window_seconds)) %
                  kScopeMemoSlots];
  const Scope* remembered = memo.load(std::memory_order_acquire);
  if (remembered != nullptr && remembered->window_seconds == window_seconds &&
      ShortEqual(remembered->rule, rule)) {
    return *remembered;
  }
  const size_t hash = absl::HashOf(rule, window_seconds);
  const ScopeIndex* index = scope_index_.load(std::memory_order_acquire);
  for (size_t i = hash & index->mask;; i = (i + 1) & index->mask) {
    const Scope* scope = index->slots[i].load(std::memory_order_acquire);
    if (scope == nullptr) break;
    if (scope->hash == hash && scope->window_seconds == window_seconds &&
        ShortEqual(scope->rule, rule)) {
      memo.store(scope, std::memory_order_release);
      return *scope;
    }
  }
  const Scope& added = AddScope(rule, window_seconds, hash, index_now);
  memo.store(&added, std::memory_order_release);
  return added;
}

const RateLimiter::Scope& RateLimiter::AddScope(absl::string_view rule,
                                                int64_t window_seconds,
                                                size_t hash,
                                                int64_t index_now) {
  absl::MutexLock lock(&scopes_mu_);
  const ScopeIndex* index = indexes_.back().get();
  size_t free_slot = 0;
  for (size_t i = hash & index->mask;; i = (i + 1) & index->mask) {
    const Scope* scope = index->slots[i].load(std::memory_order_relaxed);
    if (scope == nullptr) {
      free_slot = i;
      break;
    }
    // Registered by another thread since this one looked.
    if (scope->hash == hash && scope->window_seconds == window_seconds &&
        ShortEqual(scope->rule, rule)) {
      return *scope;
    }
  }
  auto added = std::make_unique<Scope>();
  added->rule = std::string(rule);
  added->window_seconds = window_seconds;
  added->base_index = index_now - kBaseMargin;
  added->id = static_cast<uint32_t>(scopes_.size());
  added->hash = hash;
  const Scope* scope = added.get();
  scopes_.push_back(std::move(added));
  const size_t capacity = index->mask + 1;
  if (2 * scopes_.size() <= capacity) {
    index->slots[free_slot].store(scope, std::memory_order_release);
    return *scope;
  }
  // Half full: publish a larger index holding every scope.
  auto larger = std::make_unique<ScopeIndex>(2 * capacity);
  for (const std::unique_ptr<const Scope>& s : scopes_) {
    size_t i = s->hash & larger->mask;
    while (larger->slots[i].load(std::memory_order_relaxed) != nullptr) {
      i = (i + 1) & larger->mask;
    }
    larger->slots[i].store(s.get(), std::memory_order_relaxed);
  }
  indexes_.push_back(std::move(larger));
  scope_index_.store(indexes_.back().get(), std::memory_order_release);
  return *scope;
}

int RateLimiter::ShardOf(size_t value_hash) {
  // High bits of the key's own hash: the maps' hash (CounterHash) mixes it
  // again with the scope and takes its control bytes from the low bits.
  return static_cast<int>((value_hash >> 40) % kShards);
}

RateLimiter::CounterKey::CounterKey(uint32_t scope_id, absl::string_view text)
    : scope(scope_id), size(static_cast<uint32_t>(text.size())) {
  if (inline_value()) {
    // An empty value (a rule without a key) may have no data pointer.
    if (!text.empty()) std::memcpy(bytes, text.data(), text.size());
    return;
  }
  char* copy = new char[text.size()];
  std::memcpy(copy, text.data(), text.size());
  std::memcpy(bytes, &copy, sizeof copy);
}

RateLimiter::CounterKey::CounterKey(CounterKey&& other) noexcept
    : scope(other.scope), size(other.size) {
  std::memcpy(bytes, other.bytes, kInlineBytes);
  other.size = 0;  // the heap copy, if any, is ours now
}

RateLimiter::CounterKey& RateLimiter::CounterKey::operator=(
    CounterKey other) noexcept {
  std::swap(scope, other.scope);
  std::swap(size, other.size);
  char held[kInlineBytes];
  std::memcpy(held, bytes, kInlineBytes);
  std::memcpy(bytes, other.bytes, kInlineBytes);
  std::memcpy(other.bytes, held, kInlineBytes);
  return *this;
}

RateLimiter::CounterKey::~CounterKey() {
  if (!inline_value()) delete[] heap();
}

char* RateLimiter::CounterKey::heap() const {
  char* value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

absl::string_view RateLimiter::CounterKey::value() const {
  return absl::string_view(inline_value() ? bytes : heap(), size);
}

void RateLimiter::DropBucketsBefore(int64_t relative_index, Buckets& buckets) {
  auto first_kept =
      std::find_if(buckets.begin(), buckets.end(), [&](const Bucket& b) {
        return static_cast<int64_t>(b.index) >= relative_index;
      });
  if (first_kept != buckets.begin()) buckets.erase(buckets.begin(), first_kept);
}

std::optional<RateDenial> RateLimiter::Acquire(absl::Span<const RateAsk> asks,
                                               int64_t tokens, absl::Time now,
                                               bool dry_run,
                                               RateCharges* charges) {
  return AcquireInto(asks, tokens, now, dry_run, [charges]() -> RateCharge& {
    return charges->emplace_back();
  });
}

std::optional<RateDenial> RateLimiter::Acquire(
    absl::Span<const RateAsk> asks, int64_t tokens, absl::Time now,
    bool dry_run, std::vector<RateCharge>* charges) {
  return AcquireInto(asks, tokens, now, dry_run, [charges]() -> RateCharge& {
    return charges->emplace_back();
  });
}

std::optional<RateDenial> RateLimiter::AcquireInto(
    absl::Span<const RateAsk> asks, int64_t tokens, absl::Time now,
    bool dry_run, absl::FunctionRef<RateCharge&()> append_charge) {
  struct Item {
    const RateAsk* ask;
    const WindowLimit* limit;
    const Scope* scope;
    CounterKeyView key;
    size_t hash;     // of key, as the shard's map hashes it
    int64_t bucket;  // the current sub-bucket, absolute
    int shard;
    Buckets* buckets;  // the counter, once found
  };
  absl::InlinedVector<Item, 8> items;
  int shard = 0;
  size_t value_hash = 0;
  const RateAsk* previous = nullptr;
  // Rules often share their window (a minute): its sub-bucket is computed
  // once (two 64-bit divisions).
  const WindowLimit* bucket_of = nullptr;  // the window previous_bucket is of
  int64_t previous_bucket = 0;
  for (const RateAsk& ask : asks) {
    // Rules often share their key (the user): hash it once.
    if (previous == nullptr || previous->key != ask.key) {
      value_hash = ValueHash(ask.key);
      shard = ShardOf(value_hash);
    }
    previous = &ask;
    for (const WindowLimit& limit : ask.windows) {
      Item item;
      item.ask = &ask;
      item.limit = &limit;
      if (bucket_of == nullptr || bucket_of->window != limit.window) {
        bucket_of = &limit;
        previous_bucket = SubBucketIndex(limit.window, now);
      }
      item.bucket = previous_bucket;
      item.scope =
          &FindScope(ask.rule, absl::ToInt64Seconds(limit.window), item.bucket);
      item.key = {item.scope->id, ask.key, value_hash};
      item.hash = KeyHash()(item.key);
      item.shard = shard;
      item.buckets = nullptr;
      items.push_back(item);
    }
  }
  if (items.empty()) return std::nullopt;

  std::array<bool, kShards> locked{};
  for (const Item& item : items) locked[item.shard] = true;
  for (int i = 0; i < kShards; ++i) {
    if (locked[i]) shards_[i].mu.Lock();
  }

  // Start every counter's cache misses before waiting on the first: the
  // prefetch brings the control bytes, and the finds, in a loop of their
  // own, leave the CPU free to load the slots of all of them at once.
  for (const Item& item : items) {
    Shard& s = shards_[item.shard];
    s.mu.AssertHeld();
    s.counters.prefetch(item.key);
  }
  for (Item& item : items) {
    Shard& s = shards_[item.shard];
    s.mu.AssertHeld();
    auto it = s.counters.find(item.key, item.hash);
    if (it != s.counters.end()) item.buckets = &it->second;
  }
  std::optional<RateDenial> denial;
  for (Item& item : items) {
    int64_t used_requests = 0, used_tokens = 0;
    absl::Span<const Bucket> live;
    const int64_t current = item.bucket - item.scope->base_index;
    if (item.buckets != nullptr) {
      Buckets& buckets = *item.buckets;
      // Callers read the clock before they take the lock, so a call may
      // arrive here with a time a little before one already counted: keep
      // a window's worth of sub-buckets beyond the oldest this call counts.
      DropBucketsBefore(current - kRetainedBuckets, buckets);
      const int64_t oldest = current - kSubBuckets;
      auto first_live =
          std::find_if(buckets.begin(), buckets.end(), [&](const Bucket& b) {
            return static_cast<int64_t>(b.index) >= oldest;
          });
      live =
          absl::MakeConstSpan(buckets.data() + (first_live - buckets.begin()),
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
                (Absolute(*item.scope, b) + kSubBuckets + 1) * g);
            d.retry_after = std::max(absl::ZeroDuration(), free_at - now);
            break;
          }
        }
      }
      const bool worse = !denial.has_value() ||
                         (d.never_fits() && !denial->never_fits()) ||
                         (d.never_fits() == denial->never_fits() &&
                          d.retry_after > denial->retry_after);
      if (worse) denial = std::move(d);
    };
    check(false, item.limit->max_requests, used_requests, 1);
    check(true, item.limit->max_tokens, used_tokens, tokens);
  }

  if (!denial.has_value() && !dry_run) {
    // New counters first: an insertion may move the shard's other counters,
    // so those are found again.
    std::array<bool, kShards> grown{};
    for (Item& item : items) {
      if (item.buckets != nullptr) continue;
      Shard& s = shards_[item.shard];
      s.mu.AssertHeld();
      const size_t before = s.counters.size();
      auto it = s.counters
                    .try_emplace(
                        CounterKey(item.key.scope, item.key.value))
                    .first;
      if (s.counters.size() != before) grown[item.shard] = true;
      item.buckets = &it->second;
    }
    for (Item& item : items) {
      Shard& s = shards_[item.shard];
      s.mu.AssertHeld();
      if (grown[item.shard]) {
        item.buckets = &s.counters.find(item.key, item.hash)->second;
      }
      Buckets& buckets = *item.buckets;
      const uint32_t current =
          static_cast<uint32_t>(item.bucket - item.scope->base_index);
      if (buckets.empty() || buckets.back().index != current) {
        buckets.push_back(Bucket{current, 0, 0});
      }
      buckets.back().requests = SaturatingAdd(buckets.back().requests, 1);
      buckets.back().tokens += tokens;
      RateCharge& charge = append_charge();
      charge.rule = item.ask->rule;
      charge.key = item.ask->key;
      charge.window_seconds = item.scope->window_seconds;
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
  struct Item {
    const RateCharge* charge;
    const Scope* scope;
    size_t value_hash;
    int shard;
  };
  absl::InlinedVector<Item, 8> items;
  const RateCharge* previous = nullptr;
  size_t value_hash = 0;
  for (const RateCharge& charge : charges) {
    // The charges of one key (a user's rules) are next to each other: hash
    // the key once.
    if (previous == nullptr || previous->key != charge.key) {
      value_hash = ValueHash(charge.key);
    }
    previous = &charge;
    items.push_back(
        {&charge, &FindScope(charge.rule, charge.window_seconds, charge.bucket),
         value_hash, ShardOf(value_hash)});
  }
  // One lock per shard, whatever the number of windows in it.
  std::sort(items.begin(), items.end(),
            [](const Item& a, const Item& b) { return a.shard < b.shard; });
  for (size_t i = 0; i < items.size();) {
    Shard& s = shards_[items[i].shard];
    absl::MutexLock lock(&s.mu);
    const int shard = items[i].shard;
    for (; i < items.size() && items[i].shard == shard; ++i) {
      const RateCharge& charge = *items[i].charge;
      AddLocked(s.counters, *items[i].scope, charge.key, items[i].value_hash,
                charge.bucket, -1, -charge.tokens);
    }
  }
}

void RateLimiter::Correct(const RateCharge& charge, int64_t actual_tokens) {
  const Scope& scope =
      FindScope(charge.rule, charge.window_seconds, charge.bucket);
  const CounterKeyView key{scope.id, charge.key, ValueHash(charge.key)};
  Shard& s = shards_[ShardOf(key.value_hash)];
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
  const Scope& scope =
      FindScope(charge.rule, charge.window_seconds, charge.bucket);
  const size_t value_hash = ValueHash(charge.key);
  Shard& s = shards_[ShardOf(value_hash)];
  absl::MutexLock lock(&s.mu);
  AddLocked(s.counters, scope, charge.key, value_hash, charge.bucket, requests,
            charge.tokens);
}

void RateLimiter::AddLocked(Counters& counters, const Scope& scope,
                            absl::string_view key, size_t value_hash,
                            int64_t bucket, int64_t requests, int64_t tokens) {
  const int64_t relative = bucket - scope.base_index;
  if (relative < 0 || relative > std::numeric_limits<uint32_t>::max()) return;
  const CounterKeyView view{scope.id, key, value_hash};
  auto it = counters.find(view);
  if (it == counters.end()) {
    it = counters.try_emplace(CounterKey(scope.id, key)).first;
  }
  Buckets& buckets = it->second;
  auto at = std::lower_bound(buckets.begin(), buckets.end(), relative,
                             [](const Bucket& b, int64_t index) {
                               return static_cast<int64_t>(b.index) < index;
                             });
  if (at == buckets.end() || at->index != relative) {
    at = buckets.insert(at, Bucket{static_cast<uint32_t>(relative), 0, 0});
  }
  at->requests = SaturatingAdd(at->requests, requests);
  at->tokens = std::max<int64_t>(0, at->tokens + tokens);
  if (at->requests == 0 && at->tokens == 0) buckets.erase(at);
  if (buckets.empty()) counters.erase(it);
}

size_t RateLimiter::EvictIdle(absl::Time now) {
  // The oldest sub-bucket each scope keeps, relative to its base, by id.
  std::vector<int64_t> keep_from;
  {
    absl::MutexLock lock(&scopes_mu_);
    keep_from.reserve(scopes_.size());
    for (const std::unique_ptr<const Scope>& scope : scopes_) {
      keep_from.push_back(
          SubBucketIndex(absl::Seconds(scope->window_seconds), now) -
          kRetainedBuckets - scope->base_index);
    }
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
