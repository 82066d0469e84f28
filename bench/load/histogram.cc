#include "bench/load/histogram.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace bursar::load {
namespace {

int HighestBit(uint64_t v) { return 63 - __builtin_clzll(v); }

}  // namespace

Histogram::Histogram(int64_t highest_trackable, int significant_digits)
    : highest_trackable_(std::max<int64_t>(highest_trackable, 2)) {
  significant_digits = std::clamp(significant_digits, 1, 4);
  int64_t resolution = 1;
  for (int i = 0; i < significant_digits; ++i) resolution *= 10;
  // half_count_ sub-buckets per power of two keep the relative error below
  // 1 / half_count_ ≤ 10^-significant_digits.
  int half_bits = 0;
  while ((int64_t{1} << half_bits) < resolution) ++half_bits;
  sub_bucket_bits_ = half_bits + 1;
  sub_bucket_count_ = int64_t{1} << sub_bucket_bits_;
  half_count_ = sub_bucket_count_ / 2;
  counts_.assign(BucketIndex(highest_trackable_) + 1, 0);
}

int Histogram::BucketIndex(int64_t value) const {
  if (value < sub_bucket_count_) return static_cast<int>(value);
  const int shift =
      HighestBit(static_cast<uint64_t>(value)) - sub_bucket_bits_ + 1;  // ≥ 1
  return static_cast<int>(sub_bucket_count_ + (shift - 1) * half_count_ +
                          ((value >> shift) - half_count_));
}

int64_t Histogram::BucketStart(int index) const {
  if (index < sub_bucket_count_) return index;
  const int64_t k = index - sub_bucket_count_;
  const int shift = static_cast<int>(k / half_count_) + 1;
  return (k % half_count_ + half_count_) << shift;
}

int64_t Histogram::BucketWidth(int index) const {
  if (index < sub_bucket_count_) return 1;
  const int shift =
      static_cast<int>((index - sub_bucket_count_) / half_count_) + 1;
  return int64_t{1} << shift;
}

int64_t Histogram::LowestEquivalent(int64_t value) const {
  return BucketStart(
      BucketIndex(std::clamp<int64_t>(value, 0, highest_trackable_)));
}

int64_t Histogram::HighestEquivalent(int64_t value) const {
  const int index =
      BucketIndex(std::clamp<int64_t>(value, 0, highest_trackable_));
  return BucketStart(index) + BucketWidth(index) - 1;
}

void Histogram::Record(int64_t value, int64_t count) {
  if (count <= 0) return;
  if (value < 0) value = 0;
  counts_[BucketIndex(std::min(value, highest_trackable_))] += count;
  if (total_count_ == 0 || value < min_) min_ = value;
  if (value > max_) max_ = value;
  total_count_ += count;
  sum_ += static_cast<long double>(value) * count;
}

void Histogram::Merge(const Histogram& other) {
  assert(other.counts_.size() == counts_.size() &&
         other.sub_bucket_bits_ == sub_bucket_bits_);
  if (other.total_count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  if (total_count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  total_count_ += other.total_count_;
  sum_ += other.sum_;
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_count_ = 0;
  min_ = 0;
  max_ = 0;
  sum_ = 0;
}

double Histogram::mean() const {
  return total_count_ == 0 ? 0.0 : static_cast<double>(sum_ / total_count_);
}

int64_t Histogram::ValueAtPercentile(double percentile) const {
  if (total_count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The shrink keeps 99.9% of 1000 at rank 999 despite rounding in the
  // product.
  const double exact_rank =
      percentile / 100.0 * static_cast<double>(total_count_);
  const int64_t rank = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(exact_rank * (1.0 - 1e-12))));
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const int index = static_cast<int>(i);
      // The top bucket also holds every value above the range.
      if (i + 1 == counts_.size()) return max_;
      const int64_t highest = BucketStart(index) + BucketWidth(index) - 1;
      return std::max(min(), std::min(highest, max_));
    }
  }
  return max_;
}

}  // namespace bursar::load
