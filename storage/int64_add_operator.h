#ifndef BURSAR_STORAGE_INT64_ADD_OPERATOR_H_
#define BURSAR_STORAGE_INT64_ADD_OPERATOR_H_

// A RocksDB merge operator that adds signed 64-bit counters, stored as 8
// bytes little-endian. A missing value is 0. A value of the wrong size is
// corruption and fails the merge.

#include <cstdint>
#include <memory>
#include <string>

#include "rocksdb/merge_operator.h"

namespace bursar::storage {

std::shared_ptr<rocksdb::MergeOperator> NewInt64AddOperator();

std::string EncodeInt64(int64_t value);
// False if `bytes` is not exactly 8 bytes.
bool DecodeInt64(const rocksdb::Slice& bytes, int64_t* value);

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_INT64_ADD_OPERATOR_H_
