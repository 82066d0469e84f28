#ifndef BURSAR_STORAGE_POLICY_VERSION_STORE_H_
#define BURSAR_STORAGE_POLICY_VERSION_STORE_H_

// Stored policy versions: the files of every policy version pushed, who
// pushed it and why, and which version is active. Storage keeps versions as
// opaque records: it never parses a policy file (server/ compiles them), and
// trusts the caller's version id to be the content hash of the files.
//
// Versions are immutable and never deleted, so any of them can be activated
// again (rollback). Besides the active version, at most one other version is
// the shadow version (server/ evaluates it beside the active one without
// acting on its answers); activating the shadow version clears the shadow,
// so the two always differ. Every change is one WriteBatch with the WAL on,
// audited in the same batch, and acknowledged only once durable per the
// database's sync mode. Thread-safe: every method may be called concurrently.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/audit.h"

namespace bursar::storage {

// Bounds on what a version may hold; over them Put answers InvalidArgument.
// (The server checks tighter limits first, naming the request field.)
inline constexpr size_t kMaxPolicyVersionIdBytes = 128;
inline constexpr size_t kMaxPolicyVersionBytes = 16 << 20;

struct PolicyFile {
  std::string path;  // relative to the policy directory
  std::string content;
};

struct PolicyVersion {
  // The content hash of the files: 1..128 bytes of [A-Za-z0-9._-].
  std::string id;
  // Sorted by path when read back. Empty in List results.
  std::vector<PolicyFile> files;
  std::string author;
  std::string message;
  // When this version was first stored.
  absl::Time created_at = absl::UnixEpoch();
};

struct PutPolicyResult {
  // The version as stored: the earlier one (author, message, created_at)
  // when its id was stored already.
  PolicyVersion version;
  // False when a version with this id was stored already; it was kept
  // unchanged.
  bool created = false;
  // The active version before the call ("" when none).
  std::string previous_active;
  // The shadow version before the call ("" when none).
  std::string previous_shadow;
};

class PolicyVersionStore {
 public:
  virtual ~PolicyVersionStore() = default;

  // Stores `version` (its created_at set to `now`) unless a version with its
  // id is stored already, which is kept as it is: putting the same content
  // twice is idempotent. With `activate`, the version also becomes the
  // active one, in the same WriteBatch. A call that changes something is
  // audited as "policy.push" on "policy:<id>" (actor.reason is the reason);
  // a call that changes nothing writes nothing. Activating the shadow
  // version also clears the shadow (in the same batch). InvalidArgument for a
  // bad id or a version over kMaxPolicyVersionBytes.
  virtual absl::StatusOr<PutPolicyResult> Put(PolicyVersion version,
                                              bool activate, const Actor& actor,
                                              absl::Time now) = 0;

  // The version with its files. NotFound if it is not stored; DataLoss if its
  // record does not parse.
  virtual absl::StatusOr<PolicyVersion> Get(absl::string_view id) const = 0;

  // Every stored version without its files, newest first (ties by id).
  virtual absl::StatusOr<std::vector<PolicyVersion>> List() const = 0;

  // The id of the active version; "" when none was ever activated.
  virtual std::string ActiveVersion() const = 0;

  // Makes the stored version `id` the active one, audited as
  // "policy.activate" on "policy:<id>" (nothing is written if it is active
  // already). If `id` is the shadow version, the shadow is cleared in the
  // same batch (a promotion). Returns the id that was active before.
  // NotFound if `id` is not stored.
  virtual absl::StatusOr<std::string> Activate(absl::string_view id,
                                               const Actor& actor,
                                               absl::Time now) = 0;

  // The id of the shadow version; "" when none.
  virtual std::string ShadowVersion() const = 0;

  // Stores `version` as Put does (unless stored already) and makes it the
  // shadow version, replacing any other, in one batch audited as
  // "policy.shadow" on "policy:<id>". Nothing is written if it is the shadow
  // version already. FailedPrecondition if no version is active or `version`
  // is the active one; InvalidArgument as for Put.
  virtual absl::StatusOr<PutPolicyResult> PutShadow(PolicyVersion version,
                                                    const Actor& actor,
                                                    absl::Time now) = 0;

  // Clears the shadow version, audited as "policy.shadow.stop" on
  // "policy:<id>". Returns the id that was the shadow ("" when none; then
  // nothing is written).
  virtual absl::StatusOr<std::string> ClearShadow(const Actor& actor,
                                                  absl::Time now) = 0;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_POLICY_VERSION_STORE_H_
