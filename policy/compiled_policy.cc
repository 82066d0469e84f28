#include "policy/compiled_policy.h"

#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "policy/pricing.h"

namespace bursar::policy {

CompiledPolicy::CompiledPolicy(
    std::string version, absl::flat_hash_map<std::string, ModelPrice> prices,
    Defaults defaults)
    : version_(std::move(version)),
      prices_(std::move(prices)),
      defaults_(defaults) {}

const ModelPrice* CompiledPolicy::FindPrice(absl::string_view model) const {
  // flat_hash_map<std::string, ...> looks up string_view keys without
  // building a std::string.
  auto it = prices_.find(model);
  return it == prices_.end() ? nullptr : &it->second;
}

}  // namespace bursar::policy
