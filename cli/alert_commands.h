#ifndef BURSAR_CLI_ALERT_COMMANDS_H_
#define BURSAR_CLI_ALERT_COMMANDS_H_

// bursarctl's alert commands: `alerts list` (Admin.ListAlerts, with webhook
// dead letters on request) and `alerts watch` (Admin.WatchAlerts, one line
// per alert as it fires).

#include <string>
#include <vector>

#include "bursar/v1/admin.pb.h"
#include "cli/command.h"

namespace bursar::cli {

// The commands, in the order `bursarctl help` lists them.
std::vector<Command> AlertCommands();

// One line for people: "2026-04-14T20:01:02Z  warning  budget-threshold-85
// budget:team  <message>", and " (missed N before)" when the watcher missed
// some.
std::string AlertLine(const v1::Alert& alert);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_ALERT_COMMANDS_H_
