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
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string field;    // e.g. "pricing.gpt-4.1.output"
  std::string message;  // what was expected and the offending text
};

// "pricing.yaml:12:5: pricing.gpt-4.1.output: <message>"
std::string FormatDiagnostic(const Diagnostic& diagnostic);

struct CompileResult {
  // Null when any diagnostic is an error.
  std::shared_ptr<const CompiledPolicy> policy;
  std::vector<Diagnostic> diagnostics;
};

// Compiles every `kind: Policy` document in `files` into one policy. Files
// whose path ends in "_test.yaml" are policy tests and are skipped here.
CompileResult CompilePolicy(const std::vector<SourceFile>& files);

}  // namespace bursar::policy

#endif  // BURSAR_POLICY_LOADER_H_
