#include "policy/policy_tests.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "policy/call_plan.h"
#include "policy/kpi_view.h"
#include "policy/limit_asks.h"
#include "policy/money.h"
#include "policy/usage_view.h"
#include "policy/yaml_limits.h"
#include "yaml-cpp/yaml.h"

namespace bursar::policy {
namespace {

constexpr absl::string_view kTestFileSuffix = "_test.yaml";

struct TestBudget {
  std::string name;
  int64_t amount_nanos = 0;
  int64_t spent_nanos = 0;
  int64_t held_nanos = 0;
  std::vector<std::pair<std::string, std::string>> selector;
  std::string period = "none";
};

// What a rate-limit counter has taken in the current sub-bucket.
struct TestRateUsage {
  std::string rule;
  std::string key;
  absl::Duration window;
  int64_t tokens = 0;
  int64_t requests = 0;
};

// Calls in flight in a pool, by priority class.
struct TestInFlight {
  std::string pool;
  std::map<std::string, int64_t> by_priority;
};

// KPI figures a case states for one budget and window.
struct TestKpi {
  std::string budget;
  KpiWindow window = KpiWindow::kLastHour;
  KpiFigures figures;
};

struct TestCase {
  std::string name;
  int line = 0;
  absl::Time now = absl::FromCivil(absl::CivilSecond(2026, 1, 1, 12, 0, 0),
                                   absl::UTCTimeZone());
  std::vector<TestBudget> budgets;
  std::vector<TestRateUsage> rate_usage;
  std::vector<TestInFlight> in_flight;
  std::vector<TestKpi> kpis;
  std::map<std::string, double> signals;
  // The request; labels as given (std::map keeps them sorted).
  std::string model;
  std::string provider;
  std::string priority;
  std::map<std::string, std::string> labels;
  int64_t input_tokens = 0;
  int64_t max_output_tokens = 0;
  int64_t attempt = 1;
  // Expectations; unset ones are not checked.
  std::optional<bool> expect_allow;
  std::optional<std::string> expect_model;
  std::optional<int64_t> expect_max_output_tokens;
  std::optional<std::set<std::string>> expect_fired;
  std::optional<absl::Duration> expect_retry_after;
};

// Reads test documents, reporting mistakes as diagnostics.
class TestFileReader {
 public:
  TestFileReader(const SourceFile& file, std::vector<Diagnostic>* diagnostics)
      : file_(file), diagnostics_(diagnostics) {}

  std::vector<TestCase> Read() {
    std::vector<TestCase> cases;
    std::vector<YAML::Node> documents;
    try {
      documents = LoadYamlWithinLimits(file_.content);
    } catch (const YAML::Exception& e) {
      Error(e.mark, "", absl::StrCat("not valid YAML: ", e.msg));
      return cases;
    }
    for (const YAML::Node& doc : documents) {
      if (doc.IsNull()) continue;
      if (!doc.IsMap()) {
        Error(doc.Mark(), "", "expected a PolicyTest document (a mapping)");
        continue;
      }
      Fields(doc, "", {"apiVersion", "kind", "metadata", "cases"});
      if (Text(doc["apiVersion"], "apiVersion") != "bursar.dev/v1") {
        Error(doc.Mark(), "apiVersion", "expected bursar.dev/v1");
      }
      if (Text(doc["kind"], "kind") != "PolicyTest") {
        Error(doc.Mark(), "kind", "expected PolicyTest in a *_test.yaml file");
        continue;
      }
      const YAML::Node list = doc["cases"];
      if (!list.IsSequence() || list.size() == 0) {
        Error(doc.Mark(), "cases", "expected a non-empty list of cases");
        continue;
      }
      for (size_t i = 0; i < list.size(); ++i) {
        std::optional<TestCase> c =
            ReadCase(list[i], absl::StrCat("cases[", i, "]"));
        if (c.has_value()) cases.push_back(*std::move(c));
      }
    }
    return cases;
  }

