#ifndef BURSAR_TESTS_SUPPORT_ALLOC_COUNTER_H_
#define BURSAR_TESTS_SUPPORT_ALLOC_COUNTER_H_

// Counts heap allocations, for tests and benchmarks that assert or report
// "allocations per call". Linking this library replaces the global
// allocation functions (every `operator new` and `operator delete`,
// including the nothrow and aligned forms) of the whole binary with ones that
// count and then call malloc / aligned_alloc; link it only into test and
// benchmark binaries, and only once per binary. Allocations made with malloc
// directly are not seen.
//
// Counting costs one relaxed store to a counter of the thread's own (no
// shared cache line, no locked instruction), so it does not slow down
// multi-threaded benchmarks. Thread-safe.

#include <cstdint>

namespace bursar::testing {

// Allocations made by the calling thread since it started.
int64_t ThreadAllocations();

// Allocations made by every thread since the process started (threads that
// have exited included).
int64_t TotalAllocations();

// Allocations the calling thread makes while `body` runs.
template <typename Body>
int64_t AllocationsDuring(Body&& body) {
  const int64_t before = ThreadAllocations();
  body();
  return ThreadAllocations() - before;
}

}  // namespace bursar::testing

#endif  // BURSAR_TESTS_SUPPORT_ALLOC_COUNTER_H_
