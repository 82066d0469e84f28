// bursarctl: the command-line client of bursard. Finance sets and reads
// budgets with it; platform admins check, diff and push policies (from CI);
// anyone can try out Check and Report.
//
// This file owns the global flags, help, and dispatch: it finds the command,
// checks the command line against it (usage errors exit 2), parses the
// flags with absl, and runs the command.

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/alert_commands.h"
#include "cli/backup_commands.h"
#include "cli/budget_commands.h"
#include "cli/command.h"
#include "cli/command_line.h"
#include "cli/credentials.h"
#include "cli/decision_commands.h"
#include "cli/output.h"
#include "cli/policy_commands.h"
#include "cli/token_commands.h"
#include "cli/usage_commands.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, server, "",
          "host:port of bursard. Default: $BURSAR_SERVER if set, else "
          "127.0.0.1:8081.");
ABSL_FLAG(bool, json, false,
          "Print the response message as JSON (proto3 JSON mapping, field "
          "names as in the .proto files, int64 values as strings), for "
          "scripts.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5),
          "Deadline of each call to the server, e.g. 500ms or 10s.");
ABSL_FLAG(std::string, actor, "",
          "Who makes an admin change, for the audit log, when the server "
          "runs without authentication (with it, the token's or "
          "certificate's name counts). Default: $USER, else \"unknown\".");
ABSL_FLAG(std::string, token, "",
          "Bearer token to send (visible in the process list: prefer "
          "--token_file or $BURSAR_TOKEN). Default: --token_file, else "
          "$BURSAR_TOKEN.");
ABSL_FLAG(std::string, token_file, "",
          "File whose first line is the bearer token to send.");
ABSL_FLAG(std::string, tls_ca, "",
          "Connect with TLS, trusting the CA certificates in this PEM file "
          "(default with --tls_cert or --tls_server_name: the system's "
          "roots).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate chain for mutual TLS (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "The name to verify the server's certificate against, when it is "
          "not the host in --server (e.g. --server=127.0.0.1:8081 "
          "--tls_server_name=bursar.internal).");

namespace bursar::cli {
namespace {

constexpr char kDefaultServer[] = "127.0.0.1:8081";
constexpr size_t kHelpWidth = 80;
const std::vector<std::string> kGlobalFlags = {
    "server",     "json",   "timeout",  "actor",   "token",
    "token_file", "tls_ca", "tls_cert", "tls_key", "tls_server_name"};

std::vector<Command> AllCommands() {
  std::vector<Command> commands = BudgetCommands();
  for (Command& c : DecisionCommands()) commands.push_back(std::move(c));
  for (Command& c : PolicyCommands()) commands.push_back(std::move(c));
  for (Command& c : TokenCommands()) commands.push_back(std::move(c));
  for (Command& c : AlertCommands()) commands.push_back(std::move(c));
  for (Command& c : UsageCommands()) commands.push_back(std::move(c));
  for (Command& c : BackupCommands()) commands.push_back(std::move(c));
  return commands;
}

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": cannot read it"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The channel to --server: TLS when any --tls_* flag is given, else
// plaintext.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(
    const std::string& server) {
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (ca.empty() && cert.empty() && key.empty() && server_name.empty()) {
    return grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  }
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS needs both --tls_cert and --tls_key");
  }
  grpc::SslCredentialsOptions options;
  for (auto [path, flag, out] :
       {std::tuple{ca, "tls_ca", &options.pem_root_certs},
        std::tuple{cert, "tls_cert", &options.pem_cert_chain},
        std::tuple{key, "tls_key", &options.pem_private_key}}) {
    if (path.empty()) continue;
    absl::StatusOr<std::string> pem = ReadPem(path, flag);
    if (!pem.ok()) return pem.status();
    *out = *std::move(pem);
  }
  grpc::ChannelArguments arguments;
  if (!server_name.empty()) {
    arguments.SetSslTargetNameOverride(server_name);
  }
  return grpc::CreateCustomChannel(server, grpc::SslCredentials(options),
                                   arguments);
}

std::optional<FlagKind> RegisteredFlagKind(absl::string_view name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr) return std::nullopt;
  return flag->IsOfType<bool>() ? FlagKind::kBool : FlagKind::kValue;
}

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : std::string(fallback);
}

