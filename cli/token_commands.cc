#include "cli/token_commands.h"

#include <termios.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "bursar/v1/admin.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/auth/role.h"
#include "server/auth/sha256.h"
#include "server/auth/tokens_file.h"

ABSL_FLAG(std::string, name, "",
          "token: who holds the token (letters, digits, . _ - @ :); bursard "
          "names them so in the audit log.");
ABSL_FLAG(std::string, role, "",
          "token: the token's role: gateway, finance, policy-admin or "
          "viewer.");

namespace bursar::cli {
namespace {

namespace auth = ::bursar::server::auth;

// --name and --role, checked; "" for both when neither is given.
int CheckNameAndRole(const CommandContext& context, bool required,
                     std::string* name, std::string* role) {
  *name = absl::GetFlag(FLAGS_name);
  *role = absl::GetFlag(FLAGS_role);
  if (!required && name->empty() && role->empty()) return kExitOk;
  if (name->empty() || role->empty()) {
    return UsageError(context.command,
                      "give both --name and --role (for the tokens-file "
                      "entry)");
  }
  // The same rules as bursard's tokens file, by parsing the entry.
  const std::string entry =
      absl::StrCat("tokens:\n", auth::TokensFileEntry(*name, *role, "probe"));
  absl::StatusOr<std::vector<auth::TokenEntry>> parsed =
      auth::ParseTokensFile(entry, "--name/--role");
  if (!parsed.ok()) {
    const std::string message(parsed.status().message());
    const size_t field = message.find("tokens[0].");
    return UsageError(context.command,
                      field == std::string::npos
                          ? message
                          : absl::StrCat("--", message.substr(field + 10)));
  }
  return kExitOk;
}

int PrintEntry(const CommandContext& context, absl::string_view name,
               absl::string_view role, absl::string_view token,
               bool with_token) {
  const std::string sha256 = auth::DigestToHex(auth::Sha256(token));
  if (context.json) {
    google::protobuf::Struct out;
    auto& fields = *out.mutable_fields();
    if (with_token) fields["token"].set_string_value(std::string(token));
    if (!name.empty()) fields["name"].set_string_value(std::string(name));
    if (!role.empty()) fields["role"].set_string_value(std::string(role));
    fields["sha256"].set_string_value(sha256);
    return PrintJson(out);
  }
  if (with_token) {
    std::cout << "token (give it to " << name
              << "; it is printed only this once and bursard keeps only its "
                 "hash):\n  "
              << token << "\n";
  }
  if (name.empty()) {
    std::cout << sha256 << "\n";
    return kExitOk;
  }
  std::cout << (with_token ? "\n" : "")
            << "tokens-file entry (add it under `tokens:` in bursard's "
               "--tokens_file):\n"
            << auth::TokensFileEntry(name, role, token);
  return kExitOk;
}

int New(const CommandContext& context, const std::vector<std::string>&) {
  std::string name, role;
  if (int s = CheckNameAndRole(context, /*required=*/true, &name, &role);
      s != kExitOk) {
    return s;
  }
  return PrintEntry(context, name, role, auth::NewRandomToken(),
                    /*with_token=*/true);
}

int Hash(const CommandContext& context, const std::vector<std::string>&) {
  std::string name, role;
  if (int s = CheckNameAndRole(context, /*required=*/false, &name, &role);
      s != kExitOk) {
    return s;
  }
  std::string token = context.token;
  if (token.empty()) {
    // Typed at a terminal: not echoed, so it stays off the screen.
    termios saved;
    const bool tty =
        isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
      std::cerr << "token: ";
    }
    std::getline(std::cin, token);
    if (tty) {
      tcsetattr(STDIN_FILENO, TCSANOW, &saved);
      std::cerr << "\n";
    }
    token = std::string(absl::StripAsciiWhitespace(token));
  }
  if (token.empty()) {
    return UsageError(context.command,
                      "no token: give it on standard input, or with "
                      "--token_file or $BURSAR_TOKEN");
  }
  return PrintEntry(context, name, role, token, /*with_token=*/false);
}

}  // namespace

std::vector<Command> TokenCommands() {
  return {
      {.words = {"token", "new"},
       .flags = {"name", "role"},
       .required = {"name", "role"},
       .synopsis = "--name NAME --role gateway|finance|policy-admin|viewer",
       .summary = "Make a random bearer token and its tokens-file entry.",
       .details = "Prints the token (256 random bits; hand it to its holder, "
                  "it is not shown again) and the entry to add to bursard's "
                  "--tokens_file, which holds only the token's SHA-256. No "
                  "server is contacted.",
       .example = "bursarctl token new --name gateway-prod --role gateway",
       .run = New},
      {.words = {"token", "hash"},
       .flags = {"name", "role"},
       .synopsis = "[--name NAME --role ROLE]  (token on standard input, or "
                   "--token_file / $BURSAR_TOKEN)",
       .summary = "Print the SHA-256 of a token, for the tokens file.",
       .details = "Reads the token from standard input (one line), or from "
                  "--token_file or $BURSAR_TOKEN, and prints its SHA-256 as "
                  "64 hex digits; with --name and --role, the whole "
                  "tokens-file entry. No server is contacted.",
       .example = "bursarctl token hash --name dana --role finance < "
                  "dana.token",
       .run = Hash},
  };
}

}  // namespace bursar::cli
