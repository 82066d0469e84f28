#include "server/decider.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "policy/call_plan.h"
#include "policy/limit_asks.h"
#include "policy/money.h"
#include "policy/pricing.h"
#include "server/hold_terms.pb.h"
#include "server/kpi_rollups.h"
#include "server/ledger_usage_view.h"
#include "server/rate_windows.h"
#include "server/shadow_stats.h"
#include "server/time_format.h"
#include "storage/labels.h"

namespace bursar::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status CheckTokens(absl::string_view field, int64_t tokens) {
  if (tokens < 0 || tokens > policy::kMaxTokensPerCall) {
    return Invalid(field, absl::StrFormat("%d is outside 0..%d", tokens,
                                          policy::kMaxTokensPerCall));
  }
  return absl::OkStatus();
}

void FillStanding(const storage::Standing& s, v1::BudgetStanding* out) {
  out->set_budget(s.budget);
  out->set_instance(s.instance);
  out->set_period_start(FormatRfc3339(s.period_start));
  out->set_amount_nanos(s.amount_nanos);
  out->set_spent_nanos(s.spent_nanos);
  out->set_held_nanos(s.held_nanos);
  out->set_remaining_nanos(s.remaining_nanos());
}

std::string DenialMessage(const storage::Standing& s, int64_t estimate_nanos) {
  const std::string who =
      s.instance.empty()
          ? absl::StrCat("budget \"", s.budget, "\"")
          : absl::StrCat("budget \"", s.budget, "\" for \"", s.instance, "\"");
  const std::string period =
      s.period == storage::Period::kNone
          ? std::string()
          : absl::StrCat(" this ", storage::PeriodName(s.period), " (since ",
                         FormatRfc3339(s.period_start), ")");
  return absl::StrCat(
      who, " has $", policy::FormatUsdNanos(s.remaining_nanos()), " of $",
      policy::FormatUsdNanos(s.amount_nanos), " left", period,
      "; the call may cost up to $", policy::FormatUsdNanos(estimate_nanos));
}

// Plans the call under the shadow version too and records how the two plans
// differ. Reads what the active plan read (the same request and usage view,
// before anything is reserved); reserves and writes nothing, and whatever
// the shadow answers only lands in its stats.
void CompareWithShadow(const ShadowRun& shadow, const v1::CheckRequest& request,
                       const policy::CallRequest& call,
                       const policy::DecisionContext& context,
                       const absl::StatusOr<policy::CallPlan>& active_plan) {
  const absl::StatusOr<policy::CallPlan> shadow_plan =
      policy::PlanCall(*shadow.policy(), call, context);
  const uint32_t differences = ComparePlans(active_plan, shadow_plan);
  if (differences == 0) {
    shadow.stats().RecordSame();
    return;
  }
  ShadowSample sample;
  sample.time = context.now;
  sample.request_id = request.request_id();
  sample.model = request.model();
  sample.provider = request.provider();
  sample.labels.reserve(call.labels.size());
  for (const auto& [key, value] : call.labels) {
    sample.labels.emplace_back(key, value);
  }
  sample.priority = request.priority();
  sample.input_tokens = request.input_tokens();
  sample.max_output_tokens = request.max_output_tokens();
  sample.differences = differences;
  sample.active = SummarizePlan(active_plan);
  sample.shadow = SummarizePlan(shadow_plan);
  shadow.stats().RecordDifference(std::move(sample));
}

}  // namespace