std::string FlagHelp(const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, std::string>> lines;
  for (const std::string& name : names) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    lines.push_back({absl::StrCat("--", name),
                     flag != nullptr ? flag->Help() : std::string()});
  }
  return RenderWrappedKeyValues(lines, 2, kHelpWidth);
}

void PrintHelp(const std::vector<Command>& commands, std::ostream& out) {
  out << "bursarctl: the command-line client of bursard, the Bursar budget "
         "service.\n\n"
         "Usage: bursarctl COMMAND [ARGUMENTS] [FLAGS]   (flags may come "
         "anywhere)\n\n"
         "Commands:\n";
  const std::string help_name = "help [COMMAND]";
  size_t width = help_name.size();
  for (const Command& c : commands) width = std::max(width, c.Name().size());
  auto padded = [width](std::string name) {
    name.resize(width, ' ');
    return name;
  };
  // Examples stay on one line each, to copy and paste.
  for (const Command& c : commands) {
    out << RenderWrappedKeyValues({{padded(c.Name()), c.summary}}, 2,
                                  kHelpWidth)
        << "      " << c.example << "\n";
  }
  out << RenderWrappedKeyValues(
             {{padded(help_name), "This list, or the flags of a command."}}, 2,
             kHelpWidth)
      << "\nGlobal flags:\n"
      << FlagHelp(kGlobalFlags)
      << "\nExit status: 0 done (a DENY verdict too), 1 the server answered "
         "with an error\n(or: policy check/push, the files do not compile; "
         "policy diff, they differ\nfrom the active version), 2 the command "
         "line is wrong.\n";
}

void PrintCommandHelp(const Command& command, std::ostream& out) {
  out << RenderWrappedKeyValues(
             {{"Usage:", absl::StrCat("bursarctl ", command.Name(), " ",
                                      command.synopsis)}},
             0, kHelpWidth)
      << "\n"
      << absl::StrJoin(
             WrapText(absl::StrCat(command.summary, " ", command.details),
                      kHelpWidth),
             "\n")
      << "\n";
  if (!command.flags.empty()) {
    out << "\nFlags:\n" << FlagHelp(command.flags);
  }
  out << "\nGlobal flags: --" << absl::StrJoin(kGlobalFlags, ", --")
      << " (see 'bursarctl help').\n\nExample:\n  " << command.example << "\n";
}

// The command whose words start `positional`, or nullptr.
const Command* FindCommand(const std::vector<Command>& commands,
                           const std::vector<std::string>& positional) {
  for (const Command& c : commands) {
    if (positional.size() >= c.words.size() &&
        std::equal(c.words.begin(), c.words.end(), positional.begin())) {
      return &c;
    }
  }
  return nullptr;
}

// A usage error for words that name no command.
int UnknownCommand(const std::vector<Command>& commands,
                   const std::vector<std::string>& positional) {
  std::vector<std::string> subcommands;
  for (const Command& c : commands) {
    if (c.words.size() > 1 && c.words[0] == positional[0]) {
      subcommands.push_back(c.words[1]);
    }
  }
  if (subcommands.empty()) {
    std::cerr << "bursarctl: unknown command \"" << positional[0]
              << "\"\nRun 'bursarctl help' for the list of commands.\n";
    return kExitUsageError;
  }
  const std::string problem =
      positional.size() < 2
          ? "missing the subcommand; "
          : absl::StrCat("unknown command \"", positional[1], "\"; ");
  std::cerr << "bursarctl " << positional[0] << ": " << problem << "one of "
            << absl::StrJoin(subcommands, ", ") << "\n"
            << "Run 'bursarctl help' for the list of commands.\n";
  return kExitUsageError;
}

