#include "tests/model/reference.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "server/time_format.h"

namespace bursar::model {
namespace {

constexpr int kOk = 0;
constexpr int kInvalidArgument = 3;
constexpr int kNotFound = 5;

// "2.00" from 2'000'000'000 nanos per Mtok.
std::string Usd(int64_t nanos_per_mtok) {
  std::string frac =
      absl::StrCat(1'000'000'000 + nanos_per_mtok % 1'000'000'000).substr(1);
  while (frac.size() > 2 && frac.back() == '0') frac.pop_back();
  return absl::StrCat(nanos_per_mtok / 1'000'000'000, ".", frac);
}

Price MakePrice(int64_t in, int64_t cached, int64_t out,
                const std::string& provider) {
  return Price{in, cached, out, provider};
}

}  // namespace

int64_t CostNanos(const Price& price, int64_t input_tokens,
                  int64_t cached_input_tokens, int64_t output_tokens) {
  const __int128 micro_nanos =
      static_cast<__int128>(input_tokens - cached_input_tokens) *
          price.input_nanos_per_mtok +
      static_cast<__int128>(cached_input_tokens) *
          price.cached_input_nanos_per_mtok +
      static_cast<__int128>(output_tokens) * price.output_nanos_per_mtok;
  return static_cast<int64_t>((micro_nanos + 999'999) / 1'000'000);
}

std::string PolicyVariant::Yaml() const {
  std::string out = absl::StrCat(
      "apiVersion: bursar.dev/v1\nkind: Policy\nmetadata:\n  name: model-",
      name, "\npricing:\n");
  for (const auto& [model, p] : prices) {
    absl::StrAppend(&out, "  ", model, ": { provider: ", p.provider,
                    ", input: \"", Usd(p.input_nanos_per_mtok),
                    "\", cached_input: \"", Usd(p.cached_input_nanos_per_mtok),
                    "\", output: \"", Usd(p.output_nanos_per_mtok), "\" }\n");
  }
  absl::StrAppend(&out,
                  "defaults:\n  max_output_tokens: ", default_max_output_tokens,
                  "\n  unknown_model: reject\n");
  if (!on_exhausted.empty()) absl::StrAppend(&out, "on_exhausted:\n");
  for (const ExhaustedStep& step : on_exhausted) {
    switch (step.kind) {
      case ExhaustedStep::Kind::kDowngrade: {
        absl::StrAppend(&out, "  - downgrade: {");
        const char* sep = " ";
        for (const auto& [from, to] : step.downgrade) {
          absl::StrAppend(&out, sep, from, ": ", to);
          sep = ", ";
        }
        absl::StrAppend(&out, " }\n");
        break;
      }
      case ExhaustedStep::Kind::kCapToFit:
        absl::StrAppend(&out, "  - cap_to_fit: { min_output_tokens: ",
                        step.min_output_tokens, " }\n");
        break;
      case ExhaustedStep::Kind::kDeny:
        absl::StrAppend(&out, "  - deny: { message: \"", step.message,
                        "\" }\n");
        break;
    }
  }
  return out;
}

std::vector<PolicyVariant> TestPolicies() {
  // big and mid are "openai", small is "acme", so a downgrade can change
  // which provider budgets a call matches. small's output price is a
  // fraction of a nano per token.
  const std::map<std::string, Price> list = {
      {"big", MakePrice(2'000'000'000, 500'000'000, 8'000'000'000, "openai")},
      {"mid", MakePrice(400'000'000, 100'000'000, 1'600'000'000, "openai")},
      {"small", MakePrice(100'000'000, 25'000'000, 275'000'000, "acme")},
  };
  std::map<std::string, Price> raised = list;
  raised["big"].output_nanos_per_mtok = 16'000'000'000;
  raised["small"].input_nanos_per_mtok = 310'000'000;

  ExhaustedStep big_to_mid{ExhaustedStep::Kind::kDowngrade, {{"big", "mid"}}};
  ExhaustedStep mid_to_small{ExhaustedStep::Kind::kDowngrade,
                             {{"mid", "small"}}};
  ExhaustedStep big_to_small{ExhaustedStep::Kind::kDowngrade,
                             {{"big", "small"}}};
  ExhaustedStep cap50{ExhaustedStep::Kind::kCapToFit, {}, 50};
  ExhaustedStep cap1{ExhaustedStep::Kind::kCapToFit, {}, 1};
  ExhaustedStep deny{ExhaustedStep::Kind::kDeny, {}, 1, "budget spent"};

  std::vector<PolicyVariant> variants;
  variants.push_back({"plain", list, 1000, {}});
  variants.push_back(
      {"downgrade", list, 1000, {big_to_mid, mid_to_small, deny}});
  variants.push_back({"cap", raised, 2000, {cap50}});
  variants.push_back({"downgrade-cap", raised, 1500, {big_to_small, cap1}});
  variants.push_back({"deny-first", list, 800, {deny, cap1}});
  return variants;
}

absl::Time PeriodStart(v1::Period period, absl::Time now,
                       const absl::TimeZone& tz) {
  const absl::CivilSecond local = absl::ToCivilSecond(now, tz);
  const auto midnight = [&](absl::CivilDay day) {
    return tz.At(absl::CivilSecond(day)).pre;
  };
  switch (period) {
    case v1::PERIOD_HOUR:
      // The top of the hour on the clock in force now: every hour period
      // is 60 minutes, even across a DST change.
      return absl::FromUnixSeconds(absl::ToUnixSeconds(now)) -
             absl::Minutes(local.minute()) - absl::Seconds(local.second());
    case v1::PERIOD_DAY:
      return midnight(absl::CivilDay(local));
    case v1::PERIOD_WEEK: {
      absl::CivilDay day(local);
      while (absl::GetWeekday(day) != absl::Weekday::monday) --day;
      return midnight(day);
    }
    case v1::PERIOD_MONTH:
      return midnight(absl::CivilDay(absl::CivilMonth(local)));
    default:
      return absl::InfinitePast();
  }
}

int Reference::SetBudget(const v1::Budget& budget) {
  budgets_[budget.name()] = budget;
  return kOk;
}

int Reference::DeleteBudget(const std::string& name) {
  // Spend stays with (name, instance, period): a budget set again under
  // the same name in the same period sees it.
  return budgets_.erase(name) == 1 ? kOk : kNotFound;
}

std::vector<Reference::Match> Reference::Matches(
    const std::map<std::string, std::string>& labels, absl::Time now) const {
  std::vector<Match> matches;
  for (const auto& [name, budget] : budgets_) {
    bool selected = true;
    for (const auto& [key, value] : budget.selector()) {
      auto it = labels.find(key);
      if (it == labels.end() || it->second != value) selected = false;
    }
    if (!selected) continue;
    std::string instance;
    if (!budget.per_label().empty()) {
      auto it = labels.find(budget.per_label());
      if (it == labels.end()) continue;
      instance = it->second;
    }
    absl::TimeZone tz;
    absl::LoadTimeZone(budget.timezone(), &tz);
    const absl::Time start = PeriodStart(budget.period(), now, tz);
    const int64_t key =
        budget.period() == v1::PERIOD_NONE ? 0 : absl::ToUnixSeconds(start);
    matches.push_back({name, instance, start, {name, instance, key}});
  }
  return matches;
}

v1::BudgetStanding Reference::Standing(const Match& m) const {
  const v1::Budget& budget = budgets_.at(m.budget);
  Counters c;
  if (auto it = counters_.find(m.key); it != counters_.end()) c = it->second;
  v1::BudgetStanding s;
  s.set_budget(m.budget);
  s.set_instance(m.instance);
  s.set_period_start(server::FormatRfc3339(m.period_start));
  s.set_amount_nanos(budget.amount_nanos());
  s.set_spent_nanos(c.spent_nanos);
  s.set_held_nanos(c.held_nanos);
  s.set_remaining_nanos(std::max<int64_t>(
      0, budget.amount_nanos() - c.spent_nanos - c.held_nanos));
  return s;
}

int Reference::Check(const v1::CheckRequest& request, absl::Time now,
                     const std::string& issued_id,
                     v1::CheckResponse* expected) {
  const PolicyVariant& policy = variants_[variant_];
  if (policy.prices.count(request.model()) == 0) return kInvalidArgument;
  expected->Clear();
  if (!request.dry_run() && !request.request_id().empty()) {
    auto seen = by_request_id_.find(request.request_id());
    if (seen != by_request_id_.end()) {
      const Hold& hold = holds_.at(seen->second);
      *expected = hold.answer;
      expected->set_reservation_id(seen->second);
      expected->set_reservation_expires_at(
          server::FormatRfc3339(hold.expires_at));
      return kOk;
    }
  }

  std::string model = request.model();
  int64_t max_output = request.max_output_tokens() > 0
                           ? request.max_output_tokens()
                           : policy.default_max_output_tokens;
  std::vector<std::string> fired;
  size_t next_step = 0;
  const auto estimate = [&] {
    return CostNanos(policy.prices.at(model), request.input_tokens(), 0,
                     max_output);
  };
  while (true) {
    const int64_t estimate_nanos = estimate();
    std::map<std::string, std::string> labels(request.labels().begin(),
                                              request.labels().end());
    labels.emplace("model", model);
    labels.emplace("provider", policy.prices.at(model).provider);
    const std::vector<Match> matches = Matches(labels, now);
    std::vector<std::string> exceeded;
    int64_t tightest = std::numeric_limits<int64_t>::max();
    for (const Match& m : matches) {
      const v1::BudgetStanding s = Standing(m);
      tightest = std::min(tightest, s.remaining_nanos());
      if (static_cast<__int128>(s.spent_nanos()) + s.held_nanos() +
              estimate_nanos >
          s.amount_nanos()) {
        exceeded.push_back(m.budget);
      }
    }
    expected->set_model(model);
    expected->set_max_output_tokens(max_output);
    expected->set_estimated_cost_nanos(estimate_nanos);
    expected->set_policy_version(version_);
    expected->clear_reasons();
    for (const std::string& rule : fired)
      expected->add_reasons()->set_rule(rule);

    if (exceeded.empty()) {
      expected->set_verdict(v1::VERDICT_ALLOW);
      if (!request.dry_run()) {
        Hold hold;
        hold.estimate_nanos = estimate_nanos;
        hold.expires_at = now + ttl_;
        hold.price = policy.prices.at(model);
        hold.answer = *expected;
        for (const Match& m : matches) {
          hold.charges.push_back(m.key);
          counters_[m.key].held_nanos += estimate_nanos;
        }
        holds_[issued_id] = hold;
        issued_.push_back(issued_id);
        if (!request.request_id().empty()) {
          by_request_id_[request.request_id()] = issued_id;
        }
        expected->set_reservation_id(issued_id);
        expected->set_reservation_expires_at(
            server::FormatRfc3339(hold.expires_at));
      }
      for (const Match& m : matches) *expected->add_budgets() = Standing(m);
      return kOk;
    }

    // on_exhausted: the next step that changes the call, else deny.
    bool changed = false;
    std::string deny_rule;
    while (!changed && next_step < policy.on_exhausted.size()) {
      const ExhaustedStep& step = policy.on_exhausted[next_step++];
      if (step.kind == ExhaustedStep::Kind::kDowngrade) {
        auto to = step.downgrade.find(model);
        if (to == step.downgrade.end()) continue;
        model = to->second;
        fired.push_back("on_exhausted:downgrade");
        changed = true;
      } else if (step.kind == ExhaustedStep::Kind::kCapToFit) {
        const Price& price = policy.prices.at(model);
        const __int128 room = static_cast<__int128>(tightest) * 1'000'000 -
                              static_cast<__int128>(request.input_tokens()) *
                                  price.input_nanos_per_mtok;
        if (room < 0 || price.output_nanos_per_mtok <= 0) continue;
        const __int128 fit = room / price.output_nanos_per_mtok;
        if (fit < step.min_output_tokens || fit >= max_output) continue;
        max_output = static_cast<int64_t>(fit);
        fired.push_back("on_exhausted:cap_to_fit");
        changed = true;
      } else {
        deny_rule = "on_exhausted:deny";
        break;
      }
    }
    if (changed) continue;
    expected->set_verdict(v1::VERDICT_DENY);
    for (const std::string& name : exceeded) {
      expected->add_reasons()->set_rule(absl::StrCat("budget:", name));
    }
    if (!deny_rule.empty()) expected->add_reasons()->set_rule(deny_rule);
    for (const Match& m : matches) *expected->add_budgets() = Standing(m);
    return kOk;
  }
}

int Reference::Report(const v1::ReportRequest& request,
                      v1::ReportResponse* expected) {
  const v1::Usage& usage = request.usage();
  if (usage.cached_input_tokens() > usage.input_tokens()) {
    return kInvalidArgument;
  }
  auto it = holds_.find(request.reservation_id());
  if (it == holds_.end()) return kNotFound;
  Hold& hold = it->second;
  expected->Clear();
  if (hold.state == Hold::State::kSettled) {
    expected->set_cost_nanos(hold.cost_nanos);
    expected->set_already_reported(true);
    expected->set_reported_after_expiry(hold.reported_after_expiry);
    return kOk;
  }
  const int64_t cost =
      CostNanos(hold.price, usage.input_tokens(), usage.cached_input_tokens(),
                usage.output_tokens());
  for (const CounterKey& key : hold.charges) {
    Counters& c = counters_[key];
    if (hold.state == Hold::State::kExpired) {
      // The estimate was charged at expiry; the cost replaces it.
      c.spent_nanos += cost - hold.estimate_nanos;
      c.unreported_nanos -= hold.estimate_nanos;
    } else {
      c.held_nanos -= hold.estimate_nanos;
      c.spent_nanos += cost;
    }
  }
  hold.reported_after_expiry = hold.state == Hold::State::kExpired;
  hold.state = Hold::State::kSettled;
  hold.cost_nanos = cost;
  expected->set_cost_nanos(cost);
  expected->set_reported_after_expiry(hold.reported_after_expiry);
  return kOk;
}

int Reference::Expire(absl::Time now) {
  int expired = 0;
  for (auto& [id, hold] : holds_) {
    if (hold.state != Hold::State::kOpen || hold.expires_at > now) continue;
    for (const CounterKey& key : hold.charges) {
      Counters& c = counters_[key];
      c.held_nanos -= hold.estimate_nanos;
      c.spent_nanos += hold.estimate_nanos;
      c.unreported_nanos += hold.estimate_nanos;
    }
    hold.state = Hold::State::kExpired;
    ++expired;
  }
  return expired;
}

int64_t Reference::open_held_nanos() const {
  int64_t held = 0;
  for (const auto& [id, hold] : holds_) {
    if (hold.state == Hold::State::kOpen) held += hold.estimate_nanos;
  }
  return held;
}

std::optional<v1::GetBudgetResponse> Reference::GetBudget(
    const std::string& name, const std::string& instance,
    absl::Time now) const {
  auto it = budgets_.find(name);
  if (it == budgets_.end()) return std::nullopt;
  const v1::Budget& budget = it->second;
  absl::TimeZone tz;
  absl::LoadTimeZone(budget.timezone(), &tz);
  const absl::Time start = PeriodStart(budget.period(), now, tz);
  const int64_t key =
      budget.period() == v1::PERIOD_NONE ? 0 : absl::ToUnixSeconds(start);
  Counters c;
  if (auto found = counters_.find({name, instance, key});
      found != counters_.end()) {
    c = found->second;
  }
  v1::GetBudgetResponse out;
  *out.mutable_budget() = budget;
  out.set_spent_nanos(c.spent_nanos);
  out.set_held_nanos(c.held_nanos);
  v1::BudgetInstanceStanding* row = out.add_instances();
  row->set_instance(instance);
  row->set_spent_nanos(c.spent_nanos);
  row->set_held_nanos(c.held_nanos);
  row->set_unreported_nanos(c.unreported_nanos);
  row->set_remaining_nanos(std::max<int64_t>(
      0, budget.amount_nanos() - c.spent_nanos - c.held_nanos));
  return out;
}

}  // namespace bursar::model
