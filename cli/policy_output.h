#ifndef BURSAR_CLI_POLICY_OUTPUT_H_
#define BURSAR_CLI_POLICY_OUTPUT_H_

// How bursarctl's policy commands show things: diagnostics in the loader's
// `file:line:col: field: message` form, and unified line diffs between the
// active version's files and a local policy directory. Pure functions of
// their inputs; nothing here prints or talks to a server.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "bursar/v1/admin.pb.h"
#include "policy/loader.h"

namespace bursar::cli {

// A diagnostic from the server as policy::FormatDiagnostic writes it.
std::string FormatDiagnostic(const v1::Diagnostic& diagnostic);

// "2 errors, 1 warning", "1 error", "no errors".
std::string CountDiagnostics(int errors, int warnings);

// A unified diff of two texts, as `diff -u` prints it: "--- before_label",
// "+++ after_label", then hunks "@@ -l,s +l,s @@" with `context` lines of
// context around each change; a last line without a newline is followed by
// "\ No newline at end of file". Empty when the texts are equal. Lines are
// matched by a longest common subsequence (texts too large for it, over
// about 4M line pairs after the common head and tail, show the differing
// middle as removed and added whole).
std::string UnifiedDiff(absl::string_view before, absl::string_view after,
                        absl::string_view before_label,
                        absl::string_view after_label, int context = 3);

// A one-line summary of a "policy.*" audit record's change, from its
// before/after JSON (the active version, and the shadow version's id as
// "shadow_version", before and after):
// "active 4647b5326e56791d -> 9f0c2a1b7d3e4c55", "active -> 4647b5326e56791d"
// (none before), "active unchanged (4647b5326e56791d)", "shadow -> 9f0c..."
// (a shadow started), "shadow 9f0c... stopped", and for a promotion
// "active 4647... -> 9f0c...; shadow 9f0c... promoted". Empty when the JSON
// is not a policy version.
std::string DescribePolicyChange(absl::string_view before_json,
                                 absl::string_view after_json);

// What a policy version planned in shadow mode, in a few words:
// "allow gpt-4.1, 500 tokens, $0.006", "deny deny:no-opus",
// "error INVALID_ARGUMENT: ...".
std::string DescribeShadowPlan(const v1::ShadowPlan& plan);

// A shadow report for people: the versions and counts, then a table of the
// samples (newest first); "No policy version runs in shadow." and a hint
// when there is none.
std::string RenderShadowReport(const v1::GetShadowReportResponse& report);

struct PolicyFilesDiff {
  // The unified diff of every file that differs, by path; "" if none.
  std::string text;
  // Paths only in the local files, only in the active ones, in both with
  // different content; each sorted.
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> changed;

  bool identical() const {
    return added.empty() && removed.empty() && changed.empty();
  }
};

// Compares the active version's files with local ones, by path. Diff labels
// are "<active_label>/<path>" and "<local_label>/<path>" ("/dev/null" for a
// file that is missing on one side).
PolicyFilesDiff DiffPolicyFiles(const std::vector<policy::SourceFile>& active,
                                const std::vector<policy::SourceFile>& local,
                                absl::string_view active_label,
                                absl::string_view local_label);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_POLICY_OUTPUT_H_
