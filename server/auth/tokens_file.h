#ifndef BURSAR_SERVER_AUTH_TOKENS_FILE_H_
#define BURSAR_SERVER_AUTH_TOKENS_FILE_H_

// The tokens file (bursard --tokens_file): who holds a bearer token, with
// which role. It stores only the SHA-256 of each token, never the token
// (`bursarctl token new` / `bursarctl token hash` print the line to add).
// Format (docs/security.md):
//
//   tokens:
//     - name: gateway-prod        # who: goes to the audit log and logs
//       role: gateway             # gateway | finance | policy-admin | viewer
//       sha256:
//       9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// Unknown keys, a missing or repeated field, a name or hash given twice, a
// role that does not exist and a hash that is not 64 hex digits are errors;
// so is a `token:` key holding a plaintext token.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/role.h"
#include "server/auth/sha256.h"

namespace bursar::server::auth {

inline constexpr size_t kMaxTokensFileBytes = 1 << 20;
inline constexpr size_t kMaxTokenNameBytes = 128;

struct TokenEntry {
  std::string name;
  Role role;
  Sha256Digest sha256;
};

// The entries of a tokens file's text; INVALID_ARGUMENT with
// "PATH:LINE:COLUMN: tokens[i].field: what to fix" for the first problem
// (the message never repeats a hash or token from the file).
absl::StatusOr<std::vector<TokenEntry>> ParseTokensFile(
    absl::string_view content, absl::string_view path);

// Reads and parses the file at `path`; NOT_FOUND / PERMISSION_DENIED-like
// errors name the path.
absl::StatusOr<std::vector<TokenEntry>> LoadTokensFile(const std::string& path);

// The lines of a tokens-file entry for `token` (what `bursarctl token hash`
// prints), e.g. "  - name: NAME\n    role: ROLE\n    sha256: <hex>\n".
std::string TokensFileEntry(absl::string_view name, absl::string_view role,
                            absl::string_view token);

}  // namespace bursar::server::auth

#endif  // BURSAR_SERVER_AUTH_TOKENS_FILE_H_