absl::Status ValidateCheckRequest(const v1::CheckRequest& request) {
  if (request.request_id().size() > kMaxRequestIdBytes) {
    return Invalid("request_id", absl::StrFormat("%d bytes; at most %d",
                                                 request.request_id().size(),
                                                 kMaxRequestIdBytes));
  }
  if (request.model().empty()) {
    return Invalid("model", "must name the model to call, e.g. \"gpt-4.1\"");
  }
  if (request.model().size() > kMaxModelBytes) {
    return Invalid(
        "model", absl::StrFormat("%d bytes; at most %d", request.model().size(),
                                 kMaxModelBytes));
  }
  if (request.provider().size() > kMaxLabelValueBytes) {
    return Invalid("provider", absl::StrFormat("%d bytes; at most %d",
                                               request.provider().size(),
                                               kMaxLabelValueBytes));
  }
  if (request.labels_size() > kMaxLabels) {
    return Invalid("labels",
                   absl::StrFormat("%d labels; at most %d",
                                   request.labels_size(), kMaxLabels));
  }
  for (const auto& [key, value] : request.labels()) {
    if (key.empty() || key.size() > kMaxLabelKeyBytes) {
      return Invalid("labels",
                     absl::StrFormat("key \"%s\" must be 1..%d bytes",
                                     absl::CHexEscape(key.substr(0, 80)),
                                     kMaxLabelKeyBytes));
    }
    if (value.size() > kMaxLabelValueBytes) {
      return Invalid(absl::StrCat("labels[", key, "]"),
                     absl::StrFormat("value is %d bytes; at most %d",
                                     value.size(), kMaxLabelValueBytes));
    }
    if (key.find('\0') != key.npos || value.find('\0') != value.npos) {
      return Invalid(absl::StrCat("labels[", absl::CHexEscape(key), "]"),
                     "NUL bytes are not allowed");
    }
  }
  if (absl::Status s = CheckTokens("input_tokens", request.input_tokens());
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckTokens("max_output_tokens", request.max_output_tokens());
      !s.ok()) {
    return s;
  }
  if (request.priority().size() > kMaxLabelKeyBytes) {
    return Invalid("priority", absl::StrFormat("%d bytes; at most %d",
                                               request.priority().size(),
                                               kMaxLabelKeyBytes));
  }
  if (request.attempt() < 0) {
    return Invalid("attempt", absl::StrCat(request.attempt(),
                                           " is negative; the first try is 1"));
  }
  return absl::OkStatus();
}

absl::Status ValidateReportRequest(const v1::ReportRequest& request) {
  if (request.reservation_id().empty()) {
    return Invalid("reservation_id",
                   "must be the reservation_id that Check returned");
  }
  if (request.reservation_id().size() > kMaxRequestIdBytes) {
    return Invalid("reservation_id", "is longer than any id Check returns");
  }
  const v1::Usage& usage = request.usage();
  if (absl::Status s = CheckTokens("usage.input_tokens", usage.input_tokens());
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckTokens("usage.cached_input_tokens", usage.cached_input_tokens());
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckTokens("usage.output_tokens", usage.output_tokens());
      !s.ok()) {
    return s;
  }
  if (usage.cached_input_tokens() > usage.input_tokens()) {
    return Invalid(
        "usage.cached_input_tokens",
        absl::StrFormat("%d exceeds input_tokens %d; input_tokens "
                        "counts all prompt tokens, cached included",
                        usage.cached_input_tokens(), usage.input_tokens()));
  }
  if (!v1::Outcome_IsValid(request.outcome())) {
    return Invalid("outcome",
                   absl::StrCat(request.outcome(), " is not a known Outcome"));
  }
  if (request.latency().seconds() < 0 || request.latency().nanos() < 0) {
    return Invalid("latency", "must not be negative");
  }
  if (request.has_quality_score() &&
      !(request.quality_score() >= 0.0 && request.quality_score() <= 1.0)) {
    return Invalid("quality_score", absl::StrFormat("%g is outside 0..1",
                                                    request.quality_score()));
  }
  return absl::OkStatus();
}

