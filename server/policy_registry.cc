#include "server/policy_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bursar::server {

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
