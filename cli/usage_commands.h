#ifndef BURSAR_CLI_USAGE_COMMANDS_H_
#define BURSAR_CLI_USAGE_COMMANDS_H_

// bursarctl's usage and signal commands: `usage` (Admin.GetUsage as a
// table, CSV or JSON), `signal report` and `signal list`.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bursar/v1/admin.pb.h"
#include "cli/command.h"

namespace bursar::cli {

std::vector<Command> UsageCommands();

// --since: a duration back from `now` ("30d", "12h", "90m", "1h30m") or an
// RFC 3339 time.
absl::StatusOr<absl::Time> ParseSince(absl::string_view text, absl::Time now);

// The usage table for people: one column per group_by dimension (an empty
// value shows as "(none)"), then cost, requests, outcomes and tokens, and a
// TOTAL line.
std::string RenderUsageTable(const std::vector<std::string>& group_by,
                             const v1::GetUsageResponse& response);
// The same as CSV (RFC 4180: a header line, cost as exact decimal USD,
// fields quoted when they hold a comma, quote or line break), without the
// total.
std::string RenderUsageCsv(const std::vector<std::string>& group_by,
                           const v1::GetUsageResponse& response);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_USAGE_COMMANDS_H_
