#ifndef BURSAR_BENCH_RUN_BENCHMARKS_H_
#define BURSAR_BENCH_RUN_BENCHMARKS_H_

namespace bursar::bench {

// Runs the registered Google Benchmark cases as bursard runs its code:
// abseil's mutex deadlock detection, on in Debian's build of abseil, is off
// (server/bursard.cc), since it adds a cycle-graph update to every lock.
// Returns main's exit code: 1 for an unrecognized argument.
int RunBenchmarks(int argc, char** argv);

}  // namespace bursar::bench

#endif  // BURSAR_BENCH_RUN_BENCHMARKS_H_
