#include "server/alerts/alert_admin.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace bursar::server {
namespace {

constexpr int kDefaultLimit = 100;
constexpr int kMaxLimit = 1000;

std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

}  // namespace

void AlertToProto(const storage::AlertEntry& alert, v1::Alert* out) {
  out->set_id(alert.id);
  out->set_rule(alert.rule);
  out->set_severity(alert.severity);
  out->set_scope(alert.scope);
  out->set_period_start(alert.period_key == 0 ? ""
                                              : Rfc3339(alert.period_start));
  out->set_fired_at(Rfc3339(alert.fired_at));
  out->set_message(alert.message);
  out->set_budget(alert.budget);
  out->set_instance(alert.instance);
  out->set_policy_version(alert.policy_version);
}

absl::Status AlertAdmin::ListAlerts(const v1::ListAlertsRequest& request,
                                    v1::ListAlertsResponse* response) const {
  if (request.limit() < 0 || request.limit() > kMaxLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be 0 (for ", kDefaultLimit, ") to ", kMaxLimit,
                     ", got ", request.limit()));
  }
  const size_t limit = request.limit() == 0 ? kDefaultLimit : request.limit();
  absl::StatusOr<std::vector<storage::AlertEntry>> alerts = store_->List(limit);
  if (!alerts.ok()) return alerts.status();
  for (const storage::AlertEntry& alert : *alerts) {
    AlertToProto(alert, response->add_alerts());
  }
  if (request.include_dead_letters()) {
    absl::StatusOr<std::vector<storage::DeadLetter>> letters =
        store_->ListDeadLetters(limit);
    if (!letters.ok()) return letters.status();
    for (const storage::DeadLetter& letter : *letters) {
      v1::AlertDeadLetter* out = response->add_dead_letters();
      out->set_alert_id(letter.alert_id);
      out->set_url(letter.url);
      out->set_attempts(letter.attempts);
      out->set_last_error(letter.last_error);
      out->set_failed_at(Rfc3339(letter.failed_at));
      out->set_body(letter.body);
    }
  }
  response->set_evaluations(engine_ == nullptr ? 0 : engine_->passes());
  return absl::OkStatus();
}

void AlertWakingObserver::OnCheck(const v1::CheckRequest& request,
                                  const v1::CheckResponse& response,
                                  const absl::Status& status,
                                  absl::Duration elapsed) {
  if (next_ != nullptr) next_->OnCheck(request, response, status, elapsed);
}

void AlertWakingObserver::OnReport(const v1::ReportRequest& request,
                                   const v1::ReportResponse& response,
                                   const absl::Status& status,
                                   absl::Duration elapsed) {
  if (next_ != nullptr) next_->OnReport(request, response, status, elapsed);
  if (status.ok()) engine_->Wake();
}

}  // namespace bursar::server
