#ifndef BURSAR_SERVER_POLICY_ADMIN_H_
#define BURSAR_SERVER_POLICY_ADMIN_H_

// The policy RPCs of the Admin API as plain calls, and the start-up rule
// that picks bursard's first policy (docs/decisions/004).
//
// A push is validated, compiled, stored as an immutable version in the
// PolicyVersionStore and swapped into the PolicyRegistry; the store is
// written first, so a push that was acknowledged survives a crash, and the
// registry only ever runs a version the store has as active. The same holds
// for the shadow version (docs/decisions/005): a push with `shadow` stores
// the version and makes it the store's shadow, then gives the registry a new
// ShadowRun; activating the shadow version promotes it. Thread-safe: pushes,
// activations and shadow changes are serialised among themselves (never with
// Check, which only reads the registry).

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bursar/v1/admin.pb.h"
#include "policy/compiled_policy.h"
#include "policy/loader.h"
#include "server/auth/authenticator.h"
#include "server/clock.h"
#include "server/policy_registry.h"
#include "storage/policy_version_store.h"

namespace bursar::server {

// Bounds on a PushPolicyRequest; over them is INVALID_ARGUMENT naming the
// field. (gRPC's default 4 MiB message limit sits above the total.)
inline constexpr int kMaxPolicyFiles = 256;
inline constexpr size_t kMaxPolicyPathBytes = 256;
inline constexpr size_t kMaxPolicyFileBytes = 1 << 20;
inline constexpr size_t kMaxPolicyPushBytes = 3 << 20;
inline constexpr size_t kMaxPolicyAuthorBytes = 256;
inline constexpr size_t kMaxPolicyMessageBytes = 4096;

class PolicyAdmin {
 public:
  // All pointers must outlive the PolicyAdmin.
  PolicyAdmin(storage::PolicyVersionStore* store, PolicyRegistry* registry,
              Clock* clock)
      : store_(store), registry_(registry), clock_(clock) {}

  // Files that do not compile change nothing: a dry run answers OK with the
  // diagnostics, a real push FAILED_PRECONDITION listing every error. With
  // request.shadow() the version runs in shadow instead of becoming active
  // (FAILED_PRECONDITION if it is the active version).
  //
  // Changes (push, activate, stop shadow) are audited as made by `caller`
  // (name and role) when it is authenticated, and a pushed version's author
  // is then the caller; otherwise the request's author/actor.
  absl::Status PushPolicy(const v1::PushPolicyRequest& request,
                          const auth::Caller& caller,
                          v1::PushPolicyResponse* response);
  absl::Status GetPolicy(const v1::GetPolicyRequest& request,
                         v1::GetPolicyResponse* response);
  absl::Status ListPolicyVersions(const v1::ListPolicyVersionsRequest& request,
                                  v1::ListPolicyVersionsResponse* response);
  // FailedPrecondition (listing the errors) if the stored files no longer
  // compile with this binary. Activating the shadow version promotes it;
  // activating another keeps the shadow running (its counts restart).
  absl::Status ActivatePolicyVersion(
      const v1::ActivatePolicyVersionRequest& request,
      const auth::Caller& caller, v1::ActivatePolicyVersionResponse* response);
  // Stops the shadow version, if any, answering with its last report.
  absl::Status StopShadow(const v1::StopShadowRequest& request,
                          const auth::Caller& caller,
                          v1::StopShadowResponse* response);
  // The shadow run's report; an empty answer when no version runs in shadow.
  absl::Status GetShadowReport(const v1::GetShadowReportRequest& request,
                               v1::GetShadowReportResponse* response);

 private:
  // After the active version changed: drops the registry's shadow run if the
  // store has none any more (a promotion), or restarts it against the new
  // active version.
  void SyncShadowLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::PolicyVersionStore* const store_;
  PolicyRegistry* const registry_;
  Clock* const clock_;
  // Held across "write the store, then swap the registry" so concurrent
  // pushes and activations leave both on the same versions.
  absl::Mutex mu_;
};

// A shadow run's report as the Admin API answers it: at most `sample_limit`
// samples (0: all kept), newest first.
void FillShadowReport(const ShadowRun& run, size_t sample_limit,
                      v1::GetShadowReportResponse* response);

// INVALID_ARGUMENT naming the first bad field (files[i].path, ...).
absl::Status ValidatePushRequest(const v1::PushPolicyRequest& request);

// --- Start-up -------------------------------------------------------------

// Where bursard takes its policy from at start-up (--policy_source).
enum class PolicySource {
  // The store's active version if there is one, else --policy_dir (which is
  // then stored as the first version).
  kStore,
  // --policy_dir, stored and activated as a new version if it differs from
  // the active one.
  kDir,
};

// "store" or "dir".
absl::StatusOr<PolicySource> ParsePolicySource(absl::string_view text);

struct StartupPolicy {
  std::shared_ptr<const policy::CompiledPolicy> policy;
  // Where it came from: "store" (the active stored version) or "dir".
  std::string source;
  // The version active in the store before start-up ("" if none).
  std::string previous_version;
  // With source "store": whether --policy_dir compiles to the same version,
  // and if not, why the directory was not used (for the log).
  bool dir_matches = false;
  std::string dir_note;
  // Warnings from compiling the policy that runs.
  std::vector<policy::Diagnostic> warnings;
  // The stored shadow version, compiled; null when none is stored or it
  // could not be restored, and then (in the latter case) why, for a
  // warning. A shadow that cannot be restored is cleared in the store.
  std::shared_ptr<const policy::CompiledPolicy> shadow;
  std::string shadow_note;
};

// The start-up rule (docs/decisions/004): with kStore, a version pushed
// earlier keeps running after a restart, and --policy_dir is only used to
// seed an empty store; with kDir, --policy_dir runs and becomes the active
// stored version. Errors: the directory cannot be read or does not compile
// when it is needed (FailedPrecondition listing every error), or the active
// stored version no longer compiles with this binary (FailedPrecondition
// saying to start with --policy_source=dir). The stored shadow version is
// restored when it still compiles (and differs from the active one);
// otherwise bursard runs without one (StartupPolicy::shadow_note says why).
absl::StatusOr<StartupPolicy> LoadStartupPolicy(
    storage::PolicyVersionStore* store, const std::string& policy_dir,
    PolicySource source, absl::Time now);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_POLICY_ADMIN_H_
