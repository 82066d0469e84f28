#ifndef BURSAR_STORAGE_COUNTER_SET_H_
#define BURSAR_STORAGE_COUNTER_SET_H_

// Several signed 64-bit counters in one RocksDB value, each named by a
// one-byte kind: the value is a sequence of (kind byte, 8 bytes
// little-endian) pairs. Adding two sets adds counter by counter, so one
// Merge operand carries every counter of a row (the usage rollups of
// storage/usage_rocks_store.cc write one operand per row instead of one per
// counter).
//
// A column family may keep both: NewCounterMergeOperator tells a counter
// set from a single int64 counter by the key's last byte (the `usage` family
// stored one int64 per key before counter sets, and still reads those).

#include <array>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "rocksdb/merge_operator.h"

namespace bursar::storage {

class CounterSet {
 public:
  // Adds `delta` to the counter of `kind` (wrapping as two's complement).
  void Add(unsigned char kind, int64_t delta);
  // Adds every counter of an encoded set; false if `bytes` is not one
  // (then nothing is added).
  bool AddEncoded(absl::string_view bytes);

  // The counters that were ever added to, in ascending kind order.
  std::string Encode() const;

  // Calls fn(kind, value) for every counter that was added to, in
  // ascending kind order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (int kind = 0; kind < 256; ++kind) {
      if (present_[kind]) fn(static_cast<unsigned char>(kind), values_[kind]);
    }
  }

 private:
  std::array<int64_t, 256> values_{};
  std::bitset<256> present_;
};

// Appends one (kind, value) pair of the encoding to `out`: a set is built
// by appending pairs, without a CounterSet.
void AppendCounter(std::string& out, unsigned char kind, int64_t value);

// A merge operator that adds: a key whose last byte is `counter_set_kind`
// holds a CounterSet, every other key one int64 (as NewInt64AddOperator).
std::shared_ptr<rocksdb::MergeOperator> NewCounterMergeOperator(
    unsigned char counter_set_kind);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_COUNTER_SET_H_
