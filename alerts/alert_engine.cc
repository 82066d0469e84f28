#include "alerts/alert_engine.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "policy/money.h"
#include "policy/usage_view.h"
#include "policy/variables.h"
#include "storage/period.h"

namespace bursar::alerts {
namespace {

using policy::AlertingSettings;
using policy::BudgetUsage;
using policy::BuiltinAlert;
using policy::KpiFigures;
using policy::KpiWindow;
using storage::AlertEntry;

std::string Percent(double ratio) {
  return absl::StrFormat("%.4g%%", ratio * 100);
}

std::string Usd(int64_t nanos) {
  return absl::StrCat("$", policy::FormatUsdNanos(nanos));
}

// The key of a period for the store: its start in Unix seconds; 0 for none.
int64_t PeriodKey(absl::Time start) {
  return start == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(start);
}

// budgets["x"] as seen from one scope: a budget without per_label reads as
// its one instance; one with the same per_label key as the scope's budget
// reads as the scope's instance; any other reads as absent.
class ScopeUsageView final : public policy::UsageView {
 public:
  ScopeUsageView(const storage::Ledger* ledger,
                 const storage::BudgetSpec* scope_budget,
                 absl::string_view instance, absl::Time now)
      : ledger_(ledger),
        scope_budget_(scope_budget),
        instance_(instance),
        now_(now) {}

  std::optional<BudgetUsage> Budget(absl::string_view name) const override {
    const std::optional<storage::BudgetSpec> spec = ledger_->GetBudget(name);
    if (!spec.has_value()) return std::nullopt;
    absl::string_view instance;
    if (!spec->per_label.empty()) {
      if (spec->per_label != scope_budget_->per_label) return std::nullopt;
      instance = instance_;
    }
    absl::StatusOr<std::vector<storage::Standing>> standings =
        ledger_->LiveStandings(name, instance, now_);
    if (!standings.ok() || standings->empty()) return std::nullopt;
    const storage::Standing& s = standings->front();
    return BudgetUsage{s.amount_nanos, s.spent_nanos, s.held_nanos,
                       s.period_start, s.period_end};
  }

 private:
  const storage::Ledger* ledger_;
  const storage::BudgetSpec* scope_budget_;
  absl::string_view instance_;
  absl::Time now_;
};

double Ratio(int64_t a, int64_t b) {
  return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
}

int64_t Tokens(const KpiFigures& f) {
  return f.input_tokens + f.cached_input_tokens + f.output_tokens;
}

}  // namespace

std::string BudgetScope(absl::string_view budget, absl::string_view instance) {
  if (instance.empty()) return absl::StrCat("budget:", budget);
  return absl::StrCat("budget:", budget, "/", instance);
}

std::string ThresholdRule(double threshold) {
  return absl::StrCat("budget-threshold-",
                      absl::StrFormat("%.4g", threshold * 100));
}

// The state of one pass: the policy and time it runs at, what fired.
class AlertEngine::Pass {
 public:
  Pass(AlertEngine* engine, std::shared_ptr<const policy::CompiledPolicy> p,
       absl::Time now)
      : engine_(engine),
        policy_(std::move(p)),
        settings_(policy_->rules().alerting),
        now_(now),
        local_now_(absl::ToCivilSecond(now, policy_->rules().timezone)) {}

