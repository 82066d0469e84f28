#ifndef BURSAR_CLI_CREDENTIALS_H_
#define BURSAR_CLI_CREDENTIALS_H_

// How bursarctl proves who it is: the bearer token it sends, from --token,
// --token_file or $BURSAR_TOKEN (in that order). Pure: no gRPC.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace bursar::cli {

// The token to send; "" for none. `env_token` is $BURSAR_TOKEN (nullopt
// when unset). The file holds the token on its first line (surrounding
// whitespace is dropped). INVALID_ARGUMENT when both --token and
// --token_file are given, the file cannot be read or holds no token, or the
// token has whitespace inside; the message never contains the token.
absl::StatusOr<std::string> ResolveToken(absl::string_view token_flag,
                                         const std::string& token_file,
                                         std::optional<std::string> env_token);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_CREDENTIALS_H_
