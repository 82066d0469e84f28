#include "server/log.h"

#include <cstdio>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace bursar::server {
namespace {

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void AppendValue(std::string& line, absl::string_view value) {
  const bool plain =
      !value.empty() && value.find_first_of(" \"=\t\n\\") == value.npos;
  if (plain) {
    absl::StrAppend(&line, value);
  } else {
    absl::StrAppend(&line, "\"", absl::CEscape(value), "\"");
  }
}

}  // namespace

std::string FormatLogLine(absl::string_view timestamp, LogLevel level,
                          absl::string_view message,
                          std::initializer_list<LogField> fields) {
  std::string line = absl::StrCat("ts=", timestamp, " level=", LevelName(level),
                                  " msg=");
  AppendValue(line, message);
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&line, " ", key, "=");
    AppendValue(line, value);
  }
  return line;
}

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields) {
  const std::string timestamp = absl::FormatTime(
      "%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
  std::string line = FormatLogLine(timestamp, level, message, fields);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace bursar::server
