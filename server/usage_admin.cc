#include "server/usage_admin.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "policy/compiled_policy.h"
#include "server/time_format.h"

namespace bursar::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

constexpr size_t kMaxSignalNameBytes = 128;
constexpr size_t kMaxSignalScopeBytes = 256;

// Which value of a row a dimension reads.
enum class Dim { kBudget, kInstance, kModel, kProvider, kLabel };

struct DimRef {
  Dim kind = Dim::kLabel;
  std::string label;  // kLabel
};

absl::string_view ValueOf(const DimRef& dim, const storage::UsageRowKey& key) {
  switch (dim.kind) {
    case Dim::kBudget:
      return key.budget;
    case Dim::kInstance:
      return key.instance;
    case Dim::kModel:
      return key.model;
    case Dim::kProvider:
      return key.provider;
    case Dim::kLabel:
      for (const auto& [k, v] : key.dimensions) {
        if (k == dim.label) return v;
      }
      return "";
  }
  return "";
}

absl::Status ParseTime(absl::string_view field, const std::string& text,
                       absl::Time* out) {
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, out, &error)) {
    return Invalid(field, absl::StrCat("\"", text,
                                       "\" is not an RFC 3339 time such as "
                                       "\"2026-03-01T00:00:00Z\""));
  }
  return absl::OkStatus();
}

absl::Time HourOf(absl::Time t) {
  const int64_t s = absl::ToUnixSeconds(t);
  return absl::FromUnixSeconds(s - ((s % 3600) + 3600) % 3600);
}

void FillRow(const storage::UsageCounts& c, v1::UsageRow* row) {
  row->set_cost_nanos(c.cost_nanos);
  row->set_input_tokens(c.input_tokens);
  row->set_cached_input_tokens(c.cached_input_tokens);
  row->set_output_tokens(c.output_tokens);
  row->set_requests(c.requests);
  row->set_successes(c.successes);
  row->set_failures(c.failures);
  row->set_retries(c.retries);
  row->set_cancelled(c.cancelled);
  row->set_expired(c.expired);
  row->set_expired_estimate_nanos(c.expired_estimate_nanos);
}

void FillSignal(const storage::Signal& s, v1::Signal* out) {
  out->set_name(s.name);
  out->set_value(s.value);
  out->set_scope(s.scope);
  out->set_time(FormatRfc3339(s.time));
  out->set_reported_by(s.reported_by);
}

}  // namespace

