#ifndef BURSAR_CLI_ARGUMENTS_H_
#define BURSAR_CLI_ARGUMENTS_H_

// Parsing of the values bursarctl's flags carry ("team=search,user=bob",
// "0.5,0.85,1", "month", "success"). Pure functions: a malformed value is an
// INVALID_ARGUMENT status whose message says what to write instead, and the
// caller turns it into a usage error.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bursar/v1/admin.pb.h"
#include "bursar/v1/decision.pb.h"

namespace bursar::cli {

// Parses a comma-separated list of key=value pairs ("team=search,user=bob")
// into a map. Whitespace around keys and values is dropped; a value may
// contain '=' (everything after the first '=' is the value) but not ','.
// Empty text is the empty map. Errors: an entry without '=' ("team"), an
// empty key ("=search"), an empty entry ("a=b,,c=d"), a key given twice.
absl::StatusOr<std::map<std::string, std::string>> ParseLabelList(
    absl::string_view text);

// Parses a comma-separated list of alert thresholds, fractions of a budget's
// amount in (0, 1] ("0.5,0.85,1"). Empty text is the empty list (the server
// then uses its default). Errors: a non-number, a value outside (0, 1], a
// value given twice.
absl::StatusOr<std::vector<double>> ParseThresholdList(absl::string_view text);

// "hour", "day", "week", "month" or "none" (any case).
absl::StatusOr<v1::Period> ParsePeriod(absl::string_view text);

// "success", "failure", "retry" or "cancelled" (any case).
absl::StatusOr<v1::Outcome> ParseOutcome(absl::string_view text);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_ARGUMENTS_H_
