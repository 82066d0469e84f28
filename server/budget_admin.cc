#include "server/budget_admin.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "server/auth/audit_actor.h"
#include "server/time_format.h"

namespace bursar::server {
namespace {

std::string BudgetJson(const std::optional<storage::BudgetSpec>& spec) {
  if (!spec.has_value()) return "";
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(BudgetToProto(*spec), &json,
                                                   options)
           .ok()) {
    return "";
  }
  return json;
}

}  // namespace

absl::StatusOr<storage::BudgetSpec> BudgetFromProto(const v1::Budget& budget) {
  storage::BudgetSpec spec;
  spec.name = budget.name();
  spec.selector.assign(budget.selector().begin(), budget.selector().end());
  spec.per_label = budget.per_label();
  switch (budget.period()) {
    case v1::PERIOD_HOUR:
      spec.period = storage::Period::kHour;
      break;
    case v1::PERIOD_DAY:
      spec.period = storage::Period::kDay;
      break;
    case v1::PERIOD_WEEK:
      spec.period = storage::Period::kWeek;
      break;
    case v1::PERIOD_MONTH:
      spec.period = storage::Period::kMonth;
      break;
    case v1::PERIOD_NONE:
      spec.period = storage::Period::kNone;
      break;
    default:
      return absl::InvalidArgumentError(
          "budget.period: say which period the amount is for: PERIOD_HOUR, "
          "PERIOD_DAY, PERIOD_WEEK, PERIOD_MONTH or PERIOD_NONE");
  }
  spec.timezone = budget.timezone();
  spec.amount_nanos = budget.amount_nanos();
  spec.alert_thresholds.assign(budget.alert_thresholds().begin(),
                               budget.alert_thresholds().end());
  return spec;
}

v1::Budget BudgetToProto(const storage::BudgetSpec& spec) {
  v1::Budget budget;
  budget.set_name(spec.name);
  for (const auto& [key, value] : spec.selector) {
    (*budget.mutable_selector())[key] = value;
  }
  budget.set_per_label(spec.per_label);
  switch (spec.period) {
    case storage::Period::kHour:
      budget.set_period(v1::PERIOD_HOUR);
      break;
    case storage::Period::kDay:
      budget.set_period(v1::PERIOD_DAY);
      break;
    case storage::Period::kWeek:
      budget.set_period(v1::PERIOD_WEEK);
      break;
    case storage::Period::kMonth:
      budget.set_period(v1::PERIOD_MONTH);
      break;
    case storage::Period::kNone:
      budget.set_period(v1::PERIOD_NONE);
      break;
  }
  budget.set_timezone(spec.timezone);
  budget.set_amount_nanos(spec.amount_nanos);
  for (double t : spec.alert_thresholds) budget.add_alert_thresholds(t);
  budget.set_updated_at(FormatRfc3339(spec.updated_at));
  budget.set_updated_by(spec.updated_by);
  return budget;
}

absl::Status BudgetAdmin::SetBudget(const v1::SetBudgetRequest& request,
                                    const auth::Caller& caller,
                                    v1::SetBudgetResponse* response) {
  if (!request.has_budget()) {
    return absl::InvalidArgumentError("budget: required");
  }
  absl::StatusOr<storage::BudgetSpec> spec = BudgetFromProto(request.budget());
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::pair<storage::BudgetSpec, bool>> stored =
      ledger_->SetBudget(
          *std::move(spec),
          auth::AuditActor(caller, request.actor(), request.reason()),
          clock_->Now());
  if (!stored.ok()) return stored.status();
  *response->mutable_budget() = BudgetToProto(stored->first);
  response->set_created(stored->second);
  return absl::OkStatus();
}

absl::Status BudgetAdmin::FillBudget(const storage::BudgetSpec& spec,
                                     absl::string_view instance, absl::Time now,
                                     v1::GetBudgetResponse* out) {
  absl::StatusOr<std::vector<storage::Standing>> standings =
      ledger_->Standings(spec.name, instance, now);
  if (!standings.ok()) return standings.status();
  *out->mutable_budget() = BudgetToProto(spec);
  int64_t spent = 0;
  int64_t held = 0;
  for (const storage::Standing& s : *standings) {
    spent += s.spent_nanos;
    held += s.held_nanos;
    v1::BudgetInstanceStanding* row = out->add_instances();
    row->set_instance(s.instance);
    row->set_period_start(FormatRfc3339(s.period_start));
    row->set_period_end(FormatRfc3339(s.period_end));
    row->set_spent_nanos(s.spent_nanos);
    row->set_held_nanos(s.held_nanos);
    row->set_remaining_nanos(s.remaining_nanos());
    row->set_unreported_nanos(s.unreported_nanos);
  }
  out->set_spent_nanos(spent);
  out->set_held_nanos(held);
  return absl::OkStatus();
}

