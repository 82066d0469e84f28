#include "bench/run_benchmarks.h"

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"

namespace bursar::bench {

int RunBenchmarks(int argc, char** argv) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bursar::bench
