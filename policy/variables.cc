#include "policy/variables.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/match.h"
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
  // The ids above are also the slots of those variables (VariableSlots).
  // budget.<field> is kOwnBudget + field; budgets["x"].<field> is
  // kNamedBudget + field.
  kOwnBudget = 100,
  kNamedBudget = 200,
  // signal["x"], kpi.burn_rate, kpi.projected_spend; kpi.<metric>_<window>
  // is kKpi + metric * kKpiWindows + window.
  kSignal = 1000,
  kKpiBurnRate,
  kKpiProjectedSpend,
  kKpi = 2000,
};

enum KpiMetric : int {
  kKpiSpend,
  kKpiRequests,
  kKpiSuccesses,
  kKpiFailures,
  kKpiRetries,
  kKpiInputTokens,
  kKpiCachedInputTokens,
  kKpiOutputTokens,
  kKpiTokensPerRequest,
  kKpiCostPerRequest,
  kKpiCostPerSuccess,
  kKpiRetryRate,
  kKpiErrorRate,
  kKpiP95Latency,
  kKpiQualityScore,
};

constexpr int kKpiWindows = 8;

struct KpiWindowName {
  absl::string_view suffix;
  KpiWindow window;
};
// Longest suffixes first: "_1h_last_week" before "_1h".
constexpr KpiWindowName kKpiWindowNames[] = {
    {"_1h_last_week", KpiWindow::kSameHourLastWeek},
    {"_prev_24h", KpiWindow::kPrevious24Hours},
    {"_prev_1h", KpiWindow::kPreviousHour},
    {"_24h", KpiWindow::kLast24Hours},
    {"_1h", KpiWindow::kLastHour},
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

constexpr Field kKpiMetrics[] = {
    {"spend", kKpiSpend, Type::kMoney},
    {"requests", kKpiRequests, Type::kInt},
    {"successes", kKpiSuccesses, Type::kInt},
    {"failures", kKpiFailures, Type::kInt},
    {"retries", kKpiRetries, Type::kInt},
    {"input_tokens", kKpiInputTokens, Type::kInt},
    {"cached_input_tokens", kKpiCachedInputTokens, Type::kInt},
    {"output_tokens", kKpiOutputTokens, Type::kInt},
    {"tokens_per_request", kKpiTokensPerRequest, Type::kDouble},
    {"cost_per_request", kKpiCostPerRequest, Type::kMoney},
    {"cost_per_success", kKpiCostPerSuccess, Type::kMoney},
    {"retry_rate", kKpiRetryRate, Type::kDouble},
    {"error_rate", kKpiErrorRate, Type::kDouble},
    {"p95_latency", kKpiP95Latency, Type::kDuration},
    {"quality_score", kKpiQualityScore, Type::kDouble},
};

const Field* FindKpiMetric(absl::string_view name) {
  for (const Field& f : kKpiMetrics) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

Value MetricValue(int metric, const KpiFigures& f) {
  auto ratio = [](int64_t part, int64_t whole) {
    return Value::Double(whole > 0 ? static_cast<double>(part) /
                                         static_cast<double>(whole)
                                   : 0.0);
  };
  switch (metric) {
    case kKpiSpend:
      return Value::Money(f.spend_nanos);
    case kKpiRequests:
      return Value::Int(f.requests);
    case kKpiSuccesses:
      return Value::Int(f.successes);
    case kKpiFailures:
      return Value::Int(f.failures);
    case kKpiRetries:
      return Value::Int(f.retries);
    case kKpiInputTokens:
      return Value::Int(f.input_tokens);
    case kKpiCachedInputTokens:
      return Value::Int(f.cached_input_tokens);
    case kKpiOutputTokens:
      return Value::Int(f.output_tokens);
    case kKpiTokensPerRequest:
      return ratio(f.input_tokens + f.output_tokens, f.requests);
    case kKpiCostPerRequest:
      return Value::Money(f.requests > 0 ? f.spend_nanos / f.requests : 0);
    case kKpiCostPerSuccess:
      return Value::Money(f.successes > 0 ? f.spend_nanos / f.successes : 0);
    case kKpiRetryRate:
      return ratio(f.retries, f.requests);
    case kKpiErrorRate:
      return ratio(f.failures + f.retries, f.requests);
    case kKpiP95Latency:
      return Value::Duration(f.p95_latency);
    case kKpiQualityScore:
      // NaN without scores, as a signal never reported: no data, no action.
      return Value::Double(f.quality_reports > 0
                               ? static_cast<double>(f.quality_micros_sum) /
                                     1e6 /
                                     static_cast<double>(f.quality_reports)
                               : std::numeric_limits<double>::quiet_NaN());
  }
  return Value::Int(0);
}

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

static_assert(VariableSlots::kFirstLabelSlot == kNowWeekday + 1,
              "the label slots follow the fixed ones");

}  // namespace

absl::StatusOr<VariableRef> PolicySchema::Resolve(
    const std::vector<PathSegment>& path) const {
  absl::StatusOr<VariableRef> ref = ResolveName(path);
  if (!ref.ok() || layout_ == nullptr) return ref;
  if (ref->id == kRequestLabel) {
    std::vector<std::string>& keys = layout_->label_keys;
    auto it = std::find(keys.begin(), keys.end(), ref->key);
    if (it == keys.end() && keys.size() < kMaxLabelSlots) {
      it = keys.insert(keys.end(), ref->key);
    }
    if (it != keys.end()) {
      ref->slot =
          VariableSlots::kFirstLabelSlot + static_cast<int>(it - keys.begin());
    }
  } else if (ref->id >= kRequestModel && ref->id <= kNowWeekday) {
    ref->slot = ref->id;
    if (ref->id >= kNowHour) layout_->reads_now = true;
    if (ref->id == kNowWeekday) layout_->reads_weekday = true;
  }
  return ref;
}

void VariableSlots::Fill(const RequestFacts& request,
                         absl::CivilSecond local_now,
                         const VariableSlotLayout& layout) {
  Value* values = storage_.values;
  values[kRequestModel] = Value::String(request.model);
  values[kRequestProvider] = Value::String(request.provider);
  values[kRequestPriority] = Value::String(request.priority);
  values[kRequestInputTokens] = Value::Int(request.input_tokens);
  values[kRequestMaxOutputTokens] = Value::Int(request.max_output_tokens);
  values[kRequestAttempt] = Value::Int(request.attempt);
  values[kRequestEstimatedCost] = Value::Money(request.estimated_cost_nanos);
  if (layout.reads_now) {
    values[kNowHour] = Value::Int(local_now.hour());
    values[kNowMinute] = Value::Int(local_now.minute());
    values[kNowDayOfMonth] = Value::Int(local_now.day());
    values[kNowMonth] = Value::Int(local_now.month());
  }
  if (layout.reads_weekday) {
    values[kNowWeekday] =
        Value::String(kWeekdays[static_cast<int>(absl::GetWeekday(local_now))]);
  }
  const size_t labels =
      std::min<size_t>(layout.label_keys.size(), kMaxLabelSlots);
  for (size_t i = 0; i < labels; ++i) {
    values[kFirstLabelSlot + i] =
        Value::String(FindLabel(request.labels, layout.label_keys[i]));
  }
}

void VariableSlots::Refresh(const RequestFacts& request) {
  Value* values = storage_.values;
  values[kRequestModel] = Value::String(request.model);
  values[kRequestMaxOutputTokens] = Value::Int(request.max_output_tokens);
  values[kRequestEstimatedCost] = Value::Money(request.estimated_cost_nanos);
}

absl::StatusOr<VariableRef> PolicySchema::ResolveName(
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
  if (root == "signal") {
    if (path.size() == 2 && path[1].kind == PathSegment::Kind::kKey &&
        !path[1].text.empty()) {
      return VariableRef{kSignal, path[1].text, Type::kDouble};
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown variable \"", PathText(path),
                     "\"; name the signal: signal[\"golden-accuracy\"]"));
  }
  if (root == "kpi") {
    if (!scope_.has_own_budget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", PathText(path),
          "\": kpi.* reads the rule's own budget and exists only in "
          "spend_slos and alerts"));
    }
    if (path.size() == 2 && path[1].kind == PathSegment::Kind::kIdent) {
      const absl::string_view name = path[1].text;
      if (name == "burn_rate") {
        return VariableRef{kKpiBurnRate, "", Type::kDouble};
      }
      if (name == "projected_spend") {
        return VariableRef{kKpiProjectedSpend, "", Type::kMoney};
      }
      for (int w = 0; w < static_cast<int>(std::size(kKpiWindowNames)); ++w) {
        const absl::string_view suffix = kKpiWindowNames[w].suffix;
        if (!absl::EndsWith(name, suffix)) continue;
        const Field* metric =
            FindKpiMetric(name.substr(0, name.size() - suffix.size()));
        if (metric == nullptr) break;
        return VariableRef{kKpi + metric->id * kKpiWindows +
                               static_cast<int>(kKpiWindowNames[w].window),
                           "", metric->type};
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown variable \"", PathText(path),
        "\"; kpi. has burn_rate, projected_spend and <metric>_<window> with "
        "metric one of ",
        FieldNames("", kKpiMetrics),
        " and window one of 1h, prev_1h, 24h, prev_24h, 1h_last_week "
        "(e.g. kpi.retry_rate_1h)"));
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
                   "budgets[\"name\"]., kpi., signal[\"name\"] or now."));
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

