#ifndef BURSAR_POLICY_LOADER_H_
#define BURSAR_POLICY_LOADER_H_

// Turns policy source files (YAML, `apiVersion: bursar.dev/v1`) into a
// CompiledPolicy. Pure: the caller reads the files; nothing here does I/O.
// Author mistakes are data (Diagnostics with a source location); a non-OK
// status would mean the loader itself failed.

#include <memory>
#include <string>
#include <vector>

#include "policy/compiled_policy.h"

namespace bursar::policy {

struct SourceFile {
  std::string path;     // as shown in diagnostics, e.g. "pricing.yaml"
  std::string content;  // the YAML text
};

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string path;
  int line = 0;         // 1-based; 0 when unknown
  int column = 0;       // 1-based; 0 when unknown
  std::string field;    // e.g. "pricing.gpt-4.1.output"
  std::string message;  // what was expected and the offending text
};

// "pricing.yaml:12:5: pricing.gpt-4.1.output: <message>". A warning reads
// "pricing.yaml:12:5: warning: pricing.gpt-4.1.output: <message>"; parts
// that are unknown (empty path or field, line or column 0) are left out.
std::string FormatDiagnostic(const Diagnostic& diagnostic);

struct CompileResult {
  // Null when any diagnostic is an error.
  std::shared_ptr<const CompiledPolicy> policy;
  std::vector<Diagnostic> diagnostics;
};

// Compiles every `kind: Policy` document in `files` into one policy. Files
// whose path ends in "_test.yaml", and `kind: PolicyTest` documents, are
// policy tests and are skipped here; "_test.yaml" files do not count towards
// the version either.
// Files are compiled in path order, so the result does not depend on the
// order of `files`. The schema is documented in docs/pricing.md.
CompileResult CompilePolicy(const std::vector<SourceFile>& files);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_LOADER_H_