 private:
  std::optional<TestCase> ReadCase(const YAML::Node& node,
                                   const std::string& field) {
    if (!node.IsMap()) {
      Error(node.Mark(), field, "expected a case { name, request, expect }");
      return std::nullopt;
    }
    const size_t errors_before = diagnostics_->size();
    Fields(node, field,
           {"name", "now", "budgets", "rate_usage", "in_flight", "kpis",
            "signals", "request", "expect"});
    TestCase c;
    c.line = node.Mark().line + 1;
    c.name = Text(node["name"], field + ".name");
    if (node["now"]) {
      std::string error;
      const std::string text = Text(node["now"], field + ".now");
      if (!absl::ParseTime(absl::RFC3339_full, text, &c.now, &error)) {
        Error(node["now"].Mark(), field + ".now",
              absl::StrCat("expected an RFC 3339 time such as "
                           "\"2026-03-10T15:30:00-05:00\", got \"",
                           text, "\""));
      }
    }
    if (const YAML::Node budgets = node["budgets"]; budgets) {
      if (!budgets.IsSequence()) {
        Error(budgets.Mark(), field + ".budgets", "expected a list");
      } else {
        for (size_t i = 0; i < budgets.size(); ++i) {
          c.budgets.push_back(
              ReadBudget(budgets[i], absl::StrCat(field, ".budgets[", i, "]")));
        }
      }
    }
    if (const YAML::Node usage = node["rate_usage"]; usage) {
      if (!usage.IsSequence()) {
        Error(usage.Mark(), field + ".rate_usage", "expected a list");
      } else {
        for (size_t i = 0; i < usage.size(); ++i) {
          c.rate_usage.push_back(ReadRateUsage(
              usage[i], absl::StrCat(field, ".rate_usage[", i, "]")));
        }
      }
    }
    if (const YAML::Node in_flight = node["in_flight"]; in_flight) {
      if (!in_flight.IsSequence()) {
        Error(in_flight.Mark(), field + ".in_flight", "expected a list");
      } else {
        for (size_t i = 0; i < in_flight.size(); ++i) {
          c.in_flight.push_back(ReadInFlight(
              in_flight[i], absl::StrCat(field, ".in_flight[", i, "]")));
        }
      }
    }
    if (const YAML::Node kpis = node["kpis"]; kpis) {
      if (!kpis.IsSequence()) {
        Error(kpis.Mark(), field + ".kpis",
              "expected a list of { budget, window, spend, requests, ... }");
      } else {
        for (size_t i = 0; i < kpis.size(); ++i) {
          c.kpis.push_back(
              ReadKpi(kpis[i], absl::StrCat(field, ".kpis[", i, "]")));
        }
      }
    }
    if (const YAML::Node signals = node["signals"]; signals) {
      if (!signals.IsMap()) {
        Error(signals.Mark(), field + ".signals",
              "expected a mapping of signal name to value, e.g. "
              "{ golden-accuracy: 0.93 }");
      } else {
        for (auto it = signals.begin(); it != signals.end(); ++it) {
          const std::string name = it->first.Scalar();
          double value = 0;
          if (!it->second.IsScalar() ||
              !absl::SimpleAtod(it->second.Scalar(), &value)) {
            Error(it->second.Mark(), absl::StrCat(field, ".signals.", name),
                  "expected a number such as 0.93");
          }
          c.signals[name] = value;
        }
      }
    }
    const YAML::Node request = node["request"];
    if (!request || !request.IsMap()) {
      Error(node.Mark(), field + ".request",
            "expected { model, labels, input_tokens, max_output_tokens }");
    } else {
      const std::string r = field + ".request";
      Fields(request, r,
             {"model", "provider", "priority", "labels", "input_tokens",
              "max_output_tokens", "attempt"});
      if (request["attempt"]) {
        c.attempt = Count(request["attempt"], r + ".attempt");
      }
      c.model = Text(request["model"], r + ".model");
      if (request["provider"]) {
        c.provider = Text(request["provider"], r + ".provider");
      }
      if (request["priority"]) {
        c.priority = Text(request["priority"], r + ".priority");
      }
      if (request["labels"])
        c.labels = Labels(request["labels"], r + ".labels");
      if (request["input_tokens"]) {
        c.input_tokens = Count(request["input_tokens"], r + ".input_tokens");
      }
      if (request["max_output_tokens"]) {
        c.max_output_tokens =
            Count(request["max_output_tokens"], r + ".max_output_tokens");
      }
    }
    const YAML::Node expect = node["expect"];
    if (!expect || !expect.IsMap() || expect.size() == 0) {
      Error(node.Mark(), field + ".expect",
            "expected { verdict, model, max_output_tokens, fired }");
    } else {
      const std::string e = field + ".expect";
      Fields(expect, e,
             {"verdict", "model", "max_output_tokens", "fired", "retry_after"});
      if (expect["retry_after"]) {
        const std::string text = Text(expect["retry_after"], e + ".retry_after");
        absl::Duration d;
        if (!absl::ParseDuration(text, &d)) {
          Error(expect["retry_after"].Mark(), e + ".retry_after",
                absl::StrCat("expected a duration such as \"63s\", got \"",
                             text, "\""));
        }
        c.expect_retry_after = d;
      }
      if (expect["verdict"]) {
        const std::string verdict = Text(expect["verdict"], e + ".verdict");
        if (verdict != "allow" && verdict != "deny") {
          Error(expect["verdict"].Mark(), e + ".verdict",
                absl::StrCat("expected allow or deny, got \"", verdict, "\""));
        }
        c.expect_allow = verdict == "allow";
      }
      if (expect["model"]) c.expect_model = Text(expect["model"], e + ".model");
      if (expect["max_output_tokens"]) {
        c.expect_max_output_tokens =
            Count(expect["max_output_tokens"], e + ".max_output_tokens");
      }
      if (const YAML::Node fired = expect["fired"]; fired) {
        if (!fired.IsSequence()) {
          Error(fired.Mark(), e + ".fired",
                "expected a list of rules, e.g. [route:triage, slo:daily]");
        } else {
          std::set<std::string> rules;
          for (const YAML::Node& rule : fired) {
            rules.insert(Text(rule, e + ".fired"));
          }
          c.expect_fired = std::move(rules);
        }
      }
    }
    if (diagnostics_->size() != errors_before) return std::nullopt;
    return c;
  }

