#include "alerts/alert_hub.h"

#include <algorithm>
#include <utility>

namespace bursar::alerts {

bool AlertSubscription::Pop(storage::AlertEntry* alert,
                            int64_t* missed_before) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) return false;
  *alert = std::move(queue_.front());
  queue_.pop_front();
  *missed_before = missed_;
  missed_ = 0;
  return true;
}

bool AlertSubscription::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

void AlertSubscription::Push(const storage::AlertEntry& alert) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  if (queue_.size() >= capacity_) {
    queue_.pop_front();
    ++missed_;
  }
  queue_.push_back(alert);
}

void AlertSubscription::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

std::shared_ptr<AlertSubscription> AlertHub::Subscribe(
    std::function<void()> notify) {
  auto subscription =
      std::make_shared<AlertSubscription>(std::max<size_t>(1, queue_capacity_));
  absl::MutexLock lock(&mu_);
  if (closed_) {
    subscription->Close();
  } else {
    watchers_.push_back(Watcher{subscription, std::move(notify)});
  }
  return subscription;
}

void AlertHub::Unsubscribe(const AlertSubscription* subscription) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(std::remove_if(watchers_.begin(), watchers_.end(),
                                 [&](const Watcher& w) {
                                   return w.subscription.get() == subscription;
                                 }),
                  watchers_.end());
}

void AlertHub::OnAlert(const storage::AlertEntry& alert) {
  absl::MutexLock lock(&mu_);
  for (Watcher& watcher : watchers_) {
    watcher.subscription->Push(alert);
    if (watcher.notify) watcher.notify();
  }
}

void AlertHub::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (Watcher& watcher : watchers_) {
    watcher.subscription->Close();
    if (watcher.notify) watcher.notify();
  }
}

size_t AlertHub::watchers() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

}  // namespace bursar::alerts
