#include "storage/int64_add_operator.h"

#include <cstring>

namespace bursar::storage {
namespace {

class Int64AddOperator : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing,
             const rocksdb::Slice& operand, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    int64_t base = 0;
    if (existing != nullptr && !DecodeInt64(*existing, &base)) return false;
    int64_t delta = 0;
    if (!DecodeInt64(operand, &delta)) return false;
    *new_value = EncodeInt64(static_cast<int64_t>(
        static_cast<uint64_t>(base) + static_cast<uint64_t>(delta)));
    return true;
  }

  const char* Name() const override { return "bursar.Int64Add"; }
};

}  // namespace

std::shared_ptr<rocksdb::MergeOperator> NewInt64AddOperator() {
  return std::make_shared<Int64AddOperator>();
}

std::string EncodeInt64(int64_t value) {
  std::string bytes(8, '\0');
  const auto u = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((u >> (8 * i)) & 0xff);
  return bytes;
}

bool DecodeInt64(const rocksdb::Slice& bytes, int64_t* value) {
  if (bytes.size() != 8) return false;
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) {
    u |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  }
  *value = static_cast<int64_t>(u);
  return true;
}

}  // namespace bursar::storage