  TestKpi ReadKpi(const YAML::Node& node, const std::string& field) {
    TestKpi k;
    if (!node.IsMap()) {
      Error(node.Mark(), field,
            "expected { budget, window, spend, requests, successes, failures, "
            "retries, ... }");
      return k;
    }
    Fields(node, field,
           {"budget", "window", "spend", "requests", "successes", "failures",
            "retries", "cancelled", "input_tokens", "cached_input_tokens",
            "output_tokens", "p95_latency", "quality_score", "policy_changed"});
    k.budget = Text(node["budget"], field + ".budget");
    const std::string window = Text(node["window"], field + ".window");
    if (window == "1h") {
      k.window = KpiWindow::kLastHour;
    } else if (window == "prev_1h") {
      k.window = KpiWindow::kPreviousHour;
    } else if (window == "24h") {
      k.window = KpiWindow::kLast24Hours;
    } else if (window == "prev_24h") {
      k.window = KpiWindow::kPrevious24Hours;
    } else if (window == "1h_last_week") {
      k.window = KpiWindow::kSameHourLastWeek;
    } else if (node["window"]) {
      Error(node["window"].Mark(), field + ".window",
            absl::StrCat("expected 1h, prev_1h, 24h, prev_24h or "
                         "1h_last_week, got \"",
                         window, "\""));
    }
    KpiFigures& f = k.figures;
    if (node["spend"]) f.spend_nanos = Usd(node["spend"], field + ".spend");
    const std::pair<const char*, int64_t*> counts[] = {
        {"requests", &f.requests},
        {"successes", &f.successes},
        {"failures", &f.failures},
        {"retries", &f.retries},
        {"cancelled", &f.cancelled},
        {"input_tokens", &f.input_tokens},
        {"cached_input_tokens", &f.cached_input_tokens},
        {"output_tokens", &f.output_tokens},
    };
    for (const auto& [name, out] : counts) {
      if (node[name]) *out = Count(node[name], absl::StrCat(field, ".", name));
    }
    if (node["p95_latency"]) {
      const std::string text =
          Text(node["p95_latency"], field + ".p95_latency");
      if (!absl::ParseDuration(text, &f.p95_latency)) {
        Error(node["p95_latency"].Mark(), field + ".p95_latency",
              absl::StrCat("expected a duration such as \"800ms\", got \"",
                           text, "\""));
      }
    }
    if (node["quality_score"]) {
      // The mean score, stated as if one report carried it.
      double score = 0;
      if (!node["quality_score"].IsScalar() ||
          !absl::SimpleAtod(node["quality_score"].Scalar(), &score) ||
          !(score >= 0 && score <= 1)) {
        Error(node["quality_score"].Mark(), field + ".quality_score",
              "expected a mean score from 0 to 1, e.g. 0.82");
      }
      f.quality_reports = 1;
      f.quality_micros_sum = static_cast<int64_t>(score * 1e6 + 0.5);
    }
    if (node["policy_changed"]) {
      f.policy_changed =
          Text(node["policy_changed"], field + ".policy_changed") == "true";
    }
    return k;
  }

