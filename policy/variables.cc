#include "policy/variables.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bursar::policy {
namespace {

using expr::PathSegment;
using expr::Type;
using expr::Value;
using expr::VariableRef;

enum VariableId : int {
  kRequestModel,
  kRequestProvider,
  kRequestPriority,
  kRequestLabel,
  kRequestInputTokens,
  kRequestMaxOutputTokens,
  kRequestAttempt,
  kRequestEstimatedCost,
  kNowHour,
  kNowMinute,
  kNowDayOfMonth,
  kNowMonth,
  kNowWeekday,
  // budget.<field> is kOwnBudget + field; budgets["x"].<field> is
  // kNamedBudget + field.
  kOwnBudget = 100,
  kNamedBudget = 200,
};

enum BudgetField : int {
  kAmount,
  kSpent,
  kHeld,
  kRemaining,
  kUsedRatio,
  kPeriodElapsedRatio,
};

struct Field {
  absl::string_view name;
  int id;
  Type type;
};

constexpr Field kRequestFields[] = {
    {"model", kRequestModel, Type::kString},
    {"provider", kRequestProvider, Type::kString},
    {"priority", kRequestPriority, Type::kString},
    {"input_tokens", kRequestInputTokens, Type::kInt},
    {"max_output_tokens", kRequestMaxOutputTokens, Type::kInt},
    {"attempt", kRequestAttempt, Type::kInt},
    {"estimated_cost", kRequestEstimatedCost, Type::kMoney},
};

constexpr Field kNowFields[] = {
    {"hour", kNowHour, Type::kInt},
    {"minute", kNowMinute, Type::kInt},
    {"day_of_month", kNowDayOfMonth, Type::kInt},
    {"month", kNowMonth, Type::kInt},
    {"weekday", kNowWeekday, Type::kString},
};

constexpr Field kBudgetFields[] = {
    {"amount", kAmount, Type::kMoney},
    {"spent", kSpent, Type::kMoney},
    {"held", kHeld, Type::kMoney},
    {"remaining", kRemaining, Type::kMoney},
    {"used_ratio", kUsedRatio, Type::kDouble},
    {"period_elapsed_ratio", kPeriodElapsedRatio, Type::kDouble},
};

std::string PathText(const std::vector<PathSegment>& path) {
  std::string text;
  for (const PathSegment& segment : path) {
    if (segment.kind == PathSegment::Kind::kKey) {
      absl::StrAppend(&text, "[\"", segment.text, "\"]");
    } else {
      absl::StrAppend(&text, text.empty() ? "" : ".", segment.text);
    }
  }
  return text;
}

template <size_t N>
std::string FieldNames(absl::string_view prefix, const Field (&fields)[N]) {
  return absl::StrJoin(fields, ", ", [&](std::string* out, const Field& f) {
    absl::StrAppend(out, prefix, f.name);
  });
}

template <size_t N>
absl::StatusOr<VariableRef> ResolveField(const std::vector<PathSegment>& path,
                                         size_t index, absl::string_view prefix,
                                         const Field (&fields)[N],
                                         int id_base = 0,
                                         std::string key = "") {
  if (path.size() == index + 1 &&
      path[index].kind == PathSegment::Kind::kIdent) {
    for (const Field& field : fields) {
      if (field.name == path[index].text) {
        return VariableRef{id_base + field.id, std::move(key), field.type};
      }
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown variable \"", PathText(path), "\"; ", prefix,
                   " has ", FieldNames(prefix, fields)));
}

constexpr absl::string_view kWeekdays[] = {"monday",   "tuesday", "wednesday",
                                           "thursday", "friday",  "saturday",
                                           "sunday"};

}  // namespace

absl::StatusOr<VariableRef> PolicySchema::Resolve(
    const std::vector<PathSegment>& path) const {
  if (path.empty() || path[0].kind != PathSegment::Kind::kIdent) {
    return absl::InvalidArgumentError("a variable starts with a name");
  }
  const absl::string_view root = path[0].text;
  if (root == "request") {
    if (path.size() >= 2 && path[1].kind == PathSegment::Kind::kIdent &&
        path[1].text == "labels") {
      if (path.size() == 3) {
        return VariableRef{kRequestLabel, path[2].text, Type::kString};
      }
      return absl::InvalidArgumentError(
          absl::StrCat("unknown variable \"", PathText(path),
                       "\"; name one label: request.labels.team or "
                       "request.labels[\"x-team\"]"));
    }
    return ResolveField(path, 1, "request.", kRequestFields);
  }
  if (root == "now") return ResolveField(path, 1, "now.", kNowFields);
  if (root == "budget") {
    if (!scope_.has_own_budget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", PathText(path),
          "\": budget.* is the rule's own budget and exists only in "
          "spend_slos and alerts; elsewhere write budgets[\"name\"].",
          path.size() > 1 ? path.back().text : "used_ratio"));
    }
    return ResolveField(path, 1, "budget.", kBudgetFields, kOwnBudget);
  }
  if (root == "budgets") {
    if (path.size() < 2 || path[1].kind != PathSegment::Kind::kKey) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown variable \"", PathText(path),
          "\"; name the budget: budgets[\"org-monthly\"].used_ratio"));
    }
    return ResolveField(path, 2,
                        absl::StrCat("budgets[\"", path[1].text, "\"]."),
                        kBudgetFields, kNamedBudget, path[1].text);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown variable \"", PathText(path),
                   "\"; variables start with request., budget., "
                   "budgets[\"name\"]., or now."));
}

