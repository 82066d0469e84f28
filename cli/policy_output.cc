#include "cli/policy_output.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace bursar::cli {
namespace {

// Past this many line pairs the LCS table (4 bytes each) is not built.
constexpr size_t kMaxLcsCells = size_t{4} << 20;

// Lines with their '\n' (the last one may lack it).
std::vector<absl::string_view> SplitLines(absl::string_view text) {
  std::vector<absl::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t newline = text.find('\n', start);
    const size_t end = newline == text.npos ? text.size() : newline + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

enum class Op { kEqual, kDelete, kInsert };

struct Edit {
  Op op;
  // Positions in the old and new lines before this edit.
  size_t old_pos;
  size_t new_pos;
};

// The edit script turning `a` into `b`: equal lines, deletions before
// insertions where a change replaces lines.
std::vector<Edit> LineEdits(const std::vector<absl::string_view>& a,
                            const std::vector<absl::string_view>& b) {
  size_t head = 0;
  while (head < a.size() && head < b.size() && a[head] == b[head]) ++head;
  size_t tail = 0;
  while (tail < a.size() - head && tail < b.size() - head &&
         a[a.size() - 1 - tail] == b[b.size() - 1 - tail]) {
    ++tail;
  }
  std::vector<Edit> edits;
  for (size_t i = 0; i < head; ++i) edits.push_back({Op::kEqual, i, i});

  const size_t n = a.size() - head - tail;
  const size_t m = b.size() - head - tail;
  size_t i = 0;
  size_t j = 0;
  auto add = [&](Op op) {
    edits.push_back({op, head + i, head + j});
    if (op != Op::kInsert) ++i;
    if (op != Op::kDelete) ++j;
  };
  if (n > 0 && m > 0 && (n + 1) * (m + 1) <= kMaxLcsCells) {
    // lcs[x][y]: the longest common subsequence of a[x..n) and b[y..m).
    const size_t width = m + 1;
    std::vector<uint32_t> lcs((n + 1) * width, 0);
    for (size_t x = n; x-- > 0;) {
      for (size_t y = m; y-- > 0;) {
        lcs[x * width + y] =
            a[head + x] == b[head + y]
                ? lcs[(x + 1) * width + y + 1] + 1
                : std::max(lcs[(x + 1) * width + y], lcs[x * width + y + 1]);
      }
    }
    while (i < n && j < m) {
      if (a[head + i] == b[head + j]) {
        add(Op::kEqual);
      } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
        add(Op::kDelete);
      } else {
        add(Op::kInsert);
      }
    }
  }
  while (i < n) add(Op::kDelete);
  while (j < m) add(Op::kInsert);
  for (size_t k = 0; k < tail; ++k) {
    edits.push_back({Op::kEqual, a.size() - tail + k, b.size() - tail + k});
  }
  return edits;
}

void AppendLine(std::string& out, char prefix, absl::string_view line) {
  out.push_back(prefix);
  absl::StrAppend(&out, line);
  if (line.empty() || line.back() != '\n') {
    absl::StrAppend(&out, "\n\\ No newline at end of file\n");
  }
}

// "l,s" of a hunk side: 1-based first line, or the line before an empty
// side (as diff -u).
std::string Range(size_t start, size_t count) {
  return absl::StrCat(count == 0 ? start : start + 1, ",", count);
}

// The "shadow_version" of a policy audit JSON; "" when absent.
std::string ShadowOf(absl::string_view json) {
  if (json.empty()) return "";
  google::protobuf::Struct fields;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &fields)
           .ok()) {
    return "";
  }
  const auto it = fields.fields().find("shadow_version");
  if (it == fields.fields().end() || !it->second.has_string_value()) {
    return "";
  }
  return it->second.string_value();
}

}  // namespace

std::string FormatDiagnostic(const v1::Diagnostic& diagnostic) {
  policy::Diagnostic d;
  d.severity = diagnostic.severity() == v1::Diagnostic::SEVERITY_WARNING
                   ? policy::Diagnostic::Severity::kWarning
                   : policy::Diagnostic::Severity::kError;
  d.path = diagnostic.path();
  d.line = diagnostic.line();
  d.column = diagnostic.column();
  d.field = diagnostic.field();
  d.message = diagnostic.message();
  return policy::FormatDiagnostic(d);
}