absl::Status BudgetAdmin::GetBudget(const v1::GetBudgetRequest& request,
                                    v1::GetBudgetResponse* response) {
  if (request.name().empty()) {
    return absl::InvalidArgumentError("name: which budget?");
  }
  std::optional<storage::BudgetSpec> spec = ledger_->GetBudget(request.name());
  if (!spec.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("budget \"", request.name(), "\" does not exist"));
  }
  if (!request.instance().empty() && spec->per_label.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "instance: budget \"", spec->name,
        "\" has no per_label, so it has one instance; leave instance empty"));
  }
  return FillBudget(*spec, request.instance(), clock_->Now(), response);
}

absl::Status BudgetAdmin::ListBudgets(const v1::ListBudgetsRequest& request,
                                      v1::ListBudgetsResponse* response) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size: ", request.page_size(), " is negative; give 1 to ",
        kMaxBudgetsPerPage, ", or 0 for ", kMaxBudgetsPerPage));
  }
  const int page_size = request.page_size() == 0
                            ? kMaxBudgetsPerPage
                            : std::min(request.page_size(), kMaxBudgetsPerPage);
  // The token is the last name of the previous page: budgets created or
  // deleted between pages neither shift nor repeat the others.
  const std::vector<std::string> names = ledger_->ListBudgetNames();
  auto next =
      std::upper_bound(names.begin(), names.end(), request.page_token());
  if (request.page_token().empty()) next = names.begin();
  const absl::Time now = clock_->Now();
  for (; next != names.end() && response->budgets_size() < page_size; ++next) {
    const std::optional<storage::BudgetSpec> spec = ledger_->GetBudget(*next);
    if (!spec.has_value()) continue;  // deleted meanwhile
    absl::Status s = FillBudget(*spec, "", now, response->add_budgets());
    if (absl::IsNotFound(s)) {  // deleted meanwhile
      response->mutable_budgets()->RemoveLast();
      continue;
    }
    if (!s.ok()) return s;
  }
  if (next != names.end() && response->budgets_size() > 0) {
    response->set_next_page_token(
        response->budgets(response->budgets_size() - 1).budget().name());
  }
  return absl::OkStatus();
}

absl::Status BudgetAdmin::DeleteBudget(const v1::DeleteBudgetRequest& request,
                                       const auth::Caller& caller,
                                       v1::DeleteBudgetResponse* /*response*/) {
  if (request.name().empty()) {
    return absl::InvalidArgumentError("name: which budget?");
  }
  return ledger_->DeleteBudget(
      request.name(),
      auth::AuditActor(caller, request.actor(), request.reason()),
      clock_->Now());
}

absl::Status BudgetAdmin::ListAudit(const v1::ListAuditRequest& request,
                                    v1::ListAuditResponse* response) {
  if (request.limit() < 0) {
    return absl::InvalidArgumentError("limit: must not be negative");
  }
  const size_t limit = request.limit() == 0 ? 100 : request.limit();
  for (const storage::AuditEntry& entry : ledger_->ListAudit(limit)) {
    v1::AuditRecord* record = response->add_records();
    record->set_time(FormatRfc3339(entry.time));
    record->set_actor(entry.actor);
    record->set_role(entry.role);
    record->set_action(entry.action);
    record->set_target(entry.target);
    // Budget changes carry the budget; other changes (policy versions) their
    // store's JSON.
    record->set_before_json(entry.before.has_value() ? BudgetJson(entry.before)
                                                     : entry.before_json);
    record->set_after_json(entry.after.has_value() ? BudgetJson(entry.after)
                                                   : entry.after_json);
    record->set_reason(entry.reason);
  }
  return absl::OkStatus();
}

}  // namespace bursar::server
