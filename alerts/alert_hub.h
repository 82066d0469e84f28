#ifndef BURSAR_ALERTS_ALERT_HUB_H_
#define BURSAR_ALERTS_ALERT_HUB_H_

// Fans fired alerts out to live watchers (Admin.WatchAlerts). Each watcher
// has a bounded queue: a watcher that reads too slowly loses its oldest
// alerts, and the next alert it reads says how many it missed, so a slow
// watcher never holds up the engine or the other watchers. Thread-safe.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "alerts/alert_engine.h"
#include "storage/alert_store.h"

namespace bursar::alerts {

// One watcher's queue.
class AlertSubscription {
 public:
  explicit AlertSubscription(size_t capacity) : capacity_(capacity) {}

  // The oldest queued alert, and how many alerts were dropped from this
  // queue before it (since the last Pop that reported some). False when the
  // queue is empty.
  bool Pop(storage::AlertEntry* alert, int64_t* missed_before);
  // The hub closed (bursard stops): no more alerts will come.
  bool closed() const;

 private:
  friend class AlertHub;
  void Push(const storage::AlertEntry& alert);
  void Close();

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<storage::AlertEntry> queue_ ABSL_GUARDED_BY(mu_);
  int64_t missed_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class AlertHub final : public AlertListener {
 public:
  explicit AlertHub(size_t queue_capacity = 256)
      : queue_capacity_(queue_capacity) {}

  // A new watcher. `notify` is called (under the hub's lock, so it must not
  // call the hub, and must not block) whenever the subscription has
  // something new: an alert, or being closed. After Unsubscribe returns,
  // `notify` is not called again.
  std::shared_ptr<AlertSubscription> Subscribe(std::function<void()> notify);
  void Unsubscribe(const AlertSubscription* subscription);

  // Queues `alert` for every watcher (AlertListener).
  void OnAlert(const storage::AlertEntry& alert) override;

  // Closes every subscription, present and future.
  void Close();

  size_t watchers() const;

 private:
  struct Watcher {
    std::shared_ptr<AlertSubscription> subscription;
    std::function<void()> notify;
  };
  const size_t queue_capacity_;
  mutable absl::Mutex mu_;
  std::vector<Watcher> watchers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace bursar::alerts

#endif  // BURSAR_ALERTS_ALERT_HUB_H_
