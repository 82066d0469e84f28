#include "policy/compiled_policy.h"

#include <string>
#include <utility>

namespace bursar::policy {

CompiledPolicy::CompiledPolicy(std::string version, PolicyRules rules)
    : version_(std::move(version)), rules_(std::move(rules)) {}

CompiledPolicy::CompiledPolicy(
    std::string version, absl::flat_hash_map<std::string, ModelPrice> prices,
    Defaults defaults)
    : version_(std::move(version)) {
  rules_.prices = std::move(prices);
  rules_.defaults = defaults;
}

const ModelPrice* CompiledPolicy::FindPrice(absl::string_view model) const {
  // flat_hash_map<std::string, ...> looks up string_view keys without
  // building a std::string.
  auto it = rules_.prices.find(model);
  return it == rules_.prices.end() ? nullptr : &it->second;
}

}  // namespace bursar::policy
