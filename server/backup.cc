#include "server/backup.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/log.h"
#include "server/time_format.h"

namespace bursar::server {
namespace {

namespace fs = std::filesystem;
using LF = LogField;

constexpr size_t kMaxBackupNameBytes = 128;

absl::Status CheckName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxBackupNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: ", name.size(), " bytes; give 1..",
                     kMaxBackupNameBytes, " bytes of [A-Za-z0-9._-]"));
  }
  if (name[0] == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("name \"", name,
                     "\" starts with '.'; give a plain "
                     "directory name of [A-Za-z0-9._-]"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "name \"", absl::CHexEscape(name),
          "\" has a character outside [A-Za-z0-9._-]; a backup name is one "
          "directory name under --backup_dir"));
    }
  }
  return absl::OkStatus();
}

std::string ReadSmallFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backups>> Backups::Open(
    std::string root, CheckpointFunction checkpoint, Clock* clock) {
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--backup_dir=", root,
                     " is not a directory; create it first (on a "
                     "disk with room for a copy of --data_dir)"));
  }
  return std::unique_ptr<Backups>(
      new Backups(fs::absolute(root).lexically_normal().string(),
                  std::move(checkpoint), clock));
}

absl::Status Backups::Create(const v1::CreateBackupRequest& request,
                             absl::string_view actor,
                             v1::CreateBackupResponse* response) {
  const absl::Time now = clock_->Now();
  std::string name = request.name();
  if (name.empty()) {
    name = absl::StrCat("bursar-", absl::FormatTime("%Y%m%dT%H%M%E6SZ", now,
                                                    absl::UTCTimeZone()));
  }
  if (absl::Status s = CheckName(name); !s.ok()) return s;
  const std::string path = (fs::path(root_) / name).string();
  std::error_code error;
  if (fs::exists(path, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("a backup named \"", name, "\" exists already in ", root_,
                     "; choose another name"));
  }
  if (absl::Status s = checkpoint_(path); !s.ok()) return s;
  response->set_name(name);
  response->set_path(path);
  response->set_created_at(FormatRfc3339(now));
  Log(LogLevel::kInfo, "backup created",
      {LF{"path", path}, LF{"by", std::string(actor)}});
  return absl::OkStatus();
}

absl::Status RestoreDataDir(const std::string& backup_dir,
                            const std::string& data_dir) {
  std::error_code error;
  const fs::path backup = fs::absolute(backup_dir).lexically_normal();
  if (!fs::is_regular_file(backup / "CURRENT", error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--restore_from=", backup_dir,
        " is not a backup (no RocksDB CURRENT file in it); give a directory "
        "that `bursarctl backup` created under --backup_dir"));
  }
  const fs::path data = fs::absolute(data_dir).lexically_normal();
  if (fs::exists(data, error) && !fs::is_empty(data, error)) {
    if (ReadSmallFile(data / kRestoredFromFile) == backup.string()) {
      Log(LogLevel::kInfo, "data directory already restored from the backup",
          {LF{"backup", backup.string()}, LF{"data_dir", data.string()}});
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "--restore_from: --data_dir=", data_dir,
        " is not empty; restore only into a new data directory (move the old "
        "one away first if you mean to replace it)"));
  }
  const fs::path staging =
      data.parent_path() /
      absl::StrCat(data.filename().string(), ".restoring-", getpid());
  fs::remove_all(staging, error);
  fs::create_directories(data.parent_path(), error);
  fs::copy(backup, staging, fs::copy_options::recursive, error);
  if (error) {
    fs::remove_all(staging, error);
    return absl::UnavailableError(
        absl::StrCat("--restore_from: copying ", backup.string(), " to ",
                     staging.string(), " failed: ", error.message()));
  }
  {
    std::ofstream marker(staging / kRestoredFromFile);
    marker << backup.string();
    if (!marker.good()) {
      return absl::UnavailableError(
          absl::StrCat("--restore_from: cannot write ",
                       (staging / kRestoredFromFile).string()));
    }
  }
  if (fs::exists(data, error)) fs::remove(data, error);  // empty: checked
  fs::rename(staging, data, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("--restore_from: renaming ", staging.string(), " to ",
                     data.string(), " failed: ", error.message()));
  }
  Log(LogLevel::kInfo, "data directory restored from a backup",
      {LF{"backup", backup.string()}, LF{"data_dir", data.string()}});
  return absl::OkStatus();
}

}  // namespace bursar::server
