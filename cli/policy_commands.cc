#include "cli/policy_commands.h"

#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bursar/v1/admin.grpc.pb.h"
#include "cli/output.h"
#include "cli/policy_output.h"
#include "policy/loader.h"
#include "policy/policy_tests.h"
#include "server/policy_files.h"

ABSL_FLAG(std::string, message, "",
          "policy push: why the change is made (e.g. the commit subject); "
          "stored with the version and in the audit log.");
ABSL_FLAG(std::string, author, "",
          "policy push: who pushes, stored with the version (e.g. the commit "
          "author). Default: --actor.");
ABSL_FLAG(std::string, file, "",
          "policy get: print only this file of the version (its path as "
          "listed), exactly as stored.");
ABSL_FLAG(bool, shadow, false,
          "policy push: run the version in shadow beside the active one "
          "instead of activating it (see 'policy shadow').");
ABSL_FLAG(bool, stop, false,
          "policy shadow: stop the shadow version (with --reason) and print "
          "its last report.");
ABSL_DECLARE_FLAG(bool, dry_run);
ABSL_DECLARE_FLAG(std::string, reason);
ABSL_DECLARE_FLAG(int32_t, limit);

namespace bursar::cli {
namespace {

// The files of the policy directory `dir`; policy tests (*_test.yaml) too
// unless `with_tests` is false. On failure prints why and sets *exit.
std::optional<std::vector<policy::SourceFile>> ReadDir(
    const CommandContext& context, const std::string& dir, bool with_tests,
    int* exit) {
  absl::StatusOr<std::vector<policy::SourceFile>> files =
      server::ReadPolicyDir(dir);
  if (!files.ok()) {
    if (absl::IsNotFound(files.status()) ||
        absl::IsInvalidArgument(files.status())) {
      *exit = UsageError(context.command, files.status().message());
    } else {
      std::cerr << "bursarctl " << context.command << ": "
                << files.status().message() << "\n";
      *exit = kExitRpcError;
    }
    return std::nullopt;
  }
  if (with_tests) return *std::move(files);
  std::vector<policy::SourceFile> kept;
  for (policy::SourceFile& file : *files) {
    if (!server::IsPolicyTestFile(file.path)) kept.push_back(std::move(file));
  }
  return kept;
}

// The first line of a (commit) message, for tables.
std::string FirstLine(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// --- policy check --------------------------------------------------------

int PolicyCheck(const CommandContext& context,
                const std::vector<std::string>& args) {
  const std::string& dir = args[0];
  int exit = kExitOk;
  std::optional<std::vector<policy::SourceFile>> files =
      ReadDir(context, dir, /*with_tests=*/true, &exit);
  if (!files.has_value()) return exit;
  const policy::CompileResult compiled = policy::CompilePolicy(*files);
  int errors = 0;
  int warnings = 0;
  for (const policy::Diagnostic& d : compiled.diagnostics) {
    (d.severity == policy::Diagnostic::Severity::kError ? errors : warnings)++;
  }
  const int status = compiled.policy == nullptr ? kExitPolicyRejected : kExitOk;
  if (context.json) {
    // The shape of a dry-run push's answer.
    v1::PushPolicyResponse response;
    for (const policy::Diagnostic& d : compiled.diagnostics) {
      *response.add_diagnostics() = server::DiagnosticToProto(d);
    }
    if (compiled.policy != nullptr) {
      response.set_compiled_version(compiled.policy->version());
    }
    const int printed = PrintJson(response);
    return printed != kExitOk ? printed : status;
  }
  for (const policy::Diagnostic& d : compiled.diagnostics) {
    std::cout << policy::FormatDiagnostic(d) << "\n";
  }
  if (compiled.policy == nullptr) {
    std::cout << dir << ": " << CountDiagnostics(errors, warnings)
              << "; the policy does not compile\n";
    return status;
  }
  size_t tests = 0;
  for (const policy::SourceFile& f : *files) {
    if (server::IsPolicyTestFile(f.path)) ++tests;
  }
  std::cout << dir << ": OK, version " << compiled.policy->version() << " ("
            << files->size() - tests << " policy files"
            << (warnings > 0 ? absl::StrCat(", ", CountDiagnostics(0, warnings))
                             : "")
            << ")\n";
  return status;
}

// --- policy push ---------------------------------------------------------

int PolicyPush(const CommandContext& context,
               const std::vector<std::string>& args) {
  const std::string& dir = args[0];
  int exit = kExitOk;
  // Policy tests stay behind: the server leaves them out of versions.
  std::optional<std::vector<policy::SourceFile>> files =
      ReadDir(context, dir, /*with_tests=*/false, &exit);
  if (!files.has_value()) return exit;
  if (files->empty()) {
    return UsageError(context.command,
                      absl::StrCat("\"", dir,
                                   "\" has only policy tests (*_test.yaml), "
                                   "no policy file"));
  }
  v1::PushPolicyRequest request;
  for (policy::SourceFile& file : *files) {
    v1::PolicyFile* out = request.add_files();
    out->set_path(std::move(file.path));
    out->set_content(std::move(file.content));
  }
  request.set_dry_run(absl::GetFlag(FLAGS_dry_run));
  request.set_shadow(absl::GetFlag(FLAGS_shadow));
  const std::string author = absl::GetFlag(FLAGS_author);
  request.set_author(author.empty() ? context.actor : author);
  request.set_message(absl::GetFlag(FLAGS_message));

  v1::PushPolicyResponse response;
  const grpc::Status status = AdminStub(context)->PushPolicy(
      NewCall(context).get(), request, &response);
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
      !context.json) {
    // "N errors; ...:\n  file:line:column: ..." — the errors, then the verdict.
    const std::string& message = status.error_message();
    const size_t first_break = message.find('\n');
    for (absl::string_view line : absl::StrSplit(
             absl::string_view(message).substr(first_break == std::string::npos
                                                   ? message.size()
                                                   : first_break + 1),
             '\n', absl::SkipEmpty())) {
      std::cout << absl::StripLeadingAsciiWhitespace(line) << "\n";
    }
    std::cout << "Rejected: " << message.substr(0, first_break) << "\n";
    return kExitPolicyRejected;
  }
  if (!status.ok()) return RpcError(context, status);
  const bool rejected = response.compiled_version().empty();
  if (context.json) {
    const int printed = PrintJson(response);
    return printed != kExitOk ? printed
           : rejected         ? kExitPolicyRejected
                              : kExitOk;
  }

  int errors = 0;
  int warnings = 0;
  for (const v1::Diagnostic& d : response.diagnostics()) {
    (d.severity() == v1::Diagnostic::SEVERITY_WARNING ? warnings : errors)++;
    std::cout << FormatDiagnostic(d) << "\n";
  }
  if (rejected) {
    std::cout << "Rejected: " << CountDiagnostics(errors, warnings)
              << "; nothing changed on the server.\n";
    return kExitPolicyRejected;
  }
  if (request.dry_run()) {
    std::cout << "Dry run: " << dir << " compiles to version "
              << response.compiled_version() << "; nothing was stored.\n";
  } else if (request.shadow()) {
    if (response.previous_shadow_version() == response.version()) {
      std::cout << "Version " << response.version()
                << " already runs in shadow; nothing changed.\n";
    } else {
      std::cout << "Version " << response.version()
                << " runs in shadow beside active version "
                << response.previous_version()
                << (response.previous_shadow_version().empty()
                        ? ""
                        : absl::StrCat(" (it replaces shadow version ",
                                       response.previous_shadow_version(), ")"))
                << ". See 'bursarctl policy shadow'; promote it with "
                   "'bursarctl policy activate "
                << response.version() << " --reason TEXT'.\n";
    }
  } else if (response.previous_version() == response.version()) {
    std::cout << "Version " << response.version()
              << " is already active; nothing changed.\n";
  } else if (response.created()) {
    std::cout << "Pushed policy version " << response.version() << " (was "
              << OrDash(response.previous_version()) << ").\n";
  } else {
    std::cout << "Activated policy version " << response.version()
              << ", stored earlier with the same content (was "
              << OrDash(response.previous_version()) << ").\n";
  }
  return kExitOk;
}

// --- policy diff ---------------------------------------------------------

int PolicyDiff(const CommandContext& context,
               const std::vector<std::string>& args) {
  const std::string& dir = args[0];
  int exit = kExitOk;
  // The server stores no policy tests, so they are not compared.
  std::optional<std::vector<policy::SourceFile>> local =
      ReadDir(context, dir, /*with_tests=*/false, &exit);
  if (!local.has_value()) return exit;

  v1::GetPolicyResponse response;
  const grpc::Status status = AdminStub(context)->GetPolicy(
      NewCall(context).get(), v1::GetPolicyRequest(), &response);
  if (!status.ok()) return RpcError(context, status);
  std::vector<policy::SourceFile> active;
  for (const v1::PolicyFile& file : response.files()) {
    active.push_back({file.path(), file.content()});
  }
  const std::string& version = response.version().version();
  const PolicyFilesDiff diff =
      DiffPolicyFiles(active, *local, absl::StrCat("active-", version), dir);
  std::cout << diff.text;

  // The summary goes to stderr, so stdout is a patch.
  if (diff.identical()) {
    std::cerr << dir << " matches the active version " << version << ".\n";
    return kExitOk;
  }
  std::vector<std::string> counts;
  if (!diff.changed.empty()) {
    counts.push_back(absl::StrCat(diff.changed.size(), " changed"));
  }
  if (!diff.added.empty()) {
    counts.push_back(absl::StrCat(diff.added.size(), " added"));
  }
  if (!diff.removed.empty()) {
    counts.push_back(absl::StrCat(diff.removed.size(), " removed"));
  }
  const policy::CompileResult compiled = policy::CompilePolicy(*local);
  const size_t files =
      diff.changed.size() + diff.added.size() + diff.removed.size();
  std::cerr << dir << " differs from the active version " << version << " ("
            << files << (files == 1 ? " file: " : " files: ")
            << absl::StrJoin(counts, ", ") << "); "
            << (compiled.policy != nullptr
                    ? absl::StrCat("pushing it makes version ",
                                   compiled.policy->version())
                    : absl::StrCat("it does not compile (bursarctl policy "
                                   "check ",
                                   dir, ")"))
            << ".\n";
  return kExitPolicyRejected;
}

// --- policy list / get / activate ---------------------------------------

int PolicyList(const CommandContext& context,
               const std::vector<std::string>& /*args*/) {
  v1::ListPolicyVersionsResponse response;
  const grpc::Status status = AdminStub(context)->ListPolicyVersions(
      NewCall(context).get(), v1::ListPolicyVersionsRequest(), &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  if (response.versions().empty()) {
    std::cout << "No policy versions stored.\n";
    return kExitOk;
  }
  Table table({"VERSION", "ACTIVE", "SHADOW", "CREATED", "AUTHOR", "MESSAGE"});
  for (const v1::PolicyVersion& v : response.versions()) {
    table.AddRow({v.version(), v.active() ? "*" : "", v.shadow() ? "*" : "",
                  v.created_at(), OrDash(v.author()),
                  OrDash(FirstLine(v.message()))});
  }
  std::cout << table.Render();
  return kExitOk;
}

int PolicyGet(const CommandContext& context,
              const std::vector<std::string>& args) {
  v1::GetPolicyRequest request;
  if (!args.empty()) request.set_version(args[0]);
  v1::GetPolicyResponse response;
  const grpc::Status status =
      AdminStub(context)->GetPolicy(NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);

  const std::string path = absl::GetFlag(FLAGS_file);
  if (!path.empty()) {
    std::vector<std::string> paths;
    for (const v1::PolicyFile& file : response.files()) {
      if (file.path() == path) {
        if (context.json) return PrintJson(file);
        std::cout << file.content();
        return kExitOk;
      }
      paths.push_back(file.path());
    }
    std::cerr << "bursarctl " << context.command << ": version "
              << response.version().version() << " has no file \"" << path
              << "\"; its files: " << absl::StrJoin(paths, ", ") << "\n";
    return kExitRpcError;
  }
  if (context.json) return PrintJson(response);

  const v1::PolicyVersion& v = response.version();
  std::cout << "Policy version " << v.version()
            << (v.active() ? " (active)" : "")
            << (v.shadow() ? " (shadow)" : "") << "\n"
            << RenderKeyValues({{"created", v.created_at()},
                                {"author", OrDash(v.author())},
                                {"message", OrDash(FirstLine(v.message()))}},
                               2)
            << "\n";
  Table table({"FILE", "LINES", "BYTES"});
  table.AlignRight(1);
  table.AlignRight(2);
  for (const v1::PolicyFile& file : response.files()) {
    size_t lines = 0;
    for (char c : file.content()) lines += c == '\n';
    if (!file.content().empty() && file.content().back() != '\n') ++lines;
    table.AddRow({file.path(), absl::StrCat(lines),
                  absl::StrCat(file.content().size())});
  }
  std::cout << table.Render();
  return kExitOk;
}

int PolicyActivate(const CommandContext& context,
                   const std::vector<std::string>& args) {
  v1::ActivatePolicyVersionRequest request;
  request.set_version(args[0]);
  request.set_actor(context.actor);
  request.set_reason(absl::GetFlag(FLAGS_reason));
  v1::ActivatePolicyVersionResponse response;
  const grpc::Status status = AdminStub(context)->ActivatePolicyVersion(
      NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  if (response.previous_version() == response.version().version()) {
    std::cout << "Version " << response.version().version()
              << " is already active; nothing changed.\n";
  } else if (response.promoted_shadow()) {
    std::cout << "Promoted shadow version " << response.version().version()
              << " to active (was " << OrDash(response.previous_version())
              << "); no version runs in shadow now.\n";
  } else {
    std::cout << "Activated policy version " << response.version().version()
              << " (was " << OrDash(response.previous_version()) << ").\n";
  }
  return kExitOk;
}

// --- policy shadow -------------------------------------------------------

int PolicyShadow(const CommandContext& context,
                 const std::vector<std::string>& /*args*/) {
  if (absl::GetFlag(FLAGS_stop)) {
    v1::StopShadowRequest request;
    request.set_actor(context.actor);
    request.set_reason(absl::GetFlag(FLAGS_reason));
    v1::StopShadowResponse response;
    const grpc::Status status = AdminStub(context)->StopShadow(
        NewCall(context).get(), request, &response);
    if (!status.ok()) return RpcError(context, status);
    if (context.json) return PrintJson(response);
    if (response.version().empty()) {
      std::cout << "No policy version runs in shadow; nothing changed.\n";
      return kExitOk;
    }
    std::cout << "Stopped shadow version " << response.version() << ". "
              << "Its last report:\n\n"
              << RenderShadowReport(response.final_report());
    return kExitOk;
  }
  const int32_t limit = absl::GetFlag(FLAGS_limit);
  if (limit <= 0) {
    return UsageError(context.command,
                      "--limit: must be at least 1, e.g. --limit=20");
  }
  v1::GetShadowReportRequest request;
  request.set_sample_limit(limit);
  v1::GetShadowReportResponse response;
  const grpc::Status status = AdminStub(context)->GetShadowReport(
      NewCall(context).get(), request, &response);
  if (!status.ok()) return RpcError(context, status);
  if (context.json) return PrintJson(response);
  std::cout << RenderShadowReport(response);
  return kExitOk;
}

// --- policy test ---------------------------------------------------------

int PolicyTest(const CommandContext& context,
               const std::vector<std::string>& args) {
  const std::string& dir = args[0];
  int exit = kExitOk;
  std::optional<std::vector<policy::SourceFile>> files =
      ReadDir(context, dir, /*with_tests=*/true, &exit);
  if (!files.has_value()) return exit;
  const policy::CompileResult compiled = policy::CompilePolicy(*files);
  if (compiled.policy == nullptr) {
    for (const policy::Diagnostic& d : compiled.diagnostics) {
      std::cout << policy::FormatDiagnostic(d) << "\n";
    }
    std::cout << dir
              << ": the policy does not compile; run 'bursarctl "
                 "policy check "
              << dir << "'\n";
    return kExitPolicyRejected;
  }
  const policy::PolicyTestReport report =
      policy::RunPolicyTests(*compiled.policy, *files);
  for (const policy::Diagnostic& d : report.diagnostics) {
    std::cout << policy::FormatDiagnostic(d) << "\n";
  }
  for (const policy::PolicyTestFailure& failure : report.failures) {
    std::cout << "FAIL " << policy::FormatFailure(failure) << "\n";
  }
  if (report.cases == 0 && report.diagnostics.empty()) {
    std::cout << dir << ": no policy test cases (files named *_test.yaml)\n";
    return kExitOk;
  }
  std::cout << dir << ": " << report.passed << " passed, "
            << report.failures.size() << " failed"
            << (report.diagnostics.empty()
                    ? ""
                    : absl::StrCat(", ", report.diagnostics.size(),
                                   " errors in test files"))
            << "\n";
  return report.ok() ? kExitOk : kExitPolicyRejected;
}

}  // namespace

std::vector<Command> PolicyCommands() {
  return {
      {.words = {"policy", "check"},
       .args = {"DIR"},
       .synopsis = "DIR",
       .summary = "Validate and compile a policy directory (no server).",
       .details = "Reads every .yaml/.yml file under DIR as bursard does and "
                  "prints each error and warning as "
                  "file:line:column: field: message, then the version the "
                  "files compile to. Exit status 1 if any error: run it in CI "
                  "before 'policy push'.",
       .example = "bursarctl policy check policies/example",
       .run = PolicyCheck},
      {.words = {"policy", "test"},
       .args = {"DIR"},
       .synopsis = "DIR",
       .summary = "Run the policy tests (*_test.yaml) of a directory.",
       .details = "Compiles DIR's policy and decides every case of its "
                  "kind: PolicyTest files as Check would, with the case's "
                  "clock and budgets. Prints each failing case as "
                  "file:line: case: expected ..., got ... and exits 1 if any "
                  "fails (no server needed): gate 'policy push' on it in CI.",
       .example = "bursarctl policy test policies/hospital-copilot",
       .run = PolicyTest},
      {.words = {"policy", "push"},
       .args = {"DIR"},
       .flags = {"message", "author", "dry_run", "shadow"},
       .required = {"message"},
       .synopsis = "DIR --message TEXT [--author NAME] [--dry_run] [--shadow]",
       .summary = "Store a policy directory as a new version and activate it.",
       .details = "The server compiles the files again; if any has an error "
                  "it prints the diagnostics, changes nothing and the exit "
                  "status is 1. Otherwise the files become an immutable "
                  "version (their content hash) that Checks use from then on, "
                  "also after a restart. Pushing content that is stored "
                  "already activates that version again. Policy tests "
                  "(*_test.yaml) are not pushed. --dry_run only compiles. "
                  "--shadow stores the version but runs it in shadow beside "
                  "the active one instead: Checks keep their answers, and "
                  "'policy shadow' reports those it would answer "
                  "differently.",
       .example = "bursarctl policy push policies/example --message \"raise "
                  "gpt-4.1 output price\"",
       .run = PolicyPush},
      {.words = {"policy", "diff"},
       .args = {"DIR"},
       .synopsis = "DIR",
       .summary = "Show what pushing a directory would change.",
       .details = "Prints a unified diff (stdout) from the active version's "
                  "files to DIR's, and a summary on stderr. Exit status 0 "
                  "when they are the same, 1 when they differ, as diff(1). "
                  "Policy tests (*_test.yaml) are not compared.",
       .example = "bursarctl policy diff policies/example",
       .run = PolicyDiff},
      {.words = {"policy", "list"},
       .synopsis = "",
       .summary = "List the stored policy versions, newest first.",
       .details = "The active version is marked with *.",
       .example = "bursarctl policy list",
       .run = PolicyList},
      {.words = {"policy", "get"},
       .optional_args = {"VERSION"},
       .flags = {"file"},
       .synopsis = "[VERSION] [--file PATH]",
       .summary = "Show a policy version (default: the active one).",
       .details = "Lists the version's files; --file prints one of them as "
                  "stored.",
       .example = "bursarctl policy get --file pricing.yaml",
       .run = PolicyGet},
      {.words = {"policy", "activate"},
       .args = {"VERSION"},
       .flags = {"reason"},
       .required = {"reason"},
       .synopsis = "VERSION --reason TEXT",
       .summary = "Activate a stored version: roll back, or promote the "
                  "shadow.",
       .details = "The server compiles the version's files again first; if "
                  "they no longer compile it refuses (FAILED_PRECONDITION). "
                  "Activating the shadow version promotes it (no version "
                  "runs in shadow afterwards). The change is audited with "
                  "--actor and --reason.",
       .example = "bursarctl policy activate 4647b5326e56791d --reason "
                  "\"new prices were wrong\"",
       .run = PolicyActivate},
      {.words = {"policy", "shadow"},
       .flags = {"stop", "reason", "limit"},
       .synopsis = "[--limit N] | --stop [--reason TEXT]",
       .summary = "Show (or stop) the version running in shadow.",
       .details = "A version pushed with 'policy push --shadow' is planned "
                  "beside the active one on every Check, without changing "
                  "any answer. This prints how many Checks were compared, "
                  "how many the shadow version would answer differently and "
                  "how (verdict, deny rule, model, max output tokens, "
                  "estimated cost, error), and the latest differing Checks "
                  "(at most --limit). Counts restart when the shadow or the "
                  "active version changes and when bursard restarts. "
                  "Promote the shadow with 'policy activate VERSION'; "
                  "--stop ends it (audited with --actor and --reason).",
       .example = "bursarctl policy shadow --limit 20",
       .run = PolicyShadow},
  };
}

}  // namespace bursar::cli
