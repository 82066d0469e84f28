#ifndef BURSAR_CLI_COMMAND_H_
#define BURSAR_CLI_COMMAND_H_

// What every bursarctl command shares: its description (for dispatch and
// help), the context it runs in (channel, deadline, output mode), and the
// one way to end with an error (exit codes below).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace bursar::cli {

// bursarctl's exit status.
inline constexpr int kExitOk = 0;          // done (a DENY verdict included)
inline constexpr int kExitRpcError = 1;    // the server answered with an error
inline constexpr int kExitUsageError = 2;  // the command line is wrong
// policy check / push: the files do not compile (nothing was pushed);
// policy diff: the directory differs from the active version (as diff(1)).
inline constexpr int kExitPolicyRejected = 1;

// Everything a command needs besides its own flags.
struct CommandContext {
  std::shared_ptr<grpc::Channel> channel;
  // host:port of the server, for error hints.
  std::string server;
  // The deadline of every call, from the time the call starts.
  absl::Duration timeout;
  // Print response messages as JSON instead of for people.
  bool json = false;
  // Who makes admin changes (for the audit log; a server with
  // authentication records the authenticated caller instead).
  std::string actor;
  // The bearer token every call sends ("authorization: Bearer ..."); empty:
  // none.
  std::string token;
  // e.g. "budget set", for messages.
  std::string command;
};

// One command: its words on the command line, its arguments and flags.
struct Command {
  using Run = std::function<int(const CommandContext& context,
                                const std::vector<std::string>& args)>;

  // e.g. {"budget", "set"}.
  std::vector<std::string> words;
  // Names of the positional arguments after the words, e.g. {"NAME"}; the
  // command takes exactly these, then at most `optional_args` (which a run
  // sees only when given).
  std::vector<std::string> args;
  std::vector<std::string> optional_args;
  // Flags of this command (names without dashes); `required` ones must be
  // given on the command line. Global flags are accepted by every command.
  std::vector<std::string> flags;
  std::vector<std::string> required;
  // The usage line after "bursarctl <words>", e.g. "NAME --amount USD ...".
  std::string synopsis;
  // One sentence for the command list, then more for `help COMMAND`.
  std::string summary;
  std::string details;
  // One example command line.
  std::string example;
  Run run;

  std::string Name() const;  // words joined by spaces
};

// Prints "bursarctl <command>: <problem>" and how to get help to stderr;
// returns kExitUsageError.
int UsageError(absl::string_view command, absl::string_view problem);

// Prints "bursarctl: <CODE NAME>: <message>" (and, for an unreachable server
// or a missed deadline, what to try) to stderr; returns kExitRpcError.
int RpcError(const CommandContext& context, const grpc::Status& status);

// A client context whose deadline is context.timeout from now, carrying the
// bearer token if there is one.
std::unique_ptr<grpc::ClientContext> NewCall(const CommandContext& context);

// A stub of the Admin service on the command's channel.
std::unique_ptr<v1::Admin::Stub> AdminStub(const CommandContext& context);

// Prints `response` as JSON to stdout; kExitOk, or kExitRpcError if it
// cannot be printed.
int PrintJson(const google::protobuf::Message& response);

}  // namespace bursar::cli

#endif  // BURSAR_CLI_COMMAND_H_