  TestRateUsage ReadRateUsage(const YAML::Node& node,
                              const std::string& field) {
    TestRateUsage u;
    if (!node.IsMap()) {
      Error(node.Mark(), field,
            "expected { rule, key, window, tokens, requests }");
      return u;
    }
    Fields(node, field, {"rule", "key", "window", "tokens", "requests"});
    u.rule = Text(node["rule"], field + ".rule");
    if (node["key"]) u.key = Text(node["key"], field + ".key");
    const std::string window = Text(node["window"], field + ".window");
    if (window == "second") {
      u.window = absl::Seconds(1);
    } else if (window == "minute") {
      u.window = absl::Minutes(1);
    } else if (window == "hour") {
      u.window = absl::Hours(1);
    } else if (window == "day") {
      u.window = absl::Hours(24);
    } else if (node["window"]) {
      Error(node["window"].Mark(), field + ".window",
            absl::StrCat("expected second, minute, hour or day, got \"",
                         window, "\""));
    }
    if (node["tokens"]) u.tokens = Count(node["tokens"], field + ".tokens");
    if (node["requests"]) {
      u.requests = Count(node["requests"], field + ".requests");
    }
    return u;
  }

  TestInFlight ReadInFlight(const YAML::Node& node, const std::string& field) {
    TestInFlight f;
    if (!node.IsMap() || !node["pool"]) {
      Error(node.Mark(), field,
            "expected { pool: <name>, <priority>: <calls>, ... }, e.g. "
            "{ pool: gpt41-slots, standard: 7, critical: 2 }");
      return f;
    }
    f.pool = Text(node["pool"], field + ".pool");
    for (const auto& entry : node) {
      const std::string key = entry.first.as<std::string>();
      if (key == "pool") continue;
      f.by_priority[key] = Count(entry.second, absl::StrCat(field, ".", key));
    }
    return f;
  }

  TestBudget ReadBudget(const YAML::Node& node, const std::string& field) {
    TestBudget b;
    if (!node.IsMap()) {
      Error(node.Mark(), field, "expected { name, amount, spent, ... }");
      return b;
    }
    Fields(node, field,
           {"name", "amount", "spent", "held", "selector", "period"});
    b.name = Text(node["name"], field + ".name");
    b.amount_nanos = Usd(node["amount"], field + ".amount");
    if (node["spent"]) b.spent_nanos = Usd(node["spent"], field + ".spent");
    if (node["held"]) b.held_nanos = Usd(node["held"], field + ".held");
    if (node["selector"]) {
      auto labels = Labels(node["selector"], field + ".selector");
      b.selector.assign(labels.begin(), labels.end());
    }
    if (node["period"]) {
      b.period = Text(node["period"], field + ".period");
      static const absl::flat_hash_set<std::string> kPeriods = {
          "hour", "day", "week", "month", "none"};
      if (!kPeriods.contains(b.period)) {
        Error(node["period"].Mark(), field + ".period",
              "expected hour, day, week, month or none");
      }
    }
    return b;
  }

