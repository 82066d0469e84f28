#ifndef BURSAR_LIMITS_CONCURRENCY_POOLS_H_
#define BURSAR_LIMITS_CONCURRENCY_POOLS_H_

// In-flight call slots per named pool, with slots reserved per priority
// class.
//
// A pool of max_in_flight slots with reserve {critical: 3} has
// max_in_flight - 3 shared slots that any class may take, and 3 that only
// `critical` may take once the shared ones are gone: standard traffic never
// gets more than the shared slots, critical traffic can get all of them.
// With several reserving classes each keeps its own reserve. A call takes
// one slot in every pool it matches, or none. A slot is given back with
// Release (Report, cancellation, expiry of the reservation).
//
// Thread-safe. The counts are memory only: the server rebuilds them at
// start-up from the open reservations, which are durable. A pool's entry
// stays once used (one small entry per pool name any policy named), so
// that a quiet pool's next call finds it instead of inserting it again.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace bursar::limits {

// The class of a request that names none.
inline constexpr absl::string_view kStandardPriority = "standard";

struct PoolAsk {
  absl::string_view pool;
  int64_t max_in_flight = 0;
  // Priority class -> reserved slots; may be null (no reserves).
  const absl::flat_hash_map<std::string, int64_t>* reserve = nullptr;
};

struct PoolDenial {
  std::string pool;
  int64_t in_flight = 0;
  int64_t max_in_flight = 0;
  // Slots reserved for classes other than the caller's.
  int64_t reserved_for_others = 0;
};

class ConcurrencyPools {
 public:
  // Takes a slot for `priority` in every pool, or none (then returns the
  // first pool that is full for this class). dry_run takes nothing.
  std::optional<PoolDenial> Acquire(absl::Span<const PoolAsk> pools,
                                    absl::string_view priority, bool dry_run);

  // Takes a slot without asking whether there is one: for calls already in
  // flight when the server restarted.
  void Restore(const PoolAsk& pool, absl::string_view priority);

  // Gives one slot of `priority` back to `pool`. Releasing more than was
  // taken leaves the pool at zero.
  void Release(absl::string_view pool, absl::string_view priority);

  // Slots in use in `pool` now.
  int64_t in_flight(absl::string_view pool) const;

 private:
  struct Pool {
    int64_t shared_in_use = 0;
    absl::flat_hash_map<std::string, int64_t> reserved_in_use;
    int64_t total() const;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Pool> pools_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bursar::limits

#endif  // BURSAR_LIMITS_CONCURRENCY_POOLS_H_
