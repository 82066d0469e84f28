#include "cli/command_line.h"

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bursar::cli {
namespace {

// Whether `arg`, found where a flag's value should be, is rather "--" or a
// known flag (as in "--reason --json", a forgotten value).
bool LooksLikeFlag(
    absl::string_view arg,
    const std::function<std::optional<FlagKind>(absl::string_view name)>&
        kind_of) {
  if (arg == "--") return true;
  if (arg.size() < 2 || arg[0] != '-') return false;
  absl::string_view name = arg.substr(arg[1] == '-' ? 2 : 1);
  name = name.substr(0, name.find('='));
  return kind_of(name).has_value() ||
         (absl::StartsWith(name, "no") && kind_of(name.substr(2)).has_value());
}

}  // namespace

absl::StatusOr<ScannedCommandLine> ScanCommandLine(
    const std::vector<std::string>& args,
    const std::function<std::optional<FlagKind>(absl::string_view name)>&
        kind_of) {
  ScannedCommandLine scanned;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      scanned.positional.insert(
          scanned.positional.end(),
          args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      scanned.positional.emplace_back(arg);
      continue;
    }
    if (arg == "-h" || arg == "-?" || arg == "--help" || arg == "-help" ||
        arg == "--helpfull" || arg == "--helpshort") {
      scanned.help = true;
      continue;
    }
    absl::string_view text = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = text.find('=');
    const absl::string_view name = text.substr(0, eq);
    const bool has_value = eq != absl::string_view::npos;
    const absl::string_view value = has_value ? text.substr(eq + 1) : "";

    std::optional<FlagKind> kind = kind_of(name);
    if (!kind.has_value() && absl::StartsWith(name, "no")) {
      // --noname: a bool flag set to false.
      std::optional<FlagKind> negated = kind_of(name.substr(2));
      if (negated == FlagKind::kBool && !has_value) {
        scanned.flags.push_back({std::string(name.substr(2)), "false"});
        continue;
      }
      if (negated.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat(arg, ": write --", name.substr(2), "=false"));
      }
    }
    if (!kind.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
    if (has_value) {
      scanned.flags.push_back({std::string(name), std::string(value)});
    } else if (*kind == FlagKind::kBool) {
      scanned.flags.push_back({std::string(name), "true"});
    } else if (i + 1 < args.size() && !LooksLikeFlag(args[i + 1], kind_of)) {
      scanned.flags.push_back({std::string(name), args[++i]});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(arg, " needs a value, e.g. ", arg, "=VALUE"));
    }
  }
  return scanned;
}

}  // namespace bursar::cli
