#ifndef BURSAR_BENCH_LOAD_SATURATION_H_
#define BURSAR_BENCH_LOAD_SATURATION_H_

// The search for the highest sustained Check rate (bursar-load
// --find_saturation), apart from the load itself: `run(rate, label)` runs
// one measurement at `rate` and says whether it was sustained.
//
// 1. Ramp: from start_rate, × ramp_factor per step while steps hold (a step
//    fails only if it fails twice: one noisy second on a shared machine must
//    not end the ramp); if the first rate fails, halve it until one holds.
// 2. Refine: refine_steps geometric bisections between the last rate that
//    held and the first that did not.
// 3. Confirm: `repeats` runs at the rate found, which are the figures
//    reported. Unless most of them hold, the rate steps down by half a ramp
//    step and the repeats run again (at most max_step_downs times), so a
//    rate that held once by luck is not reported with figures from runs
//    that did not.

#include <functional>
#include <vector>

#include "absl/strings/string_view.h"

namespace bursar::load {

struct SaturationOptions {
  double start_rate = 1000;
  double ramp_factor = 1.5;  // at least 1.05
  int refine_steps = 3;
  int repeats = 3;  // at least 1
  int max_step_downs = 3;
};

struct SaturationResult {
  // The rate reported; 0 when not even the lowest rate tried held.
  double rate = 0;
  // The lowest rate that did not hold (0 if none failed).
  double next_tried = 0;
  // Of the confirming repeats at `rate`, how many held.
  int sustained_repeats = 0;
  // Which calls of `run` (0-based, in call order) are those repeats.
  std::vector<int> repeat_runs;
};

using RunAtRate = std::function<bool(double rate, absl::string_view label)>;

SaturationResult FindSaturation(const SaturationOptions& options,
                                const RunAtRate& run);

}  // namespace bursar::load

#endif  // BURSAR_BENCH_LOAD_SATURATION_H_
