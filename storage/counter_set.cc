#include "storage/counter_set.h"

#include <utility>

#include "storage/int64_add_operator.h"

namespace bursar::storage {
namespace {

constexpr size_t kPairBytes = 9;

int64_t WrappingAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) +
                              static_cast<uint64_t>(b));
}

class CounterMergeOperator : public rocksdb::AssociativeMergeOperator {
 public:
  explicit CounterMergeOperator(unsigned char counter_set_kind)
      : counter_set_kind_(counter_set_kind) {}

  bool Merge(const rocksdb::Slice& key, const rocksdb::Slice* existing,
             const rocksdb::Slice& operand, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    if (key.empty() ||
        static_cast<unsigned char>(key[key.size() - 1]) != counter_set_kind_) {
      int64_t base = 0;
      if (existing != nullptr && !DecodeInt64(*existing, &base)) return false;
      int64_t delta = 0;
      if (!DecodeInt64(operand, &delta)) return false;
      *new_value = EncodeInt64(WrappingAdd(base, delta));
      return true;
    }
    CounterSet sum;
    if (existing != nullptr &&
        !sum.AddEncoded(absl::string_view(existing->data(), existing->size()))) {
      return false;
    }
    if (!sum.AddEncoded(absl::string_view(operand.data(), operand.size()))) {
      return false;
    }
    *new_value = sum.Encode();
    return true;
  }

  const char* Name() const override { return "bursar.CounterAdd"; }

 private:
  const unsigned char counter_set_kind_;
};

}  // namespace

void CounterSet::Add(unsigned char kind, int64_t delta) {
  values_[kind] = WrappingAdd(values_[kind], delta);
  present_[kind] = true;
}

bool CounterSet::AddEncoded(absl::string_view bytes) {
  if (bytes.size() % kPairBytes != 0) return false;
  for (size_t at = 0; at < bytes.size(); at += kPairBytes) {
    int64_t value = 0;
    DecodeInt64(rocksdb::Slice(bytes.data() + at + 1, 8), &value);
    Add(static_cast<unsigned char>(bytes[at]), value);
  }
  return true;
}

std::string CounterSet::Encode() const {
  std::string out;
  out.reserve(present_.count() * kPairBytes);
  ForEach([&out](unsigned char kind, int64_t value) {
    AppendCounter(out, kind, value);
  });
  return out;
}

void AppendCounter(std::string& out, unsigned char kind, int64_t value) {
  out.push_back(static_cast<char>(kind));
  const auto u = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
}

std::shared_ptr<rocksdb::MergeOperator> NewCounterMergeOperator(
    unsigned char counter_set_kind) {
  return std::make_shared<CounterMergeOperator>(counter_set_kind);
}

}  // namespace bursar::storage