  // Reports keys of `node` outside `known`.
  void Fields(const YAML::Node& node, const std::string& field,
              std::initializer_list<absl::string_view> known) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string key = it->first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        Error(it->first.Mark(), field.empty() ? key : field + "." + key,
              absl::StrCat("unknown field \"", key, "\"; expected one of: ",
                           absl::StrJoin(known, ", ")));
      }
    }
  }

  std::string Text(const YAML::Node& node, const std::string& field) {
    if (!node || !node.IsScalar()) {
      Error(node ? node.Mark() : YAML::Mark::null_mark(), field,
            "expected a string");
      return "";
    }
    return node.Scalar();
  }

  int64_t Count(const YAML::Node& node, const std::string& field) {
    int64_t value = 0;
    if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &value) ||
        value < 0) {
      Error(node.Mark(), field, "expected a whole number >= 0");
    }
    return value;
  }

  int64_t Usd(const YAML::Node& node, const std::string& field) {
    if (!node || !node.IsScalar()) {
      Error(node ? node.Mark() : YAML::Mark::null_mark(), field,
            "expected USD as a decimal string such as \"1000.00\"");
      return 0;
    }
    absl::StatusOr<int64_t> nanos = ParseUsdNanos(node.Scalar());
    if (!nanos.ok()) {
      Error(node.Mark(), field, std::string(nanos.status().message()));
      return 0;
    }
    return *nanos;
  }

  std::map<std::string, std::string> Labels(const YAML::Node& node,
                                            const std::string& field) {
    std::map<std::string, std::string> labels;
    if (!node.IsMap()) {
      Error(node.Mark(), field, "expected a mapping such as { team: search }");
      return labels;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      labels[it->first.Scalar()] =
          Text(it->second, field + "." + it->first.Scalar());
    }
    return labels;
  }

  void Error(const YAML::Mark& mark, const std::string& field,
             std::string message) {
    Diagnostic d;
    d.path = file_.path;
    if (!mark.is_null()) {
      d.line = mark.line + 1;
      d.column = mark.column + 1;
    }
    d.field = field;
    d.message = std::move(message);
    diagnostics_->push_back(std::move(d));
  }

  const SourceFile& file_;
  std::vector<Diagnostic>* diagnostics_;
};

