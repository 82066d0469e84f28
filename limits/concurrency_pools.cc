#include "limits/concurrency_pools.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"

namespace bursar::limits {
namespace {

absl::string_view ClassOf(absl::string_view priority) {
  return priority.empty() ? kStandardPriority : priority;
}

int64_t ReservedFor(const PoolAsk& ask, absl::string_view priority) {
  if (ask.reserve == nullptr) return 0;
  auto it = ask.reserve->find(priority);
  return it == ask.reserve->end() ? 0 : it->second;
}

int64_t ReservedTotal(const PoolAsk& ask) {
  int64_t total = 0;
  if (ask.reserve != nullptr) {
    for (const auto& [cls, slots] : *ask.reserve) total += slots;
  }
  return total;
}

}  // namespace

int64_t ConcurrencyPools::Pool::total() const {
  int64_t total = shared_in_use;
  for (const auto& [cls, n] : reserved_in_use) total += n;
  return total;
}

std::optional<PoolDenial> ConcurrencyPools::Acquire(
    absl::Span<const PoolAsk> pools, absl::string_view priority,
    bool dry_run) {
  const absl::string_view cls = ClassOf(priority);
  absl::MutexLock lock(&mu_);
  // Decide every pool first (all or nothing), then take.
  enum class Take : char { kShared, kReserved };
  struct Decided {
    Pool* pool;  // null: not in the map yet
    Take take;
  };
  absl::InlinedVector<Decided, 4> decided;
  for (const PoolAsk& ask : pools) {
    const int64_t reserved_total = ReservedTotal(ask);
    const int64_t shared_capacity =
        std::max<int64_t>(0, ask.max_in_flight - reserved_total);
    const int64_t own_reserve = ReservedFor(ask, cls);
    int64_t shared_in_use = 0, own_in_use = 0, in_flight = 0;
    Pool* pool = nullptr;
    if (auto it = pools_.find(ask.pool); it != pools_.end()) {
      pool = &it->second;
      shared_in_use = pool->shared_in_use;
      if (auto own = pool->reserved_in_use.find(cls);
          own != pool->reserved_in_use.end()) {
        own_in_use = own->second;
      }
      in_flight = pool->total();
    }
    if (in_flight < ask.max_in_flight && shared_in_use < shared_capacity) {
      decided.push_back({pool, Take::kShared});
    } else if (in_flight < ask.max_in_flight && own_in_use < own_reserve) {
      decided.push_back({pool, Take::kReserved});
    } else {
      return PoolDenial{std::string(ask.pool), in_flight, ask.max_in_flight,
                        reserved_total - own_reserve};
    }
  }
  if (dry_run) return std::nullopt;
  // Pools new to the map first: an insertion may move the others.
  bool inserted = false;
  for (size_t i = 0; i < pools.size(); ++i) {
    if (decided[i].pool != nullptr) continue;
    decided[i].pool = &pools_[pools[i].pool];
    inserted = true;
  }
  for (size_t i = 0; i < pools.size(); ++i) {
    Pool& pool = inserted ? pools_[pools[i].pool] : *decided[i].pool;
    if (decided[i].take == Take::kShared) {
      ++pool.shared_in_use;
    } else {
      ++pool.reserved_in_use[cls];
    }
  }
  return std::nullopt;
}

void ConcurrencyPools::Restore(const PoolAsk& ask,
                               absl::string_view priority) {
  const absl::string_view cls = ClassOf(priority);
  absl::MutexLock lock(&mu_);
  Pool& pool = pools_[ask.pool];
  const int64_t shared_capacity = ask.max_in_flight - ReservedTotal(ask);
  if (pool.shared_in_use >= shared_capacity &&
      pool.reserved_in_use[cls] < ReservedFor(ask, cls)) {
    ++pool.reserved_in_use[cls];
  } else {
    ++pool.shared_in_use;
  }
}

void ConcurrencyPools::Release(absl::string_view pool_name,
                               absl::string_view priority) {
  const absl::string_view cls = ClassOf(priority);
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(pool_name);
  if (it == pools_.end()) return;
  Pool& pool = it->second;
  // A class's own reserve is given back first, so shared slots stay taken
  // only while the class needs more than its reserve.
  if (auto own = pool.reserved_in_use.find(cls);
      own != pool.reserved_in_use.end() && own->second > 0) {
    if (--own->second == 0) pool.reserved_in_use.erase(own);
  } else if (pool.shared_in_use > 0) {
    --pool.shared_in_use;
  }
}

int64_t ConcurrencyPools::in_flight(absl::string_view pool) const {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(pool);
  return it == pools_.end() ? 0 : it->second.total();
}

}  // namespace bursar::limits