absl::Status Decider::Decide(const v1::CheckRequest& request,
                             v1::CheckResponse* response,
                             uint64_t* durable_ticket) {
  if (absl::Status s = ValidateCheckRequest(request); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  const std::shared_ptr<const policy::CompiledPolicy> active =
      policies_->Active();

  // The caller's labels (conditions read them), then what budgets select
  // on: the model priced, whatever a caller's "model" label says, and the
  // provider field, else a "provider" label, else the catalog's provider.
  storage::LabelSet request_labels;
  for (const auto& [key, value] : request.labels()) {
    request_labels.Add(key, value);
  }
  storage::LabelSet usage_labels;
  usage_labels.Add("model", request.model());
  if (!request.provider().empty()) {
    usage_labels.Add("provider", request.provider());
  }
  for (const auto& entry : request_labels.entries()) {
    usage_labels.Add(entry.first, entry.second);
  }
  const LedgerUsageView usage(ledger_, &usage_labels, now);

  policy::CallRequest call;
  call.model = request.model();
  call.provider = request.provider();
  call.priority = request.priority();
  call.labels = request_labels.entries();
  call.input_tokens = request.input_tokens();
  call.max_output_tokens = request.max_output_tokens();
  call.attempt = request.attempt() == 0 ? 1 : request.attempt();
  const RequestKpis kpis(
      options_.kpis, ledger_,
      options_.usage != nullptr ? options_.usage->store() : nullptr,
      &usage_labels);
  const policy::DecisionContext context{&usage, now, &kpis, &kpis};
  absl::StatusOr<policy::CallPlan> plan =
      policy::PlanCall(*active, call, context);
  // Shadow mode: compare the two policy plans now, while the ledger is as
  // the active plan saw it (this Check's own hold would otherwise count).
  // A Check that raced a change of the active version is not compared.
  if (const std::shared_ptr<const ShadowRun> shadow = policies_->Shadow();
      shadow != nullptr && shadow->active_version() == active->version()) {
    CompareWithShadow(*shadow, request, call, context, plan);
  }
  if (!plan.ok()) return plan.status();
  response->set_policy_version(active->version());

  auto fill_plan = [&] {
    response->set_model(plan->model);
    response->set_max_output_tokens(plan->max_output_tokens);
    response->set_estimated_cost_nanos(plan->estimated_cost_nanos);
    response->clear_reasons();
    for (const policy::FiredRule& fired : plan->fired) {
      v1::Reason* reason = response->add_reasons();
      reason->set_rule(fired.rule);
      reason->set_message(fired.message());
    }
  };
  fill_plan();
  if (!plan->allowed) {
    response->set_verdict(v1::VERDICT_DENY);
    v1::Reason* reason = response->add_reasons();
    reason->set_rule(plan->deny_rule);
    reason->set_message(plan->deny_message);
    return absl::OkStatus();
  }

  // Reserve; when a budget cannot fit, walk the on_exhausted chain. Every
  // step changes the plan or ends it, so this ends. Each plan first takes
  // its rate limits and pool slots; a plan that goes no further gives them
  // back.
  absl::StatusOr<storage::ReserveResult> reserved;
  policy::LimitAsks asks;
  // Inline: no heap for up to limits::kInlineCharges rate windows.
  limits::RateCharges rate_charges;
  std::vector<storage::SideCounterDelta> side_counters;
  while (true) {
    policy::MatchLimits(*active, call, *plan, now, &asks);
    rate_charges.clear();
    if (std::optional<limits::RateDenial> denial =
            rates_.Acquire(asks.rates, asks.tokens, now, request.dry_run(),
                           &rate_charges)) {
      response->set_verdict(v1::VERDICT_DENY);
      v1::Reason* reason = response->add_reasons();
      reason->set_rule(policy::RateLimitRuleName(*denial));
      reason->set_message(policy::RateDenialMessage(*denial));
      if (!denial->never_fits()) {
        const absl::Duration wait = denial->retry_after;
        const int64_t seconds = absl::ToInt64Seconds(wait);
        response->mutable_retry_after()->set_seconds(seconds);
        response->mutable_retry_after()->set_nanos(static_cast<int32_t>(
            absl::ToInt64Nanoseconds(wait - absl::Seconds(seconds))));
      }
      return absl::OkStatus();
    }
    if (std::optional<limits::PoolDenial> denial =
            pools_.Acquire(asks.pools, request.priority(), request.dry_run())) {
      rates_.Release(rate_charges);
      response->set_verdict(v1::VERDICT_DENY);
      v1::Reason* reason = response->add_reasons();
      reason->set_rule(policy::PoolRuleName(*denial));
      reason->set_message(
          policy::PoolDenialMessage(*denial, request.priority()));
      return absl::OkStatus();
    }

    storage::LabelSet labels;
    labels.Add("model", plan->model);
    if (!request.provider().empty()) labels.Add("provider", request.provider());
    for (const auto& entry : request_labels.entries()) {
      labels.Add(entry.first, entry.second);
    }
    labels.Add("provider", plan->price->provider);

    HoldTerms terms;
    std::string terms_bytes;
    if (!request.dry_run()) {
      terms.set_model(plan->model);
      terms.set_policy_version(active->version());
      terms.set_input_nanos_per_mtok(plan->price->input_nanos_per_mtok);
      terms.set_cached_input_nanos_per_mtok(
          plan->price->cached_input_nanos_per_mtok);
      terms.set_output_nanos_per_mtok(plan->price->output_nanos_per_mtok);
      *terms.mutable_answer() = *response;
      terms.mutable_answer()->set_verdict(v1::VERDICT_ALLOW);
      for (const limits::RateCharge& charge : rate_charges) {
        RateCharge* out = terms.add_rate_charges();
        out->set_rule(charge.rule.data(), charge.rule.size());
        out->set_key(charge.key.data(), charge.key.size());
        out->set_window_seconds(charge.window_seconds);
        out->set_bucket(charge.bucket);
        out->set_tokens(charge.tokens);
      }
      for (const limits::PoolAsk& pool : asks.pools) {
        terms.add_pools(std::string(pool.pool));
      }
      terms.set_priority(request.priority());
      terms.set_provider(std::string(labels.Find("provider").value_or("")));
      for (const std::string& dimension :
           active->rules().attribution.dimensions) {
        (*terms.mutable_dimensions())[dimension] =
            std::string(request_labels.Find(dimension).value_or(""));
      }
      terms_bytes = terms.SerializeAsString();
    }

    side_counters.clear();
    for (const limits::RateCharge& charge : rate_charges) {
      if (!IsDurableWindow(charge.window_seconds)) continue;
      side_counters.push_back(
          {RateWindowKey(charge, RateCount::kRequests), 1});
      side_counters.push_back(
          {RateWindowKey(charge, RateCount::kTokens), charge.tokens});
    }

    storage::ReserveRequest reserve;
    reserve.side_counters = side_counters;
    reserve.labels = &labels;
    reserve.estimate_nanos = plan->estimated_cost_nanos;
    reserve.request_id = request.request_id();
    reserve.terms = terms_bytes;
    reserve.ttl = options_.reservation_ttl;
    reserve.dry_run = request.dry_run();
    // A restart restores the pool slots of the calls in flight from their
    // terms (RestoreInFlight); a call that took none need not be read
    // (decision 025).
    reserve.visit_on_restore = terms.pools_size() > 0;
    reserve.defer_durability = durable_ticket != nullptr;
    reserved = ledger_->Reserve(reserve, now);
    if (!reserved.ok() ||
        reserved->kind == storage::ReserveResult::Kind::kDenied ||
        reserved->kind == storage::ReserveResult::Kind::kReplayed) {
      // Nothing new is in flight: this plan's counts and slots go back (a
      // replay holds those of the first Check).
      if (!request.dry_run()) ReleasePools(terms);
    }
    if (!reserved.ok()) return reserved.status();
    if (reserved->kind != storage::ReserveResult::Kind::kDenied) break;

    int64_t tightest = std::numeric_limits<int64_t>::max();
    for (const storage::Standing& s : reserved->standings) {
      tightest = std::min(tightest, s.remaining_nanos());
    }
    const int64_t denied_estimate = plan->estimated_cost_nanos;
    if (policy::NextExhaustedStep(*active, call, tightest, &*plan)) {
      fill_plan();
      continue;
    }
    fill_plan();
    response->set_verdict(v1::VERDICT_DENY);
    for (const storage::Standing& s : reserved->exceeded) {
      v1::Reason* reason = response->add_reasons();
      reason->set_rule(absl::StrCat("budget:", s.budget));
      reason->set_message(DenialMessage(s, denied_estimate));
    }
    if (!plan->deny_message.empty()) {
      v1::Reason* reason = response->add_reasons();
      reason->set_rule(plan->deny_rule);
      reason->set_message(plan->deny_message);
    }
    break;
  }

  switch (reserved->kind) {
    case storage::ReserveResult::Kind::kReplayed: {
      HoldTerms earlier;
      if (!earlier.ParseFromString(reserved->terms)) {
        return absl::DataLossError(absl::StrCat(
            "reservation ", reserved->reservation_id, " has unreadable terms"));
      }
      *response = earlier.answer();
      break;
    }
    case storage::ReserveResult::Kind::kDenied:
      break;
    case storage::ReserveResult::Kind::kDryRun:
    case storage::ReserveResult::Kind::kReserved:
      response->set_verdict(v1::VERDICT_ALLOW);
      break;
  }
  if (!reserved->reservation_id.empty()) {
    response->set_reservation_id(reserved->reservation_id);
    response->set_reservation_expires_at(FormatRfc3339(reserved->expires_at));
  }
  for (const storage::Standing& s : reserved->standings) {
    FillStanding(s, response->add_budgets());
  }
  if (durable_ticket != nullptr) *durable_ticket = reserved->durable_ticket;
  return absl::OkStatus();
}

absl::Status Decider::Settle(const v1::ReportRequest& request,
                             v1::ReportResponse* response,
                             uint64_t* durable_ticket) {
  if (absl::Status s = ValidateReportRequest(request); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  absl::StatusOr<storage::HoldView> hold =
      ledger_->GetHold(request.reservation_id());
  if (!hold.ok()) return hold.status();
  HoldTerms terms;
  if (!terms.ParseFromString(hold->terms)) {
    return absl::DataLossError(absl::StrCat(
        "reservation ", request.reservation_id(), " has unreadable terms"));
  }
  policy::ModelPrice price;
  price.input_nanos_per_mtok = terms.input_nanos_per_mtok();
  price.cached_input_nanos_per_mtok = terms.cached_input_nanos_per_mtok();
  price.output_nanos_per_mtok = terms.output_nanos_per_mtok();
  const v1::Usage& usage = request.usage();
  absl::StatusOr<int64_t> cost = policy::CostNanos(
      price, {usage.input_tokens(), usage.cached_input_tokens(),
              usage.output_tokens()});
  if (!cost.ok()) return cost.status();

  // Rate windows count what the call really used.
  const int64_t used_tokens = usage.input_tokens() + usage.output_tokens();
  std::vector<storage::SideCounterDelta> corrections;
  for (const RateCharge& charge : terms.rate_charges()) {
    if (!IsDurableWindow(charge.window_seconds())) continue;
    const limits::RateCharge taken{charge.rule(), charge.key(),
                                   charge.window_seconds(), charge.bucket(),
                                   charge.tokens()};
    corrections.push_back({RateWindowKey(taken, RateCount::kTokens),
                           used_tokens - charge.tokens()});
  }
  // The rollups change in the settlement's own batch (storage/usage_store.h).
  std::optional<storage::UsageUpdate> usage_update;
  if (options_.usage != nullptr &&
      hold->state != storage::HoldState::kSettled) {
    usage_update = options_.usage->ForReport(
        *hold, terms, request, *cost, now,
        policies_->Active()->rules().attribution.max_values_per_dimension);
  }
  absl::StatusOr<storage::SettleResult> settled = ledger_->Settle(
      request.reservation_id(), *cost, now,
      usage_update.has_value() ? &*usage_update : nullptr, corrections,
      durable_ticket);
  if (!settled.ok()) return settled.status();
  if (!settled->already_reported) {
    // An expired hold gave its pool slots back when it expired.
    for (const RateCharge& charge : terms.rate_charges()) {
      rates_.Correct({charge.rule(), charge.key(), charge.window_seconds(),
                      charge.bucket(), charge.tokens()},
                     used_tokens);
    }
    if (!settled->after_expiry) {
      for (const std::string& pool : terms.pools()) {
        pools_.Release(pool, terms.priority());
      }
    }
  }
  response->set_cost_nanos(settled->cost_nanos);
  response->set_already_reported(settled->already_reported);
  response->set_reported_after_expiry(settled->after_expiry);
  return absl::OkStatus();
}

void Decider::ReleasePools(const HoldTerms& terms) {
  for (const RateCharge& charge : terms.rate_charges()) {
    const limits::RateCharge taken{charge.rule(), charge.key(),
                                   charge.window_seconds(), charge.bucket(),
                                   charge.tokens()};
    rates_.Release({&taken, 1});
  }
  for (const std::string& pool : terms.pools()) {
    pools_.Release(pool, terms.priority());
  }
}

absl::Status Decider::RestoreInFlight() {
  const std::shared_ptr<const policy::CompiledPolicy> active =
      policies_->Active();
  absl::Status status;
  // The ledger visits the open holds that were reserved with pool slots
  // (visit_on_restore) and those stored before that flag existed.
  ledger_->ForEachOpenHold([&](const storage::HoldView& hold) {
    HoldTerms terms;
    if (!terms.ParseFromString(hold.terms)) {
      status.Update(absl::DataLossError(absl::StrCat(
          "reservation ", hold.reservation_id, " has unreadable terms")));
      return;
    }
    for (const std::string& name : terms.pools()) {
      limits::PoolAsk ask{name, std::numeric_limits<int64_t>::max(), nullptr};
      for (const policy::ConcurrencyPool& pool : active->rules().concurrency) {
        if (pool.name == name) {
          ask = {pool.name, pool.max_in_flight, &pool.reserve};
        }
      }
      pools_.Restore(ask, terms.priority());
    }
  });
  if (!status.ok()) return status;
  // Hour and day windows: what the last two windows took.
  const absl::Time now = clock_->Now();
  if (absl::Status s = PruneRateWindows(now); !s.ok()) return s;
  return ledger_->ForEachSideCounter(
      RateWindowKeyFrom(now - kRateWindowsKept), RateWindowKeyFrom(
          absl::InfiniteFuture()),
      [&](absl::string_view key, int64_t value) {
        std::optional<StoredRateCount> stored = ParseRateWindowKey(key, value);
        if (stored.has_value()) {
          rates_.Restore(stored->charge(), stored->requests);
        }
      });
}

absl::Status Decider::PruneRateWindows(absl::Time now) {
  return ledger_->DeleteSideCounters(RateWindowKeyFrom(absl::InfinitePast()),
                                     RateWindowKeyFrom(now - kRateWindowsKept));
}

absl::StatusOr<int> Decider::ExpireReservations() {
  const absl::Time now = clock_->Now();
  std::vector<storage::HoldView> expired_holds;
  absl::StatusOr<int> expired = ledger_->ExpireHolds(now, &expired_holds);
  const int64_t max_values =
      policies_->Active()->rules().attribution.max_values_per_dimension;
  absl::Status recorded;
  for (const storage::HoldView& hold : expired_holds) {
    HoldTerms terms;
    if (!terms.ParseFromString(hold.terms)) continue;  // Report says DataLoss
    for (const std::string& pool : terms.pools()) {
      pools_.Release(pool, terms.priority());
    }
    // Counted in the rollups in a write of its own: the ledger's expiry
    // batch is already durable.
    if (options_.usage != nullptr && options_.usage->store() != nullptr) {
      absl::Status s = options_.usage->store()->Record(
          options_.usage->ForExpiry(hold, terms, now, max_values));
      if (recorded.ok()) recorded = s;
    }
  }
  rates_.EvictIdle(now);
  if (now - last_rate_prune_ >= absl::Hours(1)) {
    last_rate_prune_ = now;
    if (absl::Status s = PruneRateWindows(now); !s.ok()) return s;
  }
  if (expired.ok() && !recorded.ok()) return recorded;
  return expired;
}

// The observer hook: Decide and Settle are the decisions themselves (their
// latency without the fsync wait of --sync=group).
absl::Status Decider::CheckDeferred(const v1::CheckRequest& request,
                                    v1::CheckResponse* response,
                                    uint64_t* durable_ticket) {
  if (options_.observer == nullptr) {
    return Decide(request, response, durable_ticket);
  }
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = Decide(request, response, durable_ticket);
  options_.observer->OnCheck(
      request, *response, status,
      absl::FromChrono(std::chrono::steady_clock::now() - start));
  return status;
}

absl::Status Decider::ReportDeferred(const v1::ReportRequest& request,
                                     v1::ReportResponse* response,
                                     uint64_t* durable_ticket) {
  if (options_.observer == nullptr) {
    return Settle(request, response, durable_ticket);
  }
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = Settle(request, response, durable_ticket);
  options_.observer->OnReport(
      request, *response, status,
      absl::FromChrono(std::chrono::steady_clock::now() - start));
  return status;
}

namespace {

// Waits for the write a deferred call made.
absl::Status AwaitDurable(Decider& decider, absl::Status status,
                          uint64_t ticket) {
  if (!status.ok() || ticket == 0) return status;
  absl::Notification done;
  decider.WhenDurable(ticket, [&](absl::Status durable) {
    status = std::move(durable);
    done.Notify();
  });
  done.WaitForNotification();
  return status;
}

}  // namespace

absl::Status Decider::Check(const v1::CheckRequest& request,
                            v1::CheckResponse* response) {
  uint64_t ticket = 0;
  absl::Status status = CheckDeferred(request, response, &ticket);
  return AwaitDurable(*this, std::move(status), ticket);
}

absl::Status Decider::Report(const v1::ReportRequest& request,
                             v1::ReportResponse* response) {
  uint64_t ticket = 0;
  absl::Status status = ReportDeferred(request, response, &ticket);
  return AwaitDurable(*this, std::move(status), ticket);
}

}  // namespace bursar::server
