// ThreadSanitizer annotations for an abseil that was not built with TSan.
//
// Debian's libabsl is not instrumented, so TSan cannot see that
// absl::Mutex::Unlock in one thread happens before absl::Mutex::Lock in the
// next: every field guarded by an absl::Mutex would look racy. This shared
// library, linked ahead of libabsl into every binary of a TSan build
// (cmake/sanitizers.cmake), defines the Mutex and CondVar entry points
// itself: each calls the real one (dlsym RTLD_NEXT) and tells TSan about the
// happens-before edge with __tsan_acquire / __tsan_release on the mutex's
// address. That is exactly the ordering a mutex gives, no more: a data race
// on memory the mutex does not cover is still reported. Await and LockWhen
// are rebuilt on Lock/Unlock (see below).
//
// Only for -DBURSAR_SANITIZE=thread builds; see docs/testing.md.

#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}

namespace {

#define BURSAR_STR2(x) #x
#define BURSAR_STR(x) BURSAR_STR2(x)

// The Itanium-mangled name of absl::<ns>::<cls>::<method>, where `tail` is
// the mangled "<len>method<params>" part.
std::string Mangled(const char* cls, const char* tail) {
  const std::string ns = BURSAR_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return "_ZN4absl" + std::to_string(ns.size()) + ns +
         std::to_string(std::string(cls).size()) + cls + tail;
}

template <typename Fn>
Fn Real(const char* cls, const char* tail) {
  const std::string name = Mangled(cls, tail);
  void* symbol = dlsym(RTLD_NEXT, name.c_str());
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan absl shim: %s not found\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<Fn>(symbol);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>("Mutex", "4LockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>("Mutex", "10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>("Mutex", "7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static auto real = Real<bool (*)(Mutex*)>("Mutex", "13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>("Mutex", "6UnlockEv");
  __tsan_release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>("Mutex", "12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

// The condition forms. abseil evaluates a waiter's Condition inside the
// uninstrumented library, at moments TSan cannot see (e.g. while another
// thread unlocks), which would make every read in a Condition look racy.
// So they are rebuilt here on Lock/Unlock: the Condition is only ever
// evaluated by its own thread, holding the mutex as TSan sees it. Slower
// (a short sleep between checks), which only a TSan build pays.
namespace {

void Pause() { std::this_thread::sleep_for(std::chrono::microseconds(50)); }

}  // namespace

void Mutex::Await(const Condition& cond) {
  while (!cond.Eval()) {
    Unlock();
    Pause();
    Lock();
  }
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  while (!cond.Eval()) {
    if (absl::Now() >= deadline) return false;
    Unlock();
    Pause();
    Lock();
  }
  return true;
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  return AwaitWithDeadline(cond, absl::Now() + timeout);
}

void Mutex::LockWhen(const Condition& cond) {
  Lock();
  Await(cond);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  ReaderLock();
  while (!cond.Eval()) {
    ReaderUnlock();
    Pause();
    ReaderLock();
  }
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  Lock();
  return AwaitWithTimeout(cond, timeout);
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  Lock();
  return AwaitWithDeadline(cond, deadline);
}

void CondVar::Wait(Mutex* mu) {
  static auto real =
      Real<void (*)(CondVar*, Mutex*)>("CondVar", "4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "CondVar", "15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool result = real(this, mu, timeout);
  __tsan_acquire(mu);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "CondVar", "16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool result = real(this, mu, deadline);
  __tsan_acquire(mu);
  return result;
}

ABSL_NAMESPACE_END
}  // namespace absl
