#include "bench/load/saturation.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_format.h"

namespace bursar::load {

SaturationResult FindSaturation(const SaturationOptions& options,
                                const RunAtRate& run) {
  int calls = 0;
  int step = 0;
  auto run_once = [&](double rate, const std::string& label) {
    ++calls;
    return run(rate, label);
  };
  auto holds = [&](double rate) {
    ++step;
    return run_once(rate, absl::StrFormat("step %d", step)) ||
           run_once(rate, absl::StrFormat("step %d (retry)", step));
  };

  const double factor = std::max(1.05, options.ramp_factor);
  SaturationResult result;
  double good = 0;
  double bad = 0;
  for (double r = options.start_rate; r <= 1e7; r *= factor) {
    if (!holds(r)) {
      bad = r;
      break;
    }
    good = r;
  }
  if (good == 0) {
    for (double r = options.start_rate / 2; r >= 10; r /= 2) {
      if (holds(r)) {
        good = r;
        break;
      }
      bad = r;
    }
  }
  if (good == 0) {
    result.next_tried = bad;
    return result;
  }
  for (int i = 0; bad > 0 && i < options.refine_steps; ++i) {
    const double mid = std::sqrt(good * bad);
    if (holds(mid)) {
      good = mid;
    } else {
      bad = mid;
    }
  }

  const int repeats = std::max(1, options.repeats);
  for (int round = 0;; ++round) {
    result.repeat_runs.clear();
    result.sustained_repeats = 0;
    for (int i = 0; i < repeats; ++i) {
      result.repeat_runs.push_back(calls);
      if (run_once(good, absl::StrFormat("saturation %d/%d", i + 1, repeats))) {
        ++result.sustained_repeats;
      }
    }
    if (2 * result.sustained_repeats > repeats ||
        round == options.max_step_downs) {
      break;
    }
    bad = good;
    good /= std::sqrt(factor);
  }
  result.rate = good;
  result.next_tried = bad;
  return result;
}

}  // namespace bursar::load
