#ifndef BURSAR_CLI_BACKUP_COMMANDS_H_
#define BURSAR_CLI_BACKUP_COMMANDS_H_

// bursarctl backup [NAME]: Admin.CreateBackup, a consistent copy of the
// server's whole database written on the server under its --backup_dir.
// Restoring is a start-up flag of bursard (--restore_from), not a client
// command: docs/operations.md.

#include <vector>

#include "cli/command.h"

namespace bursar::cli {

std::vector<Command> BackupCommands();

}  // namespace bursar::cli

#endif  // BURSAR_CLI_BACKUP_COMMANDS_H_
