#include "server/clock.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"

namespace bursar::server {

absl::Time FileClock::Now() {
  std::ifstream in(path_);
  std::stringstream text;
  text << in.rdbuf();
  const std::string current(absl::StripAsciiWhitespace(text.str()));
  absl::MutexLock lock(&mu_);
  if (current != last_text_) {
    absl::Time parsed;
    std::string error;
    if (absl::ParseTime(absl::RFC3339_full, current, &parsed, &error)) {
      now_ = parsed;
      last_text_ = current;
    }
  }
  return now_;
}

}  // namespace bursar::server