namespace {

// Up to this many labels, FindLabel scans rather than bisects.
constexpr size_t kLabelsToScan = 8;

// a < b as string_view orders them (bytes as unsigned char, then length),
// inline: label keys are short, and a call of memcmp costs more than the
// loop.
inline bool ShortLess(absl::string_view a, absl::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      return static_cast<unsigned char>(a[i]) <
             static_cast<unsigned char>(b[i]);
    }
  }
  return a.size() < b.size();
}

inline bool ShortEqual(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

}  // namespace

absl::string_view FindLabel(LabelSpan labels, absl::string_view key) {
  // A request has few labels: scanning them, sizes first, beats a binary
  // search. Both find the first entry with the key.
  if (labels.size() <= kLabelsToScan) {
    for (const auto& entry : labels) {
      if (ShortEqual(entry.first, key)) return entry.second;
    }
    return {};
  }
  auto it = std::lower_bound(labels.begin(), labels.end(), key,
                             [](const auto& entry, absl::string_view k) {
                               return ShortLess(entry.first, k);
                             });
  if (it == labels.end() || !ShortEqual(it->first, key)) return {};
  return it->second;
}

Value PolicyActivation::NamedBudgetField(int field,
                                         absl::string_view name) const {
  const std::optional<BudgetUsage> usage =
      usage_ == nullptr ? std::nullopt : usage_->Budget(name);
  return BudgetField(field, usage.value_or(BudgetUsage{}));
}

Value PolicyActivation::BudgetField(int field,
                                    const BudgetUsage& figures) const {
  switch (field) {
    case kAmount:
      return Value::Money(figures.amount_nanos);
    case kSpent:
      return Value::Money(figures.spent_nanos);
    case kHeld:
      return Value::Money(figures.held_nanos);
    case kRemaining:
      return Value::Money(std::max<int64_t>(
          0, figures.amount_nanos - figures.spent_nanos - figures.held_nanos));
    case kUsedRatio:
      if (figures.amount_nanos <= 0) {
        return Value::Double(figures.spent_nanos > 0 ? 1.0 : 0.0);
      }
      return Value::Double(static_cast<double>(figures.spent_nanos) /
                           static_cast<double>(figures.amount_nanos));
    case kPeriodElapsedRatio: {
      if (figures.period_start == absl::InfinitePast() ||
          figures.period_end == absl::InfiniteFuture() ||
          figures.period_end <= figures.period_start) {
        return Value::Double(0.0);
      }
      const double ratio =
          absl::FDivDuration(now_ - figures.period_start,
                             figures.period_end - figures.period_start);
      return Value::Double(std::clamp(ratio, 0.0, 1.0));
    }
  }
  return Value::Double(0.0);
}

Value PolicyActivation::Get(const VariableRef& ref) const {
  if (ref.id >= kNamedBudget) {
    return NamedBudgetField(ref.id - kNamedBudget, ref.key);
  }
  if (ref.id >= kOwnBudget) {
    return BudgetField(ref.id - kOwnBudget,
                       own_budget_ != nullptr ? *own_budget_ : BudgetUsage{});
  }
  switch (ref.id) {
    case kRequestModel:
      return Value::String(request_->model);
    case kRequestProvider:
      return Value::String(request_->provider);
    case kRequestPriority:
      return Value::String(request_->priority);
    case kRequestLabel:
      return Value::String(FindLabel(request_->labels, ref.key));
    case kRequestInputTokens:
      return Value::Int(request_->input_tokens);
    case kRequestMaxOutputTokens:
      return Value::Int(request_->max_output_tokens);
    case kRequestAttempt:
      return Value::Int(request_->attempt);
    case kRequestEstimatedCost:
      return Value::Money(request_->estimated_cost_nanos);
    case kNowHour:
      return Value::Int(local_now_.hour());
    case kNowMinute:
      return Value::Int(local_now_.minute());
    case kNowDayOfMonth:
      return Value::Int(local_now_.day());
    case kNowMonth:
      return Value::Int(local_now_.month());
    case kNowWeekday:
      return Value::String(
          kWeekdays[static_cast<int>(absl::GetWeekday(local_now_))]);
  }
  return Value::Bool(false);
}

}  // namespace bursar::policy