bool Matches(const TestBudget& budget,
             const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : budget.selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

// The budgets of a case, for the labels budgets select on.
class TestUsage final : public UsageView {
 public:
  TestUsage(const TestCase* test,
            const std::map<std::string, std::string>* labels, absl::TimeZone tz)
      : test_(test), labels_(labels), tz_(tz) {}

  std::optional<BudgetUsage> Budget(absl::string_view name) const override {
    for (const TestBudget& b : test_->budgets) {
      if (b.name != name || !Matches(b, *labels_)) continue;
      BudgetUsage usage;
      usage.amount_nanos = b.amount_nanos;
      usage.spent_nanos = b.spent_nanos;
      usage.held_nanos = b.held_nanos;
      const absl::CivilSecond local = absl::ToCivilSecond(test_->now, tz_);
      if (b.period == "hour") {
        usage.period_start = absl::FromCivil(absl::CivilHour(local), tz_);
        usage.period_end = usage.period_start + absl::Hours(1);
      } else if (b.period == "day") {
        usage.period_start = absl::FromCivil(absl::CivilDay(local), tz_);
        usage.period_end = absl::FromCivil(absl::CivilDay(local) + 1, tz_);
      } else if (b.period == "week") {
        const absl::CivilDay monday =
            absl::PrevWeekday(absl::CivilDay(local) + 1, absl::Weekday::monday);
        usage.period_start = absl::FromCivil(monday, tz_);
        usage.period_end = absl::FromCivil(monday + 7, tz_);
      } else if (b.period == "month") {
        const absl::CivilMonth month(local);
        usage.period_start = absl::FromCivil(month, tz_);
        usage.period_end = absl::FromCivil(month + 1, tz_);
      }
      return usage;
    }
    return std::nullopt;
  }

 private:
  const TestCase* test_;
  const std::map<std::string, std::string>* labels_;
  absl::TimeZone tz_;  // the policy's: periods start at local midnight
};

// The KPI figures and signals a case states. A budget the case gives any
// figures for reads as zero in the windows it does not give.
class TestKpis final : public KpiReader, public SignalView {
 public:
  explicit TestKpis(const TestCase* test) : test_(test) {}

  bool Figures(absl::string_view budget, KpiWindow window, absl::Time,
               KpiFigures* out) const override {
    bool known = false;
    *out = KpiFigures();
    for (const TestKpi& k : test_->kpis) {
      if (k.budget != budget) continue;
      known = true;
      if (k.window == window) *out = k.figures;
    }
    return known;
  }

  std::optional<double> Signal(absl::string_view name) const override {
    auto it = test_->signals.find(std::string(name));
    if (it == test_->signals.end()) return std::nullopt;
    return it->second;
  }

 private:
  const TestCase* test_;
};

struct Outcome {
  bool allowed = false;
  std::string model;
  int64_t max_output_tokens = 0;
  std::set<std::string> fired;
  absl::Duration retry_after;
  std::string error;  // the call was rejected as invalid
};

std::map<std::string, std::string> BudgetLabels(const TestCase& c,
                                                absl::string_view model,
                                                absl::string_view provider) {
  std::map<std::string, std::string> labels = c.labels;
  labels["model"] = std::string(model);
  if (!c.provider.empty()) {
    labels["provider"] = c.provider;
  } else if (labels.count("provider") == 0) {
    labels["provider"] = std::string(provider);
  }
  return labels;
}

Outcome Decide(const CompiledPolicy& policy, const TestCase& c) {
  Outcome outcome;
  std::vector<std::pair<absl::string_view, absl::string_view>> label_span(
      c.labels.begin(), c.labels.end());
  const std::map<std::string, std::string> usage_labels =
      BudgetLabels(c, c.model, "");
  const TestUsage usage(&c, &usage_labels, policy.rules().timezone);
  CallRequest call;
  call.model = c.model;
  call.provider = c.provider;
  call.priority = c.priority;
  call.labels = label_span;
  call.input_tokens = c.input_tokens;
  call.max_output_tokens = c.max_output_tokens;
  call.attempt = c.attempt;
  const TestKpis kpis(&c);
  absl::StatusOr<CallPlan> plan =
      PlanCall(policy, call, {&usage, c.now, &kpis, &kpis});
  if (!plan.ok()) {
    outcome.error = std::string(plan.status().message());
    return outcome;
  }

  // The counters and pools as the case states them.
  limits::RateLimiter rates;
  for (const TestRateUsage& u : c.rate_usage) {
    rates.Restore({u.rule, u.key, absl::ToInt64Seconds(u.window),
                   limits::SubBucketIndex(u.window, c.now), u.tokens},
                  u.requests);
  }
  limits::ConcurrencyPools pools;
  for (const TestInFlight& f : c.in_flight) {
    limits::PoolAsk ask{f.pool, std::numeric_limits<int64_t>::max(), nullptr};
    for (const ConcurrencyPool& pool : policy.rules().concurrency) {
      if (pool.name == f.pool) ask = {pool.name, pool.max_in_flight, &pool.reserve};
    }
    for (const auto& [priority, calls] : f.by_priority) {
      for (int64_t i = 0; i < calls; ++i) pools.Restore(ask, priority);
    }
  }

  std::set<std::string> exceeded;
  LimitAsks asks;
  std::vector<limits::RateCharge> charges;
  while (plan->allowed) {
    MatchLimits(policy, call, *plan, c.now, &asks);
    if (std::optional<limits::RateDenial> denial = rates.Acquire(
            asks.rates, asks.tokens, c.now, /*dry_run=*/true, &charges)) {
      plan->allowed = false;
      exceeded.insert(RateLimitRuleName(*denial));
      outcome.retry_after = denial->retry_after;
      break;
    }
    if (std::optional<limits::PoolDenial> denial =
            pools.Acquire(asks.pools, c.priority, /*dry_run=*/true)) {
      plan->allowed = false;
      exceeded.insert(PoolRuleName(*denial));
      break;
    }
    const std::map<std::string, std::string> labels =
        BudgetLabels(c, plan->model, plan->price->provider);
    int64_t tightest = std::numeric_limits<int64_t>::max();
    exceeded.clear();
    for (const TestBudget& b : c.budgets) {
      if (!Matches(b, labels)) continue;
      const __int128 left =
          static_cast<__int128>(b.amount_nanos) - b.spent_nanos - b.held_nanos;
      tightest = std::min<int64_t>(
          tightest, static_cast<int64_t>(std::max<__int128>(left, 0)));
      if (plan->estimated_cost_nanos > left) {
        exceeded.insert(absl::StrCat("budget:", b.name));
      }
    }
    if (exceeded.empty()) break;
    if (!NextExhaustedStep(policy, call, tightest, &*plan)) break;
  }
  outcome.allowed = plan->allowed;
  outcome.model = plan->model;
  outcome.max_output_tokens = plan->max_output_tokens;
  for (const FiredRule& fired : plan->fired) outcome.fired.insert(fired.rule);
  if (!plan->allowed) {
    if (!plan->deny_rule.empty()) outcome.fired.insert(plan->deny_rule);
    outcome.fired.insert(exceeded.begin(), exceeded.end());
  }
  return outcome;
}

std::string SetText(const std::set<std::string>& rules) {
  return absl::StrCat("[", absl::StrJoin(rules, ", "), "]");
}

}  // namespace