  absl::Status Run() {
    // One budget's spec at a time: with 100k budgets a copy of every spec
    // would be tens of MiB, on every pass.
    for (const std::string& name : engine_->ledger_->ListBudgetNames()) {
      const std::optional<storage::BudgetSpec> spec =
          engine_->ledger_->GetBudget(name);
      // The budget may have been deleted since it was listed.
      if (!spec.has_value()) continue;
      absl::StatusOr<std::vector<storage::Standing>> standings =
          engine_->ledger_->LiveStandings(name, "", now_);
      if (!standings.ok()) {
        if (absl::IsNotFound(standings.status())) continue;
        return standings.status();
      }
      for (const storage::Standing& standing : *standings) {
        if (absl::Status s = Scope(*spec, standing); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

  std::vector<AlertEntry> TakeFired() { return std::move(fired_); }

 private:
  absl::Status Scope(const storage::BudgetSpec& spec,
                     const storage::Standing& standing) {
    scope_ = BudgetScope(spec.name, standing.instance);
    spec_ = &spec;
    standing_ = &standing;
    usage_ = BudgetUsage{standing.amount_nanos, standing.spent_nanos,
                         standing.held_nanos, standing.period_start,
                         standing.period_end};
    for (auto step : {&Pass::Thresholds, &Pass::PolicyRules, &Pass::SpendSlos,
                      &Pass::ProjectedExhaustion, &Pass::KpiBuiltins}) {
      if (absl::Status s = (this->*step)(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Fires `rule` for the current scope in the period starting at
  // `period_start`; *fired (if given) says whether it fired before or now.
  absl::Status Fire(absl::string_view rule, absl::string_view severity,
                    absl::Time period_start, std::string message,
                    bool* fired = nullptr) {
    AlertEntry alert;
    alert.rule = std::string(rule);
    alert.scope = scope_;
    alert.period_key = PeriodKey(period_start);
    alert.period_start = period_start;
    alert.fired_at = now_;
    alert.severity = std::string(severity);
    alert.message = std::move(message);
    alert.budget = spec_->name;
    alert.instance = standing_->instance;
    alert.policy_version = policy_->version();
    std::vector<std::string> outbox;
    if (engine_->options_.outbox) outbox = engine_->options_.outbox(alert);
    absl::StatusOr<bool> first = engine_->store_->Fire(&alert, outbox);
    if (!first.ok()) return first.status();
    if (fired != nullptr) *fired = true;
    if (*first) fired_.push_back(std::move(alert));
    return absl::OkStatus();
  }

  absl::Time BudgetPeriodStart() const { return standing_->period_start; }
  // "this day", "this month", ...; "in total" without periods.
  std::string ThisPeriod() const {
    if (standing_->period == storage::Period::kNone) return "in total";
    return absl::StrCat("this ", storage::PeriodName(standing_->period));
  }

  absl::Status Thresholds() {
    if (!settings_.budget_thresholds.enabled || usage_.amount_nanos <= 0) {
      return absl::OkStatus();
    }
    for (double threshold : spec_->alert_thresholds) {
      const double used = Ratio(usage_.spent_nanos, usage_.amount_nanos);
      if (used < threshold) continue;
      const bool over = threshold >= 1.0;
      if (absl::Status s =
              Fire(ThresholdRule(threshold),
                   over ? "critical" : settings_.budget_thresholds.severity,
                   BudgetPeriodStart(),
                   absl::StrCat(scope_, " has spent ", Usd(usage_.spent_nanos),
                                " of ", Usd(usage_.amount_nanos), " (",
                                Percent(used), ") ", ThisPeriod(),
                                "; threshold ", Percent(threshold)));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  bool Holds(const policy::Condition& when) const {
    if (when.program == nullptr) return true;
    const policy::RequestFacts request;
    const ScopeUsageView usage(engine_->ledger_, spec_, standing_->instance,
                               now_);
    const policy::PolicyActivation activation(&request, &usage, now_,
                                              local_now_, &usage_);
    return when.program->EvalBool(activation);
  }

  absl::Status PolicyRules() {
    for (const policy::AlertRule& rule : policy_->rules().alerts) {
      if (!rule.budget.empty() && rule.budget != spec_->name) continue;
      if (!Holds(rule.when)) continue;
      if (absl::Status s =
              Fire(rule.name, rule.severity, BudgetPeriodStart(),
                   absl::StrCat(scope_, ": ", rule.when.source,
                                " holds (spent ", Usd(usage_.spent_nanos),
                                " of ", Usd(usage_.amount_nanos), ")"));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status SpendSlos() {
    if (!settings_.spend_slo_breach.enabled) return absl::OkStatus();
    for (const policy::SpendSlo& slo : policy_->rules().spend_slos) {
      if (slo.budget != spec_->name || !Holds(slo.when)) continue;
      const std::string rule = absl::StrCat("slo-breach:", slo.name);
      bool breached = false;
      if (absl::Status s = Fire(
              rule, settings_.spend_slo_breach.severity, BudgetPeriodStart(),
              absl::StrCat("spend SLO ", slo.name, " on ", scope_,
                           " is breached: ", slo.when.source),
              &breached);
          !s.ok()) {
        return s;
      }
      if (slo.escalate_after <= 0 ||
          standing_->period == storage::Period::kNone) {
        continue;
      }
      // Consecutive periods of breach, this one included.
      int periods = 1;
      absl::Time start = standing_->period_start;
      const absl::TimeZone tz = LoadZone(spec_->timezone);
      while (periods < slo.escalate_after) {
        const storage::PeriodBounds previous = storage::PeriodAt(
            standing_->period, start - absl::Nanoseconds(1), tz);
        absl::StatusOr<bool> had =
            engine_->store_->HasFired(rule, scope_, PeriodKey(previous.start));
        if (!had.ok()) return had.status();
        if (!*had) break;
        ++periods;
        start = previous.start;
      }
      if (periods < slo.escalate_after) continue;
      if (absl::Status s = Fire(
              absl::StrCat("slo-escalation:", slo.name),
              settings_.slo_escalation_severity, BudgetPeriodStart(),
              absl::StrCat(
                  "spend SLO ", slo.name, " on ", scope_, " has been breached ",
                  periods, " ", storage::PeriodName(standing_->period),
                  "s in a row (escalate_after: ", slo.escalate_after, ")"));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status ProjectedExhaustion() {
    const BuiltinAlert& alert = settings_.projected_exhaustion;
    if (!alert.enabled || standing_->period == storage::Period::kNone ||
        usage_.amount_nanos <= 0 || usage_.spent_nanos <= 0 ||
        usage_.spent_nanos >= usage_.amount_nanos) {
      return absl::OkStatus();
    }
    const absl::Duration length = usage_.period_end - usage_.period_start;
    const absl::Duration elapsed = now_ - usage_.period_start;
    if (length <= absl::ZeroDuration() || elapsed <= absl::ZeroDuration()) {
      return absl::OkStatus();
    }
    if (absl::FDivDuration(elapsed, length) < alert.ratio) {
      return absl::OkStatus();
    }
    const double projected = static_cast<double>(usage_.spent_nanos) *
                             absl::FDivDuration(length, elapsed);
    if (projected <= static_cast<double>(usage_.amount_nanos)) {
      return absl::OkStatus();
    }
    const absl::Time exhausted_at =
        usage_.period_start +
        elapsed * Ratio(usage_.amount_nanos, usage_.spent_nanos);
    return Fire(
        "projected-exhaustion", alert.severity, BudgetPeriodStart(),
        absl::StrCat(scope_, " at this pace spends ",
                     Usd(static_cast<int64_t>(std::min<double>(
                         projected, static_cast<double>(INT64_MAX)))),
                     " of ", Usd(usage_.amount_nanos), " ", ThisPeriod(),
                     " and runs out about ",
                     absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", exhausted_at,
                                      absl::UTCTimeZone()),
                     ", before the period ends at ",
                     absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", usage_.period_end,
                                      absl::UTCTimeZone())));
  }

  bool Figures(KpiWindow window, KpiFigures* out) const {
    return engine_->kpis_->Figures(spec_->name, standing_->instance, window,
                                   now_, out);
  }

  absl::Status KpiBuiltins() {
    if (engine_->kpis_ == nullptr) return absl::OkStatus();
    const absl::TimeZone& tz = policy_->rules().timezone;
    const absl::Time hour =
        storage::PeriodAt(storage::Period::kHour, now_, tz).start;
    const absl::Time day =
        storage::PeriodAt(storage::Period::kDay, now_, tz).start;
    KpiFigures last_hour, previous_hour, last_day, previous_day;
    const bool hours = Figures(KpiWindow::kLastHour, &last_hour) &&
                       Figures(KpiWindow::kPreviousHour, &previous_hour);
    const bool days = Figures(KpiWindow::kLast24Hours, &last_day) &&
                      Figures(KpiWindow::kPrevious24Hours, &previous_day);

    bool spike_seen = false;
    if (const BuiltinAlert& a = settings_.spend_hour_over_hour;
        hours && a.enabled && previous_hour.spend_nanos > 0 &&
        last_hour.spend_nanos >= a.min_spend_nanos &&
        Ratio(last_hour.spend_nanos, previous_hour.spend_nanos) >=
            1 + a.ratio) {
      // One spike, one alert: the alert of the hour before saw the window
      // that ended when it fired; while the window now overlaps that one,
      // the spike is the same.
      const absl::Time previous_hour_start =
          storage::PeriodAt(storage::Period::kHour, hour - absl::Nanoseconds(1),
                            tz)
              .start;
      absl::StatusOr<std::optional<AlertEntry>> before =
          engine_->store_->GetFired("spend-hour-over-hour", scope_,
                                    PeriodKey(previous_hour_start));
      if (!before.ok()) return before.status();
      spike_seen =
          before->has_value() && now_ - absl::Hours(1) < (*before)->fired_at;
    }
    if (const BuiltinAlert& a = settings_.spend_hour_over_hour;
        hours && a.enabled && !spike_seen && previous_hour.spend_nanos > 0 &&
        last_hour.spend_nanos >= a.min_spend_nanos &&
        Ratio(last_hour.spend_nanos, previous_hour.spend_nanos) >=
            1 + a.ratio) {
      if (absl::Status s =
              Fire("spend-hour-over-hour", a.severity, hour,
                   absl::StrCat(scope_, " spent ", Usd(last_hour.spend_nanos),
                                " in the last hour, ",
                                Percent(Ratio(last_hour.spend_nanos,
                                              previous_hour.spend_nanos) -
                                        1),
                                " more than the hour before (",
                                Usd(previous_hour.spend_nanos), "; alert at +",
                                Percent(a.ratio), ")"));
          !s.ok()) {
        return s;
      }
    }
    if (const BuiltinAlert& a = settings_.retry_rate;
        hours && a.enabled && last_hour.requests > 0 &&
        last_hour.requests >= a.min_requests &&
        Ratio(last_hour.retries, last_hour.requests) > a.ratio) {
      if (absl::Status s = Fire(
              "retry-rate", a.severity, hour,
              absl::StrCat(
                  scope_, ": ", last_hour.retries, " of ", last_hour.requests,
                  " calls in the last hour were retries (",
                  Percent(Ratio(last_hour.retries, last_hour.requests)),
                  "; alert above ", Percent(a.ratio), ")"));
          !s.ok()) {
        return s;
      }
    }
    if (!days) return absl::OkStatus();
    if (const BuiltinAlert& a = settings_.cost_per_request_24h;
        a.enabled && last_day.requests > 0 && previous_day.requests > 0 &&
        last_day.requests >= a.min_requests &&
        previous_day.requests >= a.min_requests) {
      const double now_cpr = Ratio(last_day.spend_nanos, last_day.requests);
      const double before_cpr =
          Ratio(previous_day.spend_nanos, previous_day.requests);
      if (before_cpr > 0 && now_cpr >= before_cpr * (1 + a.ratio)) {
        if (absl::Status s = Fire(
                "cost-per-request-24h", a.severity, day,
                absl::StrCat(
                    scope_, ": cost per request ",
                    Usd(static_cast<int64_t>(now_cpr)), " in the last 24 h vs ",
                    Usd(static_cast<int64_t>(before_cpr)),
                    " the 24 h before (+", Percent(now_cpr / before_cpr - 1),
                    "; alert at +", Percent(a.ratio), ")"));
            !s.ok()) {
          return s;
        }
      }
    }
    if (const BuiltinAlert& a = settings_.tokens_per_request_24h;
        a.enabled && !last_day.policy_changed && !previous_day.policy_changed &&
        last_day.requests > 0 && previous_day.requests > 0 &&
        last_day.requests >= a.min_requests &&
        previous_day.requests >= a.min_requests) {
      const double now_tpr = Ratio(Tokens(last_day), last_day.requests);
      const double before_tpr =
          Ratio(Tokens(previous_day), previous_day.requests);
      if (before_tpr > 0 && now_tpr >= before_tpr * (1 + a.ratio)) {
        if (absl::Status s =
                Fire("tokens-per-request-24h", a.severity, day,
                     absl::StrFormat(
                         "%s: %.0f tokens per request in the last 24 h "
                         "vs %.0f the 24 h before (+%s) with no policy "
                         "change; alert at +%s",
                         scope_, now_tpr, before_tpr,
                         Percent(now_tpr / before_tpr - 1), Percent(a.ratio)));
            !s.ok()) {
          return s;
        }
      }
    }
    if (const BuiltinAlert& a = settings_.daily_burn_variation;
        a.enabled && previous_day.spend_nanos > 0 &&
        previous_day.spend_nanos >= a.min_spend_nanos) {
      const double variation =
          Ratio(last_day.spend_nanos, previous_day.spend_nanos) - 1;
      if (std::abs(variation) > a.ratio) {
        if (absl::Status s =
                Fire("daily-burn-variation", a.severity, day,
                     absl::StrCat(scope_, " spent ", Usd(last_day.spend_nanos),
                                  " in the last 24 h vs ",
                                  Usd(previous_day.spend_nanos),
                                  " the 24 h before (",
                                  variation > 0 ? "+" : "", Percent(variation),
                                  "; alert beyond ±", Percent(a.ratio), ")"));
            !s.ok()) {
          return s;
        }
      }
    }
    return absl::OkStatus();
  }

  static absl::TimeZone LoadZone(const std::string& name) {
    absl::TimeZone tz;
    if (!absl::LoadTimeZone(name, &tz)) return absl::UTCTimeZone();
    return tz;
  }

  AlertEngine* const engine_;
  const std::shared_ptr<const policy::CompiledPolicy> policy_;
  const AlertingSettings& settings_;
  const absl::Time now_;
  const absl::CivilSecond local_now_;
  std::vector<AlertEntry> fired_;
  // The scope being evaluated.
  std::string scope_;
  const storage::BudgetSpec* spec_ = nullptr;
  const storage::Standing* standing_ = nullptr;
  BudgetUsage usage_;
};

AlertEngine::AlertEngine(const storage::Ledger* ledger,
                         storage::AlertStore* store, PolicySource policy,
                         Clock clock, const policy::KpiView* kpis,
                         AlertEngineOptions options)
    : ledger_(ledger),
      store_(store),
      policy_(std::move(policy)),
      clock_(std::move(clock)),
      kpis_(kpis),
      options_(std::move(options)) {}

AlertEngine::~AlertEngine() { Stop(); }

void AlertEngine::AddListener(AlertListener* listener) {
  listeners_.push_back(listener);
}

absl::StatusOr<std::vector<AlertEntry>> AlertEngine::EvaluateOnce(
    absl::Time now) {
  std::vector<AlertEntry> fired;
  {
    absl::MutexLock pass_lock(&pass_mu_);
    std::shared_ptr<const policy::CompiledPolicy> active = policy_();
    if (active != nullptr) {
      if (options_.before_pass) options_.before_pass(now);
      Pass pass(this, std::move(active), now);
      absl::Status status = pass.Run();
      // What fired before an error is stored: tell the listeners anyway.
      fired = pass.TakeFired();
      for (const AlertEntry& alert : fired) {
        for (AlertListener* listener : listeners_) listener->OnAlert(alert);
      }
      if (!status.ok()) {
        absl::MutexLock lock(&mu_);
        ++passes_;
        return status;
      }
    }
  }
  absl::MutexLock lock(&mu_);
  ++passes_;
  return fired;
}

int64_t AlertEngine::passes() const {
  absl::MutexLock lock(&mu_);
  return passes_;
}

void AlertEngine::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void AlertEngine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void AlertEngine::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void AlertEngine::Loop() {
  pthread_setname_np(pthread_self(), "alert-engine");
  if (options_.on_thread_start) options_.on_thread_start();
  absl::Time last_start = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Wait for the interval, or a wake once min_gap has passed since the
      // last pass started (real time: the pace of work, not the clock that
      // alerts read).
      const absl::Time interval_due = last_start + options_.interval;
      const absl::Time gap_due = last_start + options_.min_gap;
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || absl::Now() >= interval_due ||
               (wake_ && absl::Now() >= gap_due);
      };
      while (!ready()) {
        const absl::Time until =
            wake_ ? std::min(gap_due, interval_due) : interval_due;
        auto condition = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || wake_;
        };
        if (wake_) {
          // Only stopping can shorten this wait.
          mu_.AwaitWithDeadline(absl::Condition(&stopping_), until);
        } else {
          mu_.AwaitWithDeadline(absl::Condition(&condition), until);
        }
      }
      if (stopping_) return;
      wake_ = false;
    }
    last_start = absl::Now();
    absl::StatusOr<std::vector<AlertEntry>> fired = EvaluateOnce(clock_());
    if (!fired.ok() && options_.on_error) options_.on_error(fired.status());
  }
}

}  // namespace bursar::alerts
