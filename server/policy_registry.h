#ifndef BURSAR_SERVER_POLICY_REGISTRY_H_
#define BURSAR_SERVER_POLICY_REGISTRY_H_

// The active compiled policy, and the shadow run if one is set, each
// swapped atomically: a Check keeps the versions it started with until it
// finishes. Thread-safe.

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "policy/compiled_policy.h"
#include "policy/loader.h"
#include "server/policy_files.h"  // ReadPolicyDir
#include "server/shadow_stats.h"
#include "storage/audit.h"

namespace bursar::server {

// A policy version running in shadow beside one active version, and what
// it has seen since `since` (docs/decisions/005). Immutable but for its
// stats; a new active version or a new shadow version gets a new ShadowRun,
// so counts never mix two comparisons.
class ShadowRun {
 public:
  ShadowRun(std::shared_ptr<const policy::CompiledPolicy> policy,
            std::string active_version, absl::Time since,
            size_t sample_capacity = kShadowSampleCapacity)
      : policy_(std::move(policy)),
        active_version_(std::move(active_version)),
        since_(since),
        stats_(sample_capacity) {}

  const std::shared_ptr<const policy::CompiledPolicy>& policy() const {
    return policy_;
  }
  const std::string& version() const { return policy_->version(); }
  // The active version the counts compare with; a Check planned under
  // another one is not compared.
  const std::string& active_version() const { return active_version_; }
  absl::Time since() const { return since_; }
  ShadowStats& stats() const { return stats_; }

 private:
  const std::shared_ptr<const policy::CompiledPolicy> policy_;
  const std::string active_version_;
  const absl::Time since_;
  mutable ShadowStats stats_;
};

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
  // Activate, and NoteChange(at): a push or an activation of another
  // version at `at`.
  void Activate(std::shared_ptr<const policy::CompiledPolicy> policy,
                absl::Time at) {
    Activate(std::move(policy));
    NoteChange(at);
  }

  // When the active policy changed (a push or an activation of another
  // version), for KPI windows: the "tokens per request +25% with no policy
  // change" alert stays quiet when a change falls inside the windows it
  // compares. Keeps the newest kMaxPolicyChanges times; never on the Check
  // path but for kpi.* reads (a short lock, no I/O).
  static constexpr size_t kMaxPolicyChanges = 256;
  void NoteChange(absl::Time at) ABSL_LOCKS_EXCLUDED(changes_mu_);
  // Whether a change was noted in (start, end].
  bool ChangedBetween(absl::Time start, absl::Time end) const
      ABSL_LOCKS_EXCLUDED(changes_mu_);

  // The shadow run; null when none (then it costs one atomic load of a
  // bool).
  std::shared_ptr<const ShadowRun> Shadow() const {
    if (!has_shadow_.load(std::memory_order_acquire)) return nullptr;
    return std::atomic_load(&shadow_);
  }
  // Replaces the shadow run; null stops shadowing.
  void SetShadow(std::shared_ptr<const ShadowRun> run) {
    const bool has = run != nullptr;
    std::atomic_store(&shadow_, std::move(run));
    has_shadow_.store(has, std::memory_order_release);
  }

 private:
  std::shared_ptr<const policy::CompiledPolicy> active_;
  std::shared_ptr<const ShadowRun> shadow_;
  std::atomic<bool> has_shadow_{false};

  mutable absl::Mutex changes_mu_;
  // Sorted, oldest first.
  std::deque<absl::Time> changes_ ABSL_GUARDED_BY(changes_mu_);
};

// Notes in `registry` every policy change in `audit` (the ledger's audit
// log: "policy.push" and "policy.activate" entries, each written only when
// the active version changed) at or after `since`, so a restart keeps
// them.
void NotePolicyChanges(const std::vector<storage::AuditEntry>& audit,
                       absl::Time since, PolicyRegistry* registry);

// ReadPolicyDir + CompilePolicy; FailedPrecondition listing every error
// diagnostic (file:line:column) when the files do not compile.
absl::StatusOr<std::shared_ptr<const policy::CompiledPolicy>> LoadPolicyDir(
    const std::string& dir);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_POLICY_REGISTRY_H_