bool KpiMetricValue(absl::string_view metric, const KpiFigures& figures,
                    Value* out) {
  const Field* field = FindKpiMetric(metric);
  if (field == nullptr) return false;
  *out = MetricValue(field->id, figures);
  return true;
}

Value PolicyActivation::SignalValue(absl::string_view name) const {
  std::optional<double> value;
  if (kpi_ != nullptr && kpi_->signals != nullptr) {
    value = kpi_->signals->Signal(name);
  }
  return Value::Double(
      value.value_or(std::numeric_limits<double>::quiet_NaN()));
}

Value PolicyActivation::KpiField(int id) const {
  const BudgetUsage own = own_budget_ != nullptr ? *own_budget_ : BudgetUsage{};
  if (id == kKpiBurnRate || id == kKpiProjectedSpend) {
    // The share of the period gone by, and spend at that pace.
    double elapsed = 0;
    if (own.period_start != absl::InfinitePast() &&
        own.period_end != absl::InfiniteFuture() &&
        own.period_end > own.period_start) {
      elapsed =
          std::clamp(absl::FDivDuration(now_ - own.period_start,
                                        own.period_end - own.period_start),
                     0.0, 1.0);
    }
    if (id == kKpiBurnRate) {
      if (elapsed <= 0 || own.amount_nanos <= 0) return Value::Double(0.0);
      return Value::Double(static_cast<double>(own.spent_nanos) /
                           (elapsed * static_cast<double>(own.amount_nanos)));
    }
    if (elapsed <= 0) return Value::Money(own.spent_nanos);
    const double projected = static_cast<double>(own.spent_nanos) / elapsed;
    return Value::Money(projected >= 9.2e18 ? INT64_MAX
                                            : static_cast<int64_t>(projected));
  }
  const int metric = (id - kKpi) / kKpiWindows;
  const auto window = static_cast<KpiWindow>((id - kKpi) % kKpiWindows);
  KpiFigures figures;
  if (kpi_ == nullptr || kpi_->kpis == nullptr ||
      !kpi_->kpis->Figures(kpi_->own_budget_name, window, now_, &figures)) {
    figures = KpiFigures();
  }
  return MetricValue(metric, figures);
}

Value PolicyActivation::Get(const VariableRef& ref) const {
  // The rule's own budget first: with request.* and now.* in slots, it is
  // what spend SLOs ask Get for most.
  if (ref.id >= kOwnBudget && ref.id < kNamedBudget) {
    static constexpr BudgetUsage kNoBudget;
    return BudgetField(ref.id - kOwnBudget,
                       own_budget_ != nullptr ? *own_budget_ : kNoBudget);
  }
  if (ref.id >= kKpi || ref.id == kKpiBurnRate ||
      ref.id == kKpiProjectedSpend) {
    return KpiField(ref.id);
  }
  if (ref.id == kSignal) return SignalValue(ref.key);
  if (ref.id >= kNamedBudget) {
    return NamedBudgetField(ref.id - kNamedBudget, ref.key);
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
