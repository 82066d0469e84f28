#include "server/policy_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bursar::server {

void PolicyRegistry::NoteChange(absl::Time at) {
  absl::MutexLock lock(&changes_mu_);
  changes_.insert(std::upper_bound(changes_.begin(), changes_.end(), at), at);
  while (changes_.size() > kMaxPolicyChanges) changes_.pop_front();
}

bool PolicyRegistry::ChangedBetween(absl::Time start, absl::Time end) const {
  absl::MutexLock lock(&changes_mu_);
  // The first change after start.
  auto it = std::upper_bound(changes_.begin(), changes_.end(), start);
  return it != changes_.end() && *it <= end;
}

void NotePolicyChanges(const std::vector<storage::AuditEntry>& audit,
                       absl::Time since, PolicyRegistry* registry) {
  for (const storage::AuditEntry& entry : audit) {
    if (entry.time < since) continue;
    if (entry.action == "policy.push" || entry.action == "policy.activate") {
      registry->NoteChange(entry.time);
    }
  }
}

absl::StatusOr<std::shared_ptr<const policy::CompiledPolicy>> LoadPolicyDir(
    const std::string& dir) {
  absl::StatusOr<std::vector<policy::SourceFile>> files = ReadPolicyDir(dir);
  if (!files.ok()) return files.status();
  policy::CompileResult compiled = policy::CompilePolicy(*files);
  if (compiled.policy == nullptr) {
    std::vector<std::string> errors;
    for (const policy::Diagnostic& d : compiled.diagnostics) {
      if (d.severity == policy::Diagnostic::Severity::kError) {
        errors.push_back(policy::FormatDiagnostic(d));
      }
    }
    return absl::FailedPreconditionError(
        absl::StrCat("policies in \"", dir, "\" do not compile:\n  ",
                     absl::StrJoin(errors, "\n  ")));
  }
  return compiled.policy;
}

}  // namespace bursar::server
