#ifndef BURSAR_LIMITS_RATE_LIMITER_H_
#define BURSAR_LIMITS_RATE_LIMITER_H_

// Request and token rate limits over sliding windows, per (rule, window,
// key) counter, all in memory.
//
// Algorithm (docs/decisions/006-sliding-window-rate-limits.md): a window of
// length W is cut into kSubBuckets sub-buckets of W / kSubBuckets. A call at
// time t is admitted when what the current sub-bucket and the kSubBuckets
// before it hold, plus the call, fits the limit. Those buckets cover
// [t - W, t], so any interval of length W sees at most `limit`: there is no
// fixed-window double burst at a boundary. The price is granularity: a
// steady stream at the limit is admitted at kSubBuckets / (kSubBuckets + 1)
// of it, and `retry_after` is exact to the sub-bucket (it names the moment
// enough old sub-buckets leave the window for the call to fit).
//
// Memory: a counter keeps only its non-empty sub-buckets (one inline), about
// 100 bytes in all (bench/limits_benchmark.cc), and a counter whose
// sub-buckets have all left their window (and as long again, see
// kRetainedBuckets) is idle: EvictIdle drops it.
//
// Thread-safe. Counters are sharded by key value, so the windows of every
// rule that counts one key (a user) are in one shard; one Acquire locks the
// shards it touches (usually one) in a fixed order, so a call is admitted
// by every window of every rule or by none. The (rule, window) scopes are
// found without a lock (an append-only table read with atomic loads), and
// Acquire allocates nothing for up to kInlineCharges charges once a counter
// exists (docs/decisions/023-decision-hot-path.md).

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace bursar::limits {

inline constexpr int kSubBuckets = 20;

// The limits of one window of a rule; 0 means "no limit of that kind".
struct WindowLimit {
  absl::Duration window;
  int64_t max_requests = 0;
  int64_t max_tokens = 0;
};

// One counter a call must fit: rule `rule` for the key value `key` (empty
// for a rule with one shared counter), in each of `windows`.
struct RateAsk {
  absl::string_view rule;
  absl::string_view key;
  absl::Span<const WindowLimit> windows;
};

// What an admitted call took from one window of one counter: enough to
// correct the tokens at Report and to persist the counter. `rule` and `key`
// are views: those Acquire returns point where its asks pointed (the
// policy's rule name, the request's key value), so copy them to keep a
// charge longer than those live (the server copies them into the hold's
// terms).
struct RateCharge {
  absl::string_view rule;
  absl::string_view key;
  int64_t window_seconds = 0;  // whole seconds (windows are 1 s .. 1 day)
  int64_t bucket = 0;          // sub-bucket index since the Unix epoch
  int64_t tokens = 0;
};

// Why a call was not admitted: the counter and window that are full.
struct RateDenial {
  std::string rule;
  std::string key;
  absl::Duration window;
  bool tokens = false;  // which limit: tokens (true) or requests
  int64_t limit = 0;
  int64_t used = 0;    // in the window now
  int64_t wanted = 0;  // what the call asked for
  // How long until the call fits, other traffic aside; zero when it never
  // can (wanted > limit).
  absl::Duration retry_after;
  bool never_fits() const { return wanted > limit; }
};

// Charges of one call: a policy rarely has more than four rate windows that
// match one call, and those need no heap.
inline constexpr int kInlineCharges = 4;
using RateCharges = absl::InlinedVector<RateCharge, kInlineCharges>;

class RateLimiter {
 public:
  RateLimiter();
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Admits one request of `tokens` tokens against every window of every
  // ask, or none. On admission appends one RateCharge per window to
  // `charges`, in the order of the asks and their windows (unless dry_run,
  // which takes nothing), and returns nullopt; otherwise returns the denial
  // with the longest retry_after.
  std::optional<RateDenial> Acquire(absl::Span<const RateAsk> asks,
                                    int64_t tokens, absl::Time now,
                                    bool dry_run, RateCharges* charges);
  // The same, appending to a std::vector.
  std::optional<RateDenial> Acquire(absl::Span<const RateAsk> asks,
                                    int64_t tokens, absl::Time now,
                                    bool dry_run,
                                    std::vector<RateCharge>* charges);

  // Gives back what Acquire took (the call did not go ahead after all).
  // Locks each shard the charges are in once.
  void Release(absl::Span<const RateCharge> charges);

  // The call used `actual_tokens` instead of charge.tokens: moves the
  // difference in the sub-bucket it was charged to. A sub-bucket that has
  // left its window is past caring and is left alone.
  void Correct(const RateCharge& charge, int64_t actual_tokens);

  // Adds persisted figures back at start-up (a counter's sub-bucket).
  void Restore(const RateCharge& charge, int64_t requests);

  // Drops every counter whose sub-buckets have all left their window.
  // Returns how many were dropped.
  size_t EvictIdle(absl::Time now);

  // Counters in memory.
  size_t size() const;

 private:
  static constexpr int kShards = 16;
  // Sub-buckets kept behind the current one: the window's, and as many
  // again for calls whose clock reading lags another's.
  static constexpr int64_t kRetainedBuckets = 2 * kSubBuckets;

  // A (rule, window) pair. Counters name their scope by a small id; a
  // sub-bucket index is stored relative to the scope's base (32 bits cover
  // 6.8 years of 50 ms sub-buckets, the smallest). Immutable once
  // published; lives as long as the limiter.
  struct Scope {
    std::string rule;
    int64_t window_seconds = 0;
    int64_t base_index = 0;
    uint32_t id = 0;
    size_t hash = 0;  // of (rule, window_seconds)
  };
  // Open addressing over scope pointers, at most half full; a slot goes
  // from null to a scope once and never changes again, so readers probe it
  // with acquire loads and no lock. A full index is replaced by one twice
  // the size (the old ones are kept until the limiter goes: a reader may
  // still be probing one).
  struct ScopeIndex {
    explicit ScopeIndex(size_t capacity);
    size_t mask;
    std::unique_ptr<std::atomic<const Scope*>[]> slots;
  };
  // Memory per counter is what the one-million-keys target is about: 24
  // bytes of key, 24 of sub-buckets (one inline): a 48-byte slot.
  struct Bucket {
    uint32_t index = 0;  // relative to the scope's base_index
    int32_t requests = 0;
    int64_t tokens = 0;
  };
  // Non-empty sub-buckets, oldest first.
  using Buckets = absl::InlinedVector<Bucket, 1>;
  // A counter's scope and key value; values up to kInlineBytes (user ids,
  // team names) are stored inline, longer ones on the heap.
  struct CounterKey {
    static constexpr uint32_t kInlineBytes = 16;
    uint32_t scope = 0;
    uint32_t size = 0;
    char bytes[kInlineBytes];  // the value, or a pointer to it

    CounterKey(uint32_t scope_id, absl::string_view text);
    CounterKey(const CounterKey& other)
        : CounterKey(other.scope, other.value()) {}
    CounterKey(CounterKey&& other) noexcept;
    CounterKey& operator=(CounterKey other) noexcept;
    ~CounterKey();
    absl::string_view value() const;

   private:
    bool inline_value() const { return size <= kInlineBytes; }
    char* heap() const;
  };
  // a == b for the short strings keys and rule names are, inline: a call
  // of memcmp costs more than the loop.
  static bool ShortEqual(absl::string_view a, absl::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] != b[i]) return false;
    }
    return true;
  }
  // A key value is hashed once per call (ValueHash), whatever the number of
  // windows and rules that count it: the shard comes from that hash, and a
  // counter's hash mixes it with the scope id (CounterHash), so the maps
  // (find, prefetch) never hash the string again.
  static size_t ValueHash(absl::string_view value) {
    return absl::HashOf(value);
  }
  static size_t CounterHash(uint32_t scope, size_t value_hash) {
    // The key's hash mixed with the scope (the finaliser of MurmurHash3):
    // every bit of both reaches the low bits the maps take their control
    // bytes from and the high bits they probe with.
    uint64_t x = value_hash ^ (uint64_t{scope} * 0x9E3779B97F4A7C15u);
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDu;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53u;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
  struct CounterKeyView {
    uint32_t scope;
    absl::string_view value;
    size_t value_hash;  // ValueHash(value); KeyEq ignores it
  };
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(const CounterKeyView& k) const {
      return CounterHash(k.scope, k.value_hash);
    }
    size_t operator()(const CounterKey& k) const {
      return CounterHash(k.scope, ValueHash(k.value()));
    }
  };
  struct KeyEq {
    using is_transparent = void;
    static CounterKeyView View(const CounterKey& k) {
      return {k.scope, k.value(), 0};
    }
    static CounterKeyView View(const CounterKeyView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      const CounterKeyView x = View(a), y = View(b);
      return x.scope == y.scope && ShortEqual(x.value, y.value);
    }
  };
  using Counters = absl::flat_hash_map<CounterKey, Buckets, KeyHash, KeyEq>;
  struct Shard {
    mutable absl::Mutex mu;
    Counters counters ABSL_GUARDED_BY(mu);
  };

  // The scope of (rule, window), registered on first use with a base a
  // little before `index_now`. Lock-free unless it registers.
  const Scope& FindScope(absl::string_view rule, int64_t window_seconds,
                         int64_t index_now) ABSL_LOCKS_EXCLUDED(scopes_mu_);
  const Scope& AddScope(absl::string_view rule, int64_t window_seconds,
                        size_t hash, int64_t index_now)
      ABSL_LOCKS_EXCLUDED(scopes_mu_);
  // Every counter of one key value is in the same shard; `value_hash` is
  // ValueHash(key).
  static int ShardOf(size_t value_hash);
  static void DropBucketsBefore(int64_t relative_index, Buckets& buckets);
  static int64_t Absolute(const Scope& scope, const Bucket& b) {
    return scope.base_index + b.index;
  }
  // Adds `requests` and `tokens` (either may be negative; counts stop at
  // zero) to the sub-bucket `bucket` (absolute) of the counter.
  static void AddLocked(Counters& counters, const Scope& scope,
                        absl::string_view key, size_t value_hash,
                        int64_t bucket, int64_t requests, int64_t tokens);
  std::optional<RateDenial> AcquireInto(
      absl::Span<const RateAsk> asks, int64_t tokens, absl::Time now,
      bool dry_run, absl::FunctionRef<RateCharge&()> append_charge)
      ABSL_NO_THREAD_SAFETY_ANALYSIS;  // locks a run-time set of shards

  std::array<Shard, kShards> shards_;
  // A direct-mapped memo in front of the scope index, by where the rule's
  // name lives and the window: the asks of one policy (and the charges
  // viewing them) name their rules from the same place call after call, so
  // most lookups skip hashing the name. A hit is checked against the
  // scope's own name and window, so an entry left by another string that
  // lived at that address, or a collision, only costs the full lookup.
  static constexpr size_t kScopeMemoSlots = 64;
  std::array<std::atomic<const Scope*>, kScopeMemoSlots> scope_memo_{};
  // The current index; never null.
  std::atomic<const ScopeIndex*> scope_index_;
  // Writers of the scope table (registering a scope) and EvictIdle.
  mutable absl::Mutex scopes_mu_;
  // By id.
  std::vector<std::unique_ptr<const Scope>> scopes_ ABSL_GUARDED_BY(scopes_mu_);
  // Every index built, the current one last.
  std::vector<std::unique_ptr<const ScopeIndex>> indexes_
      ABSL_GUARDED_BY(scopes_mu_);
};

// The sub-bucket of a window that contains `t`.
int64_t SubBucketIndex(absl::Duration window, absl::Time t);

}  // namespace bursar::limits

#endif  // BURSAR_LIMITS_RATE_LIMITER_H_