PolicyTestReport RunPolicyTests(const CompiledPolicy& policy,
                                const std::vector<SourceFile>& files) {
  PolicyTestReport report;
  for (const SourceFile& file : files) {
    if (!absl::EndsWith(file.path, kTestFileSuffix)) continue;
    TestFileReader reader(file, &report.diagnostics);
    for (const TestCase& c : reader.Read()) {
      ++report.cases;
      const Outcome got = Decide(policy, c);
      std::vector<std::string> problems;
      if (!got.error.empty()) {
        problems.push_back(absl::StrCat("the request is invalid: ", got.error));
      } else {
        if (c.expect_allow.has_value() && *c.expect_allow != got.allowed) {
          problems.push_back(absl::StrCat(
              "expected verdict ", *c.expect_allow ? "allow" : "deny", ", got ",
              got.allowed ? "allow" : "deny"));
        }
        if (c.expect_model.has_value() && *c.expect_model != got.model) {
          problems.push_back(absl::StrCat("expected model ", *c.expect_model,
                                          ", got ", got.model));
        }
        if (c.expect_max_output_tokens.has_value() &&
            *c.expect_max_output_tokens != got.max_output_tokens) {
          problems.push_back(absl::StrCat("expected max_output_tokens ",
                                          *c.expect_max_output_tokens, ", got ",
                                          got.max_output_tokens));
        }
        if (c.expect_retry_after.has_value() &&
            *c.expect_retry_after != got.retry_after) {
          problems.push_back(absl::StrCat(
              "expected retry_after ",
              absl::FormatDuration(*c.expect_retry_after), ", got ",
              absl::FormatDuration(got.retry_after)));
        }
        if (c.expect_fired.has_value() && *c.expect_fired != got.fired) {
          problems.push_back(absl::StrCat("expected fired rules ",
                                          SetText(*c.expect_fired), ", got ",
                                          SetText(got.fired)));
        }
      }
      if (problems.empty()) {
        ++report.passed;
      } else {
        report.failures.push_back(
            {file.path, c.line, c.name, absl::StrJoin(problems, "; ")});
      }
    }
  }
  return report;
}

std::string FormatFailure(const PolicyTestFailure& failure) {
  return absl::StrCat(failure.path, ":", failure.line, ": ", failure.case_name,
                      ": ", failure.message);
}

}  // namespace bursar::policy
