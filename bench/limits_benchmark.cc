// The rate-limit engine (limits/rate_limiter.h) on its own:
// - BM_AcquireRelease: one call against a rule with two windows, among 100k
//   live keys (the DESIGN.md section 7 decision has 100k rate keys);
// - BM_OneMillionOneOffKeys: a million keys each seen once, spread over ten
//   minutes of simulated time, with EvictIdle every simulated second as
//   bursard runs it; reports the counters and RSS at the peak and at the end
//   (memory stays flat: only the keys of the last two windows live);
// - BM_OneMillionLiveKeys: a million keys live at once, the memory target's
//   case (RSS per key).
//
// As in bursard, abseil's mutex deadlock detection is off (main below).
//
//   build/bench/bursar_limits_benchmark --benchmark_repetitions=3 \
//     --benchmark_report_aggregates_only=true

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/run_benchmarks.h"
#include "benchmark/benchmark.h"
#include "limits/rate_limiter.h"

namespace bursar::limits {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

double RssMib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * 4096 / (1 << 20);
}

const std::vector<WindowLimit> kWindows = {
    {absl::Minutes(1), 600, 200'000}, {absl::Hours(24), 0, 50'000'000}};

void BM_AcquireRelease(benchmark::State& state) {
  RateLimiter limiter;
  std::vector<std::string> keys;
  RateCharges charges;
  for (int i = 0; i < 100'000; ++i) keys.push_back(absl::StrCat("user-", i));
  for (const std::string& key : keys) {
    RateAsk ask{"per-user", key, kWindows};
    limiter.Acquire({&ask, 1}, 100, kStart, false, &charges);
  }
  charges.clear();
  charges.reserve(8);
  size_t i = 0;
  for (auto _ : state) {
    RateAsk ask{"per-user", keys[i++ % keys.size()], kWindows};
    charges.clear();
    benchmark::DoNotOptimize(
        limiter.Acquire({&ask, 1}, 2000, kStart, false, &charges));
    limiter.Release(charges);
  }
  state.counters["live_counters"] = static_cast<double>(limiter.size());
}
BENCHMARK(BM_AcquireRelease);

void BM_OneMillionOneOffKeys(benchmark::State& state) {
  const std::vector<WindowLimit> minute = {{absl::Minutes(1), 0, 100'000}};
  for (auto _ : state) {
    RateLimiter limiter;
    RateCharges charges;
    const double rss_start = RssMib();
    double rss_peak = rss_start;
    size_t peak = 0;
    constexpr int kKeys = 1'000'000;
    constexpr int kSeconds = 600;
    constexpr int kPerSecond = kKeys / kSeconds;
    int next = 0;
    for (int second = 0; second < kSeconds; ++second) {
      const absl::Time now = kStart + absl::Seconds(second);
      for (int i = 0; i < kPerSecond; ++i) {
        const std::string key = absl::StrCat("one-off-", next++);
        RateAsk ask{"per-user", key, minute};
        charges.clear();
        limiter.Acquire({&ask, 1}, 500, now, false, &charges);
      }
      limiter.EvictIdle(now);
      peak = std::max(peak, limiter.size());
      if (second % 60 == 59) rss_peak = std::max(rss_peak, RssMib());
    }
    state.counters["keys_seen"] = next;
    state.counters["peak_counters"] = static_cast<double>(peak);
    state.counters["counters_at_end"] = static_cast<double>(limiter.size());
    state.counters["rss_mib_start"] = rss_start;
    state.counters["rss_mib_peak"] = rss_peak;
    state.counters["rss_mib_end"] = RssMib();
  }
}
BENCHMARK(BM_OneMillionOneOffKeys)->Iterations(1)->Unit(benchmark::kSecond);

void BM_OneMillionLiveKeys(benchmark::State& state) {
  const std::vector<WindowLimit> minute = {{absl::Minutes(1), 0, 100'000}};
  for (auto _ : state) {
    const double rss_start = RssMib();
    RateLimiter limiter;
    RateCharges charges;
    for (int i = 0; i < 1'000'000; ++i) {
      const std::string key = absl::StrCat("user-", i);
      RateAsk ask{"per-user", key, minute};
      charges.clear();
      limiter.Acquire({&ask, 1}, 500, kStart, false, &charges);
    }
    const double rss = RssMib();
    state.counters["counters"] = static_cast<double>(limiter.size());
    state.counters["rss_mib_added"] = rss - rss_start;
    state.counters["bytes_per_counter"] =
        (rss - rss_start) * (1 << 20) / static_cast<double>(limiter.size());
  }
}
BENCHMARK(BM_OneMillionLiveKeys)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
}  // namespace bursar::limits

int main(int argc, char** argv) {
  return bursar::bench::RunBenchmarks(argc, argv);
}
