#include "storage/budget.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bursar::storage {
namespace {

constexpr size_t kMaxNameBytes = 128;
constexpr size_t kMaxSelectorEntries = 16;
constexpr size_t kMaxLabelKeyBytes = 64;
constexpr size_t kMaxLabelValueBytes = 256;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
}

absl::Status CheckLabel(absl::string_view field, absl::string_view key,
                        absl::string_view value) {
  if (key.empty() || key.size() > kMaxLabelKeyBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: label key \"%s\" must be 1..%d bytes", field, key,
        kMaxLabelKeyBytes));
  }
  if (value.size() > kMaxLabelValueBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s[%s]: value is %d bytes; at most %d", field, key,
                        value.size(), kMaxLabelValueBytes));
  }
  if (key.find('\0') != key.npos || value.find('\0') != value.npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s[%s]: NUL bytes are not allowed", field, key));
  }
  return absl::OkStatus();
}

}  // namespace

bool BudgetSpec::operator==(const BudgetSpec& other) const {
  return name == other.name && selector == other.selector &&
         per_label == other.per_label && period == other.period &&
         timezone == other.timezone && amount_nanos == other.amount_nanos &&
         alert_thresholds == other.alert_thresholds &&
         updated_at == other.updated_at && updated_by == other.updated_by;
}

absl::Status NormalizeBudgetSpec(BudgetSpec& spec) {
  if (spec.name.empty() || spec.name.size() > kMaxNameBytes ||
      !std::all_of(spec.name.begin(), spec.name.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "budget.name: \"%s\" must be 1..%d characters of A-Z a-z 0-9 . _ -",
        absl::CHexEscape(spec.name), kMaxNameBytes));
  }
  if (spec.amount_nanos < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "budget.amount_nanos: %d is negative; a budget amount is >= 0",
        spec.amount_nanos));
  }
  if (spec.timezone.empty()) spec.timezone = "UTC";
  absl::TimeZone tz;
  if (!absl::LoadTimeZone(spec.timezone, &tz)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "budget.timezone: \"%s\" is not an IANA time zone (e.g. "
        "\"Europe/Berlin\", \"America/New_York\", \"UTC\")",
        absl::CHexEscape(spec.timezone)));
  }
  if (spec.selector.size() > kMaxSelectorEntries) {
    return absl::InvalidArgumentError(
        absl::StrFormat("budget.selector: %d entries; at most %d",
                        spec.selector.size(), kMaxSelectorEntries));
  }
  for (const auto& [key, value] : spec.selector) {
    if (absl::Status s = CheckLabel("budget.selector", key, value); !s.ok()) {
      return s;
    }
  }
  std::sort(spec.selector.begin(), spec.selector.end());
  for (size_t i = 1; i < spec.selector.size(); ++i) {
    if (spec.selector[i].first == spec.selector[i - 1].first) {
      return absl::InvalidArgumentError(absl::StrCat(
          "budget.selector: key \"", spec.selector[i].first, "\" twice"));
    }
  }
  if (!spec.per_label.empty()) {
    if (absl::Status s = CheckLabel("budget.per_label", spec.per_label, "");
        !s.ok()) {
      return s;
    }
  }
  if (spec.alert_thresholds.empty()) spec.alert_thresholds = {0.85, 1.0};
  for (double t : spec.alert_thresholds) {
    if (!(t > 0.0 && t <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "budget.alert_thresholds: %g is outside (0, 1]; write 0.85 for 85%%",
          t));
    }
  }
  std::sort(spec.alert_thresholds.begin(), spec.alert_thresholds.end());
  spec.alert_thresholds.erase(
      std::unique(spec.alert_thresholds.begin(), spec.alert_thresholds.end()),
      spec.alert_thresholds.end());
  return absl::OkStatus();
}

}  // namespace bursar::storage
