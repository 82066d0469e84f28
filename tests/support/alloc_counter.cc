#include "tests/support/alloc_counter.h"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace bursar::testing {
namespace {

// One counter per thread, each on its own cache line; written only by its
// thread (a relaxed load and store, no locked instruction) and read by
// TotalAllocations. Threads beyond kSlots share the overflow counter.
constexpr int kSlots = 256;

struct alignas(64) Slot {
  std::atomic<int64_t> count{0};
};

Slot slots[kSlots];
std::atomic<int> slots_taken{0};
std::atomic<int64_t> overflow{0};

// Plain thread_locals of trivial types: no TLS constructor or destructor,
// so they are safe to touch inside operator new at any time.
thread_local Slot* own_slot = nullptr;
thread_local bool own_slot_claimed = false;
thread_local int64_t own_count = 0;

void Count() {
  ++own_count;
  if (!own_slot_claimed) {
    own_slot_claimed = true;
    const int index = slots_taken.fetch_add(1, std::memory_order_relaxed);
    if (index < kSlots) own_slot = &slots[index];
  }
  if (own_slot != nullptr) {
    own_slot->count.store(own_slot->count.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  } else {
    overflow.fetch_add(1, std::memory_order_relaxed);
  }
}

void* Allocate(std::size_t size) {
  Count();
  return std::malloc(size == 0 ? 1 : size);
}

void* AllocateAligned(std::size_t size, std::align_val_t alignment) {
  Count();
  const std::size_t align = static_cast<std::size_t>(alignment);
  const std::size_t rounded = (size + align - 1) / align * align;
  return std::aligned_alloc(align, rounded == 0 ? align : rounded);
}

void* AllocateOrThrow(std::size_t size) {
  void* p = Allocate(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* AllocateAlignedOrThrow(std::size_t size, std::align_val_t alignment) {
  void* p = AllocateAligned(size, alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

int64_t ThreadAllocations() { return own_count; }

int64_t TotalAllocations() {
  int64_t total = overflow.load(std::memory_order_relaxed);
  for (const Slot& slot : slots) {
    total += slot.count.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace bursar::testing

using bursar::testing::Allocate;
using bursar::testing::AllocateAligned;
using bursar::testing::AllocateAlignedOrThrow;
using bursar::testing::AllocateOrThrow;

void* operator new(std::size_t size) { return AllocateOrThrow(size); }
void* operator new[](std::size_t size) { return AllocateOrThrow(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return Allocate(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return Allocate(size);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return AllocateAlignedOrThrow(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return AllocateAlignedOrThrow(size, alignment);
}
void* operator new(std::size_t size, std::align_val_t alignment,
                   const std::nothrow_t&) noexcept {
  return AllocateAligned(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment,
                     const std::nothrow_t&) noexcept {
  return AllocateAligned(size, alignment);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  std::free(p);
}
