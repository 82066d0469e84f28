#ifndef BURSAR_STORAGE_LABELS_H_
#define BURSAR_STORAGE_LABELS_H_

// A request's labels as the ledger sees them: a small sorted view over
// strings the caller owns (e.g. a protobuf map), built without copying the
// strings.

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace bursar::storage {

class LabelSet {
 public:
  using Entry = std::pair<absl::string_view, absl::string_view>;

  // Adds a label unless the key is already present (the first value wins).
  void Add(absl::string_view key, absl::string_view value) {
    auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                               [](const Entry& e, absl::string_view k) {
                                 return e.first < k;
                               });
    if (it != entries_.end() && it->first == key) return;
    entries_.insert(it, {key, value});
  }

  std::optional<absl::string_view> Find(absl::string_view key) const {
    auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                               [](const Entry& e, absl::string_view k) {
                                 return e.first < k;
                               });
    if (it == entries_.end() || it->first != key) return std::nullopt;
    return it->second;
  }

  absl::Span<const Entry> entries() const { return entries_; }

 private:
  absl::InlinedVector<Entry, 16> entries_;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_LABELS_H_
