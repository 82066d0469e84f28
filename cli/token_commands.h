#ifndef BURSAR_CLI_TOKEN_COMMANDS_H_
#define BURSAR_CLI_TOKEN_COMMANDS_H_

// bursarctl token new | hash: make bearer tokens and the tokens-file
// entries (SHA-256 only) that bursard's --tokens_file holds. No server.

#include <vector>

#include "cli/command.h"

namespace bursar::cli {

std::vector<Command> TokenCommands();

}  // namespace bursar::cli

#endif  // BURSAR_CLI_TOKEN_COMMANDS_H_
