#include "cli/arguments.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace bursar::cli {

absl::StatusOr<std::map<std::string, std::string>> ParseLabelList(
    absl::string_view text) {
  std::map<std::string, std::string> labels;
  if (absl::StripAsciiWhitespace(text).empty()) return labels;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", text, "\" has an empty entry; write key=value,key=value"));
    }
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", entry, "\" has no value; write ", entry, "=VALUE"));
    }
    const absl::string_view key =
        absl::StripAsciiWhitespace(entry.substr(0, eq));
    const absl::string_view value =
        absl::StripAsciiWhitespace(entry.substr(eq + 1));
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", entry, "\" has no key; write KEY", entry.substr(eq)));
    }
    if (!labels.emplace(std::string(key), std::string(value)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("key \"", key, "\" is given twice; give it once"));
    }
  }
  return labels;
}

absl::StatusOr<std::vector<double>> ParseThresholdList(absl::string_view text) {
  std::vector<double> thresholds;
  if (absl::StripAsciiWhitespace(text).empty()) return thresholds;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    double value = 0;
    if (!absl::SimpleAtod(item, &value) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", item,
                       "\" is not a number; write fractions of the amount, "
                       "e.g. 0.5,0.85,1"));
    }
    if (value <= 0 || value > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", item,
          "\" is outside (0, 1]; a threshold is a fraction of the amount, "
          "write 0.85 for 85%"));
    }
    if (std::find(thresholds.begin(), thresholds.end(), value) !=
        thresholds.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", item, "\" is given twice; give it once"));
    }
    thresholds.push_back(value);
  }
  return thresholds;
}

absl::StatusOr<v1::Period> ParsePeriod(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "hour") return v1::PERIOD_HOUR;
  if (lower == "day") return v1::PERIOD_DAY;
  if (lower == "week") return v1::PERIOD_WEEK;
  if (lower == "month") return v1::PERIOD_MONTH;
  if (lower == "none") return v1::PERIOD_NONE;
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", text, "\" is not a period; write hour, day, week, month or none"));
}

absl::StatusOr<v1::Outcome> ParseOutcome(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "success") return v1::OUTCOME_SUCCESS;
  if (lower == "failure") return v1::OUTCOME_FAILURE;
  if (lower == "retry") return v1::OUTCOME_RETRY;
  if (lower == "cancelled") return v1::OUTCOME_CANCELLED;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text,
                   "\" is not an outcome; write success, failure, retry or "
                   "cancelled"));
}

}  // namespace bursar::cli
