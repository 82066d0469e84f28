#ifndef BURSAR_SERVER_SHADOW_STATS_H_
#define BURSAR_SERVER_SHADOW_STATS_H_

// Shadow mode's bookkeeping (docs/decisions/005): how two policy plans for
// the same Check differ (ComparePlans), and ShadowStats, which counts the
// Checks compared and differing and keeps the latest differing ones in a
// fixed-size ring.
//
// Thread-safe: Check threads record concurrently while the Admin API reads a
// snapshot. The mutex is held only to bump counters or move one sample into
// its slot; recording a Check that does not differ allocates nothing.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "policy/call_plan.h"

namespace bursar::server {

// How many differing Checks a shadow run keeps by default.
inline constexpr size_t kShadowSampleCapacity = 100;

// The kinds of difference between two plans, as bits. A Check may differ in
// several kinds at once (a new model usually changes the estimate too).
enum ShadowDifference : uint32_t {
  // One plan allows the call, the other denies it.
  kShadowVerdict = 1u << 0,
  // Both deny, by different rules.
  kShadowDenyRule = 1u << 1,
  // Both allow (here and below), with a different model,
  kShadowModel = 1u << 2,
  // a different output cap,
  kShadowMaxOutputTokens = 1u << 3,
  // or a different worst-case estimate.
  kShadowEstimatedCost = 1u << 4,
  // Exactly one plan is an error, or both are errors with different codes.
  kShadowError = 1u << 5,
};
inline constexpr int kShadowDifferenceKinds = 6;

// The name of one kind ("verdict", "deny_rule", "model",
// "max_output_tokens", "estimated_cost", "error"), as the Admin API shows
// it; `bit` is one ShadowDifference.
absl::string_view ShadowDifferenceName(uint32_t bit);

// The kinds in which `shadow` differs from `active` (0: the same answer).
// Only the policy plan is compared: verdict, deny rule, model,
// max_output_tokens, estimated cost; not the fired rules' messages.
uint32_t ComparePlans(const absl::StatusOr<policy::CallPlan>& active,
                      const absl::StatusOr<policy::CallPlan>& shadow);

// One side of a sample: what a version planned.
struct ShadowPlanSummary {
  bool allowed = false;
  std::string model;
  int64_t max_output_tokens = 0;
  int64_t estimated_cost_nanos = 0;
  std::string deny_rule;
  std::string deny_message;
  // "CODE: message" when the version answered with an error; then the
  // fields above are unset.
  std::string error;
};

ShadowPlanSummary SummarizePlan(const absl::StatusOr<policy::CallPlan>& plan);

// One differing Check: the request as sent and both plans.
struct ShadowSample {
  absl::Time time = absl::UnixEpoch();
  std::string request_id;
  std::string model;
  std::string provider;
  std::vector<std::pair<std::string, std::string>> labels;  // sorted by key
  std::string priority;
  int64_t input_tokens = 0;
  int64_t max_output_tokens = 0;
  uint32_t differences = 0;  // ShadowDifference bits
  ShadowPlanSummary active;
  ShadowPlanSummary shadow;
};

struct ShadowCounts {
  int64_t compared = 0;
  int64_t differing = 0;
  // Checks per kind, indexed by the bit's position (kShadowVerdict: 0, ...).
  std::array<int64_t, kShadowDifferenceKinds> by_kind{};
};

struct ShadowSnapshot {
  ShadowCounts counts;
  // Newest first.
  std::vector<ShadowSample> samples;
};

class ShadowStats {
 public:
  // Keeps the latest `sample_capacity` differing Checks (at least 1).
  explicit ShadowStats(size_t sample_capacity = kShadowSampleCapacity);
  ShadowStats(const ShadowStats&) = delete;
  ShadowStats& operator=(const ShadowStats&) = delete;

  // A Check whose plans agree.
  void RecordSame();
  // A Check whose plans differ in sample.differences (not 0): counted, and
  // kept in place of the oldest sample when the ring is full.
  void RecordDifference(ShadowSample sample);

  // The counts and at most `sample_limit` samples (0: all kept), newest
  // first.
  ShadowSnapshot Snapshot(size_t sample_limit = 0) const;

  size_t sample_capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  ShadowCounts counts_ ABSL_GUARDED_BY(mu_);
  // capacity_ slots, allocated up front; the first `stored_` are in use and
  // `next_` is where the next sample goes (the oldest once full).
  std::vector<ShadowSample> ring_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  size_t stored_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace bursar::server

#endif  // BURSAR_SERVER_SHADOW_STATS_H_
