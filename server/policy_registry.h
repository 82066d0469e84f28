#ifndef BURSAR_SERVER_POLICY_REGISTRY_H_
#define BURSAR_SERVER_POLICY_REGISTRY_H_

// The active compiled policy, swapped atomically: a Check keeps the version
// it started with until it finishes. Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "policy/compiled_policy.h"
#include "policy/loader.h"
#include "server/policy_files.h"  // ReadPolicyDir

namespace bursar::server {

class PolicyRegistry {
 public:
  explicit PolicyRegistry(std::shared_ptr<const policy::CompiledPolicy> initial)
      : active_(std::move(initial)) {}

  std::shared_ptr<const policy::CompiledPolicy> Active() const {
    return std::atomic_load(&active_);
  }
  void Activate(std::shared_ptr<const policy::CompiledPolicy> policy) {
    std::atomic_store(&active_, std::move(policy));
  }

 private:
  std::shared_ptr<const policy::CompiledPolicy> active_;
};

// ReadPolicyDir + CompilePolicy; FailedPrecondition listing every error
// diagnostic (file:line:column) when the files do not compile.
absl::StatusOr<std::shared_ptr<const policy::CompiledPolicy>> LoadPolicyDir(
    const std::string& dir);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_POLICY_REGISTRY_H_