absl::Status UsageAdmin::GetUsage(const v1::GetUsageRequest& request,
                                  v1::GetUsageResponse* response) const {
  const std::shared_ptr<const policy::CompiledPolicy> active =
      policies_->Active();
  const std::vector<std::string>& labels =
      active->rules().attribution.dimensions;
  // Resolves a dimension name of group_by or filter.
  auto resolve = [&](absl::string_view field,
                     const std::string& name) -> absl::StatusOr<DimRef> {
    if (name == "budget") return DimRef{Dim::kBudget, ""};
    if (name == "instance") return DimRef{Dim::kInstance, ""};
    if (name == "model") return DimRef{Dim::kModel, ""};
    if (name == "provider") return DimRef{Dim::kProvider, ""};
    if (std::find(labels.begin(), labels.end(), name) != labels.end()) {
      return DimRef{Dim::kLabel, name};
    }
    return Invalid(
        field,
        absl::StrCat(
            "\"", name,
            "\" is not a usage dimension; use budget, instance, model, "
            "provider",
            labels.empty()
                ? std::string(" (the active policy lists no label keys under "
                              "attribution.dimensions)")
                : absl::StrCat(" or a label key under attribution.dimensions "
                               "of the active policy: ",
                               absl::StrJoin(labels, ", "))));
  };

  bool by_budget = false;
  bool has_instance = false;
  std::vector<DimRef> group;
  for (int i = 0; i < request.group_by_size(); ++i) {
    const std::string field = absl::StrCat("group_by[", i, "]");
    absl::StatusOr<DimRef> dim = resolve(field, request.group_by(i));
    if (!dim.ok()) return dim.status();
    for (int j = 0; j < i; ++j) {
      if (request.group_by(j) == request.group_by(i)) {
        return Invalid(field, absl::StrCat("\"", request.group_by(i),
                                           "\" is listed twice"));
      }
    }
    by_budget |= dim->kind == Dim::kBudget;
    has_instance |= dim->kind == Dim::kInstance;
    group.push_back(*std::move(dim));
  }
  std::vector<std::pair<DimRef, std::string>> filters;
  for (const auto& [name, value] : request.filter()) {
    absl::StatusOr<DimRef> dim =
        resolve(absl::StrCat("filter[", name, "]"), name);
    if (!dim.ok()) return dim.status();
    by_budget |= dim->kind == Dim::kBudget;
    has_instance |= dim->kind == Dim::kInstance;
    filters.emplace_back(*std::move(dim), value);
  }
  if (has_instance && !by_budget) {
    return Invalid(request.group_by_size() > 0 ? "group_by" : "filter",
                   "\"instance\" is the per_label value of a budget; group or "
                   "filter by \"budget\" too");
  }
  if (request.top_n() < 0) {
    return Invalid("top_n", absl::StrCat(request.top_n(),
                                         " is negative; 0 means all rows"));
  }
  if (request.start().empty()) {
    return Invalid("start", "required: the start of the range (RFC 3339)");
  }
  absl::Time start;
  if (absl::Status s = ParseTime("start", request.start(), &start); !s.ok()) {
    return s;
  }
  absl::Time end = clock_->Now();
  if (!request.end().empty()) {
    if (absl::Status s = ParseTime("end", request.end(), &end); !s.ok()) {
      return s;
    }
  }
  if (end <= start) {
    return Invalid(
        "end",
        absl::StrCat(request.end().empty() ? std::string("now") : request.end(),
                     " is not after start ", request.start()));
  }
  if (end - start > kMaxUsageRange) {
    return Invalid("start",
                   absl::StrCat("the range is longer than ",
                                absl::ToInt64Hours(kMaxUsageRange) / 24,
                                " days; ask for a shorter one"));
  }

  absl::StatusOr<std::vector<storage::UsageRow>> rows =
      usage_->Rows(start, end);
  if (!rows.ok()) return rows.status();

  // A call counts once in the rows without a budget, and once per budget
  // instance in the rows with one.
  std::map<std::vector<std::string>, storage::UsageCounts> groups;
  storage::UsageCounts total;
  for (const storage::UsageRow& row : *rows) {
    if (row.key.budget.empty() == by_budget) continue;
    bool match = true;
    for (const auto& [dim, value] : filters) {
      if (ValueOf(dim, row.key) != value) {
        match = false;
        break;
      }
    }
    if (!match) continue;
    std::vector<std::string> values;
    values.reserve(group.size());
    for (const DimRef& dim : group) {
      values.emplace_back(ValueOf(dim, row.key));
    }
    groups[std::move(values)].Add(row.counts);
    total.Add(row.counts);
  }
  std::vector<std::pair<std::vector<std::string>, storage::UsageCounts>> sorted(
      groups.begin(), groups.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) {
                     return a.second.cost_nanos > b.second.cost_nanos;
                   });
  size_t keep = sorted.size();
  if (request.top_n() > 0) {
    keep = std::min(keep, static_cast<size_t>(request.top_n()));
  }
  for (size_t i = 0; i < keep; ++i) {
    v1::UsageRow* out = response->add_rows();
    for (const std::string& v : sorted[i].first) out->add_group(v);
    FillRow(sorted[i].second, out);
  }
  response->set_rows_omitted(static_cast<int32_t>(sorted.size() - keep));
  FillRow(total, response->mutable_total());
  const absl::Time first_hour =
      HourOf(start) < start ? HourOf(start) + absl::Hours(1) : HourOf(start);
  const absl::Time last_hour =
      HourOf(end) < end ? HourOf(end) + absl::Hours(1) : HourOf(end);
  response->set_start(FormatRfc3339(first_hour));
  response->set_end(FormatRfc3339(last_hour));
  return absl::OkStatus();
}

absl::Status UsageAdmin::ReportSignal(const v1::ReportSignalRequest& request,
                                      absl::string_view reporter,
                                      v1::ReportSignalResponse* response) {
  if (!request.has_signal()) {
    return Invalid("signal", "required: { name, value, scope, time }");
  }
  const v1::Signal& in = request.signal();
  const bool name_ok =
      !in.name().empty() && in.name().size() <= kMaxSignalNameBytes &&
      std::all_of(in.name().begin(), in.name().end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.';
      });
  if (!name_ok) {
    return Invalid("signal.name",
                   absl::StrCat("expected 1 to ", kMaxSignalNameBytes,
                                " letters, digits, '-', '_' or '.', e.g. "
                                "\"golden-accuracy\""));
  }
  if (!std::isfinite(in.value())) {
    return Invalid("signal.value", "must be a finite number");
  }
  if (in.scope().size() > kMaxSignalScopeBytes) {
    return Invalid("signal.scope",
                   absl::StrFormat("%d bytes; at most %d", in.scope().size(),
                                   kMaxSignalScopeBytes));
  }
  if (!in.reported_by().empty()) {
    return Invalid("signal.reported_by",
                   "is set by the server from the caller; leave it empty");
  }
  storage::Signal signal;
  signal.name = in.name();
  signal.value = in.value();
  signal.scope = in.scope();
  signal.time = clock_->Now();
  if (!in.time().empty()) {
    if (absl::Status s = ParseTime("signal.time", in.time(), &signal.time);
        !s.ok()) {
      return s;
    }
  }
  signal.reported_by = std::string(reporter);
  if (absl::Status s = usage_->PutSignal(signal); !s.ok()) return s;
  FillSignal(signal, response->mutable_signal());
  return absl::OkStatus();
}

absl::Status UsageAdmin::ListSignals(const v1::ListSignalsRequest&,
                                     v1::ListSignalsResponse* response) const {
  for (const storage::Signal& s : usage_->ListSignals()) {
    FillSignal(s, response->add_signals());
  }
  return absl::OkStatus();
}

}  // namespace bursar::server
