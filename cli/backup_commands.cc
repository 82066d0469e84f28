#include "cli/backup_commands.h"

#include <iostream>
#include <string>
#include <vector>

#include "bursar/v1/admin.grpc.pb.h"

namespace bursar::cli {
namespace {

int Backup(const CommandContext& context,
           const std::vector<std::string>& args) {
  v1::CreateBackupRequest request;
  if (!args.empty()) request.set_name(args[0]);
  v1::CreateBackupResponse response;
  const grpc::Status status = AdminStub(context)->CreateBackup(
      NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  std::cout << "Backup " << response.name() << " written on the server to "
            << response.path() << " at " << response.created_at()
            << "\nRestore it with: bursard --restore_from=" << response.path()
            << " --data_dir=NEW_DIR\n";
  return kExitOk;
}

}  // namespace

std::vector<Command> BackupCommands() {
  return {
      {.words = {"backup"},
       .optional_args = {"NAME"},
       .synopsis = "[NAME]",
       .summary = "Back up the server's whole database while it serves.",
       .details =
           "A consistent RocksDB checkpoint of budgets, spend, open "
           "reservations, policy versions and the audit log, written on the "
           "server into its --backup_dir under NAME (default: bursar- and "
           "the UTC time). Copy it off the machine; restore it by starting "
           "bursard with --restore_from=PATH and a new --data_dir.",
       .example = "bursarctl backup nightly-2026-03-18",
       .run = Backup},
  };
}

}  // namespace bursar::cli
