#include "server/policy_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bursar::server {

absl::StatusOr<std::vector<policy::SourceFile>> ReadPolicyDir(
    const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("policy directory \"", dir, "\" does not exist"));
  }
  std::vector<policy::SourceFile> files;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Hidden entries are not policy: a Kubernetes ConfigMap volume keeps a
    // second copy of every file under "..data/" and "..<timestamp>/".
    if (absl::StartsWith(name, ".")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    if (!absl::EndsWith(name, ".yaml") && !absl::EndsWith(name, ".yml")) {
      continue;
    }
    std::ifstream in(it->path(), std::ios::binary);
    if (!in) {
      return absl::UnavailableError(absl::StrCat("cannot read policy file \"",
                                                 it->path().string(), "\""));
    }
    std::stringstream content;
    content << in.rdbuf();
    files.push_back(
        {it->path().lexically_relative(dir).generic_string(), content.str()});
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot list policy directory \"", dir, "\": ", ec.message()));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy directory \"", dir, "\" has no .yaml policy file"));
  }
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a.path < b.path; });
  return files;
}

bool IsPolicyTestFile(absl::string_view path) {
  return absl::EndsWith(path, "_test.yaml");
}

v1::Diagnostic DiagnosticToProto(const policy::Diagnostic& diagnostic) {
  v1::Diagnostic out;
  out.set_severity(diagnostic.severity == policy::Diagnostic::Severity::kError
                       ? v1::Diagnostic::SEVERITY_ERROR
                       : v1::Diagnostic::SEVERITY_WARNING);
  out.set_path(diagnostic.path);
  out.set_line(diagnostic.line);
  out.set_column(diagnostic.column);
  out.set_field(diagnostic.field);
  out.set_message(diagnostic.message);
  return out;
}

}  // namespace bursar::server
