#ifndef BURSAR_SERVER_LOG_H_
#define BURSAR_SERVER_LOG_H_

// Structured one-line logs on stderr:
//   ts=2026-11-22T15:00:00.123456Z level=info msg="listening" addr=127.0.0.1:8081
// Values with spaces, quotes or '=' are quoted and escaped. Never pass a
// secret (token, key) as a field.

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace bursar::server {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogField = std::pair<absl::string_view, std::string>;

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields = {});

// The line Log would write, without the trailing newline (for tests).
std::string FormatLogLine(absl::string_view timestamp, LogLevel level,
                          absl::string_view message,
                          std::initializer_list<LogField> fields);

}  // namespace bursar::server

#endif  // BURSAR_SERVER_LOG_H_