// Checks the scanned command line against `command`: flags it accepts, with
// values that parse, the required ones given, its positional arguments.
// Returns kExitOk or the exit status of a usage error already printed.
int CheckCommandLine(const Command& command,
                     const std::vector<Command>& commands,
                     const ScannedCommandLine& scanned) {
  const std::string name = command.Name();
  std::set<std::string> accepted(kGlobalFlags.begin(), kGlobalFlags.end());
  accepted.insert(command.flags.begin(), command.flags.end());
  std::set<std::string> ours = accepted;
  for (const Command& c : commands) ours.insert(c.flags.begin(), c.flags.end());
  std::set<std::string> given;
  for (const FlagArg& flag : scanned.flags) {
    if (accepted.count(flag.name) == 0) {
      return UsageError(
          name, ours.count(flag.name) > 0
                    ? absl::StrCat("--", flag.name, " is not a flag of ", name)
                    : absl::StrCat("unknown flag --", flag.name));
    }
    // Parsing here (absl parses again, to the same value) makes a malformed
    // value a usage error rather than absl's exit 1.
    std::string error;
    if (!absl::FindCommandLineFlag(flag.name)->ParseFrom(flag.value, &error)) {
      return UsageError(
          name, absl::StrCat("--", flag.name, "=", flag.value, ": ", error));
    }
    given.insert(flag.name);
  }
  const size_t got = scanned.positional.size() - command.words.size();
  if (got < command.args.size()) {
    return UsageError(name, absl::StrCat("missing ", command.args[got]));
  }
  const size_t most = command.args.size() + command.optional_args.size();
  if (got > most) {
    return UsageError(
        name,
        absl::StrCat("unexpected argument \"",
                     scanned.positional[command.words.size() + most], "\""));
  }
  for (const std::string& required : command.required) {
    if (given.count(required) == 0) {
      return UsageError(name, absl::StrCat("missing --", required));
    }
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Run 'bursarctl help' for the commands.");
  const std::vector<Command> commands = AllCommands();
  const std::vector<std::string> args(argv + 1, argv + argc);

  absl::StatusOr<ScannedCommandLine> scanned =
      ScanCommandLine(args, RegisteredFlagKind);
  if (!scanned.ok()) {
    std::cerr << "bursarctl: " << scanned.status().message()
              << "\nRun 'bursarctl help' for the commands and their flags.\n";
    return kExitUsageError;
  }
  std::vector<std::string> positional = scanned->positional;
  if (!positional.empty() && positional[0] == "help") {
    positional.erase(positional.begin());
    scanned->help = true;
  }
  if (positional.empty()) {
    PrintHelp(commands, scanned->help ? std::cout : std::cerr);
    return scanned->help ? kExitOk : kExitUsageError;
  }
  const Command* command = FindCommand(commands, positional);
  if (command == nullptr && scanned->help && positional.size() == 1 &&
      std::any_of(commands.begin(), commands.end(), [&](const Command& c) {
        return c.words.size() > 1 && c.words[0] == positional[0];
      })) {
    PrintHelp(commands, std::cout);  // "bursarctl budget --help"
    return kExitOk;
  }
  if (command == nullptr) return UnknownCommand(commands, positional);
  if (scanned->help) {
    PrintCommandHelp(*command, std::cout);
    return kExitOk;
  }
  if (const int status = CheckCommandLine(*command, commands, *scanned);
      status != kExitOk) {
    return status;
  }

  // The command line is valid; absl sets the flags and returns the program
  // name followed by the positional arguments.
  const std::vector<char*> parsed = absl::ParseCommandLine(argc, argv);
  const std::vector<std::string> command_args(
      parsed.begin() + 1 + static_cast<std::ptrdiff_t>(command->words.size()),
      parsed.end());

  CommandContext context;
  context.command = command->Name();
  context.server = absl::GetFlag(FLAGS_server);
  if (context.server.empty()) {
    context.server = EnvOr("BURSAR_SERVER", kDefaultServer);
  }
  context.timeout = absl::GetFlag(FLAGS_timeout);
  if (context.timeout <= absl::ZeroDuration()) {
    return UsageError(context.command, "--timeout: must be positive, e.g. 5s");
  }
  context.json = absl::GetFlag(FLAGS_json);
  context.actor = absl::GetFlag(FLAGS_actor);
  if (context.actor.empty()) context.actor = EnvOr("USER", "unknown");
  const char* env_token = std::getenv("BURSAR_TOKEN");
  absl::StatusOr<std::string> token =
      ResolveToken(absl::GetFlag(FLAGS_token), absl::GetFlag(FLAGS_token_file),
                   env_token != nullptr && *env_token != '\0'
                       ? std::optional<std::string>(env_token)
                       : std::nullopt);
  if (!token.ok()) return UsageError(context.command, token.status().message());
  context.token = *std::move(token);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      NewChannel(context.server);
  if (!channel.ok()) {
    return UsageError(context.command, channel.status().message());
  }
  context.channel = *std::move(channel);
  return command->run(context, command_args);
}

}  // namespace
}  // namespace bursar::cli

int main(int argc, char** argv) { return bursar::cli::Main(argc, argv); }