std::string CountDiagnostics(int errors, int warnings) {
  if (errors == 0 && warnings == 0) return "no errors";
  std::string text;
  if (errors > 0) {
    absl::StrAppend(&text, errors, errors == 1 ? " error" : " errors");
  }
  if (warnings > 0) {
    absl::StrAppend(&text, text.empty() ? "" : ", ", warnings,
                    warnings == 1 ? " warning" : " warnings");
  }
  return text;
}

std::string UnifiedDiff(absl::string_view before, absl::string_view after,
                        absl::string_view before_label,
                        absl::string_view after_label, int context) {
  if (before == after) return "";
  const std::vector<absl::string_view> a = SplitLines(before);
  const std::vector<absl::string_view> b = SplitLines(after);
  const std::vector<Edit> edits = LineEdits(a, b);
  std::vector<size_t> changes;
  for (size_t k = 0; k < edits.size(); ++k) {
    if (edits[k].op != Op::kEqual) changes.push_back(k);
  }
  std::string out =
      absl::StrCat("--- ", before_label, "\n+++ ", after_label, "\n");
  const size_t ctx = context < 0 ? 0 : static_cast<size_t>(context);
  size_t c = 0;
  while (c < changes.size()) {
    // Changes closer than 2 * context equal lines share a hunk.
    size_t last = c;
    while (last + 1 < changes.size() &&
           changes[last + 1] - changes[last] - 1 <= 2 * ctx) {
      ++last;
    }
    const size_t begin = changes[c] >= ctx ? changes[c] - ctx : 0;
    const size_t end = std::min(edits.size(), changes[last] + ctx + 1);
    size_t old_count = 0;
    size_t new_count = 0;
    for (size_t k = begin; k < end; ++k) {
      if (edits[k].op != Op::kInsert) ++old_count;
      if (edits[k].op != Op::kDelete) ++new_count;
    }
    absl::StrAppend(&out, "@@ -", Range(edits[begin].old_pos, old_count), " +",
                    Range(edits[begin].new_pos, new_count), " @@\n");
    for (size_t k = begin; k < end; ++k) {
      switch (edits[k].op) {
        case Op::kEqual:
          AppendLine(out, ' ', a[edits[k].old_pos]);
          break;
        case Op::kDelete:
          AppendLine(out, '-', a[edits[k].old_pos]);
          break;
        case Op::kInsert:
          AppendLine(out, '+', b[edits[k].new_pos]);
          break;
      }
    }
    c = last + 1;
  }
  return out;
}

std::string DescribePolicyChange(absl::string_view before_json,
                                 absl::string_view after_json) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  v1::PolicyVersion before;
  v1::PolicyVersion after;
  if (after_json.empty()) return "";
  if (!google::protobuf::util::JsonStringToMessage(std::string(after_json),
                                                   &after, options)
           .ok() ||
      after.version().empty()) {
    return "";
  }
  if (!before_json.empty() && !google::protobuf::util::JsonStringToMessage(
                                   std::string(before_json), &before, options)
                                   .ok()) {
    return "";
  }
  const std::string shadow_before = ShadowOf(before_json);
  const std::string shadow_after = ShadowOf(after_json);
  std::string shadow;
  if (shadow_before == shadow_after) {
    // Unchanged: not worth a word.
  } else if (shadow_after.empty()) {
    shadow = absl::StrCat(
        "shadow ", shadow_before,
        after.version() == shadow_before ? " promoted" : " stopped");
  } else {
    shadow =
        absl::StrCat("shadow ", shadow_before, shadow_before.empty() ? "" : " ",
                     "-> ", shadow_after);
  }
  if (before.version() == after.version()) {
    if (!shadow.empty()) return shadow;
    return absl::StrCat("active unchanged (", after.version(), ")");
  }
  return absl::StrCat("active ", before.version(),
                      before.version().empty() ? "" : " ", "-> ",
                      after.version(), shadow.empty() ? "" : "; ", shadow);
}

