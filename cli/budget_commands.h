#ifndef BURSAR_CLI_BUDGET_COMMANDS_H_
#define BURSAR_CLI_BUDGET_COMMANDS_H_

// bursarctl's Admin commands: budget set / get / list / delete, and audit.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "bursar/v1/admin.pb.h"
#include "cli/command.h"

namespace bursar::cli {

// The commands, in the order `bursarctl help` lists them.
std::vector<Command> BudgetCommands();

// What a budget's amount means, e.g. "$5000.00 per month" or "$5.00 per day
// for each user".
std::string DescribeAmount(const v1::Budget& budget);

// A one-line summary of an audit record's change, from its before/after
// JSON: "created: $50.00 per day", "deleted", "amount $50.00 -> $80.00", ...
// Empty when the JSON is not a budget.
std::string DescribeBudgetChange(absl::string_view before_json,
                                 absl::string_view after_json);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_BUDGET_COMMANDS_H_
