#ifndef BURSAR_POLICY_COMPILED_POLICY_H_
#define BURSAR_POLICY_COMPILED_POLICY_H_

// The immutable, compiled form of a set of policy files. Built once by
// CompilePolicy (loader.h), then shared read-only between threads through
// std::shared_ptr<const CompiledPolicy>; every accessor is thread-safe.

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "policy/pricing.h"

namespace bursar::policy {

// What Check does with a model that has no price.
enum class UnknownModelAction {
  kReject,  // INVALID_ARGUMENT naming the model (the default)
  kDeny,    // a VERDICT_DENY answer with reason "unknown-model"
};

struct Defaults {
  // Used when a request names no max_output_tokens.
  int64_t max_output_tokens = 4096;
  UnknownModelAction unknown_model = UnknownModelAction::kReject;
};

class CompiledPolicy {
 public:
  CompiledPolicy(std::string version,
                 absl::flat_hash_map<std::string, ModelPrice> prices,
                 Defaults defaults);

  // Content hash of the source files (16 lowercase hex digits), stable for
  // the same files whatever their order.
  const std::string& version() const { return version_; }
  const Defaults& defaults() const { return defaults_; }
  // nullptr if the catalog has no price for `model`.
  const ModelPrice* FindPrice(absl::string_view model) const;
  const absl::flat_hash_map<std::string, ModelPrice>& prices() const {
    return prices_;
  }

 private:
  std::string version_;
  absl::flat_hash_map<std::string, ModelPrice> prices_;
  Defaults defaults_;
};

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_COMPILED_POLICY_H_