std::string DescribeShadowPlan(const v1::ShadowPlan& plan) {
  if (!plan.error().empty()) return absl::StrCat("error ", plan.error());
  if (plan.verdict() == v1::VERDICT_DENY) {
    return absl::StrCat("deny ", plan.deny_rule());
  }
  return absl::StrCat("allow ", plan.model(), ", ", plan.max_output_tokens(),
                      " tokens, ", FormatUsd(plan.estimated_cost_nanos()));
}

std::string RenderShadowReport(const v1::GetShadowReportResponse& report) {
  if (report.version().empty()) {
    return "No policy version runs in shadow. Start one with: bursarctl "
           "policy push DIR --shadow --message TEXT\n";
  }
  const int64_t compared = report.checks_compared();
  const int64_t differing = report.checks_differing();
  std::string share;
  if (compared > 0) {
    // One decimal, rounded to nearest, but never 0.0% or 100.0% unless
    // none or all differ.
    int64_t per_mille = (differing * 1000 + compared / 2) / compared;
    if (differing > 0 && per_mille == 0) per_mille = 1;
    if (differing < compared && per_mille == 1000) per_mille = 999;
    share = absl::StrCat(" (", per_mille / 10, ".", per_mille % 10, "%)");
  }
  const v1::ShadowDifferences& by = report.differences();
  std::string text = absl::StrCat(
      "Shadow version ", report.version(), " beside active version ",
      report.active_version(), ", since ", report.since(), "\n",
      RenderKeyValues(
          {{"checks compared", absl::StrCat(compared)},
           {"differing", absl::StrCat(differing, share)},
           {"  verdict", absl::StrCat(by.verdict())},
           {"  deny rule", absl::StrCat(by.deny_rule())},
           {"  model", absl::StrCat(by.model())},
           {"  max output tokens", absl::StrCat(by.max_output_tokens())},
           {"  estimated cost", absl::StrCat(by.estimated_cost())},
           {"  error", absl::StrCat(by.error())}},
          2));
  if (report.samples().empty()) return text;
  absl::StrAppend(&text, "\nLatest differing checks (", report.samples_size(),
                  ", newest first; ", report.sample_capacity(),
                  " are kept):\n");
  Table table(
      {"TIME", "REQUEST", "MODEL", "LABELS", "DIFFERS", "ACTIVE", "SHADOW"});
  for (const v1::ShadowSample& sample : report.samples()) {
    table.AddRow({sample.time(), OrDash(sample.request_id()), sample.model(),
                  OrDash(FormatLabels(sample.labels())),
                  absl::StrJoin(sample.differences(), ","),
                  DescribeShadowPlan(sample.active()),
                  DescribeShadowPlan(sample.shadow())});
  }
  absl::StrAppend(&text, table.Render());
  return text;
}

PolicyFilesDiff DiffPolicyFiles(const std::vector<policy::SourceFile>& active,
                                const std::vector<policy::SourceFile>& local,
                                absl::string_view active_label,
                                absl::string_view local_label) {
  // path -> (active content, local content); null where missing.
  std::map<std::string, std::pair<const std::string*, const std::string*>>
      paths;
  for (const policy::SourceFile& f : active) paths[f.path].first = &f.content;
  for (const policy::SourceFile& f : local) paths[f.path].second = &f.content;
  PolicyFilesDiff diff;
  for (const auto& [path, contents] : paths) {
    const auto& [theirs, ours] = contents;
    const std::string before_label =
        theirs != nullptr ? absl::StrCat(active_label, "/", path) : "/dev/null";
    const std::string after_label =
        ours != nullptr ? absl::StrCat(local_label, "/", path) : "/dev/null";
    if (theirs == nullptr) {
      diff.added.push_back(path);
    } else if (ours == nullptr) {
      diff.removed.push_back(path);
    } else if (*theirs != *ours) {
      diff.changed.push_back(path);
    } else {
      continue;
    }
    static const std::string kEmpty;
    std::string text = UnifiedDiff(theirs != nullptr ? *theirs : kEmpty,
                                   ours != nullptr ? *ours : kEmpty,
                                   before_label, after_label);
    if (text.empty()) {
      // An empty file added or removed: headers only, as diff -N does.
      text = absl::StrCat("--- ", before_label, "\n+++ ", after_label, "\n");
    }
    absl::StrAppend(&diff.text, text);
  }
  return diff;
}

}  // namespace bursar::cli
