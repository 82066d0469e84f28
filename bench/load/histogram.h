#ifndef BURSAR_BENCH_LOAD_HISTOGRAM_H_
#define BURSAR_BENCH_LOAD_HISTOGRAM_H_

// A log-bucketed latency histogram in the manner of HdrHistogram: fixed
// memory chosen at construction, O(1) Record, and a bounded relative error.
//
// Values are non-negative integers (bursar-load records nanoseconds). Values
// below 2 × 10^significant_digits (rounded up to a power of two) have their
// own bucket and are exact; above that, each power-of-two range is split
// into the same number of linear sub-buckets, so any recorded value is
// reported within a relative error of 10^-significant_digits. Values above
// `highest_trackable` are counted in the top bucket; max() stays exact.
//
// Not thread-safe: guard a shared instance with a mutex, or record into one
// histogram per thread and Merge them.

#include <cstdint>
#include <vector>

namespace bursar::load {

class Histogram {
 public:
  // `highest_trackable` ≥ 2; `significant_digits` in 1..4.
  Histogram(int64_t highest_trackable, int significant_digits);

  // Records `count` occurrences of `value`; negative values count as 0.
  void Record(int64_t value, int64_t count = 1);

  // Adds every count of `other`, which must have the same configuration.
  void Merge(const Histogram& other);
  void Reset();

  int64_t count() const { return total_count_; }
  // 0 when empty.
  int64_t min() const { return total_count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double mean() const;

  // The smallest value v such that at least `percentile`% of the recorded
  // values are ≤ v, up to the histogram's precision: the highest value of
  // the bucket holding that rank, never above max(). 0 when empty.
  // `percentile` is clamped to 0..100.
  int64_t ValueAtPercentile(double percentile) const;

  // The number of buckets (fixed at construction); for tests and sizing.
  int bucket_count() const { return static_cast<int>(counts_.size()); }

  // The lowest and highest values that share `value`'s bucket.
  int64_t LowestEquivalent(int64_t value) const;
  int64_t HighestEquivalent(int64_t value) const;

 private:
  int BucketIndex(int64_t value) const;
  // The lowest value of bucket `index` and the width of that bucket.
  int64_t BucketStart(int index) const;
  int64_t BucketWidth(int index) const;

  int sub_bucket_bits_;       // sub_bucket_count_ == 1 << sub_bucket_bits_
  int64_t sub_bucket_count_;  // exact values: [0, sub_bucket_count_)
  int64_t half_count_;        // sub-buckets per later power of two
  int64_t highest_trackable_;
  std::vector<int64_t> counts_;
  int64_t total_count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  // Exact sum for mean(); long double keeps nanosecond sums of hours exact
  // enough.
  long double sum_ = 0;
};

}  // namespace bursar::load

#endif  // BURSAR_BENCH_LOAD_HISTOGRAM_H_
