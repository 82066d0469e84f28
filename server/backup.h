#ifndef BURSAR_SERVER_BACKUP_H_
#define BURSAR_SERVER_BACKUP_H_

// Backups of the data directory while serving, and restoring one into a
// new data directory at start-up (docs/operations.md, decision 015).
//
// A backup is a RocksDB checkpoint: a consistent copy of the whole database
// (budgets, spend counters, holds, policy versions, audit log) as of one
// moment, written into <root>/<name> on the server. Restoring copies it
// into a data directory that does not exist yet (or is empty) and never
// overwrites one: a restore cannot destroy live data.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bursar/v1/admin.pb.h"
#include "server/clock.h"

namespace bursar::server {

// Writes a consistent copy of the database into a directory that does not
// exist yet (storage::RocksStorage::create_checkpoint).
using CheckpointFunction = std::function<absl::Status(const std::string& dir)>;

class Backups {
 public:
  // `root` (bursard --backup_dir) must be an existing directory;
  // InvalidArgument naming the flag otherwise. `clock` must outlive this.
  static absl::StatusOr<std::unique_ptr<Backups>> Open(
      std::string root, CheckpointFunction checkpoint, Clock* clock);

  // Admin.CreateBackup: validates the name (admin.proto), writes the
  // checkpoint into <root>/<name>, logs who asked. InvalidArgument for a
  // bad name; FailedPrecondition when the name is taken. Thread-safe.
  absl::Status Create(const v1::CreateBackupRequest& request,
                      absl::string_view actor,
                      v1::CreateBackupResponse* response);

 private:
  Backups(std::string root, CheckpointFunction checkpoint, Clock* clock)
      : root_(std::move(root)),
        checkpoint_(std::move(checkpoint)),
        clock_(clock) {}

  const std::string root_;
  const CheckpointFunction checkpoint_;
  Clock* const clock_;
};

// The file RestoreDataDir leaves in a restored data directory: the backup's
// path, so that a restart with the same --restore_from carries on.
inline constexpr char kRestoredFromFile[] = "BURSAR_RESTORED_FROM";

// bursard --restore_from: copies the backup at `backup_dir` into
// `data_dir` before the database opens. The copy goes to a sibling
// directory first and is renamed into place, so a crash mid-copy leaves no
// half data directory. OK without copying when `data_dir` was already
// restored from this backup (a restart with the same flags).
// FailedPrecondition when `data_dir` holds anything else (restore only
// into a new data directory); InvalidArgument when `backup_dir` is not a
// backup.
absl::Status RestoreDataDir(const std::string& backup_dir,
                            const std::string& data_dir);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_BACKUP_H_
