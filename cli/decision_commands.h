#ifndef BURSAR_CLI_DECISION_COMMANDS_H_
#define BURSAR_CLI_DECISION_COMMANDS_H_

// bursarctl's Decision commands: check and report, to try out what a
// gateway would be told (and to settle by hand what it reserved).

#include <vector>

#include "cli/command.h"

namespace bursar::cli {

// The commands, in the order `bursarctl help` lists them.
std::vector<Command> DecisionCommands();

}  // namespace bursar::cli

#endif  // BURSAR_CLI_DECISION_COMMANDS_H_
