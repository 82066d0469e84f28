// AlertHub: every watcher gets every alert; a slow one loses its oldest and
// is told how many; closing ends every watch.

#include "alerts/alert_hub.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace bursar::alerts {
namespace {

storage::AlertEntry Alert(std::string rule) {
  storage::AlertEntry alert;
  alert.rule = std::move(rule);
  return alert;
}

TEST(AlertHubTest, SlowWatcherDropsOldestAndIsToldHowMany) {
  AlertHub hub(/*queue_capacity=*/2);
  int fast_notified = 0;
  int slow_notified = 0;
  auto fast = hub.Subscribe([&] { ++fast_notified; });
  auto slow = hub.Subscribe([&] { ++slow_notified; });
  storage::AlertEntry out;
  int64_t missed = -1;

  hub.OnAlert(Alert("a"));
  ASSERT_TRUE(fast->Pop(&out, &missed));
  EXPECT_EQ(out.rule, "a");
  EXPECT_EQ(missed, 0);
  for (const char* rule : {"b", "c", "d"}) {
    hub.OnAlert(Alert(rule));
    ASSERT_TRUE(fast->Pop(&out, &missed));
    EXPECT_EQ(out.rule, rule);
    EXPECT_EQ(missed, 0);
  }
  EXPECT_EQ(fast_notified, 4);
  EXPECT_EQ(slow_notified, 4);
  // The slow watcher kept the newest two of a, b, c, d.
  ASSERT_TRUE(slow->Pop(&out, &missed));
  EXPECT_EQ(out.rule, "c");
  EXPECT_EQ(missed, 2);
  ASSERT_TRUE(slow->Pop(&out, &missed));
  EXPECT_EQ(out.rule, "d");
  EXPECT_EQ(missed, 0);
  EXPECT_FALSE(slow->Pop(&out, &missed));
}

TEST(AlertHubTest, UnsubscribedWatcherHearsNothingAndCloseEndsTheRest) {
  AlertHub hub;
  int first_notified = 0;
  int second_notified = 0;
  auto first = hub.Subscribe([&] { ++first_notified; });
  auto second = hub.Subscribe([&] { ++second_notified; });
  hub.Unsubscribe(first.get());
  EXPECT_EQ(hub.watchers(), 1u);
  hub.OnAlert(Alert("a"));
  EXPECT_EQ(first_notified, 0);
  EXPECT_EQ(second_notified, 1);
  EXPECT_FALSE(second->closed());
  hub.Close();
  EXPECT_TRUE(second->closed());
  EXPECT_EQ(second_notified, 2);
  EXPECT_TRUE(hub.Subscribe(nullptr)->closed());
}

}  // namespace
}  // namespace bursar::alerts
