#ifndef BURSAR_CLI_POLICY_COMMANDS_H_
#define BURSAR_CLI_POLICY_COMMANDS_H_

// bursarctl's policy commands: check and test (local, no server), push,
// diff, list, get, activate and shadow (the Admin API's policy RPCs).

#include <vector>

#include "cli/command.h"

namespace bursar::cli {

// The commands, in the order `bursarctl help` lists them.
std::vector<Command> PolicyCommands();

}  // namespace bursar::cli

#endif  // BURSAR_CLI_POLICY_COMMANDS_H_
