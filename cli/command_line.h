#ifndef BURSAR_CLI_COMMAND_LINE_H_
#define BURSAR_CLI_COMMAND_LINE_H_

// A first pass over bursarctl's command line, before absl::ParseCommandLine
// sets the flags: it finds the command words and the flags given, so that
// bursarctl can answer --help itself and turn every command-line mistake
// (unknown flag, flag of another command, missing value) into a usage error
// with exit status 2. absl's parser, which would print its own message and
// exit 1, then only ever sees valid command lines.
//
// Its rules are absl's: "--name=value" or "-name=value"; a non-bool flag
// without "=" takes the next argument as its value; a bool flag never does
// ("--dry_run", "--dry_run=false", "--nodry_run"); "--" ends the flags; "-"
// alone is positional.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bursar::cli {

// How a known flag takes its value.
enum class FlagKind { kBool, kValue };

// One flag as given. For "--noname", `name` is "name" and `value` "false";
// for a bare bool flag `value` is "true".
struct FlagArg {
  std::string name;
  std::string value;
};

struct ScannedCommandLine {
  // Positional arguments, in order (the command words first).
  std::vector<std::string> positional;
  std::vector<FlagArg> flags;
  // --help, -h, --helpfull, --helpshort or -? was given.
  bool help = false;
};

// `args` excludes the program name. `kind_of` says how a flag takes its
// value, or nullopt for an unknown flag. INVALID_ARGUMENT names the argument
// at fault: an unknown flag, a non-bool flag with no value after it, a
// "--noname" of a non-bool flag.
absl::StatusOr<ScannedCommandLine> ScanCommandLine(
    const std::vector<std::string>& args,
    const std::function<std::optional<FlagKind>(absl::string_view name)>&
        kind_of);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_COMMAND_LINE_H_
