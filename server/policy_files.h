#ifndef BURSAR_SERVER_POLICY_FILES_H_
#define BURSAR_SERVER_POLICY_FILES_H_

// Policy files on disk and their diagnostics on the wire, shared by bursard
// (--policy_dir, PushPolicy) and bursarctl (`policy check|push|diff DIR`):
// reading a policy directory, which files of it are policy tests, and a
// diagnostic in the API's form. Its own small library (bursar_policy_files) so the
// CLI gets it without linking the server, gRPC or RocksDB.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bursar/v1/admin.pb.h"
#include "policy/loader.h"

namespace bursar::server {

// Reads every *.yaml / *.yml file under `dir` (recursively, skipping hidden
// files and directories such as a ConfigMap volume's "..data"; paths
// relative to it, '/'-separated, sorted). NotFound if the directory does not exist,
// InvalidArgument if it has no policy file, Unavailable if a file cannot be
// read.
absl::StatusOr<std::vector<policy::SourceFile>> ReadPolicyDir(
    const std::string& dir);

// True for a policy test file ("*_test.yaml"): CompilePolicy skips it and it
// does not count towards the version, so bursard does not store it with a
// pushed version either.
bool IsPolicyTestFile(absl::string_view path);

// A compiler diagnostic as the Admin API carries it.
v1::Diagnostic DiagnosticToProto(const policy::Diagnostic& diagnostic);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_POLICY_FILES_H_
