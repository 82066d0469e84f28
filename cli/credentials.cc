#include "cli/credentials.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace bursar::cli {
namespace {

absl::StatusOr<std::string> Checked(absl::string_view token,
                                    absl::string_view source) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(token);
  for (char c : trimmed) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) ||
        absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(source,
                       ": the token has a space or control character inside; "
                       "give the token alone"));
    }
  }
  return std::string(trimmed);
}

}  // namespace

absl::StatusOr<std::string> ResolveToken(absl::string_view token_flag,
                                         const std::string& token_file,
                                         std::optional<std::string> env_token) {
  if (!token_flag.empty() && !token_file.empty()) {
    return absl::InvalidArgumentError(
        "give the token once: --token or --token_file, not both");
  }
  if (!token_flag.empty()) return Checked(token_flag, "--token");
  if (!token_file.empty()) {
    std::ifstream in(token_file, std::ios::binary);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file=", token_file,
                       ": cannot read it: ", std::strerror(errno)));
    }
    std::string first_line;
    std::getline(in, first_line);
    absl::StatusOr<std::string> token =
        Checked(first_line, absl::StrCat("--token_file=", token_file));
    if (token.ok() && token->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--token_file=", token_file, ": no token on its first line"));
    }
    return token;
  }
  if (env_token.has_value()) return Checked(*env_token, "$BURSAR_TOKEN");
  return std::string();
}

}  // namespace bursar::cli
